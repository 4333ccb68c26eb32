// The YAML layer: libyaml's event parser turned into a small node tree with source marks.
//
// Only what the spec loader needs: one document per file, scalars resolved by the YAML 1.2 core schema,
// aliases expanded (with their expanded size counted against a node limit, so a "billion laughs" document
// is refused early), duplicate keys refused, and every libyaml complaint turned into a `YAMLError` with a
// 1-based line:column.

import CYAML

/// A position in a source file, 1-based.
public struct SourceMark: Sendable, Hashable, CustomStringConvertible {
    /// The line number, starting at 1.
    public var line: Int
    /// The column, starting at 1, counted in Unicode scalars (as libyaml counts).
    public var column: Int

    /// Creates a mark at `line`:`column`, both 1-based.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    /// The mark as `line:column`.
    public var description: String { "\(line):\(column)" }
}

/// One node of a parsed YAML document, with where it starts.
public struct YAMLNode: Sendable {
    /// What a node holds: a scalar's text, or the items of a collection in source order.
    public enum Content: Sendable {
        /// A scalar's text; `plain` is true when it was written unquoted (only plain scalars are resolved).
        case scalar(String, plain: Bool)
        /// A sequence's items.
        case sequence([YAMLNode])
        /// A mapping's key/value pairs, in source order (keys are scalars and unique).
        case mapping([YAMLPair])
    }

    /// The node's content.
    public var content: Content
    /// Where the node starts (for a node reached through an alias: where the anchored node starts).
    public var mark: SourceMark
    /// The explicit tag if any, shortened to `!!name` for the `tag:yaml.org,2002:` namespace (e.g. `!!str`).
    public var tag: String?

    /// Creates a node.
    public init(_ content: Content, mark: SourceMark, tag: String? = nil) {
        self.content = content
        self.mark = mark
        self.tag = tag
    }
}

/// One entry of a mapping.
public struct YAMLPair: Sendable {
    /// The key (always a scalar node).
    public var key: YAMLNode
    /// The value.
    public var value: YAMLNode

    /// Creates a pair.
    public init(key: YAMLNode, value: YAMLNode) {
        self.key = key
        self.value = value
    }
}

/// A value resolved from a node by the YAML 1.2 core schema (plain scalars only; quoted scalars are strings).
public enum YAMLScalar: Sendable, Equatable {
    /// `null`, `Null`, `NULL`, `~` or nothing at all.
    case null
    /// `true` / `false` (also capitalised or all upper case).
    case bool(Bool)
    /// A decimal integer with optional sign, `0x…` hexadecimal or `0o…` octal.
    case int(Int)
    /// A float, `.inf`, `-.inf` or `.nan` (also a decimal integer too large for `Int`).
    case double(Double)
    /// Anything else, any quoted scalar, and any scalar tagged `!!str` or `!`.
    case string(String)
}

extension YAMLNode {
    /// The node's value by the core schema, or nil for a collection.
    ///
    /// Quoted scalars and scalars tagged `!!str` or `!` are strings; a `!!null`, `!!bool`, `!!int` or `!!float`
    /// tag makes even a quoted scalar resolve by the core schema; other tags do not change resolution.
    public var scalar: YAMLScalar? {
        guard case .scalar(let text, let plain) = content else { return nil }
        switch tag {
        case "!!str", "!":
            return .string(text)
        case "!!null", "!!bool", "!!int", "!!float":
            return YAMLScalar.resolve(text)
        default:
            return plain ? YAMLScalar.resolve(text) : .string(text)
        }
    }
}

extension YAMLScalar {
    /// Resolves the text of a plain scalar by the YAML 1.2 core schema.
    static func resolve(_ text: String) -> YAMLScalar {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        default: break
        }
        let u = Array(text.utf8)
        func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        func isHex(_ c: UInt8) -> Bool { isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46) }
        func isOctal(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x37 }

        // 0x[0-9a-fA-F]+ and 0o[0-7]+ (no sign, as in the core schema).
        if u.count > 2, u[0] == 0x30, u[1] == 0x78, u[2...].allSatisfy(isHex) {
            return Int(text.dropFirst(2), radix: 16).map(YAMLScalar.int) ?? .string(text)
        }
        if u.count > 2, u[0] == 0x30, u[1] == 0x6F, u[2...].allSatisfy(isOctal) {
            return Int(text.dropFirst(2), radix: 8).map(YAMLScalar.int) ?? .string(text)
        }

        var i = 0
        if i < u.count, u[i] == 0x2B || u[i] == 0x2D { i += 1 }  // + -
        // [-+]?[0-9]+
        let digitsStart = i
        while i < u.count, isDigit(u[i]) { i += 1 }
        let intDigits = i - digitsStart
        if intDigits > 0, i == u.count {
            if let n = Int(text) { return .int(n) }
            return Double(text).map(YAMLScalar.double) ?? .string(text)
        }
        // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
        var fracDigits = 0
        if i < u.count, u[i] == 0x2E {  // .
            i += 1
            let s = i
            while i < u.count, isDigit(u[i]) { i += 1 }
            fracDigits = i - s
            if intDigits == 0 && fracDigits == 0 { return .string(text) }
        } else if intDigits == 0 {
            return .string(text)
        }
        if i < u.count, u[i] == 0x65 || u[i] == 0x45 {  // e E
            i += 1
            if i < u.count, u[i] == 0x2B || u[i] == 0x2D { i += 1 }
            let s = i
            while i < u.count, isDigit(u[i]) { i += 1 }
            if i == s { return .string(text) }
        }
        guard i == u.count else { return .string(text) }
        return Double(text).map(YAMLScalar.double) ?? .string(text)
    }
}

/// A YAML syntax error or a refused document, with where it was found.
public struct YAMLError: Error, Sendable, CustomStringConvertible {
    /// Where the problem is.
    public var mark: SourceMark
    /// What the problem is, readable on its own.
    public var message: String

    /// Creates an error.
    public init(mark: SourceMark, message: String) {
        self.mark = mark
        self.message = message
    }

    /// The error as `line:col: message`.
    public var description: String { "\(mark): \(message)" }
}

/// Bounds on what a document may cost to parse.
public struct YAMLLimits: Sendable {
    /// The most nodes (scalars and collections, keys included) the document may expand to, aliases expanded.
    public var maxNodes = 100_000
    /// The deepest nesting allowed; the root node is at depth 1.
    public var maxDepth = 64
    /// The largest input accepted, in UTF-8 bytes.
    public var maxBytes = 4 << 20

    /// Creates the default limits.
    public init() {}

    /// Creates limits, each defaulting to the standard value.
    public init(maxNodes: Int = 100_000, maxDepth: Int = 64, maxBytes: Int = 4 << 20) {
        self.maxNodes = maxNodes
        self.maxDepth = maxDepth
        self.maxBytes = maxBytes
    }
}

/// Parses one YAML document into a `YAMLNode` tree.
public enum YAMLDocument {
    /// Parses `text`, which must hold at most one document; returns nil for an empty stream.
    public static func parse(_ text: String, limits: YAMLLimits = .init()) throws(YAMLError) -> YAMLNode? {
        var text = text
        let size = text.utf8.count
        if size > limits.maxBytes {
            throw YAMLError(
                mark: SourceMark(line: 1, column: 1),
                message: "input is \(size) bytes, more than the limit of \(limits.maxBytes)")
        }
        if size == 0 { return nil }
        // The buffer handed to libyaml must outlive the parser: everything happens inside this closure.
        let result: Result<YAMLNode?, YAMLError> = text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return .success(nil) }
            return Result { () throws(YAMLError) -> YAMLNode? in
                try parseBytes(base, count: bytes.count, limits: limits)
            }
        }
        return try result.get()
    }

    private static func parseBytes(
        _ base: UnsafePointer<UInt8>, count: Int, limits: YAMLLimits
    ) throws(YAMLError) -> YAMLNode? {
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        defer { parser.deallocate() }
        guard yaml_parser_initialize(parser) != 0 else {
            throw YAMLError(mark: SourceMark(line: 1, column: 1), message: "could not initialise the YAML parser")
        }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_input_string(parser, base, count)

        let event = UnsafeMutablePointer<yaml_event_t>.allocate(capacity: 1)
        defer { event.deallocate() }

        var builder = TreeBuilder(limits: limits)
        while true {
            guard yaml_parser_parse(parser, event) != 0 else {
                // On failure libyaml leaves the event zeroed; nothing to delete.
                throw parserError(parser.pointee, input: UnsafeBufferPointer(start: base, count: count))
            }
            defer { yaml_event_delete(event) }
            if event.pointee.type == YAML_NO_EVENT {
                // libyaml answers with no event after the end or an error; never loop on it.
                if parser.pointee.error != YAML_NO_ERROR {
                    throw parserError(parser.pointee, input: UnsafeBufferPointer(start: base, count: count))
                }
                break
            }
            if try builder.handle(event.pointee) { break }
        }
        return builder.root
    }

    /// Turns libyaml's error state into a `YAMLError`.
    private static func parserError(_ p: yaml_parser_t, input: UnsafeBufferPointer<UInt8>) -> YAMLError {
        let problem = p.problem.map { String(cString: $0) } ?? "unknown YAML error"
        switch p.error {
        case YAML_MEMORY_ERROR:
            return YAMLError(mark: SourceMark(line: 1, column: 1), message: "out of memory while parsing YAML")
        case YAML_READER_ERROR:
            // Reader errors carry a byte offset, not a mark.
            let mark = markForByteOffset(p.problem_offset, in: input)
            var message = problem
            if p.problem_value != -1 {
                let v = UInt32(truncatingIfNeeded: p.problem_value)
                let hex = String(v, radix: 16, uppercase: true)
                if problem.contains("octet") {
                    message += " (byte 0x\(hex.count < 2 ? "0" + hex : hex))"
                } else {
                    message += " (U+\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex))"
                }
            }
            return YAMLError(mark: mark, message: message)
        default:
            let mark = clamp(sourceMark(p.problem_mark), to: input)
            var message = problem
            if let context = p.context.map({ String(cString: $0) }) {
                let contextMark = clamp(sourceMark(p.context_mark), to: input)
                if contextMark == mark {
                    message += " (\(context))"
                } else {
                    message += " (\(context) that started at \(contextMark))"
                }
            }
            return YAMLError(mark: mark, message: message)
        }
    }

    /// The 1-based mark of a byte offset (the end of the input if `offset` is past it), counting columns in
    /// Unicode scalars, line breaks as libyaml does (LF, CR, CR LF, NEL, LS, PS), and skipping a leading BOM.
    private static func markForByteOffset(_ offset: Int, in input: UnsafeBufferPointer<UInt8>) -> SourceMark {
        var line = 1
        var column = 1
        var i = 0
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF { i = 3 }
        let end = min(offset, input.count)
        func at(_ j: Int) -> UInt8 { j < input.count ? input[j] : 0 }
        while i < end {
            let c = input[i]
            var breakWidth = 0
            if c == 0x0A {
                breakWidth = 1
            } else if c == 0x0D {
                breakWidth = at(i + 1) == 0x0A ? 2 : 1
            } else if c == 0xC2, at(i + 1) == 0x85 {
                breakWidth = 2
            } else if c == 0xE2, at(i + 1) == 0x80, at(i + 2) == 0xA8 || at(i + 2) == 0xA9 {
                breakWidth = 3
            }
            if breakWidth > 0 {
                line += 1
                column = 1
                i += breakWidth
            } else {
                if c & 0xC0 != 0x80 { column += 1 }
                i += 1
            }
        }
        return SourceMark(line: line, column: column)
    }

    /// libyaml reports errors at the end of the stream on a line after the last one; keep marks inside the file.
    private static func clamp(_ mark: SourceMark, to input: UnsafeBufferPointer<UInt8>) -> SourceMark {
        let end = markForByteOffset(input.count, in: input)
        if mark.line > end.line || (mark.line == end.line && mark.column > end.column) { return end }
        return mark
    }
}

/// libyaml marks are 0-based.
private func sourceMark(_ m: yaml_mark_t) -> SourceMark {
    SourceMark(line: Int(m.line) + 1, column: Int(m.column) + 1)
}

private func string(_ p: UnsafePointer<UInt8>?) -> String? {
    p.map { String(cString: $0) }
}

/// libyaml resolves `!!x` to `tag:yaml.org,2002:x`; give it back in the short form.
private func shortTag(_ p: UnsafePointer<UInt8>?) -> String? {
    guard let tag = string(p) else { return nil }
    let prefix = "tag:yaml.org,2002:"
    if tag.hasPrefix(prefix) { return "!!" + tag.dropFirst(prefix.count) }
    return tag
}

/// A completed node with its cost: nodes reachable from it (aliases expanded) and its height.
private struct Built {
    var node: YAMLNode
    var size: Int
    var height: Int
}

/// A collection whose end event has not come yet.
private struct OpenCollection {
    var isMapping: Bool
    var mark: SourceMark
    var tag: String?
    var anchor: String?
    var items: [YAMLNode] = []
    var pairs: [YAMLPair] = []
    var pendingKey: YAMLNode?
    /// Resolved identity of each key seen so far → where it was.
    var keys: [String: SourceMark] = [:]
    var size = 1
    var height = 1
}

/// Builds the tree from events with an explicit stack (no recursion on input depth).
private struct TreeBuilder {
    let limits: YAMLLimits
    var stack: [OpenCollection] = []
    var anchors: [String: Built] = [:]
    var total = 0
    var documents = 0
    var root: YAMLNode?

    init(limits: YAMLLimits) {
        self.limits = limits
    }

    /// Handles one event; returns true at the end of the stream.
    mutating func handle(_ event: yaml_event_t) throws(YAMLError) -> Bool {
        let mark = sourceMark(event.start_mark)
        switch event.type {
        case YAML_STREAM_START_EVENT, YAML_DOCUMENT_END_EVENT:
            return false
        case YAML_STREAM_END_EVENT:
            return true
        case YAML_DOCUMENT_START_EVENT:
            documents += 1
            if documents > 1 {
                throw YAMLError(mark: mark, message: "only one YAML document per file")
            }
            return false

        case YAML_ALIAS_EVENT:
            let name = string(event.data.alias.anchor) ?? ""
            guard let target = anchors[name] else {
                if stack.contains(where: { $0.anchor == name }) {
                    throw YAMLError(mark: mark, message: "alias '*\(name)' refers to a node that contains it")
                }
                throw YAMLError(mark: mark, message: "unknown alias '*\(name)' (no earlier anchor '&\(name)')")
            }
            try checkKeyPosition(isScalar: isScalar(target.node), mark: mark)
            if stack.count + target.height > limits.maxDepth {
                throw YAMLError(
                    mark: mark, message: "document nests deeper than \(limits.maxDepth) levels (alias expansion)")
            }
            total += target.size
            if total > limits.maxNodes {
                throw YAMLError(
                    mark: mark, message: "document expands to more than \(limits.maxNodes) nodes (alias expansion)")
            }
            try add(target, at: mark)
            return false

        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            try count(at: mark)
            let text = s.value.map {
                String(decoding: UnsafeBufferPointer(start: $0, count: Int(s.length)), as: UTF8.self)
            } ?? ""
            let node = YAMLNode(
                .scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE), mark: mark, tag: shortTag(s.tag))
            let built = Built(node: node, size: 1, height: 1)
            if let anchor = string(s.anchor) { anchors[anchor] = built }
            try add(built, at: mark)
            return false

        case YAML_SEQUENCE_START_EVENT:
            let s = event.data.sequence_start
            try open(isMapping: false, anchor: string(s.anchor), tag: shortTag(s.tag), mark: mark)
            return false
        case YAML_MAPPING_START_EVENT:
            let s = event.data.mapping_start
            try open(isMapping: true, anchor: string(s.anchor), tag: shortTag(s.tag), mark: mark)
            return false

        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            guard let top = stack.popLast() else {
                throw YAMLError(mark: mark, message: "unbalanced end of collection")
            }
            let content: YAMLNode.Content = top.isMapping ? .mapping(top.pairs) : .sequence(top.items)
            let built = Built(node: YAMLNode(content, mark: top.mark, tag: top.tag), size: top.size, height: top.height)
            if let anchor = top.anchor { anchors[anchor] = built }
            try add(built, at: top.mark)
            return false

        default:
            throw YAMLError(mark: mark, message: "unexpected YAML event")
        }
    }

    private func isScalar(_ node: YAMLNode) -> Bool {
        if case .scalar = node.content { return true }
        return false
    }

    /// A collection may not stand where a mapping expects a key.
    private func checkKeyPosition(isScalar: Bool, mark: SourceMark) throws(YAMLError) {
        if !isScalar, let top = stack.last, top.isMapping, top.pendingKey == nil {
            throw YAMLError(mark: mark, message: "mapping keys must be scalars")
        }
    }

    /// Counts one new node and checks depth and size.
    private mutating func count(at mark: SourceMark) throws(YAMLError) {
        if stack.count + 1 > limits.maxDepth {
            throw YAMLError(mark: mark, message: "document nests deeper than \(limits.maxDepth) levels")
        }
        total += 1
        if total > limits.maxNodes {
            throw YAMLError(mark: mark, message: "document has more than \(limits.maxNodes) nodes")
        }
    }

    private mutating func open(isMapping: Bool, anchor: String?, tag: String?, mark: SourceMark) throws(YAMLError) {
        try checkKeyPosition(isScalar: false, mark: mark)
        try count(at: mark)
        stack.append(OpenCollection(isMapping: isMapping, mark: mark, tag: tag, anchor: anchor))
    }

    /// Attaches a completed node to the open collection, or makes it the root.
    private mutating func add(_ built: Built, at mark: SourceMark) throws(YAMLError) {
        guard !stack.isEmpty else {
            root = built.node
            return
        }
        let i = stack.count - 1
        stack[i].size += built.size
        stack[i].height = max(stack[i].height, built.height + 1)
        if !stack[i].isMapping {
            stack[i].items.append(built.node)
            return
        }
        if let key = stack[i].pendingKey {
            stack[i].pairs.append(YAMLPair(key: key, value: built.node))
            stack[i].pendingKey = nil
            return
        }
        guard case .scalar(let text, _) = built.node.content, let value = built.node.scalar else {
            throw YAMLError(mark: mark, message: "mapping keys must be scalars")
        }
        let identity: String
        switch value {
        case .null: identity = "n"
        case .bool(let b): identity = b ? "b1" : "b0"
        case .int(let n): identity = "i\(n)"
        case .double(let d): identity = "d\(d)"
        case .string(let s): identity = "s" + s
        }
        if let first = stack[i].keys[identity] {
            throw YAMLError(mark: mark, message: "duplicate key '\(text)' (first at \(first))")
        }
        stack[i].keys[identity] = mark
        stack[i].pendingKey = built.node
    }
}
