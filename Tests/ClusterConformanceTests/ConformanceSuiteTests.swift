import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// The library's entry point for other packages: where it finds the suite, what it loads, and one spec run through it.
@Suite("ConformanceSuite")
struct ConformanceSuiteTests {
    /// A suite root of its own in a temporary directory: the real feature list, one spec copied from the suite (with
    /// `extra` appended), and the node fixture linked in.
    static func miniature(_ name: String, extra: String = "") throws -> String {
        let root = try temporaryDirectory(name)
        try FileManager.default.createDirectory(atPath: root + "/Specs", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/fixtures", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Paths.specs + "/features.yaml", toPath: root + "/Specs/features.yaml")
        let one = try #require(try SuiteRun.specs().first { $0.id == "kill.sigkill.exit-signal" })
        let yaml = try String(contentsOfFile: one.location.file, encoding: .utf8) + extra
        try yaml.write(toFile: root + "/Specs/one.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/fixtures/node", withDestinationPath: Paths.fixtures + "/node")
        return root
    }

    @Test("with no root given, the suite is the package the library was compiled from (#filePath), every spec loaded")
    func fromSourcePath() throws {
        #expect(ConformanceSuite.sourceRoot == Paths.packageRoot)
        let suite = try ConformanceSuite(environment: [:])
        #expect(suite.root == Paths.packageRoot)
        #expect(suite.ids == (try SuiteRun.specs().map(\.id)))
        #expect(suite.ids.count > 0)
        #expect(suite.features.contains("fork"))
        #expect(suite.implementationNames.contains("node"))
        #expect(suite.implementationNames.contains("swift"))
        #expect(try suite.implementation(named: "node").command.last == Paths.fixtures + "/node/fixture.mjs")
    }

    @Test("an explicit root wins over the environment variable, which wins over the source path")
    func explicitAndEnvironment() throws {
        let mini = try Self.miniature("explicit")
        defer { try? FileManager.default.removeItem(atPath: mini) }
        let explicit = try ConformanceSuite(root: mini, environment: [ConformanceSuite.rootVariable: Paths.packageRoot])
        #expect(explicit.root == mini)
        #expect(explicit.ids == ["kill.sigkill.exit-signal"])
        #expect(explicit.implementationNames == ["node"])
        let fromVariable = try ConformanceSuite(environment: [ConformanceSuite.rootVariable: mini])
        #expect(fromVariable.root == mini)
        #expect(fromVariable.specs.map(\.location.file) == [mini + "/Specs/one.yaml"])
    }

    @Test("a root without Specs/features.yaml is an error naming where it came from")
    func badRoot() throws {
        let empty = try temporaryDirectory("bad-root")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let explicit = #expect(throws: SuiteError.self) { try ConformanceSuite(root: empty) }
        #expect(explicit?.kind == .badRoot)
        #expect(explicit?.description.hasPrefix("root: \(empty) is not a conformance suite root: \(empty)/Specs/features.yaml does not exist") == true,
                "\(explicit?.description ?? "")")
        let variable = #expect(throws: SuiteError.self) { try ConformanceSuite(environment: [ConformanceSuite.rootVariable: empty]) }
        #expect(variable?.kind == .badRoot)
        #expect(variable?.description.hasPrefix("$CLUSTER_CONFORMANCE_ROOT \(empty) is not") == true, "\(variable?.description ?? "")")
    }

    @Test("a spec with a problem fails the load with its file:line:col")
    func specProblem() throws {
        let mini = try Self.miniature("problem", extra: "colour: red\n")
        defer { try? FileManager.default.removeItem(atPath: mini) }
        let line = try String(contentsOfFile: mini + "/Specs/one.yaml", encoding: .utf8).split(separator: "\n").count
        let error = #expect(throws: SuiteError.self) { try ConformanceSuite(root: mini) }
        #expect(error?.kind == .specProblems)
        #expect(error?.problems.map(\.location) == [SourceLocation(file: mini + "/Specs/one.yaml", mark: SourceMark(line: line, column: 1))])
        #expect(error?.description.hasPrefix(mini + "/Specs/one.yaml:\(line):1: unknown key 'colour'") == true, "\(error?.description ?? "")")
        #expect(error?.description.hasSuffix("\n1 problem in 1 of 1 spec files") == true, "\(error?.description ?? "")")
    }

    @Test("an unknown id and an expectations file naming one are errors")
    func unknownIDs() throws {
        let suite = try ConformanceSuite(environment: [:])
        let unknown = #expect(throws: SuiteError.self) { try suite.spec("kill.nonesuch") }
        #expect(unknown?.kind == .unknownSpec)
        #expect(unknown?.description.contains("no spec has the id 'kill.nonesuch' (ids like it: kill.") == true, "\(unknown?.description ?? "")")
        let file = try temporaryDirectory("expectations") + "/expectations.yaml"
        defer { try? FileManager.default.removeItem(atPath: (file as NSString).deletingLastPathComponent) }
        try "kill.nonesuch: {outcome: fail, reason: \"x\"}\n".write(toFile: file, atomically: true, encoding: .utf8)
        let bad = #expect(throws: SuiteError.self) { try suite.expectations(file: file) }
        #expect(bad?.kind == .expectations)
        #expect(bad?.description.hasPrefix("\(file):1:1: no spec has the id 'kill.nonesuch'") == true, "\(bad?.description ?? "")")
        #expect(try suite.expectations(file: file + ".missing").deviations.isEmpty)
        #expect(try suite.expectations(for: "swift").deviations.count == (try Expectations.load(Paths.fixtures + "/swift/expectations.yaml", knownIDs: Set(suite.ids)).get()).deviations.count)
    }

    @Test("one spec through the entry point: Node by name and by command pass; listed as failing, the pass is unexpected",
          .enabled(if: onPath("node")))
    func runOne() async throws {
        let suite = try ConformanceSuite(environment: [:])
        var options = RunOptions()
        options.timeoutScale = 2
        let node = try suite.prepare(named: "node", options: options)
        #expect(node.info.name == "node")
        // A closure without `await` is a synchronous context: the synchronous `check`, as a non-async test calls it.
        let byName = try { () throws -> SpecResult in try node.check("kill.sigkill.exit-signal") }()
        #expect(byName.outcome == .pass)
        #expect(byName.isExpected)

        var command = Implementation(command: ["node", suite.fixturesDirectory + "/node/fixture.mjs"], name: "by-command")
        command.policyEnv = "NODE_CLUSTER_SCHED_POLICY"
        let byCommand = try await suite.prepare(command, options: options).check("scheduling.env.rr")
        #expect(byCommand.outcome == .pass, "\(byCommand.report)")

        let listed = Expectations(["kill.sigkill.exit-signal": KnownDeviation(expected: .fail, reason: "listed to see the pass reported")])
        let strict = try suite.prepare(command, expectations: listed, options: options)
        let unexpected = await #expect(throws: UnexpectedResult.self) { try await strict.check("kill.sigkill.exit-signal") }
        #expect(unexpected?.result.outcome == .xpass)
        #expect(unexpected?.description.hasPrefix("xpass kill.sigkill.exit-signal (\(Paths.specs)/") == true, "\(unexpected?.description ?? "")")
    }

    @Test("an async run beyond `jobs` waits for a slot, and gets the first one released")
    func slots() async throws {
        let slots = RunSlots(2)
        await slots.acquire()
        await slots.acquire()
        let third = Task { await slots.acquire() }
        // The third caller suspends (it holds no thread); wait until it is queued, with a deadline.
        let deadline = ContinuousClock.now + .seconds(10)
        while slots.state.withLock({ $0.waiting.count }) == 0 {
            try #require(ContinuousClock.now < deadline, "the third acquire never queued")
            await Task.yield()
        }
        #expect(slots.state.withLock { $0.free } == 0)
        slots.release()
        await third.value
        // The released slot went to the waiter, not back to the pool.
        #expect(slots.state.withLock { ($0.free, $0.waiting.count) } == (0, 0))
        slots.release()
        slots.release()
        #expect(slots.state.withLock { $0.free } == 2)
    }
}

/// `--suite-root` and $CLUSTER_CONFORMANCE_ROOT on the command line.
@Suite("CLI: the suite root")
struct SuiteRootCLITests {
    @Test("--suite-root names another suite; list reads its specs")
    func suiteRoot() throws {
        let mini = try ConformanceSuiteTests.miniature("cli-root")
        defer { try? FileManager.default.removeItem(atPath: mini) }
        let r = try runCommand([Paths.cli, "list", "--suite-root", mini], cwd: FileManager.default.temporaryDirectory.path)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasSuffix("\n1 specs\n"), "\(r.stdout)")
        #expect(r.stdout.hasPrefix("kill.sigkill.exit-signal "), "\(r.stdout)")
        let env = try runCommand(["/usr/bin/env", "\(ConformanceSuite.rootVariable)=\(mini)", Paths.cli, "lint"], cwd: Paths.packageRoot)
        #expect(env.status == 0, "\(env.stderr)")
        #expect(env.stdout == "1 specs: no problems\n")
        let both = try runCommand(["/usr/bin/env", "\(ConformanceSuite.rootVariable)=/nonexistent", Paths.cli, "lint", "--suite-root", mini])
        #expect(both.status == 0, "the option wins over the variable: \(both.stderr)")
    }

    @Test("a root without Specs/features.yaml is exit 2 with the reason, for every command that reads the suite",
          arguments: [["run", "--impl", "node"], ["list"], ["lint"], ["matrix", "--impl", "node"], ["bench", "--smoke"]])
    func badRoot(_ command: [String]) throws {
        let empty = try temporaryDirectory("cli-bad-root")
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let r = try runCommand([Paths.cli] + command + ["--suite-root", empty])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--suite-root \(empty) is not a conformance suite root: \(empty)/Specs/features.yaml does not exist"), "\(r.stderr)")
        let env = try runCommand(["/usr/bin/env", "\(ConformanceSuite.rootVariable)=\(empty)", Paths.cli] + command)
        #expect(env.status == 2)
        #expect(env.stderr.contains("$CLUSTER_CONFORMANCE_ROOT \(empty) is not a conformance suite root"), "\(env.stderr)")
    }
}
