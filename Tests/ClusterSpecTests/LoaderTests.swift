import Foundation
import Testing
@testable import ClusterSpec

/// The feature list of the real suite.
let suiteFeatures: Set<String> = Set(((try? SpecLoader.readFeatures(at: Paths.specs + "/features.yaml")) ?? []).map(\.name))

@Suite("Spec loader")
struct LoaderTests {
    @Test("the lint cases exist, each is a case of lintCase, and the feature list is read")
    func lintCasesExist() throws {
        // lintCase's arguments come from a listing that cannot throw; this one can, and must agree with it.
        let listed = try FileManager.default.contentsOfDirectory(atPath: Paths.lintCases).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(listed.count >= 15)
        #expect(Paths.lintCaseFiles() == listed)
        let features = try SpecLoader.readFeatures(at: Paths.specs + "/features.yaml").map(\.name)
        #expect(features.contains("fork"))
        #expect(suiteFeatures == Set(features))
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
    func suiteIsClean() throws {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.map(\.description) == [])
        #expect(suite.specs.count == suite.files.count)
        // Counted apart from the loader's own search: every YAML file under Specs/ but the feature list.
        let yamlFiles = try #require(FileManager.default.enumerator(atPath: Paths.specs)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".yaml") && $0 != "features.yaml" }
        #expect(suite.specs.count == yamlFiles.count)
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
            basis: documented
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

/// `SpecEncoder` writes a spec back as YAML; the loader must read that into the same spec.
@Suite("Spec encoder")
struct SpecEncoderTests {
    @Test("every spec of the suite re-serializes and reloads to the same spec, and its text is a fixed point")
    func suiteRoundTrips() throws {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.isEmpty)
        #expect(suite.specs.count == suite.files.count && suite.specs.count >= 2)
        for spec in suite.specs {
            // Nothing the file lists is lost in the reading, and what was read is written back and read again the same.
            let root = try #require(try YAMLDocument.parse(String(contentsOfFile: spec.location.file, encoding: .utf8)))
            #expect(spec.steps.count == LoaderFuzzTests.items("steps", of: root), "\(spec.location.file)")
            #expect(spec.expect.count == LoaderFuzzTests.items("expect", of: root), "\(spec.location.file)")
            try expectRoundTrip(spec)
        }
    }

    @Test("strings, numbers and keys that YAML could read as something else come back as they were")
    func trickyScalars() throws {
        let text = try String(contentsOfFile: Paths.specs + "/listen/port-zero-same-port.yaml", encoding: .utf8)
        var spec = try #require(SpecLoader(features: suiteFeatures).load(text: text, file: "x.yaml").spec)
        let strings = ["", " leading and trailing ", "null", "true", "~", "0x1F", "1e3", ".inf", "- item", "a: b", "# not a comment",
                       "quote \" and backslash \\ and \\n", "line\nbreak\r\n", "tab\there", "nel\u{85}ls\u{2028}ps\u{2029}",
                       "bom\u{FEFF}", "bell\u{7}del\u{7F}c1\u{9F}", "é漢😀", "{[,]}&*!|>'%@`", String(repeating: "k", count: 1500)]
        spec.comment = strings.joined(separator: "|")
        spec.from = "\u{0}"
        let numbers: [JSONValue] = [0, -1, .number(0.1), .number(-2.5e-7), .number(1e20), .number(9.0e15), .number(.infinity),
                                    .number(-.infinity), .number(Double(Int32.max) * 4)]
        let object = JSONValue.object(JSONObject(strings.enumerated().map { ($0.element, .number(Double($0.offset))) }))
        spec.steps.append(Step(kind: .send(side: .primary, workers: .ids([1, 2]), messages: strings.map(JSONValue.string) + numbers + [object, .null, true, .array([])],
                                           handle: nil),
                               expectError: nil, location: spec.location, name: .send))
        spec.expect[0].forEach = (field: "weird key: \"x\"", values: strings.map(JSONValue.string) + numbers)
        try expectRoundTrip(spec)
    }

    @Test("the equality the round trip relies on compares every stored property")
    func equalityCoversEveryField() throws {
        // SpecEncoder.swift's == for these types lists their fields by hand; a new field must be added there
        // (and to the encoder), or two different specs would compare equal.
        let text = try String(contentsOfFile: Paths.specs + "/listen/port-zero-same-port.yaml", encoding: .utf8)
        let spec = try #require(SpecLoader(features: suiteFeatures).load(text: text, file: "x.yaml").spec)
        #expect(Mirror(reflecting: spec).children.count == 16)
        #expect(Mirror(reflecting: spec.setup).children.count == 8)
        #expect(Mirror(reflecting: spec.expect[0]).children.count == 4)
        #expect(Mirror(reflecting: InheritedSocket(fd: 3, transport: .tcp, host: "127.0.0.1", portVariable: nil)).children.count == 4)
        var other = spec
        other.comment = "another"
        #expect(other != spec)
        other = spec
        other.expect[0].because = "another"
        #expect(other != spec)
        other = spec
        other.setup.dirs = ["d"]
        #expect(other != spec)
        other = spec
        other.basis = spec.basis == .documented ? .observed : .documented
        #expect(other != spec)
        other = spec
        other.quote = (spec.quote ?? "") + "x"
        #expect(other != spec)
        other = spec
        other.source.append("lib/net.js")
        #expect(other != spec)
        other = spec
        other.nodeVersions = try NodeVersionRange(parsing: ">=22")
        #expect(other != spec)
    }
}

/// The spec with every location replaced by one, so that specs read from different texts compare by content.
func relocated(_ spec: Spec) -> Spec {
    let here = SourceLocation(file: "-", mark: SourceMark(line: 1, column: 1))
    var s = spec
    s.location = here
    for i in s.steps.indices { s.steps[i].location = here }
    for i in s.expect.indices { s.expect[i].location = here }
    return s
}

/// Encodes `spec`, loads the text, and expects the same spec back, and the same text when that is encoded again.
func expectRoundTrip(_ spec: Spec, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
    let yaml = SpecEncoder.yaml(spec)
    let (again, problems) = SpecLoader(features: suiteFeatures).load(text: yaml, file: "encoded.yaml")
    guard let again else {
        Issue.record("\(spec.id): the encoded spec does not load: \(problems.map(\.description))\n\(yaml)", sourceLocation: sourceLocation)
        return
    }
    let same = relocated(again) == relocated(spec)
    #expect(same, "\(spec.id) changed in the round trip: \(difference(spec, again))\n\(yaml)", sourceLocation: sourceLocation)
    #expect(SpecEncoder.yaml(again) == yaml, "\(spec.id): encoding is not a fixed point", sourceLocation: sourceLocation)
}

/// Where two specs differ, locations aside: the first differing field, step or expectation, both ways.
func difference(_ a: Spec, _ b: Spec) -> String {
    let (a, b) = (relocated(a), relocated(b))
    for i in 0..<max(a.steps.count, b.steps.count) where i >= a.steps.count || i >= b.steps.count || a.steps[i] != b.steps[i] {
        return "step \(i + 1): \(i < a.steps.count ? "\(a.steps[i])" : "none") became \(i < b.steps.count ? "\(b.steps[i])" : "none")"
    }
    for i in 0..<max(a.expect.count, b.expect.count) where i >= a.expect.count || i >= b.expect.count || a.expect[i] != b.expect[i] {
        return "expectation \(i + 1): \(i < a.expect.count ? "\(a.expect[i])" : "none") became \(i < b.expect.count ? "\(b.expect[i])" : "none")"
    }
    if a.setup != b.setup { return "setup \(a.setup) became \(b.setup)" }
    var (x, y) = (a, b)
    (x.steps, x.expect, x.setup, y.steps, y.expect, y.setup) = ([], [], Setup(), [], [], Setup())
    return "\(x) became \(y)"
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
        var rejected = 0, loaded = 0
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
            let text = String(decoding: bytes, as: UTF8.self)
            let (spec, problems) = loader.load(text: text, file: "mutant.yaml")
            #expect((spec == nil) == !problems.isEmpty)
            guard let spec else { rejected += 1; continue }
            loaded += 1
            // Nothing is lost: as many steps and expectations as the mutant's YAML lists.
            let root = try #require(try YAMLDocument.parse(text))
            #expect(spec.steps.count == Self.items("steps", of: root), "mutant \(i) lost a step:\n\(text)")
            #expect(spec.expect.count == Self.items("expect", of: root), "mutant \(i) lost an expectation:\n\(text)")
            // And what was read is exactly what the text says: written back and read again, it is the same spec.
            try expectRoundTrip(spec)
        }
        #expect(rejected > 100, "\(rejected) of 1500 mutants rejected")
        #expect(loaded > 100, "\(loaded) of 1500 mutants loaded")
    }

    /// The number of items of the top-level list `key` (-1 when it is not a list).
    static func items(_ key: String, of root: YAMLNode) -> Int {
        guard case .mapping(let pairs) = root.content,
              case .sequence(let items)? = pairs.first(where: { $0.key.scalarString == key })?.value.content else { return -1 }
        return items.count
    }
}
