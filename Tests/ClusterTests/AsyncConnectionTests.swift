import ClusterJSON
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `AsyncConnection` in a real worker (the probe's scenarios): writes larger than the socket buffer to a
/// reader that takes its time, concurrent writes on one connection, a loop that keeps serving meanwhile,
/// write errors, cancelled reads, writes and closes, and the bounded stream of connections.
@Suite("Async connections", .serialized)
struct AsyncConnectionTests {
    /// How long a cancelled call may take to return: it must return, where before it never did.
    static let prompt = 3000

    @Test("8 MiB written in four concurrent writes to a slow reader arrive whole, in order, each write contiguous; the loop keeps serving meanwhile")
    func slowReader() throws {
        let probe = try ProbeRun("slow-reader")
        let port = try #require(probe.event("listening")?["port"]?.intValue)
        let client = try connectLoopback(port)
        defer { close(client) }
        // Nothing is read yet: the writes fill the socket buffers and wait. The worker's loop must still
        // answer (its message to the primary goes out) before the reader reads anything.
        probe.event("tick", within: .seconds(5)) { $0["at"] == "worker" }
        let chunkBytes = 2 << 20
        let got = readSlowly(client, count: 4 * chunkBytes, piece: 65536, pause: .microseconds(200), within: .seconds(60))
        #expect(got.count == 4 * chunkBytes)
        switch chunkOrder(got, chunkBytes: chunkBytes) {
        case .success(let order): #expect(order.sorted() == [0, 1, 2, 3], "chunks \(order)")
        case .failure(let f): Issue.record("\(f)")
        }
        let written = probe.events("written", count: 4)
        #expect(written.count == 4)
        #expect(!probe.lines.contains { $0["ev"] == "write-error" }, "\(probe.transcript)")
    }

    @Test("a write to a reset connection fails with EPIPE or ECONNRESET (errno and syscall); the connection is then gone")
    func writeErrors() throws {
        let probe = try ProbeRun("write-errors")
        let port = try #require(probe.event("listening")?["port"]?.intValue)
        let client = try connectLoopback(port)
        // Closing with a zero linger time resets the connection.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(client)
        let failed = try #require(probe.event("write-error"))
        let code = try #require(failed["code"]?.stringValue)
        #expect(["EPIPE", "ECONNRESET"].contains(code), "\(probe.transcript)")
        #expect(failed["errno"]?.intValue == Int(code == "EPIPE" ? EPIPE : ECONNRESET))
        #expect(failed["syscall"] == "write")
        #expect(probe.event("write-again")?["code"] == "ERR_STREAM_DESTROYED")
        #expect(probe.event("read-after")?["bytes"] == 0, "a closed connection reads as ended")
    }

    @Test("cancelled: a read takes no data; a queued write is withdrawn; a partly sent write closes the connection; close() returns and closes at once; detach() sends the queued writes first")
    func cancelledReadsWritesAndClose() throws {
        let probe = try ProbeRun("cancel-io")
        let port = try #require(probe.event("listening")?["port"]?.intValue)

        // 1: the cancelled read returns ABORT_ERR and leaves the data that comes later to the next read.
        let one = try connectLoopback(port)
        defer { close(one) }
        let read = probe.event("read-cancelled")
        #expect(read?["code"] == "ABORT_ERR")
        #expect((read?["ms"]?.intValue ?? .max) < Self.prompt)
        probe.event("ready-for-data")
        #expect(send(one, "abc", 3, Int32(MSG_NOSIGNAL)) == 3)
        #expect(probe.event("read")?["text"] == "abc")

        // 2: nothing is read. The write queued behind the stalled one is withdrawn; cancelling the stalled
        // one, partly sent, closes the connection, and the write behind it fails.
        let two = try connectLoopback(port)
        defer { close(two) }
        #expect(probe.event("queued-write")?["code"] == "ABORT_ERR")
        let partial = probe.event("partial-write")
        #expect(partial?["code"] == "ABORT_ERR")
        #expect((partial?["ms"]?.intValue ?? .max) < Self.prompt)
        #expect(probe.event("behind")?["code"] == "ERR_STREAM_DESTROYED")
        // What was sent is the start of the big write, and nothing else follows before the end.
        let (sent, ended) = readOrEnd(two, count: 16 << 20, within: .seconds(20))
        #expect(ended, "the connection was not closed")
        #expect(sent.count > 0 && sent.count < 8 << 20, "\(sent.count) bytes")
        #expect(isPatternPrefix(sent, chunk: 1), "not the start of the big write")

        // 3: close() waits for the stalled write; cancelled, it returns and the connection closes.
        let three = try connectLoopback(port)
        defer { close(three) }
        let closed = probe.event("close")
        #expect(closed?["code"] == "ok")
        #expect((closed?["ms"]?.intValue ?? .max) < Self.prompt)
        #expect(probe.event("stalled-write")?["code"] == "ERR_STREAM_DESTROYED")
        let (rest, closedHere) = readOrEnd(three, count: 16 << 20, within: .seconds(20))
        #expect(closedHere, "the connection was not closed")
        #expect(rest.count < 8 << 20 && isPatternPrefix(rest, chunk: 2))

        // 4: detach() first lets the queued write go out whole; what the new owner writes follows it.
        let four = try connectLoopback(port)
        defer { close(four) }
        probe.event("detaching")
        let (all, fourEnded) = readOrEnd(four, count: 16 << 20, within: .seconds(30))
        #expect(fourEnded)
        #expect(all.count == (8 << 20) + 3 && isPatternPrefix(Array(all.prefix(8 << 20)), chunk: 3), "\(all.count) bytes")
        #expect(all.suffix(3) == Array("END".utf8))
        let detached = probe.event("detached")
        #expect(detached?["write"] == "ok" && detached?["fd"] == true && detached?["sent"] == 3)
    }

    @Test("a server's stream of connections is bounded: beyond it a connection is closed and counted in dropped")
    func connectionBuffer() throws {
        let probe = try ProbeRun("connection-buffer")
        let port = try #require(probe.event("listening")?["port"]?.intValue)
        let clients = try (0..<3).map { _ in try connectLoopback(port) }
        defer { clients.forEach { close($0) } }
        #expect(probe.event("dropped")?["count"] == 2)
        // One connection is served (echoed); the two dropped ones were closed.
        var served: [Int32] = []
        for fd in clients {
            _ = send(fd, "hi", 2, Int32(MSG_NOSIGNAL))
            let (got, ended) = readOrEnd(fd, count: 2, within: .seconds(5))
            if got == Array("hi".utf8) { served.append(fd) } else { #expect(got.isEmpty && ended, "a dropped connection is not closed") }
        }
        #expect(served.count == 1, "\(probe.transcript)")
        if let fd = served.first { _ = send(fd, "bye", 3, Int32(MSG_NOSIGNAL)) }
        #expect(probe.event("exit")?["code"] == 0)
        #expect(probe.exit()?.code == 0)
    }
}

/// Whether `bytes` are the start of the probe's `pattern(chunk:bytes:)`.
func isPatternPrefix(_ bytes: [UInt8], chunk: Int) -> Bool {
    for (i, byte) in bytes.enumerated() {
        let word = UInt32(chunk) << 24 | UInt32(i / 4)
        if byte != UInt8(truncatingIfNeeded: word >> (8 * (3 - UInt32(i % 4)))) { return false }
    }
    return true
}
