import ClusterJSON
import Foundation
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// The IPC channel on a real SOCK_SEQPACKET socketpair: framing, order, long messages, descriptor
/// passing, back-pressure, bad input and errors.
@Suite("IPC channel")
struct ChannelTests {
    /// A socketpair with a channel on each end, on one loop.
    func pair(_ loop: EventLoop) -> (Channel, Channel) {
        let (x, y) = seqpacketPair()
        return (Channel(fd: x, loop: loop), Channel(fd: y, loop: loop))
    }

    @Test("messages arrive whole, in order, with their kind")
    func order() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var received: [(Channel.Kind, JSONValue)] = []
        b.onFrame = { kind, value, fds in
            #expect(fds.isEmpty)
            received.append((kind, value))
        }
        for i in 0..<200 {
            a.send(i % 3 == 0 ? .control : .user, .object(JSONObject([("n", .number(Double(i))), ("pad", .string(String(repeating: "x", count: i * 10)))])))
        }
        run(loop, until: "200 messages") { received.count == 200 }
        #expect(received.map { $0.1["n"]?.intValue } == (0..<200).map { Optional($0) })
        #expect(received.map(\.0) == (0..<200).map { $0 % 3 == 0 ? .control : .user })
        a.close()
        b.close()
    }

    @Test("long messages arrive intact both ways, in order with short ones", arguments: [1, 4, 8])
    func longMessages(mebibytes: Int) {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        let big = payload(bytes: mebibytes << 20, seed: mebibytes)
        let sent: [JSONValue] = ["before", .string(big), .object(JSONObject([("nested", .array([.string(big), 1]))])), "after"]
        var atB: [JSONValue] = []
        var atA: [JSONValue] = []
        b.onFrame = { _, value, _ in atB.append(value) }
        a.onFrame = { _, value, _ in atA.append(value) }
        for m in sent {
            #expect(throws: Never.self) { try a.send(.user, m).get() }
            #expect(throws: Never.self) { try b.send(.user, m).get() }
        }
        run(loop, until: "the messages of \(mebibytes) MiB", within: .seconds(120)) { atA.count == sent.count && atB.count == sent.count }
        #expect(atB == sent)
        #expect(atA == sent)
        a.close()
        b.close()
    }

    @Test("a short message is one packet; a long one is split into packets of at most maxPacket bytes")
    func packets() {
        let loop = EventLoop()
        let (a, bFD) = { () -> (Channel, Int32) in
            let (x, y) = seqpacketPair()
            return (Channel(fd: x, loop: loop), y)
        }()
        defer { close(bFD) }
        a.send(.user, "short")
        a.send(.user, .string(String(repeating: "q", count: 3 * Channel.maxPacket)))
        var sizes: [Int] = []
        var first: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4 * Channel.maxPacket)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(bFD, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            if sizes.isEmpty { first = Array(buffer[0..<n]) }
            sizes.append(n)
        }
        #expect(first == Array("U\"short\"".utf8))
        #expect(sizes.count == 5)  // the short one, then 3 × 64 Ki + quotes + headers in 4 packets
        #expect(sizes.allSatisfy { $0 <= Channel.maxPacket })
        a.close()
    }

    @Test("many messages of mixed sizes keep their order")
    func many() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        let count = 600
        var received: [Int] = []
        b.onFrame = { _, value, _ in received.append(value["n"]?.intValue ?? -1) }
        for i in 0..<count {
            // Every 50th message is long (split into packets), the rest short.
            let pad = i % 50 == 0 ? 300_000 : i % 7
            a.send(.user, .object(JSONObject([("n", .number(Double(i))), ("pad", .string(String(repeating: "p", count: pad)))])))
        }
        run(loop, until: "\(count) messages", within: .seconds(60)) { received.count == count }
        #expect(received == Array(0..<count))
        a.close()
        b.close()
    }

    @Test("a reader that does not read for a while loses nothing: the sender queues, then flushes in order")
    func slowReader() {
        let (x, y) = seqpacketPair()
        let senderLoop = EventLoop()
        let a = Channel(fd: x, loop: senderLoop)
        let count = 500
        // The reader's loop is not running yet: its socket buffer fills and the sender must queue.
        for i in 0..<count {
            let result = a.send(.user, .object(JSONObject([("n", .number(Double(i))), ("pad", .string(String(repeating: "s", count: 8000)))])))
            #expect((try? result.get()) != nil)
        }
        #expect(a.queuedPackets > 0, "the socket never filled: the test does not exercise queueing")
        let senderDone = Shared(false)
        let finished = DispatchSemaphore(value: 0)
        let box = LoopBound(value: a, loop: senderLoop)
        let sender = Thread {
            // The sender's loop flushes as the reader reads, and ends when the reader closes.
            box.value.onClose = { senderDone.set(true) }
            box.loop.run(until: { senderDone.get() }, deadline: .now + .seconds(60))
            finished.signal()
        }
        sender.start()
        let readerLoop = EventLoop()
        let b = Channel(fd: y, loop: readerLoop)
        var received: [Int] = []
        b.onFrame = { _, value, _ in received.append(value["n"]?.intValue ?? -1) }
        run(readerLoop, until: "\(count) messages from a queueing sender", within: .seconds(60)) { received.count == count }
        #expect(received == Array(0..<count))
        b.close()
        #expect(finished.wait(timeout: .now() + 70) == .success, "the sender's loop did not end")
        #expect(senderDone.get(), "the sender did not see the reader close")
    }

    @Test("a descriptor sent with a message arrives as a working descriptor, also with a long message", arguments: [10, 1 << 20])
    func descriptorPassing(size: Int) throws {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var p: [Int32] = [-1, -1]
        #expect(pipe(&p) == 0)
        var got: [Int32] = []
        var value: JSONValue?
        b.onFrame = { _, v, fds in
            value = v
            got = fds
        }
        let message = JSONValue.object(JSONObject([("act", "take"), ("pad", .string(String(repeating: "d", count: size)))]))
        a.send(.control, message, fds: [p[1]])
        close(p[1])  // the channel sent (or queued) its own copy
        run(loop, until: "the message with a descriptor") { value != nil }
        #expect(value == message)
        #expect(got.count == 1)
        let fd = try #require(got.first)
        #expect(write(fd, "hi", 2) == 2)
        close(fd)
        var buf = [UInt8](repeating: 0, count: 2)
        #expect(read(p[0], &buf, 2) == 2)
        #expect(buf == Array("hi".utf8))
        close(p[0])
        a.close()
        b.close()
    }

    @Test("a hand-off carries its ticket, key and connection; its answer carries the ticket and the verdict")
    func handoffFrames() throws {
        let loop = EventLoop()
        let (primary, worker) = pair(loop)
        let (mine, theirs) = seqpacketPair()
        defer { close(mine) }
        var got: (UInt32, String, Int32)?
        var answers: [(UInt32, Bool)] = []
        worker.onHandoff = { got = ($0, $1, $2) }
        primary.onHandoffAnswer = { answers.append(($0, $1)) }
        #expect(throws: Never.self) { try primary.sendHandoff(ticket: 4_000_000_001, key: "127.0.0.1:0:4:-1:0", connection: theirs).get() }
        close(theirs)
        run(loop, until: "the hand-off") { got != nil }
        let (ticket, key, fd) = try #require(got)
        #expect(ticket == 4_000_000_001 && key == "127.0.0.1:0:4:-1:0")
        #expect(write(fd, "x", 1) == 1, "the handed-off descriptor does not work")
        var byte: UInt8 = 0
        #expect(read(mine, &byte, 1) == 1 && byte == UInt8(ascii: "x"))
        close(fd)
        worker.sendHandoffAnswer(ticket: ticket, accepted: true)
        worker.sendHandoffAnswer(ticket: 7, accepted: false)
        run(loop, until: "the answers") { answers.count == 2 }
        #expect(answers.map(\.0) == [4_000_000_001, 7] && answers.map(\.1) == [true, false])
        primary.close()
        worker.close()
    }

    /// A long-message header announcing `length` bytes of a user message.
    static func header(_ length: UInt64) -> [UInt8] {
        var h: [UInt8] = [0x4C, 0x55]
        withUnsafeBytes(of: length.bigEndian) { h.append(contentsOf: $0) }
        return h
    }

    @Test("a peer that breaks the framing is a protocol error: 'error', then the channel closes",
          arguments: [
              ("a continuation without a start", [Array("+abc".utf8)], "EPROTO"),
              ("a message inside a long one", [ChannelTests.header(100) + Array("\"ab".utf8), Array("U1".utf8)], "EPROTO"),
              ("a long message longer than announced", [ChannelTests.header(3) + Array("\"ab".utf8), Array("+cd\"".utf8)], "EPROTO"),
              ("more than the limit", [ChannelTests.header(UInt64(Channel.messageLimit) + 1)], "EMSGSIZE"),
              ("a truncated header", [[0x4C, 0x55, 0]], "EPROTO"),
              ("an unknown tag", [Array("X{}".utf8)], "EPROTO"),
              ("JSON that does not parse", [Array("I{not json".utf8)], "EPROTO"),
              ("a truncated long message's JSON", [ChannelTests.header(3) + Array("{\"a".utf8)], "EPROTO"),
              ("an empty packet", [[]], "EPROTO"),
              ("a truncated hand-off", [[0x48, 0, 0]], "EPROTO"),
              ("a hand-off without its descriptor", [[0x48, 0, 0, 0, 1, 0x6B]], "EPROTO"),
              ("a malformed hand-off answer", [[0x41, 0, 0, 0, 1, 7]], "EPROTO"),
          ])
    func protocolErrors(_ name: String, _ packets: [[UInt8]], _ code: String) {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var errors: [ClusterError] = []
        var closed = false
        b.onError = { errors.append($0) }
        b.onClose = { closed = true }
        b.onFrame = { _, value, _ in Issue.record("\(name): unexpected message \(value.jsonText)") }
        for packet in packets {
            #expect(packet.withUnsafeBytes { send(a.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == packet.count)
        }
        run(loop, until: "the close after \(name)") { closed }
        #expect(errors.map(\.code) == [code], "\(name)")
        #expect(!b.isOpen)
        a.close()
    }

    @Test("a message over the limit is refused with EMSGSIZE before anything is sent")
    func sendLimit() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        a.maxMessage = 1000
        var values: [JSONValue] = []
        b.onFrame = { _, v, _ in values.append(v) }
        if case .failure(let e) = a.send(.user, .string(String(repeating: "y", count: 1000))) {
            #expect(e.code == "EMSGSIZE")
        } else {
            Issue.record("an oversized message was accepted")
        }
        a.send(.user, .string(String(repeating: "y", count: 998)))  // 1000 bytes of JSON text
        run(loop, until: "the message at the limit") { values.count == 1 }
        a.close()
        b.close()
    }

    @Test("a send on a closed or closing channel fails with ERR_IPC_CHANNEL_CLOSED")
    func closed() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        b.disconnect()
        if case .failure(let e) = b.send(.user, "late") { #expect(e.code == "ERR_IPC_CHANNEL_CLOSED") } else { Issue.record("a send on a closing channel succeeded") }
        a.close()
        if case .failure(let e) = a.send(.user, "late") { #expect(e.code == "ERR_IPC_CHANNEL_CLOSED") } else { Issue.record("a send on a closed channel succeeded") }
    }

    @Test("a send to a peer that is gone reports EPIPE")
    func peerGone() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        b.close()
        if case .failure(let e) = a.send(.user, "nobody") { #expect(e.code == "EPIPE") } else { Issue.record("a send to a closed peer succeeded") }
        a.close()
    }

    @Test("messages still queued when the peer hangs up are reported, not dropped in silence")
    func queuedAtHangUp() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        while a.queuedPackets == 0 {
            a.send(.user, .string(String(repeating: "f", count: 50_000)))
        }
        var errors: [ClusterError] = []
        var closed = false
        a.onError = { errors.append($0) }
        a.onClose = { closed = true }
        b.onFrame = { _, _, _ in }
        b.close()
        run(loop, until: "the sender's close") { closed }
        #expect(errors.map(\.code) == ["EPIPE"])
        #expect(a.queuedPackets == 0)
    }

    @Test("the peer closing is seen as the end of the channel")
    func peerClose() {
        let loop = EventLoop()
        let (a, b) = pair(loop)
        var closed = false
        b.onClose = { closed = true }
        a.close()
        run(loop, until: "the close") { closed }
        #expect(!b.isOpen)
    }
}
