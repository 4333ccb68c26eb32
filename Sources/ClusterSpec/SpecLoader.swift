import Foundation

/// The result of loading spec files: the specs that loaded and every problem found.
public struct SpecSuite: Sendable {
    /// Specs that decoded without problems, in path order.
    public var specs: [Spec]
    /// Every problem, in file and position order.
    public var problems: [SpecProblem]
    /// The files that were read.
    public var files: [String]
}

/// Loads and checks spec files: YAML syntax, keys, types, features, variables and id uniqueness.
public struct SpecLoader: Sendable {
    /// The feature names a spec may use.
    public var features: Set<String>
    /// Limits applied to every YAML file.
    public var limits: YAMLLimits

    /// A loader accepting these feature names.
    public init(features: Set<String>, limits: YAMLLimits = YAMLLimits()) {
        self.features = features
        self.limits = limits
    }

    /// The name of the closed feature list, found next to the specs.
    public static let featuresFileName = "features.yaml"

    /// Reads `features.yaml`: a mapping from feature name to its description.
    public static func readFeatures(at path: String) throws(SpecProblem) -> [(name: String, description: String)] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw SpecProblem(SourceLocation(file: path, mark: SourceMark(line: 1, column: 1)), "cannot read the feature list: \(error.localizedDescription)")
        }
        let root: YAMLNode?
        do { root = try YAMLDocument.parse(text) } catch {
            throw SpecProblem(SourceLocation(file: path, mark: error.mark), error.message)
        }
        guard let root, case .mapping(let pairs) = root.content else {
            throw SpecProblem(SourceLocation(file: path, mark: root?.mark ?? SourceMark(line: 1, column: 1)), "the feature list must be a mapping of name to description")
        }
        return pairs.compactMap { p in
            guard case .scalar(let k, _) = p.key.content, case .scalar(let v, _) = p.value.content else { return nil }
            return (k, v)
        }
    }

    /// Finds `features.yaml` in the directory of `path` or one of its parents.
    public static func locateFeatures(near path: String) -> String? {
        var dir = URL(fileURLWithPath: path).standardizedFileURL
        var isDir: ObjCBool = false
        if !(FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDir) && isDir.boolValue) {
            dir.deleteLastPathComponent()
        }
        while true {
            let candidate = dir.appendingPathComponent(featuresFileName).path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            let parent = dir.deletingLastPathComponent()
            if parent.path == dir.path { return nil }
            dir = parent
        }
    }

    /// The spec files under `paths` (files as given, directories searched recursively for `*.yaml`), sorted.
    public static func specFiles(in paths: [String]) throws(SpecProblem) -> [String] {
        var files: [String] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw SpecProblem(SourceLocation(file: path, mark: SourceMark(line: 1, column: 1)), "no such file or directory")
            }
            if !isDir.boolValue { files.append(path); continue }
            guard let walker = FileManager.default.enumerator(atPath: path) else { continue }
            var found: [String] = []
            for case let rel as String in walker where rel.hasSuffix(".yaml") && !rel.hasSuffix(featuresFileName) {
                found.append((path as NSString).appendingPathComponent(rel))
            }
            files += found.sorted()
        }
        return files
    }

    /// Loads one file's text; `file` is the name used in problems.
    public func load(text: String, file: String) -> (spec: Spec?, problems: [SpecProblem]) {
        let root: YAMLNode?
        do { root = try YAMLDocument.parse(text, limits: limits) } catch {
            return (nil, [SpecProblem(SourceLocation(file: file, mark: error.mark), error.message)])
        }
        guard let root else {
            return (nil, [SpecProblem(SourceLocation(file: file, mark: SourceMark(line: 1, column: 1)), "the file is empty")])
        }
        var decoder = SpecDecoder(file: file, knownFeatures: features)
        let spec = decoder.decode(root)
        var problems = decoder.problems
        if let spec { problems += VariableCheck.problems(in: spec) }
        problems.sort { ($0.location.mark.line, $0.location.mark.column) < ($1.location.mark.line, $1.location.mark.column) }
        return (problems.isEmpty ? spec : nil, problems)
    }

    /// Loads one file from disk.
    public func load(file: String) -> (spec: Spec?, problems: [SpecProblem]) {
        guard let data = FileManager.default.contents(atPath: file) else {
            return (nil, [SpecProblem(SourceLocation(file: file, mark: SourceMark(line: 1, column: 1)), "cannot read the file")])
        }
        guard let text = String(validating: Array(data), as: UTF8.self) else {
            return (nil, [SpecProblem(SourceLocation(file: file, mark: SourceMark(line: 1, column: 1)), "the file is not valid UTF-8")])
        }
        return load(text: text, file: file)
    }

    /// Loads every spec file under `paths` and checks that ids are unique across them.
    public func loadSuite(paths: [String]) -> SpecSuite {
        let files: [String]
        do { files = try Self.specFiles(in: paths) } catch { return SpecSuite(specs: [], problems: [error], files: []) }
        var specs: [Spec] = []
        var problems: [SpecProblem] = []
        var seen: [String: SourceLocation] = [:]
        for file in files {
            let (spec, fileProblems) = load(file: file)
            problems += fileProblems
            guard let spec else { continue }
            if let first = seen[spec.id] {
                problems.append(SpecProblem(spec.location, "duplicate id '\(spec.id)' (first used at \(first))"))
                continue
            }
            seen[spec.id] = spec.location
            specs.append(spec)
        }
        return SpecSuite(specs: specs, problems: problems, files: files)
    }
}

/// Checks that every `$NAME` a spec uses is defined before it is needed.
enum VariableCheck {
    static func problems(in spec: Spec) -> [SpecProblem] {
        var defined: Set<String> = ["TMPDIR"]
        defined.formUnion(spec.setup.ports)
        defined.formUnion(spec.setup.inherit.compactMap(\.portVariable))
        defined.formUnion(spec.setup.payloads.map(\.name))
        var problems: [SpecProblem] = []
        func check(_ names: [String], at location: SourceLocation, _ known: Set<String>) {
            for name in names where !known.contains(name) {
                problems.append(SpecProblem(location, "variable $\(name) is not defined here (define it in setup.ports, setup.inherit or a capture step before this one)"))
            }
        }
        for step in spec.steps {
            check(variables(in: step.kind), at: step.location, defined)
            if case .capture(let name, _, _) = step.kind { defined.insert(name) }
        }
        for e in spec.expect {
            var names: [String] = []
            switch e.kind {
            case .events(let sel, _, let each, _, _, _, _, _): names = variables(in: sel) + (each.map(variables(in:)) ?? [])
            case .never(let sel): names = variables(in: sel)
            case .sequence(let sels): names = sels.flatMap(variables(in:))
            }
            check(names, at: e.location, defined)
        }
        return problems
    }

    static func variables(in step: Step.Kind) -> [String] {
        switch step {
        case .listen(_, _, let target, _, _, _):
            switch target {
            case .tcp(_, let port, _), .http(_, let port, _), .handle(_, let port), .udp(_, _, let port, _, _, _): return variables(in: port)
            case .unix, .fd: return []
            }
        case .send(_, _, let messages, _): return messages.flatMap(variables(in:))
        case .await(let sel, _), .capture(_, let sel, _): return variables(in: sel)
        case .connect(let c): if case .address(_, let port) = c.target { return variables(in: port) }
        case .datagram(let d): if case .address(_, let port) = d.target { return variables(in: port) }
        case .request(let r): if case .address(_, let port) = r.target { return variables(in: port) }
        default: break
        }
        return []
    }

    static func variables(in sel: Selector) -> [String] { sel.fields.values.flatMap(variables(in:)) }

    static func variables(in p: Predicate) -> [String] {
        switch p {
        case .equals(let v): return variables(in: v)
        case .list(let ps), .oneOf(let ps), .all(let ps): return ps.flatMap(variables(in:))
        case .partial(let m): return m.values.flatMap(variables(in:))
        case .not(let q), .contains(let q): return variables(in: q)
        case .range, .absent, .type: return []
        }
    }

    static func variables(in v: JSONValue) -> [String] {
        switch v {
        case .string(let s): return Variables.reference(in: s).map { [$0] } ?? []
        case .array(let items): return items.flatMap(variables(in:))
        case .object(let o): return o.members.flatMap { variables(in: $0.value) }
        default: return []
        }
    }
}

/// `$NAME` substitution in spec values.
public enum Variables {
    /// The variable a string refers to — `$NAME` (the whole string) or `$NAME/…` (a path under it) — or nil
    /// for a plain string (including `$$…`).
    public static func reference(in s: String) -> String? {
        guard s.hasPrefix("$"), !s.hasPrefix("$$") else { return nil }
        let name = String(s.dropFirst().prefix { $0 != "/" })
        return isIdentifier(name) ? name : nil
    }

    /// The value with every `$NAME` string replaced (keeping the variable's type), every `$NAME/rest`
    /// string replaced textually, and every `$$` prefix unescaped.
    public static func substitute(_ v: JSONValue, _ vars: [String: JSONValue]) -> JSONValue {
        switch v {
        case .string(let s):
            if let name = reference(in: s), let value = vars[name] {
                let rest = s.dropFirst(1 + name.count)
                if rest.isEmpty { return value }
                let text = value.stringValue ?? value.jsonText
                return .string(text + rest)
            }
            if s.hasPrefix("$$") { return .string(String(s.dropFirst())) }
            return v
        case .array(let items): return .array(items.map { substitute($0, vars) })
        case .object(let o): return .object(JSONObject(o.members.map { ($0.key, substitute($0.value, vars)) }))
        default: return v
        }
    }

    /// The predicate with its literal values substituted.
    public static func substitute(_ p: Predicate, _ vars: [String: JSONValue]) -> Predicate {
        switch p {
        case .equals(let v): return .equals(substitute(v, vars))
        case .list(let ps): return .list(ps.map { substitute($0, vars) })
        case .oneOf(let ps): return .oneOf(ps.map { substitute($0, vars) })
        case .all(let ps): return .all(ps.map { substitute($0, vars) })
        case .partial(let m): return .partial(m.mapValues { substitute($0, vars) })
        case .not(let q): return .not(substitute(q, vars))
        case .contains(let q): return .contains(substitute(q, vars))
        case .range, .absent, .type: return p
        }
    }

    /// The selector with its literal values substituted.
    public static func substitute(_ s: Selector, _ vars: [String: JSONValue]) -> Selector {
        Selector(s.order.map { ($0, substitute(s.fields[$0]!, vars)) })
    }
}
