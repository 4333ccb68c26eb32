import ClusterSpec
import Foundation
import Synchronization

/// How much of the suite each mutant faces.
public enum MutationMode: String, Sendable, Equatable {
    /// Every selected spec against every mutant: the full list of specs that kill each one.
    case full
    /// For CI: the specs that name the mutant's behaviour first, then the rest, stopping at the first kill; a
    /// survivor still faces every spec.
    case quick
}

/// Why a mutation run cannot start.
public struct MutationSetupError: Error, Sendable, CustomStringConvertible {
    /// True when the input is at fault (exit 2: a non-Node implementation, a mutant that breaks the fixture),
    /// false when the implementation itself cannot run (exit 3).
    public var badInput: Bool
    /// What is wrong.
    public var description: String
}

/// What a mutation run produced.
public struct MutationOutcome: Sendable {
    /// The report: the specs that killed each mutant, or none.
    public var report: MutationReport
    /// Specs whose result with the unmutated preload was unexpected (quick mode checks every spec that killed a
    /// mutant this way): when there is any, the preload path itself changes the result and the report proves nothing.
    public var baselineUnexpected: [SpecResult]
}

/// Runs the suite against mutants of a Node implementation (`fixtures/node-mutants/`), and against the unmutated
/// preload path that every result is checked against.
public struct MutationRunner: Sendable {
    /// The Node-family implementation, as its descriptor gives it (the runner adds the preload).
    public var implementation: Implementation
    /// What the baseline's handshake reported.
    public var info: ImplementationInfo
    /// Options for every spec; `retries` applies to baseline runs only (a flaky kill is still a kill).
    public var options: RunOptions
    /// Spec runs at once.
    public var jobs: Int
    /// The implementation's known deviations: a spec kills a mutant when its result is unexpected against them.
    public var expectations: Expectations
    /// The mutants and the baseline.
    public var set: MutantSet

    /// The text the preload path writes on the primary's stderr (support/preload.cjs), proving that it ran.
    public static let preloadMarker = "[node-mutants "

    /// Whether an outcome kills a mutant: whatever `run` counts as failing (a failure, an error, an unexpected pass).
    public static func kills(_ outcome: Outcome) -> Bool { [.fail, .error, .xpass].contains(outcome) }

    /// Checks that the mutants can run against `implementation` and returns a runner: a Node-family descriptor whose
    /// handshake, with the baseline preloaded, says `node` and shows the preload ran; and every mutant's handshake
    /// works (a mutant that breaks the fixture itself is bad input, not a kill).
    public static func prepare(implementation: Implementation, set: MutantSet, options: RunOptions, jobs: Int,
                               expectations: Expectations) -> Result<MutationRunner, MutationSetupError> {
        if let problem = implementation.mutationProblem { return .failure(MutationSetupError(badInput: true, description: problem)) }
        let info: ImplementationInfo
        switch handshake(implementation, preloading: set.baseline, options: options) {
        case .failure(let e): return .failure(MutationSetupError(badInput: false, description: "\(e)"))
        case .success(let (i, stderr)):
            guard i.name == "node" else {
                return .failure(MutationSetupError(badInput: true, description:
                    "'\(implementation.name)' answers the handshake as \(i.name) \(i.version), not node: the mutants are Node.js preload modules"))
            }
            guard stderr.contains(preloadMarker) else {
                return .failure(MutationSetupError(badInput: true, description:
                    "the runtime of '\(implementation.name)' (\(implementation.command[0])) did not run the preload \(set.baseline) given with --require: every mutant would survive unseen"))
            }
            info = i
        }
        let broken = Mutex<[String]>([])
        parallel(set.mutants.count, jobs: jobs) { i in
            let mutant = set.mutants[i]
            if case .failure(let e) = implementation.preloading(mutant.path).probe(options: options) {
                broken.withLock { $0.append("\(mutant.path): the mutant breaks the fixture's handshake, not a behaviour: \(e)") }
            }
        }
        let problems = broken.withLock { $0 }.sorted()
        guard problems.isEmpty else { return .failure(MutationSetupError(badInput: true, description: problems.joined(separator: "\n"))) }
        return .success(MutationRunner(implementation: implementation, info: info, options: options, jobs: max(1, jobs),
                                       expectations: expectations, set: set))
    }

    /// The handshake with `module` preloaded: what the implementation said (`Implementation.probe`), and the stderr of
    /// a second start, which shows whether the preload ran.
    static func handshake(_ implementation: Implementation, preloading module: String,
                          options: RunOptions) -> Result<(ImplementationInfo, String), ImplementationError> {
        let impl = implementation.preloading(module)
        let info: ImplementationInfo
        switch impl.probe(options: options) {
        case .failure(let e): return .failure(e)
        case .success(let i): info = i
        }
        let start = Spec(id: "handshake", description: "handshake", refs: [], basis: .observed, behaviours: [], features: [], from: nil,
                         comment: nil, timeout: 10_000, setup: Setup(), steps: [], expect: [],
                         location: SourceLocation(file: "(handshake)", mark: SourceMark(line: 1, column: 1)))
        return .success((info, SpecRun(spec: start, implementation: impl, options: options).run().stderrTail))
    }

    /// A spec runner for one preload module; `retries` as given.
    func runner(preloading module: String, retries: Int) -> SuiteRunner {
        var options = options
        options.retries = retries
        return SuiteRunner(implementation: implementation.preloading(module), info: info, options: options, jobs: jobs,
                           repeats: 1, expectations: expectations)
    }

    /// Runs `specs` (those for the Node version the implementation follows) with the unmutated preload, reporting each
    /// result; returns the summary and the unexpected results.
    public func runBaseline(_ specs: [Spec], reporter: any Reporter) -> (summary: Summary, unexpected: [SpecResult]) {
        let collector = ResultCollector()
        let summary = runner(preloading: set.baseline, retries: options.retries).run(specs, reporter: ReporterFan([reporter, collector]))
        let unexpected = collector.results.values.filter { Self.kills($0.outcome) }.sorted { $0.id < $1.id }
        return (summary, unexpected)
    }

    /// The order in which a mutant faces the specs: those that name its behaviour first, then the rest, in suite order.
    public static func order(_ specs: [Spec], for mutant: Mutant) -> [Int] {
        let naming = specs.indices.filter { specs[$0].behaviours.contains(mutant.behaviour) }
        let named = Set(naming)
        return naming + specs.indices.filter { !named.contains($0) }
    }

    /// Runs `specs` against each mutant, `jobs` spec runs at a time, and reports each mutant when it is done.
    ///
    /// Full mode runs every spec against every mutant, one mutant's specs after another's. Quick mode spreads the
    /// runs over the mutants and stops giving a mutant specs once one has killed it; each spec that killed a mutant
    /// is then run with the unmutated preload (with `retries`), so that a kill counts only where the preload path
    /// alone passes. Full mode expects the caller to have run the whole baseline first (`runBaseline`).
    public func run(_ mutants: [Mutant], specs: [Spec], mode: MutationMode,
                    progress: @escaping @Sendable (MutantResult, _ done: Int, _ total: Int) -> Void) -> MutationOutcome {
        let started = ContinuousClock.now
        // A spec for Node versions the implementation does not follow is not run, as in `SuiteRunner.run`.
        let specs = specs.filter(info.follows)
        let pool = MutationPool(mutants: mutants, orders: mutants.map { Self.order(specs, for: $0) }, mode: mode)
        let mutantRunners = mutants.map { runner(preloading: $0.path, retries: 0) }
        let baselineRunner = runner(preloading: set.baseline, retries: options.retries)
        let naming = mutants.map { m in specs.filter { $0.behaviours.contains(m.behaviour) }.count }

        @Sendable func finished(_ m: Int, _ state: MutationPool.MutantState, done: Int) {
            let result = MutantResult(name: mutants[m].name, behaviour: mutants[m].behaviour, summary: mutants[m].summary,
                                      killedBy: state.killers.sorted().map { specs[$0].id }, specsRun: state.ran,
                                      specsNamingBehaviour: naming[m], seconds: seconds(of: .now - (state.started ?? started)))
            progress(result, done, mutants.count)
        }

        parallel(jobs, jobs: jobs) { _ in
            while let unit = pool.next() {
                switch unit {
                case .baseline(let s):
                    pool.baselineDone(s, baselineRunner.run(specs[s]))
                case .mutant(let m, let s):
                    let result = mutantRunners[m].run(specs[s])
                    pool.mutantDone(m, s, kills: Self.kills(result.outcome), finished: finished)
                }
            }
        }

        let states = pool.states
        let results = mutants.indices.map { m in
            MutantResult(name: mutants[m].name, behaviour: mutants[m].behaviour, summary: mutants[m].summary,
                         killedBy: states[m].killers.sorted().map { specs[$0].id }, specsRun: states[m].ran,
                         specsNamingBehaviour: naming[m], seconds: seconds(of: (states[m].ended ?? .now) - (states[m].started ?? started)))
        }
        let report = MutationReport(implementation: info.name, version: info.version, mode: mode, specs: specs.count,
                                    results: results, seconds: seconds(of: .now - started))
        let unexpected = pool.baselineResults.filter { Self.kills($0.outcome) }.sorted { $0.id < $1.id }
        return MutationOutcome(report: report, baselineUnexpected: unexpected)
    }
}

func seconds(of d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

/// Runs `body(0..<count)` on `jobs` threads and returns when every call has.
func parallel(_ count: Int, jobs: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let next = Atomic<Int>(0)
    let group = DispatchGroup()
    for _ in 0..<max(1, min(jobs, count)) {
        group.enter()
        Thread.detachNewThread {
            while true {
                let i = next.add(1, ordering: .sequentiallyConsistent).oldValue
                guard i < count else { break }
                body(i)
            }
            group.leave()
        }
    }
    group.wait()
}

/// The work of a mutation run, handed out one spec run at a time to the runner's threads.
final class MutationPool: Sendable {
    /// One spec run.
    enum Unit {
        /// A spec with the unmutated preload (quick mode: a spec that killed a mutant).
        case baseline(Int)
        /// A spec against a mutant.
        case mutant(Int, Int)
    }

    /// Where one mutant is.
    struct MutantState {
        var order: [Int]
        var next = 0
        var inFlight = 0
        var killers: Set<Int> = []
        var ran = 0
        var reported = false
        var started: ContinuousClock.Instant?
        var ended: ContinuousClock.Instant?
    }

    struct State {
        var mutants: [MutantState]
        var done = 0
        var baselineQueue: [Int] = []
        var baselineSeen: Set<Int> = []
        var baselineResults: [SpecResult] = []
    }

    let mode: MutationMode
    let state: Mutex<State>

    init(mutants: [Mutant], orders: [[Int]], mode: MutationMode) {
        self.mode = mode
        state = Mutex(State(mutants: orders.map { MutantState(order: $0) }))
    }

    var states: [MutantState] { state.withLock { $0.mutants } }
    var baselineResults: [SpecResult] { state.withLock { $0.baselineResults } }

    /// Whether a mutant gets no more specs: all given, or (quick) one has killed it.
    private func exhausted(_ m: MutantState) -> Bool {
        m.next >= m.order.count || (mode == .quick && !m.killers.isEmpty)
    }

    /// The next spec run, or nil when there is none left to start.
    func next() -> Unit? {
        state.withLock { s in
            if !s.baselineQueue.isEmpty { return .baseline(s.baselineQueue.removeFirst()) }
            let open = s.mutants.indices.filter { !exhausted(s.mutants[$0]) }
            // Full: one mutant after another, all threads on it (its result is complete soonest). Quick: each thread
            // on a different mutant, which most often dies at its first spec; the last survivors get every thread.
            let pick = mode == .full ? open.first : open.min { (s.mutants[$0].inFlight, $0) < (s.mutants[$1].inFlight, $1) }
            guard let m = pick else { return nil }
            let spec = s.mutants[m].order[s.mutants[m].next]
            s.mutants[m].next += 1
            s.mutants[m].inFlight += 1
            if s.mutants[m].started == nil { s.mutants[m].started = .now }
            return .mutant(m, spec)
        }
    }

    /// Records a mutant's spec run; `finished` is called (under the lock, so reports come one at a time) once the
    /// mutant has nothing left to run.
    func mutantDone(_ m: Int, _ spec: Int, kills: Bool, finished: (Int, MutantState, _ done: Int) -> Void) {
        state.withLock { s in
            s.mutants[m].inFlight -= 1
            s.mutants[m].ran += 1
            if kills {
                s.mutants[m].killers.insert(spec)
                if mode == .quick, s.baselineSeen.insert(spec).inserted { s.baselineQueue.append(spec) }
            }
            if exhausted(s.mutants[m]) && s.mutants[m].inFlight == 0 && !s.mutants[m].reported {
                s.mutants[m].reported = true
                s.mutants[m].ended = .now
                s.done += 1
                finished(m, s.mutants[m], s.done)
            }
        }
    }

    /// Records a baseline run.
    func baselineDone(_ spec: Int, _ result: SpecResult) {
        var r = result
        r.events = []
        state.withLock { $0.baselineResults.append(r) }
    }
}
