import ClusterSpec
import Foundation
import SystemSupport

/// One line of the log: an event written by a process of the implementation, or added by the runner.
public struct Event: Sendable {
    /// The event's fields.
    public var fields: JSONObject
    /// The line as the implementation wrote it (or as the runner serialised its own event).
    public var line: String

    /// An event with these fields.
    public init(fields: JSONObject, line: String? = nil) {
        self.fields = fields
        self.line = line ?? JSONValue.object(fields).jsonText
    }

    /// The value of a field.
    public subscript(field: String) -> JSONValue? { fields[field] }
}

/// The ordered log of a spec run, shared by the threads that observe the implementation.
///
/// All waiting in a run goes through this one condition: new events, a process exit, a control
/// connection and a protocol violation all wake the waiters, which re-check their own condition.
final class EventLog: @unchecked Sendable {
    private let condition = NSCondition()
    private var events: [Event] = []
    private var bytes = 0
    private(set) var violation: String?

    /// Bounds that turn a flooding implementation into an outcome instead of exhausting the runner.
    static let maxEvents = 50_000
    static let maxBytes = 256 << 20

    /// Appends an event and wakes every waiter.
    func append(_ event: Event) {
        condition.lock()
        defer { condition.unlock(); condition.broadcast() }
        guard violation == nil else { return }
        events.append(event)
        bytes += event.line.utf8.count
        if events.count > Self.maxEvents || bytes > Self.maxBytes {
            violation = "the implementation flooded its output (more than \(Self.maxEvents) events or \(Self.maxBytes >> 20) MiB)"
        }
    }

    /// Records a protocol violation (the first one wins) and wakes every waiter.
    func fail(_ message: String) {
        condition.lock()
        if violation == nil { violation = message }
        condition.unlock()
        condition.broadcast()
    }

    /// Wakes every waiter so it re-checks its condition (used when other state changes).
    func poke() {
        condition.broadcast()
    }

    /// A copy of the log.
    func snapshot() -> [Event] {
        condition.lock()
        defer { condition.unlock() }
        return events
    }

    /// Waits until `check` returns a value, the deadline passes (nil), or a violation is recorded (nil).
    ///
    /// `check` is called under the lock with the events appended since its previous call, so that waiting
    /// for one more event never rescans the whole log.
    /// With `stopOnViolation` false it keeps waiting after a violation (used while shutting down).
    func wait<T>(until deadline: ContinuousClock.Instant, stopOnViolation: Bool = true,
                 _ check: (ArraySlice<Event>) -> T?) -> T? {
        condition.lock()
        defer { condition.unlock() }
        var seen = 0
        while true {
            if let value = check(events[seen...]) { return value }
            seen = events.count
            if stopOnViolation, violation != nil { return nil }
            let left = deadline - .now
            if left <= .zero { return nil }
            let seconds = Double(left.components.seconds) + Double(left.components.attoseconds) * 1e-18
            _ = condition.wait(until: Date(timeIntervalSinceNow: min(seconds, 0.25)))
        }
    }
}
