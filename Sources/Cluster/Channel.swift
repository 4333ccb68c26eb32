import CSupport
import ClusterJSON
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// The IPC channel between the primary and one worker: a `SOCK_SEQPACKET` socketpair, one frame per
/// packet, so message boundaries and the descriptors attached to a message stay together.
///
/// A frame is one tag byte — `I` for the cluster's own messages, `U` for user messages — followed by one
/// JSON value. Frames keep their order in both directions; a frame that cannot be sent yet waits in a
/// queue, in order. A malformed frame is dropped (and any descriptors it carried are closed): a worker
/// cannot crash its primary with bytes.
final class Channel {
    /// What a frame carries.
    enum Kind: UInt8 {
        /// The cluster's own traffic.
        case control = 0x49
        /// A user message (`worker.send()` / `process.send()`).
        case user = 0x55
    }

    /// The largest frame; user messages beyond it fail with EMSGSIZE.
    static let maxFrame = 192 * 1024

    let fd: Int32
    private let loop: EventLoop
    private var watcher: Watcher?
    private var outgoing: [(bytes: [UInt8], fds: [Int32])] = []
    private var buffer = [UInt8](repeating: 0, count: Channel.maxFrame + 1)
    private(set) var isOpen = true
    private var closeWhenFlushed = false
    /// Frames that could not be decoded, for diagnostics.
    private(set) var malformedFrames = 0

    /// A frame arrived: its kind, value and the descriptors that came with it (owned by the callee).
    var onFrame: (Kind, JSONValue, [Int32]) -> Void = { _, _, fds in fds.forEach { Glibc.close($0) } }
    /// The other end closed, or the channel was closed here.
    var onClose: () -> Void = {}

    init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
        Sockets.setNonBlocking(fd)
        watcher = loop.watch(fd) { [unowned self] in self.readAvailable() }
    }

    /// Keeps the process alive while the channel is open (default), or not.
    func setReferenced(_ referenced: Bool) {
        if referenced { watcher?.ref() } else { watcher?.unref() }
    }

    /// Queues a frame; false when the channel is closed. The descriptors are duplicated into the peer;
    /// the caller keeps its own.
    @discardableResult
    func send(_ kind: Kind, _ value: JSONValue, fds: [Int32] = []) -> Result<Void, ClusterError> {
        guard isOpen, !closeWhenFlushed else {
            return .failure(ClusterError(code: "ERR_IPC_CHANNEL_CLOSED", message: "Channel closed"))
        }
        let bytes = [kind.rawValue] + Array(value.jsonText.utf8)
        guard bytes.count <= Channel.maxFrame else {
            return .failure(ClusterError(code: "EMSGSIZE", errno: EMSGSIZE, syscall: "write",
                                        message: "a message of \(bytes.count) bytes exceeds \(Channel.maxFrame)"))
        }
        // The common case, and the hand-off hot path: nothing queued, the frame goes out at once with the
        // caller's descriptors. Only a frame that must wait gets its own duplicates, so that it still
        // carries valid descriptors if the caller closes its copies meanwhile.
        if outgoing.isEmpty {
            let n = bytes.withUnsafeBytes { raw in
                fds.withUnsafeBufferPointer { csupport_send_with_fds(fd, raw.baseAddress, raw.count, $0.baseAddress, Int32($0.count)) }
            }
            if n >= 0 { return .success(()) }
            guard errno == EAGAIN || errno == EWOULDBLOCK else {
                // The peer is gone; reading will see the end of the stream.
                return .success(())
            }
        }
        outgoing.append((bytes, fds.map { fcntl($0, F_DUPFD_CLOEXEC, 0) }))
        flush()
        return .success(())
    }

    private func flush() {
        while isOpen, let frame = outgoing.first {
            let n = frame.bytes.withUnsafeBytes { raw in
                frame.fds.withUnsafeBufferPointer { fds in
                    csupport_send_with_fds(fd, raw.baseAddress, raw.count, fds.baseAddress, Int32(fds.count))
                }
            }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    trace("channel \(fd): send EAGAIN with \(outgoing.count) queued")
                    watcher?.setWritable { [unowned self] in self.flush() }
                    return
                }
                // EPIPE / ECONNRESET: the peer is gone; reading will see the end of the stream.
                outgoing.forEach { $0.fds.forEach { Glibc.close($0) } }
                outgoing.removeAll()
                break
            }
            frame.fds.forEach { Glibc.close($0) }
            outgoing.removeFirst()
        }
        watcher?.setWritable(nil)
        if closeWhenFlushed && isOpen { close() }
    }

    /// Reads every frame that is already there (used before reporting a worker's exit, so that whatever
    /// it sent before dying is delivered first).
    func drain() {
        readAvailable()
    }

    private func readAvailable() {
        while isOpen {
            var fds = [Int32](repeating: -1, count: 8)
            var nfds: Int32 = 0
            var truncated: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { raw in
                csupport_recv_with_fds(fd, raw.baseAddress, raw.count, &fds, 8, &nfds, &truncated)
            }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                close()
                return
            }
            if n == 0 {
                // A zero-length packet also reads as 0 bytes; only a hang-up is the end of the channel.
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&p, 1, 0) > 0 && p.revents & Int16(POLLHUP) != 0 {
                    Array(fds.prefix(Int(nfds))).forEach { Glibc.close($0) }
                    close()
                    return
                }
                malformedFrames += 1
                Array(fds.prefix(Int(nfds))).forEach { Glibc.close($0) }
                continue
            }
            let received = Array(fds.prefix(Int(nfds)))
            guard truncated == 0, let kind = Kind(rawValue: buffer[0]),
                  let value = try? JSONValue.parse(bytes: Array(buffer[1..<n])) else {
                malformedFrames += 1
                received.forEach { Glibc.close($0) }
                continue
            }
            onFrame(kind, value, received)
        }
    }

    /// Closes the channel once every queued frame is sent (Node's `process.disconnect()` /
    /// `subprocess.disconnect()`); `onClose` runs once.
    func disconnect() {
        guard isOpen else { return }
        closeWhenFlushed = true
        flush()
    }

    /// Closes the channel now, dropping queued frames; `onClose` runs once.
    func close() {
        guard isOpen else { return }
        isOpen = false
        outgoing.forEach { $0.fds.forEach { Glibc.close($0) } }
        outgoing.removeAll()
        watcher?.cancel()
        watcher = nil
        Glibc.close(fd)
        onClose()
    }
}
