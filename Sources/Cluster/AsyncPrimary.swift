import ClusterJSON

#if canImport(Glibc)
import Glibc
#endif

/// A worker as seen at one moment: its fields then (Sendable, unlike the live `Worker`); Node's
/// `cluster.Worker` object as an event passes it.
public struct WorkerSnapshot: Sendable, Hashable {
    /// `worker.id`.
    public var id: Int
    /// `worker.process.pid`.
    public var pid: Int32
    /// `worker.state`.
    public var state: WorkerState
    /// `worker.isConnected()`.
    public var isConnected: Bool
    /// `worker.isDead()`.
    public var isDead: Bool
    /// `worker.exitedAfterDisconnect`.
    public var exitedAfterDisconnect: Bool?

    init(_ w: Worker) {
        id = w.id
        pid = w.pid
        state = w.state
        isConnected = w.isConnected
        isDead = w.isDead
        exitedAfterDisconnect = w.exitedAfterDisconnect
    }
}

/// An event of the primary, as an async sequence element (Node's `cluster.on(...)` events).
public enum PrimaryEvent: Sendable {
    /// `'fork'`.
    case fork(WorkerSnapshot)
    /// `'online'`.
    case online(WorkerSnapshot)
    /// `'listening'`.
    case listening(WorkerSnapshot, ListeningAddress)
    /// `'message'`, with the handle sent with it, if any.
    case message(WorkerSnapshot, Message)
    /// `'disconnect'`.
    case disconnect(WorkerSnapshot)
    /// `'exit'`.
    case exit(WorkerSnapshot, code: Int?, signal: Signal?)
    /// `'setup'`.
    case setup(ClusterSettings)

    init(_ event: ClusterEvent) {
        switch event {
        case .fork(let w): self = .fork(WorkerSnapshot(w))
        case .online(let w): self = .online(WorkerSnapshot(w))
        case .listening(let w, let a): self = .listening(WorkerSnapshot(w), a)
        case .message(let w, let m, let h): self = .message(WorkerSnapshot(w), Message(m, handle: h))
        case .disconnect(let w): self = .disconnect(WorkerSnapshot(w))
        case .exit(let w, let code, let signal): self = .exit(WorkerSnapshot(w), code: code, signal: signal)
        case .setup(let s): self = .setup(s)
        }
    }
}

/// An event of one worker, as its handle's stream gives it (Node's `worker.on(...)` events).
public enum AsyncWorkerEvent: Sendable {
    /// `'online'`.
    case online
    /// `'listening'`.
    case listening(ListeningAddress)
    /// `'message'`, with the handle sent with it, if any.
    case message(Message)
    /// `'disconnect'`.
    case disconnect
    /// `'exit'`.
    case exit(code: Int?, signal: Signal?)
    /// `'error'`: a send on a closed channel (`ERR_IPC_CHANNEL_CLOSED`), or a worker that could not be
    /// started (the spawn's errno; no `'exit'` follows, as in Node).
    case error(ClusterError)
}

/// The primary for async code (Node's `cluster` in the primary): `fork`, `send`, `disconnect`, `kill`,
/// `shutdown`, and its events as an `EventStream`.
public final class AsyncPrimary: Sendable {
    let state: LoopBound<PrimaryState>
    /// Every cluster event, in order (`cluster.on(...)`). Finishes once `shutdown()` has seen every
    /// worker end. Beyond its buffer's bound (`AsyncCluster.start(events:)`) an event is dropped and
    /// counted in `dropped`.
    public let events: EventStream<PrimaryEvent>

    init(_ primary: Primary, events policy: BufferPolicy) {
        let (stream, sink) = EventStream<PrimaryEvent>.make(policy)
        let state = PrimaryState(primary, sink)
        // The primary holds the state for the process's life: events flow, and the stream finishes at
        // shutdown, whoever holds this object.
        primary.on { event in state.received(event) }
        self.state = LoopBound(value: state, loop: primary.loop)
        events = stream
    }

    /// `cluster.fork(env)`: starts a worker and returns its handle at once (`'fork'`, `'online'` follow).
    /// `events` bounds the handle's stream of that worker's events. A worker whose process cannot start
    /// is returned too, as in Node: its handle's events give the `'error'`, and `exit()` the code.
    /// - Throws: `ERR_CHILD_PROCESS_IPC_REQUIRED` / `ERR_IPC_ONE_PIPE` for a bad `stdio` setting;
    ///   `ERR_CLUSTER_SHUT_DOWN` (no Node counterpart) after `shutdown()`; `ABORT_ERR` when the task is
    ///   cancelled before the worker was started (none is then started).
    public func fork(env: [String: String] = [:], events: BufferPolicy = .standard) async throws(ClusterError) -> AsyncWorkerHandle {
        let s = state
        return try await s.loop.wait { (w: LoopWait<AsyncWorkerHandle>) in s.value.fork(env: env, events: events, w) }.get()
    }

    /// `cluster.setupPrimary(settings)`. Cancelled before it reached the loop, it changes nothing.
    public func setupPrimary(_ update: SettingsUpdate) async {
        let s = state
        _ = await s.loop.perform { s.value.primary.setupPrimary(update) }
    }

    /// `worker.send(message)` to worker `id` (`cluster.workers[id].send(message)`); false when it is gone,
    /// its channel is closed, or the task was cancelled before the message reached the loop (it is then
    /// not sent).
    public func send(_ message: JSONValue, to id: Int) async -> Bool {
        let s = state
        return (try? await s.loop.perform { s.value.primary.workers[id]?.send(message) ?? false }.get()) ?? false
    }

    /// `worker.disconnect()` for worker `id` (`cluster.workers[id].disconnect()`); returns at once, as
    /// Node's does (the worker's handle can wait for its `'disconnect'`). Cancelled before it reached the
    /// loop, it does nothing.
    public func disconnect(worker id: Int) async {
        let s = state
        _ = await s.loop.perform { _ = s.value.primary.workers[id]?.disconnect() }
    }

    /// `worker.kill(signal)` for worker `id` (`cluster.workers[id].kill(signal)`). Cancelled before it
    /// reached the loop, it does nothing.
    public func kill(worker id: Int, signal: Signal = .terminate) async {
        let s = state
        _ = await s.loop.perform { s.value.primary.workers[id]?.kill(signal) }
    }

    /// `cluster.disconnect(callback)`, returning when the callback runs. If the task is cancelled,
    /// returns at once; the workers still disconnect.
    public func disconnectAll() async {
        let s = state
        _ = await s.loop.wait { (w: LoopWait<Void>) in s.value.primary.disconnect { w.succeed(()) } }
    }

    /// The ids in `cluster.workers`, ascending; empty when the task is cancelled before they were read.
    public func workerIDs() async -> [Int] {
        let s = state
        return (try? await s.loop.perform { s.value.primary.workerIDs }.get()) ?? []
    }

    /// Ends the cluster (Node has no single call for it: `cluster.disconnect()`, then waiting for every
    /// `'exit'`): disconnects every worker, waits until each has exited and disconnected, then finishes
    /// `events`. Later `fork()` calls throw `ERR_CLUSTER_SHUT_DOWN`. If the task is cancelled, returns at
    /// once and finishes `events` then; the workers still disconnect, and their handles' streams finish
    /// when they end.
    public func shutdown() async {
        let s = state
        _ = await s.loop.wait { (w: LoopWait<Void>) in s.value.shutdown(w) }
    }
}

/// One worker of the primary for async code (Node's `cluster.Worker` in the primary): its id and pid,
/// its own events, `send`, `disconnect`, `kill`, and its exit to await. Dropping the handle changes
/// nothing for the worker, which runs on as a member of `cluster.workers`.
public final class AsyncWorkerHandle: Sendable {
    let record: LoopBound<WorkerRecord>
    /// `worker.id`.
    public let id: Int
    /// `worker.process.pid`; 0 when the process could not be started.
    public let pid: Int32
    /// This worker's events, in order (`worker.on(...)`); finishes once the worker has both exited and
    /// disconnected (for a worker that could not start: after its `'error'` and `'disconnect'`). Beyond
    /// its buffer's bound an event is dropped and counted in `dropped`.
    public let events: EventStream<AsyncWorkerEvent>

    init(_ record: LoopBound<WorkerRecord>, events: EventStream<AsyncWorkerEvent>) {
        self.record = record
        id = record.value.worker.id
        pid = record.value.worker.pid
        self.events = events
    }

    /// `worker.send(message)`: true once sent or queued; false when the channel is closed (an `'error'`
    /// event follows), or when the task was cancelled before the message reached the loop (it is then
    /// not sent).
    public func send(_ message: JSONValue) async -> Bool {
        let r = record
        return (try? await r.loop.perform { r.value.worker.send(message) }.get()) ?? false
    }

    /// `worker.send(message, sendHandle)` with a descriptor as the handle: its kind (a listening or a
    /// connected socket, or other) is read from the descriptor, and this process keeps its copy. False
    /// as `send(_:)` says.
    /// - Throws: `ERR_INVALID_HANDLE_TYPE` when the descriptor is not open.
    public func send(_ message: JSONValue, descriptor fd: Int32) async throws(ClusterError) -> Bool {
        let r = record
        return try await r.loop.send { () throws(ClusterError) in try r.value.worker.send(message, handle: .descriptor(fd)) }
    }

    /// `send(_:)` of a `Codable` value, encoded as JSON (decode what arrives with `JSONValue.decode(_:)`).
    /// - Throws: the value's encoding error; nothing is sent then.
    public func send<Message: Encodable>(encoding message: Message) async throws -> Bool {
        await send(try JSONValue(encoding: message))
    }

    /// `worker.disconnect()`, returning once the worker's channel has closed (`'disconnect'`), at once if
    /// it already has. If the task is cancelled, returns at once; the disconnect goes on.
    public func disconnect() async {
        let r = record
        _ = await r.loop.wait { (w: LoopWait<Void>) in r.value.disconnect(w) }
    }

    /// `worker.kill(signal)` (default `SIGTERM`). Cancelled before it reached the loop, it does nothing.
    public func kill(_ signal: Signal = .terminate) async {
        let r = record
        _ = await r.loop.perform { r.value.worker.kill(signal) }
    }

    /// The worker's `'exit'`: its exit code, or the signal that ended it, once it has ended (at once if it
    /// has). For a worker that could not start: the negated errno as Node reports it, no signal.
    /// - Throws: only `ABORT_ERR`, when the task is cancelled first (the worker is not affected).
    public func exit() async throws(ClusterError) -> (code: Int?, signal: Signal?) {
        let r = record
        return try await r.loop.wait { (w: LoopWait<(code: Int?, signal: Signal?)>) in r.value.exit(w) }.get()
    }

    /// The worker's fields now (`worker.state`, `isConnected()`, `isDead()`, `exitedAfterDisconnect`).
    /// - Throws: only `ABORT_ERR`, when the task is cancelled before they were read.
    public func snapshot() async throws(ClusterError) -> WorkerSnapshot {
        let r = record
        return try await r.loop.perform { WorkerSnapshot(r.value.worker) }.get()
    }
}

// MARK: - The loop side

/// The loop side of `AsyncPrimary`. Loop thread only.
final class PrimaryState {
    let primary: Primary
    private let sink: EventSink<PrimaryEvent>
    /// The workers forked here that have not both exited and disconnected.
    private var live: [Int: WorkerRecord] = [:]
    private var shuttingDown = false
    private var finished = false
    private var shutdownWaits: [LoopWait<Void>] = []

    init(_ primary: Primary, _ sink: EventSink<PrimaryEvent>) {
        self.primary = primary
        self.sink = sink
    }

    func received(_ event: ClusterEvent) {
        if !finished { sink.yield(PrimaryEvent(event)) }
        // A worker ends with the later of its 'exit' and 'disconnect' (their order varies, as in Node).
        switch event {
        case .exit(let w, _, _) where !w.isConnected: ended(w.id)
        case .disconnect(let w) where w.isDead: ended(w.id)
        default: break
        }
    }

    private func ended(_ id: Int) {
        live[id] = nil
        if shuttingDown && live.isEmpty { finish() }
    }

    func fork(env: [String: String], events policy: BufferPolicy, _ wait: LoopWait<AsyncWorkerHandle>) {
        guard !shuttingDown else {
            return wait.fail(ClusterError(code: "ERR_CLUSTER_SHUT_DOWN", message: "The cluster was shut down"))
        }
        do throws(ClusterError) {
            let worker = try primary.fork(env: env)
            let (stream, sink) = EventStream<AsyncWorkerEvent>.make(policy)
            let record = WorkerRecord(worker, sink)
            live[worker.id] = record
            wait.succeed(AsyncWorkerHandle(LoopBound(value: record, loop: primary.loop), events: stream))
        } catch {
            wait.fail(error)
        }
    }

    func shutdown(_ wait: LoopWait<Void>) {
        guard !finished else { return wait.succeed(()) }
        shuttingDown = true
        shutdownWaits.append(wait)
        wait.onCancel = { [weak self, wait] in
            self?.shutdownWaits.removeAll { $0 === wait }
            self?.finish()
        }
        primary.disconnect()
        if live.isEmpty { finish() }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        sink.finish()
        let waits = shutdownWaits
        shutdownWaits.removeAll()
        waits.forEach { $0.succeed(()) }
    }
}

/// The loop side of an `AsyncWorkerHandle`: one worker's events and the waits for its disconnect and
/// exit. Held by the primary's state until the worker ends, and by the handle. Loop thread only.
final class WorkerRecord {
    let worker: Worker
    private let sink: EventSink<AsyncWorkerEvent>
    private var termination: (code: Int?, signal: Signal?)?
    private var exitWaits: [LoopWait<(code: Int?, signal: Signal?)>] = []
    private var disconnectWaits: [LoopWait<Void>] = []

    init(_ worker: Worker, _ sink: EventSink<AsyncWorkerEvent>) {
        self.worker = worker
        self.sink = sink
        // Weak: the worker holds this closure; the record holds the worker.
        worker.on { [weak self] event in self?.received(event) }
    }

    private func received(_ event: WorkerEvent) {
        switch event {
        case .online: sink.yield(.online)
        case .listening(let a): sink.yield(.listening(a))
        case .message(let m, let h): sink.yield(.message(Message(m, handle: h)))
        case .disconnect: sink.yield(.disconnect)
        case .exit(let code, let signal): sink.yield(.exit(code: code, signal: signal))
        case .error(let e): sink.yield(.error(e))
        }
        // A worker that could not start is dead from its 'error' on, with no 'exit'.
        if termination == nil, let t = worker.termination {
            termination = t
            let waits = exitWaits
            exitWaits.removeAll()
            waits.forEach { $0.succeed(t) }
        }
        if !worker.isConnected {
            let waits = disconnectWaits
            disconnectWaits.removeAll()
            waits.forEach { $0.succeed(()) }
        }
        if termination != nil && !worker.isConnected { sink.finish() }
    }

    func exit(_ wait: LoopWait<(code: Int?, signal: Signal?)>) {
        if let termination { return wait.succeed(termination) }
        exitWaits.append(wait)
        wait.onCancel = { [weak self, wait] in self?.exitWaits.removeAll { $0 === wait } }
    }

    func disconnect(_ wait: LoopWait<Void>) {
        guard worker.isConnected else { return wait.succeed(()) }
        disconnectWaits.append(wait)
        wait.onCancel = { [weak self, wait] in self?.disconnectWaits.removeAll { $0 === wait } }
        worker.disconnect()
    }
}
