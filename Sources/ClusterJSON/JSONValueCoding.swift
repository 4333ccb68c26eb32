// Codable on top of JSONValue, without Foundation: JSONValueEncoder turns an Encodable into a JSONValue and
// JSONValueDecoder turns a JSONValue back into a Decodable. They follow JSONEncoder's and JSONDecoder's rules
// wherever those apply (omitted nil optionals, "1" keys for Int-keyed dictionaries, "super" for superEncoder(),
// the kinds of DecodingError and their coding paths), and add one of their own: a number must be exactly a
// Double, as every JSONValue number is.

// MARK: - Public API

/// Encodes `Encodable` values as `JSONValue`s; objects keep their keys in the order they were encoded.
public struct JSONValueEncoder: Sendable {
    /// Values the encoded types can read through `Encoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// An encoder with an empty `userInfo`.
    public init() {}

    /// The JSON value of `value`; `EncodingError.invalidValue` for a number JSON cannot hold exactly.
    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        if let json = try primitiveJSON(value, at: []) { return json }
        let encoder = ValueEncoder(codingPath: [], userInfo: userInfo)
        try value.encode(to: encoder)
        guard let result = encoder.result else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: [], debugDescription: "Top-level \(T.self) did not encode any values."))
        }
        return result.json
    }
}

/// Decodes `Decodable` values from `JSONValue`s, throwing `DecodingError`s with JSONDecoder's kinds and paths.
public struct JSONValueDecoder: Sendable {
    /// Values the decoded types can read through `Decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// A decoder with an empty `userInfo`.
    public init() {}

    /// `value` decoded as a `type`.
    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        try ValueDecoder(value: value, codingPath: [], userInfo: userInfo).unwrap(T.self, from: value, at: [])
    }
}

extension JSONValue {
    /// The JSON value of `value`, as `JSONValueEncoder().encode(value)` makes it.
    public init<T: Encodable>(encoding value: T) throws {
        self = try JSONValueEncoder().encode(value)
    }

    /// This value decoded as a `type`, as `JSONValueDecoder().decode(type, from: self)` decodes it.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONValueDecoder().decode(type, from: self)
    }
}

extension JSONValue: Codable {
    /// Encodes null and scalars through a single-value container, arrays through an unkeyed and objects
    /// through a keyed container (members in order), so any encoder can hold a JSONValue.
    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .null:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .bool(let b):
            var container = encoder.singleValueContainer()
            try container.encode(b)
        case .number(let d):
            var container = encoder.singleValueContainer()
            try container.encode(d)
        case .string(let s):
            var container = encoder.singleValueContainer()
            try container.encode(s)
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        case .object(let object):
            var container = encoder.container(keyedBy: JSONCodingKey.self)
            for member in object.members { try container.encode(member.value, forKey: JSONCodingKey(stringValue: member.key)) }
        }
    }

    /// Decodes whatever the decoder holds: null, a Boolean, number or string, an object (members in the
    /// decoder's key order) or an array.
    public init(from decoder: any Decoder) throws {
        // JSONValueDecoder hands its value over whole (see `unwrap`); this is the way for other decoders, and
        // the order matters for them only in that scalars are tried first, as they are the most common.
        if let single = try? decoder.singleValueContainer() {
            if single.decodeNil() { self = .null; return }
            if let b = try? single.decode(Bool.self) { self = .bool(b); return }
            if let d = try? single.decode(Double.self) { self = .number(d); return }
            if let s = try? single.decode(String.self) { self = .string(s); return }
        }
        if let keyed = try? decoder.container(keyedBy: JSONCodingKey.self) {
            var members: [(String, JSONValue)] = []
            for key in keyed.allKeys { members.append((key.stringValue, try keyed.decode(JSONValue.self, forKey: key))) }
            self = .object(JSONObject(members))
            return
        }
        if var unkeyed = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            if let count = unkeyed.count { items.reserveCapacity(count) }
            while !unkeyed.isAtEnd { items.append(try unkeyed.decode(JSONValue.self)) }
            self = .array(items)
            return
        }
        throw DecodingError.dataCorrupted(
            .init(codingPath: decoder.codingPath, debugDescription: "Expected a JSON value but found none."))
    }
}

// MARK: - Keys

/// The coding key of an object member, an array position (as JSONDecoder names them: "Index 2") or `super`.
private struct JSONCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        self.intValue = nil
    }

    init(intValue: Int) {
        self.stringValue = String(intValue)
        self.intValue = intValue
    }

    init(index: Int) {
        self.stringValue = "Index \(index)"
        self.intValue = index
    }

    static let superKey = JSONCodingKey(stringValue: "super")
}

// MARK: - Encoding

/// A value being encoded. Containers are references because an encoder hands them out and keeps writing
/// into them after they are stored in their parent; `json` turns the finished tree into a JSONValue.
private enum PendingValue {
    case value(JSONValue)
    case array(ArrayBuffer)
    case object(ObjectBuffer)
    /// A superEncoder's: filled in after the container holding it hands it out.
    case encoder(ValueEncoder)

    var json: JSONValue {
        switch self {
        case .value(let value): value
        case .array(let buffer): .array(buffer.items.map(\.json))
        case .object(let buffer): .object(buffer.json)
        // An encoder nothing was encoded into stands for an empty object, as with JSONEncoder.
        case .encoder(let encoder): encoder.result?.json ?? .object(JSONObject())
        }
    }
}

/// The items of an unkeyed container.
private final class ArrayBuffer {
    var items: [PendingValue] = []
}

/// The members of a keyed container, in the order their keys were first encoded.
private final class ObjectBuffer {
    private(set) var keys: [String] = []
    private var values: [PendingValue] = []
    // Key → position, built once an object is big enough (a large dictionary) that scanning the keys for
    // each new one would make encoding quadratic; small objects, most structs, scan faster than they hash.
    private var positions: [String: Int]?
    private static let indexedCount = 16

    subscript(key: String) -> PendingValue? {
        position(of: key).map { values[$0] }
    }

    private func position(of key: String) -> Int? {
        if let positions { return positions[key] }
        return keys.firstIndex(of: key)
    }

    /// Sets the member `key`: a key encoded again keeps its first place, as JSONObject's subscript does.
    func set(_ value: PendingValue, for key: String) {
        if let i = position(of: key) {
            values[i] = value
            return
        }
        keys.append(key)
        values.append(value)
        if positions != nil {
            positions![key] = keys.count - 1
        } else if keys.count >= ObjectBuffer.indexedCount {
            positions = Dictionary(uniqueKeysWithValues: zip(keys, keys.indices))
        }
    }

    var json: JSONObject {
        var members: [(String, JSONValue)] = []
        members.reserveCapacity(keys.count)
        for i in keys.indices { members.append((keys[i], values[i].json)) }
        return JSONObject(members)
    }
}

/// The JSON of the types every container takes directly, or nil for any other type. Checking the type first
/// keeps arrays of numbers and strings, and free-form JSONValue fields, off the generic Encodable path.
private func primitiveJSON<T: Encodable>(_ value: T, at path: @autoclosure () -> [any CodingKey]) throws(EncodingError)
    -> JSONValue?
{
    if T.self == JSONValue.self { return (value as! JSONValue) }
    if T.self == String.self { return .string(value as! String) }
    if T.self == Bool.self { return .bool(value as! Bool) }
    if T.self == Int.self { return try jsonNumber(value as! Int, at: path()) }
    if T.self == Double.self { return try jsonNumber(value as! Double, at: path()) }
    return nil
}

/// A Double as a JSON number: JSON has no NaN or infinities.
private func jsonNumber(_ value: Double, at path: @autoclosure () -> [any CodingKey]) throws(EncodingError) -> JSONValue {
    guard value.isFinite else {
        throw .invalidValue(
            value, .init(codingPath: path(), debugDescription: "Cannot encode Double \(value): JSON numbers are finite."))
    }
    return .number(value)
}

/// A Float as a JSON number: its shortest decimal form (0.1, not 0.10000000149011612, as JSONEncoder writes
/// it) when that reads back as the same Float, which it all but always does; the exact widening otherwise.
private func jsonNumber(_ value: Float, at path: @autoclosure () -> [any CodingKey]) throws(EncodingError) -> JSONValue {
    guard value.isFinite else {
        throw .invalidValue(
            value, .init(codingPath: path(), debugDescription: "Cannot encode Float \(value): JSON numbers are finite."))
    }
    if let shortest = Double(value.description), Float(shortest) == value { return .number(shortest) }
    return .number(Double(value))
}

/// An integer as a JSON number, when a Double holds it exactly (so it decodes back to itself): a wider one
/// (beyond 2^53 and not a multiple of a high enough power of two) would be silently rounded.
private func jsonNumber<I: BinaryInteger>(_ value: I, at path: @autoclosure () -> [any CodingKey]) throws(EncodingError)
    -> JSONValue
{
    guard let d = Double(exactly: value) else {
        throw .invalidValue(
            value,
            .init(
                codingPath: path(),
                debugDescription: "Cannot encode \(I.self) \(value): a JSON number (a Double) cannot hold it exactly."))
    }
    return .number(d)
}

/// The Encoder JSONValueEncoder hands to `encode(to:)`; it is its own single-value container.
private final class ValueEncoder: Encoder, SingleValueEncodingContainer {
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: Any]
    /// What was encoded here: nil until a container or a value is asked for.
    var result: PendingValue?

    init(codingPath: [any CodingKey], userInfo: [CodingUserInfoKey: Any]) {
        self.codingPath = codingPath
        self.userInfo = userInfo
    }

    /// The value that `value` encodes to at `path`.
    func wrap<T: Encodable>(_ value: T, at path: @autoclosure () -> [any CodingKey]) throws -> PendingValue {
        if let json = try primitiveJSON(value, at: path()) { return .value(json) }
        let encoder = ValueEncoder(codingPath: path(), userInfo: userInfo)
        try value.encode(to: encoder)
        // A value that encoded nothing is an empty object, as with JSONEncoder.
        return encoder.result ?? .object(ObjectBuffer())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let buffer: ObjectBuffer
        switch result {
        case nil:
            buffer = ObjectBuffer()
            result = .object(buffer)
        case .object(let existing)?:
            // A subclass and its superclass may both ask the same encoder for a keyed container: one object.
            buffer = existing
        default:
            preconditionFailure("A keyed container was asked for at \(codingPath.pathText) after a value or an array was encoded there.")
        }
        return KeyedEncodingContainer(KeyedValueEncodingContainer(encoder: self, buffer: buffer, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let buffer: ArrayBuffer
        switch result {
        case nil:
            buffer = ArrayBuffer()
            result = .array(buffer)
        case .array(let existing)?:
            buffer = existing
        default:
            preconditionFailure("An unkeyed container was asked for at \(codingPath.pathText) after a value or an object was encoded there.")
        }
        return UnkeyedValueEncodingContainer(encoder: self, buffer: buffer, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { self }

    private func store(_ value: @autoclosure () throws -> PendingValue) rethrows {
        guard result == nil else {
            preconditionFailure("A second value was encoded at \(codingPath.pathText) through a single-value container.")
        }
        result = try value()
    }

    func encodeNil() throws { store(.value(.null)) }
    func encode(_ value: Bool) throws { store(.value(.bool(value))) }
    func encode(_ value: String) throws { store(.value(.string(value))) }
    func encode(_ value: Double) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Float) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int8) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int16) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int32) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int64) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: Int128) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt8) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt16) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt32) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt64) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode(_ value: UInt128) throws { try store(.value(jsonNumber(value, at: codingPath))) }
    func encode<T: Encodable>(_ value: T) throws { try store(wrap(value, at: codingPath)) }
}

private struct KeyedValueEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: ValueEncoder
    let buffer: ObjectBuffer
    let codingPath: [any CodingKey]

    private func path(_ key: some CodingKey) -> [any CodingKey] { codingPath + [key] }

    private func set(_ json: JSONValue, _ key: Key) { buffer.set(.value(json), for: key.stringValue) }

    mutating func encodeNil(forKey key: Key) throws { set(.null, key) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { set(.bool(value), key) }
    mutating func encode(_ value: String, forKey key: Key) throws { set(.string(value), key) }
    mutating func encode(_ value: Double, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { set(try jsonNumber(value, at: path(key)), key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        buffer.set(try encoder.wrap(value, at: path(key)), for: key.stringValue)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested: ObjectBuffer
        if case .object(let existing)? = buffer[key.stringValue] {
            nested = existing
        } else {
            nested = ObjectBuffer()
            buffer.set(.object(nested), for: key.stringValue)
        }
        return KeyedEncodingContainer(
            KeyedValueEncodingContainer<NestedKey>(encoder: encoder, buffer: nested, codingPath: path(key)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested: ArrayBuffer
        if case .array(let existing)? = buffer[key.stringValue] {
            nested = existing
        } else {
            nested = ArrayBuffer()
            buffer.set(.array(nested), for: key.stringValue)
        }
        return UnkeyedValueEncodingContainer(encoder: encoder, buffer: nested, codingPath: path(key))
    }

    mutating func superEncoder() -> any Encoder { superEncoder(at: JSONCodingKey.superKey) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(at: key) }

    private func superEncoder(at key: some CodingKey) -> any Encoder {
        let sub = ValueEncoder(codingPath: path(key), userInfo: encoder.userInfo)
        buffer.set(.encoder(sub), for: key.stringValue)
        return sub
    }
}

private struct UnkeyedValueEncodingContainer: UnkeyedEncodingContainer {
    let encoder: ValueEncoder
    let buffer: ArrayBuffer
    let codingPath: [any CodingKey]

    var count: Int { buffer.items.count }

    /// The path of the item appended next.
    private var nextPath: [any CodingKey] { codingPath + [JSONCodingKey(index: count)] }

    private func append(_ json: JSONValue) { buffer.items.append(.value(json)) }

    mutating func encodeNil() throws { append(.null) }
    mutating func encode(_ value: Bool) throws { append(.bool(value)) }
    mutating func encode(_ value: String) throws { append(.string(value)) }
    mutating func encode(_ value: Double) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Float) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int8) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int16) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int32) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int64) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: Int128) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt8) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt16) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt32) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt64) throws { append(try jsonNumber(value, at: nextPath)) }
    mutating func encode(_ value: UInt128) throws { append(try jsonNumber(value, at: nextPath)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        buffer.items.append(try encoder.wrap(value, at: nextPath))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        let nested = ObjectBuffer()
        let path = nextPath
        buffer.items.append(.object(nested))
        return KeyedEncodingContainer(KeyedValueEncodingContainer<NestedKey>(encoder: encoder, buffer: nested, codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = ArrayBuffer()
        let path = nextPath
        buffer.items.append(.array(nested))
        return UnkeyedValueEncodingContainer(encoder: encoder, buffer: nested, codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let sub = ValueEncoder(codingPath: nextPath, userInfo: encoder.userInfo)
        buffer.items.append(.encoder(sub))
        return sub
    }
}

// MARK: - Decoding

/// How a JSON value reads in an error message.
private func describe(_ value: JSONValue) -> String {
    switch value {
    case .null: "null"
    case .bool(let b): "the Boolean \(b)"
    case .number: "the number \(value.jsonText)"
    case .string: "a string"
    case .array: "an array"
    case .object: "an object"
    }
}

/// The error for a value of the wrong JSON type: null is a missing value (valueNotFound), as JSONDecoder has it.
private func mismatch(_ type: Any.Type, expected: String, found value: JSONValue, at path: [any CodingKey])
    -> DecodingError
{
    if case .null = value {
        return .valueNotFound(type, .init(codingPath: path, debugDescription: "Expected \(expected) but found null instead."))
    }
    return .typeMismatch(type, .init(codingPath: path, debugDescription: "Expected \(expected) but found \(describe(value)) instead."))
}

private func unboxBool(_ value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws(DecodingError) -> Bool {
    guard case .bool(let b) = value else { throw mismatch(Bool.self, expected: "to decode Bool", found: value, at: path()) }
    return b
}

private func unboxString(_ value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws(DecodingError) -> String {
    guard case .string(let s) = value else { throw mismatch(String.self, expected: "to decode String", found: value, at: path()) }
    return s
}

private func unboxDouble(_ value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws(DecodingError) -> Double {
    guard case .number(let d) = value else { throw mismatch(Double.self, expected: "to decode Double", found: value, at: path()) }
    return d
}

/// The nearest Float: only a number beyond Float's range is refused, as JSONDecoder does.
private func unboxFloat(_ value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws(DecodingError) -> Float {
    guard case .number(let d) = value else { throw mismatch(Float.self, expected: "to decode Float", found: value, at: path()) }
    let f = Float(d)
    guard f.isFinite || !d.isFinite else {
        throw .dataCorrupted(
            .init(codingPath: path(), debugDescription: "Expected to decode Float but found the number \(value.jsonText), which is out of its range."))
    }
    return f
}

/// An integer only from a number that is exactly one and within the type's range.
private func unboxInteger<I: FixedWidthInteger>(_ value: JSONValue, as type: I.Type, at path: @autoclosure () -> [any CodingKey])
    throws(DecodingError) -> I
{
    guard case .number(let d) = value else { throw mismatch(I.self, expected: "to decode \(I.self)", found: value, at: path()) }
    if let i = I(exactly: d) { return i }
    let reason = d.isFinite && d.rounded(.towardZero) == d ? "which is out of its range" : "which is not an integer"
    throw .dataCorrupted(
        .init(codingPath: path(), debugDescription: "Expected to decode \(I.self) but found the number \(value.jsonText), \(reason)."))
}

/// The Decoder JSONValueDecoder hands to `init(from:)`; it is its own single-value container.
private struct ValueDecoder: Decoder, SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]
    let userInfo: [CodingUserInfoKey: Any]

    /// `value` decoded as a `type` at `path`. Checking the type first keeps arrays of numbers and strings, and
    /// free-form JSONValue fields, off the generic Decodable path.
    func unwrap<T: Decodable>(_ type: T.Type, from value: JSONValue, at path: @autoclosure () -> [any CodingKey]) throws -> T {
        if T.self == JSONValue.self { return value as! T }
        if T.self == String.self { return try unboxString(value, at: path()) as! T }
        if T.self == Int.self { return try unboxInteger(value, as: Int.self, at: path()) as! T }
        if T.self == Double.self { return try unboxDouble(value, at: path()) as! T }
        if T.self == Bool.self { return try unboxBool(value, at: path()) as! T }
        return try T(from: ValueDecoder(value: value, codingPath: path(), userInfo: userInfo))
    }

    /// A decoder for `value` below this one, at `path`.
    func child(_ value: JSONValue, at path: [any CodingKey]) -> ValueDecoder {
        ValueDecoder(value: value, codingPath: path, userInfo: userInfo)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else {
            throw mismatch(KeyedDecodingContainer<Key>.self, expected: "an object", found: value, at: codingPath)
        }
        return KeyedDecodingContainer(KeyedValueDecodingContainer<Key>(decoder: self, object: object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else {
            throw mismatch((any UnkeyedDecodingContainer).self, expected: "an array", found: value, at: codingPath)
        }
        return UnkeyedValueDecodingContainer(decoder: self, items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool {
        if case .null = value { return true }
        return false
    }

    func decode(_ type: Bool.Type) throws -> Bool { try unboxBool(value, at: codingPath) }
    func decode(_ type: String.Type) throws -> String { try unboxString(value, at: codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try unboxDouble(value, at: codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try unboxFloat(value, at: codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: Int128.Type) throws -> Int128 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try unboxInteger(value, as: type, at: codingPath) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try unboxInteger(value, as: type, at: codingPath) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try unwrap(type, from: value, at: codingPath) }
}

private struct KeyedValueDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ValueDecoder
    let object: JSONObject
    // Key → position for big objects: JSONObject's own lookup scans its members, which would make decoding a
    // type with many fields, or a large dictionary, quadratic. Small objects scan faster than they hash.
    private let positions: [String: Int]?

    init(decoder: ValueDecoder, object: JSONObject) {
        self.decoder = decoder
        self.object = object
        let members = object.members
        positions = members.count > 16
            ? Dictionary(zip(members.lazy.map(\.key), members.indices), uniquingKeysWith: { first, _ in first }) : nil
    }

    var codingPath: [any CodingKey] { decoder.codingPath }

    var allKeys: [Key] { object.members.compactMap { Key(stringValue: $0.key) } }

    private func lookup(_ name: String) -> JSONValue? {
        if let positions { return positions[name].map { object.members[$0].value } }
        return object.members.first(where: { $0.key == name })?.value
    }

    /// The member `key`; keyNotFound (at this container's path, as JSONDecoder has it) when it is absent.
    private func value(for key: Key) throws(DecodingError) -> JSONValue {
        guard let value = lookup(key.stringValue) else {
            throw .keyNotFound(
                key, .init(codingPath: codingPath, debugDescription: "No value associated with key \"\(key.stringValue)\"."))
        }
        return value
    }

    private func path(_ key: some CodingKey) -> [any CodingKey] { codingPath + [key] }

    func contains(_ key: Key) -> Bool { lookup(key.stringValue) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try value(for: key) { return true }
        return false
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try unboxBool(value(for: key), at: path(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try unboxString(value(for: key), at: path(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try unboxDouble(value(for: key), at: path(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try unboxFloat(value(for: key), at: path(key)) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try unboxInteger(value(for: key), as: type, at: path(key)) }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try unboxInteger(value(for: key), as: type, at: path(key)) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decoder.unwrap(type, from: value(for: key), at: path(key))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try decoder.child(value(for: key), at: path(key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try decoder.child(value(for: key), at: path(key)).unkeyedContainer()
    }

    // A missing super key decodes as null, so the superclass fails on its own first field, as with JSONDecoder.
    func superDecoder() throws -> any Decoder {
        decoder.child(lookup(JSONCodingKey.superKey.stringValue) ?? .null, at: path(JSONCodingKey.superKey))
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        decoder.child(lookup(key.stringValue) ?? .null, at: path(key))
    }
}

private struct UnkeyedValueDecodingContainer: UnkeyedDecodingContainer {
    let decoder: ValueDecoder
    let items: [JSONValue]
    private(set) var currentIndex = 0

    init(decoder: ValueDecoder, items: [JSONValue]) {
        self.decoder = decoder
        self.items = items
    }

    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    /// The path of the item decoded next.
    private var path: [any CodingKey] { codingPath + [JSONCodingKey(index: currentIndex)] }

    /// The next item, not yet consumed: the index moves only once an item has decoded, as with JSONDecoder,
    /// so a caller may try it as another type.
    private func peek(_ type: Any.Type) throws(DecodingError) -> JSONValue {
        guard currentIndex < items.count else {
            throw .valueNotFound(type, .init(codingPath: path, debugDescription: "Unkeyed container is at end."))
        }
        return items[currentIndex]
    }

    /// Returns `value` after moving past the item it was decoded from.
    private mutating func consumed<T>(_ value: T) -> T {
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard case .null = try peek(Any?.self) else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { consumed(try unboxBool(peek(type), at: path)) }
    mutating func decode(_ type: String.Type) throws -> String { consumed(try unboxString(peek(type), at: path)) }
    mutating func decode(_ type: Double.Type) throws -> Double { consumed(try unboxDouble(peek(type), at: path)) }
    mutating func decode(_ type: Float.Type) throws -> Float { consumed(try unboxFloat(peek(type), at: path)) }
    mutating func decode(_ type: Int.Type) throws -> Int { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { consumed(try unboxInteger(peek(type), as: type, at: path)) }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { consumed(try unboxInteger(peek(type), as: type, at: path)) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        consumed(try decoder.unwrap(type, from: peek(type), at: path))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        consumed(try decoder.child(peek(KeyedDecodingContainer<NestedKey>.self), at: path).container(keyedBy: type))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        consumed(try decoder.child(peek((any UnkeyedDecodingContainer).self), at: path).unkeyedContainer())
    }

    mutating func superDecoder() throws -> any Decoder {
        consumed(decoder.child(try peek((any Decoder).self), at: path))
    }
}

extension [any CodingKey] {
    /// The path as a precondition message names it: "items[1].id", or "the top level".
    fileprivate var pathText: String {
        if isEmpty { return "the top level" }
        var text = ""
        for key in self {
            if let index = key.intValue, key.stringValue.hasPrefix("Index ") {
                text += "[\(index)]"
            } else {
                text += text.isEmpty ? key.stringValue : "." + key.stringValue
            }
        }
        return text
    }
}
