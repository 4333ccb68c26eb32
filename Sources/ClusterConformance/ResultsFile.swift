import ClusterSpec
import Foundation

/// A problem with a results file, `file:line: message` (exit 2 in the CLI).
public struct ResultsFileError: Error, Sendable, CustomStringConvertible {
    /// The file.
    public var file: String
    /// The 1-based line, when the problem is on one.
    public var line: Int?
    /// What is wrong.
    public var message: String

    public var description: String { "\(file)\(line.map { ":\($0)" } ?? ""): \(message)" }
}

/// One `run --format jsonl` report read back: who ran which suite, and every result line.
public struct ResultsFile: Sendable {
    /// The path read.
    public var path: String
    /// The implementation, from the header.
    public var implementation: ImplementationInfo
    /// The suite the results judge.
    public var suite: SuiteIdentity
    /// The known deviations the run applied.
    public var expectations: Expectations
    /// The results, in file order (a spec appears once per repeat).
    public var results: [SpecResult]

    /// Reads and checks `path`: a header first, result lines, a footer last, every line a whole JSON object.
    /// `specs` resolves each result's location; an id that is not in it is an error.
    public static func read(_ path: String, specs: [Spec]) throws(ResultsFileError) -> ResultsFile {
        func fail(_ line: Int?, _ message: String) -> ResultsFileError { ResultsFileError(file: path, line: line, message: message) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail(nil, "cannot read the file") }
        let bytes = [UInt8](data)
        guard !bytes.isEmpty else { throw fail(nil, "the file is empty: not a results file of `run --format jsonl`") }
        // A report is written line by line; one cut short ends without its newline.
        guard bytes.last == UInt8(ascii: "\n") else {
            throw fail(bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).count, "the last line is cut short (no newline): the run did not finish writing")
        }
        let lines = bytes.dropLast().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        let byID = Dictionary(specs.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var header: (ImplementationInfo, SuiteIdentity, Expectations)?
        var results: [SpecResult] = []
        var footer = false
        for (index, raw) in lines.enumerated() {
            let n = index + 1
            let object: JSONObject
            do {
                guard case .object(let o) = try JSONValue.parse(bytes: Array(raw)) else { throw fail(n, "a line must be a JSON object") }
                object = o
            } catch let error as JSONParseError {
                throw fail(n, "\(error)")
            } catch let error as ResultsFileError {
                throw error
            } catch {
                throw fail(n, "\(error)")
            }
            if footer { throw fail(n, "a line after the footer: give each run's file separately, not concatenated") }
            switch object["type"]?.stringValue {
            case "header":
                guard header == nil else { throw fail(n, "a second header: give each run's file separately, not concatenated") }
                header = try readHeader(object, line: n, fail: fail)
            case "result":
                guard header != nil else { throw fail(n, "a result before the header") }
                guard let id = object["id"]?.stringValue, let spec = byID[id] else {
                    throw fail(n, "result for \(object["id"]?.jsonText ?? "no id"), which is not a spec of this suite")
                }
                guard let name = object["outcome"]?.stringValue, let outcome = Outcome(name: name) else {
                    throw fail(n, "outcome \(object["outcome"]?.jsonText ?? "missing"): one of pass, fail, skip, error, xfail, xpass")
                }
                var result = SpecResult(id: id, location: spec.location, outcome: outcome,
                                        messages: object["messages"]?.arrayValue?.compactMap(\.stringValue) ?? [], logTail: [],
                                        stderrTail: "", duration: .milliseconds(object["duration_ms"]?.intValue ?? 0), events: [])
                for name in object["waived"]?.arrayValue?.compactMap(\.stringValue) ?? [] {
                    guard let invariant = Invariant(rawValue: name) else { throw fail(n, "unknown waived invariant '\(name)'") }
                    result.waivedInvariants.append(invariant)
                }
                result.failedAttempts = object["failedAttempts"]?.arrayValue?.compactMap(\.stringValue) ?? []
                results.append(result)
            case "footer":
                guard header != nil else { throw fail(n, "a footer before the header") }
                footer = true
            default:
                throw fail(n, "type \(object["type"]?.jsonText ?? "missing"): header, result or footer")
            }
        }
        guard let (implementation, suite, expectations) = header else { throw fail(1, "no header line: not a results file of `run --format jsonl`") }
        guard footer else { throw fail(lines.count, "no footer: the run did not finish (or the file was cut)") }
        return ResultsFile(path: path, implementation: implementation, suite: suite, expectations: expectations, results: results)
    }

    static func readHeader(_ o: JSONObject, line n: Int, fail: (Int?, String) -> ResultsFileError) throws(ResultsFileError) -> (ImplementationInfo, SuiteIdentity, Expectations) {
        guard o["protocol"]?.intValue == protocolVersion else {
            throw fail(n, "written for fixture protocol \(o["protocol"]?.jsonText ?? "?"); this runner speaks protocol \(protocolVersion)")
        }
        guard let impl = o["implementation"], let name = impl["name"]?.stringValue, let version = impl["version"]?.stringValue else {
            throw fail(n, "the header names no implementation (name and version)")
        }
        var info = ImplementationInfo(name: name, version: version, features: Set(impl["features"]?.arrayValue?.compactMap(\.stringValue) ?? []))
        if let node = impl["node"]?.stringValue {
            guard let v = NodeVersion(node) else { throw fail(n, "implementation.node '\(node)' is not a Node version") }
            info.node = v
        }
        guard let suite = o["suite"], let count = suite["specs"]?.intValue, let digest = suite["digest"]?.stringValue else {
            throw fail(n, "the header has no suite identity (suite.specs, suite.digest): written by an older cluster-conformance?")
        }
        var expectations = Expectations()
        func deviation(_ value: JSONValue, _ key: String) throws(ResultsFileError) -> KnownDeviation {
            guard let outcome = value["outcome"]?.stringValue.flatMap(KnownDeviation.Expected.init(rawValue:)),
                  let reason = value["reason"]?.stringValue else {
                throw fail(n, "expectations entry '\(key)' needs outcome (fail, skip, flaky) and reason")
            }
            return KnownDeviation(expected: outcome, reason: reason)
        }
        if case .object(let deviations)? = o["expectations"]?["deviations"] {
            for key in deviations.keys { expectations.deviations[key] = try deviation(deviations[key]!, key) }
        }
        if case .object(let invariants)? = o["expectations"]?["invariants"] {
            for key in invariants.keys {
                guard let invariant = Invariant(rawValue: key) else { throw fail(n, "unknown invariant '\(key)' in the expectations") }
                expectations.invariants[invariant] = try deviation(invariants[key]!, key)
            }
        }
        return (info, SuiteIdentity(specs: count, digest: digest), expectations)
    }

    /// The header fields `JSONLReporter` writes for the suite and the expectations.
    static func headerFields(suite: SuiteIdentity?, expectations: Expectations?) -> [(String, JSONValue)] {
        var fields: [(String, JSONValue)] = []
        if let suite {
            fields.append(("suite", .object(JSONObject([("specs", .number(Double(suite.specs))), ("digest", .string(suite.digest))]))))
        }
        if let expectations {
            func entry(_ d: KnownDeviation) -> JSONValue {
                .object(JSONObject([("outcome", .string(d.expected.rawValue)), ("reason", .string(d.reason))]))
            }
            fields.append(("expectations", .object(JSONObject([
                ("deviations", .object(JSONObject(expectations.deviations.sorted { $0.key < $1.key }.map { ($0.key, entry($0.value)) }))),
                ("invariants", .object(JSONObject(expectations.invariants.sorted { $0.key.rawValue < $1.key.rawValue }.map { ($0.key.rawValue, entry($0.value)) }))),
            ]))))
        }
        return fields
    }
}

extension Outcome {
    /// The outcome named `name` in reports.
    public init?(name: String) {
        guard let o = ([.pass, .fail, .skip, .error, .xfail, .xpass] as [Outcome]).first(where: { $0.name == name }) else { return nil }
        self = o
    }

    /// How bad an outcome is when runs of one spec disagree: the worst stands.
    var severity: Int {
        switch self {
        case .pass: 0
        case .skip: 1
        case .xfail: 2
        case .xpass: 3
        case .fail: 4
        case .error: 5
        }
    }
}

/// Builds matrix columns from results files of separate runs (shards, machines, repeats).
public enum ResultsMerge {
    /// One column per implementation (name and version), in the order the files first name them. Every file must
    /// judge `suite` (the specs given); every spec of `specs` that applies to an implementation must have a result
    /// in some file, so that a missing shard cannot make a smaller matrix. Runs of one spec that disagree merge
    /// into the worst outcome, with a message listing them.
    public static func columns(_ files: [ResultsFile], specs: [Spec], suite: SuiteIdentity) throws(ResultsFileError) -> [MatrixColumn] {
        var order: [String] = []
        var grouped: [String: [ResultsFile]] = [:]
        for file in files {
            guard file.suite == suite else {
                throw ResultsFileError(file: file.path, line: 1, message: "results of another suite version (\(file.suite)); this suite is \(suite): run them again with this checkout's Specs/")
            }
            let key = "\(file.implementation.name) \(file.implementation.version)"
            if grouped[key] == nil { order.append(key) }
            if let first = grouped[key]?.first {
                if first.implementation.node != file.implementation.node {
                    throw ResultsFileError(file: file.path, line: 1, message: "\(key) follows Node \(file.implementation.node) here but Node \(first.implementation.node) in \(first.path)")
                }
                if first.expectations.deviations != file.expectations.deviations || first.expectations.invariants != file.expectations.invariants {
                    throw ResultsFileError(file: file.path, line: 1, message: "\(key) was judged by other expectations than in \(first.path): merge runs made with the same fixtures/<impl>/expectations.yaml")
                }
            }
            grouped[key, default: []].append(file)
        }
        return try order.map { key throws(ResultsFileError) in
            let files = grouped[key]!
            let info = files[0].implementation
            var runs: [String: [SpecResult]] = [:]
            for file in files { for r in file.results { runs[r.id, default: []].append(r) } }
            let missing = specs.filter { info.follows($0) && runs[$0.id] == nil }.map(\.id)
            if !missing.isEmpty {
                throw ResultsFileError(file: files.map(\.path).joined(separator: ", "), line: nil,
                                       message: "\(key) has no result for \(missing.count) of the \(specs.count) specs (a shard missing?): \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? ", …" : "")")
            }
            var results: [String: SpecResult] = [:]
            var summary = Summary()
            for spec in specs {
                guard let all = runs[spec.id] else { continue }
                var merged = all.max { $0.outcome.severity < $1.outcome.severity }!
                let outcomes = Dictionary(grouping: all, by: \.outcome.name)
                if outcomes.count > 1 {
                    merged.messages.insert("outcomes over \(all.count) runs: " + outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.count)" }.joined(separator: ", "), at: 0)
                }
                results[spec.id] = merged
                summary.count(merged.outcome)
                if !merged.failedAttempts.isEmpty { summary.retried += 1 }
            }
            summary.specs = results.count
            summary.otherVersions = specs.count - results.count
            return MatrixColumn(info: info, results: results, expectations: files[0].expectations, summary: summary)
        }
    }
}
