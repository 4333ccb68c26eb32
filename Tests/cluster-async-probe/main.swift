import Cluster
import Glibc

// The async layer's test probe: one executable that is primary and worker, running the scenario named
// by its first argument (the second, when there is one, is a private directory for Unix sockets) and
// printing one JSON line per observation (`at` says which process). The tests in
// Tests/ClusterTests/Async*.swift start it, act as its clients and judge what it printed. Each scenario
// is a primary part and a worker part, kept small; the tests say what each one shows.

// Read before start() removes the worker id from the environment.
let isWorkerProcess = ClusterRuntime.isWorker
let arguments = Array(CommandLine.arguments.dropFirst())
let scenario = arguments.first ?? ""
let directory = arguments.count > 1 ? arguments[1] : "/tmp"

/// Prints one observation as a JSON line, with one write(2), so lines of several processes never mix.
func report(_ event: String, _ fields: [(String, JSONValue)] = []) {
    let at: JSONValue = isWorkerProcess ? "worker" : "primary"
    let line = JSONValue.object(JSONObject([("at", at), ("ev", .string(event))] + fields)).jsonText + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

func number(_ n: Int) -> JSONValue { .number(Double(n)) }
func optional(_ n: Int?) -> JSONValue { n.map(number) ?? .null }

/// The outcome of a call that may throw, as `code` (`"ok"` when it did not).
func outcome<T>(_ result: Result<T, ClusterError>) -> JSONValue {
    switch result {
    case .success: "ok"
    case .failure(let e): .string(e.code)
    }
}

/// Milliseconds since `start`.
func elapsed(since start: ContinuousClock.Instant) -> JSONValue {
    let d = ContinuousClock.now - start
    return number(Int(d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000))
}

func sleep(ms: Int) async { try? await Task.sleep(for: .milliseconds(ms)) }

/// Returns once `fd` no longer takes bytes (its send buffer is full, so a write to it has stalled), or after
/// 10 s: a condition, not a guess at how long the write takes to get there.
func untilStalled(_ fd: Int32) async {
    let deadline = ContinuousClock.now + .seconds(10)
    while ContinuousClock.now < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        if poll(&p, 1, 0) == 0 { return }
        await sleep(ms: 1)
    }
}

/// Runs `body` in a task, cancels it after `ms` milliseconds, and reports `event` with how it ended and
/// how long the cancelled call took to return after the cancellation.
func cancelAfter<T: Sendable>(ms: Int, _ event: String, _ body: @escaping @Sendable () async throws(ClusterError) -> T) async {
    let task = Task { () async -> Result<T, ClusterError> in
        do throws(ClusterError) { return .success(try await body()) } catch { return .failure(error) }
    }
    await sleep(ms: ms)
    let cancelled = ContinuousClock.now
    task.cancel()
    let result = await task.value
    report(event, [("code", outcome(result)), ("ms", elapsed(since: cancelled))])
}

/// Waits (up to 5 s) until a process is stopped: state `T` in /proc/<pid>/stat.
func untilStopped(_ pid: pid_t) async {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        let stat = fd >= 0 ? readAll(fd) : ""
        if fd >= 0 { close(fd) }
        // The state follows the command name, which is in parentheses and may itself hold spaces.
        if let close = stat.lastIndex(of: ")"), stat[close...].dropFirst(2).first == "T" { return }
        await sleep(ms: 1)
    }
    report("error", [("message", .string("process \(pid) did not stop within 5 s"))])
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

/// A connected pair of Unix stream sockets.
func streamPair() -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

/// This process's open sockets (the runtime's own descriptors, which come and go with its threads and
/// timers, are not counted).
func openDescriptors() -> Int {
    guard let dir = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(dir) }
    var count = 0
    var target = [CChar](repeating: 0, count: 256)
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let n = readlink("/proc/self/fd/" + name, &target, target.count - 1)
        if n > 0 && String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasPrefix("socket:") { count += 1 }
    }
    return count
}

/// Reads from a blocking descriptor until end of stream.
func readAll(_ fd: Int32) -> String {
    var got: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        got += buffer[0..<n]
    }
    return String(decoding: got, as: UTF8.self)
}

/// Echoes a connection's bytes until its end; answers `fds` with this process's descriptor count and
/// `bye` by disconnecting the worker; on `drop`, lets go of the connection without closing it.
func echo(_ connection: AsyncConnection, _ worker: AsyncWorker) async {
    while let bytes = try? await connection.read(), !bytes.isEmpty {
        switch String(decoding: bytes, as: UTF8.self) {
        case "drop": return
        case "fds": _ = try? await connection.write(Array("\(openDescriptors())".utf8))
        case "bye":
            await connection.close()
            await worker.disconnect()
            return
        default: _ = try? await connection.write(bytes)
        }
    }
    await connection.close()
}

// MARK: - Scenarios

/// The primary of the scenarios that only watch their one worker: reports its listening address and
/// its messages, and exits with it.
func watchOneWorker(_ primary: AsyncPrimary) async throws(ClusterError) {
    let worker = try await primary.fork()
    for await event in worker.events {
        switch event {
        case .listening(let a): report("listening", [("port", number(a.port)), ("path", a.address.map { .string($0) } ?? .null)])
        case .message(let m): report("message", [("message", m.value)])
        default: break
        }
    }
    let (code, signal) = try await worker.exit()
    report("exit", [("code", optional(code)), ("signal", signal.map { .string($0.name) } ?? .null)])
}

let policy: BufferPolicy = switch (scenario, isWorkerProcess) {
case ("streams", false): BufferPolicy(limit: 4)
case ("streams", true): BufferPolicy(limit: 2, overflow: .dropOldest)
default: .standard
}

// The primary of "drop-everything" lets go of the AsyncPrimary and of the worker's handle as soon as it has
// used them (a handle is sent with a message), keeping only the primary's events: the cluster goes on.
if scenario == "drop-everything" && !isWorkerProcess {
    let (events, released) = try await { () async throws(ClusterError) -> (EventStream<PrimaryEvent>, () -> Bool) in
        guard case .primary(let primary) = AsyncCluster.start() else { exit(3) }
        let worker = try await primary.fork()
        for await case .message(let m) in worker.events where m.value == "want-handle" { break }
        let (mine, theirs) = streamPair()
        _ = try await worker.send("handle", descriptor: theirs)
        close(theirs)
        close(mine)
        weak let primaryObject = primary, handle = worker
        return (primary.events, { primaryObject == nil && handle == nil })
    }()
    report("released", [("objects", .bool(released()))])
    for await event in events {
        if case .exit(let w, let code, let signal) = event {
            report("exit", [("worker", number(w.id)), ("code", optional(code)), ("signal", signal.map { .string($0.name) } ?? .null)])
            exit(0)
        }
    }
}

switch AsyncCluster.start(events: policy) {
case .primary(let primary):
    switch scenario {
    case "slow-reader", "write-errors", "cancel-io", "cancel-close", "connection-buffer":
        try await watchOneWorker(primary)

    case "disconnect-worker":
        // The worker listens, says hello, and is disconnected through the primary; its handle, whose
        // callbacks are registered on the Worker, must see it leave, and the primary go on.
        let first = try await primary.fork()
        var kinds: [JSONValue] = []
        for await event in first.events {
            switch event {
            case .online: kinds.append("online")
            case .listening: kinds.append("listening")
            case .message:
                kinds.append("message")
                await primary.disconnect(worker: first.id)
            case .disconnect: kinds.append("disconnect")
            case .exit: kinds.append("exit")
            case .error: kinds.append("error")
            }
        }
        report("events", [("worker", number(first.id)), ("kinds", .array(kinds))])
        let (code, _) = try await first.exit()
        report("exit", [("worker", number(first.id)), ("code", optional(code))])
        let second = try await primary.fork()
        for await case .online in second.events { break }
        report("done")
        exit(0)

    case "streams":
        // Nobody reads the streams until the worker has ended: the bounds drop, and count what they drop.
        let worker = try await primary.fork(events: BufferPolicy(limit: 3))
        for i in 0..<10 { _ = await worker.send(number(i)) }
        let (code, _) = try await worker.exit()
        report("exit", [("code", optional(code))])
        var kinds: [JSONValue] = []
        for await event in worker.events {
            switch event {
            case .online: kinds.append("online")
            case .listening: kinds.append("listening")
            case .message(let m): kinds.append(m.value)
            case .disconnect: kinds.append("disconnect")
            case .exit: kinds.append("exit")
            case .error: kinds.append("error")
            }
        }
        report("worker-events", [("kinds", .array(kinds)), ("dropped", number(worker.events.dropped))])
        await primary.shutdown()
        var primaryKinds: [JSONValue] = []
        for await event in primary.events {
            switch event {
            case .fork: primaryKinds.append("fork")
            case .online: primaryKinds.append("online")
            case .listening: primaryKinds.append("listening")
            case .message(_, let m): primaryKinds.append(m.value)
            case .disconnect: primaryKinds.append("disconnect")
            case .exit: primaryKinds.append("exit")
            case .setup: primaryKinds.append("setup")
            }
        }
        report("primary-events", [("kinds", .array(primaryKinds)), ("dropped", number(primary.events.dropped))])
        exit(0)

    case "handles":
        let worker = try await primary.fork()
        for await case .online in worker.events { break }
        // Primary to worker: one end of a socket pair; the worker writes on it.
        let (mine, theirs) = streamPair()
        let sent = try await worker.send("take", descriptor: theirs)
        close(theirs)
        report("sent", [("returned", .bool(sent))])
        report("primary-read", [("text", .string(readAll(mine)))])
        close(mine)
        // Worker to primary: the handle comes with the message, in the handle's events.
        for await event in worker.events {
            guard case .message(let m) = event, m.value == "yours" else { continue }
            report("message", [("kind", m.handle.map { .string($0.kind.rawValue) } ?? .null)])
            if let fd = m.handle?.take() {
                _ = "hello worker".withCString { write(fd, $0, strlen($0)) }
                close(fd)
            }
        }
        _ = try await worker.exit()
        exit(0)

    case "cancel-waits":
        // Cancelled before it starts, fork starts nothing.
        await cancelAfter(ms: 0, "fork") { () async throws(ClusterError) -> Int in
            withUnsafeCurrentTask { $0?.cancel() }
            return try await primary.fork().id
        }
        report("workers", [("count", number(await primary.workerIDs().count))])
        let one = try await primary.fork(), two = try await primary.fork()
        await cancelAfter(ms: 100, "exit") { () async throws(ClusterError) -> Int? in try await one.exit().code }
        report("alive", [("isDead", .bool(try await one.snapshot().isDead))])
        // Each worker listens on a socket of its own and tells when a client (the test) holds a connection.
        for worker in [one, two] {
            for await event in worker.events {
                if case .listening(let a) = event { report("listening", [("worker", number(worker.id)), ("path", a.address.map { .string($0) } ?? .null)]) }
                if case .message(let m) = event, m.value == "connected" { break }
            }
        }
        report("connected")
        // The held connections keep the workers' servers, so their disconnects, from finishing.
        await cancelAfter(ms: 200, "handle-disconnect") { () async throws(ClusterError) in await one.disconnect() }
        await cancelAfter(ms: 200, "disconnect-all") { () async throws(ClusterError) in await primary.disconnectAll() }
        await cancelAfter(ms: 200, "shutdown") { () async throws(ClusterError) in await primary.shutdown() }
        var count = 0
        for await _ in primary.events { count += 1 }
        report("events-finished", [("count", number(count))])
        report("holding")
        for worker in [one, two] {
            let (code, _) = try await worker.exit()
            report("exit", [("worker", number(worker.id)), ("code", optional(code))])
        }
        exit(0)

    case "cancel-listen":
        let worker = try await primary.fork()
        var listening: [JSONValue] = []
        for await event in worker.events {
            if case .listening(let a) = event { listening.append(a.address.map { .string($0) } ?? .null) }
            if case .message(let m) = event, m.value == "done" {
                // The worker's messages arrive in order: its server's release came before this.
                report("primary-saw", [("listening", .array(listening)),
                                       ("firstSocketExists", .bool(access(directory + "/first.sock", F_OK) == 0))])
                await worker.kill()
            }
        }
        exit(0)

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
                        report("written", [("chunk", number(c))])
                    } catch {
                        report("write-error", [("chunk", number(c)), ("code", .string(error.code))])
                    }
                }
            }
            // While the writes wait for the slow reader, the loop must go on serving the worker.
            Task {
                _ = await worker.send("tick")
                report("tick")
            }
        }

    case "write-errors":
        // The test resets the connection; writes then fail with the errno, and the connection is gone.
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0))
        for await connection in server.connections {
            let read: Result<[UInt8], ClusterError>
            do throws(ClusterError) { read = .success(try await connection.read()) } catch { read = .failure(error) }
            report("read", [("code", outcome(read)), ("bytes", number((try? read.get())?.count ?? -1))])
            var first: ClusterError?
            for _ in 0..<64 where first == nil {
                do throws(ClusterError) { try await connection.write(pattern(chunk: 0, bytes: 1 << 20)) } catch { first = error }
            }
            report("write-error", [("code", .string(first?.code ?? "none")), ("errno", optional((first?.errno).map(Int.init))),
                                   ("syscall", .string(first?.syscall ?? ""))])
            var again: Result<Void, ClusterError> = .success(())
            do throws(ClusterError) { try await connection.write([1]) } catch { again = .failure(error) }
            report("write-again", [("code", outcome(again))])
            report("read-after", [("bytes", number((try? await connection.read())?.count ?? -1))])
        }

    case "cancel-io":
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0))
        var index = 0
        for await connection in server.connections {
            index += 1
            switch index {
            case 1:
                // A cancelled read takes nothing: what arrives later goes to the next read.
                await cancelAfter(ms: 100, "read-cancelled") { () async throws(ClusterError) in _ = try await connection.read() }
                report("ready-for-data")
                let bytes = try await connection.read()
                report("read", [("text", .string(String(decoding: bytes, as: UTF8.self)))])
            case 2:
                // The test does not read: the big write stalls, partly sent, with two writes queued behind.
                // (The bytes are made first, so that the write reaches the connection at once.)
                let bytes = pattern(chunk: 1, bytes: 8 << 20)
                let big = Task { () async -> Result<Void, ClusterError> in
                    do throws(ClusterError) { try await connection.write(bytes) } catch { return .failure(error) }
                    return .success(())
                }
                await untilStalled(connection.fd)
                await cancelAfter(ms: 50, "queued-write") { () async throws(ClusterError) in try await connection.write(Array("tail".utf8)) }
                let third = Task { () async -> Result<Void, ClusterError> in
                    do throws(ClusterError) { try await connection.write(Array("third".utf8)) } catch { return .failure(error) }
                    return .success(())
                }
                await sleep(ms: 50)
                let cancelled = ContinuousClock.now
                big.cancel()
                report("partial-write", [("code", outcome(await big.value)), ("ms", elapsed(since: cancelled))])
                report("behind", [("code", outcome(await third.value))])
            case 3:
                // close() waits for the stalled write; cancelled, it returns and closes at once.
                let bytes = pattern(chunk: 2, bytes: 8 << 20)
                let big = Task { () async -> Result<Void, ClusterError> in
                    do throws(ClusterError) { try await connection.write(bytes) } catch { return .failure(error) }
                    return .success(())
                }
                await untilStalled(connection.fd)
                await cancelAfter(ms: 100, "close") { () async throws(ClusterError) in await connection.close() }
                report("stalled-write", [("code", outcome(await big.value))])
            case 4:
                // detach() waits for the queued (stalled) write to go out; then the descriptor is ours.
                let bytes = pattern(chunk: 3, bytes: 8 << 20)
                let big = Task { () async -> Result<Void, ClusterError> in
                    do throws(ClusterError) { try await connection.write(bytes) } catch { return .failure(error) }
                    return .success(())
                }
                await untilStalled(connection.fd)
                report("detaching")
                let fd = await connection.detach()
                let sent = "END".withCString { send(fd, $0, 3, Int32(MSG_NOSIGNAL)) }
                close(fd)
                report("detached", [("write", outcome(await big.value)), ("fd", .bool(fd >= 0)), ("sent", number(sent))])
            default:
                break
            }
        }

    case "cancel-close":
        // A client (the test) holds a connection to each server: they keep a.close(), and the worker's
        // disconnect (which closes b), from finishing; both calls are cancelled and return.
        let a = try await worker.listen(.unix(path: directory + "/a.sock"))
        let b = try await worker.listen(.unix(path: directory + "/b.sock"))
        report("listening-both")
        var held: [AsyncConnection] = []
        for await connection in a.connections { held.append(connection); break }
        for await connection in b.connections { held.append(connection); break }
        report("connected")
        for connection in held { Task { await echo(connection, worker) } }
        held.removeAll()
        await cancelAfter(ms: 200, "server-close") { () async throws(ClusterError) in await a.close() }
        await cancelAfter(ms: 200, "worker-disconnect") { () async throws(ClusterError) in await worker.disconnect() }
        report("holding")
        Task { for await _ in a.connections {}; report("a-finished") }
        Task { for await _ in b.connections {}; report("b-finished") }
        for await _ in worker.messages {}
        report("messages-finished")
        await worker.disconnect()
        report("disconnected")

    case "connection-buffer":
        // Nobody takes connections until the bound has dropped two (the test makes three).
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0), connections: BufferPolicy(limit: 1))
        let deadline = ContinuousClock.now + .seconds(20)
        while server.connections.dropped < 2 && ContinuousClock.now < deadline { await sleep(ms: 10) }
        report("dropped", [("count", number(server.connections.dropped))])
        for await connection in server.connections { await echo(connection, worker) }

    case "streams":
        // The primary sends ten messages the worker does not take until its buffer (two, dropping the
        // oldest) has dropped eight; the worker sends ten and disconnects, which finishes the stream.
        let deadline = ContinuousClock.now + .seconds(20)
        while worker.messages.dropped < 8 && ContinuousClock.now < deadline { await sleep(ms: 10) }
        for i in 100..<110 { _ = await worker.send(number(i)) }
        await worker.disconnect()
        var got: [JSONValue] = []
        for await m in worker.messages { got.append(m.value) }
        report("messages", [("values", .array(got)), ("dropped", number(worker.messages.dropped))])

    case "handles":
        for await m in worker.messages {
            report("message", [("value", m.value), ("kind", m.handle.map { .string($0.kind.rawValue) } ?? .null)])
            guard let fd = m.handle?.take() else { continue }
            let connection = try worker.connection(adopting: fd)
            try await connection.write(Array("hello primary".utf8))
            await connection.close()
            // Back: a socket pair's end with a message.
            let (mine, theirs) = streamPair()
            _ = try await worker.send("yours", descriptor: theirs)
            close(theirs)
            let back = try worker.connection(adopting: mine)
            var text: [UInt8] = []
            while let bytes = try? await back.read(), !bytes.isEmpty { text += bytes }
            report("worker-read", [("text", .string(String(decoding: text, as: UTF8.self)))])
            await worker.disconnect()
        }

    case "cancel-listen":
        // The primary is stopped: the listen request waits for an answer that comes after the cancel.
        kill(getppid(), SIGSTOP)
        // kill() returns before a busy primary has stopped; until it has, it could still grant the listen.
        await untilStopped(getppid())
        await cancelAfter(ms: 200, "listen") { () async throws(ClusterError) in
            _ = try await worker.listen(.unix(path: directory + "/first.sock"))
        }
        kill(getppid(), SIGCONT)
        // The primary answers in order: once the second listen is granted, so was the first.
        let second = try await worker.listen(.unix(path: directory + "/second.sock"))
        report("second-listening", [("path", second.address.map { if case .path(let p) = $0 { .string(p) } else { .null } } ?? .null)])
        _ = await worker.send("done")
        for await _ in worker.messages {}

    case "disconnect-worker":
        let server = try await worker.listen(.tcp(host: "127.0.0.1", port: 0))
        report("listening")
        Task { for await connection in server.connections { _ = connection } }
        _ = await worker.send("hello")
        for await _ in worker.messages {}

    case "cancel-waits":
        let server = try await worker.listen(.unix(path: directory + "/w\(worker.id).sock"))
        for await connection in server.connections {
            _ = await worker.send("connected")
            Task { await echo(connection, worker) }
        }
        await worker.disconnect()

    case "drop-everything":
        // A message's handle nobody takes is closed with the message.
        let baseline = openDescriptors()
        _ = await worker.send("want-handle")
        for await m in worker.messages where m.value == "handle" { break }
        // A server nobody holds, not even its connections: it keeps listening, and closes what arrives.
        _ = try await worker.listen(.unix(path: directory + "/dropped.sock"))
        // A server whose object is dropped and whose connections are served: it keeps serving.
        let connections = try await worker.listen(.unix(path: directory + "/echo.sock")).connections
        report("ready", [("fds", number(baseline))])
        for await connection in connections {
            Task { await echo(connection, worker) }
        }
        report("connections-finished")

    default:
        exit(2)
    }
}
