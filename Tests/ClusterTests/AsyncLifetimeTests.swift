import ClusterJSON
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Lifetimes in the async layer: workers that leave, and every public async object dropped early — as in
/// Node, a listening server serves until closed and a worker runs on; what nobody can reach is closed.
@Suite("Async lifetimes", .serialized)
struct AsyncLifetimeTests {
    @Test("a worker disconnected with AsyncPrimary.disconnect(worker:) leaves, its handle sees it, and the primary goes on (forks another)")
    func disconnectWorker() throws {
        let probe = try ProbeRun("disconnect-worker")
        let events = probe.event("events")?["kinds"]?.arrayValue ?? []
        #expect(events.prefix(3) == ["online", "listening", "message"], "\(probe.transcript)")
        #expect(Set(events.dropFirst(3)) == ["disconnect", "exit"], "\(probe.transcript)")
        #expect(probe.event("exit")?["code"] == 0)
        probe.event("done")
        #expect(probe.exit()?.code == 0, "\(probe.transcript)")
    }

    @Test("dropped early: the AsyncPrimary, a worker handle, a received handle, an AsyncServer (with and without its stream), an AsyncConnection — nothing crashes or leaks")
    func dropEverything() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let probe = try ProbeRun("drop-everything", [dir])
        #expect(probe.event("released")?["objects"] == true, "the AsyncPrimary or the worker handle is still referenced")
        let baseline = try #require(probe.event("ready")?["fds"]?.intValue)
        // A server nobody holds still listens, and closes the connections nobody can take.
        for _ in 0..<2 {
            let fd = try connectUnix(dir + "/dropped.sock")
            #expect(readOrEnd(fd, count: 1, within: .seconds(5)) == ([], true), "a connection nobody holds stays open")
            close(fd)
        }
        // A server whose object was dropped serves on; a connection dropped without close() is closed.
        let dropped = try connectUnix(dir + "/echo.sock")
        _ = send(dropped, "hi", 2, Int32(MSG_NOSIGNAL))
        #expect(readSlowly(dropped, count: 2, within: .seconds(5)) == Array("hi".utf8))
        _ = send(dropped, "drop", 4, Int32(MSG_NOSIGNAL))
        #expect(readOrEnd(dropped, count: 1, within: .seconds(5)) == ([], true), "a dropped connection stays open")
        close(dropped)
        // Nothing leaked in the worker: the dropped handle, servers' connections and the dropped
        // connection are all closed; only the connection asking is open.
        let asking = try connectUnix(dir + "/echo.sock")
        defer { close(asking) }
        _ = send(asking, "fds", 3, Int32(MSG_NOSIGNAL))
        let count = Int(String(decoding: readSlowly(asking, count: 1, within: .seconds(5)) + readSlowly(asking, count: 8, within: .milliseconds(200)), as: UTF8.self))
        #expect(count == baseline + 1, "descriptors: \(count ?? -1), baseline \(baseline)")
        _ = send(asking, "bye", 3, Int32(MSG_NOSIGNAL))
        #expect(probe.event("exit")?["code"] == 0)
        #expect(probe.exit()?.code == 0)
        #expect(!probe.stderr.contains("Fatal error") && !probe.stderr.contains("crashed"), "\(probe.stderr)")
    }
}
