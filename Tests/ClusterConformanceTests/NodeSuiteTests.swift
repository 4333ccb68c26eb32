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

    /// The ids the parameterized suites iterate (one case each); `SuiteCoverageTests` checks them against a
    /// fresh load of the suite.
    static func ids() throws -> [String] { try specs().map(\.id) }

    /// A runner for `fixtures/<name>`, after its handshake.
    static func runner(_ name: String) -> Result<SuiteRunner, any Error> {
        Result {
            let impl = try Implementation.named(name, fixturesDirectory: Paths.fixtures)
            var options = RunOptions()
            // Other test suites run at the same time on two cores; the budget grows, the expectations do not.
            options.timeoutScale = 2
            let info = try impl.probe(options: options).get()
            return SuiteRunner(implementation: impl, info: info, options: options, jobs: 1, repeats: 1)
        }
    }

    static let node = runner("node")
    static let swift = runner("swift")

    static func check(_ runner: Result<SuiteRunner, any Error>, _ id: String) throws {
        let spec = try #require(try specs().first { $0.id == id })
        let result = try runner.get().run(spec)
        #expect(result.outcome == .pass, "\(spec.location)\n\(result.messages.joined(separator: "\n"))\nlast events:\n\(result.logTail.joined(separator: "\n"))")
    }
}

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
        #expect(try NodeSuiteTests.cases() == ids)
        #expect(try SwiftSuiteTests.cases() == ids)
    }
}

/// Node.js's own node:cluster is the reference: a spec is right only if Node passes it.
@Suite("Specs against Node", .serialized, .enabled(if: onPath("node")))
struct NodeSuiteTests {
    /// The cases of `spec(_:)`.
    static func cases() throws -> [String] { try SuiteRun.ids() }

    @Test("Node passes the spec", arguments: try cases())
    func spec(_ id: String) throws {
        try SuiteRun.check(SuiteRun.node, id)
    }
}

/// The native Swift implementation (the Cluster library through cluster-fixture) against the same specs.
@Suite("Specs against the Swift implementation", .serialized)
struct SwiftSuiteTests {
    /// The cases of `spec(_:)`.
    static func cases() throws -> [String] { try SuiteRun.ids() }

    @Test("the Swift implementation passes the spec", arguments: try cases())
    func spec(_ id: String) throws {
        try SuiteRun.check(SuiteRun.swift, id)
    }
}
