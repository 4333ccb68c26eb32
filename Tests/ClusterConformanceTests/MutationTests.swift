import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// The mutation score: the mutants of fixtures/node-mutants, their loader, the report, and runs against Node.
@Suite("Mutation")
struct MutationTests {
    static let directory = Paths.fixtures + "/node-mutants"

    @Test("fixtures/node-mutants loads: a baseline and at least 25 mutants, each naming a behaviour that some spec names")
    func mutantsLoad() throws {
        let set = try MutantSet.load(directory: Self.directory)
        #expect(set.baseline == Self.directory + "/baseline.cjs")
        #expect(set.mutants.count >= 25)
        #expect(Set(set.mutants.map(\.name)).count == set.mutants.count)
        let named = Set(try SuiteRun.specs().flatMap(\.behaviours))
        for m in set.mutants {
            #expect(named.contains(m.behaviour), "\(m.path): no spec names \(m.behaviour), so no spec is meant to kill it")
            #expect(!m.summary.isEmpty && m.summary.count <= 200, "\(m.path): the summary is one line")
            #expect(m.path == Self.directory + "/\(m.name).cjs")
        }
    }

    @Test("a mutant whose header is wrong is a problem naming its file, line and column", arguments: [
        ("// RR-02\n// what\n", "bad.cjs:1:1: a mutant starts with the line '// Mutant: <BEHAVIOUR-ID>'"),
        ("// Mutant: rr-2\n// what\n", "bad.cjs:1:12: 'rr-2' is not a behaviour id"),
        ("// Mutant: RR-02\n'use strict';\n", "bad.cjs:2:1: a mutant's second line says in one comment line what it breaks"),
        ("// Mutant: RR-02\n", "bad.cjs:2:1: a mutant's second line"),
        ("", "bad.cjs:1:1: a mutant starts with the line"),
    ])
    func badHeader(_ text: String, _ message: String) throws {
        let dir = try temporaryDirectory("mutants")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "// Baseline\n".write(toFile: dir + "/baseline.cjs", atomically: true, encoding: .utf8)
        try "// Mutant: LIFE-03\n// fine\n".write(toFile: dir + "/good.cjs", atomically: true, encoding: .utf8)
        try text.write(toFile: dir + "/bad.cjs", atomically: true, encoding: .utf8)
        let error = #expect(throws: SpecProblem.self) { try MutantSet.load(directory: dir) }
        #expect(error?.location.file == dir + "/bad.cjs")
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
    }

    @Test("a directory without baseline.cjs, or without a mutant, is a problem; an unknown --mutant lists the known ones")
    func badDirectory() throws {
        let dir = try temporaryDirectory("mutants")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "// Mutant: LIFE-03\n// fine\n".write(toFile: dir + "/good.cjs", atomically: true, encoding: .utf8)
        #expect(throws: SpecProblem.self) { try MutantSet.load(directory: dir) }
        try "// Baseline\n".write(toFile: dir + "/baseline.cjs", atomically: true, encoding: .utf8)
        let set = try MutantSet.load(directory: dir)
        #expect(set.mutants.map(\.name) == ["good"])
        #expect(set.mutants[0].behaviour == "LIFE-03" && set.mutants[0].summary == "fine")
        let unknown = #expect(throws: SpecProblem.self) { try set.selecting(["nope"]) }
        #expect(unknown?.message == "no mutant 'nope' (known: good)")
        #expect(try set.selecting(["good.cjs"]).map(\.name) == ["good"])
        try FileManager.default.removeItem(atPath: dir + "/good.cjs")
        #expect(throws: SpecProblem.self) { try MutantSet.load(directory: dir) }
    }

    @Test("a mutant is preloaded with --require right after the program")
    func preloading() {
        let impl = Implementation(command: ["/usr/bin/node", "/x/fixture.mjs"], name: "node").preloading("/m/a.cjs")
        #expect(impl.command == ["/usr/bin/node", "--require", "/m/a.cjs", "/x/fixture.mjs"])
        #expect(impl.mutationProblem == nil)
        #expect(Implementation(command: ["cluster-fixture"], name: "swift").mutationProblem?.contains("'swift' is not a Node implementation") == true)
    }

    static let report = MutationReport(implementation: "node", version: "20.20.2", mode: .full, specs: 166, results: [
        MutantResult(name: "rr-first-worker", behaviour: "RR-02", summary: "every connection goes to worker 1 | not a rotation",
                     killedBy: ["rr.distribution.even", "rr.order.strict-rotation", "a.b", "c.d"], specsRun: 166, specsNamingBehaviour: 5, seconds: 40.25),
        MutantResult(name: "quiet", behaviour: "LIFE-99", summary: "nothing notices <this>",
                     killedBy: [], specsRun: 166, specsNamingBehaviour: 0, seconds: 39.5),
    ], seconds: 80.75)

    @Test("the report round-trips through its JSON text, and renders a table, a Markdown and an HTML section")
    func reportRoundTrip() throws {
        let r = Self.report
        #expect(r.killed == 1 && r.total == 2 && r.score == "1/2 (50.0 %)")
        let decoded = try MutationReport(json: try JSONValue.parse(r.jsonText))
        #expect(decoded == r)
        #expect(r.table().contains("rr-first-worker  RR-02      4: rr.distribution.even, rr.order.strict-rotation, a.b (+1 more)"))
        #expect(r.table().contains("quiet            LIFE-99    SURVIVED"))
        let md = r.markdownSection()
        #expect(md.hasPrefix("## Mutation score\n\n**1 of 2** mutants of the reference killed (50.0 %): node 20.20.2, every spec against every mutant"))
        #expect(md.contains("| `rr-first-worker` | RR-02 | 4 | `rr.distribution.even`, `rr.order.strict-rotation`, `a.b`, … |"))
        #expect(md.contains("- `quiet` (LIFE-99): nothing notices <this> No spec names LIFE-99."))
        let html = r.htmlSection()
        #expect(html.contains("<li><code>quiet</code> (LIFE-99): nothing notices &lt;this&gt; No spec names LIFE-99.</li>"))
        var matrix = ConformanceMatrix(specs: [], columns: [])
        #expect(!matrix.markdown(generatedBy: "x").contains("Mutation score"))
        matrix.mutation = r
        #expect(matrix.markdown(generatedBy: "x").hasSuffix(md))
        #expect(matrix.html(generatedBy: "x").hasSuffix(html + "</body></html>\n"))
    }

    @Test("a report file that is not one is a problem naming the file, line and column", arguments: [
        ("{\n  \"mode\": \"full\",\n  oops\n}", "report.json:3:3: "),
        ("{\"implementation\": {\"name\": \"node\", \"version\": \"20\"}, \"mode\": \"both\"}", "report.json:1:63: mode must be 'full' or 'quick'"),
    ])
    func badReport(_ text: String, _ message: String) throws {
        let dir = try temporaryDirectory("report")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try text.write(toFile: dir + "/report.json", atomically: true, encoding: .utf8)
        let error = #expect(throws: SpecProblem.self) { try MutationReport.load(path: dir + "/report.json") }
        #expect(error?.description.contains(message) == true, "\(String(describing: error))")
    }

    @Test("a member at fault in a pretty report is located on its own line")
    func locatedMember() throws {
        let dir = try temporaryDirectory("report")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = Self.report.jsonText.replacingOccurrences(of: "\"LIFE-99\"", with: "99")
        try text.write(toFile: dir + "/report.json", atomically: true, encoding: .utf8)
        let line = text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains("\"behaviour\": 99") }.map { $0 + 1 }
        let error = #expect(throws: SpecProblem.self) { try MutationReport.load(path: dir + "/report.json") }
        #expect(error?.location.mark.line == line)
        #expect(error?.message.hasPrefix("mutants[1].behaviour must be a string") == true)
    }

    /// A mutation runner against Node's own fixture, with every mutant's handshake checked.
    static func nodeRunner() throws -> MutationRunner {
        let impl = try Implementation.named("node", fixturesDirectory: Paths.fixtures)
        var options = RunOptions()
        // Other suites run at the same time on two cores; the budget grows, the expectations do not. A timing-bound spec
        // (rr.pending.joining-worker-drains: a worker must start within 1.5 s) can miss under that load, with or without
        // the preload; it runs again, as `mutate --retries 2` in CI does.
        options.timeoutScale = 2
        options.retries = 2
        switch MutationRunner.prepare(implementation: impl, set: try MutantSet.load(directory: directory), options: options, jobs: 4,
                                      expectations: Expectations()) {
        case .success(let r): return r
        case .failure(let e): throw e
        }
    }

    @Test("the unmutated preload path passes the whole suite on Node", .enabled(if: onPath("node")))
    func baselinePasses() async throws {
        let runner = try Self.nodeRunner()
        let specs = try SuiteRun.specs()
        let (summary, unexpected) = await onOwnThread { runner.runBaseline(specs, reporter: ReporterFan([])) }
        // Every spec for the Node version the implementation follows runs and passes; the others (nodeVersions) do not run.
        #expect(summary.specs == (try SuiteRun.ids(following: runner.info.node)).count)
        #expect(summary.specs + summary.otherVersions == specs.count)
        #expect(summary.passed == summary.specs)
        #expect(unexpected.map { "\($0.id): \($0.messages.joined(separator: "; "))" } == [])
    }

    @Test("a real mutant is killed by a spec that names its behaviour, and that spec passes with the baseline", .enabled(if: onPath("node")))
    func mutantKilled() async throws {
        let runner = try Self.nodeRunner()
        let mutant = try #require(runner.set.mutants.first { $0.name == "kill-default-sigkill" })
        let specs = try SuiteRun.specs()
        let outcome = await onOwnThread { runner.run([mutant], specs: specs, mode: .quick) { _, _, _ in } }
        let result = try #require(outcome.report.results.first)
        #expect(!result.survived)
        #expect(outcome.baselineUnexpected.isEmpty)
        let killers = specs.filter { result.killedBy.contains($0.id) }
        #expect(killers.contains { $0.behaviours.contains("DISC-07") }, "\(result.killedBy)")
        #expect(result.specsRun < specs.count)
        #expect(outcome.report.killed == 1 && outcome.report.mode == .quick)
    }

    @Test("mutate refuses an implementation that is not Node, and an unknown mutant, with exit code 2")
    func cliBadInput() throws {
        let swift = try runCommand([Paths.cli, "mutate", "--impl", "swift", "--quick"], cwd: Paths.packageRoot)
        #expect(swift.status == 2)
        #expect(swift.stderr.contains("'swift' is not a Node implementation"), "\(swift.stderr)")
        let unknown = try runCommand([Paths.cli, "mutate", "--mutant", "nope"], cwd: Paths.packageRoot)
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("no mutant 'nope' (known: "), "\(unknown.stderr)")
        let format = try runCommand([Paths.cli, "mutate", "--format", "yaml"], cwd: Paths.packageRoot)
        #expect(format.status == 2)
    }

    @Test("matrix refuses a mutation report that is not one, naming file:line:col, with exit code 2")
    func matrixBadReport() throws {
        let dir = try temporaryDirectory("matrix")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"mode\": [\n".write(toFile: dir + "/r.json", atomically: true, encoding: .utf8)
        let r = try runCommand([Paths.cli, "matrix", "--impl", "node", "--mutation-report", dir + "/r.json", "--output-directory", dir],
                               cwd: Paths.packageRoot)
        #expect(r.status == 2)
        #expect(r.stderr.hasPrefix("\(dir)/r.json:2:1: "), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/CONFORMANCE.md"))
    }
}
