import ClusterJSON
import Synchronization
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

// The async/await face of the cluster. The cluster itself lives on one event loop thread, where its
// callbacks run in order (that is what gives Node's semantics); these types run that loop on a thread of
// its own and hand results and events to Swift concurrency.
//
// Three rules hold for every async API here:
// - Every wait is a `LoopWait`: it is resolved on the loop, once, by the operation or by the cancellation
//   of the waiting task, whichever comes first; cancellation first undoes what the wait registered on
//   the loop, then throws `ClusterError` code `ABORT_ERR` (or, where an API does not throw, returns at
//   once, as its doc comment says).
// - Every stream of events is an `EventStream` with a bounded buffer (`BufferPolicy`): what the bound
//   drops is counted (`dropped`), and the stream finishes when its source ends.
// - Dropping a public async object never stops what Node keeps running (a listening server, a worker)
//   and never leaks what nobody can reach any more (a connection nobody holds is closed).

/// A value that may only be touched on its event loop's thread, passed across concurrency domains
/// (NIO's `NIOLoopBound`).
struct LoopBound<Value>: @unchecked Sendable {
    let value: Value
    let loop: EventLoop
}

extension ClusterError {
    /// What a cancelled wait throws: Node's `AbortError` (code `ABORT_ERR`), as an aborted `AbortSignal`
    /// makes Node's promise APIs reject.
    static let aborted = ClusterError(code: "ABORT_ERR", message: "The operation was aborted")
}

// MARK: - Waiting on the loop

/// One task waiting for something that happens on the loop. Loop thread only, except that it is created
/// and handed over elsewhere; resolved at most once, by the operation (`succeed`, `fail`) or by the
/// cancellation of the waiting task, which first runs `onCancel` to undo the registration.
final class LoopWait<Value: Sendable>: @unchecked Sendable {
    private var continuation: CheckedContinuation<Result<Value, ClusterError>, Never>?
    private var cancelled = false
    /// Whether the wait has been resolved (the caller has its answer, or will have it at once).
    private(set) var isDone = false
    /// Undoes what the operation registered; runs on the loop when the task is cancelled first.
    var onCancel: (() -> Void)?

    /// Resolves the wait with a value (ignored once resolved).
    func succeed(_ value: Value) { resolve(.success(value)) }

    /// Resolves the wait with an error (ignored once resolved).
    func fail(_ error: ClusterError) { resolve(.failure(error)) }

    func resolve(_ result: Result<Value, ClusterError>) {
        guard !isDone else { return }
        isDone = true
        onCancel = nil
        // Set by `begin` before the operation starts, so the operation can only resolve after it.
        continuation?.resume(returning: result)
        continuation = nil
    }

    /// The operation starts: false when the task was cancelled before (the caller is answered already).
    fileprivate func begin(_ k: CheckedContinuation<Result<Value, ClusterError>, Never>) -> Bool {
        if cancelled {
            isDone = true
            k.resume(returning: .failure(.aborted))
            return false
        }
        continuation = k
        return true
    }

    fileprivate func cancel() {
        guard !isDone else { return }
        cancelled = true
        guard continuation != nil else { return }  // not begun: `begin` answers
        let undo = onCancel
        onCancel = nil
        undo?()
        resolve(.failure(.aborted))
    }
}

extension EventLoop {
    /// Runs `start` on the loop with a wait that the calling task awaits; cancelling the task resolves
    /// the wait with `ABORT_ERR` after running its `onCancel`. A task cancelled before `start` ran is
    /// answered `ABORT_ERR` and `start` never runs.
    func wait<Value: Sendable>(_ start: @escaping (LoopWait<Value>) -> Void) async -> Result<Value, ClusterError> {
        let wait = LoopWait<Value>()
        let body = LoopBound(value: start, loop: self)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (k: CheckedContinuation<Result<Value, ClusterError>, Never>) in
                submit {
                    guard wait.begin(k) else { return }
                    body.value(wait)
                }
            }
        } onCancel: { [self] in
            submit { wait.cancel() }
        }
    }

    /// Runs a send that may throw on the loop (`send(_:handle:)` of either side): whether it was sent,
    /// false when the task was cancelled before it ran (nothing was sent), or its error.
    func send(_ body: @escaping () throws(ClusterError) -> Bool) async throws(ClusterError) -> Bool {
        let result: Result<Bool, ClusterError> = await perform {
            do throws(ClusterError) { return .success(try body()) } catch { return .failure(error) }
        }.flatMap { $0 }
        switch result {
        case .success(let sent): return sent
        case .failure(let e) where e.code == ClusterError.aborted.code: return false
        case .failure(let e): throw e
        }
    }

    /// Runs `body` on the loop and returns its result, or `ABORT_ERR` when the calling task is cancelled
    /// before it ran (it then never runs).
    func perform<T: Sendable>(_ body: @escaping () -> T) async -> Result<T, ClusterError> {
        await wait { (w: LoopWait<T>) in w.succeed(body()) }
    }
}

// MARK: - Event streams

/// How many events a stream keeps for a consumer that has not taken them yet, and which it drops beyond
/// that (Node's emitters have no bound: a listener is called at once; here the consumer may be late, so
/// the buffer is bounded and what it drops is counted in `EventStream.dropped`).
public struct BufferPolicy: Sendable, Hashable {
    /// Which events go when the buffer is full.
    public enum Overflow: Sendable, Hashable {
        /// The new event is dropped; the buffer keeps the oldest (the start of the story).
        case dropNewest
        /// The oldest buffered event is dropped; the buffer keeps the latest.
        case dropOldest
    }

    /// The most events kept; at least 1.
    public var limit: Int
    /// Which events go beyond the limit.
    public var overflow: Overflow

    /// A buffer of at most `limit` events (at least 1) dropping as `overflow` says.
    public init(limit: Int, overflow: Overflow = .dropNewest) {
        self.limit = max(1, limit)
        self.overflow = overflow
    }

    /// The default: 1,024 events, dropping new ones beyond that.
    public static let standard = BufferPolicy(limit: 1024)
}

/// A stream of cluster events with a bounded buffer (`BufferPolicy`): Node's event emitter as an async
/// sequence. One consumer iterates it; it finishes when its source ends (as its owner documents). An
/// event nobody takes before the buffer is full is dropped and counted in `dropped`, never lost silently.
public struct EventStream<Element: Sendable>: AsyncSequence, Sendable {
    /// Iterating never throws (Node has no counterpart).
    public typealias Failure = Never
    let base: AsyncStream<Element>
    let counter: DropCounter

    /// How many events the buffer's bound has dropped so far (Node has no counterpart: its emitters
    /// never drop).
    public var dropped: Int { counter.count.load(ordering: .relaxed) }

    /// The iterator (Node has no counterpart: `for await` takes it).
    public func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator()) }

    /// Iterates the stream's events (Node has no counterpart).
    public struct Iterator: AsyncIteratorProtocol {
        /// Iterating never throws (Node has no counterpart).
        public typealias Failure = Never
        var base: AsyncStream<Element>.Iterator

        /// The next event, or nil once the stream has finished (Node has no counterpart).
        public mutating func next() async -> Element? { await base.next() }

        /// The next event, or nil once the stream has finished (Node has no counterpart).
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Element? {
            await base.next(isolation: actor)
        }
    }

    /// A stream and the sink its source yields into.
    static func make(_ policy: BufferPolicy) -> (EventStream, EventSink<Element>) {
        let buffering: AsyncStream<Element>.Continuation.BufferingPolicy =
            policy.overflow == .dropNewest ? .bufferingOldest(policy.limit) : .bufferingNewest(policy.limit)
        let (stream, continuation) = AsyncStream<Element>.makeStream(bufferingPolicy: buffering)
        let counter = DropCounter()
        return (EventStream(base: stream, counter: counter), EventSink(continuation: continuation, counter: counter))
    }
}

final class DropCounter: Sendable {
    let count = Atomic<Int>(0)
}

/// The producing side of an `EventStream`.
struct EventSink<Element: Sendable>: Sendable {
    let continuation: AsyncStream<Element>.Continuation
    let counter: DropCounter

    /// Offers an event; one the bound drops is counted. One offered after the consumer went away is
    /// released (a connection then closes, a received handle's descriptor too).
    func yield(_ element: Element) {
        if case .dropped = continuation.yield(element) {
            counter.count.add(1, ordering: .relaxed)
        }
    }

    /// Ends the stream after the events already buffered.
    func finish() { continuation.finish() }
}

// MARK: - Start

/// Which side of the cluster this process is, for async code (Node's `cluster.isPrimary` /
/// `cluster.isWorker`).
public enum AsyncClusterRole: Sendable {
    /// The primary (`cluster.isPrimary`).
    case primary(AsyncPrimary)
    /// A worker (`cluster.isWorker`, with `cluster.worker`).
    case worker(AsyncWorker)
}

/// Starts the cluster on a loop thread of its own (Node's `cluster` module, for async code).
public enum AsyncCluster {
    /// Starts the runtime and returns this process's role; call once (Node: loading `node:cluster`).
    /// `events` bounds the primary's `events` stream, or the worker's `messages`.
    public static func start(events: BufferPolicy = .standard) -> AsyncClusterRole {
        let loop = EventLoop()
        // The loop lives as long as the process: every async object may submit work to it at any time,
        // and a wait submitted to a loop that has returned would never be answered.
        loop.retain()
        // The runtime is set up here, before the loop's thread exists: until `run()` starts nobody else
        // touches the loop, and starting the thread orders everything done here before it.
        let role: AsyncClusterRole
        switch ClusterRuntime.start(on: loop) {
        case .primary(let p): role = .primary(AsyncPrimary(p, events: events))
        case .worker(let w): role = .worker(AsyncWorker(w, messages: events))
        }
        startThread(LoopBound(value: (), loop: loop)) { $0.loop.run() }
        return role
    }
}

/// A closure handed to a new thread.
private final class ThreadStart: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Runs `body(value)` on a new detached thread.
func startThread<T>(_ value: LoopBound<T>, _ body: @escaping @Sendable (LoopBound<T>) -> Void) {
    let start = Unmanaged.passRetained(ThreadStart { body(value) }).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(&thread, nil, { raw in
        Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue().run()
        return nil
    }, start)
    precondition(rc == 0, "cannot start the event loop's thread: \(errnoName(rc))")
    pthread_detach(thread)
}

// MARK: - Messages

/// A user message and the handle sent with it, if any: the arguments of Node's `'message'` event
/// (`message`, `sendHandle`).
public struct Message: Sendable {
    /// The message (Node's `message`).
    public var value: JSONValue
    /// The descriptor sent with it (Node's `sendHandle`); it closes when the last reference goes, unless
    /// taken with `ReceivedHandle.take()`.
    public var handle: ReceivedHandle?

    /// A message with an optional handle (Node has no counterpart: its events pass the two apart).
    public init(_ value: JSONValue, handle: ReceivedHandle? = nil) {
        self.value = value
        self.handle = handle
    }
}
