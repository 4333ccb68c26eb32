// Start-up: what the spec's setup asks for, the fixture process, the stdout reader and the handshake.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SpecRun {

    func prepare() throws {
        var template = Array("/tmp/cc-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw StepFailure(outcome: .error, message: "cannot create a temporary directory: \(SystemError("mkdtemp"))")
        }
        tmpdir = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let prefix = try unprivilegedPrefix()
        for dir in spec.setup.dirs {
            try FileManager.default.createDirectory(atPath: tmpdir + "/" + dir, withIntermediateDirectories: true,
                                                    attributes: prefix.isEmpty ? nil : [.posixPermissions: 0o777])
        }
        // The primary of an unprivileged spec runs as another user: it must be able to use the directory.
        if !prefix.isEmpty { chmod(tmpdir, 0o777) }
        variables["TMPDIR"] = .string(tmpdir)
        for payload in spec.setup.payloads { variables[payload.name] = .string(payload.text) }
        for name in spec.setup.ports {
            variables[name] = .number(Double(try allocateFreePort()))
        }
        var inherit: [(source: Int32, target: Int32)] = []
        for socket in spec.setup.inherit {
            let fd = try boundSocket(udp: socket.transport == .udp, host: socket.host, port: 0)
            inheritedFDs.append(fd)
            inherit.append((fd, socket.fd))
            if let name = socket.portVariable, let address = SocketAddress.local(of: fd) {
                variables[name] = .number(Double(address.port))
            }
        }
        let control = try ControlServer(path: tmpdir + "/.control.sock", log: log)
        self.control = control
        if !prefix.isEmpty { chmod(control.path, 0o666) }

        var env = ProcessInfo.processInfo.environment
        // Variables that would change the implementation's behaviour unless the spec sets them.
        for name in ["NODE_UNIQUE_ID", "NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_OPTIONS"] {
            env[name] = nil
        }
        if let name = implementation.policyEnv { env[name] = nil }
        if let name = implementation.platformEnv { env[name] = nil }
        env["CLUSTER_CONFORMANCE_CONTROL"] = control.path
        env["CLUSTER_CONFORMANCE_TMPDIR"] = tmpdir
        if let policy = spec.setup.policy {
            guard let name = implementation.policyEnv else {
                throw StepFailure(outcome: .skip, message: "the implementation's descriptor names no policyEnv")
            }
            env[name] = policy
        }
        if let platform = spec.setup.platform {
            guard let name = implementation.platformEnv else {
                throw StepFailure(outcome: .skip, message: "the implementation's descriptor names no platformEnv")
            }
            env[name] = platform
        }
        for (k, v) in spec.setup.env { env[k] = v }

        do {
            process = try FixtureProcess(argv: prefix + implementation.command, cwd: tmpdir, env: env, inherit: inherit, log: log) { [self] line in
                self.receive(line)
            }
        } catch {
            throw StepFailure(outcome: .error, message: "could not start the implementation: \(error)")
        }
    }

    /// For a spec with `setup.user`: the command prefix that starts the primary as that user (when the
    /// runner is root), or nothing (the runner is already unprivileged). Throws a skip when this machine
    /// cannot show the behaviour: a privileged port of the spec that any user may bind here, or no way to
    /// change user.
    func unprivilegedPrefix() throws -> [String] {
        guard let user = spec.setup.user else { return [] }
        let threshold = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding: .utf8))
            .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 1024
        var fixedPorts: [Int] = []
        for step in spec.steps {
            if case .listen(_, _, let target, _, _, _) = step.kind {
                switch target {
                case .tcp(_, let p, _), .http(_, let p, _), .handle(_, let p), .udp(_, _, let p, _, _, _):
                    if let n = p.intValue, n > 0 { fixedPorts.append(n) }
                default: break
                }
            }
        }
        if let open = fixedPorts.first(where: { $0 >= threshold }) {
            throw StepFailure(outcome: .skip, message: "any user may bind port \(open) on this machine (ip_unprivileged_port_start is \(threshold))")
        }
        guard getuid() == 0 else { return [] }
        guard let entry = getpwnam(user) else {
            throw StepFailure(outcome: .skip, message: "this machine has no user '\(user)' to run the primary as")
        }
        let uid = entry.pointee.pw_uid, gid = entry.pointee.pw_gid
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init) + ["/usr/bin", "/bin"]
        guard let setpriv = paths.map({ $0 + "/setpriv" }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw StepFailure(outcome: .skip, message: "setpriv (util-linux) is needed to run the primary as '\(user)'")
        }
        return [setpriv, "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--"]
    }

    /// Validates and records one stdout line, reassembling framed events (protocol §1.1); `framed` marks
    /// a line reassembled from parts, which may be of any length.
    func receive(_ line: String, framed: Bool = false) {
        if !framed && line.utf8.count >= Self.maxLine {
            log.fail("a stdout line of \(line.utf8.count + 1) bytes: a line longer than 4096 bytes must be framed as part lines (protocol §1.1); it begins \(quote(line, limit: 200))")
            return
        }
        guard let value = try? JSONValue.parse(line), case .object(var fields) = value, fields["ev"]?.stringValue != nil else {
            log.fail("stdout line is not a JSON object with a string 'ev': \(quote(line))")
            return
        }
        if fields["ev"] == .string("part") {
            switch parts.withLock({ $0.accept(fields) }) {
            case .incomplete: return
            case .malformed(let why): log.fail("\(why): \(quote(line))")
            case .complete(let whole):
                guard let value = try? JSONValue.parse(whole), case .object(let event) = value, let ev = event["ev"]?.stringValue, ev != "part" else {
                    log.fail("a framed event is not a JSON object with a string 'ev' (other than 'part'): \(quote(whole))")
                    return
                }
                receive(whole, framed: true)
            }
            return
        }
        if !sawHello.load(ordering: .sequentiallyConsistent) {
            guard fields["ev"] == .string("hello") else {
                log.fail("the first line must be the hello event; got \(quote(line))")
                return
            }
            sawHello.store(true, ordering: .sequentiallyConsistent)
        }
        if fields["ev"] == .string("ack"), let s = fields["seq"]?.intValue, let name = acks.withLock({ $0[s] }) {
            fields["cmd"] = .string(name)
        }
        log.append(Event(fields: fields, line: line))
    }

    func handshake() throws {
        try sendToPrimary(JSONObject([("cmd", .string("hello")), ("seq", .number(0)), ("protocol", .number(Double(protocolVersion)))]))
        let hello = try waitForEvent("the hello event") { $0["ev"] == .string("hello") }
        guard hello["protocol"]?.intValue == protocolVersion else {
            throw StepFailure(outcome: .error, message: "protocol \(hello["protocol"]?.jsonText ?? "(none)") not supported: this runner speaks protocol \(protocolVersion) (fixtures/PROTOCOL.md); update the fixture")
        }
    }
}
