import CSupport
import Synchronization
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// An error of the cluster API, carrying the Node-style `code` (`EADDRINUSE`, `ERR_IPC_CHANNEL_CLOSED`, …),
/// the errno when a system call failed, and the call's name.
public struct ClusterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The Node-style code: an errno name or an `ERR_…` code.
    public var code: String
    /// The errno, when a system call failed.
    public var errno: Int32?
    /// The failing system call as Node names it (`bind`, `listen`, `write`), when there is one.
    public var syscall: String?
    /// A sentence for people.
    public var message: String

    /// An error with a Node-style code.
    public init(code: String, errno: Int32? = nil, syscall: String? = nil, message: String) {
        self.code = code
        self.errno = errno
        self.syscall = syscall
        self.message = message
    }

    /// The error of a failed system call.
    public init(errno: Int32, syscall: String) {
        self.init(code: errnoName(errno), errno: errno, syscall: syscall,
                  message: "\(syscall) \(errnoName(errno)): \(String(cString: strerror(errno)))")
    }

    public var description: String { "\(code): \(message)" }
}

/// Socket calls, each returning a `ClusterError` with the errno on failure. Descriptors are close-on-exec
/// and non-blocking.
enum Sockets {
    /// The address family and numeric address for a host as Node resolves listen hosts (numeric, or
    /// `localhost`).
    static func resolve(_ host: String) -> (address: String, family: Int)? {
        if host == "localhost" { return ("127.0.0.1", 4) }
        if SocketAddress(host: host, port: 0)?.family == AF_INET { return (host, 4) }
        if SocketAddress(host: host, port: 0)?.family == AF_INET6 { return (host, 6) }
        return nil
    }

    /// Makes `fd` non-blocking (`EBADF` for a descriptor that is not open).
    static func setNonBlocking(_ fd: Int32) throws(ClusterError) {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { throw ClusterError(errno: errno, syscall: "fcntl") }
        if flags & O_NONBLOCK == 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 {
            throw ClusterError(errno: errno, syscall: "fcntl")
        }
    }

    /// `setsockopt` of an `Int32` option; the errno on failure.
    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) -> ClusterError? {
        var v = value
        guard setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            return ClusterError(errno: errno, syscall: "setsockopt")
        }
        return nil
    }

    /// A TCP or UDP socket bound to `host:port` (not listening). `deferAddressInUse` mirrors libuv's TCP
    /// bind, which reports EADDRINUSE only at listen time: the unbound socket is returned instead.
    static func bound(udp: Bool, host: String, port: Int, ipv6Only: Bool = false, reuseAddress: Bool = false,
                      deferAddressInUse: Bool = false) -> Result<Int32, ClusterError> {
        guard let address = SocketAddress(host: host, port: port) else {
            return .failure(ClusterError(code: "EINVAL", errno: EINVAL, syscall: "bind", message: "not a numeric address: \(host)"))
        }
        let type = (udp ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue)) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        let fd = socket(address.family, type, 0)
        guard fd >= 0 else { return .failure(ClusterError(errno: errno, syscall: "socket")) }
        // TCP servers reuse TIME_WAIT addresses as libuv does; UDP only when asked (reuseAddr).
        var optionError = !udp || reuseAddress ? setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1) : nil
        if optionError == nil, address.family == AF_INET6 {
            optionError = setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, ipv6Only ? 1 : 0)
        }
        if let optionError {
            close(fd)
            return .failure(optionError)
        }
        if address.withSockaddr({ bind(fd, $0, $1) }) != 0 {
            let e = errno
            if deferAddressInUse && e == EADDRINUSE { return .success(fd) }
            close(fd)
            return .failure(ClusterError(errno: e, syscall: "bind"))
        }
        return .success(fd)
    }

    /// A bound (not listening) TCP socket; with no host, the dual-stack `::` (falling back to `0.0.0.0`),
    /// as Node binds a host-less listen.
    static func boundTCP(host: String?, port: Int, ipv6Only: Bool, deferAddressInUse: Bool = false) -> Result<Int32, ClusterError> {
        if let host { return bound(udp: false, host: host, port: port, ipv6Only: ipv6Only, deferAddressInUse: deferAddressInUse) }
        switch bound(udp: false, host: "::", port: port, deferAddressInUse: deferAddressInUse) {
        case .failure(let e) where e.code == "EAFNOSUPPORT" || e.code == "EADDRNOTAVAIL":
            return bound(udp: false, host: "0.0.0.0", port: port, deferAddressInUse: deferAddressInUse)
        case let other: return other
        }
    }

    /// `listen(2)` on a bound socket; on failure the socket is closed.
    static func startListening(_ bound: Result<Int32, ClusterError>, backlog: Int32) -> Result<Int32, ClusterError> {
        bound.flatMap { fd in
            guard listen(fd, backlog) != 0 else { return .success(fd) }
            let e = errno
            close(fd)
            return .failure(ClusterError(errno: e, syscall: "listen"))
        }
    }

    /// A listening TCP socket on `host:port` (see `boundTCP`).
    static func listeningTCP(host: String?, port: Int, ipv6Only: Bool, backlog: Int32) -> Result<Int32, ClusterError> {
        startListening(boundTCP(host: host, port: port, ipv6Only: ipv6Only), backlog: backlog)
    }

    /// A Unix stream socket bound at `path` (not listening).
    static func boundUnix(path: String) -> Result<Int32, ClusterError> {
        guard let address = SocketAddress(path: path) else {
            return .failure(ClusterError(code: "ENAMETOOLONG", errno: ENAMETOOLONG, syscall: "bind", message: "path too long for a Unix socket: \(path)"))
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failure(ClusterError(errno: errno, syscall: "socket")) }
        if address.withSockaddr({ bind(fd, $0, $1) }) != 0 {
            let e = errno
            close(fd)
            return .failure(ClusterError(errno: e, syscall: "bind"))
        }
        return .success(fd)
    }

    /// A listening Unix socket at `path`, with read and/or write permission for everyone added to its
    /// file when asked (`readableAll`, `writableAll`). If the permissions cannot be set, the socket is
    /// closed and its file removed, and the error's syscall is `pipeModeCall`.
    static func listeningUnix(path: String, backlog: Int32, readableAll: Bool = false, writableAll: Bool = false) -> Result<Int32, ClusterError> {
        startListening(boundUnix(path: path), backlog: backlog).flatMap { fd in
            guard let e = addPipeMode(path: path, readableAll: readableAll, writableAll: writableAll) else { return .success(fd) }
            close(fd)
            unlink(path)
            return .failure(e)
        }
    }

    /// How Node names the call that sets a pipe's permissions, in its errors.
    static let pipeModeCall = "uv_pipe_chmod"

    /// libuv's `uv_pipe_chmod`: adds read (`readableAll`) and/or write (`writableAll`) permission for
    /// owner, group and others to the socket file at `path`, keeping the bits it has (so a umask of 022
    /// with both gives 0777, with `readableAll` alone 0755). Nil when done or nothing was asked.
    static func addPipeMode(path: String, readableAll: Bool, writableAll: Bool) -> ClusterError? {
        var wanted: mode_t = 0
        if readableAll { wanted |= S_IRUSR | S_IRGRP | S_IROTH }
        if writableAll { wanted |= S_IWUSR | S_IWGRP | S_IWOTH }
        guard wanted != 0 else { return nil }
        var st = stat()
        guard stat(path, &st) == 0 else { return ClusterError(errno: errno, syscall: pipeModeCall) }
        if st.st_mode & wanted == wanted { return nil }
        guard chmod(path, (st.st_mode | wanted) & 0o7777) == 0 else { return ClusterError(errno: errno, syscall: pipeModeCall) }
        return nil
    }

    /// The kind of socket a descriptor is: `SOCK_STREAM` or `SOCK_DGRAM`, nil if not a socket.
    static func type(of fd: Int32) -> Int32? {
        var type: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : nil
    }

    /// Whether a descriptor is a UDP socket (`SOCK_DGRAM` over IPv4 or IPv6: libuv's handle type `UDP`).
    static func isUDP(_ fd: Int32) -> Bool {
        guard type(of: fd) == Int32(SOCK_DGRAM.rawValue), let family = SocketAddress.local(of: fd)?.family else { return false }
        return family == AF_INET || family == AF_INET6
    }

    /// Accepts one connection, non-blocking and close-on-exec; nil when none is pending.
    /// - Returns: the connection; nil when none is waiting; the errno of `accept4` otherwise. Out of
    ///   descriptors (`EMFILE`, `ENFILE`), the waiting connections are taken with the descriptor held in
    ///   reserve and closed at once (libuv's `uv__emfile_trick`, so Node reports nothing either): their
    ///   clients see the connection end instead of waiting in the backlog, and the listener, whose
    ///   readiness is level-triggered, does not keep the loop spinning. Only without a reserve is the
    ///   error returned.
    static func accept(_ fd: Int32) -> Result<Int32, ClusterError>? {
        let c = csupport_accept(fd, 1)
        if c >= 0 { return .success(c) }
        let e = errno
        if e == EAGAIN || e == EWOULDBLOCK || e == EINTR || e == ECONNABORTED { return nil }
        if (e == EMFILE || e == ENFILE) && shedWithReserve(fd) { return nil }
        return .failure(ClusterError(errno: e, syscall: "accept"))
    }

    /// A descriptor kept open so that one connection can still be accepted (and closed) when the process
    /// has no descriptor left; -1 until the first listen, or while it cannot be reopened.
    private static let reserve = Atomic<Int32>(-1)

    /// Opens the reserve descriptor if it is not open (every listen calls this, so it exists before the
    /// descriptors run out).
    static func keepReserve() {
        guard reserve.load(ordering: .relaxed) < 0 else { return }
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        if !reserve.compareExchange(expected: -1, desired: fd, ordering: .relaxed).exchanged { Glibc.close(fd) }
    }

    /// Accepts and closes the connections waiting on `fd`, using the reserve descriptor; false without one.
    private static func shedWithReserve(_ fd: Int32) -> Bool {
        let spare = reserve.exchange(-1, ordering: .relaxed)
        guard spare >= 0 else { return false }
        Glibc.close(spare)
        while true {
            let c = csupport_accept(fd, 1)
            guard c >= 0 else { break }
            Glibc.close(c)
        }
        keepReserve()
        return true
    }
}

/// Node's name for an address family number.
func familyName(_ family: Int32) -> String { family == AF_INET6 ? "IPv6" : family == AF_INET ? "IPv4" : "unix" }
