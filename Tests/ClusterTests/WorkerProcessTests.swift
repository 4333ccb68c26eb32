import ClusterJSON
import Foundation
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// The cluster with real worker processes (the cluster-fixture executable, driven over its control
/// socket, see FixtureCluster): long messages, handles in messages, sends on a closed channel,
/// ref/unref, repeated disconnects, and the workers' cwd and stdio.
@Suite("Worker processes", .serialized)
struct WorkerProcessTests {
    /// The message a worker reported (its `message` events, in order).
    func workerMessages(_ c: FixtureCluster) -> [JSONValue] {
        c.workerEvents.filter { $0["ev"] == "message" }.compactMap { $0["message"] }
    }

    @Test("long messages reach a worker and come back intact, in order with short ones", arguments: [1, 4, 8])
    func longMessages(mebibytes: Int) throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.waitForEvent("the worker's start") { $0["ev"] == "start" }
        let big = payload(bytes: mebibytes << 20, seed: mebibytes)
        for m: JSONValue in ["first", .string(big), "last"] { #expect(w.send(m)) }
        c.waitUntil("the worker's last message", within: .seconds(180)) { workerMessages(c).last == "last" }
        #expect(workerMessages(c) == ["first", .string(big), "last"])

        let seq = c.command(w.id, "send", [("messages", .array(["one", .string(big), "two"]))])
        #expect(c.ack(seq)?["result"]?["returned"] == .array([true, true, true]))
        var got: [JSONValue] = []
        c.waitUntil("the messages back in the primary", within: .seconds(180)) {
            got = c.clusterEvents.compactMap { if case .message(_, let m, _) = $0 { m } else { nil } }
            return got.count == 3
        }
        #expect(got == ["one", .string(big), "two"])
        w.kill(.kill)
        #expect(c.exit(of: w.id)?.signal == .kill)
    }

    @Test("a worker that does not read for a while loses nothing: the primary queues and delivers in order")
    func slowWorker() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        // The worker acks, then keeps its thread busy: it reads nothing for half a second.
        let seq = c.command(w.id, "block", [("ms", 500)])
        #expect(c.ack(seq) != nil)
        let count = 300
        for i in 0..<count {
            #expect(w.send(.object(JSONObject([("n", .number(Double(i))), ("pad", .string(String(repeating: "w", count: 20_000)))]))))
        }
        c.waitUntil("\(count) messages at the worker", within: .seconds(60)) { workerMessages(c).count == count }
        #expect(workerMessages(c).map { $0["n"]?.intValue } == (0..<count).map { Optional($0) })
        #expect(w.channel.queuedPackets == 0)
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a Server sent by the primary stays open in the primary; once it closes, the worker serves the socket")
    func serverToWorker() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.waitForEvent("the worker's start") { $0["ev"] == "start" }
        let server = Server(loop: c.loop)
        var listening = false
        server.onListening = { listening = true }
        server.listen(.tcp(host: "127.0.0.1", port: 0))
        c.waitUntil("the primary's server") { listening }
        guard case .inet(_, _, let port)? = server.address() else { Issue.record("no address"); return }
        #expect(try w.send("take", handle: .server(server)))
        let event = c.waitForEvent("the message with a server") { $0["ev"] == "message" }
        #expect(event?["message"] == "take")
        #expect(event?["handle"] == "server")
        #expect(server.isListening, "a sent server stays open in the sender")
        var closed = false
        server.close { _ in closed = true }
        c.waitUntil("the primary's close") { closed }
        let client = try Client(port: port, loop: c.loop)
        c.waitUntil("the worker's greeting") { client.text.hasSuffix("\n") }
        #expect(client.text == "{\"worker\":\(w.id),\"server\":\"received\"}\n")
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a server sent by the primary answers clients from the worker as 'received'")
    func receivedServerAnswers() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.waitForEvent("the worker's start") { $0["ev"] == "start" }
        let fd = try Sockets.listeningTCP(host: "127.0.0.1", port: 0, ipv6Only: false, backlog: 16).get()
        defer { close(fd) }
        #expect(try w.send("take", handle: .descriptor(fd)))
        c.waitForEvent("the message with a server") { $0["ev"] == "message" && $0["handle"] == "server" }
        // This process never accepts on its copy: every connection is the worker's.
        let client = try Client(port: port(of: fd), loop: c.loop)
        client.send("echo me")
        c.waitUntil("the worker's answer") { client.text.contains("echo me") }
        #expect(client.text == "{\"worker\":\(w.id),\"server\":\"received\"}\necho me")
        c.waitForEvent("the worker's connection event") { $0["ev"] == "connection" && $0["server"] == "received" }
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a connection a worker holds and sends is the primary's alone: the worker closed its copy")
    func connectionToPrimary() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.command(w.id, "listen", [("server", "h"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0), ("exclusive", true), ("hold", true)])
        let listening = c.waitForEvent("the worker's server") { $0["ev"] == "listening" && $0["server"] == "h" }
        let client = try Client(port: try #require(listening?["port"]?.intValue), loop: c.loop)
        client.send("early")
        c.waitForEvent("the held connection") { $0["ev"] == "connection" && $0["server"] == "h" }
        let seq = c.command(w.id, "send", [("messages", .array(["conn"])), ("handle", .object(JSONObject([("connection", "h")])))])
        #expect(c.ack(seq)?["result"]?["returned"] == .array([true]))
        let handle = c.waitForClusterEvent("the message with a connection") { e -> ReceivedHandle? in
            if case .message(_, "conn", let h?) = e { return h }
            return nil
        }
        #expect(handle?.kind == .connection)
        let fd = try #require(handle?.take())
        // The bytes the client sent before the hand-over were never read by the worker.
        var buffer = [UInt8](repeating: 0, count: 16)
        var got: [UInt8] = []
        c.waitUntil("the early bytes") {
            let n = recv(fd, &buffer, 16, Int32(MSG_DONTWAIT))
            if n > 0 { got += buffer[0..<n] }
            return got.count >= 5
        }
        #expect(String(decoding: got, as: UTF8.self) == "early")
        #expect(write(fd, "from the primary", 16) == 16)
        c.waitUntil("the primary's bytes at the client") { client.text == "from the primary" }
        // Only the primary's copy is left: closing it ends the client's connection.
        close(fd)
        c.waitUntil("the end of the connection") { client.ended }
        #expect(client.text == "from the primary", "the worker answered a connection it gave up")
        // Nothing more is held.
        let again = c.command(w.id, "send", [("messages", .array(["again"])), ("handle", .object(JSONObject([("connection", "h")])))])
        #expect(c.ack(again)?["error"]?["code"] == "ERR_NO_HELD_CONNECTION")
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a worker's own server sent to the primary stays open in the worker; a round-robin one cannot be sent")
    func serverToPrimary() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.command(w.id, "listen", [("server", "own"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0), ("exclusive", true)])
        c.command(w.id, "listen", [("server", "rr"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)])
        let own = c.waitForEvent("the worker's own server") { $0["ev"] == "listening" && $0["server"] == "own" }
        c.waitForEvent("the round-robin server") { $0["ev"] == "listening" && $0["server"] == "rr" }
        let rr = c.command(w.id, "send", [("messages", .array(["rr"])), ("handle", .object(JSONObject([("server", "rr")])))])
        #expect(c.ack(rr)?["error"]?["code"] == "ERR_INVALID_HANDLE_TYPE")
        let seq = c.command(w.id, "send", [("messages", .array(["srv"])), ("handle", .object(JSONObject([("server", "own")])))])
        #expect(c.ack(seq)?["result"]?["returned"] == .array([true]))
        let handle = c.waitForClusterEvent("the message with a server") { e -> ReceivedHandle? in
            if case .message(_, "srv", let h?) = e { return h }
            return nil
        }
        #expect(handle?.kind == .server)
        let fd = try #require(handle?.take())
        defer { close(fd) }
        #expect(port(of: fd) == own?["port"]?.intValue)
        // The worker still serves it (this process does not accept on its copy).
        let client = try Client(port: port(of: fd), loop: c.loop)
        c.waitUntil("the worker's greeting") { client.text.hasSuffix("\n") }
        #expect(client.text == "{\"worker\":\(w.id),\"server\":\"own\"}\n")
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("worker.send() on a closed channel returns false and emits ERR_IPC_CHANNEL_CLOSED on the Worker")
    func closedChannelPrimary() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        var errors: [ClusterError] = []
        w.on { if case .error(let e) = $0 { errors.append(e) } }
        c.command(w.id, "disconnect")
        c.waitUntil("the disconnect") { !w.isConnected }
        #expect(!w.send("late"))
        #expect(errors.isEmpty, "the error is emitted on a later tick, as in Node")
        c.waitUntil("the error") { !errors.isEmpty }
        #expect(errors.map(\.code) == ["ERR_IPC_CHANNEL_CLOSED"])
        #expect(c.exit(of: w.id)! == (0, nil))
    }

    @Test("process.send() on a closed channel returns false and cluster.worker emits the error; repeated disconnects are one")
    func closedChannelWorker() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.command(w.id, "listen", [("server", "keep"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0), ("exclusive", true)])
        c.waitForEvent("the worker's server") { $0["ev"] == "listening" }
        c.command(w.id, "disconnect", [("times", 3)])
        c.waitForEvent("the worker's disconnect") { $0["ev"] == "disconnect" }
        let seq = c.command(w.id, "send", [("messages", .array(["late"]))])
        #expect(c.ack(seq)?["result"]?["returned"] == .array([false]))
        let error = c.waitForEvent("the worker's error") { $0["ev"] == "error" }
        #expect(error?["code"] == "ERR_IPC_CHANNEL_CLOSED")
        #expect(error?["server"] == nil)
        c.command(w.id, "close", [("server", "keep")])
        #expect(c.exit(of: w.id)! == (0, nil))
        #expect(c.workerEvents.filter { $0["ev"] == "disconnect" }.count == 1)
        #expect(c.workerEvents.filter { $0["ev"] == "error" }.count == 1)
        #expect(w.exitedAfterDisconnect == true)
    }

    @Test("a round-robin server keeps an unref'd-channel worker alive until it is unref'd too (Node RR-08)")
    func refUnref() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.command(w.id, "listen", [("server", "s"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)])
        c.waitForEvent("the worker's server") { $0["ev"] == "listening" }
        c.command(w.id, "unref", [("server", "s")])
        c.command(w.id, "ref", [("server", "s")])
        c.command(w.id, "unrefChannel")
        // Had nothing kept the worker alive, it would have ended right after the last command.
        let report = c.command(w.id, "report")
        #expect(c.ack(report)?["result"] != nil)
        #expect(!w.isDead)
        c.command(w.id, "unref", [("server", "s")])
        #expect(c.exit(of: w.id)! == (0, nil))
        #expect(w.exitedAfterDisconnect == false)
    }

    @Test("a worker that breaks the channel's framing gets 'error', then 'disconnect'; the primary carries on",
          arguments: [("+junk", "EPROTO"), ("LU\\377\\377\\377\\377\\377\\377\\377\\377", "EMSGSIZE")])
    func workerProtocolError(_ packet: String, _ code: String) throws {
        let loop = EventLoop()
        let primary = Primary(loop: loop, environment: [:])
        // A "worker" that writes one raw packet on its channel, then reads until the primary closes it.
        primary.setupPrimary(SettingsUpdate(exec: "/bin/sh", args: ["-c", "printf '\(packet)' >&3 && exec cat <&3 >/dev/null"]))
        let w = try primary.fork()
        var events: [String] = []
        w.on { e in
            switch e {
            case .error(let error): events.append("error \(error.code)")
            case .disconnect: events.append("disconnect")
            case .exit(let code, let signal): events.append("exit \(code.map(String.init) ?? signal?.name ?? "?")")
            default: break
            }
        }
        run(loop, until: "the worker's exit") { w.isDead }
        #expect(events == ["error \(code)", "disconnect", "exit 0"])
    }

    @Test("a primary that breaks the framing: the worker reports 'error' and leaves, as on a lost channel")
    func primaryProtocolError() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        c.waitForEvent("the worker's start") { $0["ev"] == "start" }
        // Bytes no sender of this library writes: a continuation without a long message.
        let raw = Array("+junk".utf8)
        #expect(raw.withUnsafeBytes { send(w.channel.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == raw.count)
        let error = c.waitForEvent("the worker's error") { $0["ev"] == "error" }
        #expect(error?["code"] == "EPROTO")
        #expect(c.exit(of: w.id)! == (0, nil))
        let order = c.workerEvents.compactMap { $0["ev"]?.stringValue }.filter { ["error", "disconnect", "exiting"].contains($0) }
        #expect(order == ["error", "disconnect", "exiting"])
    }

    @Test("setupPrimary cwd and stdio: the worker starts there, with an extra pipe at 4 (Node SET-05, SET-06)")
    func cwdAndStdio() throws {
        let sub = makeTemporaryDirectory()
        defer { removeDirectory(sub) }
        let c = try FixtureCluster(settings: SettingsUpdate(cwd: sub, stdio: [.ignore, .pipe, .pipe, .ipc, .pipe]))
        let w = try c.fork()
        #expect(w.stdio.count == 5)
        #expect(w.stdio[0] == nil && w.stdio[3] == nil)
        let extra = try #require(w.stdio[4])
        #expect(HandleKind(of: extra) == .connection)
        let seq = c.command(w.id, "report", [("fds", true)])
        #expect(c.ack(seq) != nil)
        let report = c.waitForEvent("the report") { $0["ev"] == "report" }
        #expect(report?["cwd"] == .string(URL(fileURLWithPath: sub).resolvingSymlinksInPath().path))
        #expect(report?["fds"]?["0"] == "file")  // /dev/null
        #expect(report?["fds"]?["3"] == "socket")
        #expect(report?["fds"]?["4"] == "socket")
        #expect(report?["fds"]?["1"] == "socket")  // Node's 'pipe' is a Unix stream socket
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("the channel may be at another descriptor than 3")
    func channelElsewhere() throws {
        let c = try FixtureCluster(settings: SettingsUpdate(stdio: [.ignore, .pipe, .pipe, .ignore, .ipc]))
        let w = try c.fork()
        c.waitUntil("the worker online") { w.state == .online }
        #expect(w.send("hello"))
        let m = c.waitForEvent("the message") { $0["ev"] == "message" }
        #expect(m?["message"] == "hello")
        c.command(w.id, "disconnect")
        #expect(c.exit(of: w.id)! == (0, nil))
    }

    @Test("a UDP socket closed while its clustered bind waits for the primary emits 'close' and never listens (Node LISTEN-15)")
    func udpClosedWhileBinding() throws {
        let c = try FixtureCluster()
        let w = try c.fork()
        // Both commands arrive together: the close comes while the primary's reply is on its way.
        c.command(w.id, "listen", [("server", "d"), ("kind", "udp"), ("type", "udp4"), ("host", "127.0.0.1"), ("port", 0)])
        c.command(w.id, "close", [("server", "d")])
        c.waitForEvent("the close of d") { $0["ev"] == "close" && $0["server"] == "d" }
        c.command(w.id, "listen", [("server", "e"), ("kind", "udp"), ("type", "udp4"), ("host", "127.0.0.1"), ("port", 0)])
        let e = c.waitForEvent("e listening") { $0["ev"] == "listening" && $0["server"] == "e" }
        // The primary's report of e comes after any report of d (one channel, in order).
        _ = c.waitForClusterEvent("the primary's report of e") { ev -> Bool? in
            if case .listening(_, let a) = ev, a.port == e?["port"]?.intValue { return true }
            return nil
        }
        let listenedD = c.workerEvents.contains { $0["ev"] == "listening" && $0["server"] == "d" }
        let reports = c.clusterEvents.filter { if case .listening = $0 { true } else { false } }.count
        #expect(reports == (listenedD ? 2 : 1), "the primary reported a socket the worker never listened on")
        #expect(c.workerEvents.filter { $0["ev"] == "close" }.count == 1)
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a worker that cannot be started (missing cwd): 'error', then 'fork' and 'disconnect', and no 'exit', as in Node")
    func spawnFailure() throws {
        let loop = EventLoop()
        let primary = Primary(loop: loop, environment: [:])
        primary.setupPrimary(SettingsUpdate(exec: fixturePath, args: [], cwd: "/nonexistent-\(getpid())"))
        var events: [String] = []
        primary.on { e in
            switch e {
            case .fork(let w): events.append("fork dead=\(w.isDead)")
            case .disconnect(let w): events.append("disconnect \(w.state.rawValue) \(primary.workerIDs)")
            case .exit: events.append("exit")
            default: break
            }
        }
        let w = try primary.fork()
        #expect(!w.isDead && w.isConnected && w.state == .none)
        w.on { if case .error(let e) = $0 { events.append("error \(e.code) \(e.syscall ?? "")") } }
        run(loop, until: "the disconnect") { !w.isConnected }
        #expect(events == ["error ENOENT spawn \(fixturePath)", "fork dead=true", "disconnect disconnected []"])
        #expect(w.isDead && w.exitedAfterDisconnect == false)
        // Nothing else happens: the loop has nothing left to do.
        #expect(loop.run(until: { events.count > 3 }, deadline: .now + .milliseconds(200)) == false)
    }

    @Test("stdio needs exactly one ipc entry", arguments: [
        ([StdioOption.inherit, .inherit, .inherit], "ERR_CHILD_PROCESS_IPC_REQUIRED"),
        ([.inherit, .inherit, .inherit, .ipc, .ipc], "ERR_IPC_ONE_PIPE"),
    ])
    func stdioErrors(_ stdio: [StdioOption], _ code: String) throws {
        let primary = Primary(loop: EventLoop(), environment: [:])
        primary.setupPrimary(SettingsUpdate(exec: "/bin/true", stdio: stdio))
        #expect(throws: ClusterError.self) { try primary.fork() }
        do { try primary.fork() } catch { #expect(error.code == code) }
        #expect(primary.workers.isEmpty)
    }
}
