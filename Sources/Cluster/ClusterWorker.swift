import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// An event of `cluster.worker` inside a worker process.
public enum WorkerProcessEvent {
    /// A user message from the primary (`process.on('message')`), and the handle sent with it, if any.
    case message(JSONValue, handle: ReceivedHandle?)
    /// The IPC channel closed (`cluster.worker.on('disconnect')`).
    case disconnect
    /// `cluster.worker.on('error')`: a send on a closed channel (`ERR_IPC_CHANNEL_CLOSED`), a failed write,
    /// or a protocol error of the primary (after which the channel closes).
    case error(ClusterError)
}

/// The worker process's side of the cluster (Node's `cluster.worker` inside a worker): talks to the
/// primary over the inherited channel, obtains servers from it, and follows its disconnect requests.
///
/// It ends the process itself in exactly two cases, both Node's documented behaviour, through
/// `ProcessExit.exit(0)` (so `ProcessExit.onExit` hooks run): when the channel closes and the worker did
/// not ask for it ("Workers will call `process.exit(0)` if the 'disconnect' event occurs on `process` and
/// `.exitedAfterDisconnect` is not true", cluster.md, `worker.process`) — the primary died, say — and
/// after `kill()` ("In the worker, it does it by killing the process", cluster.md, `worker.kill()`; Node 20
/// exits with code 0). Nothing else in the library exits.
public final class ClusterWorker {
    /// `cluster.worker.id`, the id the primary gave this worker.
    public let id: Int
    /// `cluster.worker.state` as the worker sees it: online, listening, disconnecting, destroying.
    public internal(set) var state: WorkerState = .online
    /// Set once a disconnect was asked for, from either side.
    public internal(set) var exitedAfterDisconnect: Bool?
    /// The loop everything runs on.
    public let loop: EventLoop
    let channel: Channel
    private var seq = 0
    private var pendingReplies: [Int: (JSONValue, [Int32]) -> Void] = [:]
    private var handlers: [(WorkerProcessEvent) -> Void] = []
    /// Listen indexes per `address:port:addressType:fd` tuple.
    private var indexes = ListenIndexes()
    /// Handles obtained from the primary, by key: how to close each when disconnecting.
    private var handles: [String: (_ done: @escaping () -> Void) -> Void] = [:]
    /// Round-robin servers by key, receiving the primary's hand-offs.
    private var roundRobin: [String: Server] = [:]
    private var exitWhenDisconnected = false

    init(id: Int, loop: EventLoop, channelFD: Int32) {
        self.id = id
        self.loop = loop
        self.channel = Channel(fd: channelFD, loop: loop)
        channel.onFrame = { [weak self] kind, value, fds in
            guard let self else { fds.forEach { close($0) }; return }
            received(kind, value, fds)
        }
        channel.onHandoff = { [weak self] ticket, key, fd in
            guard let self else { close(fd); return }
            handoff(ticket, key: key, connection: fd)
        }
        channel.onError = { [weak self] error in self?.emitError(error) }
        channel.onClose = { [weak self] in self?.channelClosed() }
        channel.sendControl(.object(JSONObject([("act", "online")])))
    }

    /// `cluster.worker.isConnected()`.
    public var isConnected: Bool { channel.isOpen }

    /// Registers a handler for the worker's events, called on the loop.
    public func on(_ handler: @escaping (WorkerProcessEvent) -> Void) { handlers.append(handler) }

    /// Whether the channel keeps the process alive (Node's `process.channel.ref()/unref()`); it does by
    /// default.
    public func setChannelReferenced(_ referenced: Bool) { channel.setReferenced(referenced) }

    /// `process.send(message)` / `cluster.worker.send(message)`: false when the message cannot be sent
    /// (the channel is closed, say), and an `'error'` event follows on the next tick, as in Node.
    @discardableResult
    public func send(_ message: JSONValue) -> Bool {
        channel.sendUser(message) { [weak self] in self?.emitError($0) }
    }

    /// `process.send(message)` of a `Codable` value, encoded as JSON (decode what arrives with
    /// `JSONValue.decode(_:)`); false, with an `'error'` to follow, when it cannot be sent.
    /// - Throws: the value's encoding error (a NaN, an integer beyond 2^53); nothing is sent then.
    @discardableResult
    public func send<Message: Encodable>(encoding message: Message) throws -> Bool {
        send(try JSONValue(encoding: message))
    }

    /// `process.send(message, sendHandle)`: sends a handle with the message (its descriptor by SCM_RIGHTS).
    /// A sent server keeps listening here; a sent connection is closed here unless `keepOpen`. Returns
    /// false, with an `'error'` event to follow, when the message cannot be sent (the handle then stays
    /// open).
    /// - Throws: `ERR_INVALID_HANDLE_TYPE` when the handle has no descriptor to send: a round-robin server
    ///   (its socket is the primary's), a closed connection.
    @discardableResult
    public func send(_ message: JSONValue, handle: SendHandle) throws(ClusterError) -> Bool {
        try channel.sendUser(message, handle: handle) { [weak self] in self?.emitError($0) }
    }

    private func emitError(_ error: ClusterError) { handlers.forEach { $0(.error(error)) } }

    /// `cluster.worker.disconnect()`: closes every server obtained through the primary, waits for them to
    /// close, tells the primary the exit is voluntary, then closes the channel.
    public func disconnect() {
        guard state != .disconnecting, state != .destroying else { return }
        state = .disconnecting
        disconnect(primaryInitiated: false)
    }

    /// `cluster.worker.kill()` / `destroy()` inside a worker: tells the primary the exit is voluntary,
    /// disconnects and ends the process with code 0 (any signal argument is ignored, as in Node 20).
    public func kill() {
        guard state != .destroying else { return }
        exitedAfterDisconnect = true
        guard isConnected else { ProcessExit.exit(0) }
        state = .destroying
        exitWhenDisconnected = true
        request(["act": "exitedAfterDisconnect"]) { [self] _, _ in channel.disconnect() }
    }

    // MARK: - Messages

    private func received(_ kind: Channel.Kind, _ value: JSONValue, _ fds: [Int32]) {
        let (isUser, handleKind) = kind.userMessage
        if isUser {
            let handle = receivedHandle(handleKind, fds)
            if !isInternal(value) { handlers.forEach { $0(.message(value, handle: handle)) } }
            return
        }
        switch value["act"]?.stringValue {
        case "reply":
            guard let ack = value["ack"]?.intValue, let callback = pendingReplies.removeValue(forKey: ack) else {
                fds.forEach { close($0) }
                return
            }
            callback(value, fds)
        case "disconnect":
            fds.forEach { close($0) }
            disconnect(primaryInitiated: true)
        default:
            fds.forEach { close($0) }
        }
    }

    /// A round-robin hand-off (Node's `newconn`): answered before the connection is served, so that the
    /// primary can count on an unanswered hand-off never having been served.
    private func handoff(_ ticket: UInt32, key: String, connection fd: Int32) {
        let server = roundRobin[key]
        let accepted = server?.canAcceptHandoff ?? false
        channel.sendHandoffAnswer(ticket: ticket, accepted: accepted)
        trace("worker \(id) acknowledged hand-off \(ticket): accepted \(accepted)")
        if accepted, let server { server.adopt(connection: fd) } else { close(fd) }
    }

    /// Sends a control request and calls `callback` with the primary's reply.
    func request(_ fields: [String: JSONValue], _ callback: @escaping (JSONValue, [Int32]) -> Void) {
        seq += 1
        var object = JSONObject(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        object["seq"] = .number(Double(seq))
        pendingReplies[seq] = callback
        channel.sendControl(.object(object))
    }

    func sendControl(_ fields: [(String, JSONValue)]) {
        channel.sendControl(.object(JSONObject(fields)))
    }

    private func channelClosed() {
        handlers.forEach { $0(.disconnect) }
        // An unexpected loss of the channel (the primary died) ends the worker with code 0 (Node's documented
        // rule, see the type's comment).
        if exitWhenDisconnected || exitedAfterDisconnect != true { ProcessExit.exit(0) }
    }

    private func disconnect(primaryInitiated: Bool) {
        exitedAfterDisconnect = true
        var waiting = 1
        let check = { [self] in
            waiting -= 1
            guard waiting == 0 else { return }
            if primaryInitiated {
                channel.disconnect()
            } else {
                request(["act": "exitedAfterDisconnect"]) { [self] _, _ in channel.disconnect() }
            }
        }
        let closers = handles
        handles.removeAll()
        for (_, close) in closers.sorted(by: { $0.key < $1.key }) {
            waiting += 1
            close(check)
        }
        check()
    }

    // MARK: - Servers through the primary (child.js _getServer, shared, rr)

    /// What the primary answered to a listen request.
    enum Grant {
        /// The primary could not create the server.
        case failed(ClusterError)
        /// Round-robin: the primary accepts; `sockname` is its listening address.
        case roundRobin(key: String, sockname: JSONValue?)
        /// Shared: the socket itself.
        case shared(key: String, fd: Int32)
    }

    /// A clustered listen in progress: its index in the tuple and the report to send once it listens.
    struct Ticket {
        var tuple: String
        var index: Int
        var query: ServerRequest
    }

    /// Asks the primary for a server; `completion` runs with what it granted.
    func queryServer(_ query: ServerRequest, completion: @escaping (Ticket, Grant) -> Void) -> Ticket {
        var query = query
        query.index = indexes.take(query.tuple)
        let ticket = Ticket(tuple: query.tuple, index: query.index, query: query)
        let fields = query.fields
        request(fields) { reply, fds in
            let key = reply["key"]?.stringValue ?? ""
            if let code = reply["errno"]?.stringValue {
                fds.forEach { close($0) }
                // The index stays taken, as in Node: a retry from this worker asks with the next one.
                completion(ticket, .failed(ClusterError(code: code, errno: nil, syscall: "bind",
                                                        message: "bind \(code) \(query.address ?? "null"):\(query.port)")))
            } else if let fd = fds.first {
                fds.dropFirst().forEach { close($0) }
                completion(ticket, .shared(key: key, fd: fd))
            } else {
                completion(ticket, .roundRobin(key: key, sockname: reply["sockname"]))
            }
        }
        return ticket
    }

    /// Records a handle obtained from the primary and how to close it when the worker disconnects.
    func track(key: String, close: @escaping (_ done: @escaping () -> Void) -> Void) {
        handles[key] = close
    }

    func registerRoundRobin(_ server: Server, key: String) { roundRobin[key] = server }

    /// A clustered server closed its handle: tell the primary, free the index (child.js `close` wrappers).
    func released(key: String, ticket: Ticket) {
        sendControl([("act", "close"), ("key", .string(key))])
        handles[key] = nil
        roundRobin[key] = nil
        releaseIndex(ticket)
    }

    func releaseIndex(_ ticket: Ticket) {
        indexes.release(ticket.tuple, ticket.index)
    }

    /// Reports a clustered server's listening to the primary, unless every server of its tuple already
    /// closed (a short-lived server is not reported).
    func reportListening(_ ticket: Ticket, port: Int) {
        guard indexes.isOpen(ticket.tuple) else { return }
        state = .listening
        var fields: [(String, JSONValue)] = [("act", "listening"), ("addressType", ticket.query.addressType.json),
                                             ("port", .number(Double(port)))]
        fields.append(("address", ticket.query.address.map { .string($0) } ?? .null))
        if let fd = ticket.query.fd { fields.append(("fd", .number(Double(fd)))) }
        sendControl(fields)
    }
}

// MARK: - The process's role

/// Which side of the cluster this process is.
public enum ClusterRole {
    /// The primary (no worker id in the environment).
    case primary(Primary)
    /// A worker (`cluster.worker`).
    case worker(ClusterWorker)
}

/// Entry point: decides the process's role once, from the environment (Node's `cluster.isPrimary`).
public enum ClusterRuntime {
    nonisolated(unsafe) private static var role: ClusterRole?

    /// Whether this process was started as a worker (`cluster.isWorker`), known before `start(on:)`.
    public static let isWorker: Bool = environmentValue(ClusterEnvironment.workerID) != nil

    /// `cluster.isPrimary`.
    public static var isPrimary: Bool { !isWorker }

    /// Starts the cluster runtime on `loop` and returns this process's role. In a worker this connects the
    /// inherited channel, announces `'online'` to the primary and removes the worker id from the
    /// environment (so the worker's own children are not workers). Call it once, on the loop's thread.
    public static func start(on loop: EventLoop) -> ClusterRole {
        if let role { return role }
        let env = processEnvironment()
        let r: ClusterRole
        if let text = env[ClusterEnvironment.workerID], let id = Int(text) {
            unsetenv(ClusterEnvironment.workerID)
            // The channel is at 3 unless the primary's `stdio` put it elsewhere and said so.
            let channelFD = env[ClusterEnvironment.channelFDVariable].flatMap { Int32($0) } ?? ClusterEnvironment.channelFD
            unsetenv(ClusterEnvironment.channelFDVariable)
            r = .worker(ClusterWorker(id: id, loop: loop, channelFD: channelFD))
        } else {
            r = .primary(Primary(loop: loop, environment: env))
        }
        role = r
        return r
    }
}
