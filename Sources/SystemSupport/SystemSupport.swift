#if canImport(Glibc)
import Glibc
#endif

// Small POSIX helpers shared by the runner and the cluster implementation: typed errno errors, signal
// names, socket addresses, waiting on descriptors. Neither side imports the other; both import this.

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
    case ENAMETOOLONG: "ENAMETOOLONG"
    case EALREADY: "EALREADY"
    case EOPNOTSUPP: "ENOTSUP"
    case EPROTO: "EPROTO"
    case EISCONN: "EISCONN"
    case EDESTADDRREQ: "EDESTADDRREQ"
    case EMSGSIZE: "EMSGSIZE"
    case ENOBUFS: "ENOBUFS"
    case ENFILE: "ENFILE"
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
public func millisecondsLeft(_ deadline: ContinuousClock.Instant) -> Int32 {
    let left = deadline - .now
    if left <= .zero { return 0 }
    let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
    return Int32(clamping: max(1, ms))
}

/// Waits until `fd` is readable (or has an error) or the deadline passes; true when readable.
public func waitReadable(_ fd: Int32, until deadline: ContinuousClock.Instant) -> Bool {
    waitFor(fd, events: Int16(POLLIN), until: deadline)
}

/// Waits for `events` on `fd`; true when any of them (or an error) happened before the deadline.
public func waitFor(_ fd: Int32, events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
    while true {
        var p = pollfd(fd: fd, events: events, revents: 0)
        let rc = poll(&p, 1, millisecondsLeft(deadline))
        if rc > 0 { return true }
        if rc == 0 { return false }
        if errno != EINTR { return true }
    }
}

/// Writes all of `bytes`, retrying on EINTR and partial writes.
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(SystemError) {
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

/// A socket address of any family, as bytes, with the helpers to use it.
public struct SocketAddress {
    /// The address bytes.
    public var storage = sockaddr_storage()
    /// How many of them are used.
    public var length: socklen_t = 0

    /// `AF_INET`, `AF_INET6` or `AF_UNIX`.
    public var family: Int32 { Int32(storage.ss_family) }

    /// A numeric IPv4 or IPv6 address and port.
    public init?(host: String, port: Int) {
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
    public init?(path: String) {
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

    /// An empty address, for calls that fill one in.
    public init() {}

    /// Calls `body` with the address as the `sockaddr` pointer and length the socket calls take.
    public func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    /// The numeric host of an IPv4 or IPv6 address (`127.0.0.1`, `::`), or the path of a Unix address.
    public var host: String? {
        withUnsafeBytes(of: storage) { raw -> String? in
            var text = [CChar](repeating: 0, count: 64)
            if family == AF_INET {
                var a = raw.load(as: sockaddr_in.self).sin_addr
                guard inet_ntop(AF_INET, &a, &text, 64) != nil else { return nil }
            } else if family == AF_INET6 {
                var a = raw.load(as: sockaddr_in6.self).sin6_addr
                guard inet_ntop(AF_INET6, &a, &text, 64) != nil else { return nil }
            } else if family == AF_UNIX {
                let offset = MemoryLayout<sa_family_t>.size
                let bytes = raw[offset..<Int(length)].prefix { $0 != 0 }
                return String(decoding: bytes, as: UTF8.self)
            } else {
                return nil
            }
            return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// The port of an IPv4 or IPv6 address.
    public var port: Int {
        withUnsafeBytes(of: storage) { raw in
            if family == AF_INET { return Int(UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)) }
            if family == AF_INET6 { return Int(UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)) }
            return 0
        }
    }

    /// The local address of a socket.
    public static func local(of fd: Int32) -> SocketAddress? {
        var a = SocketAddress()
        a.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutableBytes(of: &a.storage) { raw in
            getsockname(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), &a.length)
        }
        return rc == 0 ? a : nil
    }
}


/// Splits a byte stream into `\n`-terminated lines (the newline is not part of a line).
public struct LineBuffer: Sendable {
    private var pending: [UInt8] = []

    /// An empty buffer.
    public init() {}

    /// Bytes of an unfinished line.
    public var pendingCount: Int { pending.count }

    /// Adds bytes and calls `onLine` for each line they complete.
    public mutating func append(_ bytes: ArraySlice<UInt8>, _ onLine: (String) -> Void) {
        var start = bytes.startIndex
        for i in bytes.indices where bytes[i] == UInt8(ascii: "\n") {
            pending.append(contentsOf: bytes[start..<i])
            onLine(String(decoding: pending, as: UTF8.self))
            pending.removeAll(keepingCapacity: true)
            start = i + 1
        }
        pending.append(contentsOf: bytes[start...])
    }

    /// Drops the unfinished line, returning its first `limit` bytes as text.
    public mutating func discard(keeping limit: Int) -> String {
        defer { pending.removeAll() }
        return String(decoding: pending.prefix(limit), as: UTF8.self)
    }

    /// Calls `onLine` with the unfinished line, if any (at end of stream), and empties the buffer.
    public mutating func finish(_ onLine: (String) -> Void) {
        if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
        pending.removeAll()
    }
}

// MARK: - The process (what Foundation's ProcessInfo and FileManager would give, without loading Foundation)

/// This process's environment as it is now (`environ`), later entries winning over duplicates.
public func processEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var entry = environ
    while let pointer = entry.pointee {
        let text = String(cString: pointer)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        entry += 1
    }
    return result
}

/// The value of one environment variable, if set.
public func environmentValue(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

/// The current working directory, or nil when it cannot be read (removed, say).
public func currentDirectory() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// `path` made absolute against `base` (default: the current directory) and normalised lexically: `.`
/// and empty components dropped, `..` removes the previous component (never above `/`). Symbolic links
/// are not resolved, as Node's `path.resolve` does not.
public func absolutePath(_ path: String, relativeTo base: String? = nil) -> String {
    let joined = path.hasPrefix("/") ? path : (base ?? currentDirectory() ?? "/") + "/" + path
    var components: [Substring] = []
    for component in joined.split(separator: "/", omittingEmptySubsequences: true) {
        switch component {
        case ".": continue
        case "..": if !components.isEmpty { components.removeLast() }
        default: components.append(component)
        }
    }
    return "/" + components.joined(separator: "/")
}

/// The target of a symbolic link (`readlink(2)`), or nil.
public func symbolicLinkTarget(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink(path, &buffer, buffer.count - 1)
    guard n >= 0 else { return nil }
    return String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
