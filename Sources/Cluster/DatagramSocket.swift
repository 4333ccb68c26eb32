import ClusterJSON
import Foundation
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
    /// A clustered bind is waiting for the primary's reply.
    private var binding = false
    /// `close()` came while binding: the reply's socket is given back instead of used (dgram.js
    /// bindServerHandle).
    private var closedWhileBinding = false

    /// A socket of `family` on `loop`; `cluster` is this process's worker runtime when it is a worker.
    public init(loop: EventLoop, family: Family, cluster: ClusterWorker? = nil) {
        self.loop = loop
        self.family = family
        self.cluster = cluster
    }

    // A socket dropped while bound is closed: nothing keeps watching a socket nobody serves.
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

    /// `socket.bind({address, port, exclusive})`; the address defaults to `0.0.0.0` / `::`.
    public func bind(host: String?, port: Int, exclusive: Bool = false, reuseAddress: Bool = false, ipv6Only: Bool = false) {
        let address = host.flatMap { Sockets.resolve($0)?.address } ?? (family == .udp6 ? "::" : "0.0.0.0")
        if let cluster, !exclusive {
            var query = ServerRequest(address: address, port: port, addressType: family == .udp6 ? .udp6 : .udp4,
                                            fd: -1, backlog: 0)
            query.reuseAddress = reuseAddress
            query.ipv6Only = ipv6Only
            bindThroughPrimary(cluster, query)
        } else {
            switch Sockets.bound(udp: true, host: address, port: port, ipv6Only: ipv6Only, reuseAddress: reuseAddress) {
            case .success(let s): adopt(s, then: nil)
            case .failure(let e): loop.nextTick { [self] in onError(e) }
            }
        }
    }

    /// `socket.bind({fd, exclusive})`: in a worker (unless `exclusive`), `fd` names a UDP socket **of the
    /// primary**, which shares it; elsewhere it is this process's own descriptor, taken over.
    public func bind(fd: Int32, exclusive: Bool = false) {
        if let cluster, !exclusive {
            // Node asks with address and port null: the descriptor is the whole address.
            bindThroughPrimary(cluster, ServerRequest(address: nil, port: 0, addressType: family == .udp6 ? .udp6 : .udp4, fd: fd, backlog: 0))
        } else if Sockets.type(of: fd) == Int32(SOCK_DGRAM.rawValue) {
            adopt(fd, then: nil)
        } else {
            let e = ClusterError(code: "EINVAL", errno: EINVAL, syscall: "bind", message: "descriptor \(fd) is not a UDP socket")
            loop.nextTick { [self] in onError(e) }
        }
    }

    private func bindThroughPrimary(_ cluster: ClusterWorker, _ query: ServerRequest) {
        binding = true
        closedWhileBinding = false
        _ = cluster.queryServer(query) { [self] ticket, grant in
            binding = false
            if closedWhileBinding {
                // Closed meanwhile: no 'error', no 'listening'; a granted socket goes back at once.
                switch grant {
                case .failed: break
                case .roundRobin(let key, _): cluster.released(key: key, ticket: ticket)
                case .shared(let key, let sharedFD):
                    Glibc.close(sharedFD)
                    cluster.released(key: key, ticket: ticket)
                }
                return
            }
            switch grant {
            case .failed(let e):
                loop.nextTick { [self] in onError(e) }
            case .roundRobin(let key, _):
                // UDP is always shared; a descriptor-less grant cannot be used.
                cluster.released(key: key, ticket: ticket)
                loop.nextTick { [self] in onError(ClusterError(code: "EPROTO", message: "the primary sent no socket for a UDP bind")) }
            case .shared(let key, let sharedFD):
                clustered = (key, ticket)
                cluster.track(key: key) { [weak self] done in
                    self?.close()
                    done()
                }
                adopt(sharedFD) { cluster.reportListening(ticket, port: SocketAddress.local(of: sharedFD)?.port ?? query.port) }
            }
        }
    }

    private func adopt(_ socket: Int32, then report: (() -> Void)?) {
        fd = socket
        Sockets.setNonBlocking(socket)
        watcher = loop.watch(socket, referenced: referenced) { [weak self] in self?.receiveAll() }
        loop.nextTick { [self] in
            guard fd >= 0 else { return }
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
            if n < 0 { return }
            onMessage(Array(buffer[0..<n]), from)
        }
    }

    /// `socket.send(bytes, port, address)`: one datagram to `destination`.
    @discardableResult
    public func send(_ bytes: [UInt8], to destination: SocketAddress) -> Bool {
        guard fd >= 0 else { return false }
        let n = destination.withSockaddr { a, l in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, l) } }
        return n == bytes.count
    }

    /// `socket.close()`; also while a clustered bind waits for the primary, whose socket is then given back
    /// when it arrives.
    public func close() {
        if binding && !closedWhileBinding {
            closedWhileBinding = true
            loop.nextTick { [self] in onClose() }
            return
        }
        guard fd >= 0 else { return }
        watcher?.cancel()
        watcher = nil
        Glibc.close(fd)
        fd = -1
        if let (key, ticket) = clustered { cluster?.released(key: key, ticket: ticket) }
        clustered = nil
        loop.nextTick { [self] in onClose() }
    }
}
