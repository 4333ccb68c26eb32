import ArgumentParser
import ClusterConformance
import ClusterSpec
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

@main
struct ClusterConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster-conformance",
        abstract: "Runs the node:cluster behaviour specs against an implementation and judges what it does.",
        discussion: """
            Exit codes: 0 every result as expected; 1 a spec failed; 2 bad input (a spec or the command line);
            3 the harness or the implementation broke (could not start, protocol violation).
            """,
        version: "1.0.0 (fixture protocol \(protocolVersion))",
        subcommands: [Run.self, List.self, Lint.self, Matrix.self, Bench.self, Mutate.self],
        defaultSubcommand: Run.self
    )

    /// Parses and runs; usage errors exit with 2 ("bad input"), like a bad spec.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                printError(fullMessage(for: error))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

/// Exit codes of the CLI.
enum Exit {
    static let badInput = ExitCode(2)
    static let broken = ExitCode(3)
}

/// Where the suite lives: `--suite-root` when given, else what `ConformanceSuite.locateRoot` finds (the environment
/// variable, the current directory when it holds `Specs/`, the package the runner was built from), else the current
/// directory.
enum Layout {
    /// The root chosen by `SuiteRootOption`, set while the options are parsed (before any command runs).
    static let chosen = Mutex<String?>(nil)

    static func root() -> String {
        if let root = chosen.withLock({ $0 }) { return root }
        let cwd = FileManager.default.currentDirectoryPath
        return (try? ConformanceSuite.locateRoot(candidates: [cwd])) ?? cwd
    }

    /// `Specs` relative to the working directory when it is the suite's root, so reports name short paths.
    static var specs: String { relative(root() + "/Specs") }
    static var fixtures: String { root() + "/fixtures" }

    static func relative(_ path: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        return path.hasPrefix(cwd + "/") ? String(path.dropFirst(cwd.count + 1)) : path
    }
}

/// `--suite-root`, for every command that reads Specs/ or fixtures/.
struct SuiteRootOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The suite's root: the package directory holding Specs/ and fixtures/.",
        discussion: "Default: $\(ConformanceSuite.rootVariable), else the current directory when it holds Specs/, else the package cluster-conformance was built from.",
        valueName: "DIR"))
    var suiteRoot: String?

    /// Resolves the root once for the whole command; an option group is validated before its command, so the
    /// command's own `validate` already sees it.
    func validate() throws {
        do {
            let root = try ConformanceSuite.locateRoot(explicit: suiteRoot, origin: "--suite-root",
                                                       candidates: [FileManager.default.currentDirectoryPath])
            Layout.chosen.withLock { $0 = root }
        } catch where error.kind == .notFound {
            // Nothing named and nothing found: spec paths given on the command line may still carry their own
            // features.yaml, as before.
        } catch {
            throw ValidationError(error.description)
        }
    }
}

/// Spec selection shared by `run`, `list` and `lint`.
struct SpecSelection: ParsableArguments {
    @OptionGroup var suiteRoot: SuiteRootOption

    @Argument(help: "Spec files or directories (default: the suite's Specs/).")
    var paths: [String] = []

    @Option(name: .long, help: "Only specs whose id matches this glob (repeatable).")
    var filter: [String] = []

    @Option(name: .long, help: "Only specs that need this feature (repeatable).")
    var feature: [String] = []

    @Option(name: .long, help: ArgumentHelp("Only shard K of N: the selected specs, sorted by id, dealt out in turn to N shards (to split a run across machines).", valueName: "K/N"))
    var shard: String?

    /// Loads the specs; prints problems and exits 2 when there are any.
    func load() throws -> [Spec] { try loadWithAll().selected }

    /// The selected specs and every spec of the suite (expectations files may name any of them).
    func loadWithAll() throws -> (selected: [Spec], all: [Spec]) {
        let paths = self.paths.isEmpty ? [Layout.specs] : self.paths
        guard let featuresFile = SpecLoader.locateFeatures(near: paths[0]) ?? SpecLoader.locateFeatures(near: Layout.specs) else {
            printError("cluster-conformance: no \(SpecLoader.featuresFileName) found near \(paths[0])")
            throw Exit.badInput
        }
        let features: [(name: String, description: String)]
        do { features = try SpecLoader.readFeatures(at: featuresFile) } catch {
            printError("\(error)")
            throw Exit.badInput
        }
        let suite = SpecLoader(features: Set(features.map(\.name))).loadSuite(paths: paths)
        if !suite.problems.isEmpty {
            suite.problems.forEach { printError("\($0)") }
            printError("\(suite.problems.count) problem\(suite.problems.count == 1 ? "" : "s") in \(Set(suite.problems.map(\.location.file)).count) of \(suite.files.count) files")
            throw Exit.badInput
        }
        let selected = suite.specs.filter { spec in
            (filter.isEmpty || filter.contains { fnmatch($0, spec.id, 0) == 0 })
                && (feature.isEmpty || feature.contains { spec.features.contains($0) })
        }
        if selected.isEmpty && !(filter.isEmpty && feature.isEmpty) {
            printError("cluster-conformance: no spec matches" + filter.map { " --filter '\($0)'" }.joined() + feature.map { " --feature '\($0)'" }.joined())
            throw Exit.badInput
        }
        guard let shard else { return (selected, suite.specs) }
        do throws(Shard.ParseError) {
            return (try Shard(parsing: shard).select(selected, id: \.id), suite.specs)
        } catch {
            printError("cluster-conformance: \(error)")
            throw Exit.badInput
        }
    }
}

/// How specs are run, shared by `run` and `matrix`.
struct RunSettings: ParsableArguments {
    @Option(name: .long, help: "Specs run in parallel (default: the number of cores), and as many again of those the expectations list as failing (they mostly wait out a deadline); a matrix shares them among its implementations.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(name: .long, help: "Multiply every time budget by this factor.")
    var timeoutScale: Double = 1

    @Option(name: .long, help: "Run a spec whose result is unexpected up to N more times; a later expected result stands, reported as retried.")
    var retries: Int = 0

    func validate() throws {
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        guard (0...5).contains(retries) else { throw ValidationError("--retries must be between 0 and 5") }
        guard timeoutScale > 0 else { throw ValidationError("--timeout-scale must be positive") }
    }

    var options: RunOptions {
        var o = RunOptions()
        o.timeoutScale = timeoutScale
        o.retries = retries
        return o
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run specs against an implementation.")

    @OptionGroup var selection: SpecSelection

    @Option(name: .long, help: "The implementation: a directory name under fixtures/ (default: swift when present, else node).")
    var impl: String?

    @Option(name: .long, help: ArgumentHelp(
        "Run this command as the implementation's fixture instead (quoted argv).",
        discussion: "Relative paths are resolved against the current directory; a bare program name is looked up on PATH."))
    var implCommand: String?

    // The fields of an implementation descriptor (fixtures/PROTOCOL.md §9), for --impl-command.
    @Option(name: .long, help: "With --impl-command: the implementation's name in the runner's messages (default: the program's name).")
    var implName: String?

    @Option(name: .long, help: "With --impl-command: one line about the implementation.")
    var implDescription: String?

    @Option(name: .long, help: ArgumentHelp("With --impl-command: the environment variable that selects the scheduling policy (setup.policy).",
                                            valueName: "VARIABLE"))
    var policyEnv: String?

    @Option(name: .long, help: ArgumentHelp("With --impl-command: the environment variable that selects a simulated platform (setup.platform).",
                                            valueName: "VARIABLE"))
    var platformEnv: String?

    @Option(name: .long, help: "The runtime executable for an implementation that names one (deno, bun, node18), or $runtime in --impl-command.")
    var runtime: String?

    @OptionGroup var settings: RunSettings

    @Option(name: .long, help: "Run each spec this many times.")
    var `repeat`: Int = 1

    @Option(name: .long, help: "Report format: human, tap, junit or jsonl.")
    var format: String = "human"

    @Option(name: .long, help: "Write the report to this file (a human summary still goes to standard output).")
    var output: String?

    @Flag(name: .long, help: "List every spec, not only those that did not pass.")
    var verbose = false

    @Option(name: .long, help: "Known deviations (default: fixtures/<impl>/expectations.yaml); 'none' ignores them.")
    var expectations: String?

    func validate() throws {
        guard ["human", "tap", "junit", "jsonl"].contains(format) else {
            throw ValidationError("--format must be human, tap, junit or jsonl")
        }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        if impl != nil && implCommand != nil { throw ValidationError("give --impl or --impl-command, not both") }
        if implCommand == nil {
            // The descriptor of --impl names these itself; an option that would be ignored is refused.
            let given = [("--impl-name", implName), ("--impl-description", implDescription), ("--policy-env", policyEnv),
                         ("--platform-env", platformEnv)].filter { $0.1 != nil }.map(\.0)
            if !given.isEmpty {
                throw ValidationError("\(given.joined(separator: ", ")) go\(given.count == 1 ? "es" : "") with --impl-command; fixtures/<impl>/implementation.yaml names \(given.count == 1 ? "it" : "them") for --impl")
            }
        }
    }

    func run() throws {
        let (specs, all) = try selection.loadWithAll()
        let implementation: Implementation
        do { implementation = try resolveImplementation() } catch {
            printError("cluster-conformance: \(error)")
            throw Exit.badInput
        }
        let options = settings.options
        let info = try handshake(implementation, options)
        var reporters: [any Reporter] = []
        let sink: ReportSink
        if let output {
            do { sink = try ReportSink.file(output) } catch {
                printError("cluster-conformance: \(error)")
                throw Exit.badInput
            }
        } else {
            sink = .standardOutput
        }
        let known = try loadExpectations(for: implCommand == nil ? implementation.name : nil, path: expectations, ids: Set(all.map(\.id)))
        switch format {
        case "tap": reporters.append(TAPReporter(sink: sink))
        case "junit": reporters.append(JUnitReporter(sink: sink))
        case "jsonl": reporters.append(JSONLReporter(sink: sink, suite: SuiteIdentity(specs: all), expectations: known))
        default: reporters.append(HumanReporter(sink: sink, verbose: verbose))
        }
        if format != "human" || output != nil {
            // The machine-readable report has its own destination; people still see progress.
            reporters.append(HumanReporter(sink: output == nil ? .standardError : .standardOutput, verbose: verbose))
        }
        let runner = SuiteRunner(implementation: implementation, info: info, options: options, jobs: settings.jobs, repeats: `repeat`,
                                 expectations: known)
        let summary = runner.run(specs, reporter: ReporterFan(reporters))
        if summary.exitCode != 0 { throw ExitCode(summary.exitCode) }
    }

    func resolveImplementation() throws -> Implementation {
        if let implCommand {
            return try Implementation.commandLine(splitCommand(implCommand), workingDirectory: FileManager.default.currentDirectoryPath,
                                                  name: implName, description: implDescription, policyEnv: policyEnv,
                                                  platformEnv: platformEnv, runtime: runtime)
        }
        let fixtures = Layout.fixtures
        let name = impl ?? (FileManager.default.fileExists(atPath: fixtures + "/swift/implementation.yaml") ? "swift" : "node")
        return try Implementation.named(name, fixturesDirectory: fixtures, runtime: runtime)
    }
}

/// Starts the implementation once to learn its name, version and features; exit 3 when it cannot.
func handshake(_ implementation: Implementation, _ options: RunOptions) throws -> ImplementationInfo {
    switch implementation.probe(options: options) {
    case .success(let info): return info
    case .failure(let e):
        printError("cluster-conformance: \(e)")
        throw Exit.broken
    }
}

/// The expectations of an implementation: `path` ('none' for no file), else `fixtures/<name>/expectations.yaml`.
func loadExpectations(for name: String?, path: String?, ids: Set<String>) throws -> Expectations {
    if path == "none" { return Expectations() }
    guard let file = path ?? name.map({ Layout.fixtures + "/\($0)/expectations.yaml" }) else { return Expectations() }
    switch Expectations.load(file, knownIDs: ids) {
    case .success(let e): return e
    case .failure(let problem):
        printError("\(problem)")
        throw Exit.badInput
    }
}

struct Matrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the suite against several implementations and write CONFORMANCE.md and conformance.html.")

    @OptionGroup var selection: SpecSelection

    @Option(name: .long, help: "An implementation (a directory of fixtures/); repeat for each column, in order.")
    var impl: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp(
        "Build the matrix from these results files of `run --format jsonl` instead of running (shards, machines, repeats).",
        discussion: "One column per implementation and version, in the order the files name them; runs of a spec that disagree merge into the worst outcome. Files from another suite version, cut short, or leaving a spec without a result are refused (exit 2).",
        valueName: "FILE"))
    var from: [String] = []

    @OptionGroup var settings: RunSettings

    @Option(name: .long, help: "Where to write CONFORMANCE.md and conformance.html (default: the suite's root).")
    var outputDirectory: String?

    @Option(name: .long, help: ArgumentHelp("Also write every cell as `spec<TAB>implementation<TAB>outcome` lines to this file (to compare two matrices).", valueName: "FILE"))
    var verdicts: String?

    @Option(name: .long, help: "Add a Mutation score section from this report (written by mutate --output).")
    var mutationReport: String?

    func validate() throws {
        guard impl.isEmpty != from.isEmpty else { throw ValidationError("give --impl (run the implementations) or --from (merge results files), one of them") }
        if !from.isEmpty && selection.shard != nil { throw ValidationError("--shard selects specs to run; a matrix --from covers every spec the files were run for") }
    }

    func run() throws {
        let (specs, all) = try selection.loadWithAll()
        // The report is read before anything runs: a bad file is bad input, not a matrix without its section.
        let mutation: MutationReport?
        do { mutation = try mutationReport.map { try MutationReport.load(path: $0) } } catch {
            printError("\(error)")
            throw Exit.badInput
        }
        if !from.isEmpty { return try merge(specs: specs, all: all, mutation: mutation) }
        let options = settings.options
        // Every implementation's handshake first: one that cannot start stops the matrix before anything runs.
        var shares: [(info: ImplementationInfo, expectations: Expectations, collector: ResultCollector, share: SuiteRunner.Share)] = []
        let progress = ProgressLine(sink: .standardOutput)
        for name in impl {
            let implementation: Implementation
            do { implementation = try Implementation.named(name, fixturesDirectory: Layout.fixtures) } catch {
                printError("cluster-conformance: \(error)")
                throw Exit.badInput
            }
            let info = try handshake(implementation, options)
            let known = try loadExpectations(for: name, path: nil, ids: Set(all.map(\.id)))
            let collector = ResultCollector()
            // The implementations run at once from one pool of --jobs; each one's report is printed as a block when
            // its last spec ends, and meanwhile a terminal shows one progress line for all.
            let buffer = ReportSink.buffer()
            let human = HumanReporter(sink: buffer, listsPasses: !ReportSink.standardOutput.isTerminal)
            let runner = SuiteRunner(implementation: implementation, info: info, options: options, jobs: settings.jobs, repeats: 1, expectations: known)
            shares.append((info, known, collector, SuiteRunner.Share(runner: runner, specs: specs,
                                                                     reporter: ReporterFan([human, collector, progress, BufferFlush(buffer, to: .standardOutput)]))))
        }
        let dir = try outputDirectoryCreated()
        let summaries = SuiteRunner.run(shares.map(\.share), jobs: settings.jobs)
        let columns = zip(shares, summaries).map { s, summary in
            MatrixColumn(info: s.info, results: s.collector.results, expectations: s.expectations, summary: summary)
        }
        try write(ConformanceMatrix(specs: specs, columns: columns), to: dir, mutation: mutation,
                  command: "cluster-conformance matrix " + impl.map { "--impl \($0)" }.joined(separator: " "))
        let exitCode = summaries.map(\.exitCode).max() ?? 0
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    /// The output directory, created if it is missing, as is the directory of the `--verdicts` file (before any spec
    /// runs: a directory that cannot be made is bad input, not a matrix lost after minutes of running).
    func outputDirectoryCreated() throws -> String {
        let dir = outputDirectory ?? Layout.root()
        for d in [dir] + (verdicts.map { [($0 as NSString).deletingLastPathComponent] } ?? []) where !d.isEmpty {
            do { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) } catch {
                printError("cluster-conformance: cannot create the directory \(d): \(error.localizedDescription)")
                throw Exit.badInput
            }
        }
        return dir
    }

    /// `--from`: the columns from results files, checked against this checkout's suite.
    func merge(specs: [Spec], all: [Spec], mutation: MutationReport?) throws {
        let columns: [MatrixColumn]
        do throws(ResultsFileError) {
            let files = try from.map { path throws(ResultsFileError) in try ResultsFile.read(path, specs: all) }
            columns = try ResultsMerge.columns(files, specs: specs, suite: SuiteIdentity(specs: all))
        } catch {
            printError("cluster-conformance: \(error)")
            throw Exit.badInput
        }
        try write(ConformanceMatrix(specs: specs, columns: columns), to: try outputDirectoryCreated(), mutation: mutation,
                  command: "cluster-conformance matrix --from " + from.map { ($0 as NSString).lastPathComponent }.joined(separator: " "))
        let exitCode = columns.map(\.summary.exitCode).max() ?? 0
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    func write(_ matrix: ConformanceMatrix, to dir: String, mutation: MutationReport?, command: String) throws {
        var matrix = matrix
        matrix.mutation = mutation
        do {
            try matrix.markdown(generatedBy: command).write(toFile: dir + "/CONFORMANCE.md", atomically: true, encoding: .utf8)
            try matrix.html(generatedBy: command).write(toFile: dir + "/conformance.html", atomically: true, encoding: .utf8)
            if let verdicts { try matrix.verdicts().write(toFile: verdicts, atomically: true, encoding: .utf8) }
        } catch {
            printError("cluster-conformance: cannot write the matrix: \(error.localizedDescription)")
            throw Exit.badInput
        }
        print("wrote \(Layout.relative(dir + "/CONFORMANCE.md")) and \(Layout.relative(dir + "/conformance.html"))")
        for c in matrix.columns {
            let d = matrix.documentedTotals(c)
            print("  \(c.info.name) \(c.info.version): documented \(d.passed)/\(d.total), Node compatibility \(String(format: "%.1f", c.passPercentage)) %; \(c.summary.counts)")
        }
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark implementations through the fixture protocol, all measured by the same client in one run.",
        discussion: """
            Numbers are meaningful only from a release build: `swift run -c release cluster-conformance bench …` (the \
            release runner starts the release cluster-fixture beside it; a debug run says so in its report).

            Rows: limit (the bench's own accept loop, once per run), rr and none (short connections: conn/s, p50, p99, \
            p99.9, errors), cold-start (spawn to the N-th worker listening, median), memory (idle RSS), descriptors \
            (the primary's fds before and after many connections), ipc-small and ipc-1mib (message round-trips), chaos \
            (round-robin load while workers are killed and re-forked). An implementation that cannot start, or lacks a \
            command, gets `error: …` in its rows and the bench goes on.

            Exit codes: 0 the bench ran (whatever its rows say); 2 bad options; 3 the bench itself could not run.
            """
    )

    @Option(name: .long, help: "An implementation (a directory of fixtures/); repeat for each (default: swift and node).")
    var impl: [String] = []

    @OptionGroup var suiteRoot: SuiteRootOption

    @Option(name: .long, help: "The implementation ratios are computed against (default: node when it is in the run, else the first).")
    var reference: String?

    @Option(name: .long, help: "Workers per fixture, N (default 2).")
    var workers: Int?

    @Option(name: .long, help: "Concurrent client threads, C (default 8).")
    var clients: Int?

    @Option(name: .long, help: "Sequential connections per client thread, M, in the limit, rr and none rows (default 2500; smoke 100).")
    var connections: Int?

    @Option(name: .long, help: "Cold-start trials; the row is their median (default 10; smoke 3).")
    var coldStarts: Int?

    @Option(name: .long, help: "Idle milliseconds before RSS and the descriptor counts are read (default 1000; smoke 200).")
    var settleMs: Int?

    @Option(name: .long, help: "Round-robin connections between the two descriptor counts (default 100000; smoke 2000).")
    var descriptorConnections: Int?

    @Option(name: .long, help: "IPC round-trips of small messages (default 10000; smoke 200).")
    var ipcCount: Int?

    @Option(name: .long, help: "IPC round-trips of 1 MiB messages (default 100; smoke 5).")
    var ipcLargeCount: Int?

    @Option(name: .long, help: "Milliseconds between two kills in the chaos row (default 200).")
    var chaosInterval: Int?

    @Option(name: .long, help: "Workers killed in the chaos row (default 20; smoke 3).")
    var chaosKills: Int?

    @Option(name: .long, help: "The client's deadline for connect, greeting and end of stream, in milliseconds (default 3000).")
    var deadline: Int?

    @Option(name: .long, help: ArgumentHelp("Only this row (repeatable): \(BenchMeasurement.selectable.joined(separator: ", ")).", valueName: "ROW"))
    var row: [String] = []

    @Flag(name: .long, help: "Shrink every count: swift and node together in well under a minute, even from a debug build.")
    var smoke = false

    @Option(name: .long, help: "Standard output: table or json.")
    var format: String = "table"

    @Option(name: .long, help: ArgumentHelp("Also write a BENCHMARKS.md-style document to this path.", valueName: "PATH"))
    var markdown: String?

    var implementations: [String] { impl.isEmpty ? ["swift", "node"] : impl }

    func validate() throws {
        guard ["table", "json"].contains(format) else { throw ValidationError("--format must be table or json") }
        let positive: [(String, Int?)] = [("--workers", workers), ("--clients", clients), ("--connections", connections),
                                          ("--cold-starts", coldStarts), ("--ipc-count", ipcCount), ("--ipc-large-count", ipcLargeCount),
                                          ("--chaos-interval", chaosInterval), ("--deadline", deadline)]
        for (name, value) in positive where value.map({ $0 < 1 }) ?? false {
            throw ValidationError("\(name) must be at least 1")
        }
        for (name, value) in [("--settle-ms", settleMs), ("--descriptor-connections", descriptorConnections), ("--chaos-kills", chaosKills)]
            where value.map({ $0 < 0 }) ?? false {
            throw ValidationError("\(name) must not be negative")
        }
        if let workers, workers > 64 { throw ValidationError("--workers must be at most 64") }
        if let clients, clients > 512 { throw ValidationError("--clients must be at most 512") }
        for name in row where BenchMeasurement.selected(by: name) == nil {
            throw ValidationError("unknown --row '\(name)' (rows: \(BenchMeasurement.selectable.joined(separator: ", ")))")
        }
        let names = implementations
        if let duplicate = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw ValidationError("--impl \(duplicate) is given twice")
        }
        let fixtures = Layout.fixtures
        for name in names where !FileManager.default.fileExists(atPath: "\(fixtures)/\(name)/implementation.yaml") {
            let known = ((try? FileManager.default.contentsOfDirectory(atPath: fixtures)) ?? [])
                .filter { FileManager.default.fileExists(atPath: "\(fixtures)/\($0)/implementation.yaml") }.sorted()
            throw ValidationError("--impl \(name): no implementation '\(name)' in \(fixtures) (known: \(known.joined(separator: ", ")))")
        }
        if let reference, !names.contains(reference) {
            throw ValidationError("--reference \(reference) is not one of the implementations (\(names.joined(separator: ", ")))")
        }
    }

    func parameters() -> BenchParameters {
        var p = BenchParameters(smoke: smoke)
        if let workers { p.workers = workers }
        if let clients { p.clients = clients }
        if let connections { p.connections = connections }
        if let coldStarts { p.coldStarts = coldStarts }
        if let settleMs { p.settleMs = settleMs }
        if let descriptorConnections { p.descriptorConnections = descriptorConnections }
        if let ipcCount { p.ipcCount = ipcCount }
        if let ipcLargeCount { p.ipcLargeCount = ipcLargeCount }
        if let chaosInterval { p.chaosIntervalMs = chaosInterval }
        if let chaosKills { p.chaosKills = chaosKills }
        if let deadline { p.deadlineMs = deadline }
        if !row.isEmpty {
            let chosen = Set(row.flatMap { BenchMeasurement.selected(by: $0) ?? [] })
            p.rows = BenchMeasurement.allCases.filter { chosen.contains($0) }
        }
        return p
    }

    func run() throws {
        // The document's path is checked before the run, not after minutes of measuring.
        if let markdown {
            guard FileManager.default.createFile(atPath: markdown, contents: nil) else {
                printError("cluster-conformance: cannot write --markdown \(markdown)")
                throw Exit.badInput
            }
        }
        let names = implementations
        let fixtures = Layout.fixtures
        let resolved = names.map { name -> (name: String, implementation: Result<Implementation, ImplementationError>) in
            (name, Result { () throws(ImplementationError) in try Implementation.named(name, fixturesDirectory: fixtures) })
        }
        let commandLine = (["cluster-conformance"] + CommandLine.arguments.dropFirst()).map { arg in
            arg.isEmpty || arg.contains(where: { " \t'\"$\\".contains($0) }) ? "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'" : arg
        }.joined(separator: " ")
        let runner = BenchRunner(parameters: parameters(), implementations: resolved,
                                 reference: reference ?? (names.contains("node") ? "node" : names.first), commandLine: commandLine,
                                 progress: { printError($0) })
        let results = runner.run()
        if format == "json" {
            print(BenchReport.pretty(BenchReport.json(results)))
        } else {
            print(BenchReport.table(results), terminator: "")
        }
        if let markdown {
            do { try BenchReport.markdown(results).write(toFile: markdown, atomically: true, encoding: .utf8) } catch {
                printError("cluster-conformance: cannot write \(markdown): \(error.localizedDescription)")
                throw Exit.broken
            }
            printError("bench: wrote \(markdown)")
        }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List specs: id, features and description.")

    @OptionGroup var selection: SpecSelection

    func run() throws {
        let specs = try selection.load()
        let width = specs.map(\.id.count).max() ?? 0
        for spec in specs {
            let pad = String(repeating: " ", count: width - spec.id.count)
            print("\(spec.id)\(pad)  [\(spec.features.joined(separator: ", "))]  \(spec.description)")
        }
        print("\(specs.count) specs")
    }
}

struct Lint: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check spec files: YAML, keys, types, features, variables, unique ids.")

    @OptionGroup var selection: SpecSelection

    func run() throws {
        let specs = try selection.load()
        print("\(specs.count) specs: no problems")
    }
}

/// Splits a command line on spaces, honouring single and double quotes and backslash escapes.
func splitCommand(_ text: String) throws -> [String] {
    var args: [String] = []
    var current = ""
    var inWord = false
    var quote: Character?
    var escape = false
    for c in text {
        if escape { current.append(c); escape = false; inWord = true; continue }
        if c == "\\" && quote != "'" { escape = true; continue }
        if let q = quote {
            if c == q { quote = nil } else { current.append(c) }
            continue
        }
        if c == "'" || c == "\"" { quote = c; inWord = true; continue }
        if c == " " || c == "\t" {
            if inWord { args.append(current); current = ""; inWord = false }
            continue
        }
        current.append(c)
        inWord = true
    }
    if quote != nil { throw ValidationError("unbalanced quote in --impl-command") }
    if inWord { args.append(current) }
    return args
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
