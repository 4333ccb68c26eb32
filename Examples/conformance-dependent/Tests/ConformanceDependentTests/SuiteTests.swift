import ClusterConformance
import Foundation
import Testing

/// The suite, found from the dependency's own source path (`.build/checkouts/…`, or here the path dependency);
/// a suite that cannot be found or loaded fails the tests that use it, with every problem at its file:line:col.
let suite = Result { try ConformanceSuite() }

/// The implementation under test. Yours would be your own fixture, a program that speaks the suite's
/// fixtures/PROTOCOL.md: `Implementation(command: ["/path/to/your-fixture"])` (then `policyEnv`/`platformEnv`), or
/// `suite.implementation(descriptor: "Fixtures/mine")` for a directory with an implementation.yaml. This example
/// plugs in the suite's reference fixture (Node's own node:cluster) by command, as a package of its own would plug
/// in its fixture, and keeps its known deviations in a file of its own.
let implementation = Result {
    let suite = try suite.get()
    var node = Implementation(command: ["node", suite.fixturesDirectory + "/node/fixture.mjs"], name: "node-by-command")
    node.policyEnv = "NODE_CLUSTER_SCHED_POLICY"
    node.platformEnv = "CLUSTER_FIXTURE_PLATFORM"
    var options = RunOptions()
    // The machine may be busy with other builds and tests: the time budgets grow, the expectations do not.
    options.timeoutScale = 2
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
    return try suite.prepare(node, expectations: suite.expectations(file: here + "/expectations.yaml"), options: options)
}

@Suite("The suite, reached through the dependency")
struct SuiteTests {
    @Test("the suite is found and every spec file under its Specs/ is one spec")
    func found() throws {
        let suite = try suite.get()
        // Counted apart from the loader: every YAML file under Specs/ but the feature list.
        let files = try #require(FileManager.default.enumerator(atPath: suite.specsDirectory)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".yaml") && $0 != "features.yaml" }
        #expect(suite.specs.count > 0)
        #expect(suite.specs.count == files.count)
        #expect(try SpecTests.cases().count == suite.specs.count)
        #expect(suite.implementationNames.contains("node"))
    }
}

@Suite("Every spec against the implementation", .enabled(if: onPath("node")))
struct SpecTests {
    /// One case per spec of the suite; an empty list would pass without running anything, so `found()` counts it.
    /// The cases run in parallel, at most `jobs` (the number of cores) at a time.
    static func cases() throws -> [String] { try suite.get().ids }

    @Test("the implementation conforms to the spec", arguments: try cases())
    func spec(_ id: String) async throws {
        // Throws with the runner's full report (expectation, observed events, stderr) unless the result is the
        // expected one: a pass, a skip for a feature not offered, or a failure listed in expectations.yaml.
        try await implementation.get().check(id)
    }
}

/// Whether a program is on PATH.
func onPath(_ program: String) -> Bool {
    (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
        FileManager.default.isExecutableFile(atPath: "\($0)/\(program)")
    }
}
