import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// A UDP socket (Node's `dgram.Socket`). In a worker, `bind` goes through the primary — always as a shared
/// handle, whatever the scheduling policy — unless `exclusive`. Lives on one event loop; call it there.
public final class DatagramSocket {
    /// `udp4` or `udp6`.
    public enum Family: String, Sendable { case udp4, udp6 }

    /// The loop everything runs on.
    public let loop: EventLoop
    /// The socket's family.
    public let family: Family
    private let cluster: ClusterWorker?
    /// Called with each datagram and its sender (`'message'`).
    public var onMessage: ([UInt8], SocketAddress) -> Void = { _, _ in }
    /// Called once bound (`'listening'`).
    public var onListening: () -> Void = {}
    /// Called with a bind error (`'error'`).
    public var onError: (ClusterError) -> Void = { _ in }
    /// Called after `close()` (`'close'`).
    public var onClose: () -> Void = {}
    private var fd: Int32 = -1
    private var watcher: Watcher?
    private var clustered: (key: String, ticket: ClusterWorker.Ticket)?
    private var buffer = [UInt8](repeating: 0, count: 65536)
    private var referenced = true
    private var state = State.unbound
    /// A socket keeps itself from bind() until it is closed (or the bind failed), whoever else holds it: a
    /// bound socket receives, and keeps the process alive, until closed (Node's semantics).
    private var untilClosed: DatagramSocket?

    /// Where the socket is in its life (dgram.js `bindState`, plus closed).
    private enum State {
        /// Not bound yet.
        case unbound
        /// Waiting for the primary's answer to a clustered bind.
        case binding
        /// Has its descriptor.
        case bound
        /// `close()` was called: whatever the primary answers later is given back, not used.
        case closed
    }

    /// A socket of `family` on `loop`; `cluster` is this process's worker runtime when it is a worker.
    public init(loop: EventLoop, family: Family, cluster: ClusterWorker? = nil) {
        self.loop = loop
        self.family = family
        self.cluster = cluster
    }

    // Reached only when unbound or closed (a bound socket holds itself); releases whatever is left.
    deinit {
        watcher?.cancel()
        if fd >= 0 { Glibc.close(fd) }
        if let (key, ticket) = clustered { cluster?.released(key: key, ticket: ticket) }
    }

    /// `socket.ref()`: a bound socket keeps the event loop (so the process) alive; the default.
    public func ref() {
        referenced = true
        watcher?.ref()
    }

    /// `socket.unref()`: the socket no longer keeps the event loop alive. May be called before `bind()`.
    public func unref() {
        referenced = false
        watcher?.unref()
    }

    /// `socket.address()`; nil unless bound.
    public func address() -> ServerAddress? {
        guard fd >= 0, let a = SocketAddress.local(of: fd) else { return nil }
        return .inet(address: a.host ?? "", family: familyName(a.family), port: a.port)
    }

    /// `socket.bind({address, port, exclusive})`; the address defaults to `0.0.0.0` / `::`. A second bind
    /// reports `ERR_SOCKET_ALREADY_BOUND` through `onError`.
    public func bind(host: String?, port: Int, exclusive: Bool = false, reuseAddress: Bool = false, ipv6Only: Bool = false) {
        guard state == .unbound else {
            loop.nextTick { [self] in onError(DatagramSocket.alreadyBound) }
            return
        }
        let address = host.flatMap { Sockets.resolve($0)?.address } ?? (family == .udp6 ? "::" : "0.0.0.0")
        untilClosed = self
        if let cluster, !exclusive {
            var query = ServerRequest(address: address, port: port, addressType: family == .udp6 ? .udp6 : .udp4,
                                      fd: -1, backlog: 0)
            query.reuseAddress = reuseAddress
            query.ipv6Only = ipv6Only
            bindThroughPrimary(cluster, query, requestedPort: port)
        } else {
            switch Sockets.bound(udp: true, host: address, port: port, ipv6Only: ipv6Only, reuseAddress: reuseAddress) {
            case .success(let s): adopt(s, then: nil)
            case .failure(let e):
                untilClosed = nil
                loop.nextTick { [self] in onError(e) }
            }
        }
    }

    /// `socket.bind({fd, exclusive})`: receives on an existing UDP socket. In a worker (unless
    /// `exclusive`) the number names a descriptor **of the primary**, which checks that it is a UDP socket
    /// and shares it with every worker that binds it (a failure reaches `onError` with syscall `open`);
    /// otherwise this process's own descriptor, which the socket then owns.
    /// - Throws: `ERR_INVALID_FD` for a number that is not positive, `ERR_SOCKET_ALREADY_BOUND` for a
    ///   second bind, `ERR_INVALID_FD_TYPE` when this process's own descriptor is not a UDP socket.
    public func bind(fd descriptor: Int32, exclusive: Bool = false) throws(ClusterError) {
        guard descriptor > 0 else {
            throw ClusterError(code: "ERR_INVALID_FD", message: "\"fd\" must be a positive integer: \(descriptor)")
        }
        guard state == .unbound else { throw DatagramSocket.alreadyBound }
        if let cluster, !exclusive {
            untilClosed = self
            // Node sends address and port null; the descriptor number is the key.
            let query = ServerRequest(address: nil, port: 0, addressType: family == .udp6 ? .udp6 : .udp4,
                                      fd: descriptor, backlog: 0)
            bindThroughPrimary(cluster, query, requestedPort: 0)
            return
        }
        guard Sockets.isUDP(descriptor) else {
            throw ClusterError(code: "ERR_INVALID_FD_TYPE", message: "Unsupported fd type: descriptor \(descriptor) is not a UDP socket")
        }
        untilClosed = self
        adopt(descriptor, then: nil)
    }

    private static let alreadyBound = ClusterError(code: "ERR_SOCKET_ALREADY_BOUND", message: "Socket is already bound")

    /// A clustered bind (dgram.js `bindServerHandle`): the primary's shared socket, or its error. A socket
    /// closed meanwhile gives the socket back at once, as Node closes the arriving handle, and reports
    /// nothing: no 'listening', no 'error'.
    private func bindThroughPrimary(_ cluster: ClusterWorker, _ query: ServerRequest, requestedPort: Int) {
        state = .binding
        _ = cluster.queryServer(query) { [self] ticket, grant in
            switch grant {
            case .failed(var e):
                guard state == .binding else { return }
                state = .unbound
                untilClosed = nil
                if query.fd != nil && query.fd! >= 0 {
                    // Opening the primary's descriptor failed (Node: an ErrnoException of 'open').
                    e = ClusterError(code: e.code, errno: e.errno, syscall: "open", message: "open \(e.code)")
                }
                loop.nextTick { [self] in onError(e) }
            case .roundRobin(let key, _):
                // UDP is always shared; a descriptor-less grant cannot be used.
                cluster.released(key: key, ticket: ticket)
                guard state == .binding else { return }
                state = .unbound
                untilClosed = nil
                loop.nextTick { [self] in onError(ClusterError(code: "EPROTO", message: "the primary sent no socket for a UDP bind")) }
            case .shared(let key, let sharedFD):
                guard state == .binding else {
                    // Closed while the primary answered: this worker's copy goes, and the primary hears the
                    // close as from any socket of this key (child.js's wrapped handle.close()).
                    Glibc.close(sharedFD)
                    cluster.released(key: key, ticket: ticket)
                    return
                }
                clustered = (key, ticket)
                cluster.track(key: key) { [weak self] done in
                    self?.close()
                    done()
                }
                adopt(sharedFD) { cluster.reportListening(ticket, port: SocketAddress.local(of: sharedFD)?.port ?? requestedPort) }
            }
        }
    }

    private func adopt(_ socket: Int32, then report: (() -> Void)?) {
        fd = socket
        state = .bound
        do throws(ClusterError) {
            try Sockets.setNonBlocking(socket)
            watcher = try loop.watch(socket, referenced: referenced) { [weak self] in self?.receiveAll() }
        } catch {
            close()
            loop.nextTick { [self] in onError(error) }
            return
        }
        loop.nextTick { [self] in
            guard state == .bound else { return }
            onListening()
            report?()
        }
    }

    private func receiveAll() {
        while fd >= 0 {
            var from = SocketAddress()
            from.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = buffer.withUnsafeMutableBytes { raw in
                withUnsafeMutableBytes(of: &from.storage) { a in
                    recvfrom(fd, raw.baseAddress, raw.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), &from.length)
                }
            }
            if n < 0 {
                // Node's dgram emits a receive error (an ICMP error reported on the socket, say) as 'error'.
                if errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                    onError(ClusterError(errno: errno, syscall: "recvmsg"))
                }
                return
            }
            onMessage(Array(buffer[0..<n]), from)
        }
    }

    /// `socket.send(bytes, port, address)`: one datagram to `destination`, sent at once.
    /// - Throws: `ERR_SOCKET_DGRAM_NOT_RUNNING` when the socket is not bound or closed; the errno of
    ///   `sendto` otherwise (`EAGAIN` when the socket's send buffer is full: the datagram was not sent).
    public func send(_ bytes: [UInt8], to destination: SocketAddress) throws(ClusterError) {
        guard fd >= 0 else { throw ClusterError(code: "ERR_SOCKET_DGRAM_NOT_RUNNING", message: "Not running") }
        while true {
            let n = destination.withSockaddr { a, l in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), a, l) } }
            if n >= 0 { return }
            if errno != EINTR { throw ClusterError(errno: errno, syscall: "send") }
        }
    }

    /// `socket.close()`: stops receiving and closes the socket; `'close'` follows on the next tick. Closing
    /// during a clustered bind is allowed: the primary's answer is then given back unused. Closing a
    /// closed socket does nothing.
    public func close() {
        guard state != .closed else { return }
        state = .closed
        // The strong capture below keeps the socket until its 'close' is delivered.
        untilClosed = nil
        watcher?.cancel()
        watcher = nil
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        if let (key, ticket) = clustered { cluster?.released(key: key, ticket: ticket) }
        clustered = nil
        loop.nextTick { [self] in onClose() }
    }
}
