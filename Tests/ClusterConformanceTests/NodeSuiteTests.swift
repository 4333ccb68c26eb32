import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// The suite run by `swift test`: every spec of Specs/ against an implementation, one test case per spec.
enum SuiteRun {
    static let specs: [Spec] = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs]).specs

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
        let spec = try #require(specs.first { $0.id == id })
        let result = try runner.get().run(spec)
        #expect(result.outcome == .pass, "\(spec.location)\n\(result.messages.joined(separator: "\n"))\nlast events:\n\(result.logTail.joined(separator: "\n"))")
    }
}

/// Node.js's own node:cluster is the reference: a spec is right only if Node passes it.
@Suite("Specs against Node", .serialized, .enabled(if: onPath("node")))
struct NodeSuiteTests {
    @Test("the suite is not empty")
    func notEmpty() {
        #expect(SuiteRun.specs.count >= 40)
    }

    @Test("Node passes the spec", arguments: SuiteRun.specs.map(\.id))
    func spec(_ id: String) throws {
        try SuiteRun.check(SuiteRun.node, id)
    }
}

/// The native Swift implementation (the Cluster library through cluster-fixture) against the same specs.
@Suite("Specs against the Swift implementation", .serialized)
struct SwiftSuiteTests {
    @Test("the Swift implementation passes the spec", arguments: SuiteRun.specs.map(\.id))
    func spec(_ id: String) throws {
        try SuiteRun.check(SuiteRun.swift, id)
    }
}
