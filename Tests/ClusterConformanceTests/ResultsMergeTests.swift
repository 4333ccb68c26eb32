import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// `matrix --from`: results of separate runs (shards, machines, repeats) written as JSON Lines and merged.
@Suite("Results files and the merged matrix")
struct ResultsMergeTests {
    let specs: [Spec]
    let suite: SuiteIdentity
    let directory: String

    init() throws {
        specs = try SuiteRun.specs()
        suite = SuiteIdentity(specs: specs)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    static let node22 = { () -> ImplementationInfo in
        var info = ImplementationInfo(name: "node", version: "22.20.0", features: ["fork"])
        info.node = NodeVersion(22, 20, 0)
        return info
    }()

    /// Writes what `run --format jsonl` writes for these results, as one run of `info`.
    func write(_ name: String, _ results: [(SpecResult, Int)], info: ImplementationInfo = node22, suite: SuiteIdentity? = nil,
               expectations: Expectations = Expectations()) throws -> String {
        let path = directory + "/" + name
        let sink = try ReportSink.file(path)
        let reporter = JSONLReporter(sink: sink, suite: suite ?? self.suite, expectations: expectations)
        reporter.begin(implementation: info, specs: results.count, repeats: 1, jobs: 1)
        var summary = Summary()
        for (r, run) in results {
            reporter.result(r, iteration: run)
            summary.count(r.outcome)
        }
        reporter.end(summary)
        return path
    }

    func result(_ spec: Spec, _ outcome: Outcome, _ messages: [String] = []) -> SpecResult {
        SpecResult(id: spec.id, location: spec.location, outcome: outcome, messages: messages, logTail: [], stderrTail: "",
                   duration: .milliseconds(5), events: [])
    }

    /// The specs Node 22 runs (the suite without those for Node before 22).
    var forNode22: [Spec] { specs.filter(Self.node22.follows) }

    @Test("two shards merge into one column with every spec, n/a where the spec is for other Node versions")
    func shardsMerge() throws {
        let shards = try (1...2).map { k in try Shard(parsing: "\(k)/2").select(forNode22, id: \.id) }
        #expect(shards[0].count + shards[1].count == forNode22.count)
        let deviation = KnownDeviation(expected: .fail, reason: "a known deviation")
        let expectations = Expectations([shards[1][0].id: deviation])
        let a = try write("a.jsonl", shards[0].map { (result($0, .pass), 1) }, expectations: expectations)
        let b = try write("b.jsonl", shards[1].enumerated().map { (result($1, $0 == 0 ? .xfail : .pass, $0 == 0 ? ["expected: a known deviation"] : []), 1) },
                          expectations: expectations)
        let files = try [a, b].map { try ResultsFile.read($0, specs: specs) }
        #expect(files[0].implementation.node == NodeVersion(22, 20, 0))
        #expect(files[0].suite == suite)
        #expect(files[1].expectations.deviations[shards[1][0].id] == deviation)
        let columns = try ResultsMerge.columns(files, specs: specs, suite: suite)
        #expect(columns.count == 1)
        let column = try #require(columns.first)
        #expect(column.results.count == forNode22.count)
        #expect(column.summary.passed == forNode22.count - 1 && column.summary.xfailed == 1)
        #expect(column.summary.otherVersions == specs.count - forNode22.count)
        #expect(column.summary.otherVersions >= 2)
        let matrix = ConformanceMatrix(specs: specs, columns: columns)
        let verdicts = matrix.verdicts().split(separator: "\n")
        #expect(verdicts.count == specs.count)
        #expect(verdicts.filter { $0.hasSuffix("\tn/a") || $0.hasSuffix("\tna") }.count == specs.count - forNode22.count)
        let markdown = matrix.markdown(generatedBy: "test")
        #expect(markdown.contains("*(changed in Node 22: this spec describes Node <22)*"))
        #expect(markdown.contains("Known deviation: a known deviation."))
    }

    @Test("runs of one spec that disagree merge into the worst outcome, and say so")
    func repeatsMerge() throws {
        let spec = forNode22[0]
        let rest = forNode22.dropFirst().map { (result($0, .pass), 1) }
        let path = try write("r.jsonl", [(result(spec, .pass), 1), (result(spec, .fail, ["it broke"]), 2), (result(spec, .pass), 3)] + rest)
        let column = try #require(try ResultsMerge.columns([ResultsFile.read(path, specs: specs)], specs: specs, suite: suite).first)
        let merged = try #require(column.results[spec.id])
        #expect(merged.outcome == .fail)
        #expect(merged.messages.first == "outcomes over 3 runs: fail 1, pass 2")
        #expect(column.summary.failed == 1 && column.summary.exitCode == 1)
    }

    @Test("a missing shard, another suite, a cut or concatenated file: each refused with where and why")
    func badFiles() throws {
        let half = Array(forNode22.prefix(forNode22.count / 2))
        let partial = try write("partial.jsonl", half.map { (result($0, .pass), 1) })
        #expect(throws: ResultsFileError.self) { try ResultsMerge.columns([ResultsFile.read(partial, specs: specs)], specs: specs, suite: suite) }
        do {
            _ = try ResultsMerge.columns([ResultsFile.read(partial, specs: specs)], specs: specs, suite: suite)
        } catch {
            #expect(error.description.contains("has no result for \(forNode22.count - half.count) of the \(specs.count) specs (a shard missing?)"))
        }

        let other = try write("other.jsonl", forNode22.map { (result($0, .pass), 1) }, suite: SuiteIdentity(specs: specs.count, digest: "0123456789abcdef"))
        #expect {
            try ResultsMerge.columns([ResultsFile.read(other, specs: specs)], specs: specs, suite: suite)
        } throws: { ($0 as? ResultsFileError)?.description == "\(other):1: results of another suite version (\(specs.count) specs, digest 0123456789abcdef); this suite is \(suite): run them again with this checkout's Specs/" }

        let whole = try String(contentsOfFile: try write("whole.jsonl", forNode22.map { (result($0, .pass), 1) }), encoding: .utf8)
        let cases: [(text: String, message: String)] = [
            (String(whole.dropLast(30)), ":\(forNode22.count + 2): the last line is cut short (no newline)"),
            (whole + whole, ":\(forNode22.count + 3): a line after the footer"),
            (whole.split(separator: "\n").dropLast().joined(separator: "\n") + "\n", ":\(forNode22.count + 1): no footer"),
            (whole.split(separator: "\n").dropFirst().joined(separator: "\n") + "\n", ":1: a result before the header"),
            (whole.replacingOccurrences(of: "\"outcome\":\"pass\"", with: "\"outcome\":\"great\""), ":2: outcome \"great\""),
            (whole.replacingOccurrences(of: "\"id\":\"\(forNode22[0].id)\"", with: "\"id\":\"no.such.spec\""), ":2: result for \"no.such.spec\", which is not a spec of this suite"),
            ("{\"type\":\"header\"\n", ":1: invalid JSON"),
            ("", ": the file is empty"),
        ]
        for (i, c) in cases.enumerated() {
            let path = directory + "/bad-\(i).jsonl"
            try c.text.write(toFile: path, atomically: true, encoding: .utf8)
            #expect {
                _ = try ResultsFile.read(path, specs: specs)
            } throws: { error in
                (error as? ResultsFileError)?.description.hasPrefix(path + c.message) == true
            }
        }
    }

    @Test("the suite identity changes with any spec's content and not with its file")
    func identity() throws {
        var changed = specs
        changed[0].comment = (changed[0].comment ?? "") + " more"
        #expect(SuiteIdentity(specs: changed) != suite)
        var moved = specs
        moved[0].location = SourceLocation(file: "elsewhere.yaml", mark: SourceMark(line: 9, column: 9))
        #expect(SuiteIdentity(specs: moved.reversed()) == suite)
        #expect(suite.digest.count == 16)
    }
}
