/// Writes a `Spec` back as YAML in the format of `Specs/README.md`, such that the loader reads the text into an
/// equal spec (locations aside). Block style for the top-level keys and one line per step and expectation,
/// flow style inside them, every string double-quoted: no text can be re-read as another type.
public enum SpecEncoder {
    /// The YAML text of `spec`.
    public static func yaml(_ spec: Spec) -> String {
        var out = ""
        func line(_ key: String, _ value: Node) { out += "\(key): \(value.flow)\n" }
        line("id", .string(spec.id))
        line("description", .string(spec.description))
        line("refs", .list(spec.refs.map { .map([("doc", .string($0.doc)), ("anchor", .string($0.anchor))]) }))
        line("basis", .string(spec.basis.rawValue))
        if let quote = spec.quote { line("quote", .string(quote)) }
        if !spec.source.isEmpty { line("source", .list(spec.source.map(Node.string))) }
        line("behaviours", .list(spec.behaviours.map(Node.string)))
        line("features", .list(spec.features.map(Node.string)))
        if let from = spec.from { line("from", .string(from)) }
        if let comment = spec.comment { line("comment", .string(comment)) }
        line("timeout", .int(spec.timeout))
        if let range = spec.nodeVersions { line("nodeVersions", .string(range.description)) }
        let setup = setupEntries(spec.setup)
        if !setup.isEmpty {
            out += "setup:\n"
            for (key, value) in setup { out += "  \(key): \(value.flow)\n" }
        }
        out += "steps:\n"
        for step in spec.steps {
            var entries = [(step.name.rawValue, stepValue(step.kind))]
            if let code = step.expectError { entries.append(("expectError", .string(code))) }
            out += item(entries)
        }
        out += "expect:\n"
        for expectation in spec.expect { out += item(expectationEntries(expectation)) }
        return out
    }

    /// One item of a block sequence: a block mapping whose values are written in flow style.
    static func item(_ entries: [(String, Node)]) -> String {
        entries.enumerated().map { i, entry in "\(i == 0 ? "  - " : "    ")\(Node.key(entry.0)): \(entry.1.flow)\n" }.joined()
    }

    // MARK: - Setup, steps and expectations, as the decoder reads them

    static func setupEntries(_ s: Setup) -> [(String, Node)] {
        var e: [(String, Node)] = []
        if let policy = s.policy { e.append(("policy", .string(policy))) }
        if let platform = s.platform { e.append(("platform", .string(platform))) }
        if !s.env.isEmpty { e.append(("env", stringMap(s.env))) }
        if !s.ports.isEmpty { e.append(("ports", .list(s.ports.map(Node.string)))) }
        if !s.inherit.isEmpty {
            e.append(("inherit", .list(s.inherit.map { socket in
                var m: [(String, Node)] = [("fd", .int(Int(socket.fd))), (socket.transport.rawValue, .map([("host", .string(socket.host))]))]
                if let port = socket.portVariable { m.append(("port", .string(port))) }
                return .map(m)
            })))
        }
        if !s.dirs.isEmpty { e.append(("dirs", .list(s.dirs.map(Node.string)))) }
        if !s.payloads.isEmpty { e.append(("payloads", .map(s.payloads.map { ($0.name, .int($0.bytes)) }))) }
        if let user = s.user { e.append(("user", .string(user))) }
        return e
    }

    static func stepValue(_ kind: Step.Kind) -> Node {
        switch kind {
        case .fork(let count, let env):
            return .map([("count", .int(count))] + (env.isEmpty ? [] : [("env", stringMap(env))]))
        case .setupPrimary(let args, let silent, let exec, let cwd, let stdio):
            var m: [(String, Node)] = []
            if let args { m.append(("args", .list(args.map(Node.string)))) }
            if let silent { m.append(("silent", .bool(silent))) }
            if let exec { m.append(("exec", .string(exec))) }
            if let cwd { m.append(("cwd", .string(cwd))) }
            if let stdio { m.append(("stdio", .list(stdio.map(Node.string)))) }
            return .map(m)
        case .setPolicy(let policy):
            return .string(policy)
        case .listen(let owner, let server, let target, let exclusive, let backlog, let hold):
            var m = processTarget(owner) + [("server", .string(server))]
            switch target {
            case .tcp(let host, let port, let ipv6Only), .http(let host, let port, let ipv6Only):
                var t: [(String, Node)] = []
                if let host { t.append(("host", .string(host))) }
                t.append(("port", .json(port)))
                if let ipv6Only { t.append(("ipv6Only", .bool(ipv6Only))) }
                if case .tcp = target { m.append(("tcp", .map(t))) } else { m.append(("http", .map(t))) }
            case .unix(let path, let readableAll, let writableAll):
                var t: [(String, Node)] = [("path", .string(path))]
                if let readableAll { t.append(("readableAll", .bool(readableAll))) }
                if let writableAll { t.append(("writableAll", .bool(writableAll))) }
                m.append(("unix", .map(t)))
            case .fd(let fd):
                m.append(("fd", .int(fd)))
            case .handle(let host, let port):
                m.append(("handle", .map((host.map { [("host", Node.string($0))] } ?? []) + [("port", .json(port))])))
            case .udp(let type, let host, let port, let reuseAddr, let ipv6Only, let fd):
                var t: [(String, Node)] = [("type", .string(type))]
                if let fd {
                    t.append(("fd", .int(fd)))
                } else {
                    if let host { t.append(("host", .string(host))) }
                    t.append(("port", .json(port)))
                }
                if let reuseAddr { t.append(("reuseAddr", .bool(reuseAddr))) }
                if let ipv6Only { t.append(("ipv6Only", .bool(ipv6Only))) }
                m.append(("udp", .map(t)))
            }
            if let exclusive { m.append(("exclusive", .bool(exclusive))) }
            if let backlog { m.append(("backlog", .int(backlog))) }
            if let hold { m.append(("hold", .bool(hold))) }
            return .map(m)
        case .close(let target, let server):
            return .map(processTarget(target) + [("server", .string(server))])
        case .maxConnections(let workers, let server, let value):
            return .map([("worker", workerSelection(workers)), ("server", .string(server)), ("value", .int(value))])
        case .send(let side, let workers, let messages, let handle):
            var m: [(String, Node)] = [(side == .primary ? "to" : "from", workerSelection(workers)), ("messages", .list(messages.map(Node.json)))]
            switch handle {
            case .server(let name)?: m.append(("handle", .map([("server", .string(name))])))
            case .connection(let name)?: m.append(("handle", .map([("connection", .string(name))])))
            case nil: break
            }
            return .map(m)
        case .disconnect(let workers, let from, let times):
            return .map([("worker", workerSelection(workers)), ("from", .string(from.rawValue)), ("times", .int(times))])
        case .disconnectAll:
            return .string("all")
        case .kill(let workers, let signal, let from):
            return .map([("worker", workerSelection(workers))] + (signal.map { [("signal", Node.string($0))] } ?? [])
                        + [("from", .string(from.rawValue))])
        case .exit(let target, let code):
            return .map(processTarget(target) + [("code", .int(code))])
        case .block(let workers, let ms):
            return .map([("worker", workerSelection(workers)), ("ms", .int(ms))])
        case .chdir(let workers, let path):
            return .map([("worker", workerSelection(workers)), ("path", .string(path))])
        case .ref(let workers, let server, _):
            // `referenced` is the step's name (ref or unref), which `yaml(_:)` writes as the key.
            return .map([("worker", workerSelection(workers)), ("server", .string(server))])
        case .unrefChannel(let workers):
            return .map([("worker", workerSelection(workers))])
        case .report(let target, let env, let fds):
            return .map(processTarget(target) + [("env", .list(env.map(Node.string))), ("fds", .bool(fds))])
        case .signal(let target, let signal):
            return .map(processTarget(target) + [("signal", .string(signal))])
        case .closeInput:
            return .bool(true)
        case .await(let selector, let count):
            return .map(selectorEntries(selector) + [("count", .int(count))])
        case .gone(let workers, let within):
            return .map([("worker", workerSelection(workers)), ("within", .int(within))])
        case .connect(let c):
            var m = clientTarget(c.target) + [("label", .string(c.label)), ("count", .int(c.count)), ("mode", .string(c.mode.rawValue))]
            if let send = c.send { m.append(("send", .string(send))) }
            if let hold = c.hold { m.append(("hold", .string(hold))) }
            return .map(m + [("background", .bool(c.background)), ("wait", .int(c.wait))])
        case .request(let r):
            var m = clientTarget(r.target) + [("label", .string(r.label)), ("count", .int(r.count)), ("keepAlive", .bool(r.keepAlive)),
                                              ("method", .string(r.method)), ("path", .string(r.path))]
            if let hold = r.hold { m.append(("hold", .string(hold))) }
            if r.partial { m.append(("partial", .bool(true))) }
            return .map(m + [("background", .bool(r.background)), ("wait", .int(r.wait))])
        case .datagram(let d):
            return .map(clientTarget(d.target) + [("label", .string(d.label)), ("count", .int(d.count)), ("payload", .string(d.payload)),
                                                  ("wait", .int(d.wait))])
        case .release(let name):
            return .string(name)
        case .probe(let server):
            return .map([("server", .string(server))])
        case .capture(let name, let from, let field):
            return .map([("name", .string(name)), ("from", .map(selectorEntries(from))), ("field", .string(field))])
        case .descriptors(let target):
            return .map(processTarget(target))
        case .stat(let path):
            return .map([("path", .string(path))])
        }
    }

    static func expectationEntries(_ x: Expectation) -> [(String, Node)] {
        var e: [(String, Node)] = []
        switch x.kind {
        case .events(let selector, let count, let each, let same, let distinct, let groups, let cycle, let increasing):
            e.append(("events", .map(selectorEntries(selector))))
            switch count {
            case .exactly(let n)?: e.append(("count", .int(n)))
            case .range(let min, let max)?:
                e.append(("count", .map((min.map { [("$min", Node.int($0))] } ?? []) + (max.map { [("$max", Node.int($0))] } ?? []))))
            case nil: break
            }
            if let each { e.append(("each", .map(selectorEntries(each)))) }
            if !same.isEmpty { e.append(("same", .list(same.map(Node.string)))) }
            if !distinct.isEmpty { e.append(("distinct", .list(distinct.map(Node.string)))) }
            if let groups {
                var g: [(String, Node)] = [("by", .string(groups.by))]
                // A count's key is read as a JSON value (`1` is a number, `"1"` a string), so it is written as one.
                if let counts = groups.counts { g.append(("counts", .map(counts.map { (Node.json($0.value).flow, .int($0.count)) }, rawKeys: true))) }
                if let each = groups.each { g.append(("each", .int(each))) }
                e.append(("groups", .map(g)))
            }
            if let cycle { e.append(("cycle", .string(cycle))) }
            if let increasing { e.append(("increasing", .string(increasing))) }
        case .never(let selector):
            e.append(("never", .map(selectorEntries(selector))))
        case .sequence(let selectors):
            e.append(("sequence", .list(selectors.map { .map(selectorEntries($0)) })))
        }
        if let forEach = x.forEach { e.append(("forEach", .map([(forEach.field, .list(forEach.values.map(Node.json)))]))) }
        if let because = x.because { e.append(("because", .string(because))) }
        return e
    }

    static func selectorEntries(_ s: Selector) -> [(String, Node)] {
        s.order.compactMap { field in s.fields[field].map { (field, predicate($0)) } }
    }

    static func predicate(_ p: Predicate) -> Node {
        switch p {
        case .equals(let value): return .json(value)
        case .list(let items): return .list(items.map(predicate))
        case .partial(let members): return .map(members.keys.sorted().map { ($0, predicate(members[$0]!)) })
        case .not(let q): return .map([("$not", predicate(q))])
        case .oneOf(let items): return .map([("$oneOf", .list(items.map(predicate)))])
        case .range(let min, let max):
            return .map((min.map { [("$min", Node.number($0))] } ?? []) + (max.map { [("$max", Node.number($0))] } ?? []))
        case .absent(let b): return .map([("$absent", .bool(b))])
        case .type(let t): return .map([("$type", .string(t))])
        case .contains(let q): return .map([("$contains", predicate(q))])
        case .all(let parts):
            // Several `$` keys of one mapping; the decoder reads `$min`/`$max` into one range, written last.
            return .map(parts.flatMap { part -> [(String, Node)] in
                if case .map(let entries, _) = predicate(part) { return entries }
                return []
            })
        }
    }

    static func processTarget(_ t: ProcessTarget) -> [(String, Node)] {
        switch t {
        case .primary: [("primary", .bool(true))]
        case .workers(let w): [("worker", workerSelection(w))]
        }
    }

    static func workerSelection(_ w: WorkerSelection) -> Node {
        switch w {
        case .all: .string("all")
        case .ids(let ids): .list(ids.map(Node.int))
        }
    }

    static func clientTarget(_ t: ClientTarget) -> [(String, Node)] {
        switch t {
        case .server(let name, let worker): [("server", .string(name))] + (worker.map { [("worker", Node.int($0))] } ?? [])
        case .address(let host, let port): [("host", .string(host)), ("port", .json(port))]
        case .path(let path): [("path", .string(path))]
        }
    }

    static func stringMap(_ m: [String: String]) -> Node {
        .map(m.keys.sorted().map { ($0, .string(m[$0]!)) })
    }

    // MARK: - YAML text

    /// A YAML value, written in flow style.
    indirect enum Node {
        /// A scalar, already written.
        case scalar(String)
        case list([Node])
        /// Keys are names written by `key(_:)`, or already-written scalars when `rawKeys`.
        case map([(String, Node)], rawKeys: Bool = false)

        static func string(_ s: String) -> Node { .scalar(quoted(s)) }
        static func int(_ n: Int) -> Node { .scalar(String(n)) }
        static func bool(_ b: Bool) -> Node { .scalar(b ? "true" : "false") }

        static func number(_ d: Double) -> Node {
            if d.isNaN { return .scalar(".nan") }
            if d.isInfinite { return .scalar(d < 0 ? "-.inf" : ".inf") }
            // Whole numbers as integers (the decoder reads either into the same Double); others in Swift's
            // shortest round-trip form, which the YAML core schema reads as a float (`0.1`, `1e+20`).
            if d.rounded() == d, abs(d) < 9.0e15 { return .scalar(String(Int(d))) }
            return .scalar("\(d)")
        }

        static func json(_ v: JSONValue) -> Node {
            switch v {
            case .null: .scalar("null")
            case .bool(let b): bool(b)
            case .number(let d): number(d)
            case .string(let s): string(s)
            case .array(let items): .list(items.map(json))
            case .object(let o): .map(o.members.map { ($0.key, json($0.value)) })
            }
        }

        var flow: String {
            switch self {
            case .scalar(let text):
                return text
            case .list(let items):
                return "[" + items.map(\.flow).joined(separator: ", ") + "]"
            case .map(let entries, let rawKeys):
                return "{" + entries.map { k, v in
                    let key = rawKeys ? k : Node.key(k)
                    // libyaml looks at most 1024 characters ahead for a simple key's ':'; a longer key is explicit.
                    return key.utf8.count > 1000 ? "? \(key) : \(v.flow)" : "\(key): \(v.flow)"
                }.joined(separator: ", ") + "}"
            }
        }

        /// A mapping key: plain when it is a name that reads back as that string, quoted otherwise.
        static func key(_ k: String) -> String {
            let u = Array(k.utf8)
            let plain = !u.isEmpty && u.enumerated().allSatisfy { i, c in
                (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || c == 0x5F || (i == 0 && c == 0x24) || (i > 0 && c >= 0x30 && c <= 0x39)
            }
            if plain, case .string = YAMLScalar.resolve(k) { return k }
            return quoted(k)
        }

        /// A double-quoted YAML scalar: escapes for `"` and `\`, for line breaks (YAML folds raw ones) and for
        /// every character YAML does not allow raw in a stream.
        static func quoted(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    let v = u.value
                    let printable = (0x20...0x7E).contains(v) || (0xA0...0xD7FF).contains(v) || ((0xE000...0xFFFD).contains(v) && v != 0xFEFF)
                        || (0x10000...0x10FFFF).contains(v)
                    // U+2028 and U+2029 are line breaks to YAML 1.1, and folded like one.
                    if printable && v != 0x2028 && v != 0x2029 {
                        out.unicodeScalars.append(u)
                    } else if v <= 0xFFFF {
                        out += "\\u" + hex(v, digits: 4)
                    } else {
                        out += "\\U" + hex(v, digits: 8)
                    }
                }
            }
            return out + "\""
        }

        static func hex(_ v: UInt32, digits: Int) -> String {
            let h = String(v, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, digits - h.count)) + h
        }
    }
}

// Equality of the spec model's values that do not declare it (their declarations synthesize none). Every stored
// property is compared, the locations included: a test that compares specs from different files replaces them.

extension Spec: Equatable {
    /// Two specs with the same fields, locations included.
    public static func == (a: Spec, b: Spec) -> Bool {
        a.id == b.id && a.description == b.description && a.refs == b.refs && a.basis == b.basis && a.quote == b.quote
            && a.source == b.source && a.behaviours == b.behaviours
            && a.features == b.features && a.from == b.from && a.comment == b.comment && a.timeout == b.timeout
            && a.nodeVersions == b.nodeVersions && a.setup == b.setup && a.steps == b.steps && a.expect == b.expect
            && a.location == b.location
    }
}

extension Setup: Equatable {
    /// Two set-ups that prepare the same.
    public static func == (a: Setup, b: Setup) -> Bool {
        a.policy == b.policy && a.platform == b.platform && a.env == b.env && a.ports == b.ports && a.inherit == b.inherit
            && a.dirs == b.dirs && a.payloads == b.payloads && a.user == b.user
    }
}

extension InheritedSocket: Equatable {
    /// Two inherited sockets with the same descriptor, transport, address and port variable.
    public static func == (a: InheritedSocket, b: InheritedSocket) -> Bool {
        a.fd == b.fd && a.transport == b.transport && a.host == b.host && a.portVariable == b.portVariable
    }
}

extension Expectation: Equatable {
    /// Two expectations that check the same, locations included.
    public static func == (a: Expectation, b: Expectation) -> Bool {
        a.kind == b.kind && a.forEach?.field == b.forEach?.field && a.forEach?.values == b.forEach?.values
            && a.because == b.because && a.location == b.location
    }
}

extension Expectation.Kind: Equatable {
    /// Two checks of the same kind with the same parts.
    public static func == (a: Expectation.Kind, b: Expectation.Kind) -> Bool {
        switch (a, b) {
        case let (.events(s1, c1, e1, sa1, d1, g1, cy1, i1), .events(s2, c2, e2, sa2, d2, g2, cy2, i2)):
            s1 == s2 && c1 == c2 && e1 == e2 && sa1 == sa2 && d1 == d2 && g1 == g2 && cy1 == cy2 && i1 == i2
        case let (.never(s1), .never(s2)):
            s1 == s2
        case let (.sequence(s1), .sequence(s2)):
            s1 == s2
        default:
            false
        }
    }
}
