import ClusterSpec
import Foundation

/// The results of one implementation in a conformance matrix.
public struct MatrixColumn: Sendable {
    /// The implementation's name and version as its handshake gave them.
    public var info: ImplementationInfo
    /// Results by spec id.
    public var results: [String: SpecResult]
    /// The known deviations that applied.
    public var expectations: Expectations
    /// The run's summary.
    public var summary: Summary

    /// A column.
    public init(info: ImplementationInfo, results: [String: SpecResult], expectations: Expectations, summary: Summary) {
        self.info = info
        self.results = results
        self.expectations = expectations
        self.summary = summary
    }

    /// Specs passed, as a share of the specs that ran or were expected to (skips for lack of a feature
    /// count against it too: a missing feature is a gap).
    public var passPercentage: Double {
        let total = results.count
        return total == 0 ? 0 : Double(results.values.filter { $0.outcome == .pass }.count) * 100 / Double(total)
    }
}

/// Renders a conformance matrix: specs in rows grouped by area, implementations in columns.
public struct ConformanceMatrix: Sendable {
    /// The specs, in suite order.
    public var specs: [Spec]
    /// One column per implementation, in the order given.
    public var columns: [MatrixColumn]
    /// The suite's mutation score (`mutate --output`), rendered as a "Mutation score" section when present.
    public var mutation: MutationReport?

    /// A matrix of these results.
    public init(specs: [Spec], columns: [MatrixColumn]) {
        self.specs = specs
        self.columns = columns
    }

    /// The feature area of a spec: the directory it lives in under Specs/ (scheduling, listen, …).
    static func area(_ spec: Spec) -> String {
        let parts = spec.location.file.split(separator: "/")
        return parts.count >= 2 ? String(parts[parts.count - 2]) : "other"
    }

    var areas: [(name: String, specs: [Spec])] {
        var order: [String] = []
        var groups: [String: [Spec]] = [:]
        for s in specs {
            let a = Self.area(s)
            if groups[a] == nil { order.append(a) }
            groups[a, default: []].append(s)
        }
        return order.map { ($0, groups[$0]!.sorted { $0.id < $1.id }) }
    }

    /// A footnote for every failure, error, unexpected pass and known deviation.
    struct Note {
        var number: Int
        var text: String
    }

    func notes() -> [String: [Int: Note]] {
        var result: [String: [Int: Note]] = [:]
        var n = 0
        for (_, specs) in areas {
            for spec in specs {
                for (i, column) in columns.enumerated() {
                    guard let r = column.results[spec.id], [.fail, .error, .xfail, .xpass].contains(r.outcome) || !r.waivedInvariants.isEmpty || !r.failedAttempts.isEmpty else { continue }
                    n += 1
                    let first = r.messages.first { !$0.hasPrefix("expected: ") && !$0.hasPrefix("passed, but") } ?? r.messages.first ?? ""
                    let deviation = (column.expectations.deviations[spec.id].map { "Known deviation: \($0.reason). " } ?? "")
                        + r.waivedInvariants.map { "Known invariant deviation (\($0.rawValue)): \(column.expectations.invariants[$0]?.reason ?? ""). " }.joined()
                    // A retried result is explained by its earlier failure.
                    let observed = r.outcome == .xpass ? "" : firstLines(r.failedAttempts.isEmpty ? first : "attempt 1 failed: " + r.failedAttempts[0])
                    result[spec.id, default: [:]][i] = Note(number: n, text: "\(column.info.name) \(column.info.version) \(r.label) on `\(spec.id)`: \(deviation)\(observed)")
                }
            }
        }
        return result
    }

    /// One row's cells: the outcome of each column and its footnote number, if any.
    /// `label` is the outcome with any waived invariant (`pass · orphans`).
    func cells(_ spec: Spec, _ notes: [String: [Int: Note]]) -> [(outcome: String, label: String, note: Int?)] {
        columns.enumerated().map { i, c in
            if c.results[spec.id] == nil && !c.info.follows(spec) { return ("na", "n/a", nil) }
            return (c.results[spec.id]?.outcome.name ?? "—", c.results[spec.id]?.label ?? "—", notes[spec.id]?[i]?.number)
        }
    }

    /// "changed in Node 22: this spec describes <22" for a spec with `nodeVersions`, else nil.
    func versionMark(_ spec: Spec) -> String? {
        guard let range = spec.nodeVersions else { return nil }
        return "changed in Node " + range.changes.map(\.description).joined(separator: " and ") + ": this spec describes Node \(range)"
    }

    /// The summary row of a column: passed, total, percentage.
    func totals(_ c: MatrixColumn) -> (passed: Int, total: Int, percent: String) {
        (c.results.values.filter { $0.outcome == .pass }.count, c.results.count, String(format: "%.1f", c.passPercentage))
    }

    /// The ids of the specs whose expectations the documentation states (`basis: documented`).
    var documentedIDs: Set<String> { Set(specs.filter { $0.basis == .documented }.map(\.id)) }

    /// The documented score of a column: passes over the documented specs among its results (a red cell there
    /// breaks Node's documented contract). `totals` is the Node-compatibility score, over every spec.
    public func documentedTotals(_ c: MatrixColumn) -> (passed: Int, total: Int, percent: String) {
        let results = c.results.filter { documentedIDs.contains($0.key) }.values
        let passed = results.filter { $0.outcome == .pass }.count
        return (passed, results.count, String(format: "%.1f", results.isEmpty ? 0 : Double(passed) * 100 / Double(results.count)))
    }

    func firstLines(_ text: String) -> String {
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let joined = lines.prefix(3).joined(separator: " ")
        return joined.count > 400 ? String(joined.prefix(400)) + "…" : joined
    }

    /// Every cell as a line `spec<TAB>implementation version<TAB>outcome`, sorted: two matrices gave the same
    /// verdicts when these are equal.
    public func verdicts() -> String {
        var lines: [String] = []
        for spec in specs {
            for (column, cell) in zip(columns, cells(spec, [:])) {
                lines.append("\(spec.id)\t\(column.info.name) \(column.info.version)\t\(cell.outcome)")
            }
        }
        return lines.sorted().joined(separator: "\n") + "\n"
    }

    // MARK: - Markdown

    /// `CONFORMANCE.md`.
    public func markdown(generatedBy command: String) -> String {
        let notes = notes()
        var md = "# node:cluster conformance\n\n"
        md += "Generated by `\(command)` on this machine: each behaviour spec of `Specs/` run against each "
        md += "implementation. Node.js 20 is the reference (a spec is right only if Node passes it). Cells: **pass**; "
        md += "**fail** (a new failure); **xfail** (a known deviation, listed with its reason in "
        md += "`fixtures/<impl>/expectations.yaml`); **xpass** (passes although listed as a deviation); **skip** (a feature "
        md += "the implementation does not advertise, or listed as skipped); **error** (the harness or the implementation "
        md += "broke). A runner invariant that an implementation breaks everywhere (for example `orphans`: workers outlive the "
        md += "primary) is stated once in its expectations file and shown beside the spec's own outcome, as in **pass · orphans**, "
        md += "so it hides no other deviation. Every non-pass cell has a footnote. Where Node changed a behaviour on purpose, "
        md += "a spec states the Node versions it describes and a sibling spec the others; its row says *(changed in Node N: "
        md += "this spec describes Node <N)*, and **n/a** marks an implementation that follows another Node version (its "
        md += "handshake's `node`: Node's own version, the one Deno and Bun emulate, Node 20 for Swift), which does not count.\n\n"
        md += "Each spec states its basis (`Specs/README.md`). A spec marked *(observed)* checks what Node 20 does where its "
        md += "documentation is silent or says otherwise (its comment says which); the others check what the documentation "
        md += "states. So each implementation has two scores: **documented**, its passes over the documented specs it ran "
        md += "(a failure there breaks Node's documented contract), and **Node compatibility**, its passes over every spec it ran.\n\n"
        md += "| implementation | version | pass | specs | documented | Node compatibility |\n| --- | --- | --- | --- | --- | --- |\n"
        for c in columns {
            let t = totals(c), d = documentedTotals(c)
            md += "| \(c.info.name) | \(c.info.version) | \(t.passed) | \(t.total) | \(d.passed) of \(d.total), \(d.percent) % | \(t.percent) % |\n"
        }
        md += "\n"
        for (area, specs) in areas {
            md += "## \(area)\n\n| spec | " + columns.map { "\($0.info.name) \($0.info.version)" }.joined(separator: " | ") + " |\n"
            md += "| --- |" + String(repeating: " --- |", count: columns.count) + "\n"
            for spec in specs {
                md += "| `\(spec.id)`\(spec.basis == .observed ? " *(observed)*" : "")\(versionMark(spec).map { " *(\($0))*" } ?? "") |" + cells(spec, notes).map { " \($0.label)\($0.note.map { " [\($0)]" } ?? "") |" }.joined() + "\n"
            }
            md += "\n"
        }
        let all = notes.values.flatMap(\.values).sorted { $0.number < $1.number }
        if !all.isEmpty {
            md += "## Notes\n\n"
            for n in all { md += "\(n.number). \(n.text.replacingOccurrences(of: "|", with: "\\|"))\n" }
        }
        if let mutation { md += (all.isEmpty ? "" : "\n") + mutation.markdownSection() }
        return md
    }

    // MARK: - HTML

    /// `conformance.html`: one self-contained page.
    public func html(generatedBy command: String) -> String {
        let notes = notes()
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>node:cluster conformance</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
            table{border-collapse:collapse;margin:1em 0}
            th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
            th{background:#f3f3f3}
            td.pass{background:#d9f2d9}td.fail,td.error,td.xpass{background:#f7d4d4}
            td.xfail{background:#fbefc8}td.skip{background:#e8e8e8}td.na{color:#888}em.changed{color:#555;font-size:12px}
            .observed{font-size:11px;font-style:italic;color:#666;border:1px solid #bbb;border-radius:3px;padding:0 3px;margin-left:4px}
            code{font-size:13px}
            </style></head><body>
            <h1>node:cluster conformance</h1>
            <p>Generated by <code>\(esc(command))</code>. Node.js 20 is the reference: a spec is right only if Node passes it.
            xfail = a known deviation (see <code>fixtures/&lt;impl&gt;/expectations.yaml</code>), xpass = passes although listed as one; n/a = the spec describes Node versions other than the one the implementation follows (a row "changed in Node N" has a sibling spec for the other versions); "pass · orphans" = the spec passed, and the implementation broke a runner invariant it is known to break everywhere (stated once in its expectations file).</p>
            <p>Each spec states its basis (<code>Specs/README.md</code>). A spec marked <span class="observed">observed</span> checks what Node 20 does where its documentation is silent or says otherwise (its comment says which); the others check what the documentation states. So each implementation has two scores: <b>documented</b>, its passes over the documented specs it ran (a failure there breaks Node's documented contract), and <b>Node compatibility</b>, its passes over every spec it ran.</p>
            <table><tr><th>implementation</th><th>version</th><th>pass</th><th>specs</th><th>documented</th><th>Node compatibility</th></tr>

            """
        for c in columns {
            let t = totals(c), d = documentedTotals(c)
            h += "<tr><td>\(esc(c.info.name))</td><td>\(esc(c.info.version))</td><td>\(t.passed)</td><td>\(t.total)</td>"
                + "<td>\(d.passed) of \(d.total), \(d.percent) %</td><td>\(t.percent) %</td></tr>\n"
        }
        h += "</table>\n"
        for (area, specs) in areas {
            h += "<h2>\(esc(area))</h2>\n<table><tr><th>spec</th>" + columns.map { "<th>\(esc($0.info.name)) \(esc($0.info.version))</th>" }.joined() + "</tr>\n"
            for spec in specs {
                h += "<tr><td><code>\(esc(spec.id))</code>\(spec.basis == .observed ? "<span class=\"observed\" title=\"beyond or against Node's documentation\">observed</span>" : "")\(versionMark(spec).map { " <em class=\"changed\">\(esc($0))</em>" } ?? "")</td>"
                    + cells(spec, notes).map { "<td class=\"\($0.outcome)\">\($0.label)\($0.note.map { " <a href=\"#n\($0)\">[\($0)]</a>" } ?? "")</td>" }.joined()
                    + "</tr>\n"
            }
            h += "</table>\n"
        }
        let all = notes.values.flatMap(\.values).sorted { $0.number < $1.number }
        if !all.isEmpty {
            h += "<h2>Notes</h2>\n<ol>\n"
            for n in all { h += "<li id=\"n\(n.number)\">\(esc(n.text))</li>\n" }
            h += "</ol>\n"
        }
        if let mutation { h += mutation.htmlSection() }
        return h + "</body></html>\n"
    }
}
