import CSupport
import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a process ended: `code` for a normal exit, `signal` for death by signal.
public struct Termination: Sendable, Hashable, CustomStringConvertible {
    /// The exit code, when the process exited.
    public var code: Int?
    /// The signal name, when a signal ended it.
    public var signal: String?

    init(status: Int32) {
        if csupport_wifexited(status) != 0 {
            code = Int(csupport_wexitstatus(status))
        } else if csupport_wifsignaled(status) != 0 {
            signal = Signals.name(csupport_wtermsig(status))
        }
    }

    public var description: String { signal.map { "signal \($0)" } ?? "code \(code ?? -1)" }
}

/// The primary process of an implementation under test: spawned in its own process group, commands on
/// its stdin, events read from its stdout into the log, the tail of its stderr kept for reports.
final class FixtureProcess: @unchecked Sendable {
    let pid: pid_t
    private let stdinFD: Mutex<Int32>
    private let stderrTail = Mutex<[UInt8]>([])
    private let exitStatus = Mutex<Termination?>(nil)
    /// The primary's exit, known to the waiter but not yet logged, and whether the stdout reader ended.
    private let exitState = Mutex<(pending: Termination?, logged: Bool, readerDone: Bool)>((nil, false, false))
    private let stopping = Atomic<Bool>(false)
    private let readersDone = Atomic<Int>(0)
    private let log: EventLog

    static let maxLine = 1 << 20
    static let stderrTailBytes = 16 << 10

    /// Spawns `argv` with `cwd` and `env`; `inherit` maps the runner's descriptors to the child's numbers.
    /// `onLine` receives each complete stdout line.
    init(argv: [String], cwd: String, env: [String: String], inherit: [(source: Int32, target: Int32)],
         log: EventLog, onLine: @escaping @Sendable (String) -> Void) throws(SystemError) {
        self.log = log
        let input = try makePipe()
        let output: (read: Int32, write: Int32)
        let errors: (read: Int32, write: Int32)
        do {
            output = try makePipe()
            errors = try makePipe()
        } catch {
            close(input.read); close(input.write)
            throw error
        }
        var pid: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(env.map { "\($0.key)=\($0.value)" }.sorted()) { cEnv in
                let stdio: [Int32] = [input.read, output.write, errors.write]
                let sources = inherit.map(\.source), targets = inherit.map(\.target)
                return csupport_spawn(&pid, argv[0], cArgv, cEnv, cwd, stdio, sources, targets, Int32(inherit.count), Int32(CSUPPORT_SPAWN_NEW_GROUP))
            }
        }
        close(input.read)
        close(output.write)
        close(errors.write)
        guard rc == 0 else {
            close(input.write); close(output.read); close(errors.read)
            throw SystemError("posix_spawn \(argv[0])", errno: rc)
        }
        self.pid = pid
        self.stdinFD = Mutex(input.write)
        // The runner must not die of SIGPIPE when an implementation closes its stdin early.
        signal(SIGPIPE, SIG_IGN)

        let outFD = output.read, errFD = errors.read, childPID = pid
        Thread.detachNewThread { [self] in
            self.readLines(outFD, onLine)
            close(outFD)
            if self.exitState.withLock({ state -> Bool in
                state.readerDone = true
                return state.pending != nil
            }) { self.logExit() }
            self.readersDone.add(1, ordering: .sequentiallyConsistent)
            self.log.poke()
        }
        Thread.detachNewThread { [self] in
            self.readTail(errFD)
            close(errFD)
            self.readersDone.add(1, ordering: .sequentiallyConsistent)
            self.log.poke()
        }
        Thread.detachNewThread { [self] in
            var status: Int32 = 0
            while waitpid(childPID, &status, 0) < 0 && errno == EINTR {}
            // The exit is logged by the stdout reader once it has read everything the primary wrote.
            let logNow = self.exitState.withLock { state -> Bool in
                state.pending = Termination(status: status)
                return state.readerDone
            }
            if logNow { self.logExit() }
        }
    }

    /// The primary's termination, once it ended.
    var termination: Termination? { exitStatus.withLock { $0 } }

    /// Whether stdout and stderr have both reached end of file (or reading was stopped).
    var outputClosed: Bool { readersDone.load(ordering: .sequentiallyConsistent) == 2 }

    /// The last bytes the implementation wrote to stderr.
    var stderrText: String { String(decoding: stderrTail.withLock { $0 }, as: UTF8.self) }

    /// Writes one line to the primary's stdin.
    func send(_ line: String) throws(SystemError) {
        let fd = stdinFD.withLock { $0 }
        guard fd >= 0 else { throw SystemError("write", errno: EPIPE) }
        try writeAll(fd, Array((line + "\n").utf8))
    }

    /// Closes the primary's stdin: no more commands.
    func closeInput() {
        stdinFD.withLock { fd in
            if fd >= 0 { close(fd); fd = -1 }
        }
    }

    /// Sends a signal to every process of the group.
    func signalGroup(_ sig: Int32) {
        kill(-pid, sig)
    }

    /// Makes the reader threads stop even if some process still holds the pipes open.
    func stopReading() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        closeInput()
    }

    /// Logs the primary's `exited` event once, then publishes the termination. Logging first matters: a
    /// waiter that sees the termination must also find the event.
    private func logExit() {
        let t: Termination? = exitState.withLock { state in
            guard let t = state.pending, !state.logged else { return nil }
            state.logged = true
            return t
        }
        guard let t else { return }
        log.append(Event(fields: JSONObject([
            ("ev", "exited"), ("at", "runner"), ("process", "primary"),
            ("code", t.code.map { .number(Double($0)) } ?? .null), ("signal", t.signal.map { .string($0) } ?? .null),
        ])))
        exitStatus.withLock { $0 = t }
        log.poke()
    }

    private func readLines(_ fd: Int32, _ onLine: @Sendable (String) -> Void) {
        var lines = LineBuffer()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !stopping.load(ordering: .sequentiallyConsistent) {
            // Workers may keep the pipe open after the primary exits, so end of file cannot tell when the
            // primary's last line has been read; an empty pipe after its exit can.
            guard waitReadable(fd, until: .now + .milliseconds(10)) else {
                if exitState.withLock({ $0.pending != nil && !$0.logged }) { logExit() }
                continue
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            lines.append(buffer[0..<n], onLine)
            if lines.pendingCount > Self.maxLine {
                log.fail("a line on stdout is longer than \(Self.maxLine) bytes without a newline; it begins: \(lines.discard(keeping: 200))")
            }
        }
        lines.finish(onLine)
    }

    private func readTail(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while !stopping.load(ordering: .sequentiallyConsistent) {
            guard waitReadable(fd, until: .now + .milliseconds(100)) else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; break }
            if n == 0 { break }
            stderrTail.withLock { tail in
                tail.append(contentsOf: buffer[0..<n])
                if tail.count > Self.stderrTailBytes { tail.removeFirst(tail.count - Self.stderrTailBytes) }
            }
        }
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return body(pointers)
}
