import ClusterJSON
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Lifetimes in the async layer: workers that leave, objects dropped early.
@Suite("Async lifetimes", .serialized)
struct AsyncLifetimeTests {
    @Test("a worker disconnected with AsyncPrimary.disconnect(worker:) leaves, and the primary goes on (forks another)")
    func disconnectWorker() throws {
        let probe = try ProbeRun("disconnect-worker")
        probe.event("exit") { $0["worker"] == 1 }
        probe.event("done")
        #expect(probe.exit()?.code == 0, "\(probe.transcript)")
    }
}
