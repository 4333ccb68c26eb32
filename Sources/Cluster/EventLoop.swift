import CSupport
import Synchronization
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// A single-threaded event loop on epoll: the thread every cluster object of a process lives on.
///
/// Like Node's loop it runs while something keeps it alive: a *referenced* watcher (a listening server, a
/// worker's IPC channel, a child process) or pending work. `run()` returns when nothing is left, which is
/// how a worker that has disconnected and closed its servers ends on its own.
///
/// Everything except `submit(_:)` must be called on the loop's thread.
public final class EventLoop: @unchecked Sendable {
    private let epfd: Int32
    private let wakeFD: Int32
    private var watchers: [UInt64: Watcher] = [:]
    private var alwaysReady: [Watcher] = []
    private var nextWatcherID: UInt64 = 1
    private var referenced = 0
    private var ticks: [() -> Void] = []
    private let submitted = Mutex<[@Sendable () -> Void]>([])
    private let keepAlive = Atomic<Int>(0)
    private var stopRequested = false
    private var events = [epoll_event](repeating: epoll_event(), count: 64)
    private var lastTurnHadEvents = false

    /// How long the loop polls for the next event after a turn that did work, before it sleeps (libuv
    /// has no counterpart; Linux's `SO_BUSY_POLL` is the same idea). 50 µs by default, or
    /// `SWIFT_CLUSTER_BUSY_POLL_US`; zero sleeps at once. It costs at most that much CPU per burst of
    /// activity, and makes a round trip between processes several times faster.
    public var busyPoll: Duration = EventLoop.defaultBusyPoll

    private static let defaultBusyPoll: Duration = .microseconds(environmentValue("SWIFT_CLUSTER_BUSY_POLL_US").flatMap { Int($0) } ?? 50)

    /// A new loop; it runs on the thread that calls `run()`. Like libuv's `uv_loop_init` failing inside
    /// Node, a process that cannot get the two descriptors a loop needs (out of descriptors) cannot go on:
    /// that stops the process with the errno named.
    public init() {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        let epollErrno = errno
        wakeFD = epfd >= 0 ? csupport_eventfd() : -1
        let wakeErrno = errno
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: 0))
        let added = epfd >= 0 && wakeFD >= 0 ? epoll_ctl(epfd, EPOLL_CTL_ADD, wakeFD, &event) : 0
        precondition(epfd >= 0 && wakeFD >= 0 && added == 0,
                     "cannot create an event loop: \(errnoName(epfd < 0 ? epollErrno : wakeFD < 0 ? wakeErrno : errno))")
    }

    // Watchers hold their loop, so a loop is only released once none is registered.
    deinit {
        close(wakeFD)
        close(epfd)
    }

    // MARK: - Watchers

    /// Watches a descriptor; `onReadable` runs on the loop while it is readable (level-triggered).
    /// A referenced watcher keeps the loop running. A `lastInBatch` watcher runs after the others that
    /// became ready in the same wake-up: epoll's order within a batch need not follow the order in which
    /// things happened, and a round-robin primary must read the workers' acknowledgements before it
    /// accepts the next connection.
    /// - Throws: the errno of `epoll_ctl` (`ENOMEM`, `ENOSPC` when the per-user watch limit is reached,
    ///   `EBADF` for a closed descriptor).
    public func watch(_ fd: Int32, referenced: Bool = true, lastInBatch: Bool = false,
                      onReadable: @escaping () -> Void) throws(ClusterError) -> Watcher {
        let id = nextWatcherID
        var event = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: id))
        var pollable = true
        if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event) != 0 {
            // epoll refuses regular files and some devices (/dev/null as stdin) with EPERM; POSIX says they
            // are always readable, so they are called on every turn of the loop. Anything else is an error.
            guard errno == EPERM else { throw ClusterError(errno: errno, syscall: "epoll_ctl") }
            pollable = false
        }
        nextWatcherID += 1
        let w = Watcher(loop: self, id: id, fd: fd, onReadable: onReadable)
        w.lastInBatch = lastInBatch
        w.pollable = pollable
        watchers[id] = w
        if !pollable { alwaysReady.append(w) }
        if referenced { w.ref() }
        return w
    }

    fileprivate func update(_ w: Watcher) {
        guard w.pollable, !w.cancelled else { return }
        var mask: UInt32 = w.reading ? EPOLLIN.rawValue : 0
        if w.onWritable != nil { mask |= EPOLLOUT.rawValue }
        var event = epoll_event(events: mask, data: epoll_data_t(u64: w.id))
        if epoll_ctl(epfd, EPOLL_CTL_MOD, w.fd, &event) != 0 {
            // Only a descriptor closed behind the watcher's back (EBADF, ENOENT) or ENOMEM gets here. The
            // watcher is polled on every turn from now on, so its owner reaches the descriptor's own error
            // (or its readiness) instead of waiting for an event that cannot come.
            w.pollable = false
            epoll_ctl(epfd, EPOLL_CTL_DEL, w.fd, nil)
            alwaysReady.append(w)
        }
    }

    fileprivate func remove(_ w: Watcher) {
        // A failed EPOLL_CTL_DEL means the descriptor is already closed, which removed it from the set.
        if w.pollable { _ = epoll_ctl(epfd, EPOLL_CTL_DEL, w.fd, nil) } else { alwaysReady.removeAll { $0 === w } }
        watchers[w.id] = nil
    }

    fileprivate func adjustReferences(_ delta: Int) { referenced += delta }

    // MARK: - Work

    /// Runs `work` on the loop after the current callback returns (Node's `process.nextTick`).
    public func nextTick(_ work: @escaping () -> Void) {
        ticks.append(work)
    }

    /// Runs `work` on the loop from any thread.
    public func submit(_ work: @escaping @Sendable () -> Void) {
        submitted.withLock { $0.append(work) }
        var one: UInt64 = 1
        _ = write(wakeFD, &one, 8)
    }

    /// Keeps the loop running while an outside caller (such as an async API user) holds it.
    public func retain() { keepAlive.add(1, ordering: .sequentiallyConsistent) }

    /// Balances `retain()`.
    public func release() {
        keepAlive.subtract(1, ordering: .sequentiallyConsistent)
        submit {}
    }

    /// Whether something keeps the loop running (what `run()` checks).
    var isAlive: Bool {
        (referenced > 0 || !ticks.isEmpty || keepAlive.load(ordering: .sequentiallyConsistent) > 0
            || !submitted.withLock { $0.isEmpty })
    }

    /// Runs callbacks on the calling thread until nothing keeps the loop alive, or `stop()`.
    public func run() {
        stopRequested = false
        runTicks()
        while isAlive && !stopRequested {
            turn(timeout: ticks.isEmpty && alwaysReady.isEmpty ? -1 : 0)
        }
    }

    /// Runs callbacks on the calling thread until `condition` holds (checked after every callback
    /// batch) or `deadline` passes, whether or not anything keeps the loop alive; returns whether the
    /// condition holds. For code that waits for something specific, such as a test (Node has no
    /// counterpart: its loop is never driven by hand).
    @discardableResult
    public func run(until condition: () -> Bool, deadline: ContinuousClock.Instant) -> Bool {
        runTicks()
        while !condition() {
            let left = deadline - .now
            if left <= .zero { return false }
            let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            turn(timeout: ticks.isEmpty && alwaysReady.isEmpty ? Int32(clamping: ms) : 0)
        }
        return true
    }

    /// Makes `run()` return after the callback that is running (from any thread); Node's nearest is
    /// `process.exit()` without the exit.
    public func stop() {
        submit { [self] in stopRequested = true }
    }

    /// One wait for readiness (at most `timeout` ms; -1: no limit) and the callbacks it calls for.
    private func turn(timeout: Int32) {
        var n = Int32(0)
        // After a turn that did work, the next event often follows within microseconds (the answer to what
        // was just sent). Polling for a short while before sleeping keeps this CPU awake for it: waking a
        // sleeping CPU costs tens of microseconds, most of an IPC round trip, on a virtual machine above
        // all. The poll yields to any other runnable thread, so a busy CPU is not taken from others.
        if timeout != 0 && busyPoll > .zero && lastTurnHadEvents {
            let end = ContinuousClock.now + busyPoll
            repeat {
                n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), 0) }
                if n != 0 { break }
                sched_yield()
            } while ContinuousClock.now < end
        }
        if n == 0 {
            n = events.withUnsafeMutableBufferPointer { epoll_wait(epfd, $0.baseAddress, Int32($0.count), timeout) }
        }
        lastTurnHadEvents = n > 0
        if n < 0 {
            if errno == EINTR { return }
            fatalError("epoll_wait: \(String(cString: strerror(errno)))")
        }
        // Readiness is collected first: a callback may cancel another watcher of the same batch.
        var ready = (0..<Int(n)).map { (events[$0].data.u64, events[$0].events) }
        if ready.count > 1 {
            ready = ready.filter { watchers[$0.0]?.lastInBatch != true } + ready.filter { watchers[$0.0]?.lastInBatch == true }
        }
        for (id, mask) in ready {
            if id == 0 {
                var value: UInt64 = 0
                _ = read(wakeFD, &value, 8)
                let work = submitted.withLock { w -> [@Sendable () -> Void] in
                    defer { w.removeAll() }
                    return w
                }
                for item in work {
                    item()
                    runTicks()
                }
                continue
            }
            guard let w = watchers[id], !w.cancelled else { continue }
            if mask & (EPOLLIN.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
                w.onReadable()
                runTicks()
            }
            if mask & EPOLLOUT.rawValue != 0, !w.cancelled, let writable = w.onWritable {
                writable()
                runTicks()
            }
        }
        for w in alwaysReady where !w.cancelled {
            if w.reading { w.onReadable() }
            runTicks()
            if !w.cancelled, let writable = w.onWritable {
                writable()
                runTicks()
            }
        }
        runTicks()
    }

    private func runTicks() {
        while !ticks.isEmpty {
            let batch = ticks
            ticks.removeAll()
            for t in batch { t() }
        }
    }
}

/// A descriptor watched by an event loop.
public final class Watcher {
    // Strong: a watcher outliving its loop's other users still needs the loop to cancel itself. The cycle
    // (the loop's table holds the watcher) ends at `cancel()`.
    let loop: EventLoop
    let id: UInt64
    /// The watched descriptor.
    public let fd: Int32
    var onReadable: () -> Void
    var onWritable: (() -> Void)?
    var reading = true
    var pollable = true
    var lastInBatch = false
    private(set) var cancelled = false
    private var isReferenced = false

    init(loop: EventLoop, id: UInt64, fd: Int32, onReadable: @escaping () -> Void) {
        self.loop = loop
        self.id = id
        self.fd = fd
        self.onReadable = onReadable
    }

    /// Keeps the loop alive while this watcher exists (Node's `ref()`).
    public func ref() {
        guard !isReferenced, !cancelled else { return }
        isReferenced = true
        loop.adjustReferences(1)
    }

    /// Lets the loop end even though this watcher exists (Node's `unref()`).
    public func unref() {
        guard isReferenced else { return }
        isReferenced = false
        loop.adjustReferences(-1)
    }

    /// Calls `body` when the descriptor is writable, until cleared with nil.
    public func setWritable(_ body: (() -> Void)?) {
        if body == nil && onWritable == nil { return }
        onWritable = body
        loop.update(self)
    }

    /// Stops (false) or resumes (true) calling `onReadable` when the descriptor is readable, for a reader
    /// that must not take more input for now (Node's `socket.pause()` / `resume()`). A hang-up or error
    /// is still reported to `onReadable`.
    public func setReading(_ on: Bool) {
        guard on != reading else { return }
        reading = on
        loop.update(self)
    }

    /// Stops watching (the descriptor itself is not closed).
    public func cancel() {
        guard !cancelled else { return }
        unref()
        cancelled = true
        loop.remove(self)
    }
}
