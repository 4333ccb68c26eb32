import Cluster
import Glibc

// The async layer's test probe: one executable that is primary and worker, running the scenario named
// by its first argument and printing one JSON line per observation (`at` says which process). The tests
// in Tests/ClusterTests/Async*.swift start it, act as its clients and judge what it printed.

// Read before start() removes the worker id from the environment.
let isWorkerProcess = ClusterRuntime.isWorker
let arguments = Array(CommandLine.arguments.dropFirst())
let scenario = arguments.first ?? ""

/// Prints one observation as a JSON line, with one write(2), so lines of several processes never mix.
func report(_ event: String, _ fields: [(String, JSONValue)] = []) {
    let at: JSONValue = ClusterRuntime.isWorker ? .string("worker") : .string("primary")  // fixed before start()
    let line = JSONValue.object(JSONObject([("at", at), ("ev", .string(event))] + fields)).jsonText + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

/// The bytes of chunk `chunk` of the big-write scenarios: 4-byte big-endian words `chunk << 24 | k`, so a
/// reader can tell where every byte belongs.
func pattern(chunk: Int, bytes: Int) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(bytes)
    for k in 0..<(bytes / 4) {
        let word = UInt32(chunk) << 24 | UInt32(k)
        out.append(UInt8(word >> 24)); out.append(UInt8(word >> 16 & 0xff))
        out.append(UInt8(word >> 8 & 0xff)); out.append(UInt8(word & 0xff))
    }
    return out
}

switch AsyncCluster.start() {
case .primary(let primary):
    switch scenario {
    case "slow-reader":
        _ = try await primary.fork()
        for await event in primary.events {
            switch event {
            case .listening(_, let address): report("listening", [("port", .number(Double(address.port)))])
            case .message(_, let m, _): report("message", [("message", m)])
            case .exit(_, let code, let signal):
                report("exit", [("code", code.map { .number(Double($0)) } ?? .null), ("signal", signal.map { .string($0.name) } ?? .null)])
                exit(0)
            default: break
            }
        }
    case "disconnect-worker":
        let first = try await primary.fork()
        var forkedSecond = false
        for await event in primary.events {
            switch event {
            case .message(let w, _, _):
                report("online", [("worker", .number(Double(w.id)))])
                if w.id == first.id { await primary.disconnect(worker: w.id); _ = await primary.send("x", to: w.id) } else { report("done"); exit(0) }
            case .exit(let w, let code, _):
                report("exit", [("worker", .number(Double(w.id))), ("code", code.map { .number(Double($0)) } ?? .null)])
                if !forkedSecond { forkedSecond = true; _ = try await primary.fork() }
            default: break
            }
        }
    default:
        report("error", [("message", .string("unknown scenario \(scenario)"))])
        exit(2)
    }
case .worker(let worker):
    switch scenario {
    case "slow-reader":
        let chunks = 4, chunkBytes = 2 << 20
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0))
        for await connection in server.connections {
            for c in 0..<chunks {
                Task {
                    do throws(ClusterError) {
                        try await connection.write(pattern(chunk: c, bytes: chunkBytes))
                        report("written", [("chunk", .number(Double(c)))])
                    } catch {
                        report("write-error", [("chunk", .number(Double(c))), ("code", .string(error.code))])
                    }
                }
            }
            // While the writes wait for the slow reader, the loop must go on serving the worker.
            Task {
                _ = await worker.send("tick")
                report("tick")
            }
        }
    case "disconnect-worker":
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0))
        report("listening")
        Task { for await c in server.connections { _ = c } }
        _ = await worker.send("hello")
        for await _ in worker.messages {}
    default:
        exit(2)
    }
}
