import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

extension ServerRequest {
    /// For a Unix path: the shorter of the absolute path and the path relative to the primary's cwd, so
    /// that a path too long for `sun_path` still binds when its relative form fits (Node's rule).
    var bindPath: String {
        guard let path = address else { return "" }
        guard let cwd = currentDirectory() else { return path }
        if path.hasPrefix(cwd + "/") {
            let relative = String(path.dropFirst(cwd.count + 1))
            if relative.utf8.count < path.utf8.count { return relative }
        }
        return path
    }
}

/// A server the primary shares between workers; one per handle key.
protocol ServerHandle: AnyObject {
    /// Adds a worker; `reply` gets an error, or the socket name (round-robin) or the descriptor to send
    /// (shared). It may run at once.
    func add(_ worker: Worker, reply: @escaping (ClusterError?, JSONValue?, Int32?) -> Void)
    /// Removes a worker; true when it was the last one and the handle closed.
    func remove(_ worker: Worker) -> Bool
}

/// The socket name a round-robin worker reports as its server's `address()`.
func sockname(of fd: Int32) -> JSONValue? {
    guard let a = SocketAddress.local(of: fd), a.family == AF_INET || a.family == AF_INET6 else { return nil }
    return .object(JSONObject([("address", .string(a.host ?? "")), ("family", .string(familyName(a.family))),
                               ("port", .number(Double(a.port)))]))
}

/// Set `SWIFT_CLUSTER_TRACE` to a file path to append a log of hand-offs, acknowledgements and channel
/// trouble to that file (a diagnostic of this library; Node has no counterpart).
let traceFD: Int32 = environmentValue("SWIFT_CLUSTER_TRACE").map { open($0, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) } ?? -1
var traceHandoffs: Bool { traceFD >= 0 }

/// `value` in decimal, zero-padded on the left to `width` digits.
private func zeroPadded(_ value: Int, width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

func trace(_ text: @autoclosure () -> String) {
    guard traceHandoffs else { return }
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    let line = "[cluster \(getpid()) \(ts.tv_sec % 1000).\(zeroPadded(ts.tv_nsec / 1000, width: 6))] \(text())\n"
    _ = line.withCString { write(traceFD, $0, strlen($0)) }
}

/// Round-robin (`SCHED_RR`): the primary listens and accepts; each connection goes to the worker that has
/// been free longest; a worker is busy from the hand-off until it acknowledges. A refused connection goes
/// to the next free worker; connections wait while none is free (round_robin_handle.js). The scheduling is
/// `RoundRobinQueue`; this is its sockets.
final class RoundRobinHandle: ServerHandle {
    let key: String
    // Strong: the primary's table holds the handle until its last worker leaves, which ends the cycle.
    private let primary: Primary
    private var listenFD: Int32 = -1
    private var watcher: Watcher?
    private var unixPath: String?
    private var bindError: ClusterError?
    private var workers: [Int: Worker] = [:]
    private var queue = RoundRobinQueue<Int32>()

    init(key: String, request: ServerRequest, primary: Primary) {
        self.key = key
        self.primary = primary
        let result: Result<Int32, ClusterError>
        switch request.addressType {
        case .unix:
            unixPath = request.bindPath
            // The primary creates the file, so it applies the worker's permission options (Node's
            // round_robin_handle.js listens with them) before any worker hears back.
            result = Sockets.listeningUnix(path: request.bindPath, backlog: request.backlog,
                                           readableAll: request.readableAll, writableAll: request.writableAll)
        case .descriptor:
            if let fd = request.fd, Sockets.type(of: fd) == Int32(SOCK_STREAM.rawValue) {
                do throws(ClusterError) {
                    try Sockets.setNonBlocking(fd)
                    result = listen(fd, request.backlog) == 0 ? .success(fd) : .failure(ClusterError(errno: errno, syscall: "listen"))
                } catch {
                    result = .failure(error)
                }
            } else {
                result = .failure(ClusterError(code: "EINVAL", errno: EINVAL, syscall: "listen", message: "descriptor \(request.fd ?? -1) is not a stream socket"))
            }
        default:
            result = Sockets.listeningTCP(host: request.address, port: request.port, ipv6Only: request.ipv6Only, backlog: request.backlog)
        }
        switch result {
        case .success(let fd):
            do throws(ClusterError) {
                watcher = try primary.loop.watch(fd, lastInBatch: true) { [weak self] in self?.acceptOne() }
                listenFD = fd
                Sockets.keepReserve()
            } catch {
                close(fd)
                if let unixPath { unlink(unixPath) }
                bindError = error
            }
        case .failure(let e):
            bindError = e
        }
    }

    func add(_ worker: Worker, reply: @escaping (ClusterError?, JSONValue?, Int32?) -> Void) {
        if let bindError {
            reply(bindError, nil, nil)
            return
        }
        workers[worker.id] = worker
        reply(nil, sockname(of: listenFD), nil)
        send(queue.add(worker.id))
    }

    func remove(_ worker: Worker) -> Bool {
        guard let (orphaned, wasLast) = queue.remove(worker.id) else { return false }
        workers[worker.id] = nil
        // Its unanswered hand-offs stay: a refusal still sends them to another worker (or, with none
        // left, closes them). What waited for a worker goes when the last one left.
        orphaned.forEach { close($0) }
        guard wasLast else { return false }
        watcher?.cancel()
        watcher = nil
        if listenFD >= 0 { close(listenFD) }
        listenFD = -1
        if let unixPath { unlink(unixPath) }
        return true
    }

    /// Accepts one connection per wake-up. Taking the next one at once could skip an acknowledgement
    /// already waiting in a worker's channel (this process may have been descheduled meanwhile) and
    /// break the rotation; the loop reports the listener again, after the channels of the same batch.
    private func acceptOne() {
        switch Sockets.accept(listenFD) {
        case .success(let fd)?: send(queue.distribute(fd))
        case .failure(let error)?:
            // Nobody to tell: Node's round-robin handle drops an accept error too.
            trace("accept on \(key) failed: \(error)")
        case nil: break
        }
    }

    /// Sends a hand-off (Node's `newconn`): the connection's descriptor with a binary hand-off packet.
    private func send(_ handoff: RoundRobinQueue<Int32>.Handoff?) {
        guard let handoff, let worker = workers[handoff.worker] else { return }
        trace("handoff \(handoff.id) to worker \(handoff.worker); free \(queue.free); waiting \(queue.waiting)")
        // The answer comes back to this handle through the worker, even after the handle left the
        // primary's table (its last worker gone) or another took its key.
        let ticket = worker.awaitAnswer(self, handoff: handoff.id)
        if case .failure = worker.channel.sendHandoff(ticket: ticket, key: key, connection: handoff.connection) {
            // The worker is going away; its removal will offer the connection to someone else.
            _ = worker.answer(ticket)
            queue.undo(handoff)
        }
    }

    /// The worker answered a hand-off. Accepted: the primary's copy closes. Refused: the connection goes
    /// to another worker, or waits for one (Node's rule, even when the refusing worker has left the
    /// handle); it is closed only when no worker is left.
    func acknowledged(_ id: Int, accepted: Bool, by worker: Worker) {
        guard let ack = queue.acknowledge(id, accepted: accepted) else { return }
        trace("ack \(id) from worker \(worker.id): accepted \(accepted); free \(queue.free)")
        if accepted || ack.dropped { close(ack.connection) }
        send(ack.redistributed)
        send(ack.next)
    }

    /// The worker's channel closed before it answered hand-off `id` (it died, say). Node keeps such a
    /// connection open for as long as the primary lives, though no worker will ever serve it; here it goes
    /// to another worker, as a refused one does, or is closed when none is left, so no client waits for
    /// nothing.
    func abandoned(_ id: Int) {
        switch queue.abandon(id) {
        case .requeued(let handoff)?:
            trace("hand-off \(id) abandoned by its worker: offered again")
            send(handoff)
        case .dropped(let connection)?:
            trace("hand-off \(id) abandoned, and no worker is left: closed")
            close(connection)
        case nil:
            break
        }
    }
}

/// Shared handle (`SCHED_NONE`, and every UDP socket): the primary creates the socket once and sends it
/// to each worker, which listens or receives on it itself. (shared_handle.js)
final class SharedHandle: ServerHandle {
    let key: String
    private var fd: Int32 = -1
    private var unixPath: String?
    private var createError: ClusterError?
    private var workers: [Int] = []

    init(key: String, request: ServerRequest) {
        self.key = key
        let result: Result<Int32, ClusterError>
        switch request.addressType {
        case .udp4, .udp6:
            if let fd = request.fd, fd > 0 {
                // bind({fd}) in a worker: the number is this process's descriptor, wrapped as it is once it
                // proves to be a UDP socket (dgram's _createSocketHandle answers EINVAL otherwise). It is
                // shared like a bound socket, and closed with the handle when the last worker leaves, as in
                // Node.
                result = Sockets.isUDP(fd) ? .success(fd)
                    : .failure(ClusterError(code: "EINVAL", errno: EINVAL, syscall: "open", message: "descriptor \(fd) is not a UDP socket"))
            } else {
                result = Sockets.bound(udp: true, host: request.address ?? (request.addressType == .udp6 ? "::" : "0.0.0.0"),
                                       port: request.port, ipv6Only: request.ipv6Only, reuseAddress: request.reuseAddress)
            }
        case .unix:
            unixPath = request.bindPath
            result = Sockets.boundUnix(path: request.bindPath)
        case .descriptor:
            if let fd = request.fd, Sockets.type(of: fd) != nil { result = .success(fd) }
            else { result = .failure(ClusterError(code: "EINVAL", errno: EINVAL, syscall: "listen", message: "descriptor \(request.fd ?? -1) is not a socket")) }
        default:
            // libuv reports EADDRINUSE of a TCP bind only at listen time, so Node's primary keeps an unbound
            // socket and each worker discovers the failure itself (a port mismatch): the same here.
            result = Sockets.boundTCP(host: request.address, port: request.port, ipv6Only: request.ipv6Only, deferAddressInUse: true)
        }
        switch result {
        case .success(let s): fd = s
        case .failure(let e): createError = e
        }
    }

    func add(_ worker: Worker, reply: @escaping (ClusterError?, JSONValue?, Int32?) -> Void) {
        if let createError {
            reply(createError, nil, nil)
            return
        }
        workers.append(worker.id)
        reply(nil, nil, fd)
    }

    func remove(_ worker: Worker) -> Bool {
        guard let i = workers.firstIndex(of: worker.id) else { return false }
        workers.remove(at: i)
        guard workers.isEmpty else { return false }
        if fd >= 0 { close(fd) }
        fd = -1
        if let unixPath { unlink(unixPath) }
        return true
    }
}
