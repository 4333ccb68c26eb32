import Foundation
import Testing
@testable import ClusterConformance

/// The ports of a spec's `setup.ports`: free, and out of the way of every port the kernel hands out by itself.
@Suite("Port allocation")
struct PortAllocationTests {
    @Test("allocated ports lie outside the ephemeral range, bind for TCP and UDP, and do not repeat")
    func outsideEphemeralRange() throws {
        let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let bounds = text.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        try #require(bounds.count == 2)
        let range = try #require(PortAllocation.range(), "this machine's ephemeral range \(bounds) leaves no room")
        #expect(!range.overlaps(bounds[0]...bounds[1]))
        let ports = try (0..<200).map { _ in try allocateFreePort() }
        #expect(Set(ports).count == ports.count)
        #expect(ports.allSatisfy(range.contains), "\(ports.filter { !range.contains($0) })")
        #expect(PortAllocation.isFree(ports[0]))
        // A port in use is not free.
        let held = try boundSocket(udp: false, host: "::", port: ports[1], listen: 1)
        defer { close(held) }
        #expect(!PortAllocation.isFree(ports[1]))
    }
}
