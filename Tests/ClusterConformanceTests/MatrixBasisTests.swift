import ClusterSpec
import Testing
@testable import ClusterConformance

/// The matrix scores each implementation twice, over the documented specs and over all, and marks observed rows.
@Suite("Conformance matrix: documented and observed")
struct MatrixBasisTests {
    static func spec(_ id: String, _ basis: Basis) -> Spec {
        Spec(id: id, description: id, refs: [], basis: basis,
             source: basis == .observed ? ["lib/internal/cluster/primary.js"] : [], behaviours: ["LIFE-02"],
             features: ["fork"], from: nil, comment: nil, timeout: Spec.defaultTimeout, setup: Setup(), steps: [],
             expect: [], location: SourceLocation(file: "Specs/lifecycle/\(id).yaml", mark: SourceMark(line: 1, column: 1)))
    }

    static func column(_ name: String, _ outcomes: [String: Outcome]) -> MatrixColumn {
        let results = outcomes.mapValues { outcome in
            SpecResult(id: "", location: SourceLocation(file: "-", mark: SourceMark(line: 1, column: 1)), outcome: outcome,
                       messages: outcome == .pass ? [] : ["expected: something else"], logTail: [], stderrTail: "",
                       duration: .zero, events: [])
        }
        return MatrixColumn(info: ImplementationInfo(name: name, version: "1.0", features: []), results: results,
                            expectations: Expectations(), summary: Summary())
    }

    /// Two documented specs and one observed; `full` ran all three (one documented failure), `partial` ran only
    /// one documented spec and the observed one, which failed.
    static let matrix = ConformanceMatrix(
        specs: [spec("doc.one", .documented), spec("doc.two", .documented), spec("obs.one", .observed)],
        columns: [column("full", ["doc.one": .pass, "doc.two": .fail, "obs.one": .pass]),
                  column("partial", ["doc.one": .pass, "obs.one": .fail])])

    @Test("the documented score counts the documented specs in the column's results; Node compatibility counts all")
    func scores() {
        let m = Self.matrix
        #expect(m.documentedIDs == ["doc.one", "doc.two"])
        let full = m.columns[0], partial = m.columns[1]
        #expect(m.documentedTotals(full) == (1, 2, "50.0"))
        #expect(m.totals(full) == (2, 3, "66.7"))
        #expect(m.documentedTotals(partial) == (1, 1, "100.0"))
        #expect(m.totals(partial) == (1, 2, "50.0"))
        // A column that ran no documented spec scores 0 of 0, not a division by zero.
        let none = ConformanceMatrix(specs: m.specs, columns: [Self.column("none", ["obs.one": .pass])])
        #expect(none.documentedTotals(none.columns[0]) == (0, 0, "0.0"))
    }

    @Test("CONFORMANCE.md: both scores with their counts, observed rows marked, the mark explained")
    func markdown() {
        let md = Self.matrix.markdown(generatedBy: "test")
        #expect(md.contains("| implementation | version | pass | specs | documented | Node compatibility |"))
        #expect(md.contains("| full | 1.0 | 2 | 3 | 1 of 2, 50.0 % | 66.7 % |"))
        #expect(md.contains("| partial | 1.0 | 1 | 2 | 1 of 1, 100.0 % | 50.0 % |"))
        #expect(md.contains("| `obs.one` *(observed)* | pass | fail [2] |"))
        #expect(md.contains("| `doc.one` | pass | pass |"))
        #expect(md.contains("| `doc.two` | fail [1] | — |"))
        #expect(md.components(separatedBy: "*(observed)*").count - 1 == 2, "the intro and the one observed row")
        #expect(md.contains("A spec marked *(observed)* checks what Node 20 does"))
    }

    @Test("conformance.html: both scores, an observed badge on observed rows only, the badge explained")
    func html() {
        let h = Self.matrix.html(generatedBy: "test")
        #expect(h.contains("<th>documented</th><th>Node compatibility</th>"))
        #expect(h.contains("<td>full</td><td>1.0</td><td>2</td><td>3</td><td>1 of 2, 50.0 %</td><td>66.7 %</td>"))
        let rows = h.components(separatedBy: "\n").filter { $0.hasPrefix("<tr><td><code>") }
        #expect(rows.count == 3)
        #expect(rows.filter { $0.contains("class=\"observed\"") }.map { $0.contains("<code>obs.one</code>") } == [true])
        #expect(h.contains("A spec marked <span class=\"observed\">observed</span> checks what Node 20 does"))
    }
}
