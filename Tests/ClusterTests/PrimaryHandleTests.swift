import CSupport
import ClusterJSON
import Foundation
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// What the primary's server handles do with real workers (cluster-fixture processes): the permissions
/// of a pipe it creates for them (LISTEN-09) and the fate of a round-robin hand-off whose worker leaves
/// before answering it.
@Suite("Primary handles", .serialized)
struct PrimaryHandleTests {
    /// The permission bits of the file at `path`.
    func mode(_ path: String) -> mode_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_mode & 0o7777 : nil
    }

    /// This process's umask, which the workers inherit, read from /proc/self/status: umask(2) would have
    /// to change it, and other tests create files meanwhile.
    func currentUmask() throws -> mode_t {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Umask:") })
        return try #require(mode_t(line.dropFirst("Umask:".count).trimmingCharacters(in: .whitespaces), radix: 8))
    }

    @Test("the bits readableAll and writableAll add to a socket file, as uv_pipe_chmod adds them")
    func pipeModeBits() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let cases: [(readable: Bool, writable: Bool, expected: mode_t)] = [
            (false, false, 0o700), (true, false, 0o744), (false, true, 0o722), (true, true, 0o766),
        ]
        for (i, c) in cases.enumerated() {
            let path = "\(dir)/s\(i).sock"
            let fd = try Sockets.listeningUnix(path: path, backlog: 1).get()
            defer { close(fd) }
            #expect(chmod(path, 0o700) == 0)
            #expect(Sockets.addPipeMode(path: path, readableAll: c.readable, writableAll: c.writable) == nil)
            #expect(mode(path) == c.expected, "readableAll \(c.readable), writableAll \(c.writable)")
        }
        let missing = Sockets.addPipeMode(path: "\(dir)/none.sock", readableAll: true, writableAll: false)
        #expect(missing?.code == "ENOENT")
        #expect(missing?.syscall == "uv_pipe_chmod")
    }

    @Test("a standalone pipe listen applies readableAll and writableAll before 'listening'")
    func standalonePipeMode() throws {
        let dir = makeTemporaryDirectory()
        defer { removeDirectory(dir) }
        let loop = EventLoop()
        let server = Server(loop: loop)
        var seen: mode_t?
        server.onListening = { seen = mode("\(dir)/s.sock") }
        server.listen(.unix(path: "\(dir)/s.sock", readableAll: true, writableAll: true))
        run(loop, until: "listening") { seen != nil }
        #expect(seen.map { $0 & 0o666 } == 0o666)
        var closed = false
        server.close { _ in closed = true }
        run(loop, until: "the close") { closed }
        #expect(mode("\(dir)/s.sock") == nil, "the socket file goes with the server")
    }

    @Test("under rr the primary applies a worker's readableAll and writableAll; under none nobody does, as in Node 20",
          arguments: [SchedulingPolicy.roundRobin, .shared])
    func clusteredPipeMode(_ policy: SchedulingPolicy) throws {
        let c = try FixtureCluster(policy: policy)
        let w = try c.fork()
        let path = c.dir + "/s.sock"
        c.command(w.id, "listen", [("server", "s"), ("kind", "unix"), ("path", .string(path)), ("readableAll", true), ("writableAll", true)])
        c.waitForEvent("the worker's listening") { $0["ev"] == "listening" && $0["server"] == "s" }
        let created = 0o777 & ~(try currentUmask())
        #expect(mode(path) == (policy == .roundRobin ? created | 0o666 : created))
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("a hand-off a killed worker never answered goes to another worker, which serves it; later clients go there too")
    func abandonedHandoff() throws {
        let c = try FixtureCluster()
        let w1 = try c.fork(), w2 = try c.fork()
        // Worker 1 joins the handle first, so it is the first free worker.
        c.command(w1.id, "listen", [("server", "s"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)])
        let listening = c.waitForEvent("worker 1's listening") { $0["ev"] == "listening" && $0["worker"]?.intValue == w1.id }
        c.command(w2.id, "listen", [("server", "s"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)])
        c.waitForEvent("worker 2's listening") { $0["ev"] == "listening" && $0["worker"]?.intValue == w2.id }
        let port = try #require(listening?["port"]?.intValue)
        let block = c.command(w1.id, "block", [("ms", 20_000)])
        #expect(c.ack(block) != nil)

        let first = try Client(port: port, loop: c.loop)
        c.waitUntil("the hand-off to the blocked worker") { w1.unansweredHandoffs == 1 }
        w1.kill(.kill)
        #expect(c.exit(of: w1.id)?.signal == .kill)
        c.waitUntil("worker 2's greeting on the abandoned connection") { first.text.hasSuffix("\n") }
        #expect(first.text == "{\"worker\":\(w2.id),\"server\":\"s\"}\n")

        let second = try Client(port: port, loop: c.loop)
        c.waitUntil("worker 2's greeting") { second.text.hasSuffix("\n") }
        #expect(second.text == "{\"worker\":\(w2.id),\"server\":\"s\"}\n")
        w2.kill(.kill)
        _ = c.exit(of: w2.id)
    }
}

/// System calls that fail under a running cluster.
@Suite("Failing system calls")
struct FailingSyscallTests {
    /// The lowest descriptor number process `pid` does not have open.
    func lowestFreeDescriptor(of pid: pid_t) -> Int {
        let open = Set(openDescriptors(of: String(pid)).map(Int.init))
        return (0...).first { !open.contains($0) }!
    }

    /// Sets process `pid`'s soft limit of descriptors; returns the old soft limit.
    @discardableResult
    func setDescriptorLimit(of pid: pid_t, soft: Int) -> Int? {
        var old: UInt = 0
        return csupport_set_descriptor_limit(pid, UInt(soft), &old) == 0 ? Int(old) : nil
    }

    @Test("a worker out of descriptors closes the connections it cannot take (libuv's EMFILE trick) instead of leaving them waiting, and serves again once it can")
    func acceptOutOfDescriptors() throws {
        let c = try FixtureCluster(policy: .shared)
        let w = try c.fork()
        c.command(w.id, "listen", [("server", "s"), ("kind", "tcp"), ("host", "127.0.0.1"), ("port", 0)])
        let listening = c.waitForEvent("the worker's listening") { $0["ev"] == "listening" && $0["server"] == "s" }
        let port = try #require(listening?["port"]?.intValue)

        let old = try #require(setDescriptorLimit(of: w.pid, soft: lowestFreeDescriptor(of: w.pid)))
        let refused = try Client(port: port, loop: c.loop)
        c.waitUntil("the end of the connection the worker could not take") { refused.ended }
        #expect(refused.text == "")

        setDescriptorLimit(of: w.pid, soft: old)
        let served = try Client(port: port, loop: c.loop)
        c.waitUntil("the greeting once descriptors are free again") { served.text.hasSuffix("\n") }
        #expect(served.text == "{\"worker\":\(w.id),\"server\":\"s\"}\n")
        w.kill(.kill)
        _ = c.exit(of: w.id)
    }

    @Test("kill() with a signal the system refuses returns false and emits 'error'; on an exited worker it returns false quietly")
    func refusedKill() throws {
        let loop = EventLoop()
        let primary = Primary(loop: loop, environment: [:])
        primary.setupPrimary(SettingsUpdate(exec: "/usr/bin/env", args: ["python3", "-c", "import time; time.sleep(30)"]))
        let w = try primary.fork()
        var errors: [String] = []
        var exited = false
        w.on { event in
            if case .error(let e) = event { errors.append("\(e.code) \(e.syscall ?? "")") }
            if case .exit = event { exited = true }
        }
        #expect(!w.kill(Signal(rawValue: 4242)))
        #expect(errors.isEmpty, "the error comes on a later tick, as in Node")
        run(loop, until: "the kill's 'error'") { !errors.isEmpty }
        #expect(errors == ["EINVAL kill"])
        #expect(w.kill(.kill))
        run(loop, until: "the exit") { exited }
        #expect(!w.kill(.kill))
        _ = loop.run(until: { false }, deadline: .now + .milliseconds(20))
        #expect(errors == ["EINVAL kill"])
    }
}
