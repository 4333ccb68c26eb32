// The runner as the client of the implementation's servers: connections, HTTP requests, datagrams, socket probes.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SpecRun {

    func endpoint(_ target: ClientTarget, udp: Bool) throws -> Endpoint {
        switch target {
        case .address(let host, let port):
            guard let p = resolve(port).intValue else { throw StepFailure(outcome: .fail, message: "port \(port.jsonText) is not defined at \(currentStep)") }
            return udp ? .udp(host: host, port: p) : .tcp(host: host, port: p)
        case .path(let path):
            return .unix(path: tmpdir + "/" + path)
        case .server(let name, let worker):
            // A worker's server, or one of the primary's own (protocol §3.1); the cluster's own `listening`
            // events at the primary name no server.
            let reported = log.snapshot().last { e in
                e["ev"] == .string("listening") && e["server"] == .string(name)
                    && (e["at"] == .string("worker") || e["at"] == .string("primary"))
                    && (worker == nil || e["worker"]?.intValue == worker)
            }
            guard let reported else {
                throw StepFailure(outcome: .fail, message: "no worker reported listening for server '\(name)' before \(currentStep) (await it first)")
            }
            if let path = reported["path"]?.stringValue { return .unix(path: path) }
            guard let port = reported["port"]?.intValue else {
                throw StepFailure(outcome: .fail, message: "the listening event has neither path nor port: \(reported.line)")
            }
            var host = reported["address"]?.stringValue ?? "127.0.0.1"
            if host == "::" { host = "::1" }
            if host == "0.0.0.0" { host = "127.0.0.1" }
            return (udp || servers[name] == "udp") ? .udp(host: host, port: port) : .tcp(host: host, port: port)
        }
    }

    func connect(_ c: ConnectStep) throws {
        let endpoint = try endpoint(c.target, udp: false)
        let waitMs = c.wait
        let stepDeadline = deadline
        let label = c.label
        let work: @Sendable () -> [Int32] = { [self] in
            var kept: [Int32] = []
            func record(_ i: Int, _ r: ClientResult) {
                switch r {
                case .served(let worker, let echo, let fd):
                    var fields: [(String, JSONValue)] = [("server", .string(label)), ("worker", worker), ("conn", .number(Double(i))),
                                                         ("transport", .string(endpoint.transport))]
                    if let echo { fields.append(("echo", .string(echo))) }
                    self.runnerEvent("served", fields)
                    if let fd { if c.hold != nil { kept.append(fd) } else { Client.finish(fd) } }
                case .refused(let code):
                    self.runnerEvent("refused", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(code))])
                case .unanswered(let code):
                    self.runnerEvent("unanswered", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(code))])
                }
            }
            func answerDeadline() -> ContinuousClock.Instant { min(stepDeadline, .now + self.scaled(waitMs)) }
            switch c.mode {
            case .sequential:
                for i in 1...c.count {
                    switch Client.connect(endpoint, until: answerDeadline()) {
                    case .failure(let e): record(i, .refused(code: e.code))
                    case .success(let fd):
                        let r = Client.converse(fd, send: c.send, until: answerDeadline())
                        if case .served = r {} else { close(fd) }
                        record(i, r)
                    }
                }
            case .concurrent:
                var open: [(Int, Int32)] = []
                for i in 1...c.count {
                    switch Client.connect(endpoint, until: answerDeadline()) {
                    case .failure(let e): record(i, .refused(code: e.code))
                    case .success(let fd): open.append((i, fd))
                    }
                }
                let limit = answerDeadline()
                for (i, fd) in open {
                    let r = Client.converse(fd, send: c.send, until: limit)
                    if case .served = r {} else { close(fd) }
                    record(i, r)
                }
            }
            return kept
        }
        runClientWork(work, hold: c.hold, background: c.background)
    }

    /// HTTP requests: a new connection per request, or all of them on one kept-alive connection.
    func request(_ r: RequestStep) throws {
        let endpoint = try endpoint(r.target, udp: false)
        guard case .tcp(let host, let port) = endpoint else {
            throw StepFailure(outcome: .fail, message: "request needs a TCP (http) server at \(currentStep)")
        }
        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let stepDeadline = deadline
        let label = r.label
        if r.partial {
            // The head of a request without its final blank line: the connection is in the middle of a
            // request, and stays so until released.
            switch Client.connect(endpoint, until: min(stepDeadline, .now + scaled(r.wait))) {
            case .failure(let e):
                runnerEvent("refused", [("server", .string(label)), ("conn", 1), ("code", .string(e.code))])
            case .success(let fd):
                do {
                    try writeAll(fd, Array("\(r.method) \(r.path) HTTP/1.1\r\nHost: \(hostHeader)\r\n".utf8))
                    runnerEvent("partial", [("server", .string(label)), ("conn", 1), ("transport", "http")])
                    held[r.hold!, default: []].append(fd)
                } catch {
                    runnerEvent("refused", [("server", .string(label)), ("conn", 1), ("code", .string(error.code))])
                    close(fd)
                }
            }
            return
        }
        let work: @Sendable () -> [Int32] = { [self] in
            func answerDeadline() -> ContinuousClock.Instant { min(stepDeadline, .now + self.scaled(r.wait)) }
            var open: Int32 = -1
            var connections = 0
            for i in 1...r.count {
                if open < 0 {
                    switch Client.connect(endpoint, until: answerDeadline()) {
                    case .failure(let e):
                        self.runnerEvent("refused", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(e.code))])
                        continue
                    case .success(let fd):
                        open = fd
                        connections += 1
                    }
                }
                let last = i == r.count
                let keep = r.keepAlive || (last && r.hold != nil)
                switch HTTPClient.exchange(open, method: r.method, path: r.path, host: hostHeader, keepAlive: keep, until: answerDeadline()) {
                case .success(let response):
                    self.runnerEvent("served", [("server", .string(label)), ("worker", response.worker), ("conn", .number(Double(i))),
                                                ("transport", "http"), ("status", .number(Double(response.status))),
                                                ("connection", .number(Double(connections)))])
                    if !(r.keepAlive && response.keepAlive) && !(last && r.hold != nil) {
                        close(open)
                        open = -1
                    }
                case .failure(let f):
                    self.runnerEvent("unanswered", [("server", .string(label)), ("conn", .number(Double(i))), ("code", .string(f.code)),
                                                    ("transport", "http"), ("detail", .string(f.detail))])
                    close(open)
                    open = -1
                }
            }
            if open >= 0 {
                if r.hold != nil { return [open] }
                Client.finish(open)
            }
            return []
        }
        runClientWork(work, hold: r.hold, background: r.background)
    }

    /// Runs a client step's work now, or on a thread of its own for a background step, and keeps the
    /// connections it returns under the hold name.
    func runClientWork(_ work: @escaping @Sendable () -> [Int32], hold: String?, background: Bool) {
        if background {
            backgroundThreads += 1
            Thread.detachNewThread { [self] in
                let kept = work()
                if let hold { self.backgroundFDs.withLock { $0[hold, default: []] += kept } } else { kept.forEach(Client.finish) }
                self.backgroundDone.add(1, ordering: .sequentiallyConsistent)
                self.log.poke()
            }
        } else {
            let kept = work()
            if let hold { held[hold, default: []] += kept } else { kept.forEach(Client.finish) }
        }
    }

    func datagram(_ d: DatagramStep) throws {
        let endpoint = try endpoint(d.target, udp: true)
        guard case .udp(let host, let port) = endpoint else {
            throw StepFailure(outcome: .fail, message: "datagram needs a UDP server at \(currentStep)")
        }
        switch Client.datagrams(to: host, port: port, count: d.count, payload: d.payload, until: min(deadline, .now + scaled(d.wait))) {
        case .failure(let e):
            runnerEvent("refused", [("server", .string(d.label)), ("code", .string(e.code))])
        case .success(let results):
            for (i, r) in results.enumerated() {
                switch r {
                case .served(let worker, let echo, _):
                    var fields: [(String, JSONValue)] = [("server", .string(d.label)), ("worker", worker), ("conn", .number(Double(i + 1))),
                                                         ("transport", "udp")]
                    if let echo { fields.append(("echo", .string(echo))) }
                    runnerEvent("served", fields)
                case .refused(let code), .unanswered(let code):
                    runnerEvent("unanswered", [("server", .string(d.label)), ("conn", .number(Double(i + 1))), ("code", .string(code))])
                }
            }
        }
    }

    func probe(_ server: String) throws {
        let endpoint = try endpoint(.server(server, worker: nil), udp: servers[server] == "udp")
        let inodes: Set<String>
        switch endpoint {
        case .tcp(_, let port): inodes = SocketProbe.inodes(transport: "tcp", port: port, path: nil)
        case .udp(_, let port): inodes = SocketProbe.inodes(transport: "udp", port: port, path: nil)
        case .unix(let path): inodes = SocketProbe.inodes(transport: "unix", port: nil, path: path, boundFrom: tmpdir)
        }
        let starts = log.snapshot().filter { $0["ev"] == .string("start") && $0["at"] == .string("worker") }
        var holders: [Int] = []
        for e in starts {
            if let w = e["worker"]?.intValue, let pid = e["pid"]?.intValue, SocketProbe.holds(Int32(pid), inodes), !holders.contains(w) {
                holders.append(w)
            }
        }
        let primary = process.map { SocketProbe.holds($0.pid, inodes) } ?? false
        runnerEvent("sockets", [("server", .string(server)), ("primary", .bool(primary)),
                                ("workers", .array(holders.sorted().map { .number(Double($0)) }))])
    }
}
