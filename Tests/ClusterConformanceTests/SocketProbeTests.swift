import Foundation
import Testing
@testable import ClusterConformance

#if canImport(Glibc)
import Glibc
#endif

/// The `probe` step's view of /proc: which socket inodes listen on a port or path, and who holds them.
@Suite("Socket probe")
struct SocketProbeTests {
    @Test("only the lines after the header that contain the needle are returned, the last one without its newline too")
    func lines() throws {
        let dir = try temporaryDirectory("probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let table = """
              sl  local_address rem_address   st :1F90 header
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1
               1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1
               2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1
            """
        try table.write(toFile: dir + "/tcp", atomically: true, encoding: .utf8)
        let found = try #require(SocketProbe.procLines(dir + "/tcp", containing: ":1F90 "))
        #expect(found.map { $0.split(separator: " ")[9] } == ["111", "333"])
        #expect(SocketProbe.procLines(dir + "/missing", containing: ":1F90 ") == nil)
    }

    @Test("a listening TCP socket, a bound UDP socket and a listening Unix socket of this process are found and held by it")
    func ownSockets() throws {
        let dir = try temporaryDirectory("probe")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for transport in ["tcp", "udp", "unix"] {
            let fd = socket(transport == "unix" ? AF_UNIX : AF_INET, Int32(transport == "udp" ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
            #expect(fd >= 0)
            defer { close(fd) }
            var port: Int?
            var path: String?
            if transport == "unix" {
                path = dir + "/probe.sock"
                var address = sockaddr_un()
                address.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &address.sun_path) { raw in
                    for (i, byte) in path!.utf8.enumerated() { raw[i] = byte }
                }
                let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
                #expect(bound == 0)
            } else {
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_addr.s_addr = inet_addr("127.0.0.1")
                let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                #expect(bound == 0)
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
                port = Int(UInt16(bigEndian: address.sin_port))
            }
            if transport != "udp" { #expect(listen(fd, 8) == 0) }
            let inodes = SocketProbe.inodes(transport: transport, port: port, path: path)
            #expect(inodes.count == 1, "\(transport): \(inodes)")
            #expect(SocketProbe.holds(getpid(), inodes), "\(transport)")
            // Another port (or path) names none of them.
            #expect(SocketProbe.inodes(transport: transport, port: port.map { $0 == 65535 ? 65534 : $0 + 1 }, path: path.map { $0 + "x" }).isDisjoint(with: inodes))
        }
    }
}
