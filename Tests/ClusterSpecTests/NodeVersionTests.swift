import Testing
@testable import ClusterSpec

@Suite("Node versions and the version ranges of specs")
struct NodeVersionTests {
    @Test("versions parse with 1 to 3 parts and an optional v, and compare numerically")
    func versions() throws {
        #expect(NodeVersion("22") == NodeVersion(22))
        #expect(NodeVersion("v22.20.0") == NodeVersion(22, 20, 0))
        #expect(NodeVersion("26.5.1-nightly") == NodeVersion(26, 5, 1))
        #expect(NodeVersion(20, 9) < NodeVersion(20, 10))
        #expect(NodeVersion(18, 4) < NodeVersion(20))
        for bad in ["", "v", "22.", "x22", "1.2.3.4", ".1", "22 ", "1234567"] {
            #expect(NodeVersion(bad) == nil, "\(bad) parsed")
        }
        #expect(NodeVersion(24, 19, 0).description == "24.19")
        #expect(NodeVersion(22).description == "22")
    }

    @Test("a range is a conjunction of bounds", arguments: [
        ("<22", [18, 20, 21], [22, 24]),
        (">=22", [22, 24, 26], [18, 20, 21]),
        (">=18 <22", [18, 20], [16, 22]),
        (">20", [21, 22], [20, 18]),
        ("<=20", [18, 20], [21, 22]),
        ("=20", [20], [18, 22]),
    ])
    func ranges(_ text: String, inside: [Int], outside: [Int]) throws {
        let range = try NodeVersionRange(parsing: text)
        #expect(range.description == text)
        for v in inside { #expect(range.contains(NodeVersion(v)), "\(text) should contain \(v)") }
        for v in outside { #expect(!range.contains(NodeVersion(v)), "\(text) should not contain \(v)") }
    }

    @Test("where the behaviour changed: the bound that is not the open end")
    func changes() throws {
        #expect(try NodeVersionRange(parsing: "<22").changes == [NodeVersion(22)])
        #expect(try NodeVersionRange(parsing: ">=22").changes == [NodeVersion(22)])
        #expect(try NodeVersionRange(parsing: ">=18 <22").changes == [NodeVersion(18), NodeVersion(22)])
    }

    @Test("a range that does not parse or admits nothing is an error that says why", arguments: [
        ("", "must not be empty"),
        ("22", "must start with >=, <=, >, < or ="),
        ("=>22", "is not a version"),
        (">=2x", "'2x' in the Node version range '>=2x' is not a version"),
        (">=22 <20", "admits no version"),
        ("<20 >20", "admits no version"),
    ])
    func badRanges(_ text: String, message: String) {
        #expect {
            _ = try NodeVersionRange(parsing: text)
        } throws: { error in
            (error as? NodeVersionRange.ParseError)?.description.contains(message) == true
        }
    }

    @Test("the loader rejects a range that no Node from the reference up is in")
    func belowReference() {
        let text = """
            id: lint.case
            description: a spec used to check the loader
            refs: [{doc: api/cluster, anchor: how-it-works}]
            basis: documented
            behaviours: [RR-05]
            features: [fork]
            nodeVersions: "<18"
            steps: [{fork: 1}]
            expect: [{events: {ev: fork}}]
            """
        let (spec, problems) = SpecLoader(features: suiteFeatures).load(text: text, file: "below.yaml")
        #expect(spec == nil)
        #expect(problems.map(\.description).contains { $0.hasPrefix("below.yaml:7:15: nodeVersions '<18' excludes every version") })
    }

    @Test("the suite's versioned specs: each range parses to what the file says")
    func suiteRanges() throws {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        let versioned = suite.specs.filter { $0.nodeVersions != nil }
        #expect(versioned.count >= 4)
        #expect(versioned.allSatisfy { $0.nodeVersions!.changes == [NodeVersion(22)] })
    }
}
