import CSupport
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: the call's name, its errno and the errno's symbolic name (`ECONNREFUSED`).
public struct SystemError: Error, Sendable, CustomStringConvertible {
    /// The call that failed.
    public var call: String
    /// The errno value.
    public var errno: Int32
    /// The symbolic name, e.g. `EADDRINUSE`.
    public var code: String { errnoName(errno) }

    /// The error of `call` with the current `errno`.
    public init(_ call: String, errno: Int32 = Glibc.errno) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(code) (\(String(cString: strerror(errno))))" }
}

/// The symbolic name of an errno value.
public func errnoName(_ e: Int32) -> String {
    switch e {
    case EPERM: "EPERM"
    case ENOENT: "ENOENT"
    case ESRCH: "ESRCH"
    case EINTR: "EINTR"
    case EIO: "EIO"
    case EBADF: "EBADF"
    case ECHILD: "ECHILD"
    case EAGAIN: "EAGAIN"
    case ENOMEM: "ENOMEM"
    case EACCES: "EACCES"
    case EEXIST: "EEXIST"
    case ENOTDIR: "ENOTDIR"
    case EINVAL: "EINVAL"
    case EMFILE: "EMFILE"
    case EPIPE: "EPIPE"
    case ENOTSOCK: "ENOTSOCK"
    case EADDRINUSE: "EADDRINUSE"
    case EADDRNOTAVAIL: "EADDRNOTAVAIL"
    case ENETUNREACH: "ENETUNREACH"
    case ECONNABORTED: "ECONNABORTED"
    case ECONNRESET: "ECONNRESET"
    case ENOTCONN: "ENOTCONN"
    case ETIMEDOUT: "ETIMEDOUT"
    case ECONNREFUSED: "ECONNREFUSED"
    case EHOSTUNREACH: "EHOSTUNREACH"
    case EINPROGRESS: "EINPROGRESS"
    case EAFNOSUPPORT: "EAFNOSUPPORT"
    default: "E\(e)"
    }
}

/// Signal names and numbers, as Node spells them.
public enum Signals {
    static let table: [(String, Int32)] = [
        ("SIGHUP", SIGHUP), ("SIGINT", SIGINT), ("SIGQUIT", SIGQUIT), ("SIGILL", SIGILL), ("SIGTRAP", SIGTRAP),
        ("SIGABRT", SIGABRT), ("SIGBUS", SIGBUS), ("SIGFPE", SIGFPE), ("SIGKILL", SIGKILL), ("SIGUSR1", SIGUSR1),
        ("SIGSEGV", SIGSEGV), ("SIGUSR2", SIGUSR2), ("SIGPIPE", SIGPIPE), ("SIGALRM", SIGALRM), ("SIGTERM", SIGTERM),
        ("SIGCHLD", SIGCHLD), ("SIGCONT", SIGCONT), ("SIGSTOP", SIGSTOP), ("SIGTSTP", SIGTSTP),
    ]

    /// The number of a signal name, if known.
    public static func number(_ name: String) -> Int32? { table.first { $0.0 == name }?.1 }

    /// The name of a signal number.
    public static func name(_ n: Int32) -> String { table.first { $0.1 == n }?.0 ?? "SIG\(n)" }
}

/// Milliseconds left until `deadline` (at least 0).
func millisecondsLeft(_ deadline: ContinuousClock.Instant) -> Int32 {
    let left = deadline - .now
    if left <= .zero { return 0 }
    let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
    return Int32(clamping: max(1, ms))
}

/// Waits until `fd` is readable (or has an error) or the deadline passes; true when readable.
func waitReadable(_ fd: Int32, until deadline: ContinuousClock.Instant) -> Bool {
    waitFor(fd, events: Int16(POLLIN), until: deadline)
}

/// Waits for `events` on `fd`; true when any of them (or an error) happened before the deadline.
func waitFor(_ fd: Int32, events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
    while true {
        var p = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&p, 1, millisecondsLeft(deadline))
        if rc > 0 { return true }
        if rc == 0 { return false }
        if errno != EINTR { return true }
    }
}

/// Writes all of `bytes`, retrying on EINTR and partial writes.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { buf in
            send(fd, buf.baseAddress! + offset, buf.count - offset, Int32(MSG_NOSIGNAL))
        }
        if n < 0, errno == ENOTSOCK {
            let w = bytes.withUnsafeBytes { buf in Glibc.write(fd, buf.baseAddress! + offset, buf.count - offset) }
            if w < 0 { if errno == EINTR { continue }; throw SystemError("write") }
            offset += w
            continue
        }
        if n < 0 { if errno == EINTR { continue }; throw SystemError("send") }
        offset += n
    }
}

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

/// A socket address of any family, as bytes, with the helpers to use it.
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    var family: Int32 { Int32(storage.ss_family) }

    /// A numeric IPv4 or IPv6 address and port.
    init?(host: String, port: Int) {
        var a4 = in_addr()
        var a6 = in6_addr()
        if inet_pton(AF_INET, host, &a4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(UInt16(port).bigEndian)
            sin.sin_addr = a4
            withUnsafeBytes(of: &sin) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
        } else if inet_pton(AF_INET6, host, &a6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(UInt16(port).bigEndian)
            sin6.sin6_addr = a6
            withUnsafeBytes(of: &sin6) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        } else {
            return nil
        }
    }

    /// A Unix socket path (at most 107 bytes).
    init?(path: String) {
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: sun.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &sun.sun_path) { buf in
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        withUnsafeBytes(of: &sun) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
    }

    init() {}

    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// The port of an IPv4 or IPv6 address.
    var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET { return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)) }
            if family == AF_INET6 { return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)) }
            return 0
        }
    }

    /// The local address of a socket.
    static func local(of fd: Int32) -> SocketAddress? {
        var a = SocketAddress()
        a.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutableBytes(of: &a.storage) { raw in
            getsockname(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &a.length)
        }
        return rc == 0 ? a : nil
    }
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

/// A TCP port that is free on every address right now (bound on the dual-stack `::`, then released).
func allocateFreePort() throws(SystemError) -> Int {
    let fd: Int32
    do { fd = try boundSocket(udp: false, host: "::", port: 0, listen: 1) } catch {
        fd = try boundSocket(udp: false, host: "0.0.0.0", port: 0, listen: 1)
    }
    defer { close(fd) }
    guard let a = SocketAddress.local(of: fd) else { throw SystemError("getsockname") }
    return a.port
}
