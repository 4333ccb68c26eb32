import ClusterSpec
import Foundation
@testable import ClusterConformance

/// Source-tree and build-tree locations for the runner's tests.
enum Paths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let specs = packageRoot + "/Specs"
    static let fixtures = packageRoot + "/fixtures"
    static let fake = packageRoot + "/Tests/ClusterConformanceTests/FakeFixtures/fake.py"
    /// The built CLI, next to the test bundle (not /proc/self/exe, which is the test runner).
    static let cli = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("cluster-conformance").path
}

/// Whether a program is on PATH.
func onPath(_ program: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(program)")
    }
}

let suiteFeatures = Set(((try? SpecLoader.readFeatures(at: Paths.specs + "/features.yaml")) ?? []).map(\.name))

/// A spec from YAML text; the test fails loudly if it does not load.
func spec(_ yaml: String) throws -> Spec {
    let (spec, problems) = SpecLoader(features: suiteFeatures).load(text: yaml, file: "inline.yaml")
    guard let spec else { throw SpecLoadFailure(problems: problems.map(\.description)) }
    return spec
}

struct SpecLoadFailure: Error { var problems: [String] }

/// Every pid an implementation reported in a run.
func reportedPIDs(_ result: SpecResult) -> [Int32] {
    result.events.filter { $0["at"] != .string("runner") && ($0["ev"] == .string("hello") || $0["ev"] == .string("start")) }
        .compactMap { $0["pid"]?.intValue.map(Int32.init) }
}

/// Runs a command and returns its exit status and both outputs.
func runCommand(_ argv: [String], cwd: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}
