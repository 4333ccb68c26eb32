import ClusterSpec
import Foundation
import Synchronization

/// The conformance suite as another package sees it: the directory holding `Specs/` and `fixtures/` (found without
/// a copy, from this library's own source path in the dependency's checkout), every spec loaded and checked, the
/// named implementations with their expectations, and a way to run one spec against an implementation.
///
/// ```swift
/// let suite = try ConformanceSuite()                      // or ConformanceSuite(root: "/path/to/suite")
/// let mine = try suite.prepare(Implementation(command: ["/path/to/my-fixture"]))
/// try mine.check("kill.sigkill.exit-signal")              // throws when the result is not the expected one
/// ```
public struct ConformanceSuite: Sendable {
    /// The environment variable that names the suite root when it cannot be found from the source path (a build
    /// with remapped source paths, a suite kept somewhere else).
    public static let rootVariable = "CLUSTER_CONFORMANCE_ROOT"

    /// The suite root, absolute: the package directory that holds `Specs/features.yaml` and `fixtures/`.
    public let root: String
    /// The closed feature list of `Specs/features.yaml`.
    public let features: Set<String>
    /// Every spec of `Specs/`, in the loader's order (sorted by path).
    public let specs: [Spec]

    /// `Specs/` of the suite.
    public var specsDirectory: String { root + "/Specs" }
    /// `fixtures/` of the suite: one directory per named implementation.
    public var fixturesDirectory: String { root + "/fixtures" }
    /// The ids of every spec, in the order of `specs`: the arguments of a parameterized test.
    public var ids: [String] { specs.map(\.id) }

    /// Finds the suite (see `locateRoot`) and loads every spec; a spec with a problem fails the whole load, with
    /// every problem at its `file:line:col`.
    public init(root: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws(SuiteError) {
        let root = try Self.locateRoot(explicit: root, origin: "root:", environment: environment)
        let featuresFile = root + "/Specs/" + SpecLoader.featuresFileName
        let features: Set<String>
        do { features = Set(try SpecLoader.readFeatures(at: featuresFile).map(\.name)) } catch {
            throw SuiteError(.specProblems, "\(error)", problems: [error])
        }
        let loaded = SpecLoader(features: features).loadSuite(paths: [root + "/Specs"])
        guard loaded.problems.isEmpty else {
            let files = Set(loaded.problems.map(\.location.file)).count
            throw SuiteError(.specProblems, (loaded.problems.map(\.description)
                + ["\(loaded.problems.count) problem\(loaded.problems.count == 1 ? "" : "s") in \(files) of \(loaded.files.count) spec files"])
                .joined(separator: "\n"), problems: loaded.problems)
        }
        guard !loaded.specs.isEmpty else { throw SuiteError(.specProblems, "\(root)/Specs holds no spec") }
        self.root = root
        self.features = features
        self.specs = loaded.specs
    }

    /// The root of the package this library was compiled from: `#filePath` is this file's path in the dependency's
    /// checkout (`.build/checkouts/<package>/…`, or the directory of a path dependency), so the specs are reached
    /// where SwiftPM put them, without a copy.
    public static var sourceRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Whether `directory` is a suite root: it holds `Specs/features.yaml`.
    public static func isRoot(_ directory: String) -> Bool {
        FileManager.default.fileExists(atPath: directory + "/Specs/" + SpecLoader.featuresFileName)
    }

    /// The suite root, absolute. In order: `explicit` (an error if it is not a suite root; `origin` names it in the
    /// message, such as `--suite-root`), then `$CLUSTER_CONFORMANCE_ROOT` (the same), then the first of `candidates`
    /// that is a root, then `sourceRoot`, then a parent of the running executable (a tool run from its package's
    /// `.build`). Relative paths are resolved against the current directory.
    public static func locateRoot(explicit: String? = nil, origin: String = "root:",
                                  environment: [String: String] = ProcessInfo.processInfo.environment,
                                  candidates: [String] = []) throws(SuiteError) -> String {
        if let explicit { return try checked(explicit, origin: origin) }
        if let variable = environment[rootVariable], !variable.isEmpty { return try checked(variable, origin: "$\(rootVariable)") }
        var tried = candidates.map(absolute) + [sourceRoot]
        if let found = tried.first(where: isRoot) { return found }
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while dir.path != "/" {
            if isRoot(dir.path) { return dir.path }
            dir.deleteLastPathComponent()
        }
        tried.append("the parents of the running executable")
        throw SuiteError(.notFound, "no conformance suite (Specs/\(SpecLoader.featuresFileName)) in \(tried.joined(separator: ", ")): "
            + "name its root with $\(rootVariable)")
    }

    static func checked(_ path: String, origin: String) throws(SuiteError) -> String {
        let root = absolute(path)
        guard isRoot(root) else {
            throw SuiteError(.badRoot, "\(origin) \(path) is not a conformance suite root: \(root)/Specs/\(SpecLoader.featuresFileName) does not exist "
                + "(the root is the package directory that holds Specs/ and fixtures/)")
        }
        return root
    }

    static func absolute(_ path: String) -> String {
        // Standardized even when already absolute: roots are compared and joined with "/Specs".
        let standard = URL(fileURLWithPath: Implementation.absolute(path, against: FileManager.default.currentDirectoryPath))
            .standardizedFileURL.path
        return standard.count > 1 && standard.hasSuffix("/") ? String(standard.dropLast()) : standard
    }

    /// The spec with this id; an unknown id is an error naming ids like it.
    public func spec(_ id: String) throws(SuiteError) -> Spec {
        guard let spec = specs.first(where: { $0.id == id }) else {
            throw SuiteError(.unknownSpec, "no spec has the id '\(id)'" + suggestion(id, among: ids))
        }
        return spec
    }

    /// The names of the suite's implementations: the directories of `fixtures/` that hold an `implementation.yaml`.
    public var implementationNames: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: fixturesDirectory)) ?? [])
            .filter { FileManager.default.fileExists(atPath: "\(fixturesDirectory)/\($0)/implementation.yaml") }.sorted()
    }

    /// The implementation `fixtures/<name>` of the suite (such as `node`, the reference); `runtime` as `--runtime`.
    public func implementation(named name: String, runtime: String? = nil) throws(ImplementationError) -> Implementation {
        try Implementation.named(name, fixturesDirectory: fixturesDirectory, runtime: runtime)
    }

    /// The implementation described by `directory/implementation.yaml` (protocol §9): a descriptor of your own,
    /// whose relative paths are resolved against `directory`.
    public func implementation(descriptor directory: String, runtime: String? = nil) throws(ImplementationError) -> Implementation {
        try Implementation.load(directory: Self.absolute(directory), runtime: runtime)
    }

    /// The known deviations of the suite's implementation `name`: `fixtures/<name>/expectations.yaml`, none when
    /// there is no such file.
    public func expectations(for name: String) throws(SuiteError) -> Expectations {
        try expectations(file: "\(fixturesDirectory)/\(name)/expectations.yaml")
    }

    /// The known deviations in an expectations file of your own (the format of `fixtures/<impl>/expectations.yaml`;
    /// every id must be one of the suite's); none when the file does not exist.
    public func expectations(file: String) throws(SuiteError) -> Expectations {
        switch Expectations.load(Self.absolute(file), knownIDs: Set(ids)) {
        case .success(let e): return e
        case .failure(let problem): throw SuiteError(.expectations, problem.description, problems: [problem])
        }
    }

    /// Starts the implementation once for the handshake (protocol §2) and returns it ready to run this suite's
    /// specs, judged against `expectations`; at most `jobs` of its async runs go on at once (as `run --jobs`).
    public func prepare(_ implementation: Implementation, expectations: Expectations = Expectations(),
                        options: RunOptions = RunOptions(),
                        jobs: Int = ProcessInfo.processInfo.activeProcessorCount) throws(ImplementationError) -> ImplementationUnderTest {
        let info = try implementation.probe(options: options).get()
        return ImplementationUnderTest(suite: self, runner: SuiteRunner(implementation: implementation, info: info, options: options,
                                                                        jobs: jobs, repeats: 1, expectations: expectations))
    }

    /// `prepare` for the suite's implementation `fixtures/<name>`, judged against its own expectations file.
    public func prepare(named name: String, runtime: String? = nil, options: RunOptions = RunOptions(),
                        jobs: Int = ProcessInfo.processInfo.activeProcessorCount) throws -> ImplementationUnderTest {
        try prepare(implementation(named: name, runtime: runtime), expectations: expectations(for: name), options: options, jobs: jobs)
    }
}

/// An implementation after its handshake, ready to run the specs of a suite one at a time (each in its own process
/// group and temporary directory, so several may run at once).
public struct ImplementationUnderTest: Sendable {
    /// The suite whose specs it runs.
    public let suite: ConformanceSuite
    /// The runner behind it: the implementation, what its handshake reported, the options, the expectations, and
    /// `jobs`, the bound on async runs in flight.
    public let runner: SuiteRunner
    let slots: RunSlots

    init(suite: ConformanceSuite, runner: SuiteRunner) {
        self.suite = suite
        self.runner = runner
        slots = RunSlots(runner.jobs)
    }

    /// What the implementation said about itself in the handshake.
    public var info: ImplementationInfo { runner.info }

    /// Runs one spec and judges it against the expectations.
    public func run(_ spec: Spec) -> SpecResult { runner.run(spec) }

    /// Runs the suite's spec with this id.
    public func run(_ id: String) throws(SuiteError) -> SpecResult { runner.run(try suite.spec(id)) }

    /// Runs the suite's spec with this id on a thread of its own, so that a spec's seconds of waiting do not hold
    /// one of the few threads of Swift's cooperative pool (parameterized tests run their cases on it), once fewer
    /// than `runner.jobs` other async runs are going on: the cases of a parameterized test may all start at once.
    public func run(_ id: String) async throws(SuiteError) -> SpecResult {
        let spec = try suite.spec(id)
        await slots.acquire()
        defer { slots.release() }
        return await onOwnThread { self.runner.run(spec) }
    }

    /// Runs the suite's spec with this id and throws `UnexpectedResult` (its description is the full report)
    /// unless the result is the expected one.
    @discardableResult
    public func check(_ id: String) throws -> SpecResult {
        try Self.expected(run(id))
    }

    /// `check` on a thread of its own (see `run(_:) async`).
    @discardableResult
    public func check(_ id: String) async throws -> SpecResult {
        try Self.expected(await run(id))
    }

    static func expected(_ result: SpecResult) throws(UnexpectedResult) -> SpecResult {
        guard result.isExpected else { throw UnexpectedResult(result: result) }
        return result
    }
}

/// Runs `body` on a thread of its own and awaits it: blocking work (a spec run, seconds of waiting) then holds none of
/// the threads of Swift's cooperative pool, which are as many as the cores and run every other task.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: body()) }.start()
    }
}

/// A counting semaphore for async callers: `acquire` suspends (never blocks a thread) until a slot is free.
final class RunSlots: Sendable {
    struct State {
        var free: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    let state: Mutex<State>

    init(_ count: Int) { state = Mutex(State(free: max(1, count))) }

    func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s in
                if s.free > 0 { s.free -= 1; return true }
                s.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        // The slot passes straight to the longest waiter, if there is one.
        let next = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if s.waiting.isEmpty { s.free += 1; return nil }
            return s.waiting.removeFirst()
        }
        next?.resume()
    }
}

extension SpecResult {
    /// Whether the result is what the expectations call for: a pass, a skip, or a known failure. A failure, an error
    /// or a pass that the expectations say fails (the file should shrink) is unexpected.
    public var isExpected: Bool { [.pass, .skip, .xfail].contains(outcome) }

    /// The result as the runner reports a failure: outcome, id and spec location, the messages, the last events
    /// and the implementation's stderr.
    public var report: String {
        var lines = ["\(label) \(id) (\(location))"] + messages.map { "  " + $0 }
        if !logTail.isEmpty { lines += ["last events:"] + logTail.map { "  " + $0 } }
        if !stderrTail.isEmpty { lines += ["stderr:", String(stderrTail.suffix(2000))] }
        return lines.joined(separator: "\n")
    }
}

/// A spec whose result is not the expected one (`SpecResult.isExpected` is false).
public struct UnexpectedResult: Error, Sendable, CustomStringConvertible {
    /// The result.
    public var result: SpecResult
    /// The full report of the result.
    public var description: String { result.report }
}

/// Why the suite cannot be used: no root, spec problems, an unknown spec id, a bad expectations file.
public struct SuiteError: Error, Sendable, CustomStringConvertible {
    /// The kinds of error.
    public enum Kind: Sendable, Equatable {
        /// A root given explicitly (argument or environment variable) that does not hold `Specs/features.yaml`.
        case badRoot
        /// No root given, and none found.
        case notFound
        /// The feature list or a spec has a problem.
        case specProblems
        /// No spec has the id asked for.
        case unknownSpec
        /// An expectations file has a problem.
        case expectations
    }

    /// What kind of error.
    public var kind: Kind
    /// What is wrong; spec and expectations problems one per line as `file:line:col: message`.
    public var description: String
    /// The problems behind a `specProblems` or `expectations` error, with their locations.
    public var problems: [SpecProblem]

    init(_ kind: Kind, _ description: String, problems: [SpecProblem] = []) {
        self.kind = kind
        self.description = description
        self.problems = problems
    }
}
