// The bench's own server for the `limit` row: the least a server can do for the client's connections.

import CSupport
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A plain accept loop in the bench process, on 127.0.0.1 and a port of the kernel's choice: `threads`
/// threads (as many as the implementations' workers) each accept on the one listening socket with
/// blocking calls, write the greeting line a fixture's echo server writes (`{"worker":ID,"server":"limit"}`),
/// read until the client's end of stream, and close. Measured by the same client as the implementations,
/// it shows what the client itself can reach on this machine.
final class LimitServer: @unchecked Sendable {
    let port: Int
    private let listenFD: Int32
    private let group = DispatchGroup()
    private let stopping = Atomic<Bool>(false)

    init(threads: Int) throws(SystemError) {
        let fd = try boundSocket(udp: false, host: "127.0.0.1", port: 0, listen: 4096)
        guard let address = SocketAddress.local(of: fd) else {
            close(fd)
            throw SystemError("getsockname")
        }
        listenFD = fd
        port = address.port
        for id in 1...max(1, threads) {
            group.enter()
            Thread.detachNewThread { [self] in
                serve(greeting: Array(#"{"worker":\#(id),"server":"limit"}"#.utf8) + [UInt8(ascii: "\n")])
                group.leave()
            }
        }
    }

    private func serve(greeting: [UInt8]) {
        var buffer = [UInt8](repeating: 0, count: 512)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        while !stopping.load(ordering: .relaxed) {
            let fd = csupport_accept_cloexec(listenFD)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                break  // shut down (EINVAL), or broken
            }
            // A client that never ends its side cannot keep this thread.
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            _ = greeting.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n > 0 || (n < 0 && errno == EINTR) { continue }
                break
            }
            close(fd)
        }
    }

    /// Stops the threads (shutting the listening socket down wakes a blocked accept) and closes the socket.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        shutdown(listenFD, Int32(SHUT_RDWR))
        if group.wait(timeout: .now() + 10) == .timedOut {
            // A thread stuck on one connection ends with its receive timeout; the socket must outlive it.
            return
        }
        close(listenFD)
    }
}
