import ClusterSpec
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// An implementation under test: how to start its fixture and how it names the neutral set-up knobs
/// (`fixtures/<name>/implementation.yaml`, protocol §9).
public struct Implementation: Sendable {
    /// The `--impl` name.
    public var name: String
    /// One line about it.
    public var description: String?
    /// The fixture's argv, with paths resolved.
    public var command: [String]
    /// The environment variable that selects the scheduling policy.
    public var policyEnv: String?
    /// The environment variable that selects a simulated platform.
    public var platformEnv: String?

    /// An implementation given as an argv used as it is (the runner's tests).
    public init(command: [String], name: String = "command") {
        self.name = name
        self.command = command
    }

    /// An implementation given on the command line (`cluster-conformance run --impl-command`), with every field a
    /// descriptor has. Paths are resolved against `workingDirectory` (where `cluster-conformance` was started),
    /// because the fixture itself runs in a private temporary directory: a program written with a `/` becomes
    /// absolute, a bare program name is left for PATH lookup, and an argument that names an existing file or
    /// directory becomes absolute. `$runtime` in `argv` stands for `runtime`, as in a descriptor.
    public static func commandLine(_ argv: [String], workingDirectory: String, name: String? = nil, description: String? = nil,
                                   policyEnv: String? = nil, platformEnv: String? = nil,
                                   runtime: String? = nil) throws(ImplementationError) -> Implementation {
        guard !argv.isEmpty else { throw ImplementationError("--impl-command is empty") }
        var argv = argv
        if argv.contains("$runtime") {
            guard let runtime else { throw ImplementationError("--impl-command names $runtime: give --runtime PATH") }
            let program = absolute(runtime, against: workingDirectory)
            guard FileManager.default.isExecutableFile(atPath: program) else {
                throw ImplementationError("--runtime \(runtime) is not an executable file")
            }
            argv = argv.map { $0 == "$runtime" ? program : $0 }
        } else if runtime != nil {
            throw ImplementationError("--runtime was given, but --impl-command does not name $runtime")
        }
        let program = argv[0].contains("/") ? absolute(argv[0], against: workingDirectory) : argv[0]
        let arguments = argv.dropFirst().map { arg in
            let candidate = absolute(arg, against: workingDirectory)
            return !arg.hasPrefix("/") && FileManager.default.fileExists(atPath: candidate) ? candidate : arg
        }
        var impl = Implementation(command: [program] + arguments, name: name ?? URL(fileURLWithPath: program).lastPathComponent)
        impl.description = description
        impl.policyEnv = policyEnv
        impl.platformEnv = platformEnv
        return impl
    }

    static func absolute(_ path: String, against directory: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: directory).appendingPathComponent(path).standardizedFileURL.path
    }

    /// Loads `implementation.yaml` from `directory`. A `runtime` entry names the program that runs the
    /// fixture (`$runtime` in `command`): `runtime` (the `--runtime` option) when given, else the
    /// descriptor's `installed` path (relative to the package root, where fixtures/install-runtimes.sh puts
    /// it), else its `program` on PATH.
    public static func load(directory: String, runtime override: String? = nil) throws(ImplementationError) -> Implementation {
        let file = (directory as NSString).appendingPathComponent("implementation.yaml")
        guard let data = FileManager.default.contents(atPath: file), let text = String(validating: Array(data), as: UTF8.self) else {
            throw ImplementationError("cannot read \(file)")
        }
        let root: YAMLNode?
        do { root = try YAMLDocument.parse(text) } catch { throw ImplementationError("\(file):\(error)") }
        guard let root, case .mapping(let pairs) = root.content else { throw ImplementationError("\(file):1:1: must be a mapping") }
        var fields: [String: YAMLNode] = [:]
        for p in pairs {
            guard case .scalar(let k, _) = p.key.content else { continue }
            guard ["name", "description", "command", "policyEnv", "platformEnv", "runtime"].contains(k) else {
                throw ImplementationError("\(file):\(p.key.mark): unknown key '\(k)'")
            }
            fields[k] = p.value
        }
        func field(_ key: String) -> String? {
            if case .scalar(let s, _)? = fields[key]?.content { return s }
            return nil
        }
        guard let name = field("name") else { throw ImplementationError("\(file): missing 'name'") }
        guard case .sequence(let items)? = fields["command"]?.content, !items.isEmpty else {
            throw ImplementationError("\(file): 'command' must be a non-empty list")
        }
        var argv: [String] = items.compactMap { if case .scalar(let s, _) = $0.content { return s } else { return nil } }
        if argv.contains("$runtime") {
            var installed: String?, program: String?
            if case .mapping(let pairs)? = fields["runtime"]?.content {
                for p in pairs {
                    guard case .scalar(let k, _) = p.key.content, case .scalar(let v, _) = p.value.content else { continue }
                    if k == "installed" { installed = v } else if k == "program" { program = v }
                }
            }
            let root = URL(fileURLWithPath: directory).deletingLastPathComponent().deletingLastPathComponent().path
            let runtime = try findRuntime(name: name, override: override, installed: installed.map { root + "/" + $0 }, program: program)
            argv = argv.map { $0 == "$runtime" ? runtime : $0 }
        } else if override != nil {
            throw ImplementationError("--runtime was given, but the implementation '\(name)' names no runtime")
        }
        var impl = Implementation(command: [resolveProgram(argv[0], in: directory)] + argv.dropFirst().map { resolve($0, in: directory) },
                                  name: name)
        impl.description = field("description")
        impl.policyEnv = field("policyEnv")
        impl.platformEnv = field("platformEnv")
        return impl
    }

    /// A relative path that names a file of the descriptor's directory becomes absolute; a bare program
    /// name that is not such a file is left for PATH lookup.
    static func resolve(_ arg: String, in directory: String) -> String {
        if arg.hasPrefix("/") { return arg }
        let candidate = URL(fileURLWithPath: directory).appendingPathComponent(arg).standardizedFileURL.path
        if arg.contains("/") || FileManager.default.fileExists(atPath: candidate) { return candidate }
        return arg
    }

    /// The program: a file of the descriptor's directory, else a product built next to the running
    /// executable (SwiftPM puts `cluster-fixture` beside `cluster-conformance`, whatever the configuration
    /// or scratch path), else a name for PATH lookup.
    static func resolveProgram(_ arg: String, in directory: String) -> String {
        let resolved = resolve(arg, in: directory)
        guard resolved == arg, !arg.contains("/") else { return resolved }
        let beside = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent(arg).path
        return FileManager.default.isExecutableFile(atPath: beside) ? beside : arg
    }

    /// Why the program (`command[0]`) cannot be started, if it cannot, saying what to do: a path that is not an
    /// executable file, or a name found neither next to `cluster-conformance` nor on PATH; when that name is a
    /// product of the package `cluster-conformance` was built from, the exact `swift build` command that builds it.
    public func programProblem() -> String? {
        let program = command[0]
        var isDirectory: ObjCBool = false
        if program.contains("/") {
            if !FileManager.default.fileExists(atPath: program, isDirectory: &isDirectory) { return "\(program) does not exist" }
            if isDirectory.boolValue || !FileManager.default.isExecutableFile(atPath: program) {
                return "\(program) is not an executable file (make it executable, or put its interpreter first in the command)"
            }
            return nil
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        if path.split(separator: ":").contains(where: { FileManager.default.isExecutableFile(atPath: "\($0)/\(program)") }) { return nil }
        let here = Self.buildDirectory
        if let build = Self.buildCommand(forProduct: program) {
            return "\(program) is not built (it is not in \(here.path)): run `\(build)`"
        }
        return "\(program) was found neither in \(here.path) nor on PATH"
    }

    /// The directory of the running executable: SwiftPM's build directory for `cluster-conformance` and the tests.
    static var buildDirectory: URL {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    }

    /// `swift build … --product NAME` for the package whose build directory holds the running executable
    /// (`ROOT/.build/TRIPLE/CONFIGURATION/`), when `NAME` is one of its products; nil otherwise.
    static func buildCommand(forProduct product: String) -> String? {
        let configuration = buildDirectory.lastPathComponent
        let scratch = buildDirectory.deletingLastPathComponent().deletingLastPathComponent()
        let root = scratch.deletingLastPathComponent()
        guard ["debug", "release"].contains(configuration),
              let manifest = try? String(contentsOfFile: root.path + "/Package.swift", encoding: .utf8),
              manifest.contains("name: \"\(product)\"") else { return nil }
        var command = "swift build"
        if root.path != FileManager.default.currentDirectoryPath { command += " --package-path \(root.path)" }
        if scratch.lastPathComponent != ".build" { command += " --scratch-path \(scratch.path)" }
        if configuration == "release" { command += " -c release" }
        return command + " --product \(product)"
    }

    static func findRuntime(name: String, override: String?, installed: String?, program: String?) throws(ImplementationError) -> String {
        if let override {
            guard FileManager.default.isExecutableFile(atPath: override) else { throw ImplementationError("--runtime \(override) is not an executable file") }
            return override
        }
        if let installed, FileManager.default.isExecutableFile(atPath: installed) { return installed }
        if let program {
            for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(program)") {
                return "\(dir)/\(program)"
            }
        }
        throw ImplementationError("the runtime of '\(name)' was not found: run fixtures/install-runtimes.sh, put \(program ?? "it") on PATH, or pass --runtime PATH")
    }

    /// Finds `fixtures/<name>/` by looking in `fixturesDirectory`.
    public static func named(_ name: String, fixturesDirectory: String, runtime: String? = nil) throws(ImplementationError) -> Implementation {
        let dir = (fixturesDirectory as NSString).appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("implementation.yaml")) else {
            let known = (try? FileManager.default.contentsOfDirectory(atPath: fixturesDirectory))?
                .filter { FileManager.default.fileExists(atPath: "\(fixturesDirectory)/\($0)/implementation.yaml") }.sorted() ?? []
            throw ImplementationError("no implementation '\(name)' in \(fixturesDirectory) (known: \(known.joined(separator: ", ")))")
        }
        return try load(directory: dir, runtime: runtime)
    }
}

/// A descriptor that cannot be used.
public struct ImplementationError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public var description: String
    init(_ description: String) { self.description = description }
}

/// What an implementation said about itself in the handshake (protocol §2).
public struct ImplementationInfo: Sendable {
    /// Its name.
    public var name: String
    /// Its version.
    public var version: String
    /// The features it supports.
    public var features: Set<String>
    /// The Node.js version whose behaviour it follows (its handshake's `implementation.node`, else the reference).
    public var node: NodeVersion = .reference

    /// Whether a spec applies: its `nodeVersions`, if any, include the version the implementation follows.
    public func follows(_ spec: Spec) -> Bool { spec.nodeVersions?.contains(node) ?? true }
}

extension Implementation {
    /// Starts the fixture once, performs the handshake and shuts it down, to learn its features.
    public func probe(options: RunOptions) -> Result<ImplementationInfo, ImplementationError> {
        let label = "the implementation '\(name)'" + (description.map { " (\($0))" } ?? "")
        if let problem = programProblem() {
            return .failure(ImplementationError("\(label) cannot start: \(problem)"))
        }
        let probe = Spec(id: "handshake", description: "handshake", refs: [], basis: .observed, behaviours: [], features: [], from: nil,
                         comment: nil, timeout: 10_000, setup: Setup(), steps: [], expect: [],
                         location: SourceLocation(file: "(handshake)", mark: SourceMark(line: 1, column: 1)))
        let result = SpecRun(spec: probe, implementation: self, options: options).run()
        guard result.outcome == .pass, let hello = result.events.first(where: { $0["ev"] == .string("hello") }) else {
            var message = "\(label) failed the handshake (\(command.joined(separator: " "))): "
                + result.messages.joined(separator: "; ")
            if !result.stderrTail.isEmpty { message += "\nstderr:\n" + result.stderrTail.suffix(2000) }
            return .failure(ImplementationError(message))
        }
        let impl = hello["implementation"]
        let features = Set(hello["features"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        var info = ImplementationInfo(name: impl?["name"]?.stringValue ?? name, version: impl?["version"]?.stringValue ?? "?",
                                      features: features)
        if let node = impl?["node"] {
            guard let text = node.stringValue, let version = NodeVersion(text) else {
                return .failure(ImplementationError("\(label) answered the handshake with implementation.node \(node.jsonText): not a Node version (major[.minor[.patch]])"))
            }
            info.node = version
        }
        return .success(info)
    }
}
