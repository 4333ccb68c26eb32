import ClusterJSON
import Testing

// MARK: - Types under test

private struct Point: Codable, Equatable {
    var x: Int
    var y: Int
}

private indirect enum Shape: Codable, Equatable {
    case empty
    case circle(center: Point, radius: Double)
    case polygon([Point])
    case labelled(String, Shape?)
}

private struct Drawing: Codable, Equatable {
    var title: String
    var version: UInt8
    var shapes: [Shape]
    var origin: Point?
    var note: String?
    var layers: [String: [Int]]
    var names: [Int: String]
    var visible: Bool
    var ratio: Float
    var grid: [[Double]]
}

private struct Line: Codable, Equatable {
    var sku: String
    var qty: UInt16
    var options: [String: Bool]?
}

private struct Order: Codable, Equatable {
    var id: Int
    var lines: [Line]
}

private class Animal: Codable {
    var name: String
    init(name: String) { self.name = name }
}

/// Keeps its superclass's members under "super", through superEncoder() and superDecoder().
private final class Dog: Animal {
    var breed: String
    enum CodingKeys: String, CodingKey { case breed }

    init(name: String, breed: String) {
        self.breed = breed
        super.init(name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        breed = try container.decode(String.self, forKey: .breed)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(breed, forKey: .breed)
        try super.encode(to: container.superEncoder())
    }
}

/// Keeps its superclass's members under a key of its own, through superEncoder(forKey:).
private final class Cat: Animal {
    var lives: Int
    enum CodingKeys: String, CodingKey { case lives, animal }

    init(name: String, lives: Int) {
        self.lives = lives
        super.init(name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        lives = try container.decode(Int.self, forKey: .lives)
        try super.init(from: container.superDecoder(forKey: .animal))
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(lives, forKey: .lives)
        try super.encode(to: container.superEncoder(forKey: .animal))
    }
}

/// Shares its superclass's encoder: one object with the members of both.
private final class Bird: Animal {
    var wings: Int
    enum CodingKeys: String, CodingKey { case wings }

    init(name: String, wings: Int) {
        self.wings = wings
        super.init(name: name)
    }

    required init(from decoder: any Decoder) throws {
        wings = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .wings)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(wings, forKey: .wings)
        try super.encode(to: encoder)
    }
}

/// A string coding key for hand-written containers.
private struct Key: CodingKey, ExpressibleByStringLiteral {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(stringLiteral value: String) { stringValue = value }
}

/// Holds a JSONValue through JSONValue's own Codable conformance (not the containers' shortcut for it).
private struct Direct: Codable {
    var value: JSONValue
    init(_ value: JSONValue) { self.value = value }
    init(from decoder: any Decoder) throws { value = try JSONValue(from: decoder) }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}

private struct Envelope: Codable, Equatable {
    var topic: String
    var payload: JSONValue
    var extra: JSONValue?
}

// MARK: - Helpers

private func encode<T: Encodable>(_ value: T) throws -> JSONValue { try JSONValueEncoder().encode(value) }

private func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try JSONValueDecoder().decode(type, from: JSONValue.parse(text))
}

/// A coding path as text: keys by name, array positions as [n].
private func pathText(_ path: [any CodingKey]) -> String {
    path.map { key in key.stringValue.hasPrefix("Index ") ? "[\(key.intValue!)]" : key.stringValue }.joined(separator: "/")
}

private extension DecodingError {
    var kind: String {
        switch self {
        case .typeMismatch: "typeMismatch"
        case .valueNotFound: "valueNotFound"
        case .keyNotFound: "keyNotFound"
        case .dataCorrupted: "dataCorrupted"
        @unknown default: "unknown"
        }
    }

    var context: Context {
        switch self {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c): c
        @unknown default: Context(codingPath: [], debugDescription: "")
        }
    }
}

/// Kind, path and message of the DecodingError that decoding `text` as a `type` throws.
private func decodingFailure<T: Decodable>(_ type: T.Type, _ text: String) throws -> (kind: String, path: String, message: String) {
    let error = try #require(throws: DecodingError.self) { _ = try decode(type, text) }
    return (error.kind, pathText(error.context.codingPath), error.context.debugDescription)
}

/// Path and message of the EncodingError.invalidValue that encoding `value` throws.
private func encodingFailure<T: Encodable>(_ value: T) throws -> (path: String, message: String) {
    let error = try #require(throws: EncodingError.self) { _ = try encode(value) }
    guard case .invalidValue(_, let context) = error else {
        Issue.record("expected invalidValue, got \(error)")
        return ("", "")
    }
    return (pathText(context.codingPath), context.debugDescription)
}

/// `value` encodes as exactly `number` and decodes back to itself.
private func expectRoundTrip<I: FixedWidthInteger & Codable>(_ value: I, as number: Double, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let json = try encode(value)
    #expect(json == .number(number), sourceLocation: sourceLocation)
    #expect(try JSONValueDecoder().decode(I.self, from: json) == value, sourceLocation: sourceLocation)
    // Through the unkeyed container's own overloads, and its path for a second item.
    #expect(try encode([value, value]) == .array([.number(number), .number(number)]), sourceLocation: sourceLocation)
    #expect(try JSONValueDecoder().decode([I].self, from: .array([.number(number)])) == [value], sourceLocation: sourceLocation)
}

// MARK: - Tests

@Suite struct JSONValueCodingTests {
    @Test func nestedStructsEnumsOptionalsAndDictionariesRoundTrip() throws {
        let drawing = Drawing(
            title: "Plan \"A\"",
            version: 3,
            shapes: [
                .empty,
                .circle(center: Point(x: 0, y: -4), radius: 1.5),
                .polygon([Point(x: 1, y: 2), Point(x: 3, y: 4)]),
                .labelled("box", .labelled("inner", nil)),
            ],
            origin: Point(x: 7, y: 8),
            note: nil,
            layers: ["base": [1, 2], "top": []],
            names: [1: "one", 20: "twenty"],
            visible: true,
            ratio: 0.1,
            grid: [[0.5, -2], []]
        )
        let json = try encode(drawing)
        // Equality of objects ignores key order; the order has its own test below.
        let expected = try JSONValue.parse(
            """
            {"title": "Plan \\"A\\"", "version": 3,
             "shapes": [{"empty": {}},
                        {"circle": {"center": {"x": 0, "y": -4}, "radius": 1.5}},
                        {"polygon": {"_0": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}},
                        {"labelled": {"_0": "box", "_1": {"labelled": {"_0": "inner"}}}}],
             "origin": {"x": 7, "y": 8},
             "layers": {"base": [1, 2], "top": []},
             "names": {"1": "one", "20": "twenty"},
             "visible": true, "ratio": 0.1, "grid": [[0.5, -2], []]}
            """)
        #expect(json == expected)
        #expect(json["note"] == nil)  // a nil optional leaves its key out, as JSONEncoder does
        #expect(try JSONValueDecoder().decode(Drawing.self, from: json) == drawing)
        // And through the text the IPC channel carries.
        #expect(try JSONValue.parse(json.jsonText).decode(Drawing.self) == drawing)

        // An explicit null decodes as nil too; a missing non-optional does not.
        var withNull = expected
        if case .object(var object) = withNull {
            object["note"] = .null
            withNull = .object(object)
        }
        #expect(try withNull.decode(Drawing.self).note == nil)
    }

    @Test func objectKeysKeepTheirEncodingOrder() throws {
        struct Ordered: Codable {
            var zeta = 1
            var alpha = [2]
            var mid: String? = "m"
            var beta = Point(x: 3, y: 4)
        }
        #expect(try encode(Ordered()).jsonText == #"{"zeta":1,"alpha":[2],"mid":"m","beta":{"x":3,"y":4}}"#)

        // Hand-written order, and a key encoded again keeps its first place with its last value; 20 keys
        // take the encoder's indexed path, 3 its scanning one.
        struct Rewrites: Encodable {
            var count: Int
            func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: Key.self)
                for i in (0..<count).reversed() { try container.encode(i, forKey: Key(stringValue: "k\(i)")) }
                try container.encode("again", forKey: "k1")
            }
        }
        #expect(try encode(Rewrites(count: 3)).jsonText == #"{"k2":2,"k1":"again","k0":0}"#)
        let twenty = try encode(Rewrites(count: 20))
        guard case .object(let object) = twenty else { throw Failure("not an object: \(twenty)") }
        #expect(object.keys == (0..<20).reversed().map { "k\($0)" })
        #expect(object["k1"] == "again")
        #expect(object["k19"] == 19)

        // Decoding lists the keys in the object's order.
        struct KeyLister: Decodable {
            var keys: [String]
            init(from decoder: any Decoder) throws { keys = try decoder.container(keyedBy: Key.self).allKeys.map(\.stringValue) }
        }
        #expect(try decode(KeyLister.self, #"{"b":1,"a":2,"c":3}"#).keys == ["b", "a", "c"])
    }

    @Test func classInheritanceThroughSuperEncoders() throws {
        let dog = try encode(Dog(name: "Lassie", breed: "collie"))
        #expect(dog.jsonText == #"{"breed":"collie","super":{"name":"Lassie"}}"#)
        let decodedDog = try dog.decode(Dog.self)
        #expect(decodedDog.name == "Lassie")
        #expect(decodedDog.breed == "collie")

        let cat = try encode(Cat(name: "Tom", lives: 9))
        #expect(cat.jsonText == #"{"lives":9,"animal":{"name":"Tom"}}"#)
        let decodedCat = try cat.decode(Cat.self)
        #expect(decodedCat.name == "Tom")
        #expect(decodedCat.lives == 9)

        let bird = try encode(Bird(name: "Tweety", wings: 2))
        #expect(bird.jsonText == #"{"wings":2,"name":"Tweety"}"#)
        let decodedBird = try bird.decode(Bird.self)
        #expect(decodedBird.name == "Tweety")
        #expect(decodedBird.wings == 2)

        // A missing "super" decodes as null: the superclass fails at that path.
        let failure = try decodingFailure(Dog.self, #"{"breed":"pug"}"#)
        #expect(failure.kind == "valueNotFound")
        #expect(failure.path == "super")

        // An unkeyed container's superEncoder takes the next position; one nothing was encoded into is {}.
        struct Pack: Codable {
            var leader: Animal
            init(leader: Animal) { self.leader = leader }
            func encode(to encoder: any Encoder) throws {
                var container = encoder.unkeyedContainer()
                try container.encode("pack")
                try leader.encode(to: container.superEncoder())
                _ = container.superEncoder()
            }
            init(from decoder: any Decoder) throws {
                var container = try decoder.unkeyedContainer()
                _ = try container.decode(String.self)
                leader = try Animal(from: container.superDecoder())
            }
        }
        let pack = try encode(Pack(leader: Animal(name: "Akela")))
        #expect(pack.jsonText == #"["pack",{"name":"Akela"},{}]"#)
        #expect(try pack.decode(Pack.self).leader.name == "Akela")
    }

    @Test func everyIntegerWidthAtItsLimits() throws {
        try expectRoundTrip(Int8.min, as: -128)
        try expectRoundTrip(Int8.max, as: 127)
        try expectRoundTrip(Int16.min, as: -32768)
        try expectRoundTrip(Int16.max, as: 32767)
        try expectRoundTrip(Int32.min, as: -2_147_483_648)
        try expectRoundTrip(Int32.max, as: 2_147_483_647)
        try expectRoundTrip(UInt8.min, as: 0)
        try expectRoundTrip(UInt8.max, as: 255)
        try expectRoundTrip(UInt16.max, as: 65535)
        try expectRoundTrip(UInt32.max, as: 4_294_967_295)
        // The 64-bit and 128-bit types: the limits a Double holds exactly pass, the others are refused.
        try expectRoundTrip(Int64.min, as: -0x1p63)
        try expectRoundTrip(Int.min, as: -0x1p63)
        try expectRoundTrip(Int128.min, as: -0x1p127)
        try expectRoundTrip(UInt64.min, as: 0)
        try expectRoundTrip(UInt.min, as: 0)
        try expectRoundTrip(UInt128.min, as: 0)
        try expectRoundTrip(Int64(1) << 53, as: 9_007_199_254_740_992)
        try expectRoundTrip(-(Int64(1) << 53), as: -9_007_199_254_740_992)
        try expectRoundTrip(UInt64(1) << 63, as: 0x1p63)
        try expectRoundTrip(UInt128(1) << 100, as: 0x1p100)

        #expect(try encodingFailure(Int64.max).message == "Cannot encode Int64 9223372036854775807: a JSON number (a Double) cannot hold it exactly.")
        _ = try encodingFailure(Int.max)
        _ = try encodingFailure(UInt64.max)
        _ = try encodingFailure(UInt.max)
        _ = try encodingFailure(Int128.max)
        _ = try encodingFailure(UInt128.max)

        // Each width through the keyed container's own overloads.
        struct Widths: Codable, Equatable {
            var i: Int, i8: Int8, i16: Int16, i32: Int32, i64: Int64, i128: Int128
            var u: UInt, u8: UInt8, u16: UInt16, u32: UInt32, u64: UInt64, u128: UInt128
        }
        let low = Widths(i: .min, i8: .min, i16: .min, i32: .min, i64: .min, i128: .min, u: 0, u8: 0, u16: 0, u32: 0, u64: 0, u128: 0)
        let lowJSON = try encode(low)
        #expect(lowJSON["i8"] == -128)
        #expect(lowJSON["i64"] == .number(-0x1p63))
        #expect(lowJSON["i128"] == .number(-0x1p127))
        #expect(lowJSON["u64"] == 0)
        #expect(try lowJSON.decode(Widths.self) == low)
        let high = Widths(
            i: 1 << 53, i8: .max, i16: .max, i32: .max, i64: 1 << 53, i128: 1 << 53,
            u: 1 << 53, u8: .max, u16: .max, u32: .max, u64: 1 << 53, u128: 1 << 53)
        let highJSON = try encode(high)
        #expect(highJSON["u32"] == 4_294_967_295)
        #expect(highJSON["u128"] == 9_007_199_254_740_992)
        #expect(try highJSON.decode(Widths.self) == high)
    }

    @Test func integersThatADoubleCannotHoldAreRefused() throws {
        let overLimit = (Int64(1) << 53) + 1
        #expect(try encodingFailure(overLimit).path == "")
        #expect(try encodingFailure(-overLimit).path == "")
        #expect(try encodingFailure(UInt64(overLimit)).path == "")
        struct Big: Encodable {
            var id: UInt64
            var list: [Int64]
        }
        #expect(try encodingFailure(Big(id: UInt64(overLimit), list: [])).path == "id")
        #expect(try encodingFailure(Big(id: 1, list: [1, overLimit])).path == "list/[1]")
    }

    @Test func integersDecodeOnlyFromExactNumbersInRange() throws {
        let fraction = try decodingFailure(Int.self, "3.5")
        #expect(fraction.kind == "dataCorrupted")
        #expect(fraction.message == "Expected to decode Int but found the number 3.5, which is not an integer.")
        let range = try decodingFailure(UInt8.self, "256")
        #expect(range.kind == "dataCorrupted")
        #expect(range.message == "Expected to decode UInt8 but found the number 256, which is out of its range.")
        #expect(try decodingFailure(UInt8.self, "-1").kind == "dataCorrupted")
        #expect(try decodingFailure(Int8.self, "128").kind == "dataCorrupted")
        #expect(try decodingFailure(Int8.self, "-129").kind == "dataCorrupted")
        #expect(try decodingFailure(Int64.self, "9223372036854775808").kind == "dataCorrupted")  // 2^63
        #expect(try decodingFailure(UInt64.self, "18446744073709551616").kind == "dataCorrupted")  // 2^64
        #expect(try decodingFailure(Int.self, "1e300").kind == "dataCorrupted")
        #expect(try decode(Int.self, "-0") == 0)
        #expect(try decode(Int32.self, "1e3") == 1000)
        #expect(try decode([Int16].self, "[-32768, 32767]") == [-32768, 32767])
    }

    @Test func nanAndInfinitiesAreRefused() throws {
        #expect(try encodingFailure(Double.nan).message == "Cannot encode Double nan: JSON numbers are finite.")
        #expect(try encodingFailure(Double.infinity).message == "Cannot encode Double inf: JSON numbers are finite.")
        #expect(try encodingFailure(-Double.infinity).path == "")
        #expect(try encodingFailure(Float.nan).message == "Cannot encode Float nan: JSON numbers are finite.")
        #expect(try encodingFailure([1.0, 2.0, .nan]).path == "[2]")
        #expect(try encodingFailure(["w": [Float.infinity]]).path == "w/[0]")
        struct Measure: Encodable { var ratio: Double }
        #expect(try encodingFailure(Measure(ratio: .nan)).path == "ratio")
    }

    @Test func floatsKeepTheirShortestForm() throws {
        #expect(try encode(Float(0.1)) == .number(0.1))
        #expect(try JSONValue.number(0.1).decode(Float.self) == Float(0.1))
        for f in [Float.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude, .pi, 1 / 3, 16_777_215, 3.4e38] {
            #expect(try encode(f).decode(Float.self) == f)
        }
        let tooBig = try decodingFailure(Float.self, "1e39")
        #expect(tooBig.kind == "dataCorrupted")
        #expect(tooBig.message == "Expected to decode Float but found the number 1e+39, which is out of its range.")
    }

    @Test func scalarsDecodeOnlyFromTheirOwnJSONType() throws {
        let bool = try decodingFailure(Bool.self, "1")
        #expect(bool.kind == "typeMismatch")
        #expect(bool.message == "Expected to decode Bool but found the number 1 instead.")
        let string = try decodingFailure(String.self, "true")
        #expect(string.kind == "typeMismatch")
        #expect(string.message == "Expected to decode String but found the Boolean true instead.")
        #expect(try decodingFailure(Int.self, #""1""#).message == "Expected to decode Int but found a string instead.")
        #expect(try decodingFailure(Double.self, "[]").message == "Expected to decode Double but found an array instead.")
        let null = try decodingFailure(String.self, "null")
        #expect(null.kind == "valueNotFound")
        #expect(null.message == "Expected to decode String but found null instead.")
        #expect(try decode(String?.self, "null") == nil)
        #expect(try decode(Bool.self, "false") == false)
    }

    @Test func decodingErrorsCarryTheExactCodingPath() throws {
        let good = #"{"sku": "a", "qty": 1}"#
        #expect(try decode(Order.self, #"{"id": 1, "lines": [\#(good)]}"#) == Order(id: 1, lines: [Line(sku: "a", qty: 1)]))

        let wrongType = try decodingFailure(Order.self, #"{"id": 1, "lines": [\#(good), {"sku": "b", "qty": "two"}]}"#)
        #expect(wrongType.kind == "typeMismatch")
        #expect(wrongType.path == "lines/[1]/qty")
        #expect(wrongType.message == "Expected to decode UInt16 but found a string instead.")

        let missing = try decodingFailure(Order.self, #"{"id": 1, "lines": [{"sku": "a"}]}"#)
        #expect(missing.kind == "keyNotFound")
        #expect(missing.path == "lines/[0]")  // the container's path; the key is the error's own
        #expect(missing.message == #"No value associated with key "qty"."#)

        let null = try decodingFailure(Order.self, #"{"id": 1, "lines": [\#(good), \#(good), {"sku": "c", "qty": null}]}"#)
        #expect(null.kind == "valueNotFound")
        #expect(null.path == "lines/[2]/qty")

        let tooBig = try decodingFailure(Order.self, #"{"id": 1, "lines": [{"sku": "a", "qty": 70000}]}"#)
        #expect(tooBig.kind == "dataCorrupted")
        #expect(tooBig.path == "lines/[0]/qty")

        let option = try decodingFailure(Order.self, #"{"id": 1, "lines": [{"sku": "a", "qty": 1, "options": {"gift": 1}}]}"#)
        #expect(option.kind == "typeMismatch")
        #expect(option.path == "lines/[0]/options/gift")

        let notArray = try decodingFailure(Order.self, #"{"id": 1, "lines": {"sku": "a"}}"#)
        #expect(notArray.kind == "typeMismatch")
        #expect(notArray.path == "lines")
        #expect(notArray.message == "Expected an array but found an object instead.")

        let notObject = try decodingFailure(Order.self, "[1]")
        #expect(notObject.kind == "typeMismatch")
        #expect(notObject.path == "")
        #expect(notObject.message == "Expected an object but found an array instead.")

        let topKey = try #require(throws: DecodingError.self) { _ = try decode(Order.self, #"{"lines": []}"#) }
        guard case .keyNotFound(let key, let context) = topKey else { throw Failure("not keyNotFound: \(topKey)") }
        #expect(key.stringValue == "id")
        #expect(context.codingPath.isEmpty)

        let enumCase = try decodingFailure([Shape].self, #"[{"empty": {}}, {"circle": {"center": {"x": 1, "y": 2.5}, "radius": 1}}]"#)
        #expect(enumCase.kind == "dataCorrupted")
        #expect(enumCase.path == "[1]/circle/center/y")
    }

    @Test func keyedContainerSemantics() throws {
        struct Probe: Decodable {
            var keys: [String] = []
            var containsA = false, containsZ = false
            var aIsNil = false, bIsNil = true
            var presentB: Int?, nullA: Int?, absentZ: Int?
            var wrongTypeFails = false, decodeNilOfMissingFails = false
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: Key.self)
                keys = c.allKeys.map(\.stringValue)
                containsA = c.contains("a")
                containsZ = c.contains("z")
                aIsNil = try c.decodeNil(forKey: "a")
                bIsNil = try c.decodeNil(forKey: "b")
                presentB = try c.decodeIfPresent(Int.self, forKey: "b")
                nullA = try c.decodeIfPresent(Int.self, forKey: "a")
                absentZ = try c.decodeIfPresent(Int.self, forKey: "z")
                do { _ = try c.decodeIfPresent(Int.self, forKey: "s") } catch DecodingError.typeMismatch { wrongTypeFails = true }
                do { _ = try c.decodeNil(forKey: "z") } catch DecodingError.keyNotFound { decodeNilOfMissingFails = true }
            }
        }
        let probe = try decode(Probe.self, #"{"a": null, "b": 2, "s": "x"}"#)
        #expect(probe.keys == ["a", "b", "s"])
        #expect(probe.containsA && !probe.containsZ)
        #expect(probe.aIsNil && !probe.bIsNil)
        #expect(probe.presentB == 2)
        #expect(probe.nullA == nil && probe.absentZ == nil)
        #expect(probe.wrongTypeFails)
        #expect(probe.decodeNilOfMissingFails)

        // More than 16 members: the decoder's indexed lookup.
        var big: [String: Int] = [:]
        for i in 0..<40 { big["key\(i)"] = i * i }
        #expect(try encode(big).decode([String: Int].self) == big)
        struct Wide: Decodable { var key0: Int, key39: Int, key17: Int }
        let wide = try encode(big).decode(Wide.self)
        #expect(wide.key0 == 0 && wide.key39 == 1521 && wide.key17 == 289)
    }

    @Test func unkeyedContainerSemantics() throws {
        struct Walk: Decodable {
            var log: [String] = []
            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                log.append("count \(c.count ?? -1) at \(c.currentIndex)")
                log.append("nil \(try c.decodeNil()) at \(c.currentIndex)")  // null: consumed
                log.append("nil \(try c.decodeNil()) at \(c.currentIndex)")  // 5: not consumed
                do { _ = try c.decode(String.self) } catch { log.append("string failed at \(c.currentIndex)") }
                log.append("int \(try c.decode(Int.self)) at \(c.currentIndex) end \(c.isAtEnd)")
                log.append("ints \(try c.decode([Int].self)) at \(c.currentIndex) end \(c.isAtEnd)")
                do { _ = try c.decode(Int.self) } catch let DecodingError.valueNotFound(_, context) {
                    log.append("past end: \(pathText(context.codingPath)) \(context.debugDescription)")
                }
            }
        }
        #expect(
            try decode(Walk.self, "[null, 5, [6, 7]]").log == [
                "count 3 at 0", "nil true at 1", "nil false at 1", "string failed at 1", "int 5 at 2 end false",
                "ints [6, 7] at 3 end true", "past end: [3] Unkeyed container is at end.",
            ])
    }

    @Test func nestedContainersBothWays() throws {
        struct Nested: Codable, Equatable {
            var a: Int
            var list: [String]
            init(a: Int, list: [String]) {
                self.a = a
                self.list = list
            }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: Key.self)
                var outer = c.nestedContainer(keyedBy: Key.self, forKey: "outer")
                try outer.encode(a, forKey: "a")
                var list = c.nestedUnkeyedContainer(forKey: "list")
                for s in self.list { try list.encode(s) }
                var inner = list.nestedUnkeyedContainer()
                try inner.encode(true)
                var keyed = list.nestedContainer(keyedBy: Key.self)
                try keyed.encodeNil(forKey: "n")
                // Asking again for the same nested object adds to it.
                var again = c.nestedContainer(keyedBy: Key.self, forKey: "outer")
                try again.encode("b", forKey: "b")
            }
            init(from decoder: any Decoder) throws {
                let c = try decoder.container(keyedBy: Key.self)
                let outer = try c.nestedContainer(keyedBy: Key.self, forKey: "outer")
                a = try outer.decode(Int.self, forKey: "a")
                var list = try c.nestedUnkeyedContainer(forKey: "list")
                self.list = []
                while list.count! - list.currentIndex > 2 { self.list.append(try list.decode(String.self)) }
                var inner = try list.nestedUnkeyedContainer()
                guard try inner.decode(Bool.self) else { throw Failure("inner") }
                let keyed = try list.nestedContainer(keyedBy: Key.self)
                guard try keyed.decodeNil(forKey: "n") else { throw Failure("keyed") }
            }
        }
        let value = Nested(a: 1, list: ["x", "y"])
        let json = try encode(value)
        #expect(json.jsonText == #"{"outer":{"a":1,"b":"b"},"list":["x","y",[true],{"n":null}]}"#)
        #expect(try json.decode(Nested.self) == value)

        let failure = try decodingFailure(Nested.self, #"{"outer": [1], "list": []}"#)
        #expect(failure.kind == "typeMismatch")
        #expect(failure.path == "outer")
    }

    @Test func jsonValueInsideACodableStruct() throws {
        let payloadText = #"{"z":[1,null,true,{"b":"x","a":2.5}],"a":{},"m":"s"}"#
        let envelope = Envelope(topic: "t", payload: try JSONValue.parse(payloadText), extra: nil)
        let json = try encode(envelope)
        #expect(json.jsonText == #"{"topic":"t","payload":\#(payloadText)}"#)
        let back = try json.decode(Envelope.self)
        #expect(back == envelope)
        #expect(back.payload.jsonText == payloadText)  // == ignores key order; the text does not

        // An optional JSONValue holding null is nil once decoded, as JSONDecoder's optionals are.
        let withNull = try encode(Envelope(topic: "t", payload: 1, extra: .null))
        #expect(withNull.jsonText == #"{"topic":"t","payload":1,"extra":null}"#)
        #expect(try withNull.decode(Envelope.self).extra == nil)
        #expect(try encode(Envelope(topic: "t", payload: 1, extra: "e")).decode(Envelope.self).extra == "e")

        // JSONValue's own Codable conformance, as any encoder and decoder would use it.
        for text in ["null", "true", "-2.5", #""s""#, #"[1,[],{"k":false}]"#, #"{"y":1,"x":[null],"w":{}}"#, "{}", "[]"] {
            let value = try JSONValue.parse(text)
            let encoded = try encode(Direct(value))
            #expect(encoded.jsonText == text)
            #expect(try encoded.decode(Direct.self).value.jsonText == text)
        }
    }

    @Test func aMebibyteStringFieldRoundTrips() throws {
        struct Blob: Codable, Equatable {
            var name: String
            var data: String
            var tail: [UInt8]
        }
        // 64 KiB: 65,526 plain bytes, then 10 of characters to escape or of several bytes.
        let chunk = String(repeating: "0123456789abcdef", count: 4095) + "012345" + "\"é\\\n\u{1}\u{1F600}"
        let data = String(repeating: chunk, count: 16)
        #expect(data.utf8.count == 1 << 20)
        let blob = Blob(name: "big", data: data, tail: [1, 2, 255])
        let json = try encode(blob)
        #expect(json["data"]?.stringValue?.utf8.count == 1 << 20)
        #expect(try json.decode(Blob.self) == blob)
        // The whole IPC path: text and back.
        let text = json.jsonText
        #expect(text.utf8.count > 1 << 20)
        #expect(try JSONValue.parse(text).decode(Blob.self) == blob)
    }

    @Test func largeCollectionsRoundTrip() throws {
        let numbers = (0..<100_000).map { $0 * 3 - 150_000 }
        let json = try encode(numbers)
        #expect(json.arrayValue?.count == 100_000)
        #expect(json.arrayValue?.last == .number(149_997))
        #expect(try json.decode([Int].self) == numbers)

        var dictionary: [Int: [String]] = [:]
        for i in 0..<2_000 { dictionary[i] = [String(i), "x"] }
        let object = try encode(dictionary)
        #expect(object["1999"] == .array(["1999", "x"]))
        #expect(try object.decode([Int: [String]].self) == dictionary)
    }

    @Test func topLevelValuesAndConveniences() throws {
        #expect(try JSONValue(encoding: 42) == 42)
        #expect(try JSONValue(encoding: "s") == "s")
        #expect(try JSONValue(encoding: false) == false)
        #expect(try JSONValue(encoding: Int?.none) == .null)
        #expect(try JSONValue(encoding: [Int?.none, 1]) == .array([.null, 1]))
        #expect(try JSONValue(encoding: ["a": 1]) == .object(JSONObject([("a", 1)])))
        #expect(try JSONValue(encoding: JSONValue.array([1, "x"])) == .array([1, "x"]))

        let n: Int = try JSONValue.number(5).decode()
        #expect(n == 5)
        #expect(try JSONValue.string("x").decode(String.self) == "x")
        #expect(try JSONValue.null.decode(Int?.self) == nil)
        #expect(try JSONValue.array([1, .null]).decode([Int?].self) == [1, nil])

        // Something that encodes nothing: refused at the top, as JSONEncoder does; {} below it.
        struct Nothing: Encodable { func encode(to encoder: any Encoder) throws {} }
        let top = try #require(throws: EncodingError.self) { _ = try JSONValue(encoding: Nothing()) }
        guard case .invalidValue(_, let context) = top else { throw Failure("not invalidValue: \(top)") }
        #expect(context.debugDescription == "Top-level Nothing did not encode any values.")
        #expect(try JSONValue(encoding: [Nothing()]).jsonText == "[{}]")
    }

    @Test func userInfoReachesTheEncodedAndDecodedTypes() throws {
        struct Scaled: Codable {
            static let scale = CodingUserInfoKey(rawValue: "scale")!
            var value: Int
            init(value: Int) { self.value = value }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.singleValueContainer()
                try c.encode(value * (encoder.userInfo[Scaled.scale] as? Int ?? 1))
            }
            init(from decoder: any Decoder) throws {
                value = try decoder.singleValueContainer().decode(Int.self) / (decoder.userInfo[Scaled.scale] as? Int ?? 1)
            }
        }
        var encoder = JSONValueEncoder()
        encoder.userInfo[Scaled.scale] = 10
        var decoder = JSONValueDecoder()
        decoder.userInfo[Scaled.scale] = 2
        let json = try encoder.encode(["v": [Scaled(value: 4)]])
        #expect(json == .object(JSONObject([("v", .array([40]))])))
        #expect(try decoder.decode([String: [Scaled]].self, from: json)["v"]?.first?.value == 20)
    }
}

private struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
