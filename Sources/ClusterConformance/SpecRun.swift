import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs one spec against one implementation: prepares what the spec's `setup` asks for, starts the
/// fixture, drives the steps, enforces the invariants and judges the log.
final class SpecRun: @unchecked Sendable {
    let spec: Spec
    let implementation: Implementation
    let options: RunOptions
    let log = EventLog()
    /// Events being reassembled from part lines, by process.
    let parts = Mutex(EventAssembler())
    /// The longest unframed line (protocol §1: 4096 bytes with its newline).
    static let maxLine = 4096
    let acks = Mutex<[Int: String]>([:])
    let sawHello = Atomic<Bool>(false)
    var variables: [String: JSONValue] = [:]
    var forked: [Int] = []
    var servers: [String: String] = [:]
    var held: [String: [Int32]] = [:]
    let backgroundFDs = Mutex<[String: [Int32]]>([:])
    var backgroundThreads = 0
    let backgroundDone = Atomic<Int>(0)
    var seq = 0
    var deadline: ContinuousClock.Instant = .now
    var process: FixtureProcess?
    var control: ControlServer?
    var tmpdir = ""
    var inheritedFDs: [Int32] = []
    var currentStep = "start-up"

    init(spec: Spec, implementation: Implementation, options: RunOptions) {
        self.spec = spec
        self.implementation = implementation
        self.options = options
    }

    func scaled(_ ms: Int) -> Duration { .milliseconds(Int(Double(ms) * options.timeoutScale)) }

    func run() -> SpecResult {
        let started = ContinuousClock.now
        deadline = started + scaled(spec.timeout)
        var outcome = Outcome.pass
        var messages: [String] = []
        do {
            try prepare()
            try handshake()
            for (i, step) in spec.steps.enumerated() {
                currentStep = "step \(i + 1) (\(step.name) at \(step.location))"
                try perform(step)
            }
            currentStep = "the end of the spec"
        } catch let failure as StepFailure {
            outcome = failure.outcome
            messages.append(failure.message)
        } catch {
            outcome = .error
            messages.append("\(error)")
        }
        // After a timeout or a protocol violation the implementation is not trusted to shut down politely.
        let abandon = outcome == .error || messages.contains { $0.hasPrefix("timed out") }
        let invariantFailures = finish(polite: !abandon)
        let unfinished = parts.withLock { $0.unfinished }
        if !unfinished.isEmpty {
            log.fail("process\(unfinished.count == 1 ? "" : "es") \(unfinished.map(String.init).joined(separator: ", ")) ended in the middle of a framed event (no part with last: true)")
        }
        let events = log.snapshot()
        if outcome != .error, let violation = log.violation {
            outcome = .error
            messages.append("protocol violation: \(violation)")
        }
        // The spec's own expectations are judged whatever the invariants say, so that an implementation-wide
        // invariant deviation (stated once in an expectations file) cannot hide a spec's own result.
        if outcome == .pass {
            let failures = Judge.failures(of: spec.expect, in: events, variables: variables)
            if !failures.isEmpty {
                outcome = .fail
                messages += failures.map(\.description)
            }
        }
        let specOutcome = outcome
        if (outcome == .pass || outcome == .fail) && !invariantFailures.isEmpty {
            outcome = .fail
            messages += invariantFailures.map(\.message)
        }
        var result = SpecResult(id: spec.id, location: spec.location, outcome: outcome, messages: messages,
                                logTail: events.suffix(20).map { Judge.shortened($0.line, limit: 600) }, stderrTail: process?.stderrText ?? "",
                                duration: .now - started, events: events)
        result.invariantViolations = invariantFailures
        result.specOutcome = specOutcome
        return result
    }
}


/// The fixture protocol version this runner speaks (`fixtures/PROTOCOL.md`).
public let protocolVersion = 2
