import CSupport
import ClusterJSON
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// The IPC channel between the primary and one worker: a `SOCK_SEQPACKET` socketpair, so packet boundaries
/// and the descriptors attached to a packet stay together.
///
/// A message is one JSON value of a `Kind`. A message that fits in one packet (`maxPacket` bytes, the
/// common case and the round-robin hand-off hot path) is one packet: the kind's tag byte, then the JSON
/// text. A longer one is split: a first packet `L`, the kind's tag, the total length of the JSON text as a
/// big-endian UInt64 and the first bytes; then continuation packets `+` and the next bytes, until the
/// total is reached. Descriptors travel with a message's first packet. Messages keep their order in both
/// directions; packets that cannot be sent yet wait in a queue, in order, so the parts of a long message
/// are never interleaved with another message.
///
/// Errors are never silent. A send that cannot complete returns the error (except `EAGAIN`, which
/// queues); a queued packet that later fails to go out reports the error through `onError` and closes the
/// channel. A peer that breaks the framing (a message over `maxMessage`, a continuation without a start, a
/// packet over `maxPacket`, more than `maxDescriptors` descriptors) is a protocol error, and so is any
/// packet that is not a frame (an unknown tag, an empty packet, JSON that does not parse): `onError`, then
/// the channel closes and every descriptor that came with the bad packet is closed. A peer cannot crash its
/// partner with bytes, nor keep it busy: at most `readsPerWakeUp` packets are read before the loop serves
/// others.
final class Channel {
    /// What a message is, as its tag byte.
    enum Kind: UInt8, CaseIterable {
        /// The cluster's own traffic.
        case control = 0x49  // I
        /// A user message (`worker.send()` / `process.send()`).
        case user = 0x55  // U
        /// A user message with a listening socket attached (Node's `net.Server` handle).
        case userWithServer = 0x53  // S
        /// A user message with a connected socket attached (Node's `net.Socket` handle).
        case userWithConnection = 0x43  // C
        /// A user message with some other descriptor attached.
        case userWithOther = 0x4F  // O
    }

    /// A round-robin hand-off, the hot path of the primary: `H`, the ticket as a big-endian UInt32, then the
    /// handle key's UTF-8 bytes; the connection's descriptor travels with it. Not JSON, so that neither
    /// side builds or parses text per connection.
    private static let handoffTag: UInt8 = 0x48  // H
    /// A worker's answer to a hand-off: `A`, the ticket as a big-endian UInt32, then 1 (accepted) or 0.
    private static let handoffAnswerTag: UInt8 = 0x41  // A
    private static let longTag: UInt8 = 0x4C  // L
    private static let continuationTag: UInt8 = 0x2B  // +
    private static let longHeader = 10

    /// The largest packet, header included. Well under `net.core.wmem_default` (212,992 bytes here), the
    /// most one SEQPACKET `sendmsg` can carry, so that a packet fits in an empty socket buffer.
    static let maxPacket = 64 * 1024
    /// The largest message (JSON text) by default: 256 MiB.
    static let messageLimit = 256 * 1024 * 1024
    /// The most descriptors one message can carry.
    static let maxDescriptors = 8

    let fd: Int32
    private let loop: EventLoop
    private var watcher: Watcher?
    private var outgoing: [(bytes: [UInt8], fds: [Int32])] = []
    private var outgoingHead = 0
    private var buffer = [UInt8](repeating: 0, count: Channel.maxPacket)
    /// Where `recvmsg` puts the descriptors of one packet; reused for every read.
    private var descriptors = [Int32](repeating: -1, count: Channel.maxDescriptors)
    private var assembling: (kind: Kind, total: Int, bytes: [UInt8], fds: [Int32])?
    private(set) var isOpen = true
    private var closeWhenFlushed = false
    /// The largest message (JSON text); a longer one fails with `EMSGSIZE`, and a peer announcing one is a
    /// protocol error.
    var maxMessage = Channel.messageLimit
    /// The most packets read in one wake-up, so that a flooding peer cannot starve the loop's other work.
    static let readsPerWakeUp = 256

    /// A message arrived: its kind, value and the descriptors that came with it (owned by the callee).
    var onFrame: (Kind, JSONValue, [Int32]) -> Void = { _, _, fds in fds.forEach { Glibc.close($0) } }
    /// A hand-off arrived (in a worker): its ticket, the handle key and the connection (owned by the callee).
    var onHandoff: (_ ticket: UInt32, _ key: String, _ connection: Int32) -> Void = { _, _, fd in Glibc.close(fd) }
    /// A worker answered a hand-off (in the primary).
    var onHandoffAnswer: (_ ticket: UInt32, _ accepted: Bool) -> Void = { _, _ in }
    /// The other end closed, or the channel was closed here.
    var onClose: () -> Void = {}
    /// A protocol error of the peer or a failed write of queued packets; the channel closes right after.
    var onError: (ClusterError) -> Void = { _ in }

    /// A channel on `fd`, which it owns. A descriptor the loop cannot watch gives a channel that reports the
    /// error (`onError`) and closes on the next tick, as a channel whose peer failed would.
    init(fd: Int32, loop: EventLoop) {
        self.fd = fd
        self.loop = loop
        do throws(ClusterError) {
            try Sockets.setNonBlocking(fd)
            watcher = try loop.watch(fd) { [weak self] in self?.readAvailable() }
        } catch {
            failOnNextTick(error)
        }
    }

    // A channel nobody holds any more is closed without callbacks: nobody is left to hear them.
    deinit {
        guard isOpen else { return }
        dropQueue()
        assembling?.fds.forEach { Glibc.close($0) }
        watcher?.cancel()
        Glibc.close(fd)
    }

    /// Packets waiting to be sent (the peer is not reading fast enough).
    var queuedPackets: Int { outgoing.count - outgoingHead }

    /// Keeps the process alive while the channel is open (default), or not.
    func setReferenced(_ referenced: Bool) {
        if referenced { watcher?.ref() } else { watcher?.unref() }
    }

    // MARK: - Sending

    /// Sends a message, or queues it behind earlier ones (or when the socket is full). The descriptors
    /// are duplicated into the peer; the caller keeps its own. Fails with `ERR_IPC_CHANNEL_CLOSED` on a
    /// closed (or closing) channel, `EMSGSIZE` beyond `maxMessage`, or the errno of the failed send.
    @discardableResult
    func send(_ kind: Kind, _ value: JSONValue, fds: [Int32] = []) -> Result<Void, ClusterError> {
        guard isOpen, !closeWhenFlushed else {
            return .failure(ClusterError(code: "ERR_IPC_CHANNEL_CLOSED", message: "Channel closed"))
        }
        guard fds.count <= Channel.maxDescriptors else {
            return .failure(ClusterError(code: "EINVAL", errno: EINVAL, syscall: "write",
                                         message: "a message carries at most \(Channel.maxDescriptors) descriptors"))
        }
        var text = value.jsonBytes
        guard text.count <= maxMessage else {
            return .failure(ClusterError(code: "EMSGSIZE", errno: EMSGSIZE, syscall: "write",
                                         message: "a message of \(text.count) bytes exceeds \(maxMessage)"))
        }
        if text.count < Channel.maxPacket {
            // The common case, and the hand-off hot path: one packet, sent at once with the caller's
            // descriptors when nothing is queued.
            text.insert(kind.rawValue, at: 0)
            return send(packets: [text], fds: fds)
        }
        return send(packets: Channel.split(kind, text), fds: fds)
    }

    /// A message of the cluster's own protocol. Its loss would leave the two sides disagreeing (a hand-off
    /// never acknowledged, a listen never answered), so a send that fails for any reason but a closed
    /// channel is reported through `onError` and the channel closes, as for a peer's protocol error.
    func sendControl(_ value: JSONValue, fds: [Int32] = []) {
        guard case .failure(let error) = send(.control, value, fds: fds), error.code != "ERR_IPC_CHANNEL_CLOSED" else { return }
        failOnNextTick(error)
    }

    /// Reports `error` through `onError` and closes the channel, after the current callback returns (the
    /// caller is still inside a send or the channel's set-up).
    private func failOnNextTick(_ error: ClusterError) {
        loop.nextTick { [weak self] in
            guard let self, isOpen else { return }
            onError(error)
            close()
        }
    }

    /// Sends a round-robin hand-off of `connection` (the primary's hot path); the errno as `send` gives it.
    func sendHandoff(ticket: UInt32, key: String, connection: Int32) -> Result<Void, ClusterError> {
        guard isOpen, !closeWhenFlushed else {
            return .failure(ClusterError(code: "ERR_IPC_CHANNEL_CLOSED", message: "Channel closed"))
        }
        var packet: [UInt8] = [Channel.handoffTag]
        packet.reserveCapacity(5 + key.utf8.count)
        withUnsafeBytes(of: ticket.bigEndian) { packet.append(contentsOf: $0) }
        packet.append(contentsOf: key.utf8)
        guard packet.count <= Channel.maxPacket else {
            return .failure(ClusterError(code: "EMSGSIZE", errno: EMSGSIZE, syscall: "write", message: "a handle key too long for a hand-off"))
        }
        return send(packets: [packet], fds: [connection])
    }

    /// Answers a hand-off (in a worker); a failure other than a closed channel closes it, as any control
    /// message's does.
    func sendHandoffAnswer(ticket: UInt32, accepted: Bool) {
        guard isOpen, !closeWhenFlushed else { return }
        var packet: [UInt8] = [Channel.handoffAnswerTag]
        withUnsafeBytes(of: ticket.bigEndian) { packet.append(contentsOf: $0) }
        packet.append(accepted ? 1 : 0)
        guard case .failure(let error) = send(packets: [packet], fds: []) else { return }
        failOnNextTick(error)
    }

    /// A user message as `worker.send(message)` and `process.send(message)` send it (both sides share
    /// this): true once sent or queued; false when it cannot be, and `report` gets the error on the next
    /// tick, as Node emits `'error'` after the call has returned.
    func sendUser(_ message: JSONValue, reportingTo report: @escaping (ClusterError) -> Void) -> Bool {
        outcome(send(.user, message), report)
    }

    /// A user message with a handle (`send(message, sendHandle)` on either side): its descriptor goes
    /// with the message, and a sent connection is given up unless `keepOpen`. False, with the error
    /// reported on the next tick, when it cannot be sent; the handle then stays as it was.
    /// - Throws: `ERR_INVALID_HANDLE_TYPE` when the handle has no descriptor to send.
    func sendUser(_ message: JSONValue, handle: SendHandle,
                  reportingTo report: @escaping (ClusterError) -> Void) throws(ClusterError) -> Bool {
        let (fd, kind) = try handle.resolve()
        let sent = outcome(send(Kind(userMessageWith: kind), message, fds: [fd]), report)
        if sent { handle.sent() }
        return sent
    }

    private func outcome(_ result: Result<Void, ClusterError>, _ report: @escaping (ClusterError) -> Void) -> Bool {
        guard case .failure(let error) = result else { return true }
        loop.nextTick { report(error) }
        return false
    }

    /// The packets of a long message.
    private static func split(_ kind: Kind, _ text: [UInt8]) -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var first: [UInt8] = [longTag, kind.rawValue]
        withUnsafeBytes(of: UInt64(text.count).bigEndian) { first.append(contentsOf: $0) }
        var offset = min(text.count, maxPacket - longHeader)
        first.append(contentsOf: text[0..<offset])
        packets.append(first)
        while offset < text.count {
            let end = min(text.count, offset + maxPacket - 1)
            var packet: [UInt8] = [continuationTag]
            packet.append(contentsOf: text[offset..<end])
            packets.append(packet)
            offset = end
        }
        return packets
    }

    /// Sends the packets of one message in order; the descriptors go with the first.
    private func send(packets: [[UInt8]], fds: [Int32]) -> Result<Void, ClusterError> {
        var sent = 0
        if queuedPackets == 0 {
            while sent < packets.count {
                if transmit(packets[sent], sent == 0 ? fds : []) >= 0 {
                    sent += 1
                    continue
                }
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { break }
                let error = ClusterError(errno: e, syscall: "write")
                if sent > 0 {
                    // The peer holds the start of a message it will never see the end of: the channel cannot
                    // be used any more. It closes once the caller has had the error.
                    loop.nextTick { [weak self] in self?.drainAndClose() }
                }
                return .failure(error)
            }
        }
        guard sent < packets.count else { return .success(()) }
        // What waits in the queue needs descriptors of its own: the caller may close its copies meanwhile.
        var copies: [Int32] = []
        if sent == 0 {
            for fd in fds {
                let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                guard copy >= 0 else {
                    let e = errno
                    copies.forEach { Glibc.close($0) }
                    return .failure(ClusterError(errno: e, syscall: "dup"))
                }
                copies.append(copy)
            }
        }
        let wasIdle = queuedPackets == 0
        for i in sent..<packets.count {
            outgoing.append((packets[i], i == sent ? copies : []))
        }
        if wasIdle {
            trace("channel \(fd): send EAGAIN, \(queuedPackets) packets queued")
            watcher?.setWritable { [weak self] in self?.flush() }
        }
        return .success(())
    }

    /// One `sendmsg`; the byte count, or -1 with `errno`.
    private func transmit(_ bytes: [UInt8], _ fds: [Int32]) -> Int {
        bytes.withUnsafeBytes { raw in
            fds.withUnsafeBufferPointer { csupport_send_with_fds(fd, raw.baseAddress, raw.count, $0.baseAddress, Int32($0.count)) }
        }
    }

    private func flush() {
        while isOpen, outgoingHead < outgoing.count {
            let packet = outgoing[outgoingHead]
            if transmit(packet.bytes, packet.fds) < 0 {
                let e = errno
                if e == EAGAIN || e == EWOULDBLOCK { return }
                // Queued messages cannot be delivered: say so, then close (after reading what the peer
                // already sent: a worker's last messages before it died still arrive).
                let lost = queuedPackets
                dropQueue()
                onError(ClusterError(code: errnoName(e), errno: e, syscall: "write",
                                     message: "write \(errnoName(e)): \(lost) queued packets not delivered"))
                drainAndClose()
                return
            }
            packet.fds.forEach { Glibc.close($0) }
            outgoing[outgoingHead] = ([], [])
            outgoingHead += 1
        }
        outgoing.removeAll(keepingCapacity: outgoing.count < 1024)
        outgoingHead = 0
        watcher?.setWritable(nil)
        if closeWhenFlushed && isOpen { close() }
    }

    private func dropQueue() {
        for i in outgoingHead..<outgoing.count { outgoing[i].fds.forEach { Glibc.close($0) } }
        outgoing.removeAll()
        outgoingHead = 0
    }

    private func drainAndClose() {
        readAvailable()
        close()
    }

    // MARK: - Receiving

    /// Reads every message that is already there (used before reporting a worker's exit, so that whatever
    /// it sent before dying is delivered first).
    func drain() {
        readAvailable()
    }

    private func readAvailable() {
        var reads = 0
        while isOpen && reads < Channel.readsPerWakeUp {
            reads += 1
            var nfds: Int32 = 0
            var truncated: Int32 = 0
            let n = buffer.withUnsafeMutableBytes { raw in
                csupport_recv_with_fds(fd, raw.baseAddress, raw.count, &descriptors, Int32(Channel.maxDescriptors), &nfds, &truncated)
            }
            // Most packets carry no descriptor: no array is made for them.
            let received = nfds == 0 ? [] : Array(descriptors.prefix(Int(nfds)))
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                hangUp()
                return
            }
            if n == 0 {
                received.forEach { Glibc.close($0) }
                // A zero-length packet also reads as 0 bytes; only a hang-up is the end of the channel.
                // A peer that shut down its sending side (or closed) is the end; POLLRDHUP (0x2000, which Glibc does
                // not export to Swift) tells that apart from an empty packet.
                var p = pollfd(fd: fd, events: Int16(POLLIN) | Int16(0x2000), revents: 0)
                if poll(&p, 1, 0) > 0 && p.revents & (Int16(POLLHUP) | Int16(0x2000)) != 0 {
                    hangUp()
                    return
                }
                protocolError("an empty packet")
                return
            }
            if truncated != 0 {
                received.forEach { Glibc.close($0) }
                protocolError("a packet longer than \(Channel.maxPacket) bytes, or with more than \(Channel.maxDescriptors) descriptors", code: "EMSGSIZE")
                return
            }
            packet(count: n, fds: received)
        }
    }

    /// One packet of `count` bytes in `buffer`.
    private func packet(count n: Int, fds: [Int32]) {
        let tag = buffer[0]
        if let kind = Kind(rawValue: tag) {
            guard assembling == nil else {
                fds.forEach { Glibc.close($0) }
                protocolError("a message began inside a long message")
                return
            }
            deliver(kind, Array(buffer[1..<n]), fds)
        } else if tag == Channel.handoffTag || tag == Channel.handoffAnswerTag {
            guard assembling == nil else {
                fds.forEach { Glibc.close($0) }
                protocolError("a hand-off inside a long message")
                return
            }
            guard n >= 5 else {
                fds.forEach { Glibc.close($0) }
                protocolError("a truncated hand-off")
                return
            }
            let ticket = buffer[1..<5].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            if tag == Channel.handoffAnswerTag {
                fds.forEach { Glibc.close($0) }
                guard n == 6, buffer[5] <= 1 else { return protocolError("a malformed hand-off answer") }
                onHandoffAnswer(ticket, buffer[5] == 1)
            } else {
                guard fds.count == 1 else {
                    fds.forEach { Glibc.close($0) }
                    return protocolError("a hand-off with \(fds.count) descriptors")
                }
                onHandoff(ticket, String(decoding: buffer[5..<n], as: UTF8.self), fds[0])
            }
        } else if tag == Channel.longTag {
            guard assembling == nil else {
                fds.forEach { Glibc.close($0) }
                protocolError("a long message began inside another")
                return
            }
            guard n >= Channel.longHeader, let kind = Kind(rawValue: buffer[1]) else {
                fds.forEach { Glibc.close($0) }
                protocolError("a malformed long-message header")
                return
            }
            let total = buffer[2..<10].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard total <= UInt64(maxMessage) else {
                fds.forEach { Glibc.close($0) }
                protocolError("a message of \(total) bytes exceeds \(maxMessage)", code: "EMSGSIZE")
                return
            }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(Int(total))
            bytes.append(contentsOf: buffer[Channel.longHeader..<n])
            assembling = (kind, Int(total), bytes, fds)
            continueAssembly()
        } else if tag == Channel.continuationTag {
            guard assembling != nil else {
                fds.forEach { Glibc.close($0) }
                protocolError("a continuation without a long message")
                return
            }
            assembling!.bytes.append(contentsOf: buffer[1..<n])
            assembling!.fds += fds
            continueAssembly()
        } else {
            fds.forEach { Glibc.close($0) }
            protocolError("a packet with the unknown tag \(tag)")
        }
    }

    private func continueAssembly() {
        guard let a = assembling else { return }
        if a.bytes.count > a.total || a.fds.count > Channel.maxDescriptors {
            protocolError("a long message longer than announced")
        } else if a.bytes.count == a.total {
            assembling = nil
            deliver(a.kind, a.bytes, a.fds)
        }
    }

    private func deliver(_ kind: Kind, _ text: [UInt8], _ fds: [Int32]) {
        let value: JSONValue
        do throws(JSONParseError) { value = try JSONValue.parse(bytes: text) } catch {
            fds.forEach { Glibc.close($0) }
            protocolError("a message that is not JSON (\(error))")
            return
        }
        onFrame(kind, value, fds)
    }

    /// The peer is gone. Messages still queued for it are lost: that is reported, not dropped silently.
    private func hangUp() {
        if queuedPackets > 0 {
            let lost = queuedPackets
            dropQueue()
            onError(ClusterError(code: "EPIPE", errno: EPIPE, syscall: "write",
                                 message: "write EPIPE: the peer closed the channel; \(lost) queued packets not delivered"))
        }
        close()
    }

    private func protocolError(_ text: String, code: String = "EPROTO") {
        trace("channel \(fd): protocol error: \(text)")
        let errnoValue = code == "EMSGSIZE" ? EMSGSIZE : EPROTO
        onError(ClusterError(code: code, errno: errnoValue, syscall: "read", message: "IPC protocol error: \(text)"))
        close()
    }

    // MARK: - Closing

    /// Closes the channel once every queued message is sent (Node's `process.disconnect()` /
    /// `subprocess.disconnect()`); `onClose` runs once.
    func disconnect() {
        guard isOpen else { return }
        closeWhenFlushed = true
        flush()
    }

    /// Closes the channel now, dropping queued messages; `onClose` runs once.
    func close() {
        guard isOpen else { return }
        isOpen = false
        dropQueue()
        assembling?.fds.forEach { Glibc.close($0) }
        assembling = nil
        watcher?.cancel()
        watcher = nil
        Glibc.close(fd)
        onClose()
    }
}
