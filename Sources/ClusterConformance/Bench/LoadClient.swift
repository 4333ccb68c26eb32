// The bench's load generator: short TCP connections made by client threads with blocking sockets.

import CSupport
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the connections of a load run ended as.
public struct LoadTally: Sendable {
    /// Connections attempted.
    public var attempted = 0
    /// Served: the greeting line, then end of stream after the client's end.
    public var ok = 0
    /// Refused at connect (ECONNREFUSED).
    public var refused = 0
    /// Lost: reset, or end of stream before the greeting (a worker that died with it, a dropped hand-off).
    public var lost = 0
    /// Hung: nothing came before the deadline (connect, greeting or end of stream).
    public var hung = 0
    /// Any other failure (errno names in `otherCodes`).
    public var other = 0
    /// The errno names of `other` failures, with counts.
    public var otherCodes: [String: Int] = [:]
    /// Latency of each served connection, nanoseconds: connect start to end of stream.
    public var latencies: [UInt64] = []
    /// Served connections by the worker the greeting named.
    public var perWorker: [String: Int] = [:]
    /// Wall time of the run.
    public var elapsed: Duration = .zero

    /// Connections that were not served.
    public var errors: Int { refused + lost + hung + other }

    /// Served connections per second of the run.
    public var rate: Double {
        let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return s > 0 ? Double(ok) / s : 0
    }

    mutating func merge(_ o: LoadTally) {
        attempted += o.attempted
        ok += o.ok
        refused += o.refused
        lost += o.lost
        hung += o.hung
        other += o.other
        for (k, v) in o.otherCodes { otherCodes[k, default: 0] += v }
        latencies += o.latencies
        for (k, v) in o.perWorker { perWorker[k, default: 0] += v }
    }

    mutating func record(_ outcome: ConnectionOutcome) {
        attempted += 1
        switch outcome {
        case .served(let worker, let ns):
            ok += 1
            latencies.append(ns)
            perWorker[worker ?? "?", default: 0] += 1
        case .refused: refused += 1
        case .lost: lost += 1
        case .hung: hung += 1
        case .failed(let code):
            other += 1
            otherCodes[code, default: 0] += 1
        }
    }
}

/// How one connection ended.
enum ConnectionOutcome: Equatable {
    case served(worker: String?, nanoseconds: UInt64)
    case refused
    case lost
    case hung
    case failed(String)
}

/// The client side of the bench: `clients` threads, each making connections one after another to
/// `host:port`. A connection is: connect, read the greeting line (protocol §6), shutdown(SHUT_WR), read to
/// end of stream, close. Sockets are blocking with send and receive timeouts of `deadlineMs`, so no
/// connection can hang the bench.
public struct LoadClient: Sendable {
    public var host = "127.0.0.1"
    public var port: Int
    public var clients: Int
    public var deadlineMs: Int

    public init(port: Int, clients: Int, deadlineMs: Int) {
        self.port = port
        self.clients = max(1, clients)
        self.deadlineMs = deadlineMs
    }

    /// Makes `total` connections, spread over the client threads as evenly as possible; returns when all ended.
    public func run(connections total: Int) -> LoadTally {
        let share = total / clients, extra = total % clients
        let run = LoadRun(self, quotas: (0..<clients).map { share + ($0 < extra ? 1 : 0) })
        return run.wait()
    }

    /// Starts client threads that make connections until `stop()` of the returned run.
    func start() -> LoadRun { LoadRun(self, quotas: Array(repeating: nil, count: clients)) }

    /// One connection, timed from the start of connect to the end of stream.
    static func connectOnce(_ address: SocketAddress, deadlineMs: Int) -> ConnectionOutcome {
        let started = monotonicNanoseconds()
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failed(errnoName(errno)) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: deadlineMs / 1000, tv_usec: (deadlineMs % 1000) * 1000)
        let size = socklen_t(MemoryLayout<timeval>.size)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, size)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, size)  // bounds a blocking connect too
        var rc: Int32
        repeat { rc = address.withSockaddr { Glibc.connect(fd, $0, $1) } } while rc != 0 && errno == EINTR
        if rc != 0 {
            switch errno {
            case ECONNREFUSED: return .refused
            case EINPROGRESS, EAGAIN, ETIMEDOUT: return .hung
            case ECONNRESET: return .lost
            default: return .failed(errnoName(errno))
            }
        }
        var buffer = [UInt8](repeating: 0, count: 512)
        var received = 0
        var greeting: [UInt8]?
        // The greeting line.
        while greeting == nil {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + received, $0.count - received, 0) }
            if n > 0 {
                received += n
                if let nl = buffer[0..<received].firstIndex(of: UInt8(ascii: "\n")) {
                    greeting = Array(buffer[0..<nl])
                } else if received == buffer.count {
                    return .failed("EPROTO")
                }
                continue
            }
            if n == 0 { return .lost }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .hung
            case ECONNRESET, EPIPE: return .lost
            default: return .failed(errnoName(errno))
            }
        }
        shutdown(fd, Int32(SHUT_WR))
        // Then the server's end of stream (it echoes nothing: the client sent nothing).
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { break }
            if n > 0 { continue }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .hung
            case ECONNRESET, EPIPE: return .lost
            default: return .failed(errnoName(errno))
            }
        }
        return .served(worker: workerID(inGreeting: greeting ?? []), nanoseconds: monotonicNanoseconds() - started)
    }

    /// The `worker` member of a greeting line `{"worker":ID,"server":"NAME"}`, as text (a number or a string),
    /// found without a JSON parse (the client must stay cheap).
    static func workerID(inGreeting line: [UInt8]) -> String? {
        let key = Array(#""worker":"#.utf8)
        guard line.count > key.count,
              let start = (0...(line.count - key.count)).first(where: { line[$0..<($0 + key.count)].elementsEqual(key) }) else { return nil }
        var i = start + key.count
        while i < line.count, line[i] == UInt8(ascii: " ") { i += 1 }
        guard i < line.count else { return nil }
        if line[i] == UInt8(ascii: "\"") {
            guard let end = line[(i + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: line[(i + 1)..<end], as: UTF8.self)
        }
        let end = line[i...].firstIndex { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "}") } ?? line.count
        return String(decoding: line[i..<end], as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }
}

/// Client threads at work: each with a quota of connections, or (nil quota) until stopped.
final class LoadRun: @unchecked Sendable {
    private let stopping = Atomic<Bool>(false)
    private let results = Mutex<LoadTally>(LoadTally())
    private let group = DispatchGroup()
    private let started = ContinuousClock.now

    init(_ client: LoadClient, quotas: [Int?]) {
        for quota in quotas {
            group.enter()
            Thread.detachNewThread { [self] in
                var tally = LoadTally()
                let address = SocketAddress(host: client.host, port: client.port)
                if let address {
                    tally.latencies.reserveCapacity(quota ?? 1024)
                    var made = 0
                    while quota.map({ made < $0 }) ?? !stopping.load(ordering: .relaxed) {
                        tally.record(LoadClient.connectOnce(address, deadlineMs: client.deadlineMs))
                        made += 1
                    }
                } else {
                    tally.record(.failed("EINVAL"))
                }
                results.withLock { $0.merge(tally) }
                group.leave()
            }
        }
    }

    /// Waits for every thread, then gives the merged tally.
    func wait() -> LoadTally {
        group.wait()
        var tally = results.withLock { $0 }
        tally.elapsed = .now - started
        return tally
    }

    /// Tells open-ended threads to stop after their current connection, then waits for them.
    func stop() -> LoadTally {
        stopping.store(true, ordering: .relaxed)
        return wait()
    }
}

/// The monotonic clock in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
