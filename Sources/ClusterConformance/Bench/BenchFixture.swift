// One fixture process driven by the bench: started as a spec run starts it, commands and waits with deadlines.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A failure of one measurement; the bench reports it in the row and goes on.
public struct BenchError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// An implementation's fixture started for the bench as the runner starts it for a spec (fixtures/PROTOCOL.md
/// §1, §8): its own process group, a private temporary directory, the control socket, the policy through the
/// descriptor's `policyEnv`. Its stdout is read into an event log, except `connection` events, which are only
/// counted (a load run makes one per connection).
final class BenchFixture: @unchecked Sendable {
    let implementation: Implementation
    let log = EventLog()
    private(set) var process: FixtureProcess?
    private var control: ControlServer?
    private var tmpdir = ""
    private let parts = Mutex(EventAssembler())
    private let sawHello = Atomic<Bool>(false)
    /// `connection` events seen (not kept in the log).
    let connectionEvents = Atomic<Int>(0)
    /// When each worker `listening` event arrived, in order.
    let listeningTimes = Mutex<[ContinuousClock.Instant]>([])
    /// Just before the fixture was spawned.
    private(set) var spawnedAt = ContinuousClock.now
    private var seq = 0
    /// The hello event, once the handshake is done.
    private(set) var hello: Event?

    /// Starts the fixture and performs the handshake. `policy` goes through the descriptor's `policyEnv`.
    init(_ implementation: Implementation, policy: String?, deadline: ContinuousClock.Instant) throws(BenchError) {
        self.implementation = implementation
        if let problem = implementation.programProblem() { throw BenchError("cannot start: \(problem)") }
        var template = Array("/tmp/ccb-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw BenchError("cannot create a temporary directory: \(SystemError("mkdtemp"))")
        }
        tmpdir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            control = try ControlServer(path: tmpdir + "/.control.sock", log: log)
        } catch {
            stop()
            throw BenchError("cannot listen for workers' control connections: \(error)")
        }
        var env = ProcessInfo.processInfo.environment
        for name in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_OPTIONS"] { env[name] = nil }
        if let name = implementation.platformEnv { env[name] = nil }
        if let name = implementation.policyEnv { env[name] = nil }
        if let policy {
            guard let name = implementation.policyEnv else {
                stop()
                throw BenchError("the descriptor names no policyEnv: the policy '\(policy)' cannot be set")
            }
            env[name] = policy
        }
        env["CLUSTER_CONFORMANCE_CONTROL"] = control!.path
        env["CLUSTER_CONFORMANCE_TMPDIR"] = tmpdir
        spawnedAt = .now
        do {
            process = try FixtureProcess(argv: implementation.command, cwd: tmpdir, env: env, inherit: [], log: log) { [self] line in
                receive(line)
            }
        } catch {
            stop()
            throw BenchError("cannot start: \(error)")
        }
        do throws(BenchError) {
            try send("hello", [("protocol", .number(Double(protocolVersion)))], acknowledged: false)
            let hello = try waitFor("the hello event", until: deadline) { $0["ev"] == .string("hello") }
            guard hello["protocol"]?.intValue == protocolVersion else {
                throw BenchError("protocol \(hello["protocol"]?.jsonText ?? "(none)") not supported: this runner speaks protocol \(protocolVersion)")
            }
            self.hello = hello
        } catch {
            stop()
            throw error
        }
    }

    /// The implementation's name, version and runtime from its hello event.
    var version: (name: String, version: String, runtime: String)? {
        guard let impl = hello?["implementation"] else { return nil }
        return (impl["name"]?.stringValue ?? implementation.name, impl["version"]?.stringValue ?? "?", impl["runtime"]?.stringValue ?? "")
    }

    /// Records one stdout line: counted when it is a `connection` event, else validated, reassembled from parts
    /// (§1.1) and logged.
    private func receive(_ line: String) {
        if line.hasPrefix(#"{"ev":"connection","#) {
            connectionEvents.add(1, ordering: .relaxed)
            return
        }
        guard let value = try? JSONValue.parse(line), case .object(let fields) = value, let ev = fields["ev"]?.stringValue else {
            log.fail("stdout line is not a JSON object with a string 'ev': \(quote(line))")
            return
        }
        if ev == "part" {
            switch parts.withLock({ $0.accept(fields) }) {
            case .incomplete: return
            case .malformed(let why): log.fail("\(why): \(quote(line))")
            case .complete(let whole): receive(whole)
            }
            return
        }
        if ev == "connection" {
            connectionEvents.add(1, ordering: .relaxed)
            return
        }
        if !sawHello.load(ordering: .relaxed) {
            guard ev == "hello" else {
                log.fail("the first line must be the hello event; got \(quote(line))")
                return
            }
            sawHello.store(true, ordering: .relaxed)
        }
        if ev == "listening", fields["at"] == .string("worker") {
            let now = ContinuousClock.now
            listeningTimes.withLock { $0.append(now) }
        }
        log.append(Event(fields: fields, line: line))
    }

    /// Writes a command to the primary; returns its sequence number.
    @discardableResult
    func send(_ cmd: String, _ fields: [(String, JSONValue)] = [], acknowledged: Bool = true) throws(BenchError) -> Int {
        guard let process else { throw BenchError("no process") }
        if let t = process.termination { throw BenchError("the primary exited (\(t)) before '\(cmd)'") }
        seq += 1
        let line = JSONValue.object(JSONObject([("cmd", .string(cmd)), ("seq", .number(Double(seq)))] + fields)).jsonText
        do { try process.send(line) } catch { throw BenchError("cannot write '\(cmd)' to the primary: \(error)") }
        return seq
    }

    /// Sends a primary command and waits for its ack; an ack with an error throws, naming the code.
    @discardableResult
    func command(_ cmd: String, _ fields: [(String, JSONValue)] = [], until deadline: ContinuousClock.Instant) throws(BenchError) -> Event {
        let n = try send(cmd, fields)
        return try ack(of: cmd, seq: n, until: deadline)
    }

    /// Sends a command to worker `id` on its control connection and waits for its ack.
    @discardableResult
    func workerCommand(_ id: Int, _ cmd: String, _ fields: [(String, JSONValue)], until deadline: ContinuousClock.Instant) throws(BenchError) -> Event {
        guard let control else { throw BenchError("no control server") }
        guard let fd = control.connection(for: id, until: deadline) else {
            throw BenchError("worker \(id) did not connect to the control socket")
        }
        seq += 1
        let n = seq
        let line = JSONValue.object(JSONObject([("cmd", .string(cmd)), ("seq", .number(Double(n)))] + fields)).jsonText
        do { try writeAll(fd, Array((line + "\n").utf8)) } catch { throw BenchError("cannot write '\(cmd)' to worker \(id): \(error)") }
        return try ack(of: cmd, seq: n, until: deadline)
    }

    /// Waits for the ack of command `seq`.
    func ack(of cmd: String, seq n: Int, until deadline: ContinuousClock.Instant) throws(BenchError) -> Event {
        let reply = try waitFor("the ack of '\(cmd)'", until: deadline) { $0["ev"] == .string("ack") && $0["seq"]?.intValue == n }
        if let error = reply["error"] {
            let code = error["code"]?.stringValue ?? "unknown"
            if code == "ERR_UNKNOWN_COMMAND" { throw BenchError("the fixture does not know the command '\(cmd)' (ERR_UNKNOWN_COMMAND)") }
            throw BenchError("'\(cmd)' failed with \(code)" + (error["message"]?.stringValue.map { ": \($0)" } ?? ""))
        }
        return reply
    }

    /// Waits for the first event of the whole log that satisfies `test`.
    func waitFor(_ what: String, until deadline: ContinuousClock.Instant, _ test: @escaping (Event) -> Bool) throws(BenchError) -> Event {
        try waitForCount(1, what, until: deadline, test)[0]
    }

    /// Waits for `count` events of the whole log that satisfy `test`; gives the first `count` of them.
    func waitForCount(_ count: Int, _ what: String, until deadline: ContinuousClock.Instant,
                      _ test: @escaping (Event) -> Bool) throws(BenchError) -> [Event] {
        var found: [Event] = []
        let process = self.process
        let ok: Bool? = log.wait(until: deadline) { new in
            for e in new where test(e) {
                found.append(e)
                if found.count == count { return true }
            }
            if let process, process.termination != nil, process.outputClosed { return false }
            return nil
        }
        if ok == true { return found }
        if let violation = log.violation { throw BenchError("protocol violation: \(violation)") }
        if let t = process?.termination { throw BenchError("the primary exited (\(t)) while the bench waited for \(what) (saw \(found.count) of \(count))") }
        throw BenchError("timed out waiting for \(what) (saw \(found.count) of \(count))")
    }

    /// Forks `count` workers, has each listen on TCP 127.0.0.1 port 0 as server `s`, and waits until all
    /// listen; gives their common port.
    func forkAndListen(_ count: Int, until deadline: ContinuousClock.Instant) throws(BenchError) -> Int {
        var ids: [Int] = []
        for _ in 0..<count {
            let ack = try command("fork", until: deadline)
            guard let id = ack["result"]?["worker"]?.intValue else { throw BenchError("the ack of 'fork' names no worker: \(ack.line)") }
            ids.append(id)
        }
        for id in ids {
            try workerCommand(id, "listen", BenchFixture.listenFields, until: deadline)
        }
        let listening = try waitForCount(count, "\(count) workers listening", until: deadline) { e in
            e["ev"] == .string("listening") && e["at"] == .string("worker") && e["server"] == .string("s")
        }
        let ports = Set(listening.compactMap { $0["port"]?.intValue })
        guard ports.count == 1, let port = ports.first, port > 0 else {
            throw BenchError("the workers listen on different ports: \(ports.sorted())")
        }
        return port
    }

    /// The listen command of every bench server: TCP echo server `s` on 127.0.0.1, port 0 (the same for all).
    static let listenFields: [(String, JSONValue)] = [("server", "s"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)]

    /// Worker ids with the pid of their latest `start` event.
    func workerPIDs() -> [Int: Int32] {
        var pids: [Int: Int32] = [:]
        for e in log.snapshot() where e["ev"] == .string("start") && e["at"] == .string("worker") {
            if let id = e["worker"]?.intValue, let pid = e["pid"]?.intValue { pids[id] = Int32(pid) }
        }
        return pids
    }

    /// Ends the fixture: `shutdown`, then the whole process group is killed and every reported process
    /// waited for; the control socket and the temporary directory are removed. Never waits without a deadline.
    func stop() {
        if let process {
            if process.termination == nil {
                try? process.send(#"{"cmd":"shutdown"}"#)
                _ = log.wait(until: .now + .seconds(5), stopOnViolation: false) { _ in process.termination != nil ? true : nil }
            }
            process.signalGroup(SIGKILL)
            var pids: [Int32] = []
            for e in log.snapshot() where e["ev"] == .string("hello") || e["ev"] == .string("start") {
                if let pid = e["pid"]?.intValue { pids.append(Int32(pid)) }
            }
            // Workers of an implementation that left the group are killed one by one.
            for pid in pids where processIsAlive(pid) { kill(pid, SIGKILL) }
            _ = waitForExit(pids, until: .now + .seconds(3))
            _ = log.wait(until: .now + .seconds(1), stopOnViolation: false) { _ in process.outputClosed ? true : nil }
            process.stopReading()
            self.process = nil
        }
        if let control {
            control.stop()
            control.release()
            self.control = nil
        }
        if !tmpdir.isEmpty {
            try? FileManager.default.removeItem(atPath: tmpdir)
            tmpdir = ""
        }
    }

    deinit { stop() }
}

/// Facts about a process from /proc.
enum ProcFacts {
    /// VmRSS of the process, in kB; nil when it cannot be read.
    static func residentKB(_ pid: Int32) -> Int? {
        guard let text = SocketProbe.procText("/proc/\(pid)/status") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// The number of entries in /proc/PID/fd; nil when it cannot be read.
    static func descriptorCount(_ pid: Int32) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let first = withUnsafeBytes(of: entry.pointee.d_name) { $0[0] }
            if first != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }
}
