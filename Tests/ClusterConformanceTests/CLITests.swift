import Foundation
import Testing
@testable import ClusterConformance

#if canImport(Glibc)
import Glibc
#endif

/// The command-line tool, run as a user runs it: the built `cluster-conformance` in a working directory.
@Suite("CLI", .serialized)
struct CLITests {
    @Test("lint: a misspelt key gives file:line:col and exit code 2")
    func misspeltKey() throws {
        let file = Paths.packageRoot + "/Tests/ClusterSpecTests/LintCases/misspelt-top-key.yaml"
        let r = try runCommand([Paths.cli, "lint", file])
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(file):5:1: unknown key 'descripton' in the spec (did you mean 'description'?)"))
    }

    @Test("lint: broken YAML gives file:line:col and exit code 2")
    func brokenYAML() throws {
        let file = Paths.packageRoot + "/Tests/ClusterSpecTests/LintCases/broken-flow-sequence.yaml"
        let r = try runCommand([Paths.cli, "lint", file])
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(file):5:6: did not find expected ',' or ']'"))
    }

    @Test("lint: the suite is clean")
    func suiteClean() throws {
        let r = try runCommand([Paths.cli, "lint", Paths.specs])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == "\(try SuiteRun.specs().count) specs: no problems\n")
    }

    @Test("run: an implementation whose program does not exist is exit code 3, naming the path")
    func cannotStart() throws {
        let r = try runCommand([Paths.cli, "run", "--impl-command", "/nonexistent/fixture", Paths.specs])
        #expect(r.status == 3)
        #expect(r.stderr.contains("cannot start: /nonexistent/fixture does not exist"), "\(r.stderr)")
    }

    @Test("run: a bad option is a usage error")
    func usage() throws {
        let r = try runCommand([Paths.cli, "run", "--format", "yaml"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--format must be human, tap, junit or jsonl"))
    }

    @Test("run: a descriptor field given with --impl instead of --impl-command is a usage error, not ignored")
    func descriptorFieldsNeedCommand() throws {
        let r = try runCommand([Paths.cli, "run", "--impl", "node", "--policy-env", "X", "--platform-env", "Y"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--policy-env, --platform-env go with --impl-command"), "\(r.stderr)")
    }

    @Test("run: --runtime without $runtime in --impl-command is a usage error, not ignored")
    func runtimeNeedsPlaceholder() throws {
        let r = try runCommand([Paths.cli, "run", "--impl-command", "node fixtures/node/fixture.mjs", "--runtime", "/bin/sh"],
                               cwd: Paths.packageRoot)
        #expect(r.status == 2)
        #expect(r.stderr.contains("--runtime was given, but --impl-command does not name $runtime"), "\(r.stderr)")
    }

    // A runner built in a package whose build directory lacks `cluster-fixture`: a copy of the CLI in
    // `TMP/pkg/.build/TRIPLE/debug/`, next to a manifest that declares the product, as on a fresh clone where only
    // `cluster-conformance` was built.
    @Test("run: a fixture that is not built names the exact command that builds it")
    func fixtureNotBuilt() throws {
        let tmp = try temporaryDirectory("not-built")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let package = tmp + "/pkg"
        let bin = package + "/.build/x86_64-unknown-linux-gnu/debug"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Paths.cli, toPath: bin + "/cluster-conformance")
        try #"let package = Package(products: [.executable(name: "cluster-fixture", targets: ["cluster-fixture"])])"#
            .write(toFile: package + "/Package.swift", atomically: true, encoding: .utf8)
        #expect(!onPath("cluster-fixture"))

        let r = try runCommand([bin + "/cluster-conformance", "run", "--impl", "swift"], cwd: Paths.packageRoot)
        #expect(r.status == 3)
        #expect(r.stderr.contains("cluster-fixture is not built"), "\(r.stderr)")
        #expect(r.stderr.contains("run `swift build --package-path \(package) --product cluster-fixture`"), "\(r.stderr)")
        #expect(!r.stderr.contains("ENOENT"))

        // From the package's own directory (the suite's files linked into it) the command is shorter, and still exact.
        for name in ["Specs", "fixtures"] {
            try FileManager.default.createSymbolicLink(atPath: package + "/" + name, withDestinationPath: Paths.packageRoot + "/" + name)
        }
        let here = try runCommand([bin + "/cluster-conformance", "run", "--impl", "swift"], cwd: package)
        #expect(here.status == 3)
        #expect(here.stderr.contains("run `swift build --product cluster-fixture`"), "\(here.stderr)")
    }

    @Test("run: a relative program and a relative argument of --impl-command are found from the starting directory")
    func relativePaths() throws {
        try #require(onPath("node"))
        let tmp = try temporaryDirectory("relative")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.createDirectory(atPath: tmp + "/sub", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: tmp + "/sub/fixture.mjs", withDestinationPath: Paths.fixtures + "/node/fixture.mjs")
        try "#!/bin/sh\nexec node \"$@\"\n".write(toFile: tmp + "/my-fixture", atomically: true, encoding: .utf8)
        #expect(chmod(tmp + "/my-fixture", 0o755) == 0)

        let r = try runCommand([Paths.cli, "run", "--impl-command", "./my-fixture sub/fixture.mjs", "--impl-name", "mine",
                                "--policy-env", "NODE_CLUSTER_SCHED_POLICY", "--filter", "scheduling.env.*"], cwd: tmp)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        #expect(r.stdout.contains(" passed, 0 failed, 0 skipped, 0 errors"), "\(r.stdout)")
    }

    @Test("run: every --impl-command example of the README works as written, and skips nothing")
    func readmePlugInExamples() throws {
        try #require(onPath("node"))
        let examples = try readmeCommands().filter { $0.contains("--impl-command") }
        #expect(!examples.isEmpty, "the README shows no --impl-command example")
        for example in examples {
            // As a user types it in the package's directory; `swift run` would only rebuild what the tests built.
            let command = example.replacingOccurrences(of: "swift run cluster-conformance", with: "'\(Paths.cli)'")
            #expect(command != example)
            let r = try runCommand(["/bin/sh", "-c", command], cwd: Paths.packageRoot)
            #expect(r.status == 0, "\(example)\n\(r.stdout)\n\(r.stderr)")
            let summary = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
            #expect(summary.contains(" passed, 0 failed, 0 skipped, 0 errors"), "\(example)\n\(summary)")
            #expect(!summary.contains(": 0 passed"), "\(example)\n\(summary)")
        }
    }

    @Test("CI runs the README's first command first, before any other build")
    func ciRunsTheReadmeFirst() throws {
        let first = try #require(try readmeCommands().first)
        let ci = try String(contentsOfFile: Paths.packageRoot + "/.ci/run", encoding: .utf8)
        let firstSwift = ci.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .first { $0.hasPrefix("swift ") }
        #expect(firstSwift == first)
        #expect(first == "swift run cluster-conformance run")
    }
}

/// The commands of the README's `sh` blocks, in order: continuation lines joined, comments removed.
func readmeCommands() throws -> [String] {
    let text = try String(contentsOfFile: Paths.packageRoot + "/README.md", encoding: .utf8)
    var commands: [String] = []
    var inBlock = false
    var pending = ""
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
        if line.hasPrefix("```") {
            inBlock = line == "```sh"
            continue
        }
        guard inBlock else { continue }
        var command = String(line)
        // A `#` after whitespace outside quotes starts a comment; the README's commands quote no `#`.
        if let hash = command.range(of: " #") { command = String(command[..<hash.lowerBound]) }
        command = command.trimmingCharacters(in: .whitespaces)
        if command.hasSuffix("\\") {
            pending += command.dropLast().trimmingCharacters(in: .whitespaces) + " "
            continue
        }
        command = pending + command
        pending = ""
        if !command.isEmpty { commands.append(command) }
    }
    return commands
}

/// A new empty directory under the temporary directory.
func temporaryDirectory(_ name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("cc-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// `matrix --from`, run as a user runs it: bad results files are exit code 2 with the file and line.
@Suite("CLI: matrix --from", .serialized)
struct MatrixFromCLITests {
    @Test("a results file cut short, or --from with --impl, is exit code 2 naming what is wrong")
    func badInput() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("from-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "{\"type\":\"header\",\"protocol\":2".write(toFile: dir + "/cut.jsonl", atomically: true, encoding: .utf8)
        var r = try runCommand([Paths.cli, "matrix", "--from", dir + "/cut.jsonl", "--output-directory", dir], cwd: Paths.packageRoot)
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(dir)/cut.jsonl:1: the last line is cut short (no newline)"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/CONFORMANCE.md"))
        r = try runCommand([Paths.cli, "matrix", "--from", dir + "/cut.jsonl", "--impl", "node"], cwd: Paths.packageRoot)
        #expect(r.status == 2)
        #expect(r.stderr.contains("give --impl (run the implementations) or --from (merge results files), one of them"), "\(r.stderr)")
    }
}

/// `matrix --impl`, run as a user runs it: several implementations from one pool of jobs.
@Suite("CLI: matrix --impl", .enabled(if: onPath("node")))
struct MatrixImplCLITests {
    @Test("the implementations run side by side, each one's report printed as one block, into an output directory made on the way")
    func sideBySide() throws {
        let dir = try temporaryDirectory("matrix")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let out = dir + "/not/yet/there"
        let r = try runCommand([Paths.cli, "matrix", "--impl", "swift", "--impl", "node", "--filter", "scheduling.env.*", "--jobs", "4",
                                "--output-directory", out, "--verdicts", dir + "/not/verdicts.tsv"], cwd: Paths.packageRoot)
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let ids = try loadSuiteStrictly().map(\.id).filter { $0.hasPrefix("scheduling.env.") }
        #expect(ids.count >= 3)
        // Each implementation's lines form one block: its header, a line per spec, its summary, with no line of the other in between.
        let lines = r.stdout.split(separator: "\n").map(String.init)
        for name in ["swift", "node"] {
            let first = try #require(lines.firstIndex { $0.hasPrefix("cluster-conformance: \(name) ") }, "\(r.stdout)")
            let block = lines[first...].prefix(ids.count + 2)
            #expect(block.last?.hasPrefix("\(name) ") == true && block.last?.contains("\(ids.count) specs: \(ids.count) passed") == true, "\(r.stdout)")
            #expect(Set(block.dropFirst().dropLast().compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.map(String.init) }) == Set(ids),
                    "\(r.stdout)")
        }
        #expect(FileManager.default.fileExists(atPath: out + "/CONFORMANCE.md"))
        #expect(FileManager.default.fileExists(atPath: out + "/conformance.html"))
        let verdicts = try String(contentsOfFile: dir + "/not/verdicts.tsv", encoding: .utf8).split(separator: "\n")
        #expect(verdicts.count == ids.count * 2)
        #expect(verdicts.allSatisfy { $0.hasSuffix("\tpass") }, "\(verdicts)")
    }
}
