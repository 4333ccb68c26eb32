// The bench's report writers: a table for the terminal, JSON for machines, Markdown for BENCHMARKS.md.

import ClusterSpec
import Foundation

/// Writes a bench's results.
public enum BenchReport {
    // MARK: - Cells

    /// The headline and the details of a row, as text.
    static func cells(_ row: BenchRow) -> (result: String, details: String) {
        if let error = row.error { return ("error", error) }
        let n = row.number
        func int(_ name: String) -> String { grouped(Int(n(name) ?? 0)) }
        func latency(_ keys: [(String, String)]) -> String {
            guard case .object(let l)? = row.metrics["latencyUs"] else { return "" }
            return keys.compactMap { key, label in
                if case .number(let v)? = l[key] { return "\(label) \(microseconds(v))" }
                return nil
            }.joined(separator: " · ")
        }
        switch row.measurement {
        case .limit, .rr, .none:
            var details = latency([("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")]) + " · \(int("ok"))/\(int("connections")) ok"
            let errors = Int(n("errors") ?? 0)
            details += " · \(grouped(errors)) error\(errors == 1 ? "" : "s")"
            if errors > 0 { details += " (refused \(int("refused")), lost \(int("lost")), hung \(int("hung")), other \(int("other")))" }
            return ("\(int("connPerS")) conn/s", details)
        case .coldStart:
            return (String(format: "%.1f ms", n("medianMs") ?? 0),
                    String(format: "median of %d; min %.1f ms, max %.1f ms", Int(n("trials") ?? 0), n("minMs") ?? 0, n("maxMs") ?? 0))
        case .memory:
            let workers = row.metrics["workersKB"]?.arrayValue?.compactMap { v -> String? in
                if case .number(let kb) = v { return mebibytes(kb) }
                return nil
            } ?? []
            return ("worker \(mebibytes(n("workerMedianKB") ?? 0)) MiB",
                    "primary \(mebibytes(n("primaryKB") ?? 0)) MiB; workers \(workers.joined(separator: ", ")) MiB")
        case .descriptors:
            let growth = Int(n("growth") ?? 0)
            return ("\(growth >= 0 ? "+" : "")\(growth) fds",
                    "primary \(int("primaryBefore")) → \(int("primaryAfter")) after \(int("connections")) round-robin connections")
        case .ipcSmall, .ipcLarge:
            return ("\(int("roundTripsPerS")) round-trips/s",
                    latency([("p50", "p50"), ("p99", "p99")]) + " · \(int("count")) × \(bytes(Int(n("bytes") ?? 0)))")
        case .chaos:
            return ("\(int("kills")) kills",
                    "ok \(int("ok")) · lost \(int("lost")) · hung \(int("hung")) · refused \(int("refused")) · \(int("replacements")) re-forked · \(int("connPerS")) conn/s")
        }
    }

    static func ratioText(_ results: BenchResults, _ row: BenchRow) -> String {
        guard let r = results.ratio(row) else { return "" }
        return String(format: "%.2f×", r)
    }

    static func implLabel(_ results: BenchResults, _ name: String) -> String {
        results.implementations.first { $0.descriptor == name }.map { impl in
            impl.name == nil || impl.name == name ? impl.label : "\(name) (\(impl.label))"
        } ?? name
    }

    // MARK: - Table

    /// The terminal table: one row per measurement and implementation, with the ratio to the reference.
    public static func table(_ results: BenchResults) -> String {
        let refHeader = results.reference.map { "vs \($0)" } ?? ""
        var lines: [[String]] = [["measurement", "impl", "result", refHeader, "details"]]
        for row in results.rows {
            let (result, details) = cells(row)
            lines.append([row.measurement.rawValue, implLabel(results, row.implementation), result, ratioText(results, row), details])
        }
        let widths = (0..<4).map { c in lines.map { $0[c].count }.max() ?? 0 }
        var out = ""
        for (i, cols) in lines.enumerated() {
            var line = ""
            for c in 0..<4 {
                let pad = String(repeating: " ", count: widths[c] - cols[c].count)
                line += (c == 3 ? pad + cols[c] : cols[c] + pad) + "  "
            }
            out += line + cols[4] + "\n"
            if i == 0 { out += String(repeating: "-", count: widths.reduce(0, +) + 8 + 7) + "\n" }
        }
        return out
    }

    // MARK: - JSON

    /// Every number of the run.
    public static func json(_ results: BenchResults) -> JSONValue {
        .object(JSONObject([
            ("command", .string(results.commandLine)),
            ("machine", results.machine.json),
            ("parameters", results.parameters.json),
            ("reference", results.reference.map { .string($0) } ?? .null),
            ("implementations", .array(results.implementations.map { impl in
                .object(JSONObject([
                    ("impl", .string(impl.descriptor)), ("name", impl.name.map { .string($0) } ?? .null),
                    ("version", impl.version.map { .string($0) } ?? .null), ("runtime", impl.runtime.map { .string($0) } ?? .null),
                    ("command", impl.command.map { .array($0.map { .string($0) }) } ?? .null),
                ]))
            })),
            ("rows", .array(results.rows.map { row in
                var members: [(String, JSONValue)] = [("measurement", .string(row.measurement.rawValue)), ("impl", .string(row.implementation))]
                members.append(("error", row.error.map { .string($0) } ?? .null))
                members.append(("metrics", .object(row.metrics)))
                members.append(("ratio", results.ratio(row).map { rounded($0, 3) } ?? .null))
                return .object(JSONObject(members))
            })),
            ("seconds", rounded(results.seconds, 2)),
        ]))
    }

    /// JSON text with one member per line (arrays of plain values on one line).
    public static func pretty(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .object(let o) where !o.members.isEmpty:
            let members = o.members.map { "\(inner)\(JSONValue.string($0.key).jsonText): \(pretty($0.value, indent: inner))" }
            return "{\n" + members.joined(separator: ",\n") + "\n\(indent)}"
        case .array(let items) where items.contains(where: { if case .object = $0 { return true }; if case .array = $0 { return true }; return false }):
            return "[\n" + items.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        default:
            return value.jsonText
        }
    }

    // MARK: - Markdown

    /// A BENCHMARKS.md-style document: the machine, the versions, the command, the parameters, the tables
    /// and the ratios.
    public static func markdown(_ results: BenchResults) -> String {
        let p = results.parameters, m = results.machine
        var out = "# Benchmarks\n\n"
        out += "Measured by `cluster-conformance bench`: every implementation through the fixture protocol "
            + "(`fixtures/PROTOCOL.md`), by the same client, in one run. Numbers are meaningful only from a release build: "
            + "`swift run -c release cluster-conformance bench …` (the runner then starts the release `cluster-fixture` beside it).\n\n"
        if m.build != "release" {
            out += "> **This run is from a \(m.build) build: its numbers do not measure the implementations.**\n\n"
        }
        if p.smoke { out += "> **A `--smoke` run: every count is shrunk; the numbers are not comparable with a full run.**\n\n" }

        out += "## Machine\n\n| | |\n| --- | --- |\n"
        out += "| CPU | \(m.cpuModel) |\n| processors | \(m.processors) |\n| kernel | \(m.kernel) |\n"
        out += "| memory | \(String(format: "%.1f", Double(m.memoryKB) / 1_048_576)) GiB |\n"
        out += "| build | \(m.build) (`\(m.runner)`) |\n"
        out += "| Swift compiler | \(m.swiftCompiler ?? "unknown") |\n\n"

        out += "## Versions\n\n| impl | implementation | runtime | fixture command |\n| --- | --- | --- | --- |\n"
        for impl in results.implementations {
            out += "| `\(impl.descriptor)` | \(impl.name.map { "\($0) \(impl.version ?? "?")" } ?? "did not start") | \(impl.runtime ?? "") | "
                + (impl.command.map { "`\($0.joined(separator: " "))`" } ?? "") + " |\n"
        }
        out += "\n## Command\n\n```\n\(results.commandLine)\n```\n\n"

        out += "## Parameters\n\n| parameter | value |\n| --- | --- |\n"
        out += "| workers per fixture (N) | \(p.workers) |\n| client threads (C) | \(p.clients) |\n"
        out += "| connections per client thread (M) | \(grouped(p.connections)) (\(grouped(p.loadConnections)) per load row) |\n"
        out += "| client deadline (connect, greeting, end of stream) | \(p.deadlineMs) ms |\n"
        out += "| cold-start trials | \(p.coldStarts) |\n| memory settle period | \(p.settleMs) ms |\n"
        out += "| connections between the descriptor counts | \(grouped(p.descriptorConnections)) |\n"
        out += "| IPC round-trips | \(grouped(p.ipcCount)) × \(bytes(p.ipcSmallBytes)); \(grouped(p.ipcLargeCount)) × \(bytes(p.ipcLargeBytes)) |\n"
        out += "| chaos | \(p.chaosKills) kills, one every \(p.chaosIntervalMs) ms |\n"
        out += "| run time | \(String(format: "%.1f", results.seconds)) s |\n\n"

        out += "## Results\n\n"
        let refHeader = results.reference.map { "vs `\($0)`" } ?? "ratio"
        out += "| measurement | impl | result | \(refHeader) | details |\n| --- | --- | ---: | ---: | --- |\n"
        for row in results.rows {
            let (result, details) = cells(row)
            out += "| \(row.measurement.rawValue) | \(implLabel(results, row.implementation)) | \(result) | \(ratioText(results, row)) | \(details.replacingOccurrences(of: "|", with: "\\|")) |\n"
        }

        if let reference = results.reference {
            let impls = results.implementations.map(\.descriptor)
            out += "\n## Ratios to `\(reference)`\n\n"
            out += "Each implementation's headline number over the reference's, from this run. Higher is better for "
                + "conn/s and round-trips/s; lower is better for cold start and memory.\n\n"
            out += "| measurement | headline | " + impls.map { "`\($0)`" }.joined(separator: " | ") + " |\n"
            out += "| --- | --- | " + impls.map { _ in "---:" }.joined(separator: " | ") + " |\n"
            for kind in p.rows where kind != .limit {
                guard let h = kind.headline else { continue }
                let cells = impls.map { impl -> String in
                    guard let row = results.rows.first(where: { $0.measurement == kind && $0.implementation == impl }) else { return "" }
                    return row.error != nil ? "error" : ratioText(results, row)
                }
                out += "| \(kind.rawValue) | \(h.metric) (\(h.higherIsBetter ? "higher" : "lower") is better) | \(cells.joined(separator: " | ")) |\n"
            }
        }

        out += "\n## What the rows measure\n\n"
        out += """
            - **limit**: the bench's own accept loop (\(p.workers) threads in the bench process: blocking accept, the greeting \
            line, read to end of stream, close), measured by the same client: what the client reaches on this machine. \
            Measured once per run.
            - **rr**, **none**: short connections under round-robin and under the shared handle. \(p.clients) client threads \
            each make \(grouped(p.connections)) connections one after another: connect to 127.0.0.1, read the greeting line \
            `{"worker":ID,"server":"s"}`, shutdown(SHUT_WR), read to end of stream, close. Latency is connect start to end \
            of stream (µs, nearest-rank percentiles). Errors: refused, lost (reset, or end of stream before the greeting), \
            hung (nothing within the deadline). The fixture also writes one `connection` event line per accepted \
            connection (protocol §5.4), in every implementation alike.
            - **cold-start**: spawn of the fixture to the `listening` event of the last of its \(p.workers) workers, as the \
            bench reads it (hello, then \(p.workers) `fork` commands whose workers listen by themselves); the median of \
            \(p.coldStarts) trials.
            - **memory**: VmRSS of each worker and of the primary, after listening and \(p.settleMs) ms idle.
            - **descriptors**: entries of /proc/PRIMARY/fd before and after \(grouped(p.descriptorConnections)) \
            round-robin connections (the rr row's among them), each count after \(p.settleMs) ms idle; a leak shows as growth.
            - **ipc-small**, **ipc-1mib**: the primary sends a message to one worker, which sends it straight back; the \
            next goes when the echo came. Timed by the primary (`pingpong`, protocol §3.3).
            - **chaos**: round-robin load from \(p.clients) client threads while the bench kills a worker with SIGKILL \
            every \(p.chaosIntervalMs) ms (once all \(p.workers) workers listen again) and the primary re-forks a \
            replacement (`refork`, protocol §3.3). ok, lost, hung and refused count connections; no connection can hang the bench.

            """
        return out
    }

    // MARK: - Number formats

    /// An integer with thousands separators: 12,345.
    static func grouped(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// Microseconds as µs below 10 ms, else ms.
    static func microseconds(_ us: Double) -> String {
        us < 10_000 ? "\(grouped(Int(us.rounded()))) µs" : String(format: "%.1f ms", us / 1000)
    }

    /// Kilobytes as MiB with one decimal.
    static func mebibytes(_ kb: Double) -> String { String(format: "%.1f", kb / 1024) }

    /// A byte count: 16 B, 1 MiB.
    static func bytes(_ n: Int) -> String {
        if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
        if n >= 1 << 10 && n % (1 << 10) == 0 { return "\(n >> 10) KiB" }
        return "\(n) B"
    }
}
