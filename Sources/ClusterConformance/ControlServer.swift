import CSupport
import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The Unix socket workers connect to for their commands (`CLUSTER_CONFORMANCE_CONTROL`, protocol §1).
final class ControlServer: @unchecked Sendable {
    let path: String
    private let listenFD: Int32
    private let log: EventLog
    private let state = Mutex(State())
    private let stopping = Atomic<Bool>(false)

    private struct State {
        var connections: [Int: Int32] = [:]
        var closed: Set<Int> = []
        var allFDs: [Int32] = []
        var threads = 1  // the accept loop
    }

    /// Listens at `path`.
    init(path: String, log: EventLog) throws(SystemError) {
        guard let address = SocketAddress(path: path) else { throw SystemError("bind \(path)", errno: ENAMETOOLONG) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket") }
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0, listen(fd, 64) == 0 else {
            let e = SystemError("bind \(path)")
            close(fd)
            throw e
        }
        self.path = path
        self.listenFD = fd
        self.log = log
        Thread.detachNewThread { [self] in self.acceptLoop() }
    }

    /// The command connection of a worker, waiting for it until the deadline.
    func connection(for worker: Int, until deadline: ContinuousClock.Instant) -> Int32? {
        log.wait(until: deadline) { _ in
            state.withLock { s -> Int32?? in
                if let fd = s.connections[worker] { return .some(fd) }
                if s.closed.contains(worker) { return .some(nil) }
                return nil
            }
        } ?? nil
    }

    /// Whether this worker connected and its connection has since closed.
    func isClosed(_ worker: Int) -> Bool { state.withLock { $0.closed.contains(worker) } }

    /// Stops accepting and closes every connection.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        state.withLock { s in
            for fd in s.allFDs { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Waits (briefly) for the threads to close their descriptors, then removes the socket file.
    ///
    /// Each thread closes the descriptor it owns, so no descriptor number is closed while another thread
    /// may still read it — with parallel specs a reused number would belong to someone else.
    func release() {
        let limit = ContinuousClock.now + .seconds(2)
        _ = log.wait(until: limit, stopOnViolation: false) { _ in self.state.withLock { $0.threads == 0 } ? true : nil }
        unlink(path)
    }

    private func acceptLoop() {
        while !stopping.load(ordering: .sequentiallyConsistent) {
            guard waitReadable(listenFD, until: .now + .milliseconds(100)) else { continue }
            let fd = csupport_accept_cloexec(listenFD)
            if fd < 0 { continue }
            state.withLock { s in
                s.allFDs.append(fd)
                s.threads += 1
            }
            Thread.detachNewThread { [self] in
                self.serve(fd)
                self.state.withLock { s in
                    s.allFDs.removeAll { $0 == fd }
                    s.threads -= 1
                }
                close(fd)
                self.log.poke()
            }
        }
        close(listenFD)
        state.withLock { $0.threads -= 1 }
        log.poke()
    }

    /// Reads the hello line, registers the worker, then waits for the connection to close.
    private func serve(_ fd: Int32) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var worker: Int?
        while !stopping.load(ordering: .sequentiallyConsistent) {
            guard waitReadable(fd, until: .now + .milliseconds(100)) else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            guard worker == nil else { continue }  // workers send nothing after hello; ignore extra bytes
            pending.append(contentsOf: buffer[0..<n])
            guard let nl = pending.firstIndex(of: UInt8(ascii: "\n")) else {
                if pending.count > 4096 { log.fail("a control connection sent 4 KiB without a hello line") ; break }
                continue
            }
            let line = String(decoding: pending[..<nl], as: UTF8.self)
            guard let hello = try? JSONValue.parse(line), let id = hello["hello"]?["worker"]?.intValue else {
                log.fail("a control connection sent \(quote(line)) instead of {\"hello\":{\"worker\":ID,\"pid\":PID}}")
                break
            }
            worker = id
            state.withLock { $0.connections[id] = fd }
            log.poke()
        }
        if let worker {
            state.withLock { s in
                s.connections[worker] = nil
                s.closed.insert(worker)
            }
            log.poke()
        }
    }
}

/// A line shortened for messages.
func quote(_ line: String, limit: Int = 300) -> String {
    line.count > limit ? "'\(line.prefix(limit))…'" : "'\(line)'"
}
