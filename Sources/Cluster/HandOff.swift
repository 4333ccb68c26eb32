import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Serving a connection with other code (SwiftNIO, say) while the server still counts it. In Node a socket
// an http.Server serves is still one of the net.Server's connections until its 'close' event: it holds
// back `server.close()` (and so `worker.disconnect()`), counts towards `maxConnections` and keeps the
// process alive. `Connection.detach()` forgets the connection at once; `handOff()` keeps all three until
// the new owner says it is done.

/// A connection's descriptor in other hands (`Connection.handOff()`): the server counts the connection
/// until `release()` — Node's socket `'close'`, which drops the server's connection count.
public struct HandedOffConnection: Sendable {
    /// The connected socket (non-blocking, close-on-exec); the new owner closes it.
    public let fd: Int32
    let releaser: Releaser

    /// Ends the connection for its server, after the new owner closed the descriptor (the socket's
    /// `'close'`): `server.close()` and `worker.disconnect()` stop waiting for it and the process may end.
    /// Callable from any thread; only the first call counts. When the last copy of this value goes
    /// without a call, the connection is released then.
    public func release() { releaser.run() }
}

/// Runs the server's bookkeeping once, on the server's loop.
final class Releaser: Sendable {
    private let done = Atomic<Bool>(false)
    private let connection: LoopBound<Connection>

    init(_ connection: LoopBound<Connection>) { self.connection = connection }

    // Every copy of the HandedOffConnection is gone without a release(): nobody can end the connection
    // for its server any more, so it ends now rather than holding the server (and the process) forever.
    deinit { run() }

    func run() {
        guard !done.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let c = connection
        c.loop.submit {
            c.value.server?.connectionEnded()
            // Balances the retain of handOff(); the loop may end once this work is done.
            c.loop.release()
        }
    }
}

extension Connection {
    /// Gives the descriptor to other code that will close it (SwiftNIO's
    /// `ClientBootstrap.withConnectedSocket`, say) while the server keeps counting the connection — for
    /// `maxConnections`, `server.close()` and `worker.disconnect()` — and the process stays alive, until
    /// `release()` is called: Node's `http.Server` serving a `net.Socket` until its `'close'`. Nil when
    /// the connection was already closed, detached or handed off.
    public func handOff() -> HandedOffConnection? {
        guard !isClosed, let loop = server?.loop else { return nil }
        isClosed = true
        loop.retain()
        return HandedOffConnection(fd: fd, releaser: Releaser(LoopBound(value: self, loop: loop)))
    }
}
