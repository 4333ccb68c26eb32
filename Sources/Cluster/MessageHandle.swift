import CSupport
import ClusterJSON
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

// Handles in messages (Node's `sendHandle`): a descriptor travels by SCM_RIGHTS with the first packet of
// its message, and the message's kind says what the sender knew it to be, so the receiver can serve it.

/// What a descriptor sent with a message is, as the sender saw it (Node's handle types `net.Server`,
/// `net.Socket`, and the rest).
public enum HandleKind: String, Sendable, Hashable {
    /// A listening socket: the receiver can accept connections on it (`net.Server`).
    case server
    /// A connected stream socket: the receiver can read and write it (`net.Socket`).
    case connection
    /// Any other descriptor.
    case other

    /// The kind of an open descriptor, read from the socket (`SO_ACCEPTCONN`, `SO_TYPE`, a peer), as Node's
    /// handle conversion decides it from the object sent; nil when it is not open.
    public init?(of fd: Int32) {
        switch csupport_handle_kind(fd) {
        case 1: self = .server
        case 2: self = .connection
        case 3: self = .other
        default: return nil
        }
    }
}

/// A handle to send with a message: the `sendHandle` argument of Node's `worker.send()` and
/// `process.send()`.
public enum SendHandle {
    /// A listening server's socket; the server keeps listening in the sender (Node: a `net.Server`).
    /// A round-robin server in a worker has no socket of its own and cannot be sent.
    case server(Server)
    /// An accepted connection; unless `keepOpen`, the sender closes its copy once the message is sent
    /// (Node: a `net.Socket`, with `options.keepOpen`).
    case connection(Connection, keepOpen: Bool = false)
    /// Any descriptor; its kind is read from the socket and the caller keeps its copy.
    case descriptor(Int32)

    /// The descriptor to send and its kind; `ERR_INVALID_HANDLE_TYPE` when there is none.
    func resolve() throws(ClusterError) -> (fd: Int32, kind: HandleKind) {
        switch self {
        case .server(let server):
            guard let fd = server.listeningDescriptor else {
                throw ClusterError(code: "ERR_INVALID_HANDLE_TYPE",
                                   message: "This handle type cannot be sent: the server has no listening socket of its own")
            }
            return (fd, .server)
        case .connection(let connection, _):
            guard !connection.isClosed else {
                throw ClusterError(code: "ERR_INVALID_HANDLE_TYPE", message: "This handle type cannot be sent: the connection is closed")
            }
            return (connection.fd, .connection)
        case .descriptor(let fd):
            guard let kind = HandleKind(of: fd) else {
                throw ClusterError(code: "ERR_INVALID_HANDLE_TYPE", message: "This handle type cannot be sent: descriptor \(fd) is not open")
            }
            return (fd, kind)
        }
    }

    /// After a successful send: a connection is given up (Node's `keepOpen: false`).
    func sent() {
        if case .connection(let connection, keepOpen: false) = self { connection.close() }
    }
}

/// A descriptor that arrived with a message: the `handle` argument of Node's `'message'` event. The
/// receiver owns it: `take()` the descriptor to serve it (`Server.listen(.handle(fd))` for a server,
/// `Connection(adopting:)` for a connection). A handle nobody takes is closed when the last reference to
/// this object goes away, so an ignored handle never leaks.
public final class ReceivedHandle: Sendable {
    /// What the sender said it is.
    public let kind: HandleKind
    private let descriptor: Atomic<Int32>

    init(kind: HandleKind, fd: Int32) {
        self.kind = kind
        descriptor = Atomic(fd)
    }

    /// Takes the descriptor (close-on-exec); the caller must close it. Nil once taken. (Node hands over a
    /// ready `net.Server` or `net.Socket`; here it is the descriptor to build one on.)
    public func take() -> Int32? {
        let fd = descriptor.exchange(-1, ordering: .acquiringAndReleasing)
        return fd >= 0 ? fd : nil
    }

    deinit {
        let fd = descriptor.load(ordering: .acquiring)
        if fd >= 0 { close(fd) }
    }
}

extension Channel.Kind {
    /// The kind of a user message carrying a handle of `kind` (or none).
    init(userMessageWith kind: HandleKind?) {
        switch kind {
        case nil: self = .user
        case .server?: self = .userWithServer
        case .connection?: self = .userWithConnection
        case .other?: self = .userWithOther
        }
    }

    /// Whether this is a user message, and what handle kind it announces.
    var userMessage: (isUser: Bool, handle: HandleKind?) {
        switch self {
        case .control: (false, nil)
        case .user: (true, nil)
        case .userWithServer: (true, .server)
        case .userWithConnection: (true, .connection)
        case .userWithOther: (true, .other)
        }
    }
}

/// The handle of a received user message: the first descriptor, typed by the message's kind (extra
/// descriptors, which no sender of this library attaches, are closed).
func receivedHandle(_ kind: HandleKind?, _ fds: [Int32]) -> ReceivedHandle? {
    fds.dropFirst().forEach { close($0) }
    guard let fd = fds.first else { return nil }
    return ReceivedHandle(kind: kind ?? .other, fd: fd)
}
