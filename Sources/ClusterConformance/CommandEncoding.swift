import ClusterSpec

/// One command of the fixture protocol (`fixtures/PROTOCOL.md` §3), before it gets its sequence number.
struct WireCommand {
    /// Who executes it: the primary (stdin) or a worker (its control connection).
    enum Recipient: Equatable {
        case primary
        case worker(Int)
    }

    /// Who executes it.
    var recipient: Recipient
    /// The `cmd` value.
    var name: String
    /// The other members, in wire order.
    var fields: [(String, JSONValue)]
    /// Whether the fixture answers it with an `ack` (`exit` is not answered).
    var acknowledged = true

    /// The command line as sent.
    func json(seq: Int) -> JSONObject {
        JSONObject([("cmd", .string(name)), ("seq", .number(Double(seq)))] + fields)
    }
}

/// Turns the command steps of a spec into fixture-protocol commands. This file is the only place the
/// runner writes command field names; tests check it against `fixtures/protocol.json`.
enum CommandEncoding {
    /// The commands of one step, or nil for a step the runner performs itself (client steps, `await`, …).
    /// `workers` resolves a selection to worker ids; `resolve` substitutes variables.
    static func commands(for kind: Step.Kind, workers: (WorkerSelection) -> [Int], resolve: (JSONValue) -> JSONValue) -> [WireCommand]? {
        func number(_ n: Int) -> JSONValue { .number(Double(n)) }
        func eachWorker(_ sel: WorkerSelection, _ name: String, _ fields: [(String, JSONValue)] = []) -> [WireCommand] {
            workers(sel).map { WireCommand(recipient: .worker($0), name: name, fields: fields) }
        }
        func targets(_ target: ProcessTarget, _ name: String, _ fields: [(String, JSONValue)], acknowledged: Bool = true) -> [WireCommand] {
            switch target {
            case .primary: return [WireCommand(recipient: .primary, name: name, fields: fields, acknowledged: acknowledged)]
            case .workers(let sel): return workers(sel).map { WireCommand(recipient: .worker($0), name: name, fields: fields, acknowledged: acknowledged) }
            }
        }
        switch kind {
        case .fork(let count, let env):
            var fields: [(String, JSONValue)] = []
            if !env.isEmpty { fields.append(("env", .object(JSONObject(env.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })))) }
            return Array(repeating: WireCommand(recipient: .primary, name: "fork", fields: fields), count: count)
        case .setupPrimary(let args, let silent, let exec, let cwd, let stdio):
            var fields: [(String, JSONValue)] = []
            if let args { fields.append(("args", .array(args.map { .string($0) }))) }
            if let silent { fields.append(("silent", .bool(silent))) }
            if let exec { fields.append(("exec", .string(exec))) }
            if let cwd { fields.append(("cwd", .string(cwd))) }
            if let stdio { fields.append(("stdio", .array(stdio.map { .string($0) }))) }
            return [WireCommand(recipient: .primary, name: "setupPrimary", fields: fields)]
        case .setPolicy(let policy):
            return [WireCommand(recipient: .primary, name: "setPolicy", fields: [("policy", .string(policy))])]
        case .listen(let owner, let server, let target, let exclusive, let backlog, let hold):
            var fields: [(String, JSONValue)] = [("server", .string(server))]
            switch target {
            case .tcp(let host, let port, let ipv6Only), .http(let host, let port, let ipv6Only):
                fields.append(("kind", .string(target.transport)))
                if let host { fields.append(("host", .string(host))) }
                fields.append(("port", resolve(port)))
                if let ipv6Only { fields.append(("ipv6Only", .bool(ipv6Only))) }
            case .unix(let path, let readableAll, let writableAll):
                fields += [("kind", "unix"), ("path", .string(path))]
                if let readableAll { fields.append(("readableAll", .bool(readableAll))) }
                if let writableAll { fields.append(("writableAll", .bool(writableAll))) }
            case .fd(let fd):
                fields += [("kind", "fd"), ("fd", number(fd))]
            case .handle(let host, let port):
                fields.append(("kind", "handle"))
                if let host { fields.append(("host", .string(host))) }
                fields.append(("port", resolve(port)))
            case .udp(let type, let host, let port, let reuseAddr, let ipv6Only, let fd):
                fields += [("kind", "udp"), ("type", .string(type))]
                if let fd {
                    fields.append(("fd", number(fd)))
                } else {
                    if let host { fields.append(("host", .string(host))) }
                    fields.append(("port", resolve(port)))
                }
                if let reuseAddr { fields.append(("reuseAddr", .bool(reuseAddr))) }
                if let ipv6Only { fields.append(("ipv6Only", .bool(ipv6Only))) }
            }
            if let exclusive { fields.append(("exclusive", .bool(exclusive))) }
            if let backlog { fields.append(("backlog", number(backlog))) }
            if let hold { fields.append(("hold", .bool(hold))) }
            return targets(owner, "listen", fields)
        case .close(let owner, let server):
            return targets(owner, "close", [("server", .string(server))])
        case .maxConnections(let sel, let server, let value):
            return eachWorker(sel, "setMaxConnections", [("server", .string(server)), ("value", number(value))])
        case .send(let side, let sel, let messages, let handle):
            var fields: [(String, JSONValue)] = [("messages", .array(messages.map(resolve)))]
            switch handle {
            case .server(let name)?: fields.append(("handle", .object(JSONObject([("server", .string(name))]))))
            case .connection(let name)?: fields.append(("handle", .object(JSONObject([("connection", .string(name))]))))
            case nil: break
            }
            return workers(sel).map { w in
                side == .primary
                    ? WireCommand(recipient: .primary, name: "send", fields: [("worker", number(w))] + fields)
                    : WireCommand(recipient: .worker(w), name: "send", fields: fields)
            }
        case .disconnect(let sel, let from, let times):
            return workers(sel).map { w in
                from == .primary
                    ? WireCommand(recipient: .primary, name: "disconnect", fields: [("worker", number(w))])
                    : WireCommand(recipient: .worker(w), name: "disconnect", fields: times > 1 ? [("times", number(times))] : [])
            }
        case .disconnectAll:
            return [WireCommand(recipient: .primary, name: "disconnectAll", fields: [])]
        case .kill(let sel, let signal, let from):
            let fields: [(String, JSONValue)] = signal.map { [("signal", .string($0))] } ?? []
            return workers(sel).map { w in
                from == .primary
                    ? WireCommand(recipient: .primary, name: "kill", fields: [("worker", number(w))] + fields)
                    : WireCommand(recipient: .worker(w), name: "kill", fields: fields)
            }
        case .exit(let target, let code):
            return targets(target, "exit", [("code", number(code))], acknowledged: false)
        case .block(let sel, let ms):
            return eachWorker(sel, "block", [("ms", number(ms))])
        case .chdir(let sel, let path):
            return eachWorker(sel, "chdir", [("path", .string(path))])
        case .ref(let sel, let server, let referenced):
            return eachWorker(sel, referenced ? "ref" : "unref", [("server", .string(server))])
        case .unrefChannel(let sel):
            return eachWorker(sel, "unrefChannel")
        case .report(let target, let env, let fds):
            var fields: [(String, JSONValue)] = env.isEmpty ? [] : [("env", .array(env.map { .string($0) }))]
            if fds { fields.append(("fds", true)) }
            return targets(target, "report", fields)
        case .signal, .closeInput, .await, .gone, .connect, .request, .datagram, .release, .probe, .capture, .descriptors, .stat:
            return nil
        }
    }
}
