import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

@Suite("Expectations files")
struct ExpectationsTests {
    func load(_ yaml: String, ids: Set<String> = ["a.spec", "b.spec"]) throws -> Result<Expectations, SpecProblem> {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("exp-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return Expectations.load(path, knownIDs: ids)
    }

    @Test("known failures become xfail, their passes xpass; flaky accepts both; others are untouched")
    func judging() throws {
        let e = try load("""
            a.spec: {outcome: fail, reason: does not redistribute}
            b.spec: {outcome: flaky, reason: rotation races under load}
            """).get()
        #expect(e.judge("a.spec", .fail) == .xfail)
        #expect(e.judge("a.spec", .error) == .xfail)
        #expect(e.judge("a.spec", .pass) == .xpass)
        #expect(e.judge("b.spec", .fail) == .xfail)
        #expect(e.judge("b.spec", .pass) == .pass)
        #expect(e.judge("c.spec", .fail) == .fail)
    }

    @Test("an unknown spec id, a missing reason or a bad outcome is bad input with its position")
    func problems() throws {
        guard case .failure(let p1) = try load("nope.spec: {outcome: fail, reason: x}") else { Issue.record("accepted an unknown id"); return }
        #expect(p1.message.hasPrefix("no spec has the id 'nope.spec'"))
        #expect(p1.location.mark == SourceMark(line: 1, column: 1))
        guard case .failure(let p2) = try load("a.spec: {outcome: fail}") else { Issue.record("accepted a missing reason"); return }
        #expect(p2.message.contains("one-line reason"))
        guard case .failure(let p3) = try load("a.spec: {outcome: broken, reason: x}") else { Issue.record("accepted a bad outcome"); return }
        #expect(p3.message == "outcome must be fail, skip or flaky")
    }

    @Test("every committed expectations file names existing specs and gives reasons")
    func committedFiles() throws {
        let ids = Set(try SuiteRun.specs().map(\.id))
        let dirs = try FileManager.default.contentsOfDirectory(atPath: Paths.fixtures)
        var checked: [String] = []
        for dir in dirs.sorted() {
            let path = Paths.fixtures + "/" + dir + "/expectations.yaml"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            checked.append(dir)
            if case .failure(let p) = Expectations.load(path, knownIDs: ids) { Issue.record("\(p)") }
        }
        // The runtimes with known deviations each have a file; none can go unchecked by being missed.
        #expect(Set(["bun", "deno", "node18", "node22", "node24"]).isSubset(of: checked), "checked only \(checked)")
    }
}
