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
