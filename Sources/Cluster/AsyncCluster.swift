import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

// The async/await face of the cluster. The cluster itself lives on one event loop thread, where its
// callbacks run in order (that is what gives Node's semantics); these types run that loop on a thread of
// its own and hand results and events to Swift concurrency.

/// A value that may only be touched on its event loop's thread, passed across concurrency domains
/// (NIO's `NIOLoopBound`).
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    let loop: EventLoop
}

extension EventLoop {
    /// Runs `body` on the loop and returns its result to the caller's task.
    func perform<T: Sendable>(_ body: @escaping () -> T) async -> T {
        await withCheckedContinuation { continuation in
            let box = LoopBound(value: body, loop: self)
            submit { continuation.resume(returning: box.value()) }
        }
    }
}

/// A worker as seen in one event: its fields at that moment (Sendable, unlike the live `Worker`).
public struct WorkerSnapshot: Sendable, Hashable {
    /// `worker.id`.
    public var id: Int
    /// The process id.
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
    /// `'message'`, and the handle sent with it, if any.
    case message(WorkerSnapshot, JSONValue, handle: ReceivedHandle?)
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
        case .message(let w, let m, let h): self = .message(WorkerSnapshot(w), m, handle: h)
        case .disconnect(let w): self = .disconnect(WorkerSnapshot(w))
        case .exit(let w, let code, let signal): self = .exit(WorkerSnapshot(w), code: code, signal: signal)
        case .setup(let s): self = .setup(s)
        }
    }
}

/// Which side of the cluster this process is, for async code.
public enum AsyncClusterRole: Sendable {
    /// The primary.
    case primary(AsyncPrimary)
    /// A worker.
    case worker(AsyncWorker)
}

/// Starts the cluster on a loop thread of its own (`cluster` for async code).
public enum AsyncCluster {
    /// Starts the runtime and returns this process's role. Call once.
    public static func start() -> AsyncClusterRole {
        let loop = EventLoop()
        loop.retain()  // the loop lives as long as the process
        // The runtime is set up here, before the loop's thread exists: until `run()` starts nobody else
        // touches the loop, and starting the thread orders everything done here before it.
        let role: AsyncClusterRole
        switch ClusterRuntime.start(on: loop) {
        case .primary(let p): role = .primary(AsyncPrimary(LoopBound(value: p, loop: loop)))
        case .worker(let w): role = .worker(AsyncWorker(LoopBound(value: w, loop: loop)))
        }
        startThread(LoopBound(value: (), loop: loop)) { $0.loop.run() }
        return role
    }
}

/// A closure handed to a new thread.
private final class ThreadStart: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body(value)` on a new detached thread.
func startThread<T>(_ value: LoopBound<T>, _ body: @escaping @Sendable (LoopBound<T>) -> Void) {
    let start = Unmanaged.passRetained(ThreadStart { body(value) }).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, start)
    precondition(rc == 0, "cannot start the event loop's thread: \(errnoName(rc))")
    pthread_detach(thread)
}

/// The primary for async code: `fork`, `send`, `disconnect`, `kill`, and its events as an `AsyncStream`.
public final class AsyncPrimary: Sendable {
    private let primary: LoopBound<Primary>
    /// Every cluster event, in order (`cluster.on(...)`).
    public let events: AsyncStream<PrimaryEvent>

    init(_ primary: LoopBound<Primary>) {
        self.primary = primary
        let (stream, continuation) = AsyncStream<PrimaryEvent>.makeStream()
        events = stream
        primary.value.on { continuation.yield(PrimaryEvent($0)) }
    }

    /// `cluster.fork(env)`.
    public func fork(env: [String: String] = [:]) async throws(ClusterError) -> WorkerSnapshot {
        let p = primary
        let result: Result<WorkerSnapshot, ClusterError> = await p.loop.perform {
            do throws(ClusterError) { return .success(WorkerSnapshot(try p.value.fork(env: env))) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// `cluster.setupPrimary(settings)`.
    public func setupPrimary(_ update: SettingsUpdate) async {
        let p = primary
        await p.loop.perform { p.value.setupPrimary(update) }
    }

    /// `worker.send(message)` to worker `id`; false when it is gone or its channel closed.
    public func send(_ message: JSONValue, to id: Int) async -> Bool {
        let p = primary
        return await p.loop.perform { p.value.workers[id]?.send(message) ?? false }
    }

    /// `worker.disconnect()`.
    public func disconnect(worker id: Int) async {
        let p = primary
        await p.loop.perform { _ = p.value.workers[id]?.disconnect() }
    }

    /// `worker.kill(signal)`.
    public func kill(worker id: Int, signal: Signal = .terminate) async {
        let p = primary
        await p.loop.perform { p.value.workers[id]?.kill(signal) }
    }

    /// `cluster.disconnect()`, returning when its callback runs.
    public func disconnectAll() async {
        let p = primary
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            p.loop.submit { p.value.disconnect { c.resume() } }
        }
    }

    /// The ids in `cluster.workers`.
    public func workerIDs() async -> [Int] {
        let p = primary
        return await p.loop.perform { p.value.workerIDs }
    }
}

/// `cluster.worker` for async code: the worker's id, its messages, `send`, `listen`, `disconnect`.
public final class AsyncWorker: Sendable {
    private let worker: LoopBound<ClusterWorker>
    /// `cluster.worker.id`.
    public let id: Int
    /// User messages from the primary, in order (`process.on('message')`). A handle sent with a message
    /// is not delivered here (it is closed); use the loop-bound `ClusterWorker` to receive handles.
    public let messages: AsyncStream<JSONValue>

    init(_ worker: LoopBound<ClusterWorker>) {
        self.worker = worker
        id = worker.value.id
        let (stream, continuation) = AsyncStream<JSONValue>.makeStream()
        messages = stream
        worker.value.on { event in
            switch event {
            case .message(let m, _): continuation.yield(m)
            case .disconnect: continuation.finish()
            case .error: break  // a failed send already returned false to its caller
            }
        }
    }

    /// `process.send(message)`.
    public func send(_ message: JSONValue) async -> Bool {
        let w = worker
        return await w.loop.perform { w.value.send(message) }
    }

    /// `cluster.worker.disconnect()`.
    public func disconnect() async {
        let w = worker
        await w.loop.perform { w.value.disconnect() }
    }

    /// `server.listen(...)` through the cluster; returns once listening, or throws the listen error.
    public func listen(_ target: ListenTarget, exclusive: Bool = false, backlog: Int32 = 511) async throws(ClusterError) -> AsyncServer {
        let w = worker
        let result: Result<AsyncServer, ClusterError> = await withCheckedContinuation { c in
            w.loop.submit {
                let server = Server(loop: w.loop, cluster: w.value)
                let (stream, continuation) = AsyncStream<AsyncConnection>.makeStream()
                let bound = LoopBound(value: server, loop: w.loop)
                server.onConnection = { continuation.yield(AsyncConnection(LoopBound(value: $0, loop: w.loop))) }
                server.onClose = { continuation.finish() }
                server.onListening = { c.resume(returning: .success(AsyncServer(bound, connections: stream, address: server.address()))) }
                server.onError = { c.resume(returning: .failure($0)) }
                server.listen(target, exclusive: exclusive, backlog: backlog)
            }
        }
        return try result.get()
    }
}

/// A listening server for async code; its connections arrive as an `AsyncStream`.
public final class AsyncServer: Sendable {
    private let server: LoopBound<Server>
    /// Accepted connections, in order (`'connection'`); the stream ends when the server closes.
    public let connections: AsyncStream<AsyncConnection>
    /// `server.address()` when it started listening.
    public let address: ServerAddress?

    init(_ server: LoopBound<Server>, connections: AsyncStream<AsyncConnection>, address: ServerAddress?) {
        self.server = server
        self.connections = connections
        self.address = address
    }

    /// `server.maxConnections`.
    public func setMaxConnections(_ n: Int?) async {
        let s = server
        await s.loop.perform { s.value.maxConnections = n }
    }

    /// `server.close()`, returning when the last connection has ended.
    public func close() async {
        let s = server
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            s.loop.submit { s.value.close { _ in c.resume() } }
        }
    }
}

/// An accepted connection for async code: read, write, close, or take the descriptor (to serve it with
/// SwiftNIO, say).
public final class AsyncConnection: Sendable {
    let connection: LoopBound<Connection>
    /// The connected socket (non-blocking).
    public var fd: Int32 { connection.value.fd }

    init(_ connection: LoopBound<Connection>) { self.connection = connection }

    /// Reads what is available, waiting for data; an empty array at end of stream.
    public func read(maxBytes: Int = 65536) async throws(ClusterError) -> [UInt8] {
        let c = connection
        let result: Result<[UInt8], ClusterError> = await withCheckedContinuation { k in
            c.loop.submit {
                var buffer = [UInt8](repeating: 0, count: maxBytes)
                func attempt() -> Result<[UInt8], ClusterError>? {
                    let n = buffer.withUnsafeMutableBytes { recv(c.value.fd, $0.baseAddress, $0.count, 0) }
                    if n >= 0 { return .success(Array(buffer[0..<n])) }
                    if errno == EAGAIN || errno == EINTR { return nil }
                    return .failure(ClusterError(errno: errno, syscall: "read"))
                }
                if let r = attempt() { k.resume(returning: r); return }
                var watcher: Watcher?
                do throws(ClusterError) {
                    watcher = try c.loop.watch(c.value.fd) {
                        guard let r = attempt() else { return }
                        watcher?.cancel()
                        k.resume(returning: r)
                    }
                } catch {
                    k.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Writes all of `bytes`.
    public func write(_ bytes: [UInt8]) async throws(ClusterError) {
        let c = connection
        let result: Result<Void, ClusterError> = await c.loop.perform {
            do throws(SystemError) { try writeAll(c.value.fd, bytes); return .success(()) } catch {
                if error.errno == EAGAIN {
                    // A full socket buffer: wait for room (rare for small writes).
                    var p = pollfd(fd: c.value.fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, -1)
                    do throws(SystemError) { try writeAll(c.value.fd, bytes); return .success(()) } catch { return .failure(ClusterError(errno: error.errno, syscall: "write")) }
                }
                return .failure(ClusterError(errno: error.errno, syscall: "write"))
            }
        }
        try result.get()
    }

    /// Closes the connection.
    public func close() async {
        let c = connection
        await c.loop.perform {
            shutdown(c.value.fd, Int32(SHUT_WR))
            c.value.close()
        }
    }

    /// Takes the descriptor out of the cluster's hands; the caller must close it.
    public func detach() async -> Int32 {
        let c = connection
        return await c.loop.perform { c.value.detach() }
    }
}
