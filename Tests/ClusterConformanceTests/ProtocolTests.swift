import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// `fixtures/protocol.json` describes the wire once; the runner's encoder, both fixtures and PROTOCOL.md
/// must agree with it.
@Suite("Wire protocol description")
struct ProtocolTests {
    struct Description {
        /// Commands by recipient ("primary"/"worker"), then name → field types and required fields.
        var commands: [String: [String: (fields: [String: String], required: [String], acknowledged: Bool)]] = [:]
        var events: [String: [String: String]] = [:]
        var listenKinds: [String: [String]] = [:]
        /// The optional benchmark commands (PROTOCOL.md §3.3), by recipient.
        var benchmark: [String: Set<String>] = [:]
        var version = 0

        init() throws {
            let text = try String(contentsOfFile: Paths.fixtures + "/protocol.json", encoding: .utf8)
            let root = try JSONValue.parse(text)
            version = try #require(root["version"]?.intValue)
            for recipient in ["primary", "worker"] {
                guard case .object(let cmds)? = root["commands"]?[recipient] else { Issue.record("no \(recipient) commands"); continue }
                for (name, spec) in cmds.members {
                    guard case .object(let fields)? = spec["fields"] else { Issue.record("\(name) has no fields"); continue }
                    commands[recipient, default: [:]][name] = (
                        fields.members.reduce(into: [:]) { $0[$1.key] = $1.value.stringValue ?? "?" },
                        spec["required"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                        spec["acknowledged"]?.boolValue ?? true)
                    if spec["benchmark"]?.boolValue == true { benchmark[recipient, default: []].insert(name) }
                }
            }
            guard case .object(let evs)? = root["events"] else { throw SpecLoadFailure(problems: ["no events"]) }
            for (name, spec) in evs.members {
                guard case .object(let fields)? = spec["fields"] else { continue }
                events[name] = fields.members.reduce(into: [:]) { $0[$1.key] = $1.value.stringValue ?? "?" }
            }
            guard case .object(let kinds)? = root["listenKinds"] else { throw SpecLoadFailure(problems: ["no listenKinds"]) }
            for (kind, fields) in kinds.members { listenKinds[kind] = fields.arrayValue?.compactMap(\.stringValue) ?? [] }
        }
    }

    static func conforms(_ value: JSONValue, to type: String) -> Bool {
        type.split(separator: "|").contains { t in
            switch (t, value) {
            case ("any", _): true
            case ("string", .string): true
            case ("integer", .number(let n)): n == n.rounded()
            case ("number", .number): true
            case ("boolean", .bool): true
            case ("object", .object): true
            case ("array", .array): true
            default: false
            }
        }
    }

    @Test("the description's version is the runner's")
    func version() throws {
        #expect(try Description().version == protocolVersion)
    }

    @Test("every command the encoder writes for the suite's steps is described, with described fields of the described types")
    func encoderAgrees() throws {
        let d = try Description()
        let suite = SpecLoader(features: try suiteFeatures()).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.isEmpty)
        #expect(suite.specs.count > 0)
        var encoded = 0
        var seen: Set<String> = []
        for spec in suite.specs {
            for step in spec.steps {
                guard let commands = CommandEncoding.commands(for: step.kind, workers: { _ in [1, 2] }, resolve: { v in
                    if case .string(let s) = v, s.hasPrefix("$") { return .number(4242) }
                    return v
                }) else { continue }
                for c in commands {
                    encoded += 1
                    let recipient = c.recipient == .primary ? "primary" : "worker"
                    seen.insert("\(recipient) \(c.name)")
                    guard let described = d.commands[recipient]?[c.name] else {
                        Issue.record("\(spec.location): '\(c.name)' is not a \(recipient) command of protocol.json")
                        continue
                    }
                    #expect(described.acknowledged == c.acknowledged, "\(c.name): acknowledged")
                    for (field, value) in c.fields {
                        guard let type = described.fields[field] else { Issue.record("\(spec.id): \(recipient) \(c.name) has undescribed field '\(field)'"); continue }
                        #expect(Self.conforms(value, to: type), "\(spec.id): \(c.name).\(field) = \(value.jsonText) is not \(type)")
                    }
                    for field in described.required where !c.fields.contains(where: { $0.0 == field }) {
                        Issue.record("\(spec.id): \(recipient) \(c.name) lacks required '\(field)'")
                    }
                    if c.name == "listen", let kind = c.fields.first(where: { $0.0 == "kind" })?.1.stringValue {
                        let allowed = Set(d.listenKinds[kind] ?? []).union(["server", "kind", "exclusive", "backlog", "hold"])
                        #expect(d.listenKinds[kind] != nil, "listen kind \(kind)")
                        for (field, _) in c.fields { #expect(allowed.contains(field), "listen kind \(kind) with field \(field)") }
                    }
                }
            }
        }
        #expect(encoded > 100, "the suite encodes only \(encoded) commands")
    }

    /// The command names a fixture source handles, by a textual scan of its `case "NAME"` labels and (in
    /// JavaScript) its `NAME(cmd) {` / `NAME() {` handler methods.
    static func handled(in source: String, quote: Character) -> Set<String> {
        var names: Set<String> = []
        var rest = Substring(source)
        let marker = "case \(quote)"
        while let r = rest.range(of: marker) {
            rest = rest[r.upperBound...]
            let name = rest.prefix { $0 != quote }
            names.insert(String(name))
        }
        for line in source.split(separator: "\n") {
            let t = line.drop { $0 == " " }
            guard let paren = t.firstIndex(of: "("), ["(cmd) {", "(cmd, ", "() {"].contains(where: { t[paren...].hasPrefix($0) }) else { continue }
            let name = t[..<paren]
            if !name.isEmpty, name.allSatisfy({ $0.isLetter }) { names.insert(String(name)) }
        }
        return names
    }

    @Test("both fixtures handle every described command", arguments: ["node", "swift"])
    func fixturesHandle(_ fixture: String) throws {
        let d = try Description()
        let dir = Paths.fixtures + "/" + fixture
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".mjs") || $0.hasSuffix(".swift") }
        #expect(!files.isEmpty)
        let source = try files.map { try String(contentsOfFile: dir + "/" + $0, encoding: .utf8) }.joined(separator: "\n")
        let names = Self.handled(in: source, quote: fixture == "node" ? "'" : "\"")
        let all = Set(d.commands.values.flatMap(\.keys))
        #expect(all.count > 15)
        for name in all.sorted() where !names.contains(name) {
            Issue.record("fixtures/\(fixture) has no `case` for the command '\(name)'")
        }
        for kind in d.listenKinds.keys.sorted() where !names.contains(kind) {
            Issue.record("fixtures/\(fixture) has no `case` for the listen kind '\(kind)'")
        }
    }

    @Test("PROTOCOL.md's tables name every described command and event, and no other")
    func documentAgrees() throws {
        let d = try Description()
        let text = try String(contentsOfFile: Paths.fixtures + "/PROTOCOL.md", encoding: .utf8)
        func section(_ start: String, _ end: String) throws -> String {
            let from = try #require(text.range(of: start)), to = try #require(text.range(of: end, range: from.upperBound..<text.endIndex))
            return String(text[from.upperBound..<to.lowerBound])
        }
        func firstCells(_ s: String) -> Set<String> {
            var names: Set<String> = []
            for line in s.split(separator: "\n") where line.hasPrefix("| `") {
                let cell = line.dropFirst(2).prefix { $0 != "|" }
                for part in cell.split(separator: "/") {
                    let t = part.trimmingCharacters(in: .whitespaces)
                    if t.hasPrefix("`"), let end = t.dropFirst().firstIndex(of: "`") { names.insert(String(t[t.index(after: t.startIndex)..<end])) }
                }
            }
            return names
        }
        // The benchmark commands (§3.3) are primary commands documented in their own section.
        let benchmark = firstCells(try section("### 3.3 Benchmark commands", "## 4."))
        #expect(benchmark == d.benchmark["primary"] ?? [])
        #expect(d.benchmark["worker"] == nil)
        #expect(firstCells(try section("### 3.1 Primary commands", "### 3.2")).union(benchmark) == Set(d.commands["primary"]!.keys))
        #expect(firstCells(try section("### 3.2 Worker commands", "Listen kinds")) == Set(d.commands["worker"]!.keys))
        #expect(firstCells(try section("Listen kinds", "### 3.3")) == Set(d.listenKinds.keys))
        let documentedEvents = firstCells(try section("## 5. Events", "### 5.5")).union(["ack", "hello", "part", "output"])
        #expect(documentedEvents == Set(d.events.keys))
        #expect(text.contains("# Fixture protocol, version \(d.version)"))
    }

    @Test("framed events reassemble per process, in any interleaving, and malformed parts are refused")
    func framing() throws {
        func parts(_ line: String, pid: Int, piece: Int) -> [JSONObject] {
            let bytes = Array(line.utf8)
            return stride(from: 0, to: bytes.count, by: piece).map { start in
                let end = min(start + piece, bytes.count)
                var members: [(String, JSONValue)] = [("ev", "part"), ("pid", .number(Double(pid))),
                                                      ("data", .string(Data(bytes[start..<end]).base64EncodedString()))]
                if end == bytes.count { members.append(("last", true)) }
                return JSONObject(members)
            }
        }
        let big = Payload(name: "B", bytes: 3 << 20).text
        let a = JSONValue.object(JSONObject([("ev", "message"), ("at", "worker"), ("message", .string(big))])).jsonText
        let b = JSONValue.object(JSONObject([("ev", "message"), ("at", "primary"), ("message", .string(String(big.reversed())))])).jsonText
        var assembler = EventAssembler()
        let pa = parts(a, pid: 10, piece: 3000), pb = parts(b, pid: 11, piece: 2999)
        var completed: [String] = []
        for i in 0..<max(pa.count, pb.count) {
            for p in [i < pa.count ? pa[i] : nil, i < pb.count ? pb[i] : nil].compactMap({ $0 }) {
                switch assembler.accept(p) {
                case .complete(let line): completed.append(line)
                case .incomplete: break
                case .malformed(let why): Issue.record("\(why)")
                }
            }
        }
        #expect(completed.count == 2)
        #expect(Set(completed) == [a, b])
        #expect(assembler.unfinished.isEmpty)
        #expect(assembler.accept(JSONObject([("ev", "part"), ("pid", 1), ("data", "not base64!")])) != .incomplete)
        #expect(assembler.accept(JSONObject([("ev", "part"), ("data", "")])) != .incomplete)
        _ = assembler.accept(JSONObject([("ev", "part"), ("pid", 7), ("data", "e30=")]))
        #expect(assembler.unfinished == [7])
    }

    @Test("a generated payload has exactly its size in UTF-8 bytes and is deterministic")
    func payloads() {
        for size in [0, 1, 17, 4096, 1 << 20, 4 << 20] {
            let p = Payload(name: "P", bytes: size)
            #expect(p.text.utf8.count == size)
            #expect(p.text == Payload(name: "Q", bytes: size).text)
        }
        #expect(Payload(name: "P", bytes: 100).text.unicodeScalars.contains { $0.value > 0xFFFF })
    }
}
