import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// The reference run: every spec of Specs/ against Node.js's own node:cluster, one test case per spec.
/// A spec is right only if Node passes it.
enum NodeReference {
    static let specs: [Spec] = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs]).specs

    static let runner: Result<SuiteRunner, any Error> = Result {
        let impl = try Implementation.named("node", fixturesDirectory: Paths.fixtures)
        var options = RunOptions()
        // Other test suites run at the same time on two cores; the budget grows, the expectations do not.
        options.timeoutScale = 2
        let info = try impl.probe(options: options).get()
        return SuiteRunner(implementation: impl, info: info, options: options, jobs: 1, repeats: 1)
    }
}

@Suite("Specs against Node", .serialized, .enabled(if: onPath("node")))
struct NodeSuiteTests {
    @Test("the suite is not empty")
    func notEmpty() {
        #expect(NodeReference.specs.count >= 2)
    }

    @Test("Node passes the spec", arguments: NodeReference.specs.map(\.id))
    func spec(_ id: String) throws {
        let runner = try NodeReference.runner.get()
        let spec = try #require(NodeReference.specs.first { $0.id == id })
        let result = runner.run(spec)
        #expect(result.outcome == .pass, "\(spec.location)\n\(result.messages.joined(separator: "\n"))\nlast events:\n\(result.logTail.joined(separator: "\n"))")
    }
}
