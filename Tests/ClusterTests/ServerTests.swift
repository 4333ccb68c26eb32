import Foundation
import SystemSupport
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// Servers in one process: what keeps the loop alive.
@Suite("Servers")
struct ServerTests {
    @Test("a listening server keeps the loop alive unless unref'd, also when unref'd before listen (Node RR-08)")
    func refUnref() {
        let loop = EventLoop()
        let server = Server(loop: loop)
        server.unref()
        var listening = false
        server.onListening = { listening = true }
        server.listen(.tcp(host: "127.0.0.1", port: 0))
        run(loop, until: "the server listening") { listening }
        #expect(!loop.isAlive, "an unref'd server kept the loop alive")
        server.ref()
        #expect(loop.isAlive)
        server.unref()
        #expect(!loop.isAlive)
        server.ref()
        var closed = false
        server.close { _ in closed = true }
        run(loop, until: "the close") { closed }
        #expect(!loop.isAlive, "a closed server kept the loop alive")
    }

    @Test("a listening socket handed off is accepted on by its new owner; the server accepts nothing but keeps the loop until closed")
    func handOffListeningSocket() throws {
        let loop = EventLoop()
        let server = Server(loop: loop)
        var port = 0
        var connections = 0
        server.onConnection = { connections += 1; $0.close() }
        server.onListening = { if case .inet(_, _, let p)? = server.address() { port = p } }
        server.listen(.tcp(host: "127.0.0.1", port: 0))
        run(loop, until: "the server listening") { port != 0 }
        let socket = try #require(try server.handOffListeningSocket())
        defer { close(socket) }
        #expect(try server.handOffListeningSocket() == nil, "a socket was handed off twice")
        #expect(loop.isAlive)

        let client = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(client) }
        #expect(SocketAddress(host: "127.0.0.1", port: port)!.withSockaddr { connect(client, $0, $1) } == 0)
        // The new owner accepts; the server's loop turns meanwhile and must not take the connection.
        _ = loop.run(until: { false }, deadline: .now + .milliseconds(50))
        #expect(waitReadable(socket, until: .now + .seconds(5)))
        let accepted = accept(socket, nil, nil)
        #expect(accepted >= 0)
        if accepted >= 0 { close(accepted) }
        #expect(connections == 0)

        var closed = false
        server.close { _ in closed = true }
        run(loop, until: "the close") { closed }
        run(loop, until: "the loop having nothing left") { !loop.isAlive }
    }
}

/// Options of a listen or bind in one process.
@Suite("Listen options")
struct ListenOptionTests {
    @Test("listen({path, readableAll, writableAll}) opens the socket file to everyone", arguments: [(false, false), (true, false), (true, true)])
    func pipeModes(_ readable: Bool, _ writable: Bool) throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let loop = EventLoop()
        let server = Server(loop: loop)
        var listening = false
        server.onListening = { listening = true }
        server.listen(.unix(path: dir + "/s.sock", readableAll: readable, writableAll: writable))
        run(loop, until: "the server listening") { listening }
        var st = stat()
        #expect(stat(dir + "/s.sock", &st) == 0)
        // Whatever the umask left, the requested bits are set for everyone.
        let bits: mode_t = (readable ? 0o444 : 0) | (writable ? 0o222 : 0)
        #expect(st.st_mode & bits == bits)
        var closed = false
        server.close { _ in closed = true }
        run(loop, until: "the close") { closed }
    }

    @Test("bind({fd}) outside a cluster takes over this process's own UDP socket; a non-UDP descriptor throws ERR_INVALID_FD_TYPE")
    func udpDescriptor() throws {
        let loop = EventLoop()
        let fd = try Sockets.bound(udp: true, host: "127.0.0.1", port: 0).get()
        let socket = DatagramSocket(loop: loop, family: .udp4)
        var listening = false
        socket.onListening = { listening = true }
        try socket.bind(fd: fd)
        run(loop, until: "the socket listening") { listening }
        guard case .inet(_, _, let port)? = socket.address() else { Issue.record("no address"); return }
        #expect(port == SocketAddress.local(of: fd)?.port)
        socket.close()

        var p: [Int32] = [-1, -1]
        #expect(pipe(&p) == 0)
        defer { close(p[0]); close(p[1]) }
        let other = DatagramSocket(loop: loop, family: .udp4)
        #expect(throws: ClusterError.self) { try other.bind(fd: p[0]) }
        do {
            try other.bind(fd: p[0])
        } catch {
            #expect(error.code == "ERR_INVALID_FD_TYPE")
        }
    }
}
