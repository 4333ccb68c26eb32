import ClusterSpec
import Foundation

/// A known deviation of an implementation from Node 20, from `fixtures/<impl>/expectations.yaml`.
public struct KnownDeviation: Sendable, Hashable {
    /// What is expected of the spec.
    public enum Expected: String, Sendable, Hashable {
        /// The spec fails (or errors): reported `xfail`; a pass is an unexpected `xpass`.
        case fail
        /// The spec is not run.
        case skip
        /// Pass or fail are both accepted.
        case flaky
    }

    /// What is expected.
    public var expected: Expected
    /// Why, in one line.
    public var reason: String
}

/// The expectations file of one implementation: spec id → known deviation.
public struct Expectations: Sendable {
    /// The deviations by spec id.
    public var deviations: [String: KnownDeviation]
    /// Implementation-wide deviations from the runner's invariants (the file's `invariants` section): a
    /// violation of one of these is reported beside the spec's own outcome instead of failing it.
    public var invariants: [Invariant: KnownDeviation]

    /// No deviations.
    public init(_ deviations: [String: KnownDeviation] = [:], invariants: [Invariant: KnownDeviation] = [:]) {
        self.deviations = deviations
        self.invariants = invariants
    }

    /// Reads `path`; a missing file means no deviations. Spec ids must exist in `knownIDs`.
    ///
    /// Format: a mapping from spec id to `{outcome: fail|skip|flaky, reason: "…"}`, and optionally the key
    /// `invariants` mapping an invariant name (`orphans`, `shutdown`) to `{outcome: flaky|fail, reason: "…"}`.
    public static func load(_ path: String, knownIDs: Set<String>) -> Result<Expectations, SpecProblem> {
        guard FileManager.default.fileExists(atPath: path) else { return .success(Expectations()) }
        func problem(_ mark: SourceMark, _ message: String) -> Result<Expectations, SpecProblem> {
            .failure(SpecProblem(SourceLocation(file: path, mark: mark), message))
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(validating: Array(data), as: UTF8.self) else {
            return problem(SourceMark(line: 1, column: 1), "cannot read the expectations file")
        }
        let root: YAMLNode?
        do { root = try YAMLDocument.parse(text) } catch { return problem(error.mark, error.message) }
        guard let root else { return .success(Expectations()) }
        guard case .mapping(let pairs) = root.content else { return problem(root.mark, "expectations must map spec ids to {outcome, reason}") }
        var result: [String: KnownDeviation] = [:]
        var invariants: [Invariant: KnownDeviation] = [:]
        for pair in pairs {
            guard case .scalar(let id, _) = pair.key.content else { return problem(pair.key.mark, "keys must be spec ids") }
            if id == "invariants" {
                guard case .mapping(let entries) = pair.value.content else {
                    return problem(pair.value.mark, "invariants maps an invariant (\(Invariant.allCases.map(\.rawValue).joined(separator: ", "))) to {outcome, reason}")
                }
                for entry in entries {
                    guard case .scalar(let name, _) = entry.key.content, let invariant = Invariant(rawValue: name) else {
                        return problem(entry.key.mark, "unknown invariant (known: \(Invariant.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    switch deviation(entry.value, id: name, path: path) {
                    case .success(let d):
                        guard d.expected != .skip else { return problem(entry.value.mark, "an invariant deviation is fail or flaky, not skip") }
                        invariants[invariant] = d
                    case .failure(let p): return .failure(p)
                    }
                }
                continue
            }
            guard knownIDs.contains(id) else {
                return problem(pair.key.mark, "no spec has the id '\(id)'" + suggestion(id, among: knownIDs.sorted()))
            }
            switch deviation(pair.value, id: id, path: path) {
            case .success(let d): result[id] = d
            case .failure(let p): return .failure(p)
            }
        }
        return .success(Expectations(result, invariants: invariants))
    }

    /// One `{outcome, reason}` entry.
    static func deviation(_ node: YAMLNode, id: String, path: String) -> Result<KnownDeviation, SpecProblem> {
        func problem(_ mark: SourceMark, _ message: String) -> Result<KnownDeviation, SpecProblem> {
            .failure(SpecProblem(SourceLocation(file: path, mark: mark), message))
        }
        guard case .mapping(let fields) = node.content else {
            return problem(node.mark, "'\(id)' needs {outcome: fail|skip|flaky, reason: …}")
        }
        var outcome: KnownDeviation.Expected?
        var reason: String?
        for f in fields {
            guard case .scalar(let k, _) = f.key.content, case .scalar(let v, _) = f.value.content else {
                return problem(f.key.mark, "outcome and reason are strings")
            }
            switch k {
            case "outcome":
                guard let o = KnownDeviation.Expected(rawValue: v) else { return problem(f.value.mark, "outcome must be fail, skip or flaky") }
                outcome = o
            case "reason": reason = v
            default: return problem(f.key.mark, "unknown key '\(k)' (outcome, reason)")
            }
        }
        guard let outcome else { return problem(node.mark, "'\(id)' has no outcome") }
        guard let reason, !reason.isEmpty, !reason.contains("\n") else {
            return problem(node.mark, "'\(id)' needs a one-line reason")
        }
        return .success(KnownDeviation(expected: outcome, reason: reason))
    }

    /// The outcome reported for `observed`, given what is expected of spec `id`.
    public func judge(_ id: String, _ observed: Outcome) -> Outcome {
        guard let d = deviations[id] else { return observed }
        switch (d.expected, observed) {
        case (.fail, .fail), (.fail, .error): return .xfail
        case (.fail, .pass): return .xpass
        case (.flaky, .fail), (.flaky, .error): return .xfail
        default: return observed
        }
    }
}

/// `suggestion` of the spec loader, for ids.
func suggestion(_ word: String, among candidates: [String]) -> String {
    let close = candidates.filter { $0.hasPrefix(word.split(separator: ".").first.map(String.init) ?? word) }
    return close.isEmpty ? "" : " (ids like it: \(close.prefix(3).joined(separator: ", ")))"
}
