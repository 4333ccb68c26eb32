import CSupport
import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// The primary process's side of the cluster (Node's `cluster` in the primary): forks workers, owns the
/// table of shared servers, and emits the cluster's events. Lives on one event loop; call it there.
public final class Primary {
    /// The loop everything runs on.
    public let loop: EventLoop
    /// `cluster.schedulingPolicy`: assignable until the first `setupPrimary()` or `fork()`, which freeze
    /// the policy in force (later assignments change the property, not the behaviour).
    public var schedulingPolicy: SchedulingPolicy
    /// The policy frozen at the first setup.
    private(set) var frozenPolicy: SchedulingPolicy?
    /// `cluster.settings`; nil until the first `setupPrimary()` or `fork()`.
    public private(set) var settings: ClusterSettings?
    /// `cluster.workers`, by id.
    public private(set) var workers: [Int: Worker] = [:]
    private var nextID = 1
    private var handles: [String: ServerHandle] = [:]
    private var handlers: [(ClusterEvent) -> Void] = []
    private var disconnectWaiters: [() -> Void] = []
    private let environment: [String: String]

    /// A primary on `loop`. The policy comes from `NODE_CLUSTER_SCHED_POLICY` (`rr`, `none`; anything
    /// else is ignored), else the platform default: `none` on Windows (or `SWIFT_CLUSTER_PLATFORM=win32`),
    /// `rr` elsewhere.
    public init(loop: EventLoop, environment: [String: String] = processEnvironment()) {
        self.loop = loop
        self.environment = environment
        schedulingPolicy = Primary.defaultPolicy(environment)
    }

    /// The policy a primary starts with, from its environment (Node's module-load rule).
    public static func defaultPolicy(_ environment: [String: String]) -> SchedulingPolicy {
        switch environment[ClusterEnvironment.schedulingPolicy] {
        case "rr": return .roundRobin
        case "none": return .shared
        default:
            #if os(Windows)
            return .shared
            #else
            return environment[ClusterEnvironment.platform] == "win32" ? .shared : .roundRobin
            #endif
        }
    }

    /// Registers a handler for every cluster event (`cluster.on(...)`), called on the loop.
    public func on(_ handler: @escaping (ClusterEvent) -> Void) { handlers.append(handler) }

    func emit(_ event: ClusterEvent) { for h in handlers { h(event) } }

    /// The ids in `cluster.workers`, ascending.
    public var workerIDs: [Int] { workers.keys.sorted() }

    // MARK: - Setup and fork

    /// `cluster.setupPrimary(settings)`: merges `update` into the settings (defaults on first use) and
    /// emits `'setup'` on the next tick. The first call freezes the scheduling policy.
    public func setupPrimary(_ update: SettingsUpdate = SettingsUpdate()) {
        var s = settings ?? ClusterSettings(exec: Primary.currentExecutable(), args: Array(CommandLine.arguments.dropFirst()),
                                            silent: false, cwd: nil)
        if let exec = update.exec { s.exec = exec }
        if let args = update.args { s.args = args }
        if let silent = update.silent { s.silent = silent }
        if let cwd = update.cwd { s.cwd = cwd }
        if let stdio = update.stdio { s.stdio = stdio }
        settings = s
        if frozenPolicy == nil { frozenPolicy = schedulingPolicy }
        loop.nextTick { [self] in emit(.setup(s)) }
    }

    /// The descriptors a worker gets (Node's `stdio` normalisation): `settings.stdio` padded with `.pipe`
    /// up to the three standard ones, or from `silent` when it is not set; exactly one `.ipc`.
    static func stdioLayout(_ s: ClusterSettings) throws(ClusterError) -> [StdioOption] {
        guard var layout = s.stdio else {
            return s.silent ? [.pipe, .pipe, .pipe, .ipc] : [.inherit, .inherit, .inherit, .ipc]
        }
        while layout.count < 3 { layout.append(.pipe) }
        switch layout.filter({ $0 == .ipc }).count {
        case 0:
            throw ClusterError(code: "ERR_CHILD_PROCESS_IPC_REQUIRED",
                               message: "Forked processes must have an IPC channel, missing value 'ipc' in options.stdio")
        case 1: return layout
        default: throw ClusterError(code: "ERR_IPC_ONE_PIPE", message: "Child process can have only one IPC pipe")
        }
    }

    /// The resolved path of the running executable (`/proc/self/exe`).
    public static func currentExecutable() -> String {
        symbolicLinkTarget("/proc/self/exe") ?? CommandLine.arguments[0]
    }

    /// `cluster.fork(env)`: spawns a worker running the configured executable, with `env` over the
    /// primary's environment and the worker id added. Returns the worker at once (state `none`); `'fork'`
    /// is emitted on the next tick. A spawn that fails is reported as Node does, by the worker's `'error'`.
    /// - Throws: `ERR_CHILD_PROCESS_IPC_REQUIRED` / `ERR_IPC_ONE_PIPE` when `stdio` has no or several
    ///   `.ipc` entries; the errno of a socket pair that cannot be made.
    @discardableResult
    public func fork(env: [String: String] = [:]) throws(ClusterError) -> Worker {
        setupPrimary()
        let s = settings!
        let id = nextID
        nextID += 1
        var childEnv = processEnvironment()
        for (k, v) in env { childEnv[k] = v }
        childEnv[ClusterEnvironment.workerID] = String(id)

        let layout = try Primary.stdioLayout(s)
        let channelIndex = layout.firstIndex(of: .ipc)!
        if channelIndex != Int(ClusterEnvironment.channelFD) {
            childEnv[ClusterEnvironment.channelFDVariable] = String(channelIndex)
        }

        // Everything opened here is closed on every path out, except the primary's ends a worker keeps.
        var childEnds: [Int32] = []
        var parentEnds = [Int32?](repeating: nil, count: layout.count)
        var channelFD: Int32 = -1
        var keep = false
        defer {
            childEnds.forEach { close($0) }
            if !keep {
                parentEnds.forEach { if let fd = $0 { close(fd) } }
                if channelFD >= 0 { close(channelFD) }
            }
        }
        var sources: [Int32] = []
        var targets: [Int32] = []
        for (index, option) in layout.enumerated() {
            let target = Int32(index)
            switch option {
            case .ipc, .pipe:
                var pair: [Int32] = [-1, -1]
                let rc = option == .ipc
                    ? socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair)
                    : csupport_stream_pair_cloexec(&pair)
                guard rc == 0 else { throw ClusterError(errno: errno, syscall: "socketpair") }
                childEnds.append(pair[1])
                if option == .ipc { channelFD = pair[0] } else { parentEnds[index] = pair[0] }
                sources.append(pair[1])
                targets.append(target)
            case .inherit:
                guard fcntl(target, F_GETFD) >= 0 else { throw ClusterError(errno: errno, syscall: "spawn") }
                sources.append(target)
                targets.append(target)
            case .ignore:
                // /dev/null for the standard descriptors; nothing (closed) above them.
                if index < 3 {
                    sources.append(-1)
                    targets.append(target)
                }
            }
        }
        var pid: pid_t = 0
        let argv = [s.exec] + s.args
        let rc = withCStringArray(argv) { cArgv in
            withCStringArray(childEnv.map { "\($0.key)=\($0.value)" }.sorted()) { cEnv in
                csupport_spawn_fds(&pid, s.exec, cArgv, cEnv, s.cwd, sources, targets, Int32(sources.count), 0)
            }
        }
        if rc != 0 {
            // As in Node, a spawn that fails (a missing cwd or executable) is reported asynchronously: the
            // worker is returned, then emits 'error' and is dead from then on; 'fork' follows, and
            // 'disconnect' when its channel, whose other end nobody holds, closes. There is no 'exit'.
            let channel = Channel(fd: channelFD, loop: loop)
            channelFD = -1  // the channel's now
            let worker = Worker(id: id, pid: 0, primary: self, channel: channel, stdio: [])
            workers[id] = worker
            worker.spawnFailed(ClusterError(errno: rc, syscall: "spawn \(s.exec)"))
            loop.nextTick { [self] in emit(.fork(worker)) }
            return worker
        }
        // The exit is watched through a pidfd. Without one the primary could never report the worker's 'exit',
        // so a worker that cannot be watched is not kept: it is killed and reaped, and fork() throws.
        let pidfd = csupport_pidfd_open(pid)
        let exitWatcher: Watcher
        do throws(ClusterError) {
            guard pidfd >= 0 else { throw ClusterError(errno: errno, syscall: "pidfd_open") }
            exitWatcher = try loop.watch(pidfd) {}
        } catch {
            if pidfd >= 0 { close(pidfd) }
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            throw error
        }
        keep = true
        let worker = Worker(id: id, pid: pid, primary: self, channel: Channel(fd: channelFD, loop: loop), stdio: parentEnds)
        workers[id] = worker
        worker.start(pidfd: pidfd, exitWatcher: exitWatcher)
        loop.nextTick { [self] in emit(.fork(worker)) }
        return worker
    }

    /// `cluster.disconnect(callback)`: disconnects every connected worker; `callback` runs once the
    /// workers table has emptied and a further worker leaves (Node's rule), or on the next tick when
    /// there are no workers.
    public func disconnect(_ callback: (() -> Void)? = nil) {
        if workers.isEmpty {
            loop.nextTick { [self] in tableEmptied() }
        } else {
            for w in workers.values.sorted(by: { $0.id < $1.id }) where w.isConnected {
                w.disconnect()
            }
        }
        if let callback { disconnectWaiters.append(callback) }
    }

    private func tableEmptied() {
        let waiters = disconnectWaiters
        disconnectWaiters.removeAll()
        waiters.forEach { $0() }
    }

    // MARK: - Worker bookkeeping (primary.js removeWorker / removeHandlesForWorker)

    func removeWorker(_ worker: Worker) {
        workers[worker.id] = nil
        if workers.isEmpty { tableEmptied() }
    }

    func removeHandles(for worker: Worker) {
        for (key, handle) in handles where handle.remove(worker) {
            handles[key] = nil
        }
    }

    // MARK: - Control messages from workers

    func received(_ message: JSONValue, fds: [Int32], from worker: Worker) {
        fds.forEach { close($0) }  // workers send no descriptors on the control channel
        switch message["act"]?.stringValue {
        case "online":
            worker.state = .online
            worker.emit(.online)
            emit(.online(worker))
        case "queryServer":
            queryServer(message, from: worker)
        case "listening":
            worker.state = .listening
            let info = ListeningAddress(address: message["address"]?.stringValue, port: message["port"]?.intValue ?? 0,
                                        addressType: AddressType(json: message["addressType"]) ?? .descriptor,
                                        fd: message["fd"]?.intValue.map(Int32.init))
            worker.emit(.listening(info))
            emit(.listening(worker, info))
        case "exitedAfterDisconnect":
            worker.exitedAfterDisconnect = true
            reply(to: worker, message, [:])
        case "close":
            if let key = message["key"]?.stringValue, let handle = handles[key], handle.remove(worker) {
                handles[key] = nil
            }
        default:
            break  // unknown actions are ignored, as Node does
        }
    }

    func reply(to worker: Worker, _ request: JSONValue, _ fields: [String: JSONValue], fd: Int32? = nil) {
        var object = JSONObject([("act", .string("reply")), ("ack", request["seq"] ?? .null)])
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) { object[k] = v }
        worker.channel.sendControl(.object(object), fds: fd.map { [$0] } ?? [])
    }

    /// A worker asks for a server (primary.js `queryServer`).
    private func queryServer(_ message: JSONValue, from worker: Worker) {
        // A worker that is being disconnected gets no answer at all (Node's rule).
        if worker.exitedAfterDisconnect == true { return }
        guard let request = ServerRequest(message: message) else { return }
        let key = request.key.description
        let handle: ServerHandle
        if let existing = handles[key] {
            handle = existing
        } else {
            if frozenPolicy == .shared || request.addressType.isUDP {
                handle = SharedHandle(key: key, request: request)
            } else {
                handle = RoundRobinHandle(key: key, request: request, primary: self)
            }
            handles[key] = handle
        }
        handle.add(worker) { [self] error, sockname, sharedFD in
            if error != nil, handles[key] === handle { handles[key] = nil }
            var fields: [String: JSONValue] = ["key": .string(key)]
            if let error { fields["errno"] = .string(error.code) }
            if let sockname { fields["sockname"] = sockname }
            reply(to: worker, message, fields, fd: sharedFD)
        }
    }
}

/// A worker as the primary sees it (Node's `cluster.Worker` in the primary).
public final class Worker {
    /// `worker.id`: 1, 2, … in fork order, never reused.
    public let id: Int
    /// The worker's process id (`worker.process.pid`); 0 when the process could not be started (Node:
    /// undefined).
    public let pid: pid_t
    /// `worker.state`.
    public internal(set) var state: WorkerState = .none
    /// `worker.exitedAfterDisconnect`: nil until the worker disconnects or exits; then true if the exit
    /// was asked for with `disconnect()` (from either side) or a worker-side `kill()`.
    public internal(set) var exitedAfterDisconnect: Bool?
    /// The primary's ends of the worker's `.pipe` descriptors, by number (Node's `worker.process.stdio`):
    /// Unix stream sockets, owned by the caller, who closes them. Nil where the entry is not a pipe.
    public let stdio: [Int32?]
    /// The primary's end of the worker's stdout when it is a pipe (`silent`): `stdio[1]`.
    public var standardOutput: Int32? { stdio.count > 1 ? stdio[1] : nil }
    /// The primary's end of the worker's stderr when it is a pipe (`silent`): `stdio[2]`.
    public var standardError: Int32? { stdio.count > 2 ? stdio[2] : nil }
    let channel: Channel
    // Strong: a worker keeps its primary while it runs (the primary's table and `untilExit` end the cycle at
    // the worker's exit).
    let primary: Primary
    private var handlers: [(WorkerEvent) -> Void] = []
    private var exitWatcher: Watcher?
    private var pidfd: Int32 = -1
    /// The worker keeps itself alive until its process is reaped, whoever else holds it (as Node's child
    /// process object does), so its exit is always collected.
    private var untilExit: Worker?
    /// How the process ended, once it did.
    public private(set) var termination: (code: Int?, signal: Signal?)?
    /// Round-robin hand-offs sent to this worker and not answered yet, by the number the worker echoes
    /// back: the handle and its hand-off id.
    private var unanswered: [UInt32: (handle: RoundRobinHandle, id: Int)] = [:]
    private var nextTicket: UInt32 = 1

    init(id: Int, pid: pid_t, primary: Primary, channel: Channel, stdio: [Int32?]) {
        self.id = id
        self.pid = pid
        self.primary = primary
        self.channel = channel
        self.stdio = stdio
    }

    /// Wires the channel and the exit watcher (a watcher of `pidfd`, registered by `fork()`).
    func start(pidfd: Int32, exitWatcher: Watcher) {
        untilExit = self
        channel.onFrame = { [weak self] kind, value, fds in
            guard let self else { fds.forEach { close($0) }; return }
            let (isUser, handleKind) = kind.userMessage
            guard isUser else {
                primary.received(value, fds: fds, from: self)
                return
            }
            let handle = receivedHandle(handleKind, fds)
            if isInternal(value) { return }
            emit(.message(value, handle: handle))
            primary.emit(.message(self, value, handle: handle))
        }
        channel.onHandoffAnswer = { [weak self] ticket, accepted in
            guard let self, let (handle, id) = answer(ticket) else { return }
            handle.acknowledged(id, accepted: accepted, by: self)
        }
        channel.onError = { [weak self] error in self?.emit(.error(error)) }
        channel.onClose = { [weak self] in self?.channelClosed() }
        self.pidfd = pidfd
        self.exitWatcher = exitWatcher
        exitWatcher.onReadable = { [weak self] in self?.reap() }
    }

    /// A worker whose process could not be started: 'error' on the next tick, after which it is dead;
    /// 'disconnect' when the channel closes.
    func spawnFailed(_ error: ClusterError) {
        untilExit = self
        channel.onClose = { [weak self] in
            self?.channelClosed()
            self?.untilExit = nil
        }
        primary.loop.nextTick { [weak self] in
            guard let self else { return }
            // Node's exit code of a process that never ran is the negated errno.
            termination = (code: -Int(error.errno ?? 0), signal: nil)
            emit(.error(error))
        }
    }

    /// `worker.isConnected()`: the IPC channel is open.
    public var isConnected: Bool { channel.isOpen }

    /// `worker.isDead()`: the process has ended.
    public var isDead: Bool { termination != nil }

    /// Registers a handler for this worker's events (`worker.on(...)`), called on the loop before the
    /// cluster-level event of the same name.
    public func on(_ handler: @escaping (WorkerEvent) -> Void) { handlers.append(handler) }

    func emit(_ event: WorkerEvent) { for h in handlers { h(event) } }

    /// `worker.send(message)`: false when the channel is closed, and an `'error'` event follows
    /// (`ERR_IPC_CHANNEL_CLOSED`).
    @discardableResult
    public func send(_ message: JSONValue) -> Bool {
        channel.sendUser(message) { [weak self] in self?.emit(.error($0)) }
    }

    /// `worker.send(message)` of a `Codable` value, encoded as JSON (decode what arrives with
    /// `JSONValue.decode(_:)`); false, with an `'error'` to follow, when it cannot be sent.
    /// - Throws: the value's encoding error (a NaN, an integer beyond 2^53); nothing is sent then.
    @discardableResult
    public func send<Message: Encodable>(encoding message: Message) throws -> Bool {
        send(try JSONValue(encoding: message))
    }

    /// `worker.send(message, sendHandle)`: sends a handle with the message (its descriptor by SCM_RIGHTS).
    /// A sent server keeps listening here; a sent connection is closed here unless `keepOpen`. Returns
    /// false, with an `'error'` event to follow, when the message cannot be sent (the handle then stays
    /// open).
    /// - Throws: `ERR_INVALID_HANDLE_TYPE` when the handle has no descriptor to send (a round-robin
    ///   server, a closed connection), as Node throws for a handle it cannot send.
    @discardableResult
    public func send(_ message: JSONValue, handle: SendHandle) throws(ClusterError) -> Bool {
        try channel.sendUser(message, handle: handle) { [weak self] in self?.emit(.error($0)) }
    }

    /// `worker.disconnect()`: asks the worker to close its servers and its channel, withdraws it from every
    /// shared server at once, and removes it from `cluster.workers`. Returns the worker.
    @discardableResult
    public func disconnect() -> Worker {
        exitedAfterDisconnect = true
        channel.sendControl(.object(JSONObject([("act", "disconnect")])))
        primary.removeHandles(for: self)
        primary.removeWorker(self)
        return self
    }

    /// `worker.kill(signal)` (also `destroy`): sends the signal (default SIGTERM) at once, as Node 20 does.
    /// Returns whether it was sent (Node's `subprocess.kill()`): false for a worker that has exited or
    /// never started; a refusal (`EPERM`, `EINVAL`) also emits `'error'` on the next tick.
    @discardableResult
    public func kill(_ signal: Signal = .terminate) -> Bool {
        // pid 0 (a worker that never started) would signal this process's whole group.
        guard termination == nil && pid > 0 else { return false }
        guard Glibc.kill(pid, signal.rawValue) != 0 else { return true }
        let e = errno
        if e != ESRCH {
            let error = ClusterError(errno: e, syscall: "kill")
            primary.loop.nextTick { [weak self] in self?.emit(.error(error)) }
        }
        return false
    }

    /// Records that hand-off `id` of `handle` is on its way to this worker; returns the number the
    /// worker's answer carries.
    func awaitAnswer(_ handle: RoundRobinHandle, handoff id: Int) -> UInt32 {
        let ticket = nextTicket
        nextTicket &+= 1
        unanswered[ticket] = (handle, id)
        return ticket
    }

    /// How many round-robin hand-offs this worker has not answered yet.
    var unansweredHandoffs: Int { unanswered.count }

    /// The hand-off a worker's answer is about (once: nil for an unknown or repeated answer).
    func answer(_ ticket: UInt32) -> (handle: RoundRobinHandle, id: Int)? {
        unanswered.removeValue(forKey: ticket)
    }

    private func channelClosed() {
        // As Node's primary does on 'disconnect': the worker leaves every handle now, dead or not.
        primary.removeHandles(for: self)
        if isDead { primary.removeWorker(self) }
        // Answers can no longer come.
        let abandoned = unanswered.sorted { $0.key < $1.key }
        unanswered.removeAll()
        for (_, entry) in abandoned { entry.handle.abandoned(entry.id) }
        exitedAfterDisconnect = exitedAfterDisconnect ?? false
        state = .disconnected
        emit(.disconnect)
        primary.emit(.disconnect(self))
    }

    private func reap() {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        guard r == pid else {
            if r < 0 && errno == ECHILD { finish(code: nil, signal: nil) }
            return
        }
        if csupport_wifexited(status) != 0 {
            finish(code: Int(csupport_wexitstatus(status)), signal: nil)
        } else if csupport_wifsignaled(status) != 0 {
            finish(code: nil, signal: Signal(rawValue: csupport_wtermsig(status)))
        }
    }

    private func finish(code: Int?, signal: Signal?) {
        exitWatcher?.cancel()
        exitWatcher = nil
        close(pidfd)
        // Whatever the worker sent before it died is delivered before its 'exit'.
        channel.drain()
        termination = (code, signal)
        if !isConnected {
            primary.removeHandles(for: self)
            primary.removeWorker(self)
        }
        exitedAfterDisconnect = exitedAfterDisconnect ?? false
        state = .dead
        emit(.exit(code: code, signal: signal))
        primary.emit(.exit(self, code: code, signal: signal))
        untilExit = nil
    }
}

/// Whether a user message belongs to the internal namespace (an object whose `cmd` starts with `NODE_`),
/// which Node never delivers to user listeners.
func isInternal(_ message: JSONValue) -> Bool {
    message["cmd"]?.stringValue?.hasPrefix("NODE_") == true
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
func withCStringArray<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
