import ClusterJSON
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `AsyncConnection` in a real worker: writes larger than the socket buffer to a reader that takes its
/// time, concurrent writes on one connection, and a loop that keeps serving meanwhile.
@Suite("Async connections", .serialized)
struct AsyncConnectionTests {
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
}
