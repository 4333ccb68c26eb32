import ClusterSpec
import Foundation
import Testing

/// Specs/README.md's coverage claims hold: every catalogued behaviour and every Node cluster test is cited
/// by a spec or listed, with its reason, as not covered, never both, and the summary counts are the real ones.
@Suite("Coverage of the catalogue and of Node's tests")
struct CoverageTests {
    static func list(_ name: String) throws -> [String] {
        try String(contentsOfFile: Paths.packageRoot + "/Tests/ClusterSpecTests/Coverage/" + name, encoding: .utf8)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    struct Claims {
        var specs: [Spec]
        /// The first cells of the 'Not covered, and why' table.
        var notCovered: [String]
        var readme: String

        init() throws {
            let features = try SpecLoader.readFeatures(at: Paths.specs + "/features.yaml")
            let suite = SpecLoader(features: Set(features.map(\.name))).loadSuite(paths: [Paths.specs])
            guard suite.problems.isEmpty else { throw SuiteProblems(problems: suite.problems.map(\.description)) }
            specs = suite.specs
            readme = try String(contentsOfFile: Paths.specs + "/README.md", encoding: .utf8)
            let table = readme.components(separatedBy: "## Not covered, and why").dropFirst().first ?? ""
            notCovered = table.split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| behaviour or") && !$0.hasPrefix("| ---") }
                .map { $0.dropFirst(2).prefix { $0 != "|" }.trimmingCharacters(in: .whitespaces) }
        }
    }

    struct SuiteProblems: Error { var problems: [String] }

    @Test("every behaviour of the catalogue is cited by a spec or listed as not covered, not both; the summary says how many")
    func behaviours() throws {
        let ids = try Self.list("behaviours.txt")
        #expect(ids.count == 93)
        let claims = try Claims()
        let cited = Set(claims.specs.flatMap(\.behaviours))
        let listed = Set(claims.notCovered.filter { $0.range(of: #"^[A-Z]+-\d\d$"#, options: .regularExpression) != nil })
        for id in ids {
            #expect(cited.contains(id) != listed.contains(id), "\(id): cited \(cited.contains(id)), listed \(listed.contains(id))")
        }
        #expect(listed.isSubset(of: Set(ids)), "listed but not in the catalogue: \(listed.subtracting(ids))")
        let covered = ids.filter(cited.contains).count
        #expect(claims.readme.contains("| behaviours | \(covered) of \(ids.count) | \(ids.count - covered) |"))
    }

    @Test("every Node cluster test is a spec's 'from' or listed as not covered, not both; the summary says how many")
    func nodeTests() throws {
        let tests = try Self.list("node-tests.txt")
        #expect(tests.count == 80)
        let claims = try Claims()
        let cited = Set(claims.specs.compactMap(\.from).flatMap { from in
            from.split(whereSeparator: { $0 == " " || $0 == "," }).map { String($0.split(separator: "/").last ?? "") }
        })
        let listed = Set(claims.notCovered.filter { $0.hasPrefix("test-cluster-") })
        for test in tests {
            #expect(cited.contains(test) != listed.contains(test), "\(test): cited \(cited.contains(test)), listed \(listed.contains(test))")
        }
        let covered = tests.filter(cited.contains).count
        #expect(claims.readme.contains("| Node test files | \(covered) of \(tests.count) | \(tests.count - covered) |"))
    }
}
