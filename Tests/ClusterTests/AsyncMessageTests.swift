import ClusterJSON
import Foundation
import Testing

/// Handles sent with messages reach async code both ways: `AsyncWorker.messages` and a worker handle's
/// events deliver `Message(value, handle)`.
@Suite("Async messages with handles", .serialized)
struct AsyncMessageTests {
    @Test("a socket sent with a message reaches the worker's messages, and one sent back reaches the primary; each side serves it")
    func handlesBothWays() throws {
        let probe = try ProbeRun("handles")
        #expect(probe.event("sent")?["returned"] == true)
        let received = probe.event("message") { $0["at"] == "worker" }
        #expect(received?["value"] == "take")
        #expect(received?["kind"] == "connection", "the handle was dropped")
        #expect(probe.event("primary-read")?["text"] == "hello primary")
        #expect(probe.event("message") { $0["at"] == "primary" }?["kind"] == "connection")
        #expect(probe.event("worker-read")?["text"] == "hello worker")
        #expect(probe.exit()?.code == 0)
    }
}
