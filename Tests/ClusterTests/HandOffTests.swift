import Foundation
import Synchronization
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// `Connection.handOff()` on a real listening server and real client sockets: a connection given to other
/// code still counts for the server (close waits for it, maxConnections counts it, the loop stays alive)
/// until it is released, from another thread.
@Suite("Handing a connection to other code")
struct HandOffTests {
    /// A server listening on 127.0.0.1, port 0, whose loop runs on a thread of its own.
    final class Running: @unchecked Sendable {
        let loop = EventLoop()
        let server: Server
        let port: Int
        let handedOff = Mutex<[HandedOffConnection]>([])
        /// Connections that `handOff()` refused (nil) the first time, or gave away twice.
        let handOffMistakes = Mutex(0)
        let arrived = DispatchSemaphore(value: 0)
        let loopEnded = DispatchSemaphore(value: 0)

        init(maxConnections: Int? = nil) throws {
            server = Server(loop: loop)
            server.maxConnections = maxConnections
            server.listen(.tcp(host: "127.0.0.1", port: 0))
            guard case .inet(_, _, let p)? = server.address() else { throw SystemFailure("the server is not listening") }
            port = p
            server.onConnection = { [unowned self] connection in
                // Expectations are recorded on the test's thread, not here on the loop's.
                let h = connection.handOff()
                if h == nil || connection.handOff() != nil { handOffMistakes.withLock { $0 += 1 } }
                if let h { handedOff.withLock { $0.append(h) } }
                arrived.signal()
            }
            let box = LoopBound(value: self, loop: loop)
            Thread.detachNewThread {
                box.loop.run()
                box.value.loopEnded.signal()
            }
        }

        /// Runs `body` on the loop and returns its result (a later turn than anything already queued).
        func onLoop<T: Sendable>(_ body: @escaping @Sendable (Running) -> T) throws -> T {
            let result = Mutex<T?>(nil)
            let done = DispatchSemaphore(value: 0)
            loop.submit { [self] in
                result.withLock { $0 = body(self) }
                done.signal()
            }
            guard done.wait(timeout: .now() + 5) == .success else { throw SystemFailure("the loop did not answer in 5 s") }
            return result.withLock { $0! }
        }
    }

    struct SystemFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// A connected client socket whose reads give up after 5 s.
    func client(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemFailure("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        guard setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
            throw SystemFailure("SO_RCVTIMEO: errno \(errno)")
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw SystemFailure("connect: errno \(errno)") }
        return fd
    }

    @Test("server.close() waits for a handed-off connection until it is released; then the loop ends")
    func closeWaits() throws {
        let r = try Running()
        let c = try client(r.port)
        defer { close(c) }
        #expect(r.arrived.wait(timeout: .now() + 5) == .success)
        let closed = Mutex(false)
        let closeError = Mutex<ClusterError?>(nil)
        let count = try r.onLoop { r in
            r.server.close { error in
                closeError.withLock { $0 = error }
                closed.withLock { $0 = true }
            }
            return r.server.connectionCount
        }
        #expect(count == 1)
        // A later turn of the loop: 'close' would have run by now if the server did not wait.
        #expect(try r.onLoop { _ in closed.withLock { $0 } } == false)
        #expect(r.loopEnded.wait(timeout: .now()) == .timedOut, "the loop ended under a handed-off connection")

        // The new owner closes the descriptor and releases, from this thread (as NIO would from its own).
        let handedOff = r.handedOff.withLock { $0 }
        #expect(handedOff.count == 1)
        for h in handedOff {
            #expect(close(h.fd) == 0)
            h.release()
            h.release()  // only the first call counts
        }
        #expect(r.loopEnded.wait(timeout: .now() + 5) == .success, "the loop did not end after the release")
        #expect(closed.withLock { $0 })
        #expect(closeError.withLock { $0 } == nil)
        #expect(r.server.connectionCount == 0)
        #expect(r.handOffMistakes.withLock { $0 } == 0)
        // The client sees the end of the connection the new owner closed.
        var byte: UInt8 = 0
        #expect(read(c, &byte, 1) == 0)
    }

    @Test("a handed-off connection whose every copy is dropped without release() is released then")
    func droppedHandOffReleases() throws {
        let r = try Running()
        let c = try client(r.port)
        defer { close(c) }
        #expect(r.arrived.wait(timeout: .now() + 5) == .success)
        let closed = Mutex(false)
        try r.onLoop { r in r.server.close { _ in closed.withLock { $0 = true } } }
        // The new owner closes the descriptor and forgets the value without calling release().
        let dropped = r.handedOff.withLock { handedOff in
            defer { handedOff.removeAll() }
            return handedOff.map(\.fd)
        }
        #expect(dropped.count == 1)
        dropped.forEach { close($0) }
        #expect(r.loopEnded.wait(timeout: .now() + 5) == .success, "the server still waits for a connection nobody can release")
        #expect(closed.withLock { $0 })
    }

    @Test("maxConnections counts a handed-off connection until it is released")
    func maxConnections() throws {
        let r = try Running(maxConnections: 1)
        let first = try client(r.port)
        defer { close(first) }
        #expect(r.arrived.wait(timeout: .now() + 5) == .success)
        // Over the limit: the server drops the second connection; its client reads the end.
        let second = try client(r.port)
        defer { close(second) }
        var byte: UInt8 = 0
        #expect(read(second, &byte, 1) == 0)
        #expect(try r.onLoop { $0.server.connectionCount } == 1)

        for h in r.handedOff.withLock({ $0 }) {
            close(h.fd)
            h.release()
        }
        // The release reaches the loop before this later turn does (work submitted runs in order).
        #expect(try r.onLoop { $0.server.connectionCount } == 0)
        // Released: room for another connection, which is handed off in turn.
        let third = try client(r.port)
        defer { close(third) }
        #expect(r.arrived.wait(timeout: .now() + 5) == .success)
        #expect(r.handedOff.withLock { $0.count } == 2)
        #expect(try r.onLoop { $0.server.connectionCount } == 1)

        _ = try r.onLoop { r in r.server.close() }
        for h in r.handedOff.withLock({ $0.dropFirst() }) {
            close(h.fd)
            h.release()
        }
        #expect(r.loopEnded.wait(timeout: .now() + 5) == .success)
        #expect(r.handOffMistakes.withLock { $0 } == 0)
    }
}
