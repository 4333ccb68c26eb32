import ClusterSpec
import CSupport
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Where the runner connects, resolved from the log or the spec.
enum Endpoint: Sendable {
    case tcp(host: String, port: Int)
    case unix(path: String)
    case udp(host: String, port: Int)

    var transport: String {
        switch self {
        case .tcp: "tcp"
        case .unix: "unix"
        case .udp: "udp"
        }
    }
}

/// What happened to one client connection or datagram.
enum ClientResult {
    /// A worker answered; `fd` is the still-open connection (TCP/Unix) when it was kept.
    case served(worker: JSONValue, echo: String?, fd: Int32?)
    /// The connection could not be made.
    case refused(code: String)
    /// Connected, but no complete answer came.
    case unanswered(code: String)
}

/// The runner acting as the client of the implementation's servers (protocol §6).
enum Client {
    /// Opens a TCP or Unix connection and waits for it to complete.
    static func connect(_ endpoint: Endpoint, until deadline: ContinuousClock.Instant) -> Result<Int32, SystemError> {
        var address: SocketAddress?
        var directoryFD: Int32 = -1
        defer { if directoryFD >= 0 { close(directoryFD) } }
        switch endpoint {
        case .tcp(let host, let port), .udp(let host, let port): address = SocketAddress(host: host, port: port)
        case .unix(let path):
            address = SocketAddress(path: path)
            if address == nil {
                // Longer than sun_path (108 bytes): reach the socket through a short path, the directory's
                // descriptor under /proc/self/fd, as a relative path would (the runner cannot chdir: it is
                // multi-threaded and runs specs in parallel).
                let url = URL(fileURLWithPath: path)
                directoryFD = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                if directoryFD >= 0 { address = SocketAddress(path: "/proc/self/fd/\(directoryFD)/\(url.lastPathComponent)") }
            }
        }
        guard let address else { return .failure(SystemError("connect", errno: ENAMETOOLONG)) }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(SystemError("socket")) }
        let rc = address.withSockaddr { Glibc.connect(fd, $0, $1) }
        if rc != 0 {
            if errno != EINPROGRESS && errno != EAGAIN {
                let e = SystemError("connect")
                close(fd)
                return .failure(e)
            }
            guard waitFor(fd, events: Int16(POLLOUT), until: deadline) else {
                close(fd)
                return .failure(SystemError("connect", errno: ETIMEDOUT))
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                close(fd)
                return .failure(SystemError("connect", errno: err))
            }
        }
        return .success(fd)
    }

    /// Sends `payload` (if any), then reads the identification line and the echo of the payload.
    static func converse(_ fd: Int32, send payload: String?, until deadline: ContinuousClock.Instant) -> ClientResult {
        if let payload, !payload.isEmpty {
            do { try writeAll(fd, Array(payload.utf8)) } catch { return .unanswered(code: error.code) }
        }
        var received: [UInt8] = []
        let echoBytes = payload?.utf8.count ?? 0
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let nl = received.firstIndex(of: UInt8(ascii: "\n")), received.count - nl - 1 >= echoBytes {
                let line = String(decoding: received[..<nl], as: UTF8.self)
                guard let answer = try? JSONValue.parse(line), let worker = answer["worker"] else {
                    return .unanswered(code: "EPROTO")
                }
                let echo = echoBytes > 0 ? String(decoding: received[(nl + 1)..<(nl + 1 + echoBytes)], as: UTF8.self) : nil
                return .served(worker: worker, echo: echo, fd: fd)
            }
            guard waitReadable(fd, until: deadline) else { return .unanswered(code: "ETIMEDOUT") }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return .unanswered(code: errnoName(errno))
            }
            if n == 0 { return .unanswered(code: "EOF") }
            received.append(contentsOf: buffer[0..<n])
            if received.count > 1 << 16 { return .unanswered(code: "EPROTO") }
        }
    }

    /// Sends `count` datagrams and collects the answers until all came or the deadline passed.
    static func datagrams(to host: String, port: Int, count: Int, payload: String,
                          until deadline: ContinuousClock.Instant) -> Result<[ClientResult], SystemError> {
        guard let address = SocketAddress(host: host, port: port) else { return .failure(SystemError("sendto", errno: EINVAL)) }
        let fd = socket(address.family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(SystemError("socket")) }
        defer { close(fd) }
        let bytes = Array(payload.utf8)
        for _ in 0..<count {
            let n = address.withSockaddr { a, l in bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a, l) } }
            if n < 0 { return .failure(SystemError("sendto")) }
        }
        var results: [ClientResult] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while results.count < count, waitReadable(fd, until: deadline) {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                results.append(.unanswered(code: errnoName(errno)))
                continue
            }
            let text = String(decoding: buffer[0..<n], as: UTF8.self)
            if let answer = try? JSONValue.parse(text), let worker = answer["worker"] {
                results.append(.served(worker: worker, echo: answer["echo"]?.stringValue, fd: nil))
            } else {
                results.append(.unanswered(code: "EPROTO"))
            }
        }
        while results.count < count { results.append(.unanswered(code: "ETIMEDOUT")) }
        return .success(results)
    }

    /// Ends a connection politely (FIN), then closes it.
    static func finish(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}

/// Finds which processes hold a server's socket, from `/proc` (Linux).
enum SocketProbe {
    /// Socket inodes of listening TCP sockets on `port`, bound UDP sockets on `port`, or listening Unix
    /// sockets at `path`.
    /// `/proc/net/unix` shows a path as it was bound, so a socket bound by a relative name is matched
    /// against `boundFrom` (the binder's working directory) as well.
    ///
    /// The tables are read three times and the results joined: the kernel lists them in chunks, and a
    /// socket of another process created or closed between two chunks can make one reading skip an entry
    /// (seen as a probe that found no holder while specs ran in parallel).
    static func inodes(transport: String, port: Int?, path: String?, boundFrom directory: String? = nil) -> Set<String> {
        (0..<3).reduce(into: Set<String>()) { union, _ in union.formUnion(inodesOnce(transport: transport, port: port, path: path, boundFrom: directory)) }
    }

    /// The whole content of a `/proc` file, read to its end in large reads.
    static func procBytes(_ file: String) -> [UInt8]? {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            bytes += chunk[0..<n]
        }
        return bytes
    }

    /// The whole text of a `/proc` file.
    static func procText(_ file: String) -> String? { procBytes(file).map { String(decoding: $0, as: UTF8.self) } }

    /// The lines of a `/proc` table after its header that contain `needle`. The tables list every socket of the machine (thousands in TIME_WAIT after a busy spec); only the few lines naming
    /// the port or the path are made strings and split, so that a probe costs little even in a debug build.
    static func procLines(_ file: String, containing needle: String) -> [String]? {
        guard let bytes = procBytes(file) else { return nil }
        let pattern = Array(needle.utf8)
        var lines: [String] = []
        bytes.withUnsafeBytes { (table: UnsafeRawBufferPointer) in
            guard let base = table.baseAddress, !pattern.isEmpty else { return }
            let newline = UInt8(ascii: "\n")
            var start = (table.firstIndex(of: newline) ?? table.count) + 1  // past the header
            while start < table.count {
                var end = table.count
                if let found = memchr(base + start, Int32(newline), table.count - start) { end = base.distance(to: UnsafeRawPointer(found)) }
                if csupport_memmem(base + start, end - start, pattern, pattern.count) != nil {
                    let line = UnsafeRawBufferPointer(rebasing: table[start..<end])
                    lines.append(String(decoding: line, as: UTF8.self))
                }
                start = end + 1
            }
        }
        return lines
    }

    static func inodesOnce(transport: String, port: Int?, path: String?, boundFrom directory: String?) -> Set<String> {
        var result: Set<String> = []
        if transport == "unix", let path {
            // A socket bound by a relative name shows that name: its last component is in the line either way.
            guard let lines = procLines("/proc/net/unix", containing: (path as NSString).lastPathComponent) else { return [] }
            for line in lines {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count >= 8 else { continue }
                let bound = String(f[7])
                let absolute = bound.hasPrefix("/") ? bound : directory.map { URL(fileURLWithPath: $0).appendingPathComponent(bound).standardizedFileURL.path }
                // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON (listening).
                if bound == path || absolute == path, let flags = Int(f[3], radix: 16), flags & 0x10000 != 0 {
                    result.insert(String(f[6]))
                }
            }
            return result
        }
        guard let port else { return [] }
        let files = transport == "udp" ? ["/proc/net/udp", "/proc/net/udp6"] : ["/proc/net/tcp", "/proc/net/tcp6"]
        // An address is hex digits, a colon and the port in four upper-case hex digits, then a space.
        let needle = String(format: ":%04X ", port)
        for file in files {
            guard let lines = procLines(file, containing: needle) else { continue }
            for line in lines {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
                guard f.count >= 10, let colon = f[1].lastIndex(of: ":"),
                      let p = Int(f[1][f[1].index(after: colon)...], radix: 16), p == port else { continue }
                if transport == "udp" || f[3] == "0A" { result.insert(String(f[9])) }
            }
        }
        return result
    }

    /// Whether process `pid` has a descriptor on one of these socket inodes.
    static func holds(_ pid: Int32, _ inodes: Set<String>) -> Bool {
        let dir = "/proc/\(pid)/fd"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return false }
        for entry in entries {
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + entry),
                  target.hasPrefix("socket:[") else { continue }
            if inodes.contains(String(target.dropFirst(8).dropLast())) { return true }
        }
        return false
    }
}
