import SystemSupport
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// Objects dropped early, as a user of the library drops them: what is active stays alive and works (Node's
/// semantics: a listening server serves until closed, a worker is reported until its exit), what is not is
/// released with its descriptor, and nothing crashes.
@Suite("Lifetimes")
struct LifetimeTests {
    /// A blocking TCP connection to 127.0.0.1:`port`; -1 when refused.
    func connectTo(_ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard SocketAddress(host: "127.0.0.1", port: port)!.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            close(fd)
            return -1
        }
        return fd
    }

    /// Whether the peer of `fd` has closed (a read sees end of stream before the deadline).
    func endOfStream(_ fd: Int32, loop: EventLoop) -> Bool {
        var ended = false
        _ = loop.run(until: {
            var byte: UInt8 = 0
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 0) > 0 { ended = recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 }
            return ended
        }, deadline: .now + .seconds(10))
        return ended
    }

    @Test("a server dropped while listening keeps serving and keeps the loop alive until closed")
    func droppedServerServes() throws {
        let loop = EventLoop()
        var served = 0
        var port = 0
        do {
            let server = Server(loop: loop)
            server.onConnection = { served += 1; $0.close() }
            server.onListening = { if case .inet(_, _, let p)? = server.address() { port = p } }
            server.listen(.tcp(host: "127.0.0.1", port: 0))
        }
        run(loop, until: "the dropped server listening") { port != 0 }
        #expect(loop.isAlive, "a listening server nobody holds no longer keeps the loop alive")
        let fd = connectTo(port)
        try #require(fd >= 0, "the dropped server refused the connection")
        defer { close(fd) }
        run(loop, until: "the dropped server's connection") { served == 1 }
        #expect(endOfStream(fd, loop: loop))
    }

    @Test("a server closed and dropped releases its port and its hold on the loop")
    func closedServerReleases() throws {
        let loop = EventLoop()
        var port = 0
        var closed = false
        do {
            let server = Server(loop: loop)
            server.onListening = { if case .inet(_, _, let p)? = server.address() { port = p } }
            server.listen(.tcp(host: "127.0.0.1", port: 0))
            run(loop, until: "the server listening") { port != 0 }
            server.close { _ in closed = true }
        }
        run(loop, until: "the close") { closed }
        #expect(!loop.isAlive)
        #expect(connectTo(port) == -1)
    }

    @Test("a connection dropped without close() is closed: the client sees the end of the stream")
    func droppedConnectionCloses() throws {
        let loop = EventLoop()
        let server = Server(loop: loop)
        var port = 0
        var connections = 0
        server.onConnection = { _ in connections += 1 }  // dropped at once
        server.onListening = { if case .inet(_, _, let p)? = server.address() { port = p } }
        server.listen(.tcp(host: "127.0.0.1", port: 0))
        run(loop, until: "the server listening") { port != 0 }
        let fd = connectTo(port)
        try #require(fd >= 0)
        defer { close(fd) }
        run(loop, until: "the connection") { connections == 1 }
        #expect(endOfStream(fd, loop: loop))
        #expect(server.connectionCount == 0)
        var closed = false
        server.close { _ in closed = true }
        run(loop, until: "the close") { closed }
    }

    @Test("a datagram socket dropped while bound keeps receiving until closed")
    func droppedDatagramSocketReceives() throws {
        let loop = EventLoop()
        var received: [String] = []
        var port = 0
        do {
            let socket = DatagramSocket(loop: loop, family: .udp4)
            socket.onMessage = { bytes, _ in received.append(String(decoding: bytes, as: UTF8.self)) }
            socket.onListening = { if case .inet(_, _, let p)? = socket.address() { port = p } }
            socket.bind(host: "127.0.0.1", port: 0)
        }
        run(loop, until: "the dropped socket bound") { port != 0 }
        #expect(loop.isAlive)
        let client = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(client) }
        let sent = SocketAddress(host: "127.0.0.1", port: port)!.withSockaddr { a, l in
            "hello".withCString { sendto(client, $0, 5, 0, a, l) }
        }
        #expect(sent == 5)
        run(loop, until: "the datagram") { received == ["hello"] }
    }

    @Test("a channel dropped without close() closes its descriptor: the peer sees the hang-up")
    func droppedChannelCloses() {
        let loop = EventLoop()
        let (a, b) = seqpacketPair()
        defer { close(b) }
        var channel: Channel? = Channel(fd: a, loop: loop)
        #expect(channel?.isOpen == true)
        channel = nil
        #expect(endOfStream(b, loop: loop))
        #expect(!loop.isAlive, "a dropped channel still keeps the loop alive")
    }

    @Test("watchers outliving every other reference to their loop can still be cancelled")
    func watcherOutlivesLoop() throws {
        let (a, b) = seqpacketPair()
        defer { close(a); close(b) }
        var watcher: Watcher?
        do {
            let loop = EventLoop()
            watcher = try loop.watch(a) {}
        }
        watcher?.cancel()
        watcher = nil
    }

    @Test("a primary and a worker nobody holds: the worker is disconnected and reported until its exit")
    func unheldWorkerReportedUntilExit() throws {
        let loop = EventLoop()
        var events: [String] = []
        do {
            let primary = Primary(loop: loop, environment: [:])
            // The worker reads one message from its channel (the primary's disconnect request), then exits 7.
            primary.setupPrimary(SettingsUpdate(exec: "/usr/bin/env", args: ["python3", "-c", "import os; os.read(3, 65536); os._exit(7)"]))
            primary.on { event in
                switch event {
                case .disconnect(let w): events.append("disconnect \(w.id)")
                case .exit(let w, let code, _): events.append("exit \(w.id) \(code.map(String.init) ?? "-")")
                default: break
                }
            }
            let id = try primary.fork().id
            primary.workers[id]?.disconnect()
        }
        run(loop, until: "the exit of the worker nobody holds") { events.contains("exit 1 7") }
        #expect(events == ["disconnect 1", "exit 1 7"])
    }
}
