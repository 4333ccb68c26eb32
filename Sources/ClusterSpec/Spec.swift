/// One behaviour spec, as loaded from a file of `Specs/` (format described in `Specs/README.md`).
public struct Spec: Sendable {
    /// The stable identifier, unique across the suite.
    public var id: String
    /// The one-line statement of the behaviour.
    public var description: String
    /// Sections of Node's documentation the behaviour comes from.
    public var refs: [DocRef]
    /// Whether the spec checks what Node's documentation says or what Node does beyond or against it.
    public var basis: Basis
    /// A short verbatim passage of the documentation section a documented spec rests on.
    public var quote: String?
    /// Files of the nodejs/node repository an observed spec rests on (`lib/net.js`, `lib/net.js#L120`, …).
    public var source: [String]
    /// Behaviour-catalogue IDs (`LISTEN-02`, …) the spec checks.
    public var behaviours: [String]
    /// Feature names an implementation must advertise for the spec to run.
    public var features: [String]
    /// The Node test the spec mirrors, when there is one.
    public var from: String?
    /// Free-form explanation.
    public var comment: String?
    /// The time budget in milliseconds before scaling.
    public var timeout: Int
    /// What the runner prepares before the primary starts.
    public var setup: Setup
    /// What the runner does, in order.
    public var steps: [Step]
    /// What must hold of the observed log.
    public var expect: [Expectation]
    /// Where the spec was loaded from.
    public var location: SourceLocation
    /// The Node versions whose behaviour the spec describes, when Node changed it deliberately (`nodeVersions`);
    /// nil for every version.
    public var nodeVersions: NodeVersionRange?

    /// The default time budget, in milliseconds.
    public static let defaultTimeout = 10_000

    /// A spec from its parts (the loader builds these from files).
    public init(id: String, description: String, refs: [DocRef], basis: Basis, quote: String? = nil, source: [String] = [],
                behaviours: [String], features: [String], from: String?, comment: String?, timeout: Int, setup: Setup,
                steps: [Step], expect: [Expectation], location: SourceLocation) {
        self.id = id
        self.description = description
        self.refs = refs
        self.basis = basis
        self.quote = quote
        self.source = source
        self.behaviours = behaviours
        self.features = features
        self.from = from
        self.comment = comment
        self.timeout = timeout
        self.setup = setup
        self.steps = steps
        self.expect = expect
        self.location = location
    }
}

/// What a spec's expectations rest on: a red cell on a `documented` spec breaks Node's documented contract; on an
/// `observed` spec it only differs from what Node 20 does.
public enum Basis: String, Sendable, Hashable, CaseIterable {
    /// Every expectation is stated by the documentation sections the spec's `refs` name.
    case documented
    /// At least one expectation rests on Node's behaviour where its documentation is silent or says otherwise.
    case observed
}

/// A file and a position in it.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    /// The file path as given to the loader.
    public var file: String
    /// The position, 1-based.
    public var mark: SourceMark

    /// A location in `file` at `mark`.
    public init(file: String, mark: SourceMark) {
        self.file = file
        self.mark = mark
    }

    public var description: String { "\(file):\(mark.line):\(mark.column)" }
}

/// A section of Node's documentation, e.g. `api/cluster#how-it-works`.
public struct DocRef: Sendable, Hashable {
    /// The documentation page, e.g. `api/cluster`.
    public var doc: String
    /// The section anchor on that page.
    public var anchor: String
}

/// What exists before the primary starts.
public struct Setup: Sendable {
    /// The value of the scheduling-policy environment variable, when set.
    public var policy: String?
    /// The simulated platform, when set.
    public var platform: String?
    /// Extra environment variables for the primary.
    public var env: [String: String] = [:]
    /// Names of free TCP ports to allocate.
    public var ports: [String] = []
    /// Sockets handed to the primary at fixed descriptors.
    public var inherit: [InheritedSocket] = []
    /// Directories to create in the temporary directory.
    public var dirs: [String] = []
    /// Generated strings, each bound to a variable.
    public var payloads: [Payload] = []
    /// The user the primary (and so every worker) runs as, when the runner is root; a spec with it is
    /// about an unprivileged process.
    public var user: String?

    /// Nothing to prepare.
    public init() {}
}

/// A generated string: `$name` stands for a deterministic text of exactly `bytes` UTF-8 bytes, mixing
/// one- to four-byte characters so that a framing bug that splits or reorders bytes changes it.
public struct Payload: Sendable, Hashable {
    /// The variable name.
    public var name: String
    /// The length in UTF-8 bytes.
    public var bytes: Int

    /// A payload definition.
    public init(name: String, bytes: Int) {
        self.name = name
        self.bytes = bytes
    }

    /// The text: numbered segments such as `<17:é漢😀>` repeated and cut to exactly `bytes` bytes (the cut
    /// never splits a character; ASCII pads the end).
    public var text: String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(bytes)
        var i = 0
        while true {
            let segment = Array("<\(i):é漢😀>".utf8)
            if utf8.count + segment.count > bytes { break }
            utf8 += segment
            i += 1
        }
        while utf8.count < bytes { utf8.append(UInt8(ascii: ".")) }
        return String(decoding: utf8, as: UTF8.self)
    }
}

/// A socket the runner creates and passes to the primary at descriptor `fd`.
public struct InheritedSocket: Sendable {
    /// The transport of an inherited socket.
    public enum Transport: String, Sendable { case tcp, udp }
    /// The descriptor number in the primary.
    public var fd: Int32
    /// TCP (listening) or UDP (bound).
    public var transport: Transport
    /// The loopback address to bind.
    public var host: String
    /// The variable that receives the bound port, if any.
    public var portVariable: String?
}

/// Which workers a step addresses.
public enum WorkerSelection: Sendable, Hashable {
    /// These worker ids.
    case ids([Int])
    /// Every worker that started and has not been seen to leave.
    case all
}

/// The process a step addresses.
public enum ProcessTarget: Sendable, Hashable {
    /// The primary.
    case primary
    /// These workers.
    case workers(WorkerSelection)
}

/// Which side of the cluster performs an operation.
public enum Side: String, Sendable { case primary, worker }

/// How a worker listens (`server.listen(...)` / `socket.bind(...)` forms).
public enum ListenTarget: Sendable, Hashable {
    /// `listen({host, port, ipv6Only})`; `host` nil means no host argument. `port` may be a variable.
    case tcp(host: String?, port: JSONValue, ipv6Only: Bool?)
    /// `listen({path, readableAll, writableAll})`.
    case unix(path: String, readableAll: Bool?, writableAll: Bool?)
    /// `listen({fd})`: a descriptor of the primary.
    case fd(Int)
    /// `listen(handle)` on a socket the worker makes itself.
    case handle(host: String?, port: JSONValue)
    /// `dgram.createSocket({type, reuseAddr, ipv6Only}).bind({address, port})`, or `bind({fd})` when `fd` is
    /// set (a descriptor of the primary; `port` is then unused).
    case udp(type: String, host: String?, port: JSONValue, reuseAddr: Bool?, ipv6Only: Bool?, fd: Int?)
    /// `http.createServer().listen({host, port, ipv6Only})`.
    case http(host: String?, port: JSONValue, ipv6Only: Bool?)

    /// The transport the runner uses as a client of this server.
    public var transport: String {
        switch self {
        case .tcp, .fd, .handle: "tcp"
        case .unix: "unix"
        case .udp: "udp"
        case .http: "http"
        }
    }
}

/// A handle sent with a message (`worker.send(message, sendHandle)`, protocol §6.1).
public enum HandleReference: Sendable, Hashable {
    /// The sender's listening server of this name.
    case server(String)
    /// The oldest connection held by the sender's server of this name.
    case connection(String)
}

/// Where a client step connects.
public enum ClientTarget: Sendable, Hashable {
    /// The address a worker reported for this server (`worker` nil: any worker that did).
    case server(String, worker: Int?)
    /// An explicit TCP or UDP address; `port` may be a variable.
    case address(host: String, port: JSONValue)
    /// A Unix socket path relative to the temporary directory.
    case path(String)
}

/// A client step: TCP or Unix connections (`connect`).
public struct ConnectStep: Sendable, Hashable {
    /// Connection order.
    public enum Mode: String, Sendable { case sequential, concurrent }
    /// Where to connect.
    public var target: ClientTarget
    /// The name the runner logs in `server` fields.
    public var label: String
    /// How many connections.
    public var count: Int
    /// Sequential or concurrent.
    public var mode: Mode
    /// Bytes sent right after connecting.
    public var send: String?
    /// When set, the connections stay open under this name until `release`.
    public var hold: String?
    /// When true the step does not wait for the answers.
    public var background: Bool
    /// How long to wait for each answer, in milliseconds.
    public var wait: Int
}

/// A client step: HTTP requests (`request`).
public struct RequestStep: Sendable, Hashable {
    /// Where to connect.
    public var target: ClientTarget
    /// The name the runner logs in `server` fields.
    public var label: String
    /// How many requests.
    public var count: Int
    /// All requests on one kept-alive connection (true) or a new connection per request (false).
    public var keepAlive: Bool
    /// Send only the request head, without its final blank line, and keep the connection (under `hold`):
    /// a connection in the middle of a request, which a closing server must wait for.
    public var partial: Bool = false
    /// The request method.
    public var method: String
    /// The request target.
    public var path: String
    /// When set, the (last) connection stays open under this name until `release`.
    public var hold: String?
    /// When true the step does not wait for the answers.
    public var background: Bool
    /// How long to wait for each answer, in milliseconds.
    public var wait: Int
}

/// A client step: UDP datagrams (`datagram`).
public struct DatagramStep: Sendable, Hashable {
    /// Where to send.
    public var target: ClientTarget
    /// The name the runner logs in `server` fields.
    public var label: String
    /// How many datagrams.
    public var count: Int
    /// The datagram text.
    public var payload: String
    /// How long to wait for the answers, in milliseconds.
    public var wait: Int
}

/// The step vocabulary: every step kind a spec may write, by its YAML key. The decoder switches over
/// this enum exhaustively; the schema and `Specs/README.md` are checked against it by tests.
public enum StepName: String, CaseIterable, Sendable, Hashable {
    case fork, setupPrimary, setPolicy, listen, close, maxConnections, send, disconnect, kill, exit, block, chdir
    case ref, unref, unrefChannel, report, signal, closeInput, await, gone, connect, request, datagram, release
    case probe, capture, descriptors, stat
}

/// One step of a spec.
public struct Step: Sendable, Hashable {
    /// What the step does.
    public enum Kind: Sendable, Hashable {
        case fork(count: Int, env: [String: String])
        case setupPrimary(args: [String]?, silent: Bool?, exec: String?, cwd: String?, stdio: [String]?)
        case setPolicy(String)
        case listen(ProcessTarget, server: String, target: ListenTarget, exclusive: Bool?, backlog: Int?, hold: Bool?)
        case close(ProcessTarget, server: String)
        case maxConnections(workers: WorkerSelection, server: String, value: Int)
        case send(side: Side, workers: WorkerSelection, messages: [JSONValue], handle: HandleReference?)
        case disconnect(workers: WorkerSelection, from: Side, times: Int)
        case disconnectAll
        case kill(workers: WorkerSelection, signal: String?, from: Side)
        case exit(ProcessTarget, code: Int)
        case block(workers: WorkerSelection, ms: Int)
        case chdir(workers: WorkerSelection, path: String)
        case ref(workers: WorkerSelection, server: String, referenced: Bool)
        case unrefChannel(workers: WorkerSelection)
        case report(ProcessTarget, env: [String], fds: Bool)
        case signal(ProcessTarget, signal: String)
        case closeInput
        case await(Selector, count: Int)
        case gone(workers: WorkerSelection, within: Int)
        case connect(ConnectStep)
        case request(RequestStep)
        case datagram(DatagramStep)
        case release(String)
        case probe(server: String)
        case capture(name: String, from: Selector, field: String)
        case descriptors(ProcessTarget)
        case stat(path: String)
    }

    /// What the step does.
    public var kind: Kind
    /// The error code the command must fail with (`any` for any code), when the step expects one.
    public var expectError: String?
    /// Where the step is written.
    public var location: SourceLocation
    /// The step's kind as written.
    public var name: StepName
}

/// A condition on one event field.
public indirect enum Predicate: Sendable, Hashable {
    /// Equal to this value (numbers compare by value).
    case equals(JSONValue)
    /// A list of exactly these item predicates.
    case list([Predicate])
    /// An object with at least these members.
    case partial([String: Predicate])
    /// `$not`.
    case not(Predicate)
    /// `$oneOf`.
    case oneOf([Predicate])
    /// `$min` / `$max`.
    case range(min: Double?, max: Double?)
    /// `$absent`.
    case absent(Bool)
    /// `$type`.
    case type(String)
    /// `$contains`.
    case contains(Predicate)
    /// Several `$` keys in one mapping: all must hold.
    case all([Predicate])
}

/// Fields and their predicates; an event matches when all hold.
public struct Selector: Sendable, Hashable {
    /// The conditions, by field name.
    public var fields: [String: Predicate]
    /// Field names in the order written, for messages.
    public var order: [String]

    /// A selector from conditions in order.
    public init(_ conditions: [(String, Predicate)]) {
        fields = [:]
        order = []
        for (k, p) in conditions {
            if fields[k] == nil { order.append(k) }
            fields[k] = p
        }
    }
}

/// How many events an `events` expectation allows.
public enum CountRule: Sendable, Hashable {
    /// Exactly this many.
    case exactly(Int)
    /// Within a range.
    case range(min: Int?, max: Int?)
}

/// A grouping rule of an `events` expectation.
public struct GroupRule: Sendable, Hashable {
    /// The field to group by.
    public var by: String
    /// Exact counts per value (absent values count 0; other values must not occur).
    public var counts: [(value: JSONValue, count: Int)]?
    /// The count every occurring value must have.
    public var each: Int?

    public static func == (a: GroupRule, b: GroupRule) -> Bool {
        a.by == b.by && a.each == b.each
            && a.counts?.map(\.value) == b.counts?.map(\.value) && a.counts?.map(\.count) == b.counts?.map(\.count)
    }

    public func hash(into h: inout Hasher) {
        h.combine(by)
        h.combine(each)
    }
}

/// One item of `expect`.
public struct Expectation: Sendable {
    /// What is checked.
    public enum Kind: Sendable {
        case events(Selector, count: CountRule?, each: Selector?, same: [String], distinct: [String], groups: GroupRule?, cycle: String?,
                    increasing: String?)
        case never(Selector)
        case sequence([Selector])
    }

    /// What is checked.
    public var kind: Kind
    /// `forEach`: the field and the values the expectation is repeated for.
    public var forEach: (field: String, values: [JSONValue])?
    /// A note shown on failure.
    public var because: String?
    /// Where it is written.
    public var location: SourceLocation
}
