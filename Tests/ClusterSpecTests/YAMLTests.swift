import Testing

@testable import ClusterSpec

// MARK: - Helpers

extension YAMLNode {
    /// The value for a scalar key of a mapping.
    fileprivate subscript(key: String) -> YAMLNode? {
        guard case .mapping(let pairs) = content else { return nil }
        return pairs.first { $0.key.scalar == .string(key) }?.value
    }

    /// The item at `index` of a sequence.
    fileprivate subscript(index: Int) -> YAMLNode? {
        guard case .sequence(let items) = content, items.indices.contains(index) else { return nil }
        return items[index]
    }

    fileprivate var items: [YAMLNode]? {
        if case .sequence(let items) = content { return items }
        return nil
    }

    fileprivate var pairs: [YAMLPair]? {
        if case .mapping(let pairs) = content { return pairs }
        return nil
    }
}

/// Parses `text`, expecting a `YAMLError`, and returns it.
private func parseError(_ text: String, limits: YAMLLimits = .init()) -> YAMLError? {
    do {
        let node = try YAMLDocument.parse(text, limits: limits)
        Issue.record("expected an error, parsed \(String(describing: node))")
        return nil
    } catch {
        return error
    }
}

private func mark(_ line: Int, _ column: Int) -> SourceMark {
    SourceMark(line: line, column: column)
}


// MARK: - Tests

@Suite struct YAMLTests {
    static let sample = """
        id: cluster.basic
        steps:
          - fork: 3
          - listen:
              worker: [1, 2]
              tcp: {host: "127.0.0.1", port: $P}
        expect:
          - 'quoted'
          -
            nested: true
        """

    @Test func marksOfNestedItems() throws {
        let root = try #require(try YAMLDocument.parse(Self.sample))
        #expect(root.mark == mark(1, 1))
        let pairs = try #require(root.pairs)
        #expect(pairs.map(\.key.mark) == [mark(1, 1), mark(2, 1), mark(7, 1)])
        #expect(root["id"]?.mark == mark(1, 5))

        let steps = try #require(root["steps"])
        #expect(steps.mark == mark(3, 3))  // a block sequence starts at its first '-'
        #expect(steps.items?.count == 2)
        #expect(steps[0]?.mark == mark(3, 5))
        #expect(steps[0]?["fork"]?.mark == mark(3, 11))
        #expect(steps[0]?["fork"]?.scalar == .int(3))

        let listen = try #require(steps[1]?["listen"])
        #expect(steps[1]?.mark == mark(4, 5))
        #expect(listen.mark == mark(5, 7))
        let worker = try #require(listen["worker"])
        #expect(worker.mark == mark(5, 15))
        #expect(worker[0]?.mark == mark(5, 16))
        #expect(worker[1]?.mark == mark(5, 19))
        #expect(worker.items?.map(\.scalar) == [.int(1), .int(2)])
        let tcp = try #require(listen["tcp"])
        #expect(tcp.mark == mark(6, 12))
        #expect(tcp.pairs?.map(\.key.mark) == [mark(6, 13), mark(6, 32)])
        #expect(tcp["host"]?.mark == mark(6, 19))
        #expect(tcp["host"]?.scalar == .string("127.0.0.1"))
        #expect(tcp["port"]?.scalar == .string("$P"))

        let expect = try #require(root["expect"])
        #expect(expect[0]?.mark == mark(8, 5))
        #expect(expect[0]?.scalar == .string("quoted"))
        #expect(expect[1]?.mark == mark(10, 5))
        #expect(expect[1]?["nested"]?.mark == mark(10, 13))
    }

    @Test func markDescription() {
        #expect(mark(12, 7).description == "12:7")
        #expect(YAMLError(mark: mark(3, 4), message: "boom").description == "3:4: boom")
    }

    static let resolutionTable: [(String, YAMLScalar)] = [
        ("null", .null), ("Null", .null), ("NULL", .null), ("~", .null), ("", .null),
        ("true", .bool(true)), ("True", .bool(true)), ("TRUE", .bool(true)),
        ("false", .bool(false)), ("False", .bool(false)), ("FALSE", .bool(false)),
        ("0", .int(0)), ("42", .int(42)), ("-17", .int(-17)), ("+8", .int(8)), ("007", .int(7)),
        ("0x1F", .int(31)), ("0xff", .int(255)), ("0o17", .int(15)),
        ("9223372036854775807", .int(Int.max)), ("-9223372036854775808", .int(Int.min)),
        ("1.5", .double(1.5)), ("-0.25", .double(-0.25)), (".5", .double(0.5)), ("1.", .double(1)),
        ("1e3", .double(1000)), ("2.5E-1", .double(0.25)), ("+1.0e+2", .double(100)),
        (".inf", .double(.infinity)), (".Inf", .double(.infinity)), ("+.INF", .double(.infinity)),
        ("-.inf", .double(-.infinity)),
        ("99999999999999999999", .double(1e20)),
        // Not core schema: YAML 1.1 spellings and near misses stay strings.
        ("yes", .string("yes")), ("no", .string("no")), ("on", .string("on")), ("tRUE", .string("tRUE")),
        ("nul", .string("nul")), ("1_000", .string("1_000")), ("0b101", .string("0b101")),
        ("0x", .string("0x")), ("0o8", .string("0o8")), ("-0x10", .string("-0x10")), ("1e", .string("1e")),
        ("1.2.3", .string("1.2.3")), ("+", .string("+")), (".", .string(".")), ("-a", .string("-a")), ("+.5", .double(0.5)),
        ("inf", .string("inf")), ("nan", .string("nan")), ("12:30", .string("12:30")),
        ("127.0.0.1", .string("127.0.0.1")), ("hello world", .string("hello world")),
        ("0xFFFFFFFFFFFFFFFFFF", .string("0xFFFFFFFFFFFFFFFFFF")),
    ]

    @Test(arguments: resolutionTable)
    func scalarResolution(text: String, expected: YAMLScalar) throws {
        let root = try #require(try YAMLDocument.parse("v: \(text)\n"))
        let value = try #require(root["v"])
        #expect(value.scalar == expected, "\(text)")
    }

    @Test(arguments: [".nan", ".NaN", ".NAN"])
    func nanResolves(text: String) throws {
        let root = try #require(try YAMLDocument.parse("v: \(text)"))
        guard case .double(let d) = root["v"]?.scalar else {
            Issue.record("\(text) did not resolve to a double")
            return
        }
        #expect(d.isNaN)
    }

    @Test func quotedScalarsStayStrings() throws {
        let root = try #require(
            try YAMLDocument.parse(
                """
                a: "true"
                b: '42'
                c: ""
                d: "null"
                e: !!str 12
                f: ! true
                g: true
                h: |
                  7
                i: !!int "12"
                """))
        #expect(root["a"]?.scalar == .string("true"))
        #expect(root["b"]?.scalar == .string("42"))
        #expect(root["c"]?.scalar == .string(""))
        #expect(root["d"]?.scalar == .string("null"))
        #expect(root["e"]?.scalar == .string("12"))
        #expect(root["e"]?.tag == "!!str")
        #expect(root["f"]?.scalar == .string("true"))
        #expect(root["g"]?.scalar == .bool(true))
        #expect(root["g"]?.tag == nil)
        #expect(root["h"]?.scalar == .string("7\n"))
        #expect(root["i"]?.scalar == .int(12))
        #expect(root.scalar == nil)
        if case .scalar(_, let plain)? = root["a"]?.content {
            #expect(!plain)
        } else {
            Issue.record("a is not a scalar")
        }
    }

    @Test func brokenFlowSequence() throws {
        let error = try #require(parseError("steps: [1, 2\nexpect: 3\n"))
        #expect(error.mark == mark(2, 7))
        #expect(error.message == "did not find expected ',' or ']' (while parsing a flow sequence that started at 1:8)")
        #expect(error.description.hasPrefix("2:7: did not find expected ',' or ']'"))
    }

    @Test func unterminatedFlowSequenceStaysInsideTheFile() throws {
        // libyaml puts the end of the stream on a line after the last; the mark is kept on the last line.
        let error = try #require(parseError("[1, 2, 3"))
        #expect(error.mark == mark(1, 9))
        #expect(error.message.contains("did not find expected ',' or ']'"))
    }

    @Test func tabIndentation() throws {
        let error = try #require(parseError("a:\n\tb: 1\n"))
        #expect(error.mark == mark(2, 1))
        #expect(error.message.contains("found character that cannot start any token"))
    }

    @Test func duplicateKey() throws {
        let error = try #require(parseError("id: a\nsteps: []\nid: b\n"))
        #expect(error.mark == mark(3, 1))
        #expect(error.message == "duplicate key 'id' (first at 1:1)")

        let nested = try #require(parseError("x:\n  y: 1\n  z: 2\n  y: 3\n"))
        #expect(nested.mark == mark(4, 3))
        #expect(nested.message == "duplicate key 'y' (first at 2:3)")

        // Keys compare by value: 0x10 and 16 are the same integer.
        let byValue = try #require(parseError("{0x10: a, 16: b}"))
        #expect(byValue.mark == mark(1, 11))

        // The same text in different sibling mappings is fine, and "1" differs from 1.
        let ok = try #require(try YAMLDocument.parse("a: {k: 1}\nb: {k: 2}\n1: x\n'1': y\n"))
        #expect(ok.pairs?.count == 4)
    }

    @Test func nonScalarKeys() throws {
        let flow = try #require(parseError("[a, b]: 1\n"))
        #expect(flow.mark == mark(1, 1))
        #expect(flow.message == "mapping keys must be scalars")
        let complex = try #require(parseError("? {a: 1}\n: 2\n"))
        #expect(complex.mark == mark(1, 3))
        #expect(complex.message == "mapping keys must be scalars")
        let alias = try #require(parseError("a: &x [1]\n*x : 2\n"))
        #expect(alias.mark == mark(2, 1))
        #expect(alias.message == "mapping keys must be scalars")
    }

    @Test func twoDocuments() throws {
        let error = try #require(parseError("a: 1\n---\nb: 2\n"))
        #expect(error.mark == mark(2, 1))
        #expect(error.message == "only one YAML document per file")
        let explicit = try #require(parseError("--- a\n--- b\n"))
        #expect(explicit.mark == mark(2, 1))
        // A single explicit document, with or without an end marker, is fine.
        #expect(try YAMLDocument.parse("---\na: 1\n...\n")?["a"]?.scalar == .int(1))
    }

    @Test func aliases() throws {
        let root = try #require(try YAMLDocument.parse("base: &b [1, 2]\ncopy: *b\nname: &n x\nagain: *n\n"))
        #expect(root["copy"]?.items?.map(\.scalar) == [.int(1), .int(2)])
        // An alias yields the anchored node, marks included; libyaml starts a node at its anchor or tag.
        #expect(root["copy"]?.mark == mark(1, 7))
        #expect(root["again"]?.scalar == .string("x"))

        let unknown = try #require(parseError("a: 1\nb: *missing\n"))
        #expect(unknown.mark == mark(2, 4))
        #expect(unknown.message.contains("unknown alias '*missing'"))

        let recursive = try #require(parseError("a: &x [1, *x]\n"))
        #expect(recursive.mark == mark(1, 11))
    }

    @Test func billionLaughsIsRejected() throws {
        var lines = ["lol0: &lol0 lol"]
        for level in 1...9 {
            let refs = Array(repeating: "*lol\(level - 1)", count: 10).joined(separator: ", ")
            lines.append("lol\(level): &lol\(level) [\(refs)]")
        }
        let error = try #require(parseError(lines.joined(separator: "\n")))
        #expect(error.message == "document expands to more than 100000 nodes (alias expansion)")
        #expect(error.message.contains("expansion"))
        #expect(error.mark.line == 6)  // 10^5 nodes are reached at level 5

        // The same shape under the limit parses.
        var limits = YAMLLimits()
        limits.maxNodes = 1_000_000
        let small = lines.prefix(4).joined(separator: "\n")
        let root = try #require(try YAMLDocument.parse(small, limits: limits))
        #expect(root["lol3"]?[9]?[9]?[9]?.scalar == .string("lol"))
    }

    @Test func nodeLimitWithoutAliases() throws {
        let error = try #require(parseError("[1, 2, 3, 4]", limits: YAMLLimits(maxNodes: 3)))
        #expect(error.mark == mark(1, 8))
        #expect(error.message == "document has more than 3 nodes")
    }

    @Test func deepNestingIsRejected() throws {
        let error = try #require(parseError(String(repeating: "[", count: 10_000)))
        #expect(error.mark == mark(1, 65))
        #expect(error.message == "document nests deeper than 64 levels")

        let block = (0..<100).map { String(repeating: "  ", count: $0) + "k\($0):" }.joined(separator: "\n")
        let blockError = try #require(parseError(block))
        #expect(blockError.mark == mark(64, 127))  // the 64th nested mapping's key is at depth 65
        #expect(blockError.message.contains("deeper than 64"))

        // Exactly at the limit is fine.
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(try YAMLDocument.parse(ok) != nil)
        // An alias may not smuggle in depth either.
        let aliasDeep = try #require(parseError("a: &x [[[1]]]\nb: [[*x]]\n", limits: YAMLLimits(maxDepth: 5)))
        #expect(aliasDeep.mark == mark(2, 6))
        #expect(aliasDeep.message.contains("alias expansion"))
    }

    @Test func maxBytes() throws {
        let error = try #require(parseError("key: value\n", limits: YAMLLimits(maxBytes: 10)))
        #expect(error.mark == mark(1, 1))
        #expect(error.message.contains("more than the limit of 10"))
        #expect(try YAMLDocument.parse("key: value\n", limits: YAMLLimits(maxBytes: 11)) != nil)

        let huge = "a: " + String(repeating: "x", count: 4 << 20)
        let hugeError = try #require(parseError(huge))
        #expect(hugeError.mark == mark(1, 1))
    }

    @Test(arguments: ["", "# only a comment\n", "\n\n   \n", "\u{FEFF}"])
    func emptyStreamIsNil(text: String) throws {
        #expect(try YAMLDocument.parse(text) == nil)
    }

    @Test func emptyDocumentIsNull() throws {
        let node = try #require(try YAMLDocument.parse("---\n"))
        #expect(node.scalar == .null)
    }

    @Test func byteOrderMark() throws {
        let root = try #require(try YAMLDocument.parse("\u{FEFF}a: 1\nb: 2\n"))
        #expect(root.mark == mark(1, 1))
        #expect(root["b"]?.mark == mark(2, 4))
    }

    @Test func invalidUTF8IsReplacedNotFatal() throws {
        // String(decoding:) turns the invalid bytes into U+FFFD, which YAML accepts as text.
        let text = String(decoding: [0x61, 0x3A, 0x20, 0xFF, 0xFE, 0x62, 0xC3, 0x0A] as [UInt8], as: UTF8.self)
        let root = try #require(try YAMLDocument.parse(text))
        #expect(root["a"]?.scalar == .string("\u{FFFD}\u{FFFD}b\u{FFFD}"))
    }

    @Test func controlCharacters() throws {
        let nul = try #require(parseError("a: b\u{0}c\n"))
        #expect(nul.mark == mark(1, 5))
        #expect(nul.message == "control characters are not allowed (U+0000)")

        let bell = try #require(parseError("a: 1\nbé: \u{7}\n"))
        #expect(bell.mark == mark(2, 5))

        // An escaped NUL inside double quotes is legal and survives.
        let root = try #require(try YAMLDocument.parse("a: \"x\\0y\"\n"))
        #expect(root["a"]?.scalar == .string("x\u{0}y"))
    }

    @Test(arguments: [
        "a: \"unterminated\n", "a: 'x\n", "key: @bad\n", "a: b: c\n", "- a\nb: c\n", "  a: 1\n b: 2\n",
        "%YAML 2.0\n--- a\n", "{a: 1", "]", "a: !<tag:x\n", "&\n", "a: *\n", "a:\n  - b\n  c: d\n",
        "a: \"\\uD800\"\n", "a: \"\\q\"\n", "\u{FEFF}a: b\n\u{FEFF}c: d\n",
    ])
    func syntaxErrorsHaveMarks(text: String) throws {
        let error = try #require(parseError(text))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
        #expect(error.mark.line >= 1 && error.mark.line <= lines)
        #expect(error.mark.column >= 1)
        #expect(!error.message.isEmpty)
    }

    @Test func randomMutationsNeverCrash() {
        let base = Array(Self.sample.utf8) + Array("\nanchors: {a: &a [x, é, \"q\\n\"], b: *a}\nblock: |\n  text\n".utf8)
        let punctuation = Array("-?:,[]{}#&*!|>'\"%@`\t\n \r\u{0}\\.~".utf8)
        var rng = SplitMix64(state: 0x5EED_CAFE)
        var parsed = 0
        var failed = 0
        for _ in 0..<2_000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                let position = Int.random(in: 0..<bytes.count, using: &rng)
                let byte = punctuation.randomElement(using: &rng)!
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes.remove(at: position)
                case 1: bytes.insert(byte, at: position)
                case 2: bytes[position] = byte
                default: bytes[position] = UInt8.random(in: 0...255, using: &rng)
                }
                if bytes.isEmpty { bytes = [0x7B] }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                _ = try YAMLDocument.parse(text)
                parsed += 1
            } catch {
                #expect(error.mark.line >= 1 && error.mark.column >= 1)
                #expect(!error.message.isEmpty)
                failed += 1
            }
        }
        #expect(parsed + failed == 2_000)
        #expect(parsed > 0 && failed > 0)
    }
}
