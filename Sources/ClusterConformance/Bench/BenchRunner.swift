// The bench's measurements: every row, for every implementation, through the fixture protocol.

import ClusterSpec
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Measures implementations through the fixture protocol with one client (`cluster-conformance bench`). The
/// runner never imports an implementation: each is started from its descriptor, as a spec run starts it.
public struct BenchRunner: Sendable {
    public var parameters: BenchParameters
    /// Each `--impl` name with its descriptor, or why the descriptor could not be used.
    public var implementations: [(name: String, implementation: Result<Implementation, ImplementationError>)]
    /// The `--impl` name ratios are computed against.
    public var reference: String?
    /// The command line, for the report.
    public var commandLine: String
    /// Receives progress lines.
    public var progress: @Sendable (String) -> Void

    public init(parameters: BenchParameters, implementations: [(name: String, implementation: Result<Implementation, ImplementationError>)],
                reference: String?, commandLine: String, progress: @escaping @Sendable (String) -> Void) {
        self.parameters = parameters
        self.implementations = implementations
        self.reference = reference
        self.commandLine = commandLine
        self.progress = progress
    }

    /// Runs every selected row; a row that cannot be measured carries its error, and the run goes on.
    public func run() -> BenchResults {
        let started = ContinuousClock.now
        let machine = MachineInfo.current()
        var rows: [BenchRow] = []
        var infos: [BenchImplementation] = []
        if parameters.rows.contains(.limit) { rows.append(limitRow()) }
        for (name, resolved) in implementations {
            var info = BenchImplementation(descriptor: name)
            switch resolved {
            case .failure(let e):
                progress("bench: \(name): \(e)")
                rows += parameters.rows.filter { $0 != .limit }.map { BenchRow($0, name, error: "\(e)") }
            case .success(let implementation):
                info.command = implementation.command
                rows += measure(implementation, name: name, info: &info)
            }
            infos.append(info)
        }
        // Report order: by measurement, then by implementation as given.
        let order = Dictionary(uniqueKeysWithValues: BenchMeasurement.allCases.enumerated().map { ($1, $0) })
        let implOrder = Dictionary(uniqueKeysWithValues: implementations.enumerated().map { ($1.name, $0 + 1) })
        rows = rows.enumerated().sorted { a, b in
            let ka = (order[a.element.measurement]!, implOrder[a.element.implementation] ?? 0, a.offset)
            let kb = (order[b.element.measurement]!, implOrder[b.element.implementation] ?? 0, b.offset)
            return ka < kb
        }.map(\.element)
        var results = BenchResults(parameters: parameters, implementations: infos, reference: reference, rows: rows, machine: machine,
                                   commandLine: commandLine)
        results.seconds = benchSeconds(.now - started)
        return results
    }

    // MARK: - The rows of one implementation

    func measure(_ implementation: Implementation, name: String, info: inout BenchImplementation) -> [BenchRow] {
        let wants = Set(parameters.rows)
        var rows: [BenchRow] = []
        func note(_ f: BenchFixture) {
            if info.name == nil, let v = f.version { (info.name, info.version, info.runtime) = (v.name, v.version, v.runtime) }
        }
        /// Runs one fixture session that produces `kinds`; those it did not produce when it fails carry the error.
        func session(_ kinds: [BenchMeasurement], _ body: (inout [BenchRow]) throws -> Void) {
            let kinds = kinds.filter { wants.contains($0) }
            guard !kinds.isEmpty else { return }
            var produced: [BenchRow] = []
            do { try body(&produced) } catch {
                let message = (error as? BenchError)?.description ?? "\(error)"
                progress("bench: \(name): \(kinds.map(\.rawValue).joined(separator: ", ")): error: \(message)")
                for k in kinds where !produced.contains(where: { $0.measurement == k }) { produced.append(BenchRow(k, name, error: message)) }
            }
            rows += produced
        }

        session([.rr, .memory, .descriptors]) { out in
            progress("bench: \(name): round-robin fixture (rr, memory, descriptors)")
            let f = try BenchFixture(implementation, policy: "rr", deadline: .now + .seconds(30))
            defer { f.stop() }
            note(f)
            let port = try f.forkAndListen(parameters.workers, until: .now + .seconds(30))
            let primary = f.process!.pid
            if wants.contains(.memory) { out.append(try memoryRow(f, name: name, primary: primary)) }
            let fdBefore = ProcFacts.descriptorCount(primary)
            let workersBefore = f.workerPIDs().sorted { $0.key < $1.key }.map { ProcFacts.descriptorCount($0.value) ?? -1 }
            var made = 0
            if wants.contains(.rr) {
                let row = loadRow(.rr, name, f, port: port)
                made += row.number("attempted").map { Int($0) } ?? 0
                out.append(row)
            }
            if wants.contains(.descriptors) {
                let more = max(0, parameters.descriptorConnections - made)
                if more > 0 {
                    progress("bench: \(name): descriptors: \(more) more round-robin connections")
                    made += LoadClient(port: port, clients: parameters.clients, deadlineMs: parameters.deadlineMs).run(connections: more).attempted
                }
                // Counted idle, as before the connections: the same settle period as for memory.
                usleep(UInt32(parameters.settleMs) * 1000)
                guard let before = fdBefore, let after = ProcFacts.descriptorCount(primary) else {
                    throw BenchError("cannot read /proc/\(primary)/fd")
                }
                let workersAfter = f.workerPIDs().sorted { $0.key < $1.key }.map { ProcFacts.descriptorCount($0.value) ?? -1 }
                out.append(BenchRow(.descriptors, name, metrics: JSONObject([
                    ("connections", .number(Double(made))), ("primaryBefore", .number(Double(before))),
                    ("primaryAfter", .number(Double(after))), ("growth", .number(Double(after - before))),
                    ("workersBefore", .array(workersBefore.map { .number(Double($0)) })),
                    ("workersAfter", .array(workersAfter.map { .number(Double($0)) })),
                ])))
                progress("bench: \(name): descriptors: primary \(before) → \(after) after \(made) connections")
            }
        }
        session([.none]) { out in
            progress("bench: \(name): shared-handle fixture (none)")
            let f = try BenchFixture(implementation, policy: "none", deadline: .now + .seconds(30))
            defer { f.stop() }
            note(f)
            let port = try f.forkAndListen(parameters.workers, until: .now + .seconds(30))
            out.append(loadRow(.none, name, f, port: port))
        }
        session([.ipcSmall, .ipcLarge]) { out in
            progress("bench: \(name): ipc fixture")
            let f = try BenchFixture(implementation, policy: nil, deadline: .now + .seconds(30))
            defer { f.stop() }
            note(f)
            out += try ipcRows(f, name: name, wants: wants)
        }
        session([.chaos]) { out in
            progress("bench: \(name): chaos fixture")
            let f = try BenchFixture(implementation, policy: "rr", deadline: .now + .seconds(30))
            defer { f.stop() }
            note(f)
            out.append(try chaosRow(f, name: name))
        }
        session([.coldStart]) { out in
            out.append(try coldStartRow(implementation, name: name, note: note))
        }
        return rows
    }

    // MARK: - Load rows (limit, rr, none)

    func limitRow() -> BenchRow {
        progress("bench: limit: the bench's own accept loop (\(parameters.workers) threads)")
        let server: LimitServer
        do { server = try LimitServer(threads: parameters.workers) } catch {
            return BenchRow(.limit, "bench", error: "cannot listen: \(error)")
        }
        let tally = LoadClient(port: server.port, clients: parameters.clients, deadlineMs: parameters.deadlineMs).run(connections: parameters.loadConnections)
        server.stop()
        let row = BenchRow(.limit, "bench", metrics: loadMetrics(tally, asked: parameters.loadConnections, connectionEvents: nil))
        progress("bench: limit: \(summary(tally))")
        return row
    }

    func loadRow(_ kind: BenchMeasurement, _ name: String, _ f: BenchFixture, port: Int) -> BenchRow {
        let asked = parameters.loadConnections
        progress("bench: \(name): \(kind.rawValue): \(asked) connections from \(parameters.clients) clients")
        let eventsBefore = f.connectionEvents.load(ordering: .relaxed)
        let tally = LoadClient(port: port, clients: parameters.clients, deadlineMs: parameters.deadlineMs).run(connections: asked)
        // The fixture reports each accepted connection; its lines may still be on their way.
        _ = f.log.wait(until: .now + .seconds(2), stopOnViolation: false) { _ in
            f.connectionEvents.load(ordering: .relaxed) - eventsBefore >= tally.ok ? true : nil
        }
        progress("bench: \(name): \(kind.rawValue): \(summary(tally))")
        return BenchRow(kind, name, metrics: loadMetrics(tally, asked: asked, connectionEvents: f.connectionEvents.load(ordering: .relaxed) - eventsBefore))
    }

    func loadMetrics(_ tally: LoadTally, asked: Int, connectionEvents: Int?) -> JSONObject {
        let l = LatencySummary(nanoseconds: tally.latencies)
        var members: [(String, JSONValue)] = [
            ("connections", .number(Double(asked))), ("attempted", .number(Double(tally.attempted))), ("ok", .number(Double(tally.ok))),
            ("refused", .number(Double(tally.refused))), ("lost", .number(Double(tally.lost))), ("hung", .number(Double(tally.hung))),
            ("other", .number(Double(tally.other))), ("errors", .number(Double(tally.errors))),
            ("connPerS", rounded(tally.rate, 1)), ("elapsedS", rounded(benchSeconds(tally.elapsed), 3)),
            ("latencyUs", latencyJSON(l)), ("histogramUs", .array(l.histogram.map { .number(Double($0)) })),
            ("perWorker", .object(JSONObject(tally.perWorker.sorted { $0.key.localizedStandardCompare($1.key) == .orderedAscending }
                .map { ($0.key, .number(Double($0.value))) }))),
        ]
        if !tally.otherCodes.isEmpty {
            members.append(("otherCodes", .object(JSONObject(tally.otherCodes.sorted { $0.key < $1.key }.map { ($0.key, .number(Double($0.value))) }))))
        }
        if let connectionEvents { members.append(("connectionEvents", .number(Double(connectionEvents)))) }
        return JSONObject(members)
    }

    func latencyJSON(_ l: LatencySummary) -> JSONValue {
        .object(JSONObject([("p50", rounded(l.p50, 1)), ("p99", rounded(l.p99, 1)), ("p999", rounded(l.p999, 1)),
                            ("min", rounded(l.min, 1)), ("max", rounded(l.max, 1)), ("mean", rounded(l.mean, 1))]))
    }

    func summary(_ t: LoadTally) -> String {
        let l = LatencySummary(nanoseconds: t.latencies)
        return "\(Int(t.rate)) conn/s, p50 \(Int(l.p50)) µs, p99 \(Int(l.p99)) µs, \(t.ok) ok, \(t.errors) errors"
            + (t.errors > 0 ? " (refused \(t.refused), lost \(t.lost), hung \(t.hung), other \(t.other))" : "")
    }

    // MARK: - Memory

    func memoryRow(_ f: BenchFixture, name: String, primary: Int32) throws -> BenchRow {
        usleep(UInt32(parameters.settleMs) * 1000)  // the settle period is part of the measurement, not a synchronisation
        guard let primaryKB = ProcFacts.residentKB(primary) else { throw BenchError("cannot read /proc/\(primary)/status") }
        let workers = f.workerPIDs().sorted { $0.key < $1.key }
        let workerKB = try workers.map { id, pid in
            guard let kb = ProcFacts.residentKB(pid) else { throw BenchError("cannot read /proc/\(pid)/status of worker \(id)") }
            return kb
        }
        guard !workerKB.isEmpty else { throw BenchError("no worker reported its pid") }
        let median = Percentiles.nearestRank(workerKB.sorted(), 0.5)!
        progress("bench: \(name): memory: primary \(primaryKB) kB, workers \(workerKB.map(String.init).joined(separator: ", ")) kB")
        return BenchRow(.memory, name, metrics: JSONObject([
            ("workerMedianKB", .number(Double(median))), ("primaryKB", .number(Double(primaryKB))),
            ("workersKB", .array(workerKB.map { .number(Double($0)) })), ("settleMs", .number(Double(parameters.settleMs))),
        ]))
    }

    // MARK: - IPC

    func ipcRows(_ f: BenchFixture, name: String, wants: Set<BenchMeasurement>) throws -> [BenchRow] {
        let deadline = ContinuousClock.now + .seconds(30)
        let ack = try f.command("fork", until: deadline)
        guard let id = ack["result"]?["worker"]?.intValue else { throw BenchError("the ack of 'fork' names no worker: \(ack.line)") }
        // Its `start` event, not `online`: a worker reports start once it listens for messages (Node's worker
        // is online before the fixture's code runs, and a message that comes before a listener is lost).
        _ = try f.waitFor("worker \(id) started", until: deadline) { e in
            e["ev"] == .string("start") && e["at"] == .string("worker") && e["worker"]?.intValue == id
        }
        var rows: [BenchRow] = []
        let runs: [(BenchMeasurement, Int, Int)] = [(.ipcSmall, parameters.ipcCount, parameters.ipcSmallBytes),
                                                    (.ipcLarge, parameters.ipcLargeCount, parameters.ipcLargeBytes)]
        for (kind, count, bytes) in runs where wants.contains(kind) {
            progress("bench: \(name): \(kind.rawValue): \(count) round-trips of \(bytes) bytes")
            // Generous: a debug build serialises a megabyte message slowly.
            let budget = ContinuousClock.now + .seconds(30) + .milliseconds(count * (bytes >= 65536 ? 2000 : 20))
            try f.command("pingpong", [("worker", .number(Double(id))), ("count", .number(Double(count))), ("bytes", .number(Double(bytes)))],
                          until: budget)
            let done = try f.waitFor("the pingpong event", until: budget) { e in
                e["ev"] == .string("pingpong") && e["bytes"]?.intValue == bytes
            }
            if let error = done["error"] {
                rows.append(BenchRow(kind, name, error: "pingpong ended after \(done["count"]?.intValue ?? 0) of \(count) round-trips: \(error["code"]?.stringValue ?? error.jsonText)"))
                continue
            }
            guard let completed = done["count"]?.intValue, case .number(let ns)? = done["elapsedNs"],
                  let latency = done["latencyUs"]?.arrayValue, latency.count >= 2,
                  case .number(let p50) = latency[0], case .number(let p99) = latency[1] else {
                throw BenchError("a pingpong event without count, elapsedNs and latencyUs [p50, p99]: \(done.line)")
            }
            let rate = ns > 0 ? Double(completed) / (ns / 1e9) : 0
            progress("bench: \(name): \(kind.rawValue): \(Int(rate)) round-trips/s, p50 \(Int(p50)) µs, p99 \(Int(p99)) µs")
            rows.append(BenchRow(kind, name, metrics: JSONObject([
                ("count", .number(Double(completed))), ("asked", .number(Double(count))), ("bytes", .number(Double(bytes))),
                ("roundTripsPerS", rounded(rate, 1)), ("elapsedS", rounded(ns / 1e9, 3)),
                ("latencyUs", .object(JSONObject([("p50", rounded(p50, 1)), ("p99", rounded(p99, 1))]))),
            ])))
        }
        return rows
    }

    // MARK: - Chaos

    /// Which workers are alive and listening, from the log.
    struct WorkerTracker {
        var pids: [Int: Int32] = [:]
        var listening: Set<Int> = []
        var exited: Set<Int> = []
        var forks = 0

        mutating func take(_ e: Event) {
            let id = e["worker"]?.intValue
            switch (e["ev"]?.stringValue, e["at"]?.stringValue) {
            case ("start", "worker"): if let id, let pid = e["pid"]?.intValue { pids[id] = Int32(pid) }
            case ("listening", "worker"): if let id, e["server"] == .string("s") { listening.insert(id) }
            case ("exit", "primary"): if let id, e["on"] == .string("cluster") { exited.insert(id) }
            case ("fork", "primary"): if e["on"] == .string("cluster") { forks += 1 }
            default: break
            }
        }

        /// Live listening workers with their pids, oldest first, leaving out `killed`.
        func live(excluding killed: Set<Int>) -> [(id: Int, pid: Int32)] {
            listening.subtracting(exited).subtracting(killed).sorted().compactMap { id in pids[id].map { (id, $0) } }
        }
    }

    func liveWorkers(_ f: BenchFixture, count: Int, excluding killed: Set<Int>, until deadline: ContinuousClock.Instant) throws -> WorkerTracker {
        var tracker = WorkerTracker()
        let ok: Bool? = f.log.wait(until: deadline) { new in
            for e in new { tracker.take(e) }
            return tracker.live(excluding: killed).count >= count ? true : nil
        }
        guard ok == true else {
            if let violation = f.log.violation { throw BenchError("protocol violation: \(violation)") }
            throw BenchError("\(count) workers were not listening again within the deadline (\(tracker.live(excluding: killed).count) were)")
        }
        return tracker
    }

    func chaosRow(_ f: BenchFixture, name: String) throws -> BenchRow {
        let n = parameters.workers
        let port = try f.forkAndListen(n, until: .now + .seconds(30))
        try f.command("refork", [("on", true), ("listen", .object(JSONObject(BenchFixture.listenFields)))], until: .now + .seconds(10))
        progress("bench: \(name): chaos: \(parameters.chaosKills) kills, one every \(parameters.chaosIntervalMs) ms, under round-robin load")
        let load = LoadClient(port: port, clients: parameters.clients, deadlineMs: parameters.deadlineMs).start()
        var killed: Set<Int> = []
        var tally: LoadTally
        var tracker: WorkerTracker
        do {
            for _ in 0..<parameters.chaosKills {
                usleep(UInt32(parameters.chaosIntervalMs) * 1000)
                // The next kill waits for every worker to listen: with none left, the port itself would go.
                let t = try liveWorkers(f, count: n, excluding: killed, until: .now + .seconds(15))
                guard let victim = t.live(excluding: killed).first else { throw BenchError("no live worker to kill") }
                kill(victim.pid, SIGKILL)
                killed.insert(victim.id)
            }
            tracker = try liveWorkers(f, count: n, excluding: killed, until: .now + .seconds(15))
            usleep(UInt32(parameters.chaosIntervalMs) * 1000)  // load on the whole set again before the end
            tally = load.stop()
        } catch {
            _ = load.stop()
            throw error
        }
        try f.command("refork", [("on", false)], until: .now + .seconds(10))
        let l = LatencySummary(nanoseconds: tally.latencies)
        progress("bench: \(name): chaos: \(killed.count) kills, \(tally.ok) ok, \(tally.lost) lost, \(tally.hung) hung, \(tally.refused) refused")
        return BenchRow(.chaos, name, metrics: JSONObject([
            ("kills", .number(Double(killed.count))), ("replacements", .number(Double(max(0, tracker.forks - n)))),
            ("attempted", .number(Double(tally.attempted))), ("ok", .number(Double(tally.ok))), ("lost", .number(Double(tally.lost))),
            ("hung", .number(Double(tally.hung))), ("refused", .number(Double(tally.refused))), ("other", .number(Double(tally.other))),
            ("connPerS", rounded(tally.rate, 1)), ("elapsedS", rounded(benchSeconds(tally.elapsed), 3)), ("latencyUs", latencyJSON(l)),
            ("intervalMs", .number(Double(parameters.chaosIntervalMs))),
        ]))
    }

    // MARK: - Cold start

    func coldStartRow(_ implementation: Implementation, name: String, note: (BenchFixture) -> Void) throws -> BenchRow {
        let n = parameters.workers
        progress("bench: \(name): cold start: \(parameters.coldStarts) trials of spawn to \(n) workers listening")
        let listen = JSONValue.object(JSONObject(BenchFixture.listenFields)).jsonText
        var samples: [Double] = []
        for _ in 0..<parameters.coldStarts {
            let deadline = ContinuousClock.now + .seconds(30)
            let f = try BenchFixture(implementation, policy: nil, deadline: deadline)
            defer { f.stop() }
            note(f)
            // Every fork at once; each worker listens by itself (CLUSTER_CONFORMANCE_AUTOLISTEN, protocol §3.3).
            for _ in 0..<n {
                try f.send("fork", [("env", .object(JSONObject([("CLUSTER_CONFORMANCE_AUTOLISTEN", .string(listen))])))])
            }
            _ = try f.waitForCount(n, "\(n) workers listening", until: deadline) { e in
                e["ev"] == .string("listening") && e["at"] == .string("worker") && e["server"] == .string("s")
            }
            let times = f.listeningTimes.withLock { $0 }
            guard times.count >= n else { throw BenchError("the listening events were not timed") }
            samples.append(benchSeconds(times[n - 1] - f.spawnedAt) * 1000)
        }
        let sorted = samples.sorted()
        let median = Percentiles.nearestRank(sorted, 0.5) ?? 0
        progress("bench: \(name): cold start: median \(String(format: "%.1f", median)) ms")
        return BenchRow(.coldStart, name, metrics: JSONObject([
            ("medianMs", rounded(median, 2)), ("minMs", rounded(sorted.first ?? 0, 2)), ("maxMs", rounded(sorted.last ?? 0, 2)),
            ("trials", .number(Double(samples.count))), ("samplesMs", .array(samples.map { rounded($0, 2) })),
        ]))
    }
}

/// A duration in seconds.
func benchSeconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// A number rounded to `places` decimals, as JSON.
func rounded(_ value: Double, _ places: Int) -> JSONValue {
    let scale = pow(10, Double(places))
    return .number((value * scale).rounded() / scale)
}
