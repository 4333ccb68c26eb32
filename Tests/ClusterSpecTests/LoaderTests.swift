import Foundation
import Testing
@testable import ClusterSpec

/// The feature list of the real suite.
let suiteFeatures: Set<String> = Set(((try? SpecLoader.readFeatures(at: Paths.specs + "/features.yaml")) ?? []).map(\.name))

@Suite("Spec loader")
struct LoaderTests {
    @Test("the lint cases exist")
    func lintCasesExist() {
        #expect(Paths.lintCaseFiles().count >= 15)
        #expect(suiteFeatures.contains("fork"))
    }

    /// Each file under LintCases/ begins with `# error: line:col: message` lines: exactly the problems the
    /// loader must report for it.
    @Test("a bad spec file reports exactly the problems its header names", arguments: Paths.lintCaseFiles())
    func lintCase(_ name: String) throws {
        let path = Paths.lintCases + "/" + name
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let expected = text.split(separator: "\n").filter { $0.hasPrefix("# error: ") }.map { String($0.dropFirst(9)) }.sorted()
        #expect(!expected.isEmpty, "a lint case must name at least one error")
        let (spec, problems) = SpecLoader(features: suiteFeatures).load(text: text, file: name)
        #expect(spec == nil)
        let observed = problems.map { "\($0.location.mark): \($0.message)" }.sorted()
        #expect(observed == expected)
        #expect(problems.allSatisfy { $0.location.file == name })
    }

    @Test("every spec of the suite loads without a problem")
    func suiteIsClean() {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.map(\.description) == [])
        #expect(suite.specs.count == suite.files.count)
        #expect(suite.specs.count >= 2)
    }

    @Test("an id used by two files is reported at the second one")
    func duplicateIDs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dup-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spec = """
            id: same.id
            description: one of two specs with the same id
            refs: [{doc: api/cluster, anchor: how-it-works}]
            behaviours: [LIFE-02]
            features: [fork]
            steps: [{fork: 1}]
            expect: [{events: {ev: fork}}]
            """
        try spec.write(toFile: dir + "/a.yaml", atomically: true, encoding: .utf8)
        try spec.write(toFile: dir + "/b.yaml", atomically: true, encoding: .utf8)
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [dir])
        #expect(suite.specs.map(\.id) == ["same.id"])
        #expect(suite.problems.map(\.description) == ["\(dir)/b.yaml:1:1: duplicate id 'same.id' (first used at \(dir)/a.yaml:1:1)"])
    }

    @Test("a valid spec decodes into the steps and expectations it says")
    func decodesWorkedExample() throws {
        let text = try String(contentsOfFile: Paths.specs + "/listen/port-zero-same-port.yaml", encoding: .utf8)
        let (spec, problems) = SpecLoader(features: suiteFeatures).load(text: text, file: "x.yaml")
        #expect(problems.isEmpty)
        let s = try #require(spec)
        #expect(s.id == "listen.port-zero.same-port")
        #expect(s.steps.map(\.name) == [.fork, .listen, .await])
        guard case .listen(.workers(.all), "s", .tcp(let host, let port, nil), nil, nil, nil) = s.steps[1].kind else {
            Issue.record("listen step decoded as \(s.steps[1].kind)")
            return
        }
        #expect(host == "127.0.0.1")
        #expect(port == .number(0))
        guard case .events(let sel, .exactly(3), let each?, ["port"], [], nil, nil, nil) = s.expect[0].kind else {
            Issue.record("expectation decoded as \(s.expect[0].kind)")
            return
        }
        #expect(sel.fields["ev"] == .equals(.string("listening")))
        #expect(each.fields["port"] == .range(min: 1, max: 65535))
    }
}

/// `Specs/schema.json` is written for editors; the loader is the authority. These keep the two in step.
@Suite("Schema and loader agree")
struct SchemaTests {
    func schema() throws -> JSONValue {
        try JSONValue.parse(String(contentsOfFile: Paths.specs + "/schema.json", encoding: .utf8))
    }

    func keys(_ v: JSONValue?) -> [String] {
        if case .object(let o)? = v { return o.keys.sorted() }
        return []
    }

    @Test("top-level keys")
    func topLevel() throws {
        let s = try schema()
        #expect(keys(s["properties"]) == SpecDecoder.topKeys.sorted())
        #expect(s["required"]?.arrayValue?.compactMap(\.stringValue).sorted() == SpecDecoder.requiredTopKeys.sorted())
    }

    @Test("the feature enum is features.yaml")
    func features() throws {
        let s = try schema()
        let listed = s["properties"]?["features"]?["items"]?["enum"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(listed) == suiteFeatures)
    }

    @Test("step kinds")
    func steps() throws {
        let s = try schema()
        #expect(keys(s["definitions"]?["step"]?["properties"]) == (SpecDecoder.stepKinds + ["expectError"]).sorted())
    }

    @Test("Specs/README.md's step table lists exactly the step vocabulary")
    func readmeSteps() throws {
        let text = try String(contentsOfFile: Paths.specs + "/README.md", encoding: .utf8)
        let table = try #require(text.components(separatedBy: "## Steps").dropFirst().first?.components(separatedBy: "\n## ").first)
        // Rows begin "| `name` |" or "| `a` / `b` |".
        var listed: [String] = []
        for line in table.split(separator: "\n") where line.hasPrefix("| `") {
            let cell = line.dropFirst(2).prefix { $0 != "|" }
            listed += cell.split(separator: "/").map { $0.trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "`")) }
        }
        #expect(listed.sorted() == StepName.allCases.map(\.rawValue).sorted())
    }

    @Test("setup keys")
    func setup() throws {
        #expect(keys(try schema()["properties"]?["setup"]?["properties"]) == SpecDecoder.setupKeys.sorted())
    }
}

@Suite("JSON values")
struct JSONValueTests {
    @Test("round trip keeps member order and types")
    func roundTrip() throws {
        let text = #"{"b":1,"a":[true,null,"x\n\u0001",-2.5],"c":{"d":"é😀"}}"#
        let v = try JSONValue.parse(text)
        #expect(v.jsonText == #"{"b":1,"a":[true,null,"x\n\u0001",-2.5],"c":{"d":"é😀"}}"#)
        #expect(v["a"]?.arrayValue?.count == 4)
        #expect(v["b"]?.intValue == 1)
    }

    @Test("not JSON", arguments: ["", "{", "[1,]", "{\"a\"}", "nul", "\"\\x\"", "1 2", "\"\\ud800\"", "{'a':1}", "01x"])
    func rejects(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test("deep nesting is refused, not a stack overflow")
    func deep() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(String(repeating: "[", count: 100_000)) }
    }

    @Test("variables substitute whole strings only; $$ escapes")
    func variables() {
        let vars: [String: JSONValue] = ["P": .number(8080)]
        #expect(Variables.substitute(.array([.string("$P"), .string("$$P"), .string("x$P")]), vars)
                == .array([.number(8080), .string("$P"), .string("x$P")]))
    }
}

@Suite("Spec loader robustness")
struct LoaderFuzzTests {
    @Test("mutated specs load or report problems, never crash")
    func mutations() throws {
        let files = try SpecLoader.specFiles(in: [Paths.specs])
        #expect(!files.isEmpty)
        let punctuation = Array("{}[]:,-#&*!|>'\"$ \n\t0123456789abc".utf8)
        var rng = SplitMix64(state: 42)
        let loader = SpecLoader(features: suiteFeatures)
        var rejected = 0
        for i in 0..<1500 {
            var bytes = Array(try String(contentsOfFile: files[i % files.count], encoding: .utf8).utf8)
            for _ in 0..<(1 + rng.below(4)) where !bytes.isEmpty {
                let at = rng.below(bytes.count)
                switch rng.below(3) {
                case 0: bytes.remove(at: at)
                case 1: bytes.insert(punctuation[rng.below(punctuation.count)], at: at)
                default: bytes[at] = punctuation[rng.below(punctuation.count)]
                }
            }
            let (spec, problems) = loader.load(text: String(decoding: bytes, as: UTF8.self), file: "mutant.yaml")
            #expect((spec == nil) == !problems.isEmpty)
            if spec == nil { rejected += 1 }
        }
        #expect(rejected > 0)
    }
}
