import ClusterSpec
import Foundation
@testable import ClusterConformance

#if canImport(Glibc)
import Glibc
#endif

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

/// The closed feature list of Specs/features.yaml; reading it is a failure of whatever test needs it, never an
/// empty list.
func suiteFeatures() throws -> Set<String> {
    try featureList.get()
}

private let featureList = Result { () throws(SpecProblem) -> Set<String> in
    Set(try SpecLoader.readFeatures(at: Paths.specs + "/features.yaml").map(\.name))
}

/// Every spec of Specs/, in the loader's order; a features file that cannot be read or any problem in any spec
/// throws, so that a test iterating the suite fails rather than running no case.
func loadSuiteStrictly() throws -> [Spec] {
    let suite = SpecLoader(features: try suiteFeatures()).loadSuite(paths: [Paths.specs])
    guard suite.problems.isEmpty else { throw SpecLoadFailure(problems: suite.problems.map(\.description)) }
    guard !suite.specs.isEmpty else { throw SpecLoadFailure(problems: ["\(Paths.specs) holds no spec"]) }
    return suite.specs
}

/// A spec from YAML text; the test fails loudly if it does not load.
func spec(_ yaml: String) throws -> Spec {
    let (spec, problems) = SpecLoader(features: try suiteFeatures()).load(text: yaml, file: "inline.yaml")
    guard let spec else { throw SpecLoadFailure(problems: problems.map(\.description)) }
    return spec
}

struct SpecLoadFailure: Error { var problems: [String] }

/// Every pid an implementation reported in a run.
func reportedPIDs(_ result: SpecResult) -> [Int32] {
    result.events.filter { $0["at"] != .string("runner") && ($0["ev"] == .string("hello") || $0["ev"] == .string("start")) }
        .compactMap { $0["pid"]?.intValue.map(Int32.init) }
}

/// A command that did not finish within its deadline (it was killed).
struct CommandTimedOut: Error, CustomStringConvertible {
    var argv: [String]
    var seconds: Int
    var stdout: String
    var stderr: String
    var description: String { "\(argv.joined(separator: " ")) did not finish within \(seconds) s\nstdout:\n\(stdout.suffix(2000))\nstderr:\n\(stderr.suffix(2000))" }
}

/// Runs a command and returns its exit status and both outputs. Both pipes are drained together (a child that
/// fills one while the other is read cannot block), and a command still running after `deadline` is killed
/// and throws `CommandTimedOut`.
func runCommand(_ argv: [String], cwd: String? = nil, deadline seconds: Int = 120) throws -> (status: Int32, stdout: String, stderr: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    let exited = DispatchSemaphore(value: 0)
    p.terminationHandler = { _ in exited.signal() }
    try p.run()
    var fds = [pollfd(fd: out.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0),
               pollfd(fd: err.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)]
    var collected: [[UInt8]] = [[], []]
    var open = 2
    let end = ContinuousClock.now + .seconds(seconds)
    var buffer = [UInt8](repeating: 0, count: 65536)
    while open > 0 {
        let left = end - ContinuousClock.now
        if left <= .zero {
            kill(p.processIdentifier, SIGKILL)
            exited.wait()
            throw CommandTimedOut(argv: argv, seconds: seconds, stdout: String(decoding: collected[0], as: UTF8.self),
                                  stderr: String(decoding: collected[1], as: UTF8.self))
        }
        let rc = poll(&fds, nfds_t(fds.count), Int32(clamping: milliseconds(left) + 1))
        if rc < 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            continue
        }
        for i in fds.indices where fds[i].fd >= 0 && fds[i].revents != 0 {
            let n = read(fds[i].fd, &buffer, buffer.count)
            if n > 0 {
                collected[i] += buffer[0..<n]
            } else if n == 0 || errno != EINTR {
                // End of file (or a read error, which ends this pipe the same way): stop polling it.
                fds[i].fd = -1
                open -= 1
            }
        }
    }
    // Both pipes are closed; a command that closed its outputs but goes on running still meets the deadline.
    if exited.wait(timeout: .now() + .milliseconds(milliseconds(end - ContinuousClock.now))) == .timedOut {
        kill(p.processIdentifier, SIGKILL)
        exited.wait()
        throw CommandTimedOut(argv: argv, seconds: seconds, stdout: String(decoding: collected[0], as: UTF8.self),
                              stderr: String(decoding: collected[1], as: UTF8.self))
    }
    return (p.terminationStatus, String(decoding: collected[0], as: UTF8.self), String(decoding: collected[1], as: UTF8.self))
}

/// A duration in whole milliseconds, never negative.
func milliseconds(_ duration: Duration) -> Int {
    max(0, Int(duration / .milliseconds(1)))
}
