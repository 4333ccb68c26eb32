import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// What a stream server listens on (the forms of Node's `server.listen()`).
public enum ListenTarget: Sendable, Hashable {
    /// `listen({host, port, ipv6Only})`; a nil host listens on every address (`::`, dual-stack).
    case tcp(host: String?, port: Int, ipv6Only: Bool = false)
    /// `server.listen({path, readableAll, writableAll})`: a Unix socket; a relative path is relative to the
    /// current directory. `readableAll` / `writableAll` add read / write permission for everyone to the
    /// socket file (libuv's `uv_pipe_chmod`). In a worker under round-robin the primary, which creates
    /// the file, applies them before it answers; a clustered listen under `none` does not apply them, as
    /// in Node 20.
    case unix(path: String, readableAll: Bool = false, writableAll: Bool = false)
    /// `listen({fd})`: in a worker, a descriptor **of the primary**.
    case fd(Int32)
    /// `listen(handle)`: a socket this process made itself; the primary is not involved.
    case handle(Int32)
}

/// A server's address (`server.address()`).
public enum ServerAddress: Sendable, Hashable {
    /// A TCP or UDP address: `{address, family, port}`.
    case inet(address: String, family: String, port: Int)
    /// A Unix socket's path.
    case path(String)
}

/// A stream server (Node's `net.Server`). In a worker, listening goes through the primary unless it is
/// `exclusive` or a `.handle`; connections then arrive handed off by the primary (round-robin) or accepted
/// here on the shared socket. Lives on one event loop; call it there.
public final class Server {
    /// The loop everything runs on.
    public let loop: EventLoop
    private let cluster: ClusterWorker?
    /// `server.maxConnections`; nil or 0 means no limit (Node 20 tests it for truthiness).
    public var maxConnections: Int?
    /// Called with each accepted connection (`'connection'`); the callee owns it.
    public var onConnection: (Connection) -> Void = { $0.close() }
    /// Called once the server listens (`'listening'`).
    public var onListening: () -> Void = {}
    /// Called with a listen error (`'error'`), e.g. `EADDRINUSE`.
    public var onError: (ClusterError) -> Void = { _ in }
    /// Called when the server has closed and its last connection ended (`'close'`).
    public var onClose: () -> Void = {}
    /// Called when `close()` starts, before the server waits for its connections: where Node's
    /// `http.Server.close()` calls `closeIdleConnections()`.
    public var onClosing: () -> Void = {}
    /// Connections accepted and not yet closed (`server.getConnections()`).
    public private(set) var connectionCount = 0

    private enum Mode { case idle, pending, listening, closing, closed }
    private var mode = Mode.idle
    private var listenFD: Int32 = -1
    private var watcher: Watcher?
    private var unlinkPath: String?
    private var clustered: (key: String, ticket: ClusterWorker.Ticket)?
    private var roundRobinAddress: ServerAddress?
    private var closeCallbacks: [(ClusterError?) -> Void] = []
    private var referenced = true
    private var retainsLoop = false
    /// A server keeps itself from listen() until it has closed, whoever else holds it: a listening server
    /// serves, and keeps the process alive, until it is closed (Node's semantics).
    private var untilClosed: Server?

    /// A server on `loop`; `cluster` is this process's worker runtime when it is a worker.
    public init(loop: EventLoop, cluster: ClusterWorker? = nil) {
        self.loop = loop
        self.cluster = cluster
    }

    /// Whether the server is listening.
    public var isListening: Bool { mode == .listening }

    // Reached only when idle or closed (a listening server holds itself); releases whatever is left.
    deinit {
        watcher?.cancel()
        if listenFD >= 0 { Glibc.close(listenFD) }
        if let unlinkPath { unlink(unlinkPath) }
        if let (key, ticket) = clustered { cluster?.released(key: key, ticket: ticket) }
        if retainsLoop { loop.release() }
    }

    /// The listening socket, when this process has one (Node: `server._handle.fd`): nil before listening,
    /// after closing, and for a round-robin server in a worker (the primary holds the socket). What
    /// `SendHandle.server` sends.
    public var listeningDescriptor: Int32? { mode == .listening && listenFD >= 0 ? listenFD : nil }

    // MARK: - Keeping the process alive

    /// `server.ref()`: a listening server keeps the event loop (so the process) alive; the default.
    public func ref() {
        referenced = true
        applyReference()
    }

    /// `server.unref()`: the server no longer keeps the event loop alive; it still serves while the loop
    /// runs for other reasons. May be called before `listen()`. A round-robin server in a worker, which
    /// has no socket of its own, behaves the same (Node's faux handle).
    public func unref() {
        referenced = false
        applyReference()
    }

    private func applyReference() {
        if let watcher { referenced ? watcher.ref() : watcher.unref() }
        // A server without a watcher (round-robin in a worker, or one whose socket was handed off) holds the
        // loop while it listens and is referenced.
        let hold = referenced && mode == .listening && watcher == nil
        guard hold != retainsLoop else { return }
        retainsLoop = hold
        if hold { loop.retain() } else { loop.release() }
    }

    /// `server.address()`; nil unless listening.
    public func address() -> ServerAddress? {
        guard mode == .listening else { return nil }
        if let roundRobinAddress { return roundRobinAddress }
        guard let a = SocketAddress.local(of: listenFD) else { return nil }
        if a.family == AF_UNIX { return .path(a.host ?? "") }
        return .inet(address: a.host ?? "", family: familyName(a.family), port: a.port)
    }

    // MARK: - Listen (net.js listenInCluster)

    /// `server.listen(...)`. In a worker, `.tcp`, `.unix` and `.fd` go through the primary unless
    /// `exclusive` (`.fd` always does); `.handle` never does.
    public func listen(_ target: ListenTarget, exclusive: Bool = false, backlog: Int32 = 511) {
        guard mode == .idle || mode == .closed else {
            let e = ClusterError(code: "ERR_SERVER_ALREADY_LISTEN", message: "Listen method has been called more than once without closing.")
            loop.nextTick { [self] in onError(e) }
            return
        }
        mode = .pending
        untilClosed = self
        roundRobinAddress = nil
        switch target {
        case .handle(let fd):
            do throws(ClusterError) { try Sockets.setNonBlocking(fd) } catch { fail(error); return }
            if Glibc.listen(fd, backlog) != 0 { fail(ClusterError(errno: errno, syscall: "listen")); return }
            listening(on: fd, owned: false)
        case .fd(let fd):
            if let cluster {
                listenThroughPrimary(cluster, ServerRequest(address: nil, port: 0, addressType: .descriptor, fd: fd, backlog: backlog), requestedPort: 0)
            } else {
                do throws(ClusterError) { try Sockets.setNonBlocking(fd) } catch { fail(error); return }
                if Glibc.listen(fd, backlog) != 0 { fail(ClusterError(errno: errno, syscall: "listen")); return }
                listening(on: fd, owned: false)
            }
        case .tcp(let host, let port, let ipv6Only):
            var resolved: (address: String, family: Int)?
            if let host {
                guard let r = Sockets.resolve(host) else {
                    fail(ClusterError(code: "ENOTFOUND", syscall: "getaddrinfo", message: "getaddrinfo ENOTFOUND \(host)"))
                    return
                }
                resolved = r
            }
            if let cluster, !exclusive {
                // A listen without host asks for address null, addressType 4 (Node's rule).
                var query = ServerRequest(address: resolved?.address, port: port,
                                                addressType: resolved?.family == 6 ? .ipv6 : .ipv4, fd: nil, backlog: backlog)
                query.ipv6Only = host != nil && ipv6Only
                listenThroughPrimary(cluster, query, requestedPort: port)
            } else {
                switch Sockets.listeningTCP(host: resolved?.address, port: port, ipv6Only: ipv6Only, backlog: backlog) {
                case .success(let fd): listening(on: fd)
                case .failure(let e): fail(ClusterError(code: e.code, errno: e.errno, syscall: "listen", message: e.message))
                }
            }
        case .unix(let path, let readableAll, let writableAll):
            if path.hasPrefix("\0") && (readableAll || writableAll) {
                // An abstract socket has no file to change (Node throws the same code).
                fail(ClusterError(code: "ERR_INVALID_ARG_VALUE",
                                  message: "can not set readableAll or writableAll to true when path is abstract unix socket"))
                return
            }
            let absolute = absolutePath(path)
            if let cluster, !exclusive {
                var query = ServerRequest(address: absolute, port: -1, addressType: .unix, fd: nil, backlog: backlog)
                query.readableAll = readableAll
                query.writableAll = writableAll
                listenThroughPrimary(cluster, query, requestedPort: -1)
            } else {
                switch Sockets.listeningUnix(path: path, backlog: backlog, readableAll: readableAll, writableAll: writableAll) {
                case .success(let fd):
                    unlinkPath = path
                    listening(on: fd)
                case .failure(let e) where e.syscall == Sockets.pipeModeCall: fail(e)
                case .failure(let e): fail(ClusterError(code: e.code, errno: e.errno, syscall: "listen", message: e.message))
                }
            }
        }
    }

    private func fail(_ error: ClusterError) {
        mode = .idle
        // The strong capture keeps the server until its 'error' is delivered.
        untilClosed = nil
        loop.nextTick { [self] in onError(error) }
    }

    /// Starts accepting on `fd`; a socket the server made itself (`owned`) is closed if that fails.
    private func listening(on fd: Int32, owned: Bool = true, then report: (() -> Void)? = nil) {
        do throws(ClusterError) {
            watcher = try loop.watch(fd, referenced: referenced) { [weak self] in self?.acceptAll() }
        } catch {
            if owned { Glibc.close(fd) }
            if let unlinkPath { unlink(unlinkPath) }
            unlinkPath = nil
            if let (key, ticket) = clustered { cluster?.released(key: key, ticket: ticket) }
            clustered = nil
            fail(error)
            return
        }
        listenFD = fd
        mode = .listening
        Sockets.keepReserve()
        loop.nextTick { [self] in
            guard mode == .listening else { return }
            onListening()
            report?()
        }
    }

    private func listenThroughPrimary(_ cluster: ClusterWorker, _ query: ServerRequest, requestedPort: Int) {
        _ = cluster.queryServer(query) { [self] ticket, grant in
            switch grant {
            case .failed(let error):
                fail(error)
            case .roundRobin(let key, let sockname):
                clustered = (key, ticket)
                cluster.track(key: key) { [weak self] done in
                    guard let self else { return done() }
                    close { _ in done() }
                }
                cluster.registerRoundRobin(self, key: key)
                if let s = sockname, let address = s["address"]?.stringValue, let port = s["port"]?.intValue {
                    roundRobinAddress = .inet(address: address, family: s["family"]?.stringValue ?? "IPv4", port: port)
                } else if let path = query.address, query.addressType == .unix {
                    roundRobinAddress = .path(path)
                }
                mode = .listening
                // The faux handle keeps the process alive as a real server would (unless unref'd).
                applyReference()
                let port = roundRobinAddress.flatMap { if case .inet(_, _, let p) = $0 { p } else { nil } } ?? requestedPort
                loop.nextTick { [self] in
                    guard mode == .listening else { return }
                    onListening()
                    cluster.reportListening(ticket, port: port)
                }
            case .shared(let key, let fd):
                clustered = (key, ticket)
                cluster.track(key: key) { [weak self] done in
                    guard let self else { return done() }
                    if mode == .listening || mode == .pending { close { _ in done() } } else {
                        Glibc.close(fd)
                        cluster.released(key: key, ticket: ticket)
                        done()
                    }
                }
                // The socket was bound for the requested port; any other port means the bind failed in the
                // primary (net.js checkBindError).
                if requestedPort > 0, SocketAddress.local(of: fd)?.port != requestedPort {
                    fail(ClusterError(code: "EADDRINUSE", errno: EADDRINUSE, syscall: "bind",
                                      message: "bind EADDRINUSE \(query.address ?? "null"):\(requestedPort)"))
                    return
                }
                do throws(ClusterError) { try Sockets.setNonBlocking(fd) } catch {
                    fail(error)
                    return
                }
                if Glibc.listen(fd, query.backlog) != 0 {
                    fail(ClusterError(errno: errno, syscall: "listen"))
                    return
                }
                let port = SocketAddress.local(of: fd)?.port ?? requestedPort
                listening(on: fd) { cluster.reportListening(ticket, port: port) }
            }
        }
    }

    /// Hands the listening socket to other code that accepts on it itself — SwiftNIO's
    /// `ServerBootstrap.withBoundSocket`, say — as a duplicate the caller owns and closes. From then on this
    /// server accepts nothing, but it still listens as far as the cluster is concerned (it keeps its place
    /// in the primary's shared handle and keeps the loop alive) until `close()` or the worker's
    /// disconnect; close the caller's socket then too. Node has no counterpart (its handle stays with
    /// libuv).
    /// - Returns: nil when this process has no listening socket to give: not listening, or a round-robin
    ///   server in a worker, whose primary accepts (hand its connections off instead).
    /// - Throws: the errno of duplicating the socket (`EMFILE`).
    public func handOffListeningSocket() throws(ClusterError) -> Int32? {
        guard mode == .listening, listenFD >= 0, let watcher else { return nil }
        let copy = fcntl(listenFD, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { throw ClusterError(errno: errno, syscall: "dup") }
        watcher.cancel()
        self.watcher = nil
        applyReference()
        return copy
    }

    // MARK: - Connections

    /// Whether a handed-off connection would be taken now (not closing, below `maxConnections`).
    var canAcceptHandoff: Bool {
        mode == .listening && !atLimit
    }

    private var atLimit: Bool { (maxConnections ?? 0) > 0 && connectionCount >= maxConnections! }

    func adopt(connection fd: Int32) {
        // A descriptor that arrived broken is dropped; the client sees its connection closed.
        do throws(ClusterError) { try Sockets.setNonBlocking(fd) } catch {
            Glibc.close(fd)
            return
        }
        connectionCount += 1
        onConnection(Connection(fd: fd, server: self))
    }

    private func acceptAll() {
        while mode == .listening, let result = Sockets.accept(listenFD) {
            guard case .success(let fd) = result else {
                // Node's net.Server emits an accept error as 'error' and goes on listening.
                if case .failure(let error) = result { onError(error) }
                return
            }
            // Over the limit, a server that accepts itself drops the connection ('drop').
            if atLimit { Glibc.close(fd); continue }
            connectionCount += 1
            onConnection(Connection(fd: fd, server: self))
        }
    }

    func connectionEnded() {
        connectionCount -= 1
        if mode == .closing && connectionCount == 0 { finishClose() }
    }

    // MARK: - Close

    /// `server.close(callback)`: stops listening at once; `'close'` and the callback follow when the last
    /// connection has ended. A server that is not listening calls back with `ERR_SERVER_NOT_RUNNING`.
    public func close(_ callback: ((ClusterError?) -> Void)? = nil) {
        guard mode == .listening || mode == .pending else {
            let e = ClusterError(code: "ERR_SERVER_NOT_RUNNING", message: "Server is not running.")
            if let callback { loop.nextTick { callback(e) } }
            return
        }
        onClosing()
        if let callback { closeCallbacks.append(callback) }
        watcher?.cancel()
        watcher = nil
        if listenFD >= 0 { Glibc.close(listenFD) }
        listenFD = -1
        if let unlinkPath { unlink(unlinkPath) }
        unlinkPath = nil
        if let (key, ticket) = clustered {
            cluster?.released(key: key, ticket: ticket)
        }
        clustered = nil
        mode = .closing
        applyReference()
        if connectionCount == 0 { finishClose() }
    }

    private func finishClose() {
        mode = .closed
        untilClosed = nil
        let callbacks = closeCallbacks
        closeCallbacks.removeAll()
        loop.nextTick { [self] in
            onClose()
            callbacks.forEach { $0(nil) }
        }
    }
}

/// An accepted connection of a `Server` (the descriptor of Node's `net.Socket`). Close it, `handOff()` it to
/// other code (SwiftNIO, say) that the server keeps counting until it releases it, or `detach()` it and
/// stop the server counting it.
public final class Connection {
    /// The connected socket (non-blocking, close-on-exec).
    public let fd: Int32
    weak var server: Server?
    /// Whether `close()`, `detach()` or `handOff()` was called.
    public internal(set) var isClosed = false

    init(fd: Int32, server: Server) {
        self.fd = fd
        self.server = server
    }

    /// A connection for a connected socket this process owns, such as one received with a message
    /// (`ReceivedHandle.take()`); it becomes non-blocking and belongs to no server (Node:
    /// `new net.Socket({fd})`).
    /// - Throws: `EBADF` when `fd` is not an open descriptor (it is then not owned).
    public init(adopting fd: Int32) throws(ClusterError) {
        try Sockets.setNonBlocking(fd)
        self.fd = fd
    }

    // A connection nobody holds any more is closed, so its descriptor never leaks.
    deinit { close() }

    /// Closes the socket; the server's connection count drops.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fd)
        server?.connectionEnded()
    }

    /// Gives up the descriptor to the caller, who must close it; the server stops counting it.
    public func detach() -> Int32 {
        guard !isClosed else { return -1 }
        isClosed = true
        server?.connectionEnded()
        return fd
    }
}
