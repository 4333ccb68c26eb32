import CSupport
import ClusterJSON
import Foundation
import SystemSupport
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

// A primary in the test process whose workers are real processes: the `cluster-fixture` executable,
// built next to the test bundle, started by `Primary.fork()` as a worker. Such a worker speaks
// fixtures/PROTOCOL.md: it takes commands on a control socket this harness listens on, and reports what
// happens on its stdout, which is a pipe to us (the workers are forked `silent`), so a test can make a
// worker listen, send, disconnect or report, and see what it observed.
//
// Everything runs on the harness's event loop, on the test's thread: waiting means running that loop
// until a condition holds, with a deadline (`waitFor`). Nothing sleeps.

/// The cluster-fixture executable. It is built by `swift build --build-tests` (the conformance tests
/// depend on it); a test that cannot find it fails with that message.
let fixturePath = productsDirectory.appendingPathComponent("cluster-fixture").path

final class FixtureCluster {
    let loop = EventLoop()
    let primary: Primary
    let dir: String
    let controlPath: String
    private let listenFD: Int32
    private var acceptWatcher: Watcher?
    private var pendingControls: [ControlConnection] = []
    private var controls: [Int: ControlConnection] = [:]
    private var readers: [StreamReader] = []
    private var seq = 0
    /// Events the workers wrote (framed ones reassembled), in arrival order.
    private(set) var workerEvents: [JSONObject] = []
    /// The primary's cluster events, in order.
    private(set) var clusterEvents: [ClusterEvent] = []
    /// Every worker forked, by id.
    private(set) var workers: [Int: Worker] = [:]
    /// What the workers wrote to stderr.
    private(set) var diagnostics = ""

    init(settings: SettingsUpdate = SettingsUpdate(), policy: SchedulingPolicy = .roundRobin) throws {
        dir = makeTemporaryDirectory()
        controlPath = dir + "/control.sock"
        listenFD = try Sockets.listeningUnix(path: controlPath, backlog: 16).get()
        primary = Primary(loop: loop, environment: [:])
        primary.schedulingPolicy = policy
        var s = settings
        s.exec = s.exec ?? fixturePath
        s.args = s.args ?? []
        if s.silent == nil && s.stdio == nil { s.silent = true }
        primary.setupPrimary(s)
        primary.on { [weak self] e in self?.clusterEvents.append(e) }
        acceptWatcher = try loop.watch(listenFD, referenced: false) { [weak self] in self?.acceptControl() }
    }

    deinit {
        for w in workers.values where !w.isDead { w.kill(.kill) }
        // Reap what was killed, so no zombie outlives the test.
        _ = loop.run(until: { [workers] in workers.values.allSatisfy(\.isDead) }, deadline: .now + .seconds(10))
        acceptWatcher?.cancel()
        close(listenFD)
        for w in workers.values { for case let fd? in w.stdio.enumerated().filter({ $0.offset == 0 || $0.offset > 2 }).map(\.element) { close(fd) } }
        removeDirectory(dir)
    }

    private func acceptControl() {
        let fd = csupport_accept(listenFD, 1)
        guard fd >= 0 else { return }
        guard let c = try? ControlConnection(fd: fd, loop: loop) else {
            Issue.record("cannot watch a control connection")
            close(fd)
            return
        }
        c.onHello = { [weak self, unowned c] id in
            guard let self else { return }
            controls[id] = c
            pendingControls.removeAll { $0 === c }
        }
        pendingControls.append(c)
    }

    /// `cluster.fork()` of a fixture worker that connects to this harness.
    @discardableResult
    func fork(env: [String: String] = [:]) throws -> Worker {
        #expect(FileManager.default.isExecutableFile(atPath: fixturePath), "cluster-fixture is not built at \(fixturePath)")
        let w = try primary.fork(env: env.merging(["CLUSTER_CONFORMANCE_CONTROL": controlPath]) { a, _ in a })
        workers[w.id] = w
        if let out = w.standardOutput {
            var parts: [Int: [UInt8]] = [:]
            readers.append(try StreamReader(fd: out, loop: loop) { [weak self] line in
                guard let self, case .object(let o)? = try? JSONValue.parse(line) else {
                    Issue.record("a worker wrote a line that is not an event: \(line.prefix(200))")
                    return
                }
                if o["ev"] == "part" {
                    guard let pid = o["pid"]?.intValue, let data = o["data"]?.stringValue, let piece = Data(base64Encoded: data) else {
                        Issue.record("a malformed part line: \(line)")
                        return
                    }
                    #expect(line.utf8.count < 4096)
                    parts[pid, default: []] += piece
                    guard o["last"] == true else { return }
                    let whole = parts.removeValue(forKey: pid) ?? []
                    guard case .object(let event)? = try? JSONValue.parse(bytes: whole) else {
                        Issue.record("framed parts that are not an event")
                        return
                    }
                    workerEvents.append(event)
                } else {
                    #expect(line.utf8.count < 4096, "an unframed line of \(line.utf8.count) bytes")
                    workerEvents.append(o)
                }
            })
        }
        if let err = w.standardError {
            readers.append(try StreamReader(fd: err, loop: loop) { [weak self] line in self?.diagnostics += line + "\n" })
        }
        return w
    }

    /// Sends a command to worker `id` over its control connection (waiting for the worker to connect);
    /// returns its sequence number.
    @discardableResult
    func command(_ id: Int, _ name: String, _ fields: [(String, JSONValue)] = [],
                 sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        seq += 1
        guard waitUntil("worker \(id)'s control connection", sourceLocation: sourceLocation, { controls[id] != nil }),
              let c = controls[id] else { return seq }
        c.send(JSONValue.object(JSONObject([("cmd", .string(name)), ("seq", .number(Double(seq)))] + fields)).jsonText + "\n")
        return seq
    }

    /// The ack of command `seq`.
    func ack(_ seq: Int, sourceLocation: SourceLocation = #_sourceLocation) -> JSONObject? {
        waitForEvent("the ack of command \(seq)", sourceLocation: sourceLocation) { $0["ev"] == "ack" && $0["seq"]?.intValue == seq }
    }

    /// Runs the loop until `condition` holds; an issue if it does not within `limit`.
    @discardableResult
    func waitUntil(_ what: String, within limit: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                   _ condition: () -> Bool) -> Bool {
        let held = loop.run(until: condition, deadline: .now + limit)
        if !held {
            Issue.record("no \(what) within \(limit); worker events: \(workerEvents.suffix(5).map { JSONValue.object($0).jsonText.prefix(300) }); stderr: \(diagnostics.suffix(500))",
                         sourceLocation: sourceLocation)
        }
        return held
    }

    /// The first worker event (from the start) that matches, waiting for it.
    @discardableResult
    func waitForEvent(_ what: String, within limit: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                      _ match: (JSONObject) -> Bool) -> JSONObject? {
        var found: JSONObject?
        waitUntil(what, within: limit, sourceLocation: sourceLocation) {
            found = workerEvents.first(where: match)
            return found != nil
        }
        return found
    }

    /// The first cluster event (from the start) that matches, waiting for it.
    func waitForClusterEvent<T>(_ what: String, within limit: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
                                _ match: (ClusterEvent) -> T?) -> T? {
        var found: T?
        waitUntil(what, within: limit, sourceLocation: sourceLocation) {
            found = clusterEvents.lazy.compactMap(match).first
            return found != nil
        }
        return found
    }

    /// Waits for worker `id`'s exit and returns its code and signal.
    func exit(of id: Int, sourceLocation: SourceLocation = #_sourceLocation) -> (code: Int?, signal: Signal?)? {
        waitForClusterEvent("the exit of worker \(id)", sourceLocation: sourceLocation) { e -> (code: Int?, signal: Signal?)? in
            if case .exit(let w, let code, let signal) = e, w.id == id { return (code, signal) }
            return nil
        }
    }
}

/// A worker's control connection: its hello line, then our commands (queued when the socket is full).
final class ControlConnection {
    let fd: Int32
    private var watcher: Watcher?
    private var lines = LineBuffer()
    private var outgoing: [UInt8] = []
    var onHello: (Int) -> Void = { _ in }

    init(fd: Int32, loop: EventLoop) throws {
        self.fd = fd
        var buffer = [UInt8](repeating: 0, count: 4096)
        watcher = try loop.watch(fd, referenced: false) { [weak self] in
            guard let self else { return }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 {
                if n < 0 && errno == EAGAIN { return }
                watcher?.cancel()
                return
            }
            lines.append(buffer[0..<n]) { line in
                if let id = (try? JSONValue.parse(line))?["hello"]?["worker"]?.intValue { onHello(id) }
            }
        }
    }

    deinit {
        watcher?.cancel()
        close(fd)
    }

    func send(_ text: String) {
        outgoing += Array(text.utf8)
        flush()
    }

    private func flush() {
        while !outgoing.isEmpty {
            let n = outgoing.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 { outgoing.removeFirst(n); continue }
            if n < 0 && errno == EAGAIN {
                watcher?.setWritable { [weak self] in self?.flush() }
                return
            }
            Issue.record("a command could not be written: \(String(cString: strerror(errno)))")
            outgoing.removeAll()
        }
        watcher?.setWritable(nil)
    }
}

/// Reads a descriptor line by line on a loop; closes it at end of stream.
final class StreamReader {
    private var watcher: Watcher?
    private var lines = LineBuffer()
    private let fd: Int32

    init(fd: Int32, loop: EventLoop, onLine: @escaping (String) -> Void) throws {
        self.fd = fd
        var buffer = [UInt8](repeating: 0, count: 65536)
        try Sockets.setNonBlocking(fd)
        watcher = try loop.watch(fd, referenced: false) { [weak self] in
            guard let self else { return }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            if n <= 0 {
                lines.finish(onLine)
                watcher?.cancel()
                watcher = nil
                close(fd)
                return
            }
            lines.append(buffer[0..<n], onLine)
        }
    }

    deinit {
        if let watcher {
            watcher.cancel()
            close(fd)
        }
    }
}

/// A TCP client of a server under test, read on the loop (so that waiting for its data runs the loop).
final class Client {
    let fd: Int32
    private var watcher: Watcher?
    private(set) var received: [UInt8] = []
    private(set) var ended = false

    init(port: Int, loop: EventLoop) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        let address = SocketAddress(host: "127.0.0.1", port: port)!
        guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let e = SystemError("connect")
            close(fd)
            throw e
        }
        try Sockets.setNonBlocking(fd)
        var buffer = [UInt8](repeating: 0, count: 4096)
        watcher = try loop.watch(fd, referenced: false) { [weak self] in
            guard let self else { return }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { received += buffer[0..<n]; return }
            if n < 0 && errno == EAGAIN { return }
            ended = true
            watcher?.cancel()
        }
    }

    deinit {
        watcher?.cancel()
        close(fd)
    }

    var text: String { String(decoding: received, as: UTF8.self) }

    func send(_ text: String) {
        #expect(text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) } == text.utf8.count)
    }
}

/// The TCP port a listening descriptor is bound to.
func port(of fd: Int32) -> Int { SocketAddress.local(of: fd)?.port ?? 0 }
