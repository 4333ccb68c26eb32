import ClusterJSON

#if canImport(Glibc)
import Glibc
#endif

/// How the primary shares a server between workers (`cluster.schedulingPolicy`).
public enum SchedulingPolicy: String, Sendable, Hashable {
    /// The primary accepts and hands each connection to the next free worker (`cluster.SCHED_RR`).
    case roundRobin = "rr"
    /// The primary sends the listening socket to the workers, which accept on it and the operating system
    /// decides who gets a connection (`cluster.SCHED_NONE`, spelt `none`). Not named `none`: compared with an
    /// optional policy, `.none` would mean nil.
    case shared = "none"
}

/// A worker's life stage as the primary sees it (`worker.state`).
public enum WorkerState: String, Sendable, Hashable {
    /// Forked, not yet online.
    case none
    /// The worker's runtime is up (`'online'`).
    case online
    /// It listens on at least one clustered server (`'listening'`).
    case listening
    /// Its IPC channel closed (`'disconnect'`).
    case disconnected
    /// The process ended (`'exit'`).
    case dead
    /// Inside the worker: a disconnect is in progress.
    case disconnecting
    /// Inside the worker: `kill()`/`destroy()` is in progress.
    case destroying
}

/// The kind of address in a `'listening'` report (`address.addressType`).
public enum AddressType: Sendable, Hashable {
    /// IPv4 TCP (`4`), also for a listen without host.
    case ipv4
    /// IPv6 TCP (`6`).
    case ipv6
    /// A Unix socket (`-1`).
    case unix
    /// UDP over IPv4 (`'udp4'`).
    case udp4
    /// UDP over IPv6 (`'udp6'`).
    case udp6
    /// A descriptor of the primary (`listen({fd})`: `null`).
    case descriptor

    /// The value Node reports.
    public var json: JSONValue {
        switch self {
        case .ipv4: .number(4)
        case .ipv6: .number(6)
        case .unix: .number(-1)
        case .udp4: .string("udp4")
        case .udp6: .string("udp6")
        case .descriptor: .null
        }
    }

    init?(json: JSONValue?) {
        switch json {
        case .number(4)?: self = .ipv4
        case .number(6)?: self = .ipv6
        case .number(-1)?: self = .unix
        case .string("udp4")?: self = .udp4
        case .string("udp6")?: self = .udp6
        case .null?, nil: self = .descriptor
        default: return nil
        }
    }

    var isUDP: Bool { self == .udp4 || self == .udp6 }
}

/// The address object of a `'listening'` event: `{addressType, address, port, fd}`.
public struct ListeningAddress: Sendable, Hashable {
    /// The host as the worker asked for it (nil for a listen without host, or a descriptor).
    public var address: String?
    /// The bound port (`-1` for a Unix socket).
    public var port: Int
    /// The kind of address.
    public var addressType: AddressType
    /// The primary's descriptor for `listen({fd})`, `-1` for UDP, nil otherwise (Node: `undefined`).
    public var fd: Int32?
}

/// `cluster.settings`: how workers are started.
public struct ClusterSettings: Sendable, Hashable {
    /// The executable each worker runs (`exec`); by default the running one.
    public var exec: String
    /// Its arguments (`args`); by default the primary's own.
    public var args: [String]
    /// Whether the worker's output goes to the primary instead of the inherited descriptors (`silent`).
    public var silent: Bool
    /// The worker's working directory (`cwd`); nil inherits the primary's.
    public var cwd: String?
    /// The worker's descriptors by number (`stdio`); nil means `silent` decides. Exactly one entry must be
    /// `.ipc`.
    public var stdio: [StdioOption]? = nil
}

/// One entry of `cluster.settings.stdio`: what the worker gets at that descriptor number.
public enum StdioOption: String, Sendable, Hashable {
    /// A new socket pair to the primary (Node's `'pipe'`, a Unix stream socket as in libuv); the primary
    /// keeps the other end (`Worker.stdio`).
    case pipe
    /// The primary's own descriptor of the same number (`'inherit'`).
    case inherit
    /// Nothing: `/dev/null` for 0–2, closed otherwise (`'ignore'`).
    case ignore
    /// The IPC channel (`'ipc'`).
    case ipc
}

/// What `cluster.setupPrimary()` changes; nil members keep their current value.
public struct SettingsUpdate: Sendable {
    /// `exec`.
    public var exec: String?
    /// `args`.
    public var args: [String]?
    /// `silent`.
    public var silent: Bool?
    /// `cwd`.
    public var cwd: String?
    /// `stdio`.
    public var stdio: [StdioOption]?

    /// An update of these members.
    public init(exec: String? = nil, args: [String]? = nil, silent: Bool? = nil, cwd: String? = nil, stdio: [StdioOption]? = nil) {
        self.exec = exec
        self.args = args
        self.silent = silent
        self.cwd = cwd
        self.stdio = stdio
    }
}

/// An event of the primary's `cluster` object (Node's `cluster.on(...)`).
public enum ClusterEvent {
    /// `'fork'`: a worker was forked (emitted after `fork()` returns).
    case fork(Worker)
    /// `'online'`: the worker's runtime is up.
    case online(Worker)
    /// `'listening'`: a worker's clustered server listens.
    case listening(Worker, ListeningAddress)
    /// `'message'`: a user message from a worker, and the handle sent with it, if any.
    case message(Worker, JSONValue, handle: ReceivedHandle?)
    /// `'disconnect'`: a worker's IPC channel closed.
    case disconnect(Worker)
    /// `'exit'`: a worker's process ended with a code or a signal.
    case exit(Worker, code: Int?, signal: Signal?)
    /// `'setup'`: `setupPrimary()` ran (also implicitly in every `fork()`).
    case setup(ClusterSettings)
}

/// An event of one `Worker` object in the primary (Node's `worker.on(...)`).
public enum WorkerEvent {
    /// `'online'`.
    case online
    /// `'listening'`.
    case listening(ListeningAddress)
    /// `'message'`, and the handle sent with it, if any.
    case message(JSONValue, handle: ReceivedHandle?)
    /// `'disconnect'`.
    case disconnect
    /// `'exit'`.
    case exit(code: Int?, signal: Signal?)
    /// `'error'`: e.g. a send on a closed channel (`ERR_IPC_CHANNEL_CLOSED`).
    case error(ClusterError)
}

/// Names shared by the primary and its workers.
public enum ClusterEnvironment {
    /// Set in a worker's environment to its id and removed at start-up; the same name as Node's, so a
    /// process is a worker under the same rule.
    public static let workerID = "NODE_UNIQUE_ID"
    /// Chooses the scheduling policy, `rr` or `none`; the same name as Node's.
    public static let schedulingPolicy = "NODE_CLUSTER_SCHED_POLICY"
    /// Simulates another platform's defaults (`win32`: policy `none`), for tests.
    public static let platform = "SWIFT_CLUSTER_PLATFORM"
    /// The descriptor of a worker's IPC channel by default (Node's `NODE_CHANNEL_FD` is 3 as well).
    public static let channelFD: Int32 = 3
    /// Set in a worker's environment to its channel's descriptor number when `stdio` puts it elsewhere, and
    /// removed at start-up; Node's name.
    public static let channelFDVariable = "NODE_CHANNEL_FD"
}

/// Process exit with hooks, like Node's `process.on('exit')` and `process.exit()`.
public enum ProcessExit {
    nonisolated(unsafe) private static var hooks: [(Int32) -> Void] = []
    nonisolated(unsafe) private static var exiting = false

    /// Runs `hook` with the exit code when the process exits through `exit(_:)`. Loop thread only.
    public static func onExit(_ hook: @escaping (Int32) -> Void) { hooks.append(hook) }

    /// Runs the exit hooks once, then ends the process with `code`.
    public static func exit(_ code: Int32) -> Never {
        if !exiting {
            exiting = true
            hooks.forEach { $0(code) }
        }
        Glibc.exit(code)
    }
}

/// The library's version, reported by fixtures and tools.
public enum ClusterVersion {
    /// Semantic version of the Cluster library.
    public static let string = "0.1.0"
    /// The Node.js version whose `node:cluster` behaviour the library follows where Node changed it between
    /// versions (for example `server.maxConnections = 0`, no limit before Node 22).
    public static let followsNode = "20"
    /// The Swift compiler it was built with.
    public static var compiler: String {
        #if compiler(>=6.3)
        "6.3"
        #elseif compiler(>=6.2)
        "6.2"
        #else
        "6"
        #endif
    }
}
