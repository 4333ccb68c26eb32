import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The README's HTTP server (Examples/cluster-http), run for real: Cluster shares one port between two
/// workers by round-robin, SwiftNIO answers the requests, on new connections and on kept-alive ones.
@Suite("The clustered HTTP server example", .serialized)
struct HTTPExampleTests {
    static let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        .appendingPathComponent("cluster-http").path

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// One parsed answer.
    struct Response {
        var status: String
        var headers: [String: String]  // lower-cased names
        var body: String
        var worker: Int? {
            guard case let object as [String: Any] = try? JSONSerialization.jsonObject(with: Data(body.utf8)) else { return nil }
            return object["worker"] as? Int
        }
    }

    /// Reads lines from `fd` until `count` have arrived, failing after `seconds`.
    func lines(from fd: Int32, count: Int, seconds: Int) throws -> [String] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var text = ""
        while text.split(separator: "\n").count < count {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw Failure("only \(text.debugDescription) after \(seconds) s") }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            guard poll(&p, 1, max(ms, 1)) >= 0 else { throw Failure("poll: errno \(errno)") }
            guard p.revents != 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { throw Failure("the example's output ended after \(text.debugDescription)") }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return text.split(separator: "\n").map(String.init)
    }

    /// A client socket connected to 127.0.0.1:port whose reads and writes give up after 5 s.
    func connectClient(_ port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket: errno \(errno)") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            guard setsockopt(fd, SOL_SOCKET, option, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw Failure("setsockopt: errno \(errno)")
            }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = in_port_t(UInt16(port).bigEndian)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw Failure("connect: errno \(errno)") }
        return fd
    }

    /// Sends one request and reads its answer (headers, then Content-Length bytes of body).
    func request(_ fd: Int32, _ method: String = "GET", path: String = "/", body: String = "", close: Bool = false) throws -> Response {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Length: \(body.utf8.count)\r\n"
        if close { text += "Connection: close\r\n" }
        let bytes = Array((text + "\r\n" + body).utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw Failure("send: errno \(errno)") }
            sent += n
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        func more() throws {
            let n = read(fd, &buffer, buffer.count)
            guard n > 0 else { throw Failure(n == 0 ? "the server ended the connection before answering" : "read: errno \(errno)") }
            received += buffer[0..<n]
        }
        let separator = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            try more()
            headEnd = received.indices.dropLast(3).first { Array(received[$0..<$0 + 4]) == separator }
        }
        let head = String(decoding: received[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        guard let length = headers["content-length"].flatMap({ Int($0) }) else { throw Failure("no Content-Length in \(head)") }
        while received.count < headEnd! + 4 + length { try more() }
        return Response(status: head[0], headers: headers, body: String(decoding: received[(headEnd! + 4)...], as: UTF8.self))
    }

    @Test("the README's SwiftNIO section shows this example's code, unchanged")
    func readmeShowsTheExample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let example = try String(contentsOf: root.appendingPathComponent("Examples/cluster-http/main.swift"), encoding: .utf8)
        let section = try #require(readme.range(of: "### Serving the connections with SwiftNIO"))
        let open = try #require(readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex))
        let close = try #require(readme.range(of: "```", range: open.upperBound..<readme.endIndex))
        #expect(String(readme[open.upperBound..<close.lowerBound]) == example)
    }

    @Test("both workers answer new connections under rr; a kept-alive connection stays with its worker")
    func serves() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["0"]
        process.environment = ProcessInfo.processInfo.environment.merging(["NODE_CLUSTER_SCHED_POLICY": "rr"]) { $1 }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        // Both workers report the same port.
        let listening = try lines(from: out.fileHandleForReading.fileDescriptor, count: 2, seconds: 20)
        let ports = Set(listening.compactMap { $0.split(separator: " ").last.flatMap { Int($0) } })
        #expect(ports.count == 1, "\(listening)")
        let port = try #require(ports.first)

        // A kept-alive connection, opened first and used between the others.
        let kept = try connectClient(port)
        defer { close(kept) }
        let first = try request(kept)
        #expect(first.status == "HTTP/1.1 200 OK")
        #expect(first.headers["content-type"] == "application/json")
        #expect(first.headers["connection"] == "keep-alive")
        #expect(first.headers["x-accepted-by"] == "cluster", "round-robin: the primary accepted, NIO served the descriptor")
        let keptWorker = try #require(first.worker, "body \(first.body)")

        // New connections, one request each: round-robin gives each worker every other one.
        var served: [Int] = []
        for i in 0..<6 {
            let fd = try connectClient(port)
            defer { close(fd) }
            let r = try request(fd, i % 2 == 0 ? "GET" : "POST", path: "/new/\(i)", body: i % 2 == 0 ? "" : "payload \(i)", close: true)
            #expect(r.status == "HTTP/1.1 200 OK")
            #expect(r.headers["connection"] == "close")
            served.append(try #require(r.worker, "body \(r.body)"))
            // Connection: close is honoured: the server ends the connection after the answer.
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) == 0)

            // Meanwhile the kept-alive connection is still open and answered by the same worker.
            let again = try request(kept, "POST", path: "/kept/\(i)", body: String(repeating: "x", count: 100 * i))
            #expect(again.worker == keptWorker)
            #expect(again.headers["connection"] == "keep-alive")
        }
        #expect(Set(served) == [1, 2], "served by \(served)")
        #expect(served.filter { $0 == 1 }.count == 3, "served by \(served)")
    }

    // One worker: SwiftNIO's debug build (this test's) asserts that a wake-up of a listening socket brings a
    // connection, which a socket shared by several processes does not promise.
    @Test("under the shared policy a worker hands its listening socket to NIO's ServerBootstrap, which accepts and serves")
    func servesShared() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["0", "1"]
        process.environment = ProcessInfo.processInfo.environment.merging(["NODE_CLUSTER_SCHED_POLICY": "none"]) { $1 }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        defer {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        let listening = try lines(from: out.fileHandleForReading.fileDescriptor, count: 1, seconds: 20)
        let port = try #require(listening.first?.split(separator: " ").last.flatMap { Int($0) }, "\(listening)")

        // A connection that came before the hand-off was accepted by Cluster; from then on NIO accepts.
        var served: Set<Int> = []
        var acceptedBy: [String] = []
        for i in 0..<8 {
            let fd = try connectClient(port)
            defer { close(fd) }
            let r = try request(fd, path: "/shared/\(i)", close: true)
            #expect(r.status == "HTTP/1.1 200 OK")
            acceptedBy.append(r.headers["x-accepted-by"] ?? "")
            served.insert(try #require(r.worker, "body \(r.body)"))
        }
        #expect(served == [1], "served by \(served)")
        #expect(acceptedBy.allSatisfy { $0 == "nio" || $0 == "cluster" }, "\(acceptedBy)")
        #expect(acceptedBy.last == "nio", "NIO never took over accepting: \(acceptedBy)")
    }
}
