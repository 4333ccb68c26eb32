import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where a reporter writes: a file descriptor, written with whole lines, or a buffer emptied later in one piece.
public final class ReportSink: Sendable {
    private let fd: Int32
    private let owned: Bool
    private let buffered: Bool
    private let text = Mutex("")

    /// Standard output.
    public static let standardOutput = ReportSink(fd: 1, owned: false)
    /// Standard error.
    public static let standardError = ReportSink(fd: 2, owned: false)

    init(fd: Int32, owned: Bool) {
        self.fd = fd
        self.owned = owned
        buffered = false
    }

    private init() {
        fd = -1
        owned = false
        buffered = true
    }

    /// A file, created or truncated.
    public static func file(_ path: String) throws(SystemError) -> ReportSink {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open \(path)") }
        return ReportSink(fd: fd, owned: true)
    }

    /// Text kept in memory until `flush(to:)`: one implementation's report among several running at once, printed
    /// as one block instead of interleaved lines.
    public static func buffer() -> ReportSink { ReportSink() }

    /// Whether this is a terminal (a buffer is not).
    public var isTerminal: Bool { !buffered && isatty(fd) == 1 }

    /// Writes text as is.
    public func write(_ text: String) {
        if buffered { self.text.withLock { $0 += text } } else { try? writeAll(fd, Array(text.utf8)) }
    }

    /// Writes what a buffer holds to `sink` and empties it.
    public func flush(to sink: ReportSink) {
        guard buffered else { return }
        let held = text.withLock { b in defer { b = "" }; return b }
        if !held.isEmpty { sink.write(held) }
    }

    deinit { if owned { close(fd) } }
}

func seconds(_ d: Duration) -> String {
    String(format: "%.2f s", Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18)
}

func plural(_ n: Int, _ word: String) -> String { "\(n) \(word)\(n == 1 ? "" : "s")" }

func milliseconds(_ d: Duration) -> Int {
    Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
}

/// Human-readable progress and failures; on a terminal the progress line is rewritten in place.
public final class HumanReporter: Reporter {
    private let sink: ReportSink
    private let state = Mutex((done: 0, total: 0, name: ""))
    private let verbose: Bool
    private let listsPasses: Bool

    /// A reporter writing to `sink`; `verbose` lists every spec, not only the ones that did not pass, as does a
    /// sink that is not a terminal (a log) unless `listsPasses` says otherwise.
    public init(sink: ReportSink, verbose: Bool = false, listsPasses: Bool? = nil) {
        self.sink = sink
        self.verbose = verbose
        self.listsPasses = verbose || (listsPasses ?? !sink.isTerminal)
    }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        state.withLock { $0 = (0, specs * repeats, "\(implementation.name) \(implementation.version)") }
        let times = repeats > 1 ? " × \(repeats)" : ""
        sink.write("cluster-conformance: \(implementation.name) \(implementation.version), \(plural(specs, "spec"))\(times), \(plural(jobs, "job"))\n")
    }

    public func result(_ r: SpecResult, iteration: Int) {
        let (done, total) = state.withLock { s in
            s.done += 1
            return (s.done, s.total)
        }
        let tty = sink.isTerminal
        if tty { sink.write("\r\u{1B}[K") }
        let run = iteration > 1 ? " (run \(iteration))" : ""
        switch r.outcome {
        case .pass:
            if !r.failedAttempts.isEmpty {
                sink.write("  pass  \(r.id)\(run) \(seconds(r.duration)), after \(r.failedAttempts.count) failed attempt\(r.failedAttempts.count == 1 ? "" : "s"): \(r.failedAttempts[0])\n")
            } else if listsPasses { sink.write("  pass  \(r.id)\(run) \(seconds(r.duration))\n") }
        case .skip:
            sink.write("  skip  \(r.id)\(run): \(r.messages.joined(separator: "; "))\n")
        case .xfail:
            if listsPasses { sink.write("  xfail \(r.id)\(run): \(r.messages.first ?? "")\n") }
        case .xpass:
            sink.write("  XPASS \(r.id)\(run) (\(r.location.file)): \(r.messages.first ?? "")\n")
        case .fail, .error:
            var text = "  \(r.outcome == .fail ? "FAIL" : "ERROR") \(r.id)\(run) (\(r.location.file))\n"
            for m in r.messages { text += indent(m, by: 8) + "\n" }
            if !r.logTail.isEmpty { text += "        last events:\n" + r.logTail.suffix(12).map { "          \($0)" }.joined(separator: "\n") + "\n" }
            let err = r.stderrTail.split(separator: "\n", omittingEmptySubsequences: false).suffix(10).joined(separator: "\n")
            if !err.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { text += "        stderr:\n" + indent(String(err), by: 10) + "\n" }
            sink.write(text)
        }
        if tty { sink.write("[\(done)/\(total)] \(r.id)") }
    }

    public func end(_ s: Summary) {
        if sink.isTerminal { sink.write("\r\u{1B}[K") }
        let name = state.withLock { $0.name }
        let runs = s.repeats > 1 ? " × \(s.repeats) runs" : ""
        sink.write("\(name): \(plural(s.specs, "spec"))\(runs): \(s.counts) in \(seconds(s.duration))\n")
    }

    private func indent(_ text: String, by n: Int) -> String {
        let pad = String(repeating: " ", count: n)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { pad + $0 }.joined(separator: "\n")
    }
}

/// Test Anything Protocol, version 13.
public final class TAPReporter: Reporter {
    private let sink: ReportSink
    private let n = Mutex(0)

    /// A TAP reporter writing to `sink`.
    public init(sink: ReportSink) { self.sink = sink }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        sink.write("TAP version 13\n1..\(specs * repeats)\n# \(implementation.name) \(implementation.version)\n")
    }

    public func result(_ r: SpecResult, iteration: Int) {
        let i = n.withLock { $0 += 1; return $0 }
        switch r.outcome {
        case .pass: sink.write("ok \(i) - \(r.id)\n")
        case .skip: sink.write("ok \(i) - \(r.id) # SKIP \(r.messages.joined(separator: "; "))\n")
        case .xfail: sink.write("not ok \(i) - \(r.id) # TODO \(r.messages.first ?? "")\n")
        case .fail, .error, .xpass:
            var text = "not ok \(i) - \(r.id)\n  ---\n  outcome: \(r.outcome.name)\n  file: \(r.location.file)\n  message: |\n"
            for m in r.messages { text += m.split(separator: "\n", omittingEmptySubsequences: false).map { "    \($0)\n" }.joined() }
            text += "  ...\n"
            sink.write(text)
        }
    }

    public func end(_ s: Summary) {
        sink.write("# \(s.counts)\n")
    }
}

/// JSON Lines: a header (the implementation, the suite's identity and the expectations applied), one line per
/// spec run, a footer. `matrix --from` reads such files back (`ResultsFile`).
public final class JSONLReporter: Reporter {
    private let sink: ReportSink
    private let suite: SuiteIdentity?
    private let expectations: Expectations?

    /// A JSON Lines reporter writing to `sink`; `suite` and `expectations` go into the header so that results of
    /// separate runs can be merged (and refused when they judged another suite).
    public init(sink: ReportSink, suite: SuiteIdentity? = nil, expectations: Expectations? = nil) {
        self.sink = sink
        self.suite = suite
        self.expectations = expectations
    }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        let impl = JSONObject([("name", .string(implementation.name)), ("version", .string(implementation.version)),
                               ("node", .string(implementation.node.description)),
                               ("features", .array(implementation.features.sorted().map { .string($0) }))])
        let header = JSONObject([("type", "header"), ("protocol", .number(Double(protocolVersion))), ("implementation", .object(impl))]
                                + ResultsFile.headerFields(suite: suite, expectations: expectations)
                                + [("specs", .number(Double(specs))), ("repeats", .number(Double(repeats)))])
        sink.write(JSONValue.object(header).jsonText + "\n")
    }

    public func result(_ r: SpecResult, iteration: Int) {
        var line = JSONObject([("type", "result"), ("id", .string(r.id)), ("run", .number(Double(iteration))),
                               ("outcome", .string(r.outcome.name)), ("duration_ms", .number(Double(milliseconds(r.duration)))),
                               ("messages", .array(r.messages.map { .string($0) }))])
        if !r.waivedInvariants.isEmpty { line["waived"] = .array(r.waivedInvariants.map { .string($0.rawValue) }) }
        if !r.failedAttempts.isEmpty { line["failedAttempts"] = .array(r.failedAttempts.map { .string($0) }) }
        line["events"] = .array(r.events.map { .object($0.fields) })
        sink.write(JSONValue.object(line).jsonText + "\n")
    }

    public func end(_ s: Summary) {
        let footer = JSONObject([("type", "footer"), ("passed", .number(Double(s.passed))), ("failed", .number(Double(s.failed))),
                                 ("skipped", .number(Double(s.skipped))), ("errors", .number(Double(s.errors))),
                                 ("xfailed", .number(Double(s.xfailed))), ("xpassed", .number(Double(s.xpassed))),
                                 ("duration_ms", .number(Double(milliseconds(s.duration))))])
        sink.write(JSONValue.object(footer).jsonText + "\n")
    }
}

/// JUnit XML, written when the run ends.
public final class JUnitReporter: Reporter {
    private let sink: ReportSink
    private let results = Mutex<[(SpecResult, Int)]>([])
    private let name = Mutex("")

    /// A JUnit reporter writing to `sink`.
    public init(sink: ReportSink) { self.sink = sink }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        name.withLock { $0 = "\(implementation.name) \(implementation.version)" }
    }

    public func result(_ r: SpecResult, iteration: Int) { results.withLock { $0.append((r, iteration)) } }

    public func end(_ s: Summary) {
        let suite = name.withLock { $0 }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml += "<testsuite name=\"\(escape(suite))\" tests=\"\(s.passed + s.failed + s.skipped + s.errors + s.xfailed + s.xpassed)\" failures=\"\(s.failed + s.xpassed)\" errors=\"\(s.errors)\" skipped=\"\(s.skipped + s.xfailed)\" time=\"\(Double(milliseconds(s.duration)) / 1000)\">\n"
        for (r, iteration) in results.withLock({ $0 }) {
            let name = iteration > 1 ? "\(r.id) (run \(iteration))" : r.id
            xml += "  <testcase classname=\"\(escape(suite))\" name=\"\(escape(name))\" file=\"\(escape(r.location.file))\" time=\"\(Double(milliseconds(r.duration)) / 1000)\""
            let body = r.messages.joined(separator: "\n")
            switch r.outcome {
            case .pass: xml += "/>\n"
            case .skip, .xfail: xml += "><skipped message=\"\(escape(body))\"/></testcase>\n"
            case .xpass: xml += "><failure message=\"\(escape(r.messages.first ?? ""))\">\(escape(body))</failure></testcase>\n"
            case .fail: xml += "><failure message=\"\(escape(r.messages.first ?? ""))\">\(escape(body + "\n\n" + r.logTail.joined(separator: "\n")))</failure></testcase>\n"
            case .error: xml += "><error message=\"\(escape(r.messages.first ?? ""))\">\(escape(body + "\n\n" + r.stderrTail))</error></testcase>\n"
            }
        }
        xml += "</testsuite>\n"
        sink.write(xml)
    }

    private func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case let c where c.value < 0x20 && c != "\n" && c != "\t": out += "?"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }
}

/// Sends every call to several reporters.
public struct ReporterFan: Reporter {
    let reporters: [any Reporter]

    /// A reporter that forwards to all of `reporters`.
    public init(_ reporters: [any Reporter]) { self.reporters = reporters }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        reporters.forEach { $0.begin(implementation: implementation, specs: specs, repeats: repeats, jobs: jobs) }
    }
    public func result(_ result: SpecResult, iteration: Int) { reporters.forEach { $0.result(result, iteration: iteration) } }
    public func end(_ summary: Summary) { reporters.forEach { $0.end(summary) } }
}

/// Prints what a buffer sink holds to another sink when the run ends: placed after the reporters writing into the
/// buffer, it turns one implementation's report into one block (the matrix runs several at once).
public struct BufferFlush: Reporter {
    let buffer: ReportSink
    let sink: ReportSink

    /// Flushes `buffer` to `sink` at the end of the run.
    public init(_ buffer: ReportSink, to sink: ReportSink) {
        self.buffer = buffer
        self.sink = sink
    }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {}
    public func result(_ result: SpecResult, iteration: Int) {}
    public func end(_ summary: Summary) {
        // A progress line (`ProgressLine`) may stand on the terminal: the block replaces it.
        if sink.isTerminal { sink.write("\r\u{1B}[K") }
        buffer.flush(to: sink)
    }
}

/// On a terminal, one line that counts the results of every implementation of a run so far (`[done/total] spec-id`),
/// redrawn with each result; the matrix shows it while its implementations' reports wait in their buffers. Writes
/// nothing to a sink that is not a terminal.
public final class ProgressLine: Reporter {
    private let sink: ReportSink
    private let state = Mutex((done: 0, total: 0))

    /// A progress line on `sink`, shared by the reporters of every implementation of a run.
    public init(sink: ReportSink) { self.sink = sink }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
        state.withLock { $0.total += specs * repeats }
    }

    public func result(_ result: SpecResult, iteration: Int) {
        let (done, total) = state.withLock { s in
            s.done += 1
            return (s.done, s.total)
        }
        if sink.isTerminal { sink.write("\r\u{1B}[K[\(done)/\(total)] \(result.id)") }
    }

    public func end(_ summary: Summary) {}
}

/// Keeps every result by spec id (the last run of each), for the matrix.
public final class ResultCollector: Reporter {
    private let store = Mutex<[String: SpecResult]>([:])

    /// An empty collector.
    public init() {}

    /// The results so far.
    public var results: [String: SpecResult] { store.withLock { $0 } }

    public func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {}
    public func result(_ result: SpecResult, iteration: Int) {
        var r = result
        r.events = []  // the matrix needs outcomes and messages, not whole logs
        store.withLock { $0[r.id] = r }
    }
    public func end(_ summary: Summary) {}
}
