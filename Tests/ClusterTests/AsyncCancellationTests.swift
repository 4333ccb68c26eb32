import ClusterJSON
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Every await of the async layer honours task cancellation: it stops waiting, undoes its registration
/// on the loop, and throws `ABORT_ERR` (or, where the API does not throw, returns at once). Reads, writes
/// and a connection's close are in AsyncConnectionTests.
@Suite("Async cancellation", .serialized)
struct AsyncCancellationTests {
    static let prompt = 3000

    func isPrompt(_ line: JSONValue?) -> Bool { (line?["ms"]?.intValue ?? .max) < Self.prompt }

    @Test("fork cancelled before it starts forks nothing; exit(), a handle's disconnect, disconnectAll and shutdown return when cancelled")
    func primaryWaits() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let probe = try ProbeRun("cancel-waits", [dir])
        #expect(probe.event("fork")?["code"] == "ABORT_ERR")
        #expect(probe.event("workers")?["count"] == 0, "a cancelled fork started a worker")
        let exit = probe.event("exit") { $0["worker"] == nil }
        #expect(exit?["code"] == "ABORT_ERR")
        #expect(isPrompt(exit))
        #expect(probe.event("alive")?["isDead"] == false, "a cancelled exit() must not affect the worker")
        // Each worker listens on its own socket; a connection held by the test keeps its server open.
        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for id in [1, 2] {
            let path = try #require(probe.event("listening") { $0["worker"]?.intValue == id }?["path"]?.stringValue)
            clients.append(try connectUnix(path))
        }
        probe.event("connected")
        for call in ["handle-disconnect", "disconnect-all", "shutdown"] {
            let line = probe.event(call)
            #expect(line?["code"] == "ok", "\(call)")
            #expect(isPrompt(line), "\(call) took \(line?["ms"] ?? .null) ms after the cancel")
        }
        // A cancelled shutdown still finishes the primary's events.
        probe.event("events-finished")
        probe.event("holding")
        clients.forEach { close($0) }
        clients.removeAll()
        #expect(probe.event("exit") { $0["worker"] == 1 }?["code"] == 0)
        #expect(probe.event("exit") { $0["worker"] == 2 }?["code"] == 0)
        #expect(probe.exit()?.code == 0)
    }

    @Test("a listen cancelled while the primary has not answered throws ABORT_ERR; the late grant is closed, never reported listening")
    func listen() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let probe = try ProbeRun("cancel-listen", [dir])
        let cancelled = probe.event("listen")
        #expect(cancelled?["code"] == "ABORT_ERR")
        #expect(isPrompt(cancelled))
        probe.event("second-listening")
        let saw = probe.event("primary-saw")
        let listening = saw?["listening"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(listening.count == 1 && listening.first?.hasSuffix("/second.sock") == true, "\(probe.transcript)")
        #expect(saw?["firstSocketExists"] == false, "the abandoned server's socket is still there")
        #expect(probe.exit()?.code == 0)
    }

    @Test("AsyncServer.close() and AsyncWorker.disconnect() return when cancelled; both finish later, and the streams with them")
    func closeAndDisconnect() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let probe = try ProbeRun("cancel-close", [dir])
        probe.event("listening-both")
        let a = try connectUnix(dir + "/a.sock"), b = try connectUnix(dir + "/b.sock")
        probe.event("connected")
        for call in ["server-close", "worker-disconnect"] {
            let line = probe.event(call)
            #expect(line?["code"] == "ok", "\(call)")
            #expect(isPrompt(line), "\(call) took \(line?["ms"] ?? .null) ms after the cancel")
        }
        probe.event("holding")
        close(a)
        close(b)
        for event in ["a-finished", "b-finished", "messages-finished", "disconnected"] { probe.event(event) }
        #expect(probe.event("exit")?["code"] == 0)
        #expect(probe.exit()?.code == 0)
    }
}

/// A client socket connected to the Unix socket at `path` (blocking, close-on-exec).
func connectUnix(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ProbeFailure("socket: errno \(errno)") }
    var a = sockaddr_un()
    a.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &a.sun_path) { raw in
        for (i, byte) in path.utf8.prefix(raw.count - 1).enumerated() { raw[i] = byte }
    }
    let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard rc == 0 else { let e = errno; close(fd); throw ProbeFailure("connect \(path): \(String(cString: strerror(e)))") }
    return fd
}
