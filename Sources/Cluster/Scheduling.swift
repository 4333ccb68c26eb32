import ClusterJSON

/// The bookkeeping of a round-robin handle, without sockets or processes (round_robin_handle.js): which
/// workers are free, longest free first; connections waiting for one; hand-offs not yet acknowledged.
///
/// `Connection` is whatever the caller hands off (a descriptor in the primary).
struct RoundRobinQueue<Connection> {
    /// Workers on the handle.
    private(set) var members: Set<Int> = []
    /// Free workers, longest free first.
    private(set) var free: [Int] = []
    /// Accepted connections waiting for a free worker, oldest first (`pending[head...]`).
    private var pending: [Connection] = []
    private var head = 0
    /// Hand-offs not yet acknowledged: id → (worker, connection).
    private(set) var inFlight: [Int: (worker: Int, connection: Connection)] = [:]
    private var nextID = 1

    /// A hand-off to perform: send `connection` to `worker` under `id`.
    struct Handoff {
        var id: Int
        var worker: Int
        var connection: Connection
    }

    /// Connections waiting.
    var waiting: Int { pending.count - head }

    /// A worker joins; it is offered a waiting connection at once, or becomes free.
    mutating func add(_ worker: Int) -> Handoff? {
        members.insert(worker)
        return next(for: worker)
    }

    /// A worker leaves. Its unacknowledged hand-offs stay in flight: it may still answer them (a worker
    /// being disconnected reads what was sent before the disconnect), and a refusal then queues the
    /// connection for the others, as Node's handle does; `abandon` ends the ones it never answers. When it
    /// was the last member, every waiting connection is returned: the caller closes them.
    mutating func remove(_ worker: Int) -> (orphaned: [Connection], wasLast: Bool)? {
        guard members.remove(worker) != nil else { return nil }
        free.removeAll { $0 == worker }
        guard members.isEmpty else { return ([], false) }
        let orphaned = Array(pending[head...])
        pending.removeAll()
        head = 0
        return (orphaned, true)
    }

    /// What becomes of a hand-off that will never be answered.
    enum Abandoned {
        /// Offered again: handed to the worker free longest, or waiting (nil) for one.
        case requeued(Handoff?)
        /// No worker is left on the handle: the caller closes the connection.
        case dropped(Connection)
    }

    /// Hand-off `id` will never be answered (its worker's channel closed before its answer arrived). A
    /// worker answers before it serves a connection, and every answer it wrote is read before its channel
    /// counts as closed, so the worker never served this connection: it is offered to the other workers as a
    /// refusal is. Nil when it was answered.
    mutating func abandon(_ id: Int) -> Abandoned? {
        guard let entry = inFlight.removeValue(forKey: id) else { return nil }
        if members.isEmpty { return .dropped(entry.connection) }
        return .requeued(distribute(entry.connection))
    }

    /// A connection was accepted: queue it and hand it to the worker free longest, if any.
    mutating func distribute(_ connection: Connection) -> Handoff? {
        pending.append(connection)
        guard !free.isEmpty else { return nil }
        return next(for: free.removeFirst())
    }

    /// The oldest waiting connection for `worker`, or marks the worker free.
    mutating func next(for worker: Int) -> Handoff? {
        guard members.contains(worker) else { return nil }
        guard head < pending.count else {
            pending.removeAll(keepingCapacity: true)
            head = 0
            if !free.contains(worker) { free.append(worker) }
            return nil
        }
        let connection = pending[head]
        head += 1
        let id = nextID
        nextID += 1
        inFlight[id] = (worker, connection)
        return Handoff(id: id, worker: worker, connection: connection)
    }

    /// A hand-off could not be sent: the connection goes back to the front of the queue.
    mutating func undo(_ handoff: Handoff) {
        inFlight[handoff.id] = nil
        if head > 0 { head -= 1; pending[head] = handoff.connection } else { pending.insert(handoff.connection, at: 0) }
    }

    /// What an acknowledgement means.
    struct Acknowledged {
        /// The connection: to close when accepted (the worker has its own copy) or dropped.
        var connection: Connection
        /// When refused: the hand-off of that connection to another free worker, if any.
        var redistributed: Handoff?
        /// The acknowledging worker's next hand-off, if a connection is waiting.
        var next: Handoff?
        /// Whether the worker accepted.
        var accepted: Bool
        /// Refused when no worker is left on the handle: nobody will ever take the connection, so the
        /// caller closes it, as the last worker's leaving closes the queue.
        var dropped = false
    }

    /// A worker acknowledged hand-off `id` (it may have left the handle since). A refused connection is
    /// queued again and offered to the next free worker first; then the acknowledging worker, if still a
    /// member, takes the next waiting connection or becomes free.
    mutating func acknowledge(_ id: Int, accepted: Bool) -> Acknowledged? {
        guard let entry = inFlight.removeValue(forKey: id) else { return nil }
        if !accepted && members.isEmpty {
            return Acknowledged(connection: entry.connection, redistributed: nil, next: nil, accepted: false, dropped: true)
        }
        let redistributed = accepted ? nil : distribute(entry.connection)
        return Acknowledged(connection: entry.connection, redistributed: redistributed,
                            next: next(for: entry.worker), accepted: accepted)
    }
}

/// A worker's request for a server (child.js `queryServer`): the parts of the handle key, and the
/// options of this listen (the primary uses those of whoever asked first). The same value on both sides
/// of the channel: `fields` is what the worker sends, `init?(message:)` what the primary reads.
struct ServerRequest {
    var address: String?
    var port: Int
    var addressType: AddressType
    var fd: Int32?
    var index = 0
    var backlog: Int32
    var ipv6Only = false
    var reuseAddress = false
    /// A pipe's `readableAll` / `writableAll`: applied by a round-robin primary, which creates the file.
    var readableAll = false
    var writableAll = false

    init(address: String?, port: Int, addressType: AddressType, fd: Int32?, backlog: Int32) {
        self.address = address
        self.port = port
        self.addressType = addressType
        self.fd = fd
        self.backlog = backlog
    }

    /// The handle key in the primary's table.
    var key: HandleKey { HandleKey(address: address, port: port, addressType: addressType, fd: fd, index: index) }

    /// `address:port:addressType:fd`: the key without the index, which counts the worker's listens on it.
    var tuple: String {
        let k = key.description
        return String(k[..<k.lastIndex(of: ":")!])
    }

    /// The `queryServer` message.
    var fields: [String: JSONValue] {
        var f: [String: JSONValue] = ["act": "queryServer", "port": .number(Double(port)), "addressType": addressType.json,
                                      "index": .number(Double(index)), "backlog": .number(Double(backlog))]
        if let address { f["address"] = .string(address) }
        if let fd { f["fd"] = .number(Double(fd)) }
        if ipv6Only { f["ipv6Only"] = true }
        if reuseAddress { f["reuseAddr"] = true }
        if readableAll { f["readableAll"] = true }
        if writableAll { f["writableAll"] = true }
        return f
    }

    /// A `queryServer` message read back; nil when its address type is not one Node uses.
    init?(message m: JSONValue) {
        guard let type = AddressType(json: m["addressType"]) else { return nil }
        self.init(address: m["address"]?.stringValue, port: m["port"]?.intValue ?? 0, addressType: type,
                  fd: m["fd"]?.intValue.map(Int32.init), backlog: Int32(m["backlog"]?.intValue ?? 511))
        index = m["index"]?.intValue ?? 0
        ipv6Only = m["ipv6Only"]?.boolValue ?? false
        reuseAddress = m["reuseAddr"]?.boolValue ?? false
        readableAll = m["readableAll"]?.boolValue ?? false
        writableAll = m["writableAll"]?.boolValue ?? false
    }
}

/// The key of a server handle in the primary: `address:port:addressType:fd:index` (primary.js).
struct HandleKey: Hashable, CustomStringConvertible {
    var address: String?
    var port: Int
    var addressType: AddressType
    var fd: Int32?
    var index: Int

    var description: String {
        "\(address ?? "null"):\(port):\(addressType.json.jsonText):\(fd.map(String.init) ?? "undefined"):\(index)"
    }
}

/// A worker's listen indexes (child.js): per `address:port:addressType:fd` tuple, the next index and the
/// indexes of servers still open. A worker's k-th concurrent listen on a tuple gets index k, so sibling
/// workers' k-th listens share a handle; the counter restarts only when every server of the tuple closed.
struct ListenIndexes {
    private var tuples: [String: (next: Int, open: Set<Int>)] = [:]

    /// Takes the next index of `tuple`.
    mutating func take(_ tuple: String) -> Int {
        var entry = tuples[tuple] ?? (0, [])
        let index = entry.next
        entry.next += 1
        entry.open.insert(index)
        tuples[tuple] = entry
        return index
    }

    /// A server of `tuple` with `index` closed.
    mutating func release(_ tuple: String, _ index: Int) {
        guard var entry = tuples[tuple] else { return }
        entry.open.remove(index)
        tuples[tuple] = entry.open.isEmpty ? nil : entry
    }

    /// Whether any server of `tuple` is still open.
    func isOpen(_ tuple: String) -> Bool { tuples[tuple] != nil }
}
