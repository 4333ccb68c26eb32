import ClusterJSON
import Foundation
import Testing
@testable import Cluster

/// Event streams are bounded, count what the bound drops, and finish when their source ends.
@Suite("Async event streams", .serialized)
struct AsyncStreamTests {
    @Test("beyond the bound, dropNewest keeps the oldest and dropOldest the latest; dropped counts the rest; finish ends after the buffer")
    func bound() async {
        for (overflow, kept) in [(BufferPolicy.Overflow.dropNewest, [0, 1, 2]), (.dropOldest, [7, 8, 9])] {
            let (stream, sink) = EventStream<Int>.make(BufferPolicy(limit: 3, overflow: overflow))
            for i in 0..<10 { sink.yield(i) }
            sink.finish()
            var got: [Int] = []
            for await i in stream { got.append(i) }
            #expect(got == kept, "\(overflow)")
            #expect(stream.dropped == 7, "\(overflow)")
        }
        #expect(BufferPolicy(limit: 0).limit == 1)
    }

    @Test("a worker handle's events, the primary's events and a worker's messages drop beyond their bounds, count it, and finish")
    func processStreams() throws {
        let probe = try ProbeRun("streams")
        // The worker's messages: two kept, dropping the oldest; finished by its disconnect.
        let messages = probe.event("messages")
        #expect(messages?["values"] == .array([8, 9]))
        #expect(messages?["dropped"] == 8)
        #expect(probe.event("exit")?["code"] == 0)
        // The handle's stream: three kept (online and two messages) of 13; finished at the worker's end.
        let worker = probe.event("worker-events")
        #expect(worker?["kinds"] == .array(["online", 100, 101]))
        #expect(worker?["dropped"] == 10)
        // The primary's: four kept of 15; finished by shutdown().
        let primary = probe.event("primary-events")
        #expect(primary?["kinds"] == .array(["setup", "fork", "online", 100]))
        #expect(primary?["dropped"] == 11)
        #expect(probe.exit()?.code == 0)
    }
}
