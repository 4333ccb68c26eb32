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

    @Test("a server dropped while listening stops listening: its port is free again")
    func dropped() throws {
        let loop = EventLoop()
        var server: Server? = Server(loop: loop)
        var listening = false
        server?.onListening = { listening = true }
        server?.listen(.tcp(host: "127.0.0.1", port: 0))
        run(loop, until: "the server listening") { listening }
        guard case .inet(_, _, let port)? = server?.address() else { Issue.record("no address"); return }
        server = nil
        #expect(!loop.isAlive)
        // Nobody listens on the port any more.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(fd) }
        let rc = SocketAddress(host: "127.0.0.1", port: port)!.withSockaddr { connect(fd, $0, $1) }
        #expect(rc == -1 && errno == ECONNREFUSED)
    }
}
