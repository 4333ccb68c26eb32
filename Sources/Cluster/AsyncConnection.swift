import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

// A connection's reads and writes go through one watcher on the loop, for the connection's whole life:
// a read waits for readability, a write sends what the socket takes and waits for writability to send
// the rest from where it stopped. The loop never blocks, and writes go out whole and in the order they
// were called (reaching the loop), one after the other.

/// An accepted connection for async code (the stream side of Node's `net.Socket`): read, write, close,
/// or give the descriptor to other code (SwiftNIO, say). A connection nobody references any more is
/// closed.
public final class AsyncConnection: Sendable {
    let io: LoopBound<ConnectionIO>
    /// The connected socket (non-blocking); Node's `socket._handle.fd`.
    public let fd: Int32

    init(_ io: LoopBound<ConnectionIO>) {
        self.io = io
        fd = io.value.connection.fd
    }

    // Nothing waits on the connection any more (every call holds it while it waits): close it, as Node
    // closes a socket nobody can reach.
    deinit {
        let io = io
        io.loop.submit { io.value.destroy() }
    }

    /// Reads what is available, waiting for data: at most `maxBytes`; an empty array at end of stream
    /// (also once the connection was closed here). Concurrent reads are served in call order. Node's
    /// `'data'` and `'end'` events (`socket.read()`).
    /// - Throws: the errno of a failed read (`ECONNRESET`, say); `ABORT_ERR` when the task is cancelled:
    ///   the read is withdrawn and no data is lost (what arrives later goes to the next read).
    public func read(maxBytes: Int = 65536) async throws(ClusterError) -> [UInt8] {
        let io = io
        let max = Swift.max(1, maxBytes)
        return try await io.loop.wait { (w: LoopWait<[UInt8]>) in io.value.read(max, w) }.get()
    }

    /// Writes all of `bytes`, returning once the socket took the last of them. Writes are queued: each
    /// goes out whole, in the order the calls reached the connection, however slow the reader (Node's
    /// `socket.write(data, callback)`).
    /// - Throws: the errno of a failed write (`EPIPE`, `ECONNRESET`; the connection is then closed and
    ///   every queued write fails with the same error); `ERR_STREAM_WRITE_AFTER_END` after `close()`;
    ///   `ERR_STREAM_DESTROYED` once the connection is gone; `ABORT_ERR` when the task is cancelled: a write
    ///   not started yet is withdrawn and the connection stays usable; a write partly sent leaves the
    ///   stream cut in the middle of it, so the connection is closed (the writes queued behind it fail
    ///   with `ERR_STREAM_DESTROYED`), as Node destroys a stream whose write is aborted.
    public func write(_ bytes: [UInt8]) async throws(ClusterError) {
        let io = io
        try await io.loop.wait { (w: LoopWait<Void>) in io.value.write(bytes, w) }.get()
    }

    /// Sends the queued writes, then closes the connection (Node's `socket.end()` followed by the
    /// close); pending reads then return end of stream. Returns when it is closed; if the task is
    /// cancelled meanwhile, returns at once and closes it without sending the rest (`socket.destroy()`),
    /// failing the queued writes with `ERR_STREAM_DESTROYED`.
    public func close() async {
        let io = io
        _ = await io.loop.wait { (w: LoopWait<Void>) in io.value.close(w) }
    }

    /// Sends the queued writes, then takes the descriptor out of the cluster's hands; the caller must
    /// close it, and the server stops counting the connection (Node has no counterpart). -1 when the
    /// connection is already closed, or when the task is cancelled while writes are still going out
    /// (the connection is then closed).
    public func detach() async -> Int32 {
        let io = io
        return (try? await io.loop.wait { (w: LoopWait<Int32>) in io.value.release(w, closed: -1) { $0.detach() } }.get()) ?? -1
    }

    /// `Connection.handOff()` for async code, once the queued writes are sent: the descriptor for other
    /// code to serve and close, counted by the server (`server.close()`, `worker.disconnect()`,
    /// `maxConnections`) until `release()` — Node's `http.Server` serving a `net.Socket` until its
    /// `'close'`. Nil when already closed, detached or handed off, or when the task is cancelled while
    /// writes are still going out (the connection is then closed).
    public func handOff() async -> HandedOffConnection? {
        let io = io
        return try? await io.loop.wait { (w: LoopWait<HandedOffConnection?>) in io.value.release(w, closed: nil) { $0.handOff() } }.get()
    }
}

/// The loop side of an `AsyncConnection`: the connection, its watcher, the waiting reads and the queue
/// of writes. Loop thread only.
final class ConnectionIO {
    let connection: Connection
    private unowned let loop: EventLoop
    private var watcher: Watcher?
    private var reads: [(max: Int, wait: LoopWait<[UInt8]>)] = []
    private var writes: [PendingWrite] = []
    private var writeBlocked = false
    private var ending = false
    /// Work waiting for the write queue to empty (a close, a detach).
    private var drained: [() -> Void] = []

    private final class PendingWrite {
        let bytes: [UInt8]
        var offset = 0
        let wait: LoopWait<Void>
        init(_ bytes: [UInt8], _ wait: LoopWait<Void>) {
            self.bytes = bytes
            self.wait = wait
        }
    }

    init(_ connection: Connection, loop: EventLoop) {
        self.connection = connection
        self.loop = loop
    }

    deinit { watcher?.cancel() }

    private var isClosed: Bool { connection.isClosed }

    // MARK: Reading

    func read(_ max: Int, _ wait: LoopWait<[UInt8]>) {
        guard !isClosed else { return wait.succeed([]) }
        reads.append((max, wait))
        wait.onCancel = { [weak self, wait] in
            guard let self else { return }
            reads.removeAll { $0.wait === wait }
            updateWatcher()
        }
        if reads.count == 1 { readAvailable() } else { updateWatcher() }
    }

    private func readAvailable() {
        while let head = reads.first, !isClosed {
            var buffer = [UInt8](repeating: 0, count: head.max)
            let n = buffer.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
            }
            reads.removeFirst()
            if n < 0 {
                head.wait.fail(ClusterError(errno: errno, syscall: "read"))
            } else {
                buffer.removeSubrange(n...)
                head.wait.succeed(buffer)
            }
        }
        updateWatcher()
    }

    // MARK: Writing

    func write(_ bytes: [UInt8], _ wait: LoopWait<Void>) {
        if isClosed {
            return wait.fail(ClusterError(code: "ERR_STREAM_DESTROYED", message: "Cannot call write after a stream was destroyed"))
        }
        if ending {
            return wait.fail(ClusterError(code: "ERR_STREAM_WRITE_AFTER_END", message: "write after end"))
        }
        let write = PendingWrite(bytes, wait)
        writes.append(write)
        // The closure holds the write until the wait resolves, which lets go of the closure.
        wait.onCancel = { [weak self, write] in self?.withdraw(write) }
        if writes.count == 1 { flush() }
    }

    /// Sends from the head of the queue until it is empty or the socket is full.
    private func flush() {
        while let head = writes.first, !isClosed {
            if head.offset < head.bytes.count {
                let n = head.bytes.withUnsafeBytes { buffer in
                    send(connection.fd, buffer.baseAddress! + head.offset, buffer.count - head.offset, Int32(MSG_NOSIGNAL))
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK {
                        writeBlocked = true
                        updateWatcher()
                        return
                    }
                    // As Node destroys a socket whose write failed: every queued write learns why.
                    let error = ClusterError(errno: errno, syscall: "write")
                    let failed = writes
                    writes.removeAll()
                    failed.forEach { $0.wait.fail(error) }
                    destroy()
                    return
                }
                head.offset += n
                if head.offset < head.bytes.count { continue }
            }
            writes.removeFirst()
            head.wait.succeed(())
        }
        writeBlocked = false
        updateWatcher()
        if writes.isEmpty && !drained.isEmpty {
            let work = drained
            drained.removeAll()
            work.forEach { $0() }
        }
    }

    /// A write's task was cancelled: a write not started leaves the queue; one partly sent cut the
    /// stream, which can only be closed.
    private func withdraw(_ write: PendingWrite) {
        guard let index = writes.firstIndex(where: { $0 === write }) else { return }
        if write.offset > 0 {
            writes.remove(at: index)
            destroy()
        } else {
            writes.remove(at: index)
            if index == 0 { flush() }
        }
    }

    // MARK: Closing

    func close(_ wait: LoopWait<Void>) {
        guard !isClosed else { return wait.succeed(()) }
        ending = true
        wait.onCancel = { [weak self] in self?.destroy() }
        whenDrained { [weak self] in
            // Cancelled meanwhile: destroy() closed it already.
            guard let self, !isClosed else { return wait.succeed(()) }
            // The end of stream goes out even if the descriptor was also sent to another process.
            shutdown(connection.fd, Int32(SHUT_WR))
            destroy()
            wait.succeed(())
        }
    }

    /// Gives the descriptor away once the queued writes are out (`detach`, `handOff`); `closed` when it
    /// is gone first.
    func release<T: Sendable>(_ wait: LoopWait<T>, closed: T, _ take: @escaping (Connection) -> T) {
        guard !isClosed else { return wait.succeed(closed) }
        wait.onCancel = { [weak self] in self?.destroy() }
        whenDrained { [weak self] in
            guard let self, !isClosed else { return wait.succeed(closed) }
            stopWatching()
            let value = take(connection)
            finishReads()
            wait.succeed(value)
        }
    }

    private func whenDrained(_ work: @escaping () -> Void) {
        if writes.isEmpty { work() } else { drained.append(work) }
    }

    /// Closes at once (Node's `socket.destroy()`): queued writes fail, pending reads see end of stream.
    func destroy() {
        stopWatching()
        if !isClosed { connection.close() }
        let failed = writes
        writes.removeAll()
        failed.forEach { $0.wait.fail(ClusterError(code: "ERR_STREAM_DESTROYED", message: "Cannot call write after a stream was destroyed")) }
        finishReads()
        let work = drained
        drained.removeAll()
        work.forEach { $0() }
    }

    private func finishReads() {
        let waiting = reads
        reads.removeAll()
        waiting.forEach { $0.wait.succeed([]) }
    }

    // MARK: The watcher

    /// Watches for what the waiting operations need, and keeps the loop alive only while one waits.
    private func updateWatcher() {
        guard !isClosed else { return stopWatching() }
        let reading = !reads.isEmpty
        guard reading || writeBlocked || watcher != nil else { return }
        let w: Watcher
        if let watcher {
            w = watcher
        } else {
            do throws(ClusterError) {
                w = try loop.watch(connection.fd, referenced: false) { [weak self] in self?.readable() }
            } catch {
                // The loop cannot watch this connection: every waiting operation learns why, and it closes.
                let waiting = reads
                reads.removeAll()
                waiting.forEach { $0.wait.fail(error) }
                let failed = writes
                writes.removeAll()
                failed.forEach { $0.wait.fail(error) }
                destroy()
                return
            }
        }
        watcher = w
        w.setReading(reading)
        w.setWritable(writeBlocked ? { [weak self] in self?.flush() } : nil)
        if reading || writeBlocked { w.ref() } else { w.unref() }
    }

    private func readable() {
        if !reads.isEmpty {
            readAvailable()
        } else if writeBlocked {
            // A hang-up or error (reported even while not reading): the write learns it from send().
            flush()
        } else {
            // A hang-up nobody waits for would be reported on every turn of the loop: stop watching
            // until an operation needs the watcher again (its syscall then reports the hang-up itself).
            stopWatching()
        }
    }

    private func stopWatching() {
        watcher?.cancel()
        watcher = nil
    }
}
