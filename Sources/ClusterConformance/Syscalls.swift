import CSupport
import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A pipe whose both ends are close-on-exec.
func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [0, 0]
    guard csupport_pipe_cloexec(&fds) == 0 else { throw SystemError("pipe2") }
    return (fds[0], fds[1])
}

/// Whether the process exists and is not a zombie.
func processIsAlive(_ pid: Int32) -> Bool {
    guard pid > 0, kill(pid, 0) == 0 || errno == EPERM else { return false }
    // A zombie still answers kill(pid, 0); it is gone for our purposes. Orphans of a dead primary end up
    // as zombies when the reaper (PID 1 of a sandbox) does not reap.
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].drop(while: { $0 == " " }).first
    return state != "Z" && state != "X"
}

/// Creates a socket bound to `host:port` (TCP listening or UDP), close-on-exec.
func boundSocket(udp: Bool, host: String, port: Int, listen backlog: Int32 = 511) throws(SystemError) -> Int32 {
    guard let address = SocketAddress(host: host, port: port) else { throw SystemError("inet_pton", errno: EINVAL) }
    let fd = socket(address.family, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw SystemError("socket") }
    if !udp {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    if address.family == AF_INET6 {
        var zero: Int32 = 0
        setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
    }
    let rc = address.withSockaddr { bind(fd, $0, $1) }
    guard rc == 0 else { let e = SystemError("bind"); close(fd); throw e }
    if !udp, Glibc.listen(fd, backlog) != 0 { let e = SystemError("listen"); close(fd); throw e }
    return fd
}

/// A port that is free for TCP and UDP on every address right now, for a spec's `setup.ports`. It is chosen outside
/// the kernel's ephemeral range (`ip_local_port_range`), from which every port-0 bind and every outgoing connection
/// of any process takes its port: a port from inside that range could be taken by another spec running beside (a
/// worker's `listen(0)`, a client's connection) between this check and the spec's own listen, which then fails with
/// EADDRINUSE (seen about once in 400 runs under load). This process never hands out the same port twice in a row
/// of 4096. When the machine leaves no room outside the range, the kernel's choice (port 0) stands.
func allocateFreePort() throws(SystemError) -> Int {
    if let range = PortAllocation.range() {
        for _ in 0..<64 {
            let port = Int.random(in: range)
            guard PortAllocation.reserve(port) else { continue }
            if PortAllocation.isFree(port) { return port }
        }
    }
    let fd: Int32
    do { fd = try boundSocket(udp: false, host: "::", port: 0, listen: 1) } catch {
        fd = try boundSocket(udp: false, host: "0.0.0.0", port: 0, listen: 1)
    }
    defer { close(fd) }
    guard let a = SocketAddress.local(of: fd) else { throw SystemError("getsockname") }
    return a.port
}

/// The bookkeeping of `allocateFreePort`.
enum PortAllocation {
    /// The ports handed out lately by this process, oldest first, and the same as a set.
    static let recent = Mutex<(order: [Int], set: Set<Int>)>(([], []))

    /// Ports from 10000 up to the ephemeral range, or above it when below is too narrow; nil when neither leaves
    /// a thousand ports.
    static func range() -> ClosedRange<Int>? {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard bounds.count == 2 else { return nil }
        if bounds[0] - 10_000 >= 1000 { return 10_000...(bounds[0] - 1) }
        if 65_535 - bounds[1] >= 1000 { return (bounds[1] + 1)...65_535 }
        return nil
    }

    /// Records `port` as handed out; false when it was handed out among the last 4096.
    static func reserve(_ port: Int) -> Bool {
        recent.withLock { r in
            guard r.set.insert(port).inserted else { return false }
            r.order.append(port)
            if r.order.count > 4096 { r.set.remove(r.order.removeFirst()) }
            return true
        }
    }

    /// Whether TCP (listening, dual-stack) and UDP can both bind `port` on every address now.
    static func isFree(_ port: Int) -> Bool {
        for udp in [false, true] {
            guard let fd = try? boundSocket(udp: udp, host: "::", port: port, listen: 1) else { return false }
            close(fd)
        }
        return true
    }
}

/// Waits until every process in `pids` has exited or the deadline passes; returns those still running.
/// Uses pidfds, which become readable when a process exits (child or not, reaped or not).
func waitForExit(_ pids: [Int32], until deadline: ContinuousClock.Instant) -> [Int32] {
    var watched: [(pid: Int32, fd: Int32)] = []
    var running: [Int32] = []
    for pid in pids {
        let fd = csupport_pidfd_open(pid)
        if fd >= 0 { watched.append((pid, fd)) } else if processIsAlive(pid) { running.append(pid) }
    }
    defer { watched.forEach { close($0.fd) } }
    while !watched.isEmpty {
        var fds = watched.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let n = poll(&fds, nfds_t(fds.count), millisecondsLeft(deadline))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        var remaining: [(pid: Int32, fd: Int32)] = []
        for (i, w) in watched.enumerated() {
            if fds[i].revents != 0 { close(w.fd) } else { remaining.append(w) }
        }
        watched = remaining
    }
    return running + watched.map(\.pid)
}

/// What `lstat(2)` says of a path, as the fields of a `stat` event: `exists`, and for an existing path its
/// `type` (`socket`, `file`, `directory`, `link` or `other`) and `mode`, the permission bits as four octal
/// digits (`"0777"`).
enum FileFacts {
    static func of(_ path: String) -> [(String, JSONValue)] {
        var st = stat()
        guard lstat(path, &st) == 0 else { return [("exists", false)] }
        let type: String = switch st.st_mode & S_IFMT {
        case S_IFSOCK: "socket"
        case S_IFREG: "file"
        case S_IFDIR: "directory"
        case S_IFLNK: "link"
        default: "other"
        }
        let octal = String(st.st_mode & 0o7777, radix: 8)
        return [("exists", true), ("type", .string(type)), ("mode", .string(String(repeating: "0", count: max(0, 4 - octal.count)) + octal))]
    }
}
