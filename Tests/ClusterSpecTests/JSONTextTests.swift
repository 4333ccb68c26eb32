import ClusterJSON
import Testing

/// JSON text: every special byte is escaped wherever it falls (the writer and the parser look at eight
/// bytes at a time), and text round-trips.
@Suite("JSON text")
struct JSONTextTests {
    static let specials: [(Character, String)] = [
        ("\"", "\\\""), ("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\u{1}", "\\u0001"), ("\u{1F}", "\\u001f"),
    ]

    @Test("a special character at any position of a string up to 24 characters long is escaped, and parses back")
    func specialAtEveryOffset() throws {
        var cases = 0
        for (special, escaped) in Self.specials {
            for length in 1...24 {
                for position in 0..<length {
                    var text = String(repeating: "a", count: length)
                    let index = text.index(text.startIndex, offsetBy: position)
                    text.replaceSubrange(index...index, with: String(special))
                    let expected = "\"" + text.replacingAll(special, with: escaped) + "\""
                    #expect(JSONValue.string(text).jsonText == expected, "length \(length), position \(position)")
                    #expect(try JSONValue.parse(expected) == .string(text))
                    cases += 1
                }
            }
        }
        #expect(cases == Self.specials.count * (24 * 25 / 2))
    }

    @Test("multi-byte characters next to escapes, and a megabyte string, round-trip")
    func roundTrips() throws {
        let mixed = String(repeating: "é漢😀\"\\\n\u{7}x", count: 1000)
        #expect(try JSONValue.parse(JSONValue.string(mixed).jsonText) == .string(mixed))
        let plain = String(repeating: "0123456789abcdef", count: 65536)
        #expect(JSONValue.string(plain).jsonBytes.count == plain.utf8.count + 2)
        #expect(try JSONValue.parse(bytes: JSONValue.string(plain).jsonBytes) == .string(plain))
    }

    @Test("unescaped control characters and invalid UTF-8 inside a string are refused",
          arguments: [[0x22, 0x61, 0x0A, 0x22], [0x22, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0xFF, 0x22], [0x22, 0x61, 0x62]])
    func refused(_ bytes: [UInt8]) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(bytes: bytes) }
    }
}

extension String {
    /// This string with every `character` replaced by `replacement`.
    func replacingAll(_ character: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == character { out += replacement } else { out.append(c) } }
        return out
    }
}
