import CSupport
import ClusterJSON
import Foundation
import SystemSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

// The async layer is tested through real processes: `cluster-async-probe` (Tests/cluster-async-probe) is a
// cluster program whose primary and workers run the scenario named by its first argument with the async
// API and print one JSON line per observation, `{"at": "primary"|"worker", "ev": …, …}`. A test starts it
// in a process group of its own, acts as its client (connects, reads slowly, sends), waits for the lines
// it expects — each wait with a deadline, failing with what was printed so far — and kills the whole group
// at the end, so no worker outlives a test.

/// The probe executable, built next to the test bundle.
let probePath = productsDirectory.appendingPathComponent("cluster-async-probe").path

/// One run of the probe.
final class ProbeRun {
    let scenario: String
    let pid: pid_t
    private let out: Int32
    private let errPath: String
    private var pending: [UInt8] = []
    /// Every line printed so far, in order.
    private(set) var lines: [JSONValue] = []
    private var status: (code: Int?, signal: Int32?)?

    init(_ scenario: String, _ arguments: [String] = [], environment: [String: String] = [:]) throws {
        self.scenario = scenario
        var pipe: [Int32] = [-1, -1]
        guard csupport_pipe_cloexec(&pipe) == 0 else { throw ProbeFailure("pipe: errno \(errno)") }
        let dir = makeTemporaryDirectory()
        errPath = dir + "/stderr"
        let err = open(errPath, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        let null = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer { close(pipe[1]); close(err); close(null) }
        var env = ProcessInfo.processInfo.environment
        env["NODE_UNIQUE_ID"] = nil
        for (k, v) in environment { env[k] = v }
        var child: pid_t = 0
        let stdio: [Int32] = [null, pipe[1], err]
        let argv = [probePath, scenario] + arguments
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env.map { "\($0.key)=\($0.value)" }) { cEnv in
                csupport_spawn(&child, probePath, cArgv, cEnv, nil, stdio, nil, nil, 0, Int32(CSUPPORT_SPAWN_NEW_GROUP))
            }
        }
        guard rc == 0 else {
            close(pipe[0])
            throw ProbeFailure("cannot start \(probePath): \(String(cString: strerror(rc))) (is it built?)")
        }
        pid = child
        out = pipe[0]
        _ = fcntl(out, F_SETFL, fcntl(out, F_GETFL) | O_NONBLOCK)
    }

    deinit {
        // The whole group: the primary and every worker it forked.
        kill(-pid, SIGKILL)
        if status == nil { var s: Int32 = 0; _ = waitpid(pid, &s, 0) }
        close(out)
        removeDirectory((errPath as NSString).deletingLastPathComponent)
    }

    /// What the probe's processes wrote to stderr (quoted by failures).
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Reads what is available, waiting at most until `deadline`; false at end of output.
    @discardableResult
    private func pump(until deadline: ContinuousClock.Instant) -> Bool {
        guard waitReadable(out, until: deadline) else { return true }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = read(out, &buffer, buffer.count)
        if n <= 0 { return n < 0 && (errno == EAGAIN || errno == EINTR) }
        pending += buffer[0..<n]
        while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            if let value = try? JSONValue.parse(bytes: line) { lines.append(value) }
            else { lines.append(.object(JSONObject([("at", "probe"), ("ev", "garbage"), ("text", .string(String(decoding: line, as: UTF8.self)))]))) }
        }
        return true
    }

    /// The first line (from the start of the output) for which `match` holds, reading until `limit`
    /// passes; records an issue naming `what`, with the output so far, when none comes.
    @discardableResult
    func waitFor(_ what: String, within limit: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation,
                 _ match: (JSONValue) -> Bool) -> JSONValue? {
        let deadline = ContinuousClock.now + limit
        var seen = 0
        while true {
            while seen < lines.count {
                if match(lines[seen]) { return lines[seen] }
                seen += 1
            }
            if ContinuousClock.now >= deadline || !pump(until: deadline) { break }
        }
        Issue.record("no \(what) within \(limit) (scenario \(scenario)); printed:\n\(transcript)", sourceLocation: sourceLocation)
        return nil
    }

    /// The lines with `ev == event`, reading for at most `limit` more until `count` of them are there.
    func events(_ event: String, count: Int, within limit: Duration = .seconds(15),
                sourceLocation: SourceLocation = #_sourceLocation) -> [JSONValue] {
        let deadline = ContinuousClock.now + limit
        while lines.filter({ $0["ev"]?.stringValue == event }).count < count, ContinuousClock.now < deadline, pump(until: deadline) {}
        let found = lines.filter { $0["ev"]?.stringValue == event }
        if found.count < count {
            Issue.record("\(found.count) of \(count) '\(event)' within \(limit) (scenario \(scenario)); printed:\n\(transcript)",
                         sourceLocation: sourceLocation)
        }
        return found
    }

    /// The line with `ev == event` (the first), waiting as `waitFor` does.
    @discardableResult
    func event(_ event: String, within limit: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation,
               where match: (JSONValue) -> Bool = { _ in true }) -> JSONValue? {
        waitFor("'\(event)'", within: limit, sourceLocation: sourceLocation) { $0["ev"]?.stringValue == event && match($0) }
    }

    /// Reads everything printed up to now, waiting at most `limit` (for lines that must *not* come).
    func settle(for limit: Duration) {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline, pump(until: deadline) {}
    }

    /// How the probe's primary ended, waiting at most `limit`; nil (and an issue) if it did not.
    @discardableResult
    func exit(within limit: Duration = .seconds(15), sourceLocation: SourceLocation = #_sourceLocation) -> (code: Int?, signal: Int32?)? {
        if let status { return status }
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            var s: Int32 = 0
            let r = waitpid(pid, &s, WNOHANG)
            if r == pid {
                status = csupport_wifexited(s) != 0 ? (Int(csupport_wexitstatus(s)), nil) : (nil, csupport_wtermsig(s))
                while pump(until: .now + .milliseconds(50)), ContinuousClock.now < deadline {}
                return status
            }
            pump(until: min(deadline, .now + .milliseconds(20)))
        }
        Issue.record("the probe's primary did not exit within \(limit) (scenario \(scenario)); printed:\n\(transcript)",
                     sourceLocation: sourceLocation)
        return nil
    }

    /// The output so far and the processes' stderr, for failure messages.
    var transcript: String {
        lines.map(\.jsonText).joined(separator: "\n") + (stderr.isEmpty ? "" : "\nstderr:\n\(stderr)")
    }
}

struct ProbeFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}

/// A TCP client socket connected to 127.0.0.1:`port` (blocking, close-on-exec).
func connectLoopback(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw ProbeFailure("socket: errno \(errno)") }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = in_port_t(UInt16(port).bigEndian)
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { let e = errno; close(fd); throw ProbeFailure("connect: \(String(cString: strerror(e)))") }
    return fd
}

/// Reads from `fd` until `count` bytes arrived, the peer closes or `limit` passes, taking at most `piece`
/// bytes per read and pausing `pause` between reads (a slow reader).
func readSlowly(_ fd: Int32, count: Int, piece: Int = 16384, pause: Duration = .zero, within limit: Duration) -> [UInt8] {
    let deadline = ContinuousClock.now + limit
    var got: [UInt8] = []
    got.reserveCapacity(count)
    var buffer = [UInt8](repeating: 0, count: piece)
    while got.count < count {
        guard waitReadable(fd, until: deadline) else { break }
        let n = read(fd, &buffer, min(piece, count - got.count))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        got += buffer[0..<n]
        if pause > .zero { usleep(UInt32(pause / .microseconds(1))) }
    }
    return got
}

/// Reads from `fd` until `count` bytes arrived, the peer ends the stream, or `limit` passes; `ended`
/// tells the end of stream (or a reset) from a reader that merely ran out of time.
func readOrEnd(_ fd: Int32, count: Int, within limit: Duration) -> (bytes: [UInt8], ended: Bool) {
    let deadline = ContinuousClock.now + limit
    var got: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while got.count < count {
        guard waitReadable(fd, until: deadline) else { return (got, false) }
        let n = read(fd, &buffer, min(buffer.count, count - got.count))
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return (got, true) }
        got += buffer[0..<n]
    }
    return (got, false)
}

/// Checks bytes made by the probe's `pattern(chunk:bytes:)`: the chunks, each whole and in order within,
/// one after another; returns the chunk order, or a description of the first byte out of place.
func chunkOrder(_ bytes: [UInt8], chunkBytes: Int) -> Result<[Int], ProbeFailure> {
    guard bytes.count % chunkBytes == 0 else { return .failure(ProbeFailure("\(bytes.count) bytes: not whole chunks of \(chunkBytes)")) }
    var order: [Int] = []
    for start in stride(from: 0, to: bytes.count, by: chunkBytes) {
        let chunk = Int(bytes[start])
        for k in 0..<(chunkBytes / 4) {
            let o = start + 4 * k
            let word = UInt32(bytes[o]) << 24 | UInt32(bytes[o + 1]) << 16 | UInt32(bytes[o + 2]) << 8 | UInt32(bytes[o + 3])
            guard word == UInt32(chunk) << 24 | UInt32(k) else {
                return .failure(ProbeFailure("byte \(o): word \(String(word, radix: 16)), expected \(String(UInt32(chunk) << 24 | UInt32(k), radix: 16))"))
            }
        }
        order.append(chunk)
    }
    return .success(order)
}
