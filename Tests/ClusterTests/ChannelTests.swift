import ClusterJSON
import Foundation
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// The IPC channel on a real SOCK_SEQPACKET socketpair: framing, order, descriptor passing, bad input.
@Suite("IPC channel")
struct ChannelTests {
    /// A socketpair with a channel on each end, on one loop.
    func pair(_ loop: EventLoop) -> (Channel, Channel) {
        var fds: [Int32] = [-1, -1]
        precondition(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        return (Channel(fd: fds[0], loop: loop), Channel(fd: fds[1], loop: loop))
    }

    @Test("frames arrive whole, in order, with their kind")
    func order() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var received: [(Channel.Kind, JSONValue)] = []
        b.onFrame = { kind, value, fds in
            #expect(fds.isEmpty)
            received.append((kind, value))
            if received.count == 200 { a.close() }
        }
        b.onClose = { b.close() }
        for i in 0..<200 {
            a.send(i % 3 == 0 ? .control : .user, .object(JSONObject([("n", .number(Double(i))), ("pad", .string(String(repeating: "x", count: i * 10)))])))
        }
        loop.run()
        #expect(received.map { $0.1["n"]?.intValue } == (0..<200).map { Optional($0) })
        #expect(received.map(\.0) == (0..<200).map { $0 % 3 == 0 ? .control : .user })
    }

    @Test("a descriptor sent with a frame arrives as a working descriptor")
    func descriptorPassing() throws {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var p: [Int32] = [-1, -1]
        #expect(pipe(&p) == 0)
        var got: Int32 = -1
        b.onFrame = { _, value, fds in
            #expect(value["act"] == .string("take"))
            #expect(fds.count == 1)
            got = fds.first ?? -1
            a.close()
        }
        b.onClose = { b.close() }
        a.send(.control, .object(JSONObject([("act", "take")])), fds: [p[1]])
        close(p[1])  // the channel sent its own duplicate
        loop.run()
        #expect(got >= 0)
        #expect(write(got, "hi", 2) == 2)
        close(got)
        var buf = [UInt8](repeating: 0, count: 2)
        #expect(read(p[0], &buf, 2) == 2)
        #expect(buf == Array("hi".utf8))
        close(p[0])
    }

    @Test("malformed frames are dropped (their descriptors closed) and later frames still arrive")
    func malformed() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var values: [JSONValue] = []
        b.onFrame = { _, value, _ in
            values.append(value)
            a.close()
        }
        b.onClose = { b.close() }
        // Raw packets that are not frames: an unknown tag, bad JSON, an empty packet.
        for raw in ["X{}", "I{not json", ""] {
            _ = raw.withCString { send(a.fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
        a.send(.user, "after")
        loop.run()
        #expect(values == ["after"])
        #expect(b.malformedFrames == 3)
    }

    @Test("a message larger than a frame is refused with EMSGSIZE, and a closed channel with ERR_IPC_CHANNEL_CLOSED")
    func limits() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        if case .failure(let e) = a.send(.user, .string(String(repeating: "y", count: Channel.maxFrame))) {
            #expect(e.code == "EMSGSIZE")
        } else {
            Issue.record("an oversized frame was accepted")
        }
        a.close()
        if case .failure(let e) = a.send(.user, "late") {
            #expect(e.code == "ERR_IPC_CHANNEL_CLOSED")
        } else {
            Issue.record("a send on a closed channel succeeded")
        }
        b.close()
    }

    @Test("the peer closing is seen as the end of the channel")
    func peerClose() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var closed = false
        b.onClose = { closed = true }
        a.close()
        loop.run()
        #expect(closed)
        #expect(!b.isOpen)
    }
}
