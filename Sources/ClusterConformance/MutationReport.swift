import ClusterSpec
import Foundation

/// What the suite did to one mutant.
public struct MutantResult: Sendable, Equatable {
    /// The mutant's name (its file name without `.cjs`).
    public var name: String
    /// The behaviour it breaks.
    public var behaviour: String
    /// What it breaks and how.
    public var summary: String
    /// The ids of the specs that killed it, in suite order (quick mode: only among the specs it ran).
    public var killedBy: [String]
    /// How many specs ran against it.
    public var specsRun: Int
    /// How many of the run's specs name its behaviour in `behaviours`.
    public var specsNamingBehaviour: Int
    /// Wall time from its first spec run to its last.
    public var seconds: Double

    /// A result.
    public init(name: String, behaviour: String, summary: String, killedBy: [String], specsRun: Int,
                specsNamingBehaviour: Int, seconds: Double) {
        self.name = name
        self.behaviour = behaviour
        self.summary = summary
        self.killedBy = killedBy
        self.specsRun = specsRun
        self.specsNamingBehaviour = specsNamingBehaviour
        self.seconds = seconds
    }

    /// No spec killed it.
    public var survived: Bool { killedBy.isEmpty }

    /// "id, id, id (+N more)" or "SURVIVED".
    public var killers: String {
        guard !killedBy.isEmpty else { return "SURVIVED" }
        let shown = killedBy.prefix(MutationReport.shownKillers).joined(separator: ", ")
        return killedBy.count > MutationReport.shownKillers ? "\(shown) (+\(killedBy.count - MutationReport.shownKillers) more)" : shown
    }
}

/// The mutation score of a suite: for each mutant of the reference, the specs that kill it, or none.
/// `cluster-conformance mutate --output` writes it as JSON; `matrix --mutation-report` reads it back.
public struct MutationReport: Sendable, Equatable {
    /// The implementation's name, as its handshake gave it.
    public var implementation: String
    /// Its version.
    public var version: String
    /// Full or quick.
    public var mode: MutationMode
    /// The specs each mutant could face.
    public var specs: Int
    /// One result per mutant, in the order run.
    public var results: [MutantResult]
    /// Wall time of the mutants' runs.
    public var seconds: Double

    /// How many killing spec ids tables show.
    static let shownKillers = 3

    /// A report.
    public init(implementation: String, version: String, mode: MutationMode, specs: Int, results: [MutantResult], seconds: Double) {
        self.implementation = implementation
        self.version = version
        self.mode = mode
        self.specs = specs
        self.results = results
        self.seconds = seconds
    }

    /// Mutants killed by at least one spec.
    public var killed: Int { results.filter { !$0.survived }.count }
    /// Mutants in the run.
    public var total: Int { results.count }
    /// The mutants no spec killed.
    public var survivors: [MutantResult] { results.filter(\.survived) }
    /// The share killed, in percent with one decimal.
    public var percent: String { total == 0 ? "0.0" : String(format: "%.1f", Double(killed) * 100 / Double(total)) }
    /// "killed/total (percent %)".
    public var score: String { "\(killed)/\(total) (\(percent) %)" }

    // MARK: - JSON

    /// The report as JSON.
    public var json: JSONValue {
        func round2(_ x: Double) -> JSONValue { .number((x * 100).rounded() / 100) }
        return .object(JSONObject([
            ("implementation", .object(JSONObject([("name", .string(implementation)), ("version", .string(version))]))),
            ("mode", .string(mode.rawValue)),
            ("specs", .number(Double(specs))),
            ("killed", .number(Double(killed))),
            ("total", .number(Double(total))),
            ("seconds", round2(seconds)),
            ("mutants", .array(results.map { r in
                .object(JSONObject([
                    ("name", .string(r.name)), ("behaviour", .string(r.behaviour)), ("summary", .string(r.summary)),
                    ("killedBy", .array(r.killedBy.map { .string($0) })), ("specsRun", .number(Double(r.specsRun))),
                    ("specsNamingBehaviour", .number(Double(r.specsNamingBehaviour))), ("seconds", round2(r.seconds)),
                ]))
            })),
        ]))
    }

    /// The report as JSON text, one member per line.
    public var jsonText: String { BenchReport.pretty(json) + "\n" }

    /// A problem in a report's JSON: the path of the member at fault and what is wrong.
    public struct DecodingProblem: Error, Sendable {
        /// Where: object keys and array indices from the root.
        public var path: [JSONPathComponent]
        /// What is wrong.
        public var message: String
    }

    /// Decodes what `json` encodes.
    public init(json: JSONValue) throws(DecodingProblem) {
        func fail(_ path: [JSONPathComponent], _ message: String) -> DecodingProblem { DecodingProblem(path: path, message: message) }
        func member(_ v: JSONValue, _ path: [JSONPathComponent], _ key: String) throws(DecodingProblem) -> JSONValue {
            guard case .object(let o) = v else { throw fail(path, "must be an object") }
            guard let m = o[key] else { throw fail(path, "has no '\(key)'") }
            return m
        }
        func string(_ v: JSONValue, _ path: [JSONPathComponent], _ key: String) throws(DecodingProblem) -> String {
            guard let s = try member(v, path, key).stringValue else { throw fail(path + [.key(key)], "must be a string") }
            return s
        }
        func count(_ v: JSONValue, _ path: [JSONPathComponent], _ key: String) throws(DecodingProblem) -> Int {
            guard let n = try member(v, path, key).intValue, n >= 0 else { throw fail(path + [.key(key)], "must be a whole number, at least 0") }
            return n
        }
        func number(_ v: JSONValue, _ path: [JSONPathComponent], _ key: String) throws(DecodingProblem) -> Double {
            guard case .number(let d) = try member(v, path, key), d >= 0 else { throw fail(path + [.key(key)], "must be a number, at least 0") }
            return d
        }
        let impl = try member(json, [], "implementation")
        implementation = try string(impl, [.key("implementation")], "name")
        version = try string(impl, [.key("implementation")], "version")
        let modeName = try string(json, [], "mode")
        guard let mode = MutationMode(rawValue: modeName) else { throw fail([.key("mode")], "must be 'full' or 'quick'") }
        self.mode = mode
        specs = try count(json, [], "specs")
        seconds = try number(json, [], "seconds")
        guard let items = try member(json, [], "mutants").arrayValue else { throw fail([.key("mutants")], "must be a list") }
        var results: [MutantResult] = []
        for (i, item) in items.enumerated() {
            let path: [JSONPathComponent] = [.key("mutants"), .index(i)]
            guard let killers = try member(item, path, "killedBy").arrayValue else { throw fail(path + [.key("killedBy")], "must be a list") }
            var killedBy: [String] = []
            for (k, id) in killers.enumerated() {
                guard let s = id.stringValue else { throw fail(path + [.key("killedBy"), .index(k)], "must be a spec id (a string)") }
                killedBy.append(s)
            }
            let behaviour = try string(item, path, "behaviour")
            guard Mutant.isBehaviourID(Substring(behaviour)) else { throw fail(path + [.key("behaviour")], "'\(behaviour)' is not a behaviour id") }
            results.append(MutantResult(name: try string(item, path, "name"), behaviour: behaviour, summary: try string(item, path, "summary"),
                                        killedBy: killedBy, specsRun: try count(item, path, "specsRun"),
                                        specsNamingBehaviour: try count(item, path, "specsNamingBehaviour"), seconds: try number(item, path, "seconds")))
        }
        self.results = results
        // The counts are derived; a file whose counts disagree with its mutants was edited by hand or truncated.
        for (key, value) in [("killed", killed), ("total", total)] where try count(json, [], key) != value {
            throw fail([.key(key)], "is \(try count(json, [], key)), but the mutants listed give \(value)")
        }
    }

    /// Reads a report `mutate --output` wrote; a problem names the file, line and column.
    public static func load(path: String) throws(SpecProblem) -> MutationReport {
        func problem(_ offset: Int?, _ bytes: [UInt8], _ message: String) -> SpecProblem {
            SpecProblem(SourceLocation(file: path, mark: mark(at: offset ?? 0, in: bytes)), message)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SpecProblem(SourceLocation(file: path, mark: SourceMark(line: 1, column: 1)), "cannot read the mutation report")
        }
        let bytes = Array(data)
        let value: JSONValue
        do { value = try JSONValue.parse(bytes: bytes) } catch { throw problem(error.offset, bytes, error.message) }
        do { return try MutationReport(json: value) } catch {
            let at = error.path.isEmpty ? "the report" : JSONPathComponent.describe(error.path)
            throw problem(JSONLocator.offset(of: error.path, in: bytes), bytes, "\(at) \(error.message) (not a report of cluster-conformance mutate --output)")
        }
    }

    /// The 1-based line and column of a byte offset.
    static func mark(at offset: Int, in bytes: [UInt8]) -> SourceMark {
        var line = 1, column = 1
        for b in bytes.prefix(max(0, offset)) {
            if b == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
        }
        return SourceMark(line: line, column: column)
    }

    // MARK: - Text

    /// The table `mutate` prints: mutant, behaviour, killed by.
    public func table() -> String {
        let rows = results.map { [$0.name, $0.behaviour, $0.survived ? "SURVIVED" : "\($0.killedBy.count): \($0.killers)"] }
        let header = ["mutant", "behaviour", mode == .quick ? "killed by (specs run until the first kill)" : "killed by (specs)"]
        let widths = (0..<2).map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        func line(_ r: [String]) -> String {
            r[0].padding(toLength: widths[0], withPad: " ", startingAt: 0) + "  " + r[1].padding(toLength: widths[1], withPad: " ", startingAt: 0) + "  " + r[2]
        }
        var out = ([header] + rows).map(line).joined(separator: "\n") + "\n"
        out += "\(implementation) \(version): mutation score \(score), \(mode.rawValue) mode, \(specs) specs, in \(String(format: "%.1f", seconds)) s\n"
        return out
    }

    // MARK: - Markdown and HTML (the matrix's "Mutation score" section)

    var modeSentence: String {
        mode == .full ? "every spec against every mutant" : "quick mode: each mutant faced the specs naming its behaviour first and stopped at its first kill, so a mutant's killing specs are only those it ran"
    }

    /// The `## Mutation score` section of CONFORMANCE.md.
    public func markdownSection() -> String {
        func code(_ s: String) -> String { "`\(s)`" }
        var md = "## Mutation score\n\n"
        md += "**\(killed) of \(total)** mutants of the reference killed (\(percent) %): \(implementation) \(version), \(modeSentence) "
        md += "(`cluster-conformance mutate --impl \(implementation)`). A mutant (`fixtures/node-mutants/`) is Node's own `node:cluster` with "
        md += "one catalogued behaviour broken the way another implementation might break it; a spec kills it when its result is unexpected.\n\n"
        md += "| mutant | behaviour | killing specs | first of them |\n| --- | --- | --- | --- |\n"
        for r in results {
            let first = r.survived ? "**survived**" : r.killedBy.prefix(Self.shownKillers).map(code).joined(separator: ", ")
                + (r.killedBy.count > Self.shownKillers ? ", …" : "")
            md += "| \(code(r.name)) | \(r.behaviour) | \(r.killedBy.count) | \(first) |\n"
        }
        md += "\n"
        let survivors = self.survivors
        if survivors.isEmpty {
            md += "No mutant survived.\n\n"
        } else {
            md += "Survivors (a behaviour the suite does not hold an implementation to):\n\n"
            for r in survivors {
                md += "- \(code(r.name)) (\(r.behaviour)): \(r.summary.replacingOccurrences(of: "|", with: "\\|")) "
                md += r.specsNamingBehaviour == 0 ? "No spec names \(r.behaviour).\n" : "\(r.specsNamingBehaviour) spec\(r.specsNamingBehaviour == 1 ? "" : "s") name \(r.behaviour); none notices.\n"
            }
            md += "\n"
        }
        return md
    }

    /// The "Mutation score" section of conformance.html.
    public func htmlSection() -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var h = "<h2 id=\"mutation-score\">Mutation score</h2>\n"
        h += "<p><strong>\(killed) of \(total)</strong> mutants of the reference killed (\(percent) %): \(esc(implementation)) \(esc(version)), \(esc(modeSentence)) "
        h += "(<code>cluster-conformance mutate --impl \(esc(implementation))</code>). A mutant (<code>fixtures/node-mutants/</code>) is Node's own "
        h += "<code>node:cluster</code> with one catalogued behaviour broken the way another implementation might break it; a spec kills it when its result is unexpected.</p>\n"
        h += "<table><tr><th>mutant</th><th>behaviour</th><th>killing specs</th><th>first of them</th></tr>\n"
        for r in results {
            let first = r.survived ? "<strong>survived</strong>" : r.killedBy.prefix(Self.shownKillers).map { "<code>\(esc($0))</code>" }.joined(separator: ", ")
                + (r.killedBy.count > Self.shownKillers ? ", …" : "")
            h += "<tr><td><code>\(esc(r.name))</code></td><td>\(esc(r.behaviour))</td><td class=\"\(r.survived ? "fail" : "pass")\">\(r.killedBy.count)</td><td>\(first)</td></tr>\n"
        }
        h += "</table>\n"
        let survivors = self.survivors
        if survivors.isEmpty {
            h += "<p>No mutant survived.</p>\n"
        } else {
            h += "<p>Survivors (a behaviour the suite does not hold an implementation to):</p>\n<ul>\n"
            for r in survivors {
                h += "<li><code>\(esc(r.name))</code> (\(esc(r.behaviour))): \(esc(r.summary)) "
                h += r.specsNamingBehaviour == 0 ? "No spec names \(esc(r.behaviour)).</li>\n" : "\(r.specsNamingBehaviour) spec\(r.specsNamingBehaviour == 1 ? "" : "s") name \(esc(r.behaviour)); none notices.</li>\n"
            }
            h += "</ul>\n"
        }
        return h
    }
}

/// One step of a path into a JSON value.
public enum JSONPathComponent: Sendable, Equatable {
    /// An object member.
    case key(String)
    /// An array item, from 0.
    case index(Int)

    /// `mutants[3].behaviour`.
    static func describe(_ path: [JSONPathComponent]) -> String {
        path.enumerated().map { i, c in
            switch c {
            case .key(let k): i == 0 ? k : ".\(k)"
            case .index(let n): "[\(n)]"
            }
        }.joined()
    }
}

/// Finds where a member of a JSON text starts, for messages that name a line (JSONValue keeps no positions).
enum JSONLocator {
    /// The byte offset of the value at `path` in `bytes` (valid JSON), or of the deepest existing part of it.
    static func offset(of path: [JSONPathComponent], in bytes: [UInt8]) -> Int? {
        var scanner = Scanner(bytes: bytes)
        scanner.skipSpace()
        var found = scanner.i
        for component in path {
            scanner.skipSpace()
            switch component {
            case .key(let key):
                guard scanner.peek == UInt8(ascii: "{") else { return found }
                scanner.i += 1
                var located = false
                while true {
                    scanner.skipSpace()
                    guard scanner.peek == UInt8(ascii: "\"") else { return found }
                    let name = scanner.string()
                    scanner.skipSpace()
                    scanner.i += 1  // ':'
                    scanner.skipSpace()
                    if name == key {
                        located = true
                        break
                    }
                    scanner.skipValue()
                    scanner.skipSpace()
                    guard scanner.peek == UInt8(ascii: ",") else { return found }
                    scanner.i += 1
                }
                if located { found = scanner.i }
            case .index(let n):
                guard scanner.peek == UInt8(ascii: "[") else { return found }
                scanner.i += 1
                for _ in 0..<n {
                    scanner.skipSpace()
                    scanner.skipValue()
                    scanner.skipSpace()
                    guard scanner.peek == UInt8(ascii: ",") else { return found }
                    scanner.i += 1
                }
                scanner.skipSpace()
                found = scanner.i
            }
        }
        return found
    }

    struct Scanner {
        let bytes: [UInt8]
        var i = 0

        var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipSpace() {
            while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { i += 1 }
        }

        /// Reads a string starting at its quote; escapes are kept as written (keys compared are plain).
        mutating func string() -> String {
            let start = i + 1
            i += 1
            while let b = peek, b != UInt8(ascii: "\"") { i += b == UInt8(ascii: "\\") ? 2 : 1 }
            let s = String(decoding: bytes[start..<min(i, bytes.count)], as: UTF8.self)
            i += 1
            return s
        }

        mutating func skipValue() {
            guard let b = peek else { return }
            switch b {
            case UInt8(ascii: "\""): _ = string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let c = peek {
                    if c == UInt8(ascii: "\"") { _ = string(); continue }
                    if c == UInt8(ascii: "{") || c == UInt8(ascii: "[") { depth += 1 }
                    if c == UInt8(ascii: "}") || c == UInt8(ascii: "]") { depth -= 1 }
                    i += 1
                    if depth == 0 { return }
                }
            default:
                while let c = peek, ![UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x0A, 0x0D, 0x09].contains(c) { i += 1 }
            }
        }
    }
}
