import ClusterSpec
import Foundation

/// A mutant of a Node implementation: a CommonJS module preloaded before the Node fixture
/// (`node --require <path> fixture.mjs`) that breaks one catalogued behaviour (`fixtures/node-mutants/README.md`).
public struct Mutant: Sendable, Hashable {
    /// The file name without `.cjs`.
    public var name: String
    /// The behaviour it breaks, a catalogue id such as `RR-02` (its header's first line).
    public var behaviour: String
    /// What it breaks and how, in one line (its header's second line).
    public var summary: String
    /// The module's absolute path.
    public var path: String

    /// A mutant.
    public init(name: String, behaviour: String, summary: String, path: String) {
        self.name = name
        self.behaviour = behaviour
        self.summary = summary
        self.path = path
    }
}

/// A directory of mutants: every `*.cjs` file but `baseline.cjs`, which is the unmutated preload path.
public struct MutantSet: Sendable {
    /// The file every mutant's results are checked against: the preload path with no mutation.
    public static let baselineFileName = "baseline.cjs"

    /// The directory, absolute.
    public var directory: String
    /// The baseline module's absolute path.
    public var baseline: String
    /// The mutants, sorted by name.
    public var mutants: [Mutant]

    /// Loads `directory`. A mutant whose header is not `// Mutant: <BEHAVIOUR-ID>` then `// <summary>` is a problem
    /// naming the file, line and column; so is a directory without `baseline.cjs` or without a mutant.
    public static func load(directory: String) throws(SpecProblem) -> MutantSet {
        let dir = Implementation.absolute(directory, against: FileManager.default.currentDirectoryPath)
        func problem(_ file: String, _ line: Int, _ message: String) -> SpecProblem {
            SpecProblem(SourceLocation(file: file, mark: SourceMark(line: line, column: 1)), message)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue,
              let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
            throw problem(directory, 1, "not a directory of mutants")
        }
        let baseline = dir + "/" + baselineFileName
        guard FileManager.default.fileExists(atPath: baseline) else {
            throw problem(directory, 1, "no \(baselineFileName) (the preload path without a mutation, which every result is checked against)")
        }
        var mutants: [Mutant] = []
        for name in names.sorted() where name.hasSuffix(".cjs") && name != baselineFileName {
            mutants.append(try Mutant.load(path: dir + "/" + name))
        }
        guard !mutants.isEmpty else { throw problem(directory, 1, "no mutant (*.cjs besides \(baselineFileName))") }
        return MutantSet(directory: dir, baseline: baseline, mutants: mutants)
    }

    /// The mutants named (file names without `.cjs`), in the order given; an unknown name is a problem that lists the known ones.
    public func selecting(_ names: [String]) throws(SpecProblem) -> [Mutant] {
        guard !names.isEmpty else { return mutants }
        var chosen: [Mutant] = []
        for name in names {
            let bare = name.hasSuffix(".cjs") ? String(name.dropLast(4)) : name
            guard let m = mutants.first(where: { $0.name == bare }) else {
                throw SpecProblem(SourceLocation(file: directory, mark: SourceMark(line: 1, column: 1)),
                                  "no mutant '\(name)' (known: \(mutants.map(\.name).joined(separator: ", ")))")
            }
            if !chosen.contains(m) { chosen.append(m) }
        }
        return chosen
    }
}

extension Mutant {
    /// A behaviour id as the catalogue writes them: capitals, a dash, digits (`LISTEN-05`).
    static func isBehaviourID(_ s: Substring) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[0].allSatisfy { $0.isASCII && $0.isUppercase }
            && !parts[1].isEmpty && parts[1].allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// Reads a mutant's two-line header.
    static func load(path: String) throws(SpecProblem) -> Mutant {
        func problem(_ line: Int, _ column: Int, _ message: String) -> SpecProblem {
            SpecProblem(SourceLocation(file: path, mark: SourceMark(line: line, column: column)), message)
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(validating: Array(data), as: UTF8.self) else {
            throw problem(1, 1, "cannot read the mutant")
        }
        let lines = text.split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false)
        let first = lines.first.map { $0.hasSuffix("\r") ? $0.dropLast() : $0 } ?? ""
        let prefix = "// Mutant: "
        guard first.hasPrefix(prefix) else {
            throw problem(1, 1, "a mutant starts with the line '// Mutant: <BEHAVIOUR-ID>' (e.g. '// Mutant: RR-02'), not '\(first.prefix(60))'")
        }
        let id = first.dropFirst(prefix.count)
        guard isBehaviourID(id) else {
            throw problem(1, prefix.count + 1, "'\(id)' is not a behaviour id of the catalogue (capitals, a dash, digits: RR-02)")
        }
        let second = lines.count > 1 ? (lines[1].hasSuffix("\r") ? lines[1].dropLast() : lines[1]) : ""
        let summary = second.hasPrefix("// ") ? second.dropFirst(3).trimmingCharacters(in: .whitespaces) : ""
        guard !summary.isEmpty, !summary.hasPrefix("Mutant:") else {
            throw problem(2, 1, "a mutant's second line says in one comment line what it breaks and how: '// <summary>'")
        }
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return Mutant(name: name, behaviour: String(id), summary: summary, path: path)
    }
}

extension Implementation {
    /// This implementation with `module` preloaded: `--require <module>` right after the program, so that the Node
    /// runtime loads it before the fixture in the primary and, through `execArgv`, in every worker.
    public func preloading(_ module: String) -> Implementation {
        var copy = self
        copy.command = [command[0], "--require", module] + command.dropFirst()
        return copy
    }

    /// Why the mutants cannot run against this implementation, if they cannot: they are Node.js preload modules,
    /// so the descriptor must be of the Node family (its name starts with `node`: node, node18, node22, node24).
    /// The handshake then confirms it (`nodeHandshakeProblem`).
    public var mutationProblem: String? {
        name.hasPrefix("node") ? nil
            : "the mutants are Node.js preload modules (node --require); '\(name)' is not a Node implementation (mutate runs the node family: a descriptor whose name starts with 'node')"
    }
}
