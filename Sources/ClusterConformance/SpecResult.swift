import ClusterSpec

/// The outcome of one spec against one implementation.
public enum Outcome: Sendable, Equatable {
    /// Every expectation held and every invariant held.
    case pass
    /// An expectation or an invariant (timeout, orphan, failed command) did not hold.
    case fail
    /// The implementation lacks a feature the spec needs, or its expectations file says so.
    case skip
    /// The harness or the implementation broke: could not start, protocol violation.
    case error
    /// It failed, as the implementation's expectations file says it does.
    case xfail
    /// It passed, although the expectations file says it fails: the file should shrink.
    case xpass

    /// The lowercase name used in reports.
    public var name: String {
        switch self {
        case .pass: "pass"
        case .fail: "fail"
        case .skip: "skip"
        case .error: "error"
        case .xfail: "xfail"
        case .xpass: "xpass"
        }
    }
}

/// What one run of one spec produced.
public struct SpecResult: Sendable {
    /// The spec's id.
    public var id: String
    /// Where the spec is.
    public var location: SourceLocation
    /// The outcome.
    public var outcome: Outcome
    /// Why it did not pass (failed expectations, invariants, errors), or why it was skipped.
    public var messages: [String]
    /// The last lines of the event log.
    public var logTail: [String]
    /// The last lines of the implementation's stderr.
    public var stderrTail: String
    /// Wall time.
    public var duration: Duration
    /// The events observed (for the jsonl report).
    public var events: [Event]
    /// The runner's own invariants that did not hold (judged apart from the spec's expectations).
    public var invariantViolations: [InvariantViolation] = []
    /// The outcome of the spec's own steps and expectations, whatever the invariants say.
    public var specOutcome: Outcome? = nil
    /// Invariants that did not hold but that the implementation's expectations file states as a known,
    /// implementation-wide deviation: the outcome is then the spec's own (`pass · orphans`).
    public var waivedInvariants: [Invariant] = []
    /// The first message of each earlier attempt that failed unexpectedly (with `RunOptions.retries`).
    public var failedAttempts: [String] = []

    /// The outcome as a matrix shows it: `pass · orphans` when a known invariant deviation was waived,
    /// `pass · retried` when an earlier attempt failed.
    public var label: String {
        ([outcome.name] + waivedInvariants.map(\.rawValue) + (failedAttempts.isEmpty ? [] : ["retried"])).joined(separator: " · ")
    }
}

/// An invariant the runner checks on every spec, whatever the spec says (DESIGN.md).
public enum Invariant: String, Sendable, Hashable, CaseIterable {
    /// Every process the implementation reported is gone soon after the primary exits.
    case orphans
    /// The primary exits when told to shut down.
    case shutdown
}

/// One invariant that did not hold in a run.
public struct InvariantViolation: Sendable, Hashable {
    /// Which invariant.
    public var invariant: Invariant
    /// What was seen.
    public var message: String
}

/// Settings that apply to every spec of a run.
public struct RunOptions: Sendable {
    /// Multiplies every time budget.
    public var timeoutScale: Double = 1
    /// How long processes may outlive the primary before they count as orphans, in milliseconds.
    public var orphanGraceMs = 2000
    /// How many times a spec whose result is unexpected (a failure or an error) is run again; a later
    /// expected result stands, labelled `retried` and carrying the earlier failures.
    public var retries = 0

    /// Default options.
    public init() {}
}

/// A failure that ends a spec's steps early.
struct StepFailure: Error {
    var outcome: Outcome
    var message: String
}
