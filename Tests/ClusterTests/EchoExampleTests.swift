import CSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The README's echo server (Examples/cluster-echo), run for real: two workers behind one port echo what
/// clients send, and when the primary is killed with SIGKILL its workers go too.
@Suite("The clustered echo server example", .serialized)
struct EchoExampleTests {
    static let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("cluster-echo").path

    /// Processes whose parent is `pid`.
    func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && fields[0] != "Z" && Int32(fields[1]) == pid
        }
    }

    @Test("clients are echoed by the workers; killing the primary takes the workers with it")
    func echo() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["0"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        // Both workers report the same port.
        var text = ""
        let reader = out.fileHandleForReading
        while text.split(separator: "\n").count < 2 {
            let data = reader.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
        }
        let ports = Set(text.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int($0) } })
        #expect(ports.count == 1)
        let port = try #require(ports.first)

        for i in 0..<6 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = in_port_t(UInt16(port).bigEndian)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(rc == 0)
            let message = Array("hello \(i)".utf8)
            #expect(write(fd, message, message.count) == message.count)
            var buffer = [UInt8](repeating: 0, count: 64)
            var got: [UInt8] = []
            while got.count < message.count {
                let n = read(fd, &buffer, 64)
                if n <= 0 { break }
                got += buffer[0..<n]
            }
            #expect(got == message)
            close(fd)
        }

        let workers = children(of: process.processIdentifier)
        #expect(workers.count == 2)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The workers notice the lost channel and exit; a pidfd becomes readable when a process exits.
        let pidfds = workers.map { csupport_pidfd_open($0) }
        #expect(pidfds.allSatisfy { $0 >= 0 })
        var fds = pidfds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let started = ContinuousClock.now
        var exited = 0
        while exited < fds.count, ContinuousClock.now - started < .seconds(1) {
            _ = poll(&fds, nfds_t(fds.count), 100)
            exited = fds.filter { $0.revents != 0 }.count
        }
        pidfds.forEach { close($0) }
        #expect(exited == workers.count, "workers outlived their primary by more than a second")
    }
}
