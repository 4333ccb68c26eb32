import ArgumentParser
import ClusterConformance
import ClusterSpec
import Foundation

struct Mutate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure what the suite catches: run it against mutants of the Node reference (fixtures/node-mutants/).",
        discussion: """
            Each mutant is a CommonJS module preloaded before the Node fixture (the descriptor's command with \
            `--require MUTANT` after its program) that breaks one catalogued behaviour. A spec kills a mutant when its \
            result is unexpected against the implementation's expectations, as `run` judges it. First the unmutated \
            preload path (baseline.cjs) must leave every result as expected.

            Full mode runs every selected spec against every mutant. --quick (for CI) runs the specs that name the \
            mutant's behaviour first, then the rest, and stops at the first kill; every spec that killed is then checked \
            against the baseline.

            Exit codes: 0 every mutant killed; 1 a mutant survived, or the preload path alone changed a result; 2 bad \
            input (options, a mutant's header, a non-Node implementation); 3 the implementation could not run.
            """
    )

    @OptionGroup var selection: SpecSelection

    @Option(name: .long, help: "A Node-family implementation (a directory of fixtures/): node, node18, node22, node24.")
    var impl: String = "node"

    @Option(name: .long, help: "The directory of mutants (default: fixtures/node-mutants).")
    var mutants: String?

    @Option(name: .long, help: "Only this mutant (its file name without .cjs; repeatable).")
    var mutant: [String] = []

    @Flag(name: .long, help: "Stop each mutant at its first kill, running the specs that name its behaviour first.")
    var quick = false

    @OptionGroup var settings: RunSettings

    @Option(name: .long, help: "Write the report as JSON to this file (for matrix --mutation-report).")
    var output: String?

    @Option(name: .long, help: "Standard output: text (a table) or json (the report).")
    var format: String = "text"

    func validate() throws {
        guard ["text", "json"].contains(format) else { throw ValidationError("--format must be text or json") }
    }

    func run() throws {
        let (selected, all) = try selection.loadWithAll()
        let set: MutantSet
        let chosen: [Mutant]
        do {
            set = try MutantSet.load(directory: mutants ?? Layout.fixtures + "/node-mutants")
            chosen = try set.selecting(mutant)
        } catch {
            printError("\(error)")
            throw Exit.badInput
        }
        let implementation: Implementation
        do { implementation = try Implementation.named(impl, fixturesDirectory: Layout.fixtures) } catch {
            printError("cluster-conformance: \(error)")
            throw Exit.badInput
        }
        // The report's path is checked before the run, not after minutes of it.
        let sink: ReportSink?
        do { sink = try output.map { try ReportSink.file($0) } } catch {
            printError("cluster-conformance: \(error)")
            throw Exit.badInput
        }
        let known = try loadExpectations(for: impl, path: nil, ids: Set(all.map(\.id)))
        let runner: MutationRunner
        switch MutationRunner.prepare(implementation: implementation, set: set, options: settings.options, jobs: settings.jobs,
                                      expectations: known) {
        case .success(let r): runner = r
        case .failure(let e):
            printError("cluster-conformance mutate: \(e)")
            throw e.badInput ? Exit.badInput : Exit.broken
        }

        // The specs for the Node version the implementation follows (a spec's nodeVersions may exclude it).
        let specs = selected.filter(runner.info.follows)
        guard !specs.isEmpty else {
            printError("cluster-conformance mutate: none of the \(selected.count) selected specs is for Node \(runner.info.node), which \(impl) follows")
            throw Exit.badInput
        }
        if !quick {
            printError("mutate: the baseline (the preload path without a mutation) against \(specs.count) specs")
            let (summary, unexpected) = runner.runBaseline(specs, reporter: HumanReporter(sink: .standardError))
            guard unexpected.isEmpty && summary.errors == 0 else {
                printError(baselineChanged(unexpected))
                throw ExitCode(1)
            }
        }
        printError("mutate: \(chosen.count) mutant\(chosen.count == 1 ? "" : "s") × \(specs.count) specs, \(quick ? "quick" : "full") mode, \(settings.jobs) jobs")
        let outcome = runner.run(chosen, specs: specs, mode: quick ? .quick : .full) { result, done, total in
            let verdict = result.survived ? "SURVIVED" : "killed by \(result.killedBy.count == 1 ? "" : "\(result.killedBy.count) specs: ")\(result.killers)"
            printError("  [\(done)/\(total)] \(result.name) (\(result.behaviour)): \(verdict); \(result.specsRun) spec\(result.specsRun == 1 ? "" : "s") run in \(String(format: "%.1f", result.seconds)) s")
        }
        if !outcome.baselineUnexpected.isEmpty {
            printError(baselineChanged(outcome.baselineUnexpected))
            throw ExitCode(1)
        }
        let report = outcome.report
        sink?.write(report.jsonText)
        if format == "json" { print(report.jsonText, terminator: "") } else { print(report.table(), terminator: "") }
        if let output { printError("mutate: wrote \(output)") }
        if !report.survivors.isEmpty {
            printError("mutate: \(report.survivors.count) mutant\(report.survivors.count == 1 ? "" : "s") survived: "
                + report.survivors.map { "\($0.name) (\($0.behaviour))" }.joined(separator: ", "))
            throw ExitCode(1)
        }
    }

    func baselineChanged(_ unexpected: [SpecResult]) -> String {
        "mutate: the preload path itself changes \(unexpected.count) result\(unexpected.count == 1 ? "" : "s") (baseline.cjs, no mutation), so no kill can be trusted:\n"
            + unexpected.map { "  \($0.outcome.name) \($0.id) (\($0.location.file)): \($0.messages.first ?? "")" }.joined(separator: "\n")
    }
}
