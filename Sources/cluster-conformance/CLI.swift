import ArgumentParser
import ClusterConformance
import ClusterSpec
import Foundation

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
        subcommands: [Run.self, List.self, Lint.self, Matrix.self],
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

/// Where the suite lives: the current directory when it holds `Specs/`, else the package the executable
/// was built from.
enum Layout {
    static func root() -> String {
        let cwd = FileManager.default.currentDirectoryPath
        if FileManager.default.fileExists(atPath: cwd + "/Specs/features.yaml") { return cwd }
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.path + "/Specs/features.yaml") { return dir.path }
            dir.deleteLastPathComponent()
        }
        return cwd
    }

    /// `Specs` relative to the working directory when it is the suite's root, so reports name short paths.
    static var specs: String { relative(root() + "/Specs") }
    static var fixtures: String { root() + "/fixtures" }

    static func relative(_ path: String) -> String {
        let cwd = FileManager.default.currentDirectoryPath
        return path.hasPrefix(cwd + "/") ? String(path.dropFirst(cwd.count + 1)) : path
    }
}

/// Spec selection shared by `run`, `list` and `lint`.
struct SpecSelection: ParsableArguments {
    @Argument(help: "Spec files or directories (default: the suite's Specs/).")
    var paths: [String] = []

    @Option(name: .long, help: "Only specs whose id matches this glob (repeatable).")
    var filter: [String] = []

    @Option(name: .long, help: "Only specs that need this feature (repeatable).")
    var feature: [String] = []

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
        return (selected, suite.specs)
    }
}

/// How specs are run, shared by `run` and `matrix`.
struct RunSettings: ParsableArguments {
    @Option(name: .long, help: "Specs run in parallel (default: the number of cores).")
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
        switch format {
        case "tap": reporters.append(TAPReporter(sink: sink))
        case "junit": reporters.append(JUnitReporter(sink: sink))
        case "jsonl": reporters.append(JSONLReporter(sink: sink))
        default: reporters.append(HumanReporter(sink: sink, verbose: verbose))
        }
        if format != "human" || output != nil {
            // The machine-readable report has its own destination; people still see progress.
            reporters.append(HumanReporter(sink: output == nil ? .standardError : .standardOutput, verbose: verbose))
        }
        let known = try loadExpectations(for: implCommand == nil ? implementation.name : nil, path: expectations, ids: Set(all.map(\.id)))
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

    @OptionGroup var settings: RunSettings

    @Option(name: .long, help: "Where to write CONFORMANCE.md and conformance.html (default: the suite's root).")
    var outputDirectory: String?

    func validate() throws {
        guard !impl.isEmpty else { throw ValidationError("give at least one --impl") }
    }

    func run() throws {
        let (specs, all) = try selection.loadWithAll()
        let options = settings.options
        var columns: [MatrixColumn] = []
        var exitCode: Int32 = 0
        for name in impl {
            let implementation: Implementation
            do { implementation = try Implementation.named(name, fixturesDirectory: Layout.fixtures) } catch {
                printError("cluster-conformance: \(error)")
                throw Exit.badInput
            }
            let info = try handshake(implementation, options)
            let known = try loadExpectations(for: name, path: nil, ids: Set(all.map(\.id)))
            let collector = ResultCollector()
            let runner = SuiteRunner(implementation: implementation, info: info, options: options, jobs: settings.jobs, repeats: 1, expectations: known)
            let summary = runner.run(specs, reporter: ReporterFan([HumanReporter(sink: .standardOutput), collector]))
            columns.append(MatrixColumn(info: info, results: collector.results, expectations: known, summary: summary))
            exitCode = max(exitCode, summary.exitCode)
        }
        let matrix = ConformanceMatrix(specs: specs, columns: columns)
        let command = "cluster-conformance matrix " + impl.map { "--impl \($0)" }.joined(separator: " ")
        let dir = outputDirectory ?? Layout.root()
        do {
            try matrix.markdown(generatedBy: command).write(toFile: dir + "/CONFORMANCE.md", atomically: true, encoding: .utf8)
            try matrix.html(generatedBy: command).write(toFile: dir + "/conformance.html", atomically: true, encoding: .utf8)
        } catch {
            printError("cluster-conformance: cannot write the matrix: \(error.localizedDescription)")
            throw Exit.badInput
        }
        print("wrote \(Layout.relative(dir + "/CONFORMANCE.md")) and \(Layout.relative(dir + "/conformance.html"))")
        for c in columns {
            print("  \(c.info.name) \(c.info.version): \(String(format: "%.1f", c.passPercentage)) % pass; \(c.summary.counts)")
        }
        if exitCode != 0 { throw ExitCode(exitCode) }
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
