import SystemSupport
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// A worker that breaks the IPC protocol — garbage, oversized or truncated frames, a flood of descriptors —
/// never crashes or blocks the primary: the worker gets an `'error'` and is disconnected, and the primary
/// keeps nothing it sent. The "worker" is a Python program writing raw packets to the channel at fd 3.
@Suite("A worker that breaks the protocol")
struct HostileWorkerTests {
    /// What the primary saw of one hostile worker.
    struct Observed {
        var errors: [String] = []
        var disconnected = false
        var exited = false
        var messages: [JSONValue] = []
    }

    /// Forks `script` (Python, with `channel`, a socket on fd 3, and `send_fds`) as a worker and runs the
    /// primary's loop until the worker has exited.
    func observe(_ script: String, sourceLocation: SourceLocation = #_sourceLocation) -> Observed {
        let loop = EventLoop()
        let primary = Primary(loop: loop, environment: [:])
        let program = """
            import os, socket, sys
            channel = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, fileno=3)
            def send_fds(data, fds):
                socket.send_fds(channel, [data], fds)
            \(script)
            # Wait for the primary to close the channel, then leave.
            channel.settimeout(20)
            try:
                while channel.recv(70000):
                    pass
            except OSError:
                pass
            """
        primary.setupPrimary(SettingsUpdate(exec: "/usr/bin/env", args: ["python3", "-c", program]))
        var seen = Observed()
        primary.on { event in
            switch event {
            case .message(_, let value, _): seen.messages.append(value)
            case .disconnect: seen.disconnected = true
            case .exit: seen.exited = true
            default: break
            }
        }
        do {
            let worker = try primary.fork()
            worker.on { if case .error(let e) = $0 { seen.errors.append(e.code) } }
        } catch {
            Issue.record("fork failed: \(error)", sourceLocation: sourceLocation)
            return seen
        }
        run(loop, until: "the hostile worker's exit", within: .seconds(30), sourceLocation: sourceLocation) { seen.exited }
        return seen
    }

    @Test("garbage, an oversized packet, truncated JSON: 'error' with the protocol error, then 'disconnect'",
          arguments: [
              ("an unknown tag", "channel.send(b'Zgarbage')", "EPROTO"),
              ("bytes that are not JSON", "channel.send(b'I\\xff\\xfe not json')", "EPROTO"),
              ("truncated JSON", "channel.send(b'I{\"act\":\"onl')", "EPROTO"),
              ("a packet over 64 KiB", "channel.send(b'U' + b' ' * 70000)", "EMSGSIZE"),
              ("a long message announcing 1 TiB", "channel.send(b'LU' + (1 << 40).to_bytes(8, 'big') + b'\"')", "EMSGSIZE"),
          ])
    func garbage(_ name: String, _ script: String, _ code: String) {
        let seen = observe(script)
        #expect(seen.errors == [code], "\(name)")
        #expect(seen.disconnected, "\(name)")
    }

    @Test("more descriptors in one packet than a message may carry: EMSGSIZE, and every one of them is closed")
    func tooManyDescriptors() throws {
        let marker = try MarkerFile()
        let seen = observe("""
            fds = [os.open('\(marker.path)', os.O_RDONLY) for _ in range(20)]
            send_fds(b'I{"act":"online"}', fds)
            """)
        #expect(seen.errors == ["EMSGSIZE"])
        #expect(seen.disconnected)
        #expect(marker.openHere() == 0, "the primary kept descriptors the worker sent")
    }

    @Test("a flood of control messages each carrying descriptors: none is kept, and the user message after them arrives")
    func descriptorFlood() throws {
        let marker = try MarkerFile()
        let seen = observe("""
            fd = os.open('\(marker.path)', os.O_RDONLY)
            for i in range(20000):
                send_fds(b'I{"act":"nonsense"}', [fd] * 8)
            channel.send(b'U"after the flood"')
            channel.shutdown(socket.SHUT_WR)
            """)
        #expect(seen.errors == [])
        #expect(seen.messages == ["after the flood"])
        #expect(marker.openHere() == 0, "the primary kept descriptors the worker sent")
    }
}

/// A file of a unique name, so that the descriptors of it this process holds can be counted while other
/// tests open and close descriptors of their own.
struct MarkerFile: ~Copyable {
    let path: String

    init() throws {
        let dir = makeTemporaryDirectory()
        path = dir + "/marker"
        let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        try #require(fd >= 0)
        close(fd)
    }

    deinit { removeDirectory(String(path.dropLast("/marker".count))) }

    /// How many of this process's descriptors are open on the file.
    func openHere() -> Int {
        openDescriptors().filter { symbolicLinkTarget("/proc/self/fd/\($0)") == path }.count
    }
}
