import ClusterJSON

#if canImport(Glibc)
import Glibc
#endif

/// `cluster.worker` for async code: the worker's id, its messages, `send`, `listen`, `disconnect`.
public final class AsyncWorker: Sendable {
    let state: LoopBound<WorkerProcessState>
    /// `cluster.worker.id`.
    public let id: Int
    /// User messages from the primary with the handles sent with them, in order (`process.on('message')`).
    /// Finishes when the channel to the primary closes (`'disconnect'`). Beyond its buffer's bound a new
    /// message is dropped (its handle closed) and counted in `dropped`.
    public let messages: EventStream<Message>

    init(_ worker: ClusterWorker, messages policy: BufferPolicy) {
        let (stream, sink) = EventStream<Message>.make(policy)
        let state = WorkerProcessState(worker, sink)
        // The worker runtime holds the state for the process's life: the stream finishes only when the
        // channel closes, whoever holds this object.
        worker.on { event in state.received(event) }
        self.state = LoopBound(value: state, loop: worker.loop)
        id = worker.id
        messages = stream
    }

    /// `process.send(message)`: true once sent or queued; false when the channel is closed (or the task
    /// was cancelled before the message reached the loop: it is then not sent).
    public func send(_ message: JSONValue) async -> Bool {
        let s = state
        return (try? await s.loop.perform { s.value.worker.send(message) }.get()) ?? false
    }

    /// `process.send(message, sendHandle)` with a descriptor as the handle: its kind (a listening or a
    /// connected socket, or other) is read from the descriptor, and this process keeps its copy. False
    /// as `send(_:)` says.
    /// - Throws: `ERR_INVALID_HANDLE_TYPE` when the descriptor is not open.
    public func send(_ message: JSONValue, descriptor fd: Int32) async throws(ClusterError) -> Bool {
        let s = state
        return try await s.loop.send { () throws(ClusterError) in try s.value.worker.send(message, handle: .descriptor(fd)) }
    }

    /// `send(_:)` of a `Codable` value, encoded as JSON (decode what arrives with `JSONValue.decode(_:)`).
    /// - Throws: the value's encoding error; nothing is sent then.
    public func send<Message: Encodable>(encoding message: Message) async throws -> Bool {
        await send(try JSONValue(encoding: message))
    }

    /// `cluster.worker.disconnect()`: closes the servers obtained through the primary, waits for them
    /// to close, and returns once the channel has closed (`'disconnect'`). If the task is cancelled,
    /// returns at once; the disconnect goes on.
    public func disconnect() async {
        let s = state
        _ = await s.loop.wait { (w: LoopWait<Void>) in s.value.disconnect(w) }
    }

    /// `server.listen(...)` through the cluster (`net.createServer().listen()` in a worker); returns
    /// once listening. `connections` bounds the server's stream of connections.
    /// - Throws: the listen error (`EADDRINUSE`, say); `ABORT_ERR` when the task is cancelled: the server
    ///   is closed, and closed again should the primary's answer come later.
    public func listen(_ target: ListenTarget, exclusive: Bool = false, backlog: Int32 = 511,
                       connections: BufferPolicy = .standard) async throws(ClusterError) -> AsyncServer {
        let s = state
        return try await s.loop.wait { (w: LoopWait<AsyncServer>) in
            ServerBox.listen(s.value.worker, target, exclusive: exclusive, backlog: backlog, buffer: connections, w)
        }.get()
    }

    /// A connection for a connected socket this process owns, such as a handle received with a message
    /// (`ReceivedHandle.take()`); it becomes non-blocking and belongs to no server (Node:
    /// `new net.Socket({fd})`).
    /// - Throws: `EBADF` when `fd` is not an open descriptor (it is then not owned).
    public func connection(adopting fd: Int32) throws(ClusterError) -> AsyncConnection {
        let loop = state.loop
        // Made here and used only on the loop from now on: submitting work orders this before it.
        return AsyncConnection(LoopBound(value: ConnectionIO(try Connection(adopting: fd), loop: loop), loop: loop))
    }
}

/// The loop side of an `AsyncWorker`. Loop thread only.
final class WorkerProcessState {
    let worker: ClusterWorker
    private let sink: EventSink<Message>
    private var disconnected = false
    private var disconnectWaits: [LoopWait<Void>] = []

    init(_ worker: ClusterWorker, _ sink: EventSink<Message>) {
        self.worker = worker
        self.sink = sink
    }

    func received(_ event: WorkerProcessEvent) {
        switch event {
        case .message(let value, let handle):
            sink.yield(Message(value, handle: handle))
        case .disconnect:
            disconnected = true
            sink.finish()
            let waits = disconnectWaits
            disconnectWaits.removeAll()
            waits.forEach { $0.succeed(()) }
        case .error:
            break  // a failed send already returned false to its caller
        }
    }

    func disconnect(_ wait: LoopWait<Void>) {
        guard !disconnected else { return wait.succeed(()) }
        disconnectWaits.append(wait)
        wait.onCancel = { [weak self, wait] in self?.disconnectWaits.removeAll { $0 === wait } }
        worker.disconnect()
    }
}
