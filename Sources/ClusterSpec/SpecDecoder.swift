/// One problem found in a spec file, reported as `file:line:col: message`.
public struct SpecProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// Where the problem is.
    public var location: SourceLocation
    /// What is wrong, in a sentence.
    public var message: String

    /// A problem at `location`.
    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }
}

/// Turns the YAML node tree of one file into a `Spec`, collecting every problem rather than stopping at
/// the first.
struct SpecDecoder {
    let file: String
    let knownFeatures: Set<String>
    private(set) var problems: [SpecProblem] = []
    /// Where a fixed privileged port was written (allowed only with `setup.user`).
    private var privilegedPorts: [YAMLNode] = []

    init(file: String, knownFeatures: Set<String>) {
        self.file = file
        self.knownFeatures = knownFeatures
    }

    static let topKeys = ["id", "description", "refs", "basis", "quote", "source", "behaviours", "features", "from",
                          "comment", "timeout", "nodeVersions", "setup", "steps", "expect"]
    static let requiredTopKeys = ["id", "description", "refs", "basis", "behaviours", "features", "steps", "expect"]
    /// The longest `quote`: a passage short enough to read in the matrix, not a copy of the docs.
    static let maxQuote = 300
    /// Where a `source` path may lie in the nodejs/node repository.
    static let sourceRoots = ["lib/", "test/", "deps/", "src/", "doc/"]
    static let setupKeys = ["policy", "platform", "env", "ports", "inherit", "dirs", "payloads", "user"]
    static var stepKinds: [String] { StepName.allCases.map(\.rawValue) }
    /// The largest generated payload: the loader's input limit (4 MiB), the largest message a spec could
    /// also have written out in full.
    static let maxPayload = YAMLLimits().maxBytes
    static let expectationSubjects = ["events", "never", "sequence"]
    static let predicateKeys = ["$not", "$oneOf", "$min", "$max", "$absent", "$type", "$contains"]
    static let behaviourGroups = ["SCHED", "LISTEN", "RR", "SHARED", "ERR", "LIFE", "DISC", "MSG", "SET", "MISC"]

    func location(_ node: YAMLNode) -> SourceLocation { SourceLocation(file: file, mark: node.mark) }

    mutating func problem(_ node: YAMLNode, _ message: String) {
        problems.append(SpecProblem(location(node), message))
    }

    // MARK: - The spec

    mutating func decode(_ root: YAMLNode) -> Spec? {
        guard let top = mapping(root, "the spec", allowed: Self.topKeys, required: Self.requiredTopKeys) else { return nil }
        let id = top["id"].flatMap { idString($0) }
        let description = top["description"].flatMap { descriptionString($0) }
        let refs = top["refs"].flatMap { list($0, "refs") }?.compactMap { docRef($0) } ?? []
        let basis = top["basis"].flatMap { oneOf($0, "basis", Basis.allCases.map(\.rawValue)) }.flatMap(Basis.init(rawValue:))
        let quote = top["quote"].flatMap { quoteString($0) }
        let source = top["source"].flatMap { list($0, "source") }?.compactMap { sourcePath($0) } ?? []
        let behaviours = top["behaviours"].flatMap { list($0, "behaviours") }?.compactMap { behaviourID($0) } ?? []
        let features = top["features"].flatMap { list($0, "features") }?.compactMap { feature($0) } ?? []
        let from = top["from"].flatMap { string($0, "from") }
        let comment = top["comment"].flatMap { string($0, "comment") }
        let nodeVersions = top["nodeVersions"].flatMap { nodeVersionRange($0) }
        var timeout = Spec.defaultTimeout
        if let t = top["timeout"], let ms = int(t, "timeout") {
            if ms < 100 || ms > 600_000 { problem(t, "timeout must be between 100 and 600000 milliseconds") } else { timeout = ms }
        }
        let setup = top["setup"].map { decodeSetup($0) } ?? Setup()
        let steps = top["steps"].flatMap { list($0, "steps") }?.compactMap { decodeStep($0) } ?? []
        let expect = top["expect"].flatMap { list($0, "expect") }?.compactMap { decodeExpectation($0) } ?? []
        if setup.user == nil {
            for node in privilegedPorts {
                problem(node, "a privileged port (below 1024) is only meaningful for an unprivileged primary: add setup.user, or use 0 or a variable like $P")
            }
        }
        if let s = top["steps"], s.isEmptySequence { problem(s, "steps must not be empty") }
        if let e = top["expect"], e.isEmptySequence { problem(e, "expect must not be empty") }
        if let r = top["refs"], r.isEmptySequence { problem(r, "refs must name at least one documentation section") }
        if let b = top["behaviours"], b.isEmptySequence { problem(b, "behaviours must name at least one catalogue ID") }
        if let f = top["features"], f.isEmptySequence { problem(f, "features must name at least one feature") }
        if let s = top["source"], s.isEmptySequence { problem(s, "source must name at least one file of nodejs/node") }
        if let b = top["basis"] {
            checkCitations(basis: basis, at: b, quote: top["quote"], hasSource: top["source"].map { !$0.isEmptySequence } ?? false, hasFrom: top["from"] != nil,
                           hasRefs: top["refs"].map { !$0.isEmptySequence } ?? false)
        }
        guard let id, let description, let basis else { return nil }
        var spec = Spec(id: id, description: description, refs: refs, basis: basis, quote: quote, source: source,
                        behaviours: behaviours, features: features, from: from, comment: comment, timeout: timeout,
                        setup: setup, steps: steps, expect: expect, location: location(root))
        spec.nodeVersions = nodeVersions
        return spec
    }

    /// A documented spec cites the documentation (`refs`, ideally a `quote`); an observed one cites Node's source or
    /// tests (`source`, or the Node test it mirrors in `from`), and quotes nothing: no passage states what it checks.
    mutating func checkCitations(basis: Basis?, at node: YAMLNode, quote: YAMLNode?, hasSource: Bool, hasFrom: Bool, hasRefs: Bool) {
        switch basis {
        case .documented?:
            if !hasRefs { problem(node, "a documented spec must name the documentation section that states its behaviour in refs") }
        case .observed?:
            if !hasSource && !hasFrom {
                problem(node, "an observed spec must cite Node's source or tests: add source (like [lib/internal/cluster/primary.js]) or from")
            }
            if let quote {
                problem(quote, "quote is for a documented spec (the passage that states the behaviour); an observed spec explains in comment where Node goes beyond its docs")
            }
        case nil:
            break
        }
    }

    mutating func quoteString(_ node: YAMLNode) -> String? {
        guard let s = string(node, "quote") else { return nil }
        if s.contains("\n") { problem(node, "quote must be one line (fold a long passage with >-)"); return nil }
        if s.allSatisfy(\.isWhitespace) { problem(node, "quote must not be empty"); return nil }
        if s.count > Self.maxQuote {
            problem(node, "quote is \(s.count) characters long; at most \(Self.maxQuote) (quote the sentence that states the behaviour)")
            return nil
        }
        return s
    }

    /// `path`, `path#L12`, `path#L12-L30`, each optionally followed by a space and a function name: a file of the
    /// nodejs/node repository.
    mutating func sourcePath(_ node: YAMLNode) -> String? {
        guard let s = string(node, "a source") else { return nil }
        let shape = "a source is a file of the nodejs/node repository, like 'lib/internal/cluster/primary.js', "
            + "'lib/net.js#L120' or 'lib/net.js listenInCluster'"
        var head = Substring(s), name: Substring?
        if let space = s.firstIndex(of: " ") {
            head = s[..<space]
            name = s[s.index(after: space)...]
        }
        var path = head, line: Substring?
        if let hash = head.firstIndex(of: "#") {
            path = head[..<hash]
            line = head[head.index(after: hash)...]
        }
        let last = path.split(separator: "/", omittingEmptySubsequences: false).last ?? ""
        let ext = last.split(separator: ".", omittingEmptySubsequences: false)
        guard Self.sourceRoots.contains(where: { path.hasPrefix($0) }), !path.contains("//"),
              !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }),
              ext.count >= 2, !(ext.first ?? "").isEmpty, !(ext.last ?? "").isEmpty,
              path.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-/+".contains($0)) }) else {
            problem(node, shape + " (starting with \(Self.sourceRoots.joined(separator: ", ")))")
            return nil
        }
        if let line, !Self.isLineAnchor(line) {
            problem(node, "'#\(line)' must be a line or a range of lines, like #L120 or #L120-L135")
            return nil
        }
        if let name, name.isEmpty || name.contains(where: \.isWhitespace) {
            problem(node, shape + " (one name after the path)")
            return nil
        }
        return s
    }

    static func isLineAnchor(_ s: Substring) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        return (1...2).contains(parts.count) && parts.allSatisfy { $0.count >= 2 && $0.first == "L" && $0.dropFirst().allSatisfy(\.isASCII) && $0.dropFirst().allSatisfy(\.isNumber) }
    }

    mutating func nodeVersionRange(_ node: YAMLNode) -> NodeVersionRange? {
        guard let s = string(node, "nodeVersions") else { return nil }
        do throws(NodeVersionRange.ParseError) {
            let range = try NodeVersionRange(parsing: s)
            if !range.contains(.reference) && !range.comparators.contains(where: { [.greaterOrEqual, .greater, .equal].contains($0.op) }) {
                // Only an upper bound below the reference: nothing on this machine could ever validate it.
                problem(node, "nodeVersions '\(s)' excludes every version from the reference (Node \(NodeVersion.reference)) up; a spec must be validated by some Node")
                return nil
            }
            return range
        } catch {
            problem(node, error.description)
            return nil
        }
    }

    mutating func idString(_ node: YAMLNode) -> String? {
        guard let s = string(node, "id") else { return nil }
        let ok = !s.isEmpty && s.utf8.first.map { isLowerAlnum($0) } == true
            && s.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
        if !ok { problem(node, "id '\(s)' must be lowercase letters, digits, '.' and '-', starting with a letter or digit") }
        return ok ? s : nil
    }

    mutating func descriptionString(_ node: YAMLNode) -> String? {
        guard let s = string(node, "description") else { return nil }
        if s.contains("\n") { problem(node, "description must be one line"); return nil }
        if s.count > 120 { problem(node, "description is \(s.count) characters long; at most 120"); return nil }
        if s.allSatisfy(\.isWhitespace) { problem(node, "description must not be empty"); return nil }
        return s
    }

    mutating func docRef(_ node: YAMLNode) -> DocRef? {
        guard let m = mapping(node, "a ref", allowed: ["doc", "anchor"], required: ["doc", "anchor"]) else { return nil }
        guard let doc = m["doc"].flatMap({ string($0, "doc") }), let anchor = m["anchor"].flatMap({ string($0, "anchor") }) else { return nil }
        if !doc.hasPrefix("api/") { problem(m["doc"]!, "doc '\(doc)' must name a page of Node's API docs, like 'api/cluster'"); return nil }
        if anchor.isEmpty || anchor.contains(" ") { problem(m["anchor"]!, "anchor '\(anchor)' must be a section anchor, like 'how-it-works'"); return nil }
        return DocRef(doc: doc, anchor: anchor)
    }

    mutating func behaviourID(_ node: YAMLNode) -> String? {
        guard let s = string(node, "a behaviour ID") else { return nil }
        let parts = s.split(separator: "-")
        guard parts.count == 2, Self.behaviourGroups.contains(String(parts[0])), parts[1].count == 2,
              parts[1].allSatisfy(\.isNumber) else {
            problem(node, "'\(s)' is not a catalogue ID like LISTEN-02 (groups: \(Self.behaviourGroups.joined(separator: ", ")))")
            return nil
        }
        return s
    }

    mutating func feature(_ node: YAMLNode) -> String? {
        guard let s = string(node, "a feature") else { return nil }
        if !knownFeatures.contains(s) {
            problem(node, "unknown feature '\(s)'" + suggestion(s, among: knownFeatures.sorted()) + " (see Specs/features.yaml)")
            return nil
        }
        return s
    }

    // MARK: - Setup

    mutating func decodeSetup(_ node: YAMLNode) -> Setup {
        var setup = Setup()
        guard let m = mapping(node, "setup", allowed: Self.setupKeys) else { return setup }
        setup.policy = m["policy"].flatMap { string($0, "policy") }
        setup.platform = m["platform"].flatMap { string($0, "platform") }
        if let e = m["env"] { setup.env = stringMap(e, "env") }
        setup.ports = m["ports"].flatMap { list($0, "ports") }?.compactMap { variableName($0) } ?? []
        setup.dirs = m["dirs"].flatMap { list($0, "dirs") }?.compactMap { relativePath($0) } ?? []
        setup.inherit = m["inherit"].flatMap { list($0, "inherit") }?.compactMap { inheritedSocket($0) } ?? []
        if let u = m["user"] {
            if let name = string(u, "user"), !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) {
                setup.user = name
            } else {
                problem(u, "user is a user name, like nobody")
            }
        }
        if let p = m["payloads"] {
            if case .mapping(let pairs) = p.content {
                for pair in pairs {
                    guard let name = variableName(pair.key), let n = int(pair.value, "a payload size") else { continue }
                    if n < 0 || n > Self.maxPayload {
                        problem(pair.value, "a payload size is between 0 and \(Self.maxPayload) bytes")
                        continue
                    }
                    setup.payloads.append(Payload(name: name, bytes: n))
                }
            } else {
                problem(p, "payloads maps variable names to sizes in bytes, like {BIG: 4194304}")
            }
        }
        return setup
    }

    mutating func inheritedSocket(_ node: YAMLNode) -> InheritedSocket? {
        guard let m = mapping(node, "an inherited socket", allowed: ["fd", "tcp", "udp", "port"], required: ["fd"]) else { return nil }
        guard let fdNode = m["fd"], let fd = int(fdNode, "fd") else { return nil }
        if fd < 3 || fd > 63 { problem(fdNode, "fd must be between 3 and 63"); return nil }
        let transports = ["tcp", "udp"].filter { m[$0] != nil }
        guard transports.count == 1, let t = InheritedSocket.Transport(rawValue: transports[0]) else {
            problem(node, "an inherited socket needs exactly one of 'tcp' or 'udp'")
            return nil
        }
        var host = "127.0.0.1"
        if let tm = mapping(m[t.rawValue]!, t.rawValue, allowed: ["host"]), let h = tm["host"] {
            host = string(h, "host") ?? host
        }
        let port = m["port"].flatMap { variableName($0) }
        return InheritedSocket(fd: Int32(fd), transport: t, host: host, portVariable: port)
    }

    mutating func variableName(_ node: YAMLNode) -> String? {
        guard let s = string(node, "a variable name") else { return nil }
        guard isIdentifier(s) else { problem(node, "'\(s)' is not a variable name (letters, digits, '_')"); return nil }
        return s
    }

    mutating func relativePath(_ node: YAMLNode) -> String? {
        guard let s = string(node, "a path") else { return nil }
        if s.hasPrefix("/") || s.split(separator: "/").contains("..") || s.isEmpty {
            problem(node, "'\(s)' must be a relative path inside the spec's temporary directory")
            return nil
        }
        return s
    }

    // MARK: - Steps

    mutating func decodeStep(_ node: YAMLNode) -> Step? {
        let names = StepName.allCases.map(\.rawValue)
        guard case .mapping(let pairs) = node.content else {
            problem(node, "a step must be a mapping with one key, the step kind (\(names.joined(separator: ", ")))")
            return nil
        }
        var expectError: String?
        var kindPairs: [(StepName, YAMLPair)] = []
        for pair in pairs {
            guard let key = pair.key.scalarString else { problem(pair.key, "keys must be strings"); continue }
            if key == "expectError" {
                expectError = string(pair.value, "expectError")
            } else if let name = StepName(rawValue: key) {
                kindPairs.append((name, pair))
            } else {
                problem(pair.key, "unknown step '\(key)'" + suggestion(key, among: names + ["expectError"]))
            }
        }
        guard kindPairs.count == 1 else {
            if kindPairs.count > 1 { problem(kindPairs[1].1.key, "a step has exactly one kind; split it into two steps") }
            else if problems.isEmpty || problems.last?.location.mark != node.mark { problem(node, "a step needs a kind") }
            return nil
        }
        let (name, pair) = kindPairs[0]
        let before = problems.count
        guard let kind = stepKind(name, pair.value) else {
            // A step is never dropped in silence: whatever path returned nil, the file gets a problem.
            if problems.count == before { problem(pair.value, "this '\(name.rawValue)' step cannot be read") }
            return nil
        }
        if problems.count > before { return nil }
        return Step(kind: kind, expectError: expectError, location: location(pair.key), name: name)
    }

    /// Reads the value of a step of kind `name`. Exhaustive over `StepName`: a new kind does not compile
    /// until it is read here.
    mutating func stepKind(_ name: StepName, _ v: YAMLNode) -> Step.Kind? {
        switch name {
        case .fork:
            if v.isScalar { return int(v, "fork").flatMap { positive($0, v, "fork count") }.map { .fork(count: $0, env: [:]) } }
            guard let m = mapping(v, "fork", allowed: ["count", "env"]) else { return nil }
            let count = m["count"].map { n in int(n, "count").flatMap { positive($0, n, "count") } } ?? 1
            let env = m["env"].map { stringMap($0, "env") } ?? [:]
            return count.map { .fork(count: $0, env: env) }
        case .setupPrimary:
            guard let m = mapping(v, "setupPrimary", allowed: ["args", "silent", "exec", "cwd", "stdio"]) else { return nil }
            let args = m["args"].flatMap { list($0, "args") }?.compactMap { string($0, "an argument") }
            let silent = m["silent"].flatMap { bool($0, "silent") }
            let exec = m["exec"].flatMap { oneOf($0, "exec", ["default", "alternate"]) }
            let cwd = m["cwd"].flatMap { relativePath($0) }
            let stdio = m["stdio"].flatMap { list($0, "stdio") }?.compactMap { oneOf($0, "a stdio entry", ["pipe", "inherit", "ignore", "ipc"]) }
            return .setupPrimary(args: args, silent: silent, exec: exec, cwd: cwd, stdio: stdio)
        case .setPolicy:
            return oneOf(v, "setPolicy", ["rr", "none"]).map { .setPolicy($0) }
        case .listen:
            return listenStep(v)
        case .close:
            guard let m = mapping(v, "close", allowed: ["worker", "primary", "server"], required: ["server"]),
                  let target = processTarget(v, m), let s = serverName(m["server"]!) else { return nil }
            return .close(target, server: s)
        case .maxConnections:
            guard let m = mapping(v, "maxConnections", allowed: ["worker", "server", "value"], required: ["worker", "server", "value"]),
                  let w = workers(m["worker"]!), let s = serverName(m["server"]!), let n = int(m["value"]!, "value") else { return nil }
            return .maxConnections(workers: w, server: s, value: n)
        case .send:
            return sendStep(v)
        case .disconnect:
            if v.isScalar {
                if v.scalarString == "all" { return .disconnectAll }
                problem(v, "disconnect takes 'all' (cluster.disconnect()) or a mapping with 'worker'")
                return nil
            }
            guard let m = mapping(v, "disconnect", allowed: ["worker", "from", "times"], required: ["worker"]),
                  let w = workers(m["worker"]!) else { return nil }
            let from = m["from"].map { side($0) } ?? .primary
            let times = m["times"].map { n in int(n, "times").flatMap { positive($0, n, "times") } } ?? 1
            guard let from, let times else { return nil }
            if times > 1 && from != .worker { problem(m["times"]!, "times applies to a disconnect from the worker (from: worker)"); return nil }
            return .disconnect(workers: w, from: from, times: times)
        case .kill:
            guard let m = mapping(v, "kill", allowed: ["worker", "signal", "from"], required: ["worker"]),
                  let w = workers(m["worker"]!) else { return nil }
            let signal = m["signal"].flatMap { signalName($0) }
            let from = m["from"].map { side($0) } ?? .primary
            return from.map { .kill(workers: w, signal: signal, from: $0) }
        case .exit:
            guard let m = mapping(v, "exit", allowed: ["worker", "primary", "code"], required: ["code"]),
                  let target = processTarget(v, m), let code = int(m["code"]!, "code") else { return nil }
            return .exit(target, code: code)
        case .block:
            guard let m = mapping(v, "block", allowed: ["worker", "ms"], required: ["worker", "ms"]),
                  let w = workers(m["worker"]!), let ms = int(m["ms"]!, "ms") else { return nil }
            return .block(workers: w, ms: ms)
        case .chdir:
            guard let m = mapping(v, "chdir", allowed: ["worker", "path"], required: ["worker", "path"]),
                  let w = workers(m["worker"]!), let p = relativePath(m["path"]!) else { return nil }
            return .chdir(workers: w, path: p)
        case .ref, .unref:
            guard let m = mapping(v, name.rawValue, allowed: ["worker", "server"], required: ["worker", "server"]),
                  let w = workers(m["worker"]!), let s = serverName(m["server"]!) else { return nil }
            return .ref(workers: w, server: s, referenced: name == .ref)
        case .unrefChannel:
            guard let m = mapping(v, "unrefChannel", allowed: ["worker"], required: ["worker"]), let w = workers(m["worker"]!) else { return nil }
            return .unrefChannel(workers: w)
        case .report:
            guard let m = mapping(v, "report", allowed: ["worker", "primary", "env", "fds"]), let target = processTarget(v, m) else { return nil }
            let env = m["env"].flatMap { list($0, "env") }?.compactMap { string($0, "a variable name") } ?? []
            let fds = m["fds"].flatMap { bool($0, "fds") } ?? false
            return .report(target, env: env, fds: fds)
        case .signal:
            guard let m = mapping(v, "signal", allowed: ["worker", "primary", "signal"], required: ["signal"]),
                  let target = processTarget(v, m), let s = signalName(m["signal"]!) else { return nil }
            return .signal(target, signal: s)
        case .closeInput:
            guard bool(v, "closeInput") == true else {
                if v.isScalar { problem(v, "closeInput takes 'true'") }
                return nil
            }
            return .closeInput
        case .await:
            guard case .mapping(let pairs) = v.content else { problem(v, "await takes a selector mapping"); return nil }
            var count: Int? = 1
            var fields: [YAMLPair] = []
            for p in pairs {
                if p.key.scalarString == "count" { count = int(p.value, "count").flatMap { positive($0, p.value, "count") } }
                else { fields.append(p) }
            }
            guard let count, let sel = selector(fields, at: v) else { return nil }
            return .await(sel, count: count)
        case .gone:
            guard let m = mapping(v, "gone", allowed: ["worker", "within"], required: ["within"]),
                  let within = int(m["within"]!, "within") else { return nil }
            let w = m["worker"].map { workers($0) } ?? .all
            return w.map { .gone(workers: $0, within: within) }
        case .connect:
            return connectStep(v).map { .connect($0) }
        case .request:
            return requestStep(v).map { .request($0) }
        case .datagram:
            return datagramStep(v).map { .datagram($0) }
        case .release:
            guard let s = string(v, "release") else { return nil }
            if s.isEmpty { problem(v, "release takes the name of a hold"); return nil }
            return .release(s)
        case .probe:
            if v.isScalar { return serverName(v).map { .probe(server: $0) } }
            guard let m = mapping(v, "probe", allowed: ["server"], required: ["server"]), let s = serverName(m["server"]!) else { return nil }
            return .probe(server: s)
        case .descriptors:
            guard let m = mapping(v, "descriptors", allowed: ["worker", "primary"]), let target = processTarget(v, m) else { return nil }
            return .descriptors(target)
        case .stat:
            if v.isScalar { return relativePath(v).map { .stat(path: $0) } }
            guard let m = mapping(v, "stat", allowed: ["path"], required: ["path"]), let p = relativePath(m["path"]!) else { return nil }
            return .stat(path: p)
        case .capture:
            guard let m = mapping(v, "capture", allowed: ["name", "from", "field"], required: ["name", "from", "field"]),
                  let name = variableName(m["name"]!), let field = string(m["field"]!, "field"),
                  let from = selector(m["from"]!) else { return nil }
            return .capture(name: name, from: from, field: field)
        }
    }

    mutating func listenStep(_ v: YAMLNode) -> Step.Kind? {
        let kinds = ["tcp", "unix", "fd", "handle", "udp", "http"]
        guard let m = mapping(v, "listen", allowed: ["worker", "primary", "server", "exclusive", "backlog", "hold"] + kinds,
                              required: ["server"]),
              let owner = processTarget(v, m), let s = serverName(m["server"]!) else { return nil }
        let given = kinds.filter { m[$0] != nil }
        guard given.count == 1 else {
            problem(v, "listen needs exactly one of \(kinds.joined(separator: ", "))" + (given.isEmpty ? "" : " (found \(given.joined(separator: ", ")))"))
            return nil
        }
        let t = m[given[0]]!
        let target: ListenTarget?
        switch given[0] {
        case "tcp", "http":
            guard let tm = mapping(t, given[0], allowed: ["host", "port", "ipv6Only"], required: ["port"]) else { return nil }
            let host = tm["host"].flatMap { string($0, "host") }, ipv6Only = tm["ipv6Only"].flatMap { bool($0, "ipv6Only") }
            target = port(tm["port"]!).map { given[0] == "tcp" ? .tcp(host: host, port: $0, ipv6Only: ipv6Only) : .http(host: host, port: $0, ipv6Only: ipv6Only) }
        case "unix":
            if t.isScalar { target = relativePath(t).map { .unix(path: $0, readableAll: nil, writableAll: nil) } }
            else {
                guard let tm = mapping(t, "unix", allowed: ["path", "readableAll", "writableAll"], required: ["path"]) else { return nil }
                target = relativePath(tm["path"]!).map {
                    .unix(path: $0, readableAll: tm["readableAll"].flatMap { bool($0, "readableAll") },
                          writableAll: tm["writableAll"].flatMap { bool($0, "writableAll") })
                }
            }
        case "fd":
            target = int(t, "fd").map { .fd($0) }
        case "handle":
            guard let tm = mapping(t, "handle", allowed: ["host", "port"], required: ["port"]) else { return nil }
            target = port(tm["port"]!).map { .handle(host: tm["host"].flatMap { string($0, "host") }, port: $0) }
        default:
            guard let tm = mapping(t, "udp", allowed: ["type", "host", "port", "reuseAddr", "ipv6Only", "fd"]) else { return nil }
            let type = tm["type"].flatMap { oneOf($0, "type", ["udp4", "udp6"]) } ?? "udp4"
            let reuseAddr = tm["reuseAddr"].flatMap { bool($0, "reuseAddr") }, ipv6Only = tm["ipv6Only"].flatMap { bool($0, "ipv6Only") }
            switch (tm["port"], tm["fd"]) {
            case (let p?, nil):
                target = port(p).map { .udp(type: type, host: tm["host"].flatMap { string($0, "host") }, port: $0, reuseAddr: reuseAddr, ipv6Only: ipv6Only, fd: nil) }
            case (nil, let f?):
                if tm["host"] != nil { problem(tm["host"]!, "a bind({fd}) takes no host"); return nil }
                target = int(f, "fd").map { .udp(type: type, host: nil, port: .number(0), reuseAddr: reuseAddr, ipv6Only: ipv6Only, fd: $0) }
            default:
                problem(t, "udp needs exactly one of 'port' (bind({address, port})) or 'fd' (bind({fd}), a descriptor of the primary)")
                return nil
            }
        }
        guard let target else { return nil }
        if owner == .primary {
            switch target {
            case .tcp, .http: break
            default: problem(t, "the primary's own server (primary: true) is a tcp or http server"); return nil
            }
            for key in ["exclusive", "backlog"] where m[key] != nil { problem(m[key]!, "'\(key)' applies to a worker's server"); return nil }
        }
        if let h = m["hold"] {
            switch target {
            case .udp: problem(h, "a UDP socket has no connections to hold"); return nil
            default: break
            }
        }
        return .listen(owner, server: s, target: target,
                       exclusive: m["exclusive"].flatMap { bool($0, "exclusive") },
                       backlog: m["backlog"].flatMap { int($0, "backlog") },
                       hold: m["hold"].flatMap { bool($0, "hold") })
    }

    mutating func sendStep(_ v: YAMLNode) -> Step.Kind? {
        guard let m = mapping(v, "send", allowed: ["to", "from", "message", "messages", "numbers", "handle"]) else { return nil }
        let ends = ["to", "from"].filter { m[$0] != nil }
        guard ends.count == 1 else { problem(v, "send needs exactly one of 'to' (primary to worker) or 'from' (worker to primary)"); return nil }
        guard let w = workers(m[ends[0]]!) else { return nil }
        let forms = ["message", "messages", "numbers"].filter { m[$0] != nil }
        guard forms.count == 1 else { problem(v, "send needs exactly one of 'message', 'messages' or 'numbers'"); return nil }
        var messages: [JSONValue] = []
        if let one = m["message"] { messages.append(one.json) }
        if let many = m["messages"] {
            guard let items = list(many, "messages") else { return nil }
            if items.isEmpty { problem(many, "messages must not be empty"); return nil }
            messages = items.map(\.json)
        }
        if let n = m["numbers"] {
            guard let count = int(n, "numbers").flatMap({ positive($0, n, "numbers") }) else { return nil }
            if count > 100_000 { problem(n, "numbers is at most 100000"); return nil }
            messages = (1...count).map { .number(Double($0)) }
        }
        var handle: HandleReference?
        if let h = m["handle"] {
            guard let hm = mapping(h, "handle", allowed: ["server", "connection"]) else { return nil }
            switch (hm["server"], hm["connection"]) {
            case (let s?, nil): guard let name = serverName(s) else { return nil }; handle = .server(name)
            case (nil, let c?): guard let name = serverName(c) else { return nil }; handle = .connection(name)
            default: problem(h, "handle needs exactly one of 'server' or 'connection'"); return nil
            }
            if messages.count != 1 { problem(h, "a handle goes with exactly one message"); return nil }
        }
        return .send(side: ends[0] == "to" ? .primary : .worker, workers: w, messages: messages, handle: handle)
    }

    mutating func clientTarget(_ m: [String: YAMLNode], at node: YAMLNode, step: String) -> (ClientTarget, String)? {
        let forms = [m["server"] != nil, m["port"] != nil, m["path"] != nil].filter { $0 }.count
        guard forms == 1 else { problem(node, "\(step) needs exactly one of 'server', 'port' (with 'host') or 'path'"); return nil }
        let worker = m["worker"].flatMap { int($0, "worker") }
        if let s = m["server"] { return serverName(s).map { (.server($0, worker: worker), $0) } }
        if let p = m["path"] { return relativePath(p).map { (.path($0), $0) } }
        let host = m["host"].flatMap { string($0, "host") } ?? "127.0.0.1"
        return port(m["port"]!).map { (.address(host: host, port: $0), m["label"]?.scalarString ?? "\(host):\($0.jsonText)") }
    }

    mutating func connectStep(_ v: YAMLNode) -> ConnectStep? {
        guard let m = mapping(v, "connect", allowed: ["server", "worker", "port", "host", "path", "count", "mode", "send",
                                                     "hold", "background", "wait", "label"]),
              let (target, label) = clientTarget(m, at: v, step: "connect") else { return nil }
        let count = m["count"].map { n in int(n, "count").flatMap { positive($0, n, "count") } } ?? 1
        let mode = m["mode"].map { n in oneOf(n, "mode", ["sequential", "concurrent"]).flatMap(ConnectStep.Mode.init(rawValue:)) } ?? .sequential
        let wait = m["wait"].map { n in int(n, "wait").flatMap { positive($0, n, "wait") } } ?? 5000
        guard let count, let mode, let wait else { return nil }
        return ConnectStep(target: target, label: m["label"].flatMap { string($0, "label") } ?? label, count: count, mode: mode,
                           send: m["send"].flatMap { string($0, "send") }, hold: m["hold"].flatMap { holdName($0) },
                           background: m["background"].flatMap { bool($0, "background") } ?? false,
                           wait: wait)
    }

    mutating func requestStep(_ v: YAMLNode) -> RequestStep? {
        guard let m = mapping(v, "request", allowed: ["server", "worker", "port", "host", "count", "keepAlive", "method", "path",
                                                     "hold", "background", "wait", "label", "partial"]) else { return nil }
        if m["path"] != nil, m["server"] == nil, m["port"] == nil { problem(v, "request needs 'server' or 'port'; 'path' is the request target"); return nil }
        var targetFields = m
        targetFields["path"] = nil
        guard let (target, label) = clientTarget(targetFields, at: v, step: "request") else { return nil }
        let count = m["count"].map { n in int(n, "count").flatMap { positive($0, n, "count") } } ?? 1
        let wait = m["wait"].map { n in int(n, "wait").flatMap { positive($0, n, "wait") } } ?? 5000
        guard let count, let wait else { return nil }
        var path = "/"
        if let p = m["path"] {
            guard let s = string(p, "path") else { return nil }
            guard s.hasPrefix("/"), !s.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" }) else {
                problem(p, "path must be a request target like /hello, without spaces")
                return nil
            }
            path = s
        }
        let method = m["method"].flatMap { oneOf($0, "method", ["GET", "POST", "PUT", "DELETE", "HEAD"]) } ?? "GET"
        let partial = m["partial"].flatMap { bool($0, "partial") } ?? false
        let keepAlive = m["keepAlive"].flatMap { bool($0, "keepAlive") } ?? false
        if partial && (m["hold"] == nil || count != 1 || keepAlive) {
            problem(m["partial"]!, "a partial request is one request (count 1) kept open under 'hold'")
            return nil
        }
        var step = RequestStep(target: target, label: m["label"].flatMap { string($0, "label") } ?? label, count: count,
                           keepAlive: keepAlive, method: method, path: path,
                           hold: m["hold"].flatMap { holdName($0) }, background: m["background"].flatMap { bool($0, "background") } ?? false,
                           wait: wait)
        step.partial = partial
        return step
    }

    mutating func datagramStep(_ v: YAMLNode) -> DatagramStep? {
        guard let m = mapping(v, "datagram", allowed: ["server", "worker", "port", "host", "count", "payload", "wait", "label"]),
              let (target, label) = clientTarget(m, at: v, step: "datagram") else { return nil }
        let count = m["count"].map { n in int(n, "count").flatMap { positive($0, n, "count") } } ?? 1
        let wait = m["wait"].map { n in int(n, "wait").flatMap { positive($0, n, "wait") } } ?? 5000
        guard let count, let wait else { return nil }
        return DatagramStep(target: target, label: m["label"].flatMap { string($0, "label") } ?? label, count: count,
                            payload: m["payload"].flatMap { string($0, "payload") } ?? "ping",
                            wait: wait)
    }

    mutating func holdName(_ node: YAMLNode) -> String? {
        guard let s = string(node, "hold") else { return nil }
        if s.isEmpty { problem(node, "hold takes a name for the held connections"); return nil }
        return s
    }

    mutating func workers(_ node: YAMLNode) -> WorkerSelection? {
        if node.scalarString == "all" { return .all }
        if case .sequence(let items) = node.content {
            let ids = items.compactMap { workerID($0) }
            return ids.count == items.count && !ids.isEmpty ? .ids(ids) : nil
        }
        return workerID(node).map { .ids([$0]) }
    }

    mutating func workerID(_ node: YAMLNode) -> Int? {
        guard case .int(let n) = node.scalar, n >= 1 else {
            problem(node, "worker must be a worker id (1, 2, …), a list of ids, or 'all'")
            return nil
        }
        return n
    }

    mutating func processTarget(_ node: YAMLNode, _ m: [String: YAMLNode]) -> ProcessTarget? {
        switch (m["primary"], m["worker"]) {
        case (let p?, nil):
            guard bool(p, "primary") == true else { if p.isScalar { problem(p, "primary takes 'true'") }; return nil }
            return .primary
        case (nil, let w?):
            return workers(w).map { .workers($0) }
        default:
            problem(node, "needs exactly one of 'primary: true' or 'worker'")
            return nil
        }
    }

    mutating func side(_ node: YAMLNode) -> Side? {
        oneOf(node, "from", ["primary", "worker"]).flatMap(Side.init(rawValue:))
    }

    mutating func signalName(_ node: YAMLNode) -> String? {
        guard let s = string(node, "signal") else { return nil }
        guard s.hasPrefix("SIG"), s.count > 3, s.dropFirst(3).allSatisfy({ $0.isUppercase || $0.isNumber }) else {
            problem(node, "'\(s)' is not a signal name like SIGTERM")
            return nil
        }
        return s
    }

    mutating func serverName(_ node: YAMLNode) -> String? {
        guard let s = string(node, "server") else { return nil }
        if s.isEmpty { problem(node, "a server name must not be empty"); return nil }
        return s
    }

    mutating func port(_ node: YAMLNode) -> JSONValue? {
        switch node.scalar {
        case .int(0): return .number(0)
        case .int(let n) where (1..<1024).contains(n):
            // A privileged port is the same on every machine; it only makes sense for an unprivileged
            // primary (setup.user), which decode() checks once the setup is known.
            privilegedPorts.append(node)
            return .number(Double(n))
        case .string(let s) where s.hasPrefix("$") && isIdentifier(String(s.dropFirst())): return .string(s)
        default:
            problem(node, "port must be 0, a variable like $P (allocate one with setup.ports: a fixed number may be taken on another machine), or a privileged port below 1024 with setup.user")
            return nil
        }
    }

    mutating func positive(_ n: Int, _ node: YAMLNode, _ what: String) -> Int? {
        if n < 1 { problem(node, "\(what) must be at least 1"); return nil }
        return n
    }

    // MARK: - Expectations

    mutating func decodeExpectation(_ node: YAMLNode) -> Expectation? {
        let modifiers = ["count", "each", "same", "distinct", "groups", "cycle", "increasing"]
        guard let m = mapping(node, "an expectation", allowed: Self.expectationSubjects + modifiers + ["forEach", "because"]) else { return nil }
        let subjects = Self.expectationSubjects.filter { m[$0] != nil }
        guard subjects.count == 1 else {
            problem(node, "an expectation needs exactly one of \(Self.expectationSubjects.joined(separator: ", "))")
            return nil
        }
        let subject = subjects[0]
        if subject != "events" {
            for key in modifiers where m[key] != nil { problem(m[key]!, "'\(key)' applies to 'events' expectations only") }
        }
        var forEach: (String, [JSONValue])?
        if let f = m["forEach"] {
            if case .mapping(let pairs) = f.content, pairs.count == 1, let key = pairs[0].key.scalarString,
               case .sequence(let values) = pairs[0].value.content, !values.isEmpty {
                forEach = (key, values.map(\.json))
            } else {
                problem(f, "forEach takes one field with a list of values, like {worker: [1, 2, 3]}")
            }
        }
        let because = m["because"].flatMap { string($0, "because") }
        let kind: Expectation.Kind
        switch subject {
        case "never":
            guard let sel = selector(m["never"]!) else { return nil }
            kind = .never(sel)
        case "sequence":
            guard let items = list(m["sequence"]!, "sequence") else { return nil }
            let sels = items.compactMap { selector($0) }
            guard sels.count == items.count else { return nil }
            if sels.count < 2 { problem(m["sequence"]!, "a sequence needs at least two selectors") }
            kind = .sequence(sels)
        default:
            guard let sel = selector(m["events"]!) else { return nil }
            let count = m["count"].flatMap { countRule($0) }
            let each = m["each"].flatMap { selector($0) }
            let same = m["same"].flatMap { fieldList($0, "same") } ?? []
            let distinct = m["distinct"].flatMap { fieldList($0, "distinct") } ?? []
            let groups = m["groups"].flatMap { groupRule($0) }
            let cycle = m["cycle"].flatMap { string($0, "cycle") }
            let increasing = m["increasing"].flatMap { string($0, "increasing") }
            kind = .events(sel, count: count, each: each, same: same, distinct: distinct, groups: groups, cycle: cycle,
                           increasing: increasing)
        }
        return Expectation(kind: kind, forEach: forEach, because: because, location: location(node))
    }

    mutating func countRule(_ node: YAMLNode) -> CountRule? {
        if case .int(let n) = node.scalar {
            if n < 0 { problem(node, "count must be a non-negative integer or {$min, $max}"); return nil }
            return .exactly(n)
        }
        guard let m = mapping(node, "count", allowed: ["$min", "$max"]), !m.isEmpty else {
            if node.isScalar { problem(node, "count must be a non-negative integer or {$min, $max}") }
            return nil
        }
        return .range(min: m["$min"].flatMap { int($0, "$min") }, max: m["$max"].flatMap { int($0, "$max") })
    }

    mutating func groupRule(_ node: YAMLNode) -> GroupRule? {
        guard let m = mapping(node, "groups", allowed: ["by", "counts", "each"], required: ["by"]),
              let by = string(m["by"]!, "by") else { return nil }
        if (m["counts"] == nil) == (m["each"] == nil) { problem(node, "groups needs exactly one of 'counts' or 'each'"); return nil }
        if let e = m["each"] { return int(e, "each").map { GroupRule(by: by, counts: nil, each: $0) } }
        guard case .mapping(let pairs) = m["counts"]!.content else { problem(m["counts"]!, "counts must map values to counts"); return nil }
        var counts: [(JSONValue, Int)] = []
        for p in pairs { if let n = int(p.value, "a count") { counts.append((p.key.json, n)) } }
        return GroupRule(by: by, counts: counts.map { (value: $0.0, count: $0.1) }, each: nil)
    }

    mutating func fieldList(_ node: YAMLNode, _ what: String) -> [String]? {
        if node.isScalar { return string(node, what).map { [$0] } }
        return list(node, what)?.compactMap { string($0, "a field name") }
    }

    // MARK: - Selectors and predicates

    mutating func selector(_ node: YAMLNode) -> Selector? {
        guard case .mapping(let pairs) = node.content else { problem(node, "a selector must be a mapping of event fields"); return nil }
        return selector(pairs, at: node)
    }

    mutating func selector(_ pairs: [YAMLPair], at node: YAMLNode) -> Selector? {
        if pairs.isEmpty { problem(node, "a selector needs at least one field"); return nil }
        var conditions: [(String, Predicate)] = []
        for p in pairs {
            guard let key = p.key.scalarString else { problem(p.key, "field names must be strings"); continue }
            if key.hasPrefix("$") { problem(p.key, "'\(key)' is a predicate, not an event field; write {field: {\(key): …}}"); continue }
            if let pred = predicate(p.value) { conditions.append((key, pred)) }
        }
        return Selector(conditions)
    }

    mutating func predicate(_ node: YAMLNode) -> Predicate? {
        switch node.content {
        case .scalar: return .equals(node.json)
        case .sequence(let items):
            let preds = items.compactMap { predicate($0) }
            return preds.count == items.count ? .list(preds) : nil
        case .mapping(let pairs):
            let dollar = pairs.filter { $0.key.scalarString?.hasPrefix("$") == true }
            if dollar.isEmpty {
                var members: [String: Predicate] = [:]
                for p in pairs {
                    guard let k = p.key.scalarString else { problem(p.key, "keys must be strings"); return nil }
                    guard let pred = predicate(p.value) else { return nil }
                    members[k] = pred
                }
                return .partial(members)
            }
            if dollar.count != pairs.count {
                problem(node, "a predicate mapping cannot mix $-keys with field names")
                return nil
            }
            var parts: [Predicate] = []
            var minV: Double?, maxV: Double?
            for p in pairs {
                let key = p.key.scalarString!
                switch key {
                case "$not": if let q = predicate(p.value) { parts.append(.not(q)) }
                case "$oneOf":
                    guard let items = list(p.value, "$oneOf") else { continue }
                    parts.append(.oneOf(items.compactMap { predicate($0) }))
                case "$min", "$max":
                    guard let d = number(p.value, key) else { continue }
                    if key == "$min" { minV = d } else { maxV = d }
                case "$absent": if let b = bool(p.value, "$absent") { parts.append(.absent(b)) }
                case "$type":
                    // `$type: null` is written as a plain null, so read the text rather than a string value.
                    let types = ["null", "bool", "number", "string", "list", "object"]
                    if let t = p.value.scalarString, types.contains(t) { parts.append(.type(t)) }
                    else { problem(p.value, "$type must be one of \(types.joined(separator: ", "))" + (p.value.scalarString.map { "; found '\($0)'" } ?? "")) }
                case "$contains": if let q = predicate(p.value) { parts.append(.contains(q)) }
                default: problem(p.key, "unknown predicate '\(key)'" + suggestion(key, among: Self.predicateKeys))
                }
            }
            if minV != nil || maxV != nil { parts.append(.range(min: minV, max: maxV)) }
            return parts.count == 1 ? parts[0] : .all(parts)
        }
    }

    // MARK: - Primitive readers

    mutating func mapping(_ node: YAMLNode, _ what: String, allowed: [String], required: [String] = []) -> [String: YAMLNode]? {
        guard case .mapping(let pairs) = node.content else {
            problem(node, "\(what) must be a mapping")
            return nil
        }
        var result: [String: YAMLNode] = [:]
        for pair in pairs {
            guard let key = pair.key.scalarString else { problem(pair.key, "keys must be strings"); continue }
            if !allowed.contains(key) {
                problem(pair.key, "unknown key '\(key)' in \(what)" + suggestion(key, among: allowed))
                continue
            }
            result[key] = pair.value
        }
        for key in required where result[key] == nil {
            problem(node, "\(what) is missing the required key '\(key)'")
        }
        return required.allSatisfy({ result[$0] != nil }) ? result : nil
    }

    mutating func list(_ node: YAMLNode, _ what: String) -> [YAMLNode]? {
        guard case .sequence(let items) = node.content else { problem(node, "\(what) must be a list"); return nil }
        return items
    }

    mutating func string(_ node: YAMLNode, _ what: String) -> String? {
        guard case .scalar(let s, _) = node.content else { problem(node, "\(what) must be a string"); return nil }
        if case .string = node.scalar { return s }
        // A plain scalar that resolves to another type (e.g. `exec: 1`) is still usable as text where a
        // string is expected, except null.
        if case .null = node.scalar { problem(node, "\(what) must be a string, not null"); return nil }
        return s
    }

    mutating func int(_ node: YAMLNode, _ what: String) -> Int? {
        guard case .int(let n) = node.scalar else { problem(node, "\(what) must be an integer"); return nil }
        return n
    }

    mutating func number(_ node: YAMLNode, _ what: String) -> Double? {
        switch node.scalar {
        case .int(let n): return Double(n)
        case .double(let d): return d
        default: problem(node, "\(what) must be a number"); return nil
        }
    }

    mutating func bool(_ node: YAMLNode, _ what: String) -> Bool? {
        guard case .bool(let b) = node.scalar else { problem(node, "\(what) must be true or false"); return nil }
        return b
    }

    mutating func oneOf(_ node: YAMLNode, _ what: String, _ values: [String]) -> String? {
        guard let s = string(node, what) else { return nil }
        guard values.contains(s) else {
            problem(node, "\(what) must be one of \(values.joined(separator: ", ")); found '\(s)'" + suggestion(s, among: values))
            return nil
        }
        return s
    }

    mutating func stringMap(_ node: YAMLNode, _ what: String) -> [String: String] {
        guard case .mapping(let pairs) = node.content else { problem(node, "\(what) must be a mapping of strings"); return [:] }
        var result: [String: String] = [:]
        for p in pairs {
            guard let k = p.key.scalarString, case .scalar(let v, _) = p.value.content else {
                problem(p.value, "\(what) values must be strings")
                continue
            }
            result[k] = v
        }
        return result
    }
}

// MARK: - Helpers

extension YAMLNode {
    var isScalar: Bool { if case .scalar = content { return true } else { return false } }

    var isEmptySequence: Bool { if case .sequence(let items) = content { return items.isEmpty } else { return false } }

    /// The text of a scalar node, whatever type it resolves to.
    var scalarString: String? { if case .scalar(let s, _) = content { return s } else { return nil } }

    /// The node as a JSON value (scalars resolved by the YAML core schema).
    var json: JSONValue {
        switch content {
        case .scalar:
            switch scalar {
            case .null, .none: return .null
            case .bool(let b): return .bool(b)
            case .int(let n): return .number(Double(n))
            case .double(let d): return .number(d)
            case .string(let s): return .string(s)
            }
        case .sequence(let items): return .array(items.map(\.json))
        case .mapping(let pairs): return .object(JSONObject(pairs.map { ($0.key.scalarString ?? "", $0.value.json) }))
        }
    }
}

func isLowerAlnum(_ b: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(b) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b)
}

func isIdentifier(_ s: String) -> Bool {
    guard let first = s.unicodeScalars.first, first.properties.isAlphabetic || first == "_" else { return false }
    return s.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || $0 == "_" }
}

/// " (did you mean 'x'?)" when a close candidate exists, otherwise "".
func suggestion(_ word: String, among candidates: [String]) -> String {
    let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(1, min(3, best.0.count / 3)) else { return "" }
    return " (did you mean '\(best.0)'?)"
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent transpositions
/// each cost 1, so `hots` is one edit from `host`.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}
