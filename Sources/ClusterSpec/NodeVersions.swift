/// A Node.js version, `major[.minor[.patch]]` (a leading `v` allowed; missing parts are 0).
public struct NodeVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The version's numbers, e.g. 22, 20, 0.
    public var major: Int, minor: Int, patch: Int

    /// A version from its numbers.
    public init(_ major: Int, _ minor: Int = 0, _ patch: Int = 0) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// Parses `22`, `22.20`, `v22.20.0`; nil for anything else (a pre-release suffix such as `-nightly` is ignored).
    public init?(_ text: String) {
        var s = Substring(text)
        if s.first == "v" { s = s.dropFirst() }
        if let dash = s.firstIndex(where: { $0 == "-" || $0 == "+" }) { s = s[..<dash] }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...3).contains(parts.count) else { return nil }
        var numbers: [Int] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 6, p.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let n = Int(p) else { return nil }
            numbers.append(n)
        }
        while numbers.count < 3 { numbers.append(0) }
        self.init(numbers[0], numbers[1], numbers[2])
    }

    /// The reference: the Node version the suite is validated against, and the one an implementation that
    /// names none is taken to follow.
    public static let reference = NodeVersion(20)

    public static func < (a: NodeVersion, b: NodeVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// `22`, `22.1` or `22.1.3`: the parts that are not trailing zeros.
    public var description: String {
        patch != 0 ? "\(major).\(minor).\(patch)" : minor != 0 ? "\(major).\(minor)" : "\(major)"
    }
}

/// The Node versions whose behaviour a spec describes (the spec's `nodeVersions`, e.g. `<22` or `>=18 <22`):
/// comparators that must all hold. A spec without one describes every version.
public struct NodeVersionRange: Sendable, Hashable, CustomStringConvertible {
    /// One bound of the range.
    public struct Comparator: Sendable, Hashable, CustomStringConvertible {
        /// How the bound compares.
        public enum Operator: String, Sendable, CaseIterable {
            case greaterOrEqual = ">=", lessOrEqual = "<=", greater = ">", less = "<", equal = "="
        }
        /// The comparison.
        public var op: Operator
        /// The version compared with.
        public var version: NodeVersion

        /// Whether `v` satisfies this bound.
        public func admits(_ v: NodeVersion) -> Bool {
            switch op {
            case .greaterOrEqual: v >= version
            case .lessOrEqual: v <= version
            case .greater: v > version
            case .less: v < version
            case .equal: v == version
            }
        }

        public var description: String { "\(op.rawValue)\(version)" }
    }

    /// The bounds, all of which hold for a version in the range.
    public var comparators: [Comparator]

    /// A range from its bounds.
    public init(_ comparators: [Comparator]) { self.comparators = comparators }

    /// A parse error: the text and what is wrong with it.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// What is wrong, in a sentence.
        public var description: String
    }

    /// Parses comparators separated by spaces: `<22`, `>=22`, `>=18 <22`, `=20`.
    public init(parsing text: String) throws(ParseError) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard !words.isEmpty else { throw ParseError(description: "a Node version range must not be empty (write e.g. '<22' or '>=22')") }
        var comparators: [Comparator] = []
        for word in words {
            // Longest operator first, so that `>=` is not read as `>` followed by `=22`.
            guard let op = Comparator.Operator.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count })
                .first(where: { word.hasPrefix($0.rawValue) }) else {
                throw ParseError(description: "'\(word)' in the Node version range '\(text)' must start with >=, <=, >, < or =")
            }
            let rest = String(word.dropFirst(op.rawValue.count))
            guard let version = NodeVersion(rest) else {
                throw ParseError(description: "'\(rest)' in the Node version range '\(text)' is not a version (major[.minor[.patch]])")
            }
            comparators.append(Comparator(op: op, version: version))
        }
        self.init(comparators)
        guard !isEmpty else { throw ParseError(description: "the Node version range '\(text)' admits no version") }
    }

    /// Whether `version` is in the range.
    public func contains(_ version: NodeVersion) -> Bool { comparators.allSatisfy { $0.admits(version) } }

    /// True when no version satisfies every bound (`>=22 <20`).
    public var isEmpty: Bool {
        // A satisfiable conjunction of bounds is an interval whose least version is 0, a bound's version or
        // the one right after it: if none of those is in the range, nothing is.
        let candidates = [NodeVersion(0)] + comparators.flatMap { c in
            [c.version, NodeVersion(c.version.major, c.version.minor, c.version.patch + 1)]
        }
        return !candidates.contains(where: contains)
    }

    /// The versions at which the described behaviour starts or stops: every bound's version that is not the
    /// range's open end (for `<22` and `>=22`, 22).
    public var changes: [NodeVersion] {
        comparators.map { c in
            switch c.op {
            case .greater: NodeVersion(c.version.major, c.version.minor, c.version.patch + 1)
            case .lessOrEqual: NodeVersion(c.version.major, c.version.minor, c.version.patch + 1)
            default: c.version
            }
        }.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
    }

    /// The comparators as written, separated by spaces.
    public var description: String { comparators.map(\.description).joined(separator: " ") }
}
