import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one spec against one implementation.
public enum Outcome: Sendable, Equatable {
    /// Every expectation held and every invariant held.
    case pass
    /// An expectation or an invariant (timeout, orphan, failed command) did not hold.
    case fail
    /// The implementation lacks a feature the spec needs, or its expectations file says so.
    case skip
    /// The harness or the implementation broke: could not start, protocol violation.
    case error
    /// It failed, as the implementation's expectations file says it does.
    case xfail
    /// It passed, although the expectations file says it fails: the file should shrink.
    case xpass

    /// The lowercase name used in reports.
    public var name: String {
        switch self {
        case .pass: "pass"
        case .fail: "fail"
        case .skip: "skip"
        case .error: "error"
        case .xfail: "xfail"
        case .xpass: "xpass"
        }
    }
}

/// What one run of one spec produced.
public struct SpecResult: Sendable {
    /// The spec's id.
    public var id: String
    /// Where the spec is.
    public var location: SourceLocation
    /// The outcome.
    public var outcome: Outcome
    /// Why it did not pass (failed expectations, invariants, errors), or why it was skipped.
    public var messages: [String]
    /// The last lines of the event log.
    public var logTail: [String]
    /// The last lines of the implementation's stderr.
    public var stderrTail: String
    /// Wall time.
    public var duration: Duration
    /// The events observed (for the jsonl report).
    public var events: [Event]
}

/// Settings that apply to every spec of a run.
public struct RunOptions: Sendable {
    /// Multiplies every time budget.
    public var timeoutScale: Double = 1
    /// How long processes may outlive the primary before they count as orphans, in milliseconds.
    public var orphanGraceMs = 2000

    /// Default options.
    public init() {}
}

/// A failure that ends a spec's steps early.
struct StepFailure: Error {
    var outcome: Outcome
    var message: String
}

/// Runs one spec against one implementation: prepares what the spec's `setup` asks for, starts the
/// fixture, drives the steps, enforces the invariants and judges the log.
final class SpecRun: @unchecked Sendable {
    let spec: Spec
    let implementation: Implementation
    let options: RunOptions
    let log = EventLog()
    private let acks = Mutex<[Int: String]>([:])
    private let sawHello = Atomic<Bool>(false)
    private var variables: [String: JSONValue] = [:]
    private var forked: [Int] = []
    private var servers: [String: String] = [:]
    private var held: [String: [Int32]] = [:]
    private let backgroundFDs = Mutex<[String: [Int32]]>([:])
    private var backgroundThreads = 0
    private let backgroundDone = Atomic<Int>(0)
    private var seq = 0
    private var deadline: ContinuousClock.Instant = .now
    private var process: FixtureProcess?
    private var control: ControlServer?
    private var tmpdir = ""
    private var inheritedFDs: [Int32] = []
    private var currentStep = "start-up"

    init(spec: Spec, implementation: Implementation, options: RunOptions) {
        self.spec = spec
        self.implementation = implementation
        self.options = options
    }

    func scaled(_ ms: Int) -> Duration { .milliseconds(Int(Double(ms) * options.timeoutScale)) }

    func run() -> SpecResult {
        let started = ContinuousClock.now
        deadline = started + scaled(spec.timeout)
        var outcome = Outcome.pass
        var messages: [String] = []
        do {
            try prepare()
            try handshake()
            for (i, step) in spec.steps.enumerated() {
                currentStep = "step \(i + 1) (\(step.name) at \(step.location))"
                try perform(step)
            }
            currentStep = "the end of the spec"
        } catch let failure as StepFailure {
            outcome = failure.outcome
            messages.append(failure.message)
        } catch {
            outcome = .error
            messages.append("\(error)")
        }
        // After a timeout or a protocol violation the implementation is not trusted to shut down politely.
        let abandon = outcome == .error || messages.contains { $0.hasPrefix("timed out") }
        let invariantFailures = finish(polite: !abandon)
        let events = log.snapshot()
        if outcome == .pass, let violation = log.violation {
            outcome = .error
            messages.append("protocol violation: \(violation)")
        }
        if outcome == .pass || outcome == .fail {
            if !invariantFailures.isEmpty { outcome = .fail; messages += invariantFailures }
        }
        if outcome == .pass {
            let failures = Judge.failures(of: spec.expect, in: events, variables: variables)
            if !failures.isEmpty {
                outcome = .fail
                messages += failures.map(\.description)
            }
        }
        return SpecResult(id: spec.id, location: spec.location, outcome: outcome, messages: messages,
                          logTail: events.suffix(20).map(\.line), stderrTail: process?.stderrText ?? "",
                          duration: .now - started, events: events)
    }

    // MARK: - Start-up

    private func prepare() throws {
        var template = Array("/tmp/cc-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw StepFailure(outcome: .error, message: "cannot create a temporary directory: \(SystemError("mkdtemp"))")
        }
        tmpdir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        for dir in spec.setup.dirs {
            try FileManager.default.createDirectory(atPath: tmpdir + "/" + dir, withIntermediateDirectories: true)
        }
        variables["TMPDIR"] = .string(tmpdir)
        for name in spec.setup.ports {
            variables[name] = .number(Double(try allocateFreePort()))
        }
        var inherit: [(source: Int32, target: Int32)] = []
        for socket in spec.setup.inherit {
            let fd = try boundSocket(udp: socket.transport == .udp, host: socket.host, port: 0)
            inheritedFDs.append(fd)
            inherit.append((fd, socket.fd))
            if let name = socket.portVariable, let address = SocketAddress.local(of: fd) {
                variables[name] = .number(Double(address.port))
            }
        }
        let control = try ControlServer(path: tmpdir + "/.control.sock", log: log)
        self.control = control

        var env = ProcessInfo.processInfo.environment
        // Variables that would change the implementation's behaviour unless the spec sets them.
        for name in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_OPTIONS"] {
            env[name] = nil
        }
        if let name = implementation.policyEnv { env[name] = nil }
        if let name = implementation.platformEnv { env[name] = nil }
        env["CLUSTER_CONFORMANCE_CONTROL"] = control.path
        env["CLUSTER_CONFORMANCE_TMPDIR"] = tmpdir
        if let policy = spec.setup.policy {
            guard let name = implementation.policyEnv else {
                throw StepFailure(outcome: .skip, message: "the implementation's descriptor names no policyEnv")
            }
            env[name] = policy
        }
        if let platform = spec.setup.platform {
            guard let name = implementation.platformEnv else {
                throw StepFailure(outcome: .skip, message: "the implementation's descriptor names no platformEnv")
            }
            env[name] = platform
        }
        for (k, v) in spec.setup.env { env[k] = v }

        do {
            process = try FixtureProcess(argv: implementation.command, cwd: tmpdir, env: env, inherit: inherit, log: log) { [self] line in
                self.receive(line)
            }
        } catch {
            throw StepFailure(outcome: .error, message: "could not start the implementation: \(error)")
        }
    }

    /// Validates and records one stdout line.
    private func receive(_ line: String) {
        guard let value = try? JSONValue.parse(line), case .object(var fields) = value, fields["ev"]?.stringValue != nil else {
            log.fail("stdout line is not a JSON object with a string 'ev': \(quote(line))")
            return
        }
        if !sawHello.load(ordering: .sequentiallyConsistent) {
            guard fields["ev"] == .string("hello") else {
                log.fail("the first line must be the hello event; got \(quote(line))")
                return
            }
            sawHello.store(true, ordering: .sequentiallyConsistent)
        }
        if fields["ev"] == .string("ack"), let s = fields["seq"]?.intValue, let name = acks.withLock({ $0[s] }) {
            fields["cmd"] = .string(name)
        }
        log.append(Event(fields: fields, line: line))
    }

    private func handshake() throws {
        try sendToPrimary(JSONObject([("cmd", .string("hello")), ("seq", .number(0)), ("protocol", .number(Double(protocolVersion)))]))
        let hello = try waitForEvent("the hello event") { $0["ev"] == .string("hello") }
        guard hello["protocol"]?.intValue == protocolVersion else {
            throw StepFailure(outcome: .error, message: "protocol mismatch: the implementation speaks \(hello["protocol"]?.jsonText ?? "no version"), the runner \(protocolVersion)")
        }
    }

    // MARK: - Commands

    private func sendToPrimary(_ command: JSONObject) throws {
        guard let process else { throw StepFailure(outcome: .error, message: "no process") }
        if let t = process.termination {
            throw StepFailure(outcome: .fail, message: "the primary already exited (\(t)) before \(currentStep)")
        }
        do { try process.send(JSONValue.object(command).jsonText) } catch {
            throw StepFailure(outcome: .fail, message: "cannot write to the primary's stdin before \(currentStep): \(error)")
        }
    }

    /// Sends a command to the primary (`worker` nil) or a worker, and waits for its ack unless `ack` is false.
    @discardableResult
    private func command(_ worker: Int?, _ name: String, _ fields: [(String, JSONValue)], step: Step, ack: Bool = true) throws -> Event? {
        seq += 1
        let n = seq
        acks.withLock { $0[n] = name }
        let command = JSONObject([("cmd", .string(name)), ("seq", .number(Double(n)))] + fields)
        if let worker {
            guard let control else { throw StepFailure(outcome: .error, message: "no control server") }
            guard let fd = control.connection(for: worker, until: deadline) else {
                if control.isClosed(worker) {
                    throw StepFailure(outcome: .fail, message: "worker \(worker) is gone; cannot send '\(name)' at \(currentStep)")
                }
                throw timeout("waiting for worker \(worker) to connect to the control socket")
            }
            do { try writeAll(fd, Array((JSONValue.object(command).jsonText + "\n").utf8)) } catch {
                throw StepFailure(outcome: .fail, message: "worker \(worker) is gone (\(error.code)); cannot send '\(name)' at \(currentStep)")
            }
        } else {
            try sendToPrimary(command)
        }
        guard ack else { return nil }
        let reply = try waitForEvent("the ack of '\(name)' (seq \(n))" + (worker.map { " from worker \($0)" } ?? " from the primary"),
                                     primaryMatters: worker == nil) {
            $0["ev"] == .string("ack") && $0["seq"]?.intValue == n
        }
        let code = reply["error"]?["code"]?.stringValue ?? (reply["error"] != nil ? "unknown" : nil)
        switch (code, step.expectError) {
        case (nil, nil): break
        case (let c?, nil):
            throw StepFailure(outcome: .fail, message: "'\(name)' failed at \(currentStep) with \(c): \(reply.line)")
        case (nil, let e?):
            throw StepFailure(outcome: .fail, message: "expected '\(name)' to fail with \(e) at \(currentStep), but it succeeded: \(reply.line)")
        case (let c?, let e?):
            if e != "any" && e != c {
                throw StepFailure(outcome: .fail, message: "expected '\(name)' to fail with \(e) at \(currentStep), got \(c): \(reply.line)")
            }
        }
        return reply
    }

    /// Waits for the first event (in the whole log) satisfying `test`.
    private func waitForEvent(_ what: String, primaryMatters: Bool = true, _ test: @escaping (Event) -> Bool) throws -> Event {
        let process = self.process
        let found: Event? = log.wait(until: deadline) { new in
            if let e = new.first(where: test) { return e }
            return nil
        }
        if let found { return found }
        if let violation = log.violation { throw StepFailure(outcome: .error, message: "protocol violation: \(violation)") }
        if primaryMatters, let t = process?.termination {
            throw StepFailure(outcome: sawHello.load(ordering: .sequentiallyConsistent) ? .fail : .error,
                              message: "the primary exited (\(t)) while the runner was waiting for \(what) at \(currentStep)")
        }
        throw timeout("waiting for \(what)")
    }

    private func timeout(_ what: String) -> StepFailure {
        StepFailure(outcome: .fail, message: "timed out after \(Int(Double(spec.timeout) * options.timeoutScale)) ms at \(currentStep), \(what)")
    }

    // MARK: - Steps

    private func workerIDs(_ selection: WorkerSelection) -> [Int] {
        switch selection {
        case .ids(let ids): return ids
        case .all:
            let exited = Set(log.snapshot().filter { $0["ev"] == .string("exit") && $0["at"] == .string("primary") }
                .compactMap { $0["worker"]?.intValue })
            return forked.filter { !exited.contains($0) }
        }
    }

    /// The pid a process reported (`worker` nil: the primary).
    private func pid(of worker: Int?) -> Int32? {
        if worker == nil { return process?.pid }
        return log.snapshot().last { $0["ev"] == .string("start") && $0["at"] == .string("worker") && $0["worker"]?.intValue == worker }?["pid"]?
            .intValue.map(Int32.init)
    }

    /// The processes a step addresses, as (worker id or nil for the primary, pid).
    private func pids(of target: ProcessTarget) throws -> [(Int?, Int32)] {
        let targets: [Int?] = switch target {
        case .primary: [nil]
        case .workers(let sel): workerIDs(sel).map { Optional($0) }
        }
        return try targets.map { t in
            guard let pid = pid(of: t) else {
                throw StepFailure(outcome: .fail, message: "worker \(t ?? 0) reported no pid (no start event) before \(currentStep)")
            }
            return (t, pid)
        }
    }

    private func resolve(_ v: JSONValue) -> JSONValue { Variables.substitute(v, variables) }

    private func runnerEvent(_ ev: String, _ fields: [(String, JSONValue)]) {
        log.append(Event(fields: JSONObject([("ev", .string(ev)), ("at", .string("runner"))] + fields)))
    }

    private func perform(_ step: Step) throws {
        switch step.kind {
        case .fork(let count, let env):
            for _ in 0..<count {
                var fields: [(String, JSONValue)] = []
                if !env.isEmpty { fields.append(("env", .object(JSONObject(env.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))) }
                let ack = try command(nil, "fork", fields, step: step)
                if let id = ack?["result"]?["worker"]?.intValue { forked.append(id) }
            }
        case .setupPrimary(let args, let silent, let exec):
            var fields: [(String, JSONValue)] = []
            if let args { fields.append(("args", .array(args.map { .string($0) }))) }
            if let silent { fields.append(("silent", .bool(silent))) }
            if let exec { fields.append(("exec", .string(exec))) }
            try command(nil, "setupPrimary", fields, step: step)
        case .setPolicy(let policy):
            try command(nil, "setPolicy", [("policy", .string(policy))], step: step)
        case .listen(let workers, let server, let target, let exclusive, let backlog):
            var fields: [(String, JSONValue)] = [("server", .string(server))]
            switch target {
            case .tcp(let host, let port, let ipv6Only):
                fields.append(("kind", "tcp"))
                if let host { fields.append(("host", .string(host))) }
                fields.append(("port", resolve(port)))
                if let ipv6Only { fields.append(("ipv6Only", .bool(ipv6Only))) }
            case .unix(let path):
                fields += [("kind", "unix"), ("path", .string(path))]
            case .fd(let fd):
                fields += [("kind", "fd"), ("fd", .number(Double(fd)))]
            case .handle(let host, let port):
                fields.append(("kind", "handle"))
                if let host { fields.append(("host", .string(host))) }
                fields.append(("port", resolve(port)))
            case .udp(let type, let host, let port, let reuseAddr):
                fields += [("kind", "udp"), ("type", .string(type))]
                if let host { fields.append(("host", .string(host))) }
                fields.append(("port", resolve(port)))
                if let reuseAddr { fields.append(("reuseAddr", .bool(reuseAddr))) }
            }
            if let exclusive { fields.append(("exclusive", .bool(exclusive))) }
            if let backlog { fields.append(("backlog", .number(Double(backlog)))) }
            servers[server] = target.transport
            for w in workerIDs(workers) { try command(w, "listen", fields, step: step) }
        case .close(let workers, let server):
            for w in workerIDs(workers) { try command(w, "close", [("server", .string(server))], step: step) }
        case .maxConnections(let workers, let server, let value):
            for w in workerIDs(workers) {
                try command(w, "setMaxConnections", [("server", .string(server)), ("value", .number(Double(value)))], step: step)
            }
        case .send(let side, let workers, let messages):
            let payload = JSONValue.array(messages.map(resolve))
            for w in workerIDs(workers) {
                if side == .primary { try command(nil, "send", [("worker", .number(Double(w))), ("messages", payload)], step: step) }
                else { try command(w, "send", [("messages", payload)], step: step) }
            }
        case .disconnect(let workers, let from):
            for w in workerIDs(workers) {
                if from == .primary { try command(nil, "disconnect", [("worker", .number(Double(w)))], step: step) }
                else { try command(w, "disconnect", [], step: step) }
            }
        case .disconnectAll:
            try command(nil, "disconnectAll", [], step: step)
        case .kill(let workers, let signal, let from):
            for w in workerIDs(workers) {
                var fields: [(String, JSONValue)] = signal.map { [("signal", .string($0))] } ?? []
                if from == .primary {
                    fields.insert(("worker", .number(Double(w))), at: 0)
                    try command(nil, "kill", fields, step: step)
                } else {
                    try command(w, "kill", fields, step: step)
                }
            }
        case .exit(let target, let code):
            switch target {
            case .primary: try command(nil, "exit", [("code", .number(Double(code)))], step: step, ack: false)
            case .workers(let sel):
                for w in workerIDs(sel) { try command(w, "exit", [("code", .number(Double(code)))], step: step, ack: false) }
            }
        case .block(let workers, let ms):
            for w in workerIDs(workers) { try command(w, "block", [("ms", .number(Double(ms)))], step: step) }
        case .chdir(let workers, let path):
            for w in workerIDs(workers) { try command(w, "chdir", [("path", .string(path))], step: step) }
        case .report(let target, let env):
            let fields: [(String, JSONValue)] = env.isEmpty ? [] : [("env", .array(env.map { .string($0) }))]
            switch target {
            case .primary: try command(nil, "report", fields, step: step)
            case .workers(let sel): for w in workerIDs(sel) { try command(w, "report", fields, step: step) }
            }
        case .signal(let target, let name):
            guard let sig = Signals.number(name) else { throw StepFailure(outcome: .fail, message: "unknown signal \(name)") }
            for (_, pid) in try pids(of: target) { kill(pid, sig) }
        case .closeInput:
            process?.closeInput()
        case .await(let selector, let count):
            try awaitEvents(Variables.substitute(selector, variables), count: count)
        case .gone(let workers, let within):
            try awaitGone(workerIDs(workers), within: within)
        case .connect(let c):
            try connect(c)
        case .datagram(let d):
            try datagram(d)
        case .release(let name):
            let fds = (held.removeValue(forKey: name) ?? []) + (backgroundFDs.withLock { $0.removeValue(forKey: name) } ?? [])
            fds.forEach(Client.finish)
        case .probe(let server):
            try probe(server)
        case .descriptors(let target):
            for (t, pid) in try pids(of: target) {
                let count = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
                var fields: [(String, JSONValue)] = [("process", .string(t == nil ? "primary" : "worker"))]
                if let t { fields.append(("worker", .number(Double(t)))) }
                fields.append(("count", .number(Double(count))))
                runnerEvent("descriptors", fields)
            }
        case .capture(let name, let selector, let field):
            let sel = Variables.substitute(selector, variables)
            guard let event = log.snapshot().last(where: { Judge.matches(sel, $0) }) else {
                throw StepFailure(outcome: .fail, message: "nothing to capture at \(currentStep): no event matches \(Judge.render(sel))")
            }
            guard let value = event[field] else {
                throw StepFailure(outcome: .fail, message: "the event has no field '\(field)' to capture at \(currentStep): \(event.line)")
            }
            variables[name] = value
        }
    }

    private func awaitEvents(_ selector: Selector, count: Int) throws {
        var matched = 0
        let process = self.process
        let ok: Bool? = log.wait(until: deadline) { new in
            matched += new.lazy.filter { Judge.matches(selector, $0) }.count
            if matched >= count { return true }
            // Nothing more can arrive once the primary is gone and every process closed stdout.
            if let process, process.termination != nil, process.outputClosed, self.backgroundIdle { return false }
            return nil
        }
        if ok == true { return }
        if let violation = log.violation { throw StepFailure(outcome: .error, message: "protocol violation: \(violation)") }
        let what = "\(count) event\(count == 1 ? "" : "s") matching \(Judge.render(selector)) (saw \(matched))"
        if ok == false {
            throw StepFailure(outcome: .fail, message: "the implementation ended (\(process?.termination?.description ?? "?")) before \(currentStep) saw \(what)")
        }
        throw timeout("waiting for \(what)")
    }

    private var backgroundIdle: Bool { backgroundDone.load(ordering: .sequentiallyConsistent) == backgroundThreads }

    private func awaitGone(_ workers: [Int], within: Int) throws {
        let limit = min(deadline, .now + scaled(within))
        var pids: [Int32: Int] = [:]
        for w in workers {
            guard let pid = pid(of: w) else { throw StepFailure(outcome: .fail, message: "worker \(w) reported no pid before \(currentStep)") }
            pids[pid] = w
        }
        let started = ContinuousClock.now
        let running = Set(waitForExit(Array(pids.keys), until: limit))
        for (pid, w) in pids.sorted(by: { $0.value < $1.value }) where !running.contains(pid) {
            runnerEvent("gone", [("worker", .number(Double(w))), ("pid", .number(Double(pid)))])
        }
        if !running.isEmpty {
            let ms = (ContinuousClock.now - started).components.seconds * 1000
            throw StepFailure(outcome: .fail, message: "worker(s) \(running.sorted().map { "\(pids[$0]!) (pid \($0))" }.joined(separator: ", ")) still running \(ms) ms later at \(currentStep) (allowed: \(within) ms)")
        }
    }

    // MARK: - Client steps

    private func endpoint(_ target: ClientTarget, udp: Bool) throws -> Endpoint {
        switch target {
        case .address(let host, let port):
            guard let p = resolve(port).intValue else { throw StepFailure(outcome: .fail, message: "port \(port.jsonText) is not defined at \(currentStep)") }
            return udp ? .udp(host: host, port: p) : .tcp(host: host, port: p)
        case .path(let path):
            return .unix(path: tmpdir + "/" + path)
        case .server(let name, let worker):
            let reported = log.snapshot().last { e in
                e["ev"] == .string("listening") && e["at"] == .string("worker") && e["server"] == .string(name)
                    && (worker == nil || e["worker"]?.intValue == worker)
            }
            guard let reported else {
                throw StepFailure(outcome: .fail, message: "no worker reported listening for server '\(name)' before \(currentStep) (await it first)")
            }
            if let path = reported["path"]?.stringValue { return .unix(path: path) }
            guard let port = reported["port"]?.intValue else {
                throw StepFailure(outcome: .fail, message: "the listening event has neither path nor port: \(reported.line)")
            }
            var host = reported["address"]?.stringValue ?? "127.0.0.1"
            if host == "::" { host = "::1" }
            if host == "0.0.0.0" { host = "127.0.0.1" }
            return (udp || servers[name] == "udp") ? .udp(host: host, port: port) : .tcp(host: host, port: port)
        }
    }

    private func connect(_ c: ConnectStep) throws {
        let endpoint = try endpoint(c.target, udp: false)
        let waitMs = c.wait
        let stepDeadline = deadline
        let label = c.label
        let work: @Sendable () -> [Int32] = { [self] in
            var kept: [Int32] = []
            func record(_ i: Int, _ r: ClientResult) {
                switch r {
                case .served(let worker, let echo, let fd):
                    var fields: [(String, JSONValue)] = [("server", .string(label)), ("worker", worker), ("conn", .number(Double(i))),
                                                         ("transport", .string(endpoint.transport))]
                    if let echo { fields.append(("echo", .string(echo))) }
                    self.runnerEvent("served", fields)
                    if let fd { if c.hold != nil { kept.append(fd) } else { Client.finish(fd) } }
                case .refused(let code):
                    self.runnerEvent("refused", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(code))])
                case .unanswered(let code):
                    self.runnerEvent("unanswered", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(code))])
                }
            }
            func answerDeadline() -> ContinuousClock.Instant { min(stepDeadline, .now + self.scaled(waitMs)) }
            switch c.mode {
            case .sequential:
                for i in 1...c.count {
                    switch Client.connect(endpoint, until: answerDeadline()) {
                    case .failure(let e): record(i, .refused(code: e.code))
                    case .success(let fd):
                        let r = Client.converse(fd, send: c.send, until: answerDeadline())
                        if case .served = r {} else { close(fd) }
                        record(i, r)
                    }
                }
            case .concurrent:
                var open: [(Int, Int32)] = []
                for i in 1...c.count {
                    switch Client.connect(endpoint, until: answerDeadline()) {
                    case .failure(let e): record(i, .refused(code: e.code))
                    case .success(let fd): open.append((i, fd))
                    }
                }
                let limit = answerDeadline()
                for (i, fd) in open {
                    let r = Client.converse(fd, send: c.send, until: limit)
                    if case .served = r {} else { close(fd) }
                    record(i, r)
                }
            }
            return kept
        }
        if c.background {
            backgroundThreads += 1
            Thread.detachNewThread { [self] in
                let kept = work()
                if let hold = c.hold { self.backgroundFDs.withLock { $0[hold, default: []] += kept } } else { kept.forEach(Client.finish) }
                self.backgroundDone.add(1, ordering: .sequentiallyConsistent)
                self.log.poke()
            }
        } else {
            let kept = work()
            if let hold = c.hold { held[hold, default: []] += kept }
        }
    }

    private func datagram(_ d: DatagramStep) throws {
        let endpoint = try endpoint(d.target, udp: true)
        guard case .udp(let host, let port) = endpoint else {
            throw StepFailure(outcome: .fail, message: "datagram needs a UDP server at \(currentStep)")
        }
        switch Client.datagrams(to: host, port: port, count: d.count, payload: d.payload, until: min(deadline, .now + scaled(d.wait))) {
        case .failure(let e):
            runnerEvent("refused", [("server", .string(d.label)), ("code", .string(e.code))])
        case .success(let results):
            for (i, r) in results.enumerated() {
                switch r {
                case .served(let worker, let echo, _):
                    var fields: [(String, JSONValue)] = [("server", .string(d.label)), ("worker", worker), ("conn", .number(Double(i + 1))),
                                                         ("transport", "udp")]
                    if let echo { fields.append(("echo", .string(echo))) }
                    runnerEvent("served", fields)
                case .refused(let code), .unanswered(let code):
                    runnerEvent("unanswered", [("server", .string(d.label)), ("conn", .number(Double(i + 1))), ("code", .string(code))])
                }
            }
        }
    }

    private func probe(_ server: String) throws {
        let endpoint = try endpoint(.server(server, worker: nil), udp: servers[server] == "udp")
        let inodes: Set<String>
        switch endpoint {
        case .tcp(_, let port): inodes = SocketProbe.inodes(transport: "tcp", port: port, path: nil)
        case .udp(_, let port): inodes = SocketProbe.inodes(transport: "udp", port: port, path: nil)
        case .unix(let path): inodes = SocketProbe.inodes(transport: "unix", port: nil, path: path, boundFrom: tmpdir)
        }
        let starts = log.snapshot().filter { $0["ev"] == .string("start") && $0["at"] == .string("worker") }
        var holders: [Int] = []
        for e in starts {
            if let w = e["worker"]?.intValue, let pid = e["pid"]?.intValue, SocketProbe.holds(Int32(pid), inodes), !holders.contains(w) {
                holders.append(w)
            }
        }
        let primary = process.map { SocketProbe.holds($0.pid, inodes) } ?? false
        runnerEvent("sockets", [("server", .string(server)), ("primary", .bool(primary)),
                                ("workers", .array(holders.sorted().map { .number(Double($0)) }))])
    }

    // MARK: - The end

    /// Shuts the implementation down, checks for orphans, cleans up; returns invariant failures.
    private func finish(polite: Bool) -> [String] {
        var failures: [String] = []
        if let process {
            if !polite { process.signalGroup(SIGKILL) }
            if process.termination == nil {
                try? process.send(#"{"cmd":"shutdown"}"#)
                let limit = ContinuousClock.now + scaled(5000)
                _ = log.wait(until: limit, stopOnViolation: false) { _ in process.termination != nil ? true : nil }
                if process.termination == nil {
                    failures.append("the primary did not exit within \(Int(5000 * options.timeoutScale)) ms of the shutdown command")
                }
            }
            // Every process the implementation reported must go by itself.
            var reported: [(String, Int32)] = []
            for e in log.snapshot() {
                guard let pid = e["pid"]?.intValue, e["at"] != .string("runner") else { continue }
                let who = e["at"] == .string("worker") ? "worker \(e["worker"]?.intValue ?? 0)" : "the primary"
                if (e["ev"] == .string("hello") || e["ev"] == .string("start")), !reported.contains(where: { $0.1 == Int32(pid) }) {
                    reported.append((who, Int32(pid)))
                }
            }
            let graceEnd = ContinuousClock.now + scaled(options.orphanGraceMs)
            let running = Set(waitForExit(reported.map(\.1), until: graceEnd))
            for (who, pid) in reported where running.contains(pid) {
                failures.append("orphan: \(who) (pid \(pid)) was still running \(Int(Double(options.orphanGraceMs) * options.timeoutScale)) ms after the primary exited")
                kill(pid, SIGKILL)
            }
            process.signalGroup(SIGKILL)
            let drain = ContinuousClock.now + .seconds(1)
            _ = log.wait(until: drain, stopOnViolation: false) { _ in process.outputClosed ? true : nil }
            process.stopReading()
        }
        control?.stop()
        let drain = ContinuousClock.now + .milliseconds(500)
        _ = log.wait(until: drain, stopOnViolation: false) { _ in self.backgroundIdle ? true : nil }
        for fds in held.values { fds.forEach(Client.finish) }
        for fds in backgroundFDs.withLock({ $0.values }) { fds.forEach(Client.finish) }
        inheritedFDs.forEach { close($0) }
        control?.release()
        if !tmpdir.isEmpty { try? FileManager.default.removeItem(atPath: tmpdir) }
        return failures
    }
}

/// The fixture protocol version this runner speaks (`fixtures/PROTOCOL.md`).
public let protocolVersion = 1
