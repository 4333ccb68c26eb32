import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

/// Counts of outcomes over a run.
public struct Summary: Sendable {
    /// Specs in the run (before repetition).
    public var specs = 0
    /// How many times each spec ran.
    public var repeats = 1
    /// Results by outcome.
    public var passed = 0, failed = 0, skipped = 0, errors = 0, xfailed = 0, xpassed = 0
    /// Results that came as expected only on a retry.
    public var retried = 0
    /// Specs not run because they describe Node versions other than the one the implementation follows.
    public var otherVersions = 0
    /// Wall time of the whole run.
    public var duration: Duration = .zero

    mutating func count(_ o: Outcome) {
        switch o {
        case .pass: passed += 1
        case .fail: failed += 1
        case .skip: skipped += 1
        case .error: errors += 1
        case .xfail: xfailed += 1
        case .xpass: xpassed += 1
        }
    }

    /// The process exit code: 0 all as expected (known deviations included), 1 a spec failed or passed
    /// unexpectedly, 3 the harness or the implementation broke.
    public var exitCode: Int32 { errors > 0 ? 3 : (failed > 0 || xpassed > 0) ? 1 : 0 }

    /// "N passed, N failed, …" with the known-deviation counts when there are any.
    public var counts: String {
        var parts = ["\(passed) passed", "\(failed) failed", "\(skipped) skipped", "\(errors) errors"]
        if xfailed > 0 || xpassed > 0 { parts += ["\(xfailed) expected failures", "\(xpassed) unexpected passes"] }
        if retried > 0 { parts.append("\(retried) as expected only after a retry") }
        if otherVersions > 0 { parts.append("\(otherVersions) not run (they describe other Node versions)") }
        return parts.joined(separator: ", ")
    }
}

/// Receives results as they complete. Calls are serialised by the runner.
public protocol Reporter: Sendable {
    /// The run is about to start.
    func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int)
    /// One spec run ended (`iteration` counts from 1).
    func result(_ result: SpecResult, iteration: Int)
    /// The run ended.
    func end(_ summary: Summary)
}

/// Runs specs against one implementation, several at a time, each in its own process group.
public struct SuiteRunner: Sendable {
    /// The implementation under test.
    public var implementation: Implementation
    /// What its handshake reported.
    public var info: ImplementationInfo
    /// Options for every spec.
    public var options: RunOptions
    /// Specs run at once.
    public var jobs: Int
    /// How many times each spec runs.
    public var repeats: Int
    /// The implementation's known deviations.
    public var expectations: Expectations

    /// A runner for this implementation.
    public init(implementation: Implementation, info: ImplementationInfo, options: RunOptions, jobs: Int, repeats: Int,
                expectations: Expectations = Expectations()) {
        self.implementation = implementation
        self.info = info
        self.options = options
        self.jobs = max(1, jobs)
        self.repeats = max(1, repeats)
        self.expectations = expectations
    }

    /// The skip reason when the implementation lacks a feature the spec needs.
    public func skipReason(_ spec: Spec) -> String? {
        let missing = spec.features.filter { !info.features.contains($0) }
        return missing.isEmpty ? nil : "the implementation does not support: \(missing.joined(separator: ", "))"
    }

    /// Runs one spec, judged against the implementation's expectations; an unexpected failure or error is
    /// run again up to `options.retries` times, and an expected result then stands with the earlier
    /// failures recorded (`failedAttempts`), so that flakiness stays visible without failing the run.
    public func run(_ spec: Spec) -> SpecResult {
        var result = runOnce(spec)
        var failures: [String] = []
        while [.fail, .error].contains(result.outcome), failures.count < options.retries {
            failures.append(result.messages.first ?? result.outcome.name)
            result = runOnce(spec)
        }
        if !failures.isEmpty && ![.fail, .error].contains(result.outcome) {
            result.failedAttempts = failures
            result.messages.append(contentsOf: failures.enumerated().map { "attempt \($0.offset + 1) failed: \($0.element)" })
        }
        return result
    }

    /// Why a spec does not apply: it describes Node versions that exclude the one the implementation follows.
    public func otherVersionReason(_ spec: Spec) -> String? {
        guard let range = spec.nodeVersions, !info.follows(spec) else { return nil }
        return "the spec describes Node \(range); \(info.name) follows Node \(info.node)"
    }

    /// Runs one spec once, judged against the implementation's expectations.
    func runOnce(_ spec: Spec) -> SpecResult {
        let deviation = expectations.deviations[spec.id]
        if let reason = otherVersionReason(spec) ?? skipReason(spec) ?? (deviation?.expected == .skip ? "expected: \(deviation!.reason)" : nil) {
            return SpecResult(id: spec.id, location: spec.location, outcome: .skip, messages: [reason], logTail: [],
                              stderrTail: "", duration: .zero, events: [])
        }
        var result = SpecRun(spec: spec, implementation: implementation, options: options).run()
        // Invariant violations the expectations file states as implementation-wide are waived: the spec
        // then reports its own outcome, labelled with them. Any other violation fails it.
        let violated = Set(result.invariantViolations.map(\.invariant))
        if !violated.isEmpty, violated.allSatisfy({ expectations.invariants[$0] != nil }), let own = result.specOutcome {
            result.waivedInvariants = Invariant.allCases.filter(violated.contains)
            result.messages.removeAll { m in result.invariantViolations.contains { $0.message == m } }
            result.messages.append(contentsOf: result.waivedInvariants.map { "known invariant deviation, \($0.rawValue): \(expectations.invariants[$0]!.reason)" })
            result.outcome = own
        }
        let judged = expectations.judge(spec.id, result.outcome)
        if judged != result.outcome, let deviation {
            result.messages.insert(judged == .xpass ? "passed, but expected to fail: \(deviation.reason)" : "expected: \(deviation.reason)", at: 0)
            result.outcome = judged
        }
        return result
    }

    /// Runs every spec `repeats` times with `jobs` in parallel (and the known failures in a lane of as many, see
    /// `run(_:jobs:)`) and reports each result; returns the summary.
    /// A spec for other Node versions than the implementation follows is not run (counted in `otherVersions`).
    @discardableResult
    public func run(_ specs: [Spec], reporter: any Reporter) -> Summary {
        Self.run([Share(runner: self, specs: specs, reporter: reporter)], jobs: jobs)[0]
    }

    /// One implementation's part of a run over several (`matrix`): its runner, the specs and where its results go.
    public struct Share: Sendable {
        /// The runner of the implementation (its `jobs` is ignored: the run's pool is shared).
        public var runner: SuiteRunner
        /// The specs to run, before the Node-version filter.
        public var specs: [Spec]
        /// Receives this implementation's results, begin and end.
        public var reporter: any Reporter

        /// A share of a run.
        public init(runner: SuiteRunner, specs: [Spec], reporter: any Reporter) {
            self.runner = runner
            self.specs = specs
            self.reporter = reporter
        }
    }

    /// Runs several implementations' specs from one pool of `jobs` threads, implementation after implementation, so
    /// that one's last slow specs overlap the next one's first, and their known failures (the expectations' `fail` and
    /// `flaky`) from a second lane of `jobs`; each share gets its own reporter calls (begin, its results, end when its
    /// last spec ends) and summary, whose duration runs from its first spec's start to its last's end.
    public static func run(_ shares: [Share], jobs: Int) -> [Summary] {
        struct Column {
            var summary = Summary()
            var remaining: Int
            var started: ContinuousClock.Instant?
        }
        let filtered = shares.map { share in share.specs.filter(share.runner.info.follows) }
        // Two lanes of `jobs` threads each: the specs an expectations file says fail (or may), which mostly wait out a
        // deadline and so hold no core, and the others. A known failure then never keeps a spec that works from a core.
        let lanes = [true, false].map { knownFailures in
            shares.indices.flatMap { index in
                let deviations = shares[index].runner.expectations.deviations
                let chosen = filtered[index].filter { spec in
                    [.fail, .flaky].contains(deviations[spec.id]?.expected) == knownFailures
                }
                return (1...shares[index].runner.repeats).flatMap { iteration in chosen.map { (index, iteration, $0) } }
            }
        }
        let columns = Mutex(shares.indices.map { i in
            var c = Column(remaining: filtered[i].count * shares[i].runner.repeats)
            c.summary.specs = filtered[i].count
            c.summary.otherVersions = shares[i].specs.count - filtered[i].count
            c.summary.repeats = shares[i].runner.repeats
            return c
        })
        let jobs = max(1, jobs)
        for (i, share) in shares.enumerated() {
            share.reporter.begin(implementation: share.runner.info, specs: filtered[i].count, repeats: share.runner.repeats, jobs: jobs)
        }
        let started = ContinuousClock.now
        // A share with no spec to run ends at once.
        for i in shares.indices where filtered[i].isEmpty {
            shares[i].reporter.end(columns.withLock { $0[i].summary })
        }
        let group = DispatchGroup()
        for work in lanes where !work.isEmpty {
            let next = Atomic<Int>(0)
            for _ in 0..<min(jobs, work.count) {
                group.enter()
                Thread.detachNewThread {
                    while true {
                        let i = next.add(1, ordering: .sequentiallyConsistent).oldValue
                        guard i < work.count else { break }
                        let (index, iteration, spec) = work[i]
                        let share = shares[index]
                        columns.withLock { c in if c[index].started == nil { c[index].started = .now } }
                        let result = share.runner.run(spec)
                        // Reporter calls of one share are serialised by the lock; its end comes after its last result.
                        columns.withLock { c in
                            c[index].summary.count(result.outcome)
                            if !result.failedAttempts.isEmpty { c[index].summary.retried += 1 }
                            share.reporter.result(result, iteration: iteration)
                            c[index].remaining -= 1
                            if c[index].remaining == 0 {
                                c[index].summary.duration = .now - (c[index].started ?? started)
                                share.reporter.end(c[index].summary)
                            }
                        }
                    }
                    group.leave()
                }
            }
        }
        group.wait()
        return columns.withLock { $0.map(\.summary) }
    }
}
