import CSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The README's echo server (Examples/cluster-echo), run for real: two workers behind one port echo what
/// clients send, and when the primary is killed with SIGKILL its workers go too. Every wait has a deadline: a
/// lost line, connection or byte fails the test instead of hanging it.
@Suite("The clustered echo server example", .serialized)
struct EchoExampleTests {
    static let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("cluster-echo").path

    /// How long any one step may take; generous, because other test suites share the two cores.
    static let stepBudget: Duration = .seconds(10)

    /// Processes whose parent is `pid`.
    func children(of pid: Int32) throws -> [Int32] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { child in
            // A process that exits while the list is read has no stat any more: it is no child.
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && fields[0] != "Z" && Int32(fields[1]) == pid
        }
    }

    /// Waits until `fd` is readable, at most until `deadline`; false when the deadline passed first.
    func readable(_ fd: Int32, by deadline: ContinuousClock.Instant) throws -> Bool {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return false }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let rc = poll(&p, 1, Int32(clamping: Int(left / .milliseconds(1)) + 1))
            if rc > 0 { return true }
            if rc < 0 && errno != EINTR { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        }
    }

    /// Reads from `fd` until `done` holds of what was read, the peer closes, or the deadline passes.
    func read(_ fd: Int32, until done: ([UInt8]) -> Bool) throws -> [UInt8] {
        let deadline = ContinuousClock.now + Self.stepBudget
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !done(got) {
            guard try readable(fd, by: deadline) else {
                Issue.record("nothing more to read within \(Self.stepBudget); got \(String(decoding: got, as: UTF8.self).debugDescription)")
                return got
            }
            let n = Glibc.read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                Issue.record("read ended (\(n < 0 ? String(cString: strerror(errno)) : "end of file")) after \(got.count) bytes")
                return got
            }
            got += buffer[0..<n]
        }
        return got
    }

    @Test("clients are echoed by the workers; killing the primary takes the workers with it")
    func echo() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["0"]
        let out = Pipe()
        process.standardOutput = out
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // Both workers report the same port.
        let lines = try read(out.fileHandleForReading.fileDescriptor) { $0.count { $0 == UInt8(ascii: "\n") } >= 2 }
        let text = String(decoding: lines, as: UTF8.self)
        let ports = Set(text.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int($0) } })
        #expect(text.split(separator: "\n").count == 2, "\(text)")
        #expect(ports.count == 1, "\(text)")
        let port = try #require(ports.first)

        for i in 0..<6 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(fd >= 0)
            defer { close(fd) }
            // The kernel bounds a blocking connect and write by the send timeout.
            var timeout = timeval(tv_sec: Int(Self.stepBudget.components.seconds), tv_usec: 0)
            #expect(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(port).bigEndian)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            try #require(rc == 0, "connect: \(String(cString: strerror(errno)))")
            let message = Array("hello \(i)".utf8)
            try #require(send(fd, message, message.count, Int32(MSG_NOSIGNAL)) == message.count)
            let got = try read(fd) { $0.count >= message.count }
            #expect(got == message)
        }

        let workers = try children(of: process.processIdentifier)
        #expect(workers.count == 2)
        // Pidfds before the kill, so that a worker's pid cannot be reused by the time it is watched.
        let pidfds = workers.map { csupport_pidfd_open($0) }
        defer { pidfds.filter { $0 >= 0 }.forEach { close($0) } }
        #expect(pidfds.allSatisfy { $0 >= 0 })
        #expect(kill(process.processIdentifier, SIGKILL) == 0)
        #expect(exited.wait(timeout: .now() + .seconds(Int(Self.stepBudget.components.seconds))) == .success, "the primary outlived SIGKILL")
        // The workers notice the lost channel and exit; a pidfd becomes readable when its process exits.
        let deadline = ContinuousClock.now + .seconds(1)
        let survivors = try pidfds.filter { $0 >= 0 }.filter { try !readable($0, by: deadline) }
        #expect(survivors.isEmpty, "\(survivors.count) worker(s) outlived their primary by more than a second")
    }
}
