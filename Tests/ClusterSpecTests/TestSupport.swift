import Foundation

/// Source-tree locations, found from this file (sources, not build products).
enum Paths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let specs = packageRoot + "/Specs"
    static let lintCases = packageRoot + "/Tests/ClusterSpecTests/LintCases"

    static func lintCaseFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: lintCases)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
    }
}

/// SplitMix64: a small seeded generator, so a fuzz failure reproduces.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in 0..<n.
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}
