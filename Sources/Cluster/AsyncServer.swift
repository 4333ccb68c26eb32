#if canImport(Glibc)
import Glibc
#endif

/// A listening server for async code (Node's `net.Server`); its connections arrive as an `EventStream`.
/// Dropping it does not stop the server: as in Node, a listening server serves until it is closed
/// (`close()`, or the worker's disconnect); a connection that arrives when nobody holds the stream any
/// more is closed.
public final class AsyncServer: Sendable {
    let box: LoopBound<ServerBox>
    /// Accepted connections, in order (`'connection'`); the stream finishes when the server closes
    /// (`'close'`). Beyond its buffer's bound a new connection is closed and counted in `dropped`.
    public let connections: EventStream<AsyncConnection>
    /// `server.address()` when it started listening.
    public let address: ServerAddress?

    init(_ box: LoopBound<ServerBox>, connections: EventStream<AsyncConnection>, address: ServerAddress?) {
        self.box = box
        self.connections = connections
        self.address = address
    }

    /// Sets `server.maxConnections` (nil or 0: no limit). Cancelled before it reached the loop, it
    /// changes nothing.
    public func setMaxConnections(_ n: Int?) async {
        let b = box
        _ = await b.loop.perform { b.value.server.maxConnections = n }
    }

    /// `Server.handOffListeningSocket()` for async code: the listening socket, duplicated, for code that
    /// accepts on it itself (SwiftNIO's `ServerBootstrap.withBoundSocket`); `connections` then receives
    /// nothing more. Nil under round-robin in a worker (the primary accepts: hand off the connections
    /// instead), or when the server no longer listens. Node has no counterpart.
    /// - Throws: the errno of duplicating the socket; `ABORT_ERR` when the task was cancelled before the
    ///   loop ran the hand-off (nothing was handed off).
    public func handOffListeningSocket() async throws(ClusterError) -> Int32? {
        let b = box
        let result = await b.loop.wait { (w: LoopWait<Int32?>) in
            do throws(ClusterError) { w.succeed(try b.value.server.handOffListeningSocket()) } catch { w.fail(error) }
        }
        return try result.get()
    }

    /// `server.close(callback)`: stops listening at once and returns when the last connection has
    /// ended. If the task is cancelled, returns at once; the server still closes (it no longer listens,
    /// and `connections` finishes when its last connection ends).
    public func close() async {
        let b = box
        _ = await b.loop.wait { (w: LoopWait<Void>) in b.value.server.close { _ in w.succeed(()) } }
    }
}

/// The loop side of an `AsyncServer`: the server, kept alive from `listen` until it closes, whoever
/// holds the `AsyncServer`. Loop thread only.
final class ServerBox {
    let server: Server
    private let sink: EventSink<AsyncConnection>
    private var keepAlive: ServerBox?

    private init(_ server: Server, _ sink: EventSink<AsyncConnection>) {
        self.server = server
        self.sink = sink
    }

    /// `server.listen(...)` on the loop: `wait` gets the `AsyncServer` once it listens, or the error. A
    /// cancelled wait closes the server, now and again if the primary's grant comes later.
    static func listen(_ cluster: ClusterWorker, _ target: ListenTarget, exclusive: Bool, backlog: Int32,
                       buffer: BufferPolicy, _ wait: LoopWait<AsyncServer>) {
        let loop = cluster.loop
        let server = Server(loop: loop, cluster: cluster)
        let (stream, sink) = EventStream<AsyncConnection>.make(buffer)
        let box = ServerBox(server, sink)
        box.keepAlive = box
        var abandoned = false
        // Handed to the AsyncServer once, and not kept: when nobody holds the stream any more, a new
        // connection finds it terminated and is closed.
        var unclaimed: EventStream<AsyncConnection>? = stream
        server.onConnection = { connection in
            // A connection dropped by the buffer, or offered when nobody holds the stream, is released
            // here and so closed.
            sink.yield(AsyncConnection(LoopBound(value: ConnectionIO(connection, loop: loop), loop: loop)))
        }
        server.onClose = { [weak box] in
            sink.finish()
            box?.keepAlive = nil
        }
        // Weak: the server holds these closures, and the box holds the server.
        server.onListening = { [weak box, weak server] in
            guard let server else { return }
            if abandoned {
                // The grant of a cancelled listen arrived: nobody wants this server.
                server.close()
                return
            }
            guard let box, let stream = unclaimed else { return }
            unclaimed = nil
            wait.succeed(AsyncServer(LoopBound(value: box, loop: loop), connections: stream, address: server.address()))
        }
        server.onError = { [weak box] error in
            unclaimed = nil
            sink.finish()
            box?.keepAlive = nil
            wait.fail(error)
        }
        wait.onCancel = { [weak server] in
            abandoned = true
            server?.close()
        }
        server.listen(target, exclusive: exclusive, backlog: backlog)
    }
}
