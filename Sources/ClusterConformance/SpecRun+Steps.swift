// Performing each step of a spec.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SpecRun {

    func workerIDs(_ selection: WorkerSelection) -> [Int] {
        switch selection {
        case .ids(let ids): return ids
        case .all:
            let exited = Set(log.snapshot().filter { $0["ev"] == .string("exit") && $0["at"] == .string("primary") }
                .compactMap { $0["worker"]?.intValue })
            return forked.filter { !exited.contains($0) }
        }
    }

    /// The pid a process reported (`worker` nil: the primary).
    func pid(of worker: Int?) -> Int32? {
        if worker == nil { return process?.pid }
        return log.snapshot().last { $0["ev"] == .string("start") && $0["at"] == .string("worker") && $0["worker"]?.intValue == worker }?["pid"]?
            .intValue.map(Int32.init)
    }

    /// The processes a step addresses, as (worker id or nil for the primary, pid).
    func pids(of target: ProcessTarget) throws -> [(Int?, Int32)] {
        let targets: [Int?] = switch target {
        case .primary: [nil]
        case .workers(let sel): workerIDs(sel).map { Optional($0) }
        }
        return try targets.map { t in
            guard let pid = pid(of: t) else {
                throw StepFailure(outcome: .fail, message: "worker \(t ?? 0) reported no pid (no start event) before \(currentStep)")
            }
            return (t, pid)
        }
    }

    func resolve(_ v: JSONValue) -> JSONValue { Variables.substitute(v, variables) }

    func runnerEvent(_ ev: String, _ fields: [(String, JSONValue)]) {
        log.append(Event(fields: JSONObject([("ev", .string(ev)), ("at", .string("runner"))] + fields)))
    }

    func perform(_ step: Step) throws {
        if case .listen(_, let server, let target, _, _, _) = step.kind { servers[server] = target.transport }
        if let commands = CommandEncoding.commands(for: step.kind, workers: workerIDs, resolve: resolve) {
            for c in commands {
                let ack = try command(c, step: step)
                if c.name == "fork", let id = ack?["result"]?["worker"]?.intValue { forked.append(id) }
            }
            return
        }
        switch step.kind {
        case .fork, .setupPrimary, .setPolicy, .listen, .close, .maxConnections, .send, .disconnect, .disconnectAll, .kill,
             .exit, .block, .chdir, .ref, .unrefChannel, .report:
            preconditionFailure("\(step.name.rawValue) is a command step")
        case .signal(let target, let name):
            guard let sig = Signals.number(name) else { throw StepFailure(outcome: .fail, message: "unknown signal \(name)") }
            for (_, pid) in try pids(of: target) { kill(pid, sig) }
        case .closeInput:
            process?.closeInput()
        case .await(let selector, let count):
            try awaitEvents(Variables.substitute(selector, variables), count: count)
        case .gone(let workers, let within):
            try awaitGone(workerIDs(workers), within: within)
        case .connect(let c):
            try connect(c)
        case .request(let r):
            try request(r)
        case .datagram(let d):
            try datagram(d)
        case .release(let name):
            let fds = (held.removeValue(forKey: name) ?? []) + (backgroundFDs.withLock { $0.removeValue(forKey: name) } ?? [])
            fds.forEach(Client.finish)
        case .probe(let server):
            try probe(server)
        case .descriptors(let target):
            for (t, pid) in try pids(of: target) {
                let count = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
                var fields: [(String, JSONValue)] = [("process", .string(t == nil ? "primary" : "worker"))]
                if let t { fields.append(("worker", .number(Double(t)))) }
                fields.append(("count", .number(Double(count))))
                runnerEvent("descriptors", fields)
            }
        case .stat(let path):
            runnerEvent("stat", [("path", .string(path))] + FileFacts.of(tmpdir + "/" + path))
        case .capture(let name, let selector, let field):
            let sel = Variables.substitute(selector, variables)
            guard let event = log.snapshot().last(where: { Judge.matches(sel, $0) }) else {
                throw StepFailure(outcome: .fail, message: "nothing to capture at \(currentStep): no event matches \(Judge.render(sel))")
            }
            guard let value = event[field] else {
                throw StepFailure(outcome: .fail, message: "the event has no field '\(field)' to capture at \(currentStep): \(event.line)")
            }
            variables[name] = value
        }
    }

    func awaitEvents(_ selector: Selector, count: Int) throws {
        var matched = 0
        let process = self.process
        let ok: Bool? = log.wait(until: deadline) { new in
            matched += new.lazy.filter { Judge.matches(selector, $0) }.count
            if matched >= count { return true }
            // Nothing more can arrive once the primary is gone and every process closed stdout.
            if let process, process.termination != nil, process.outputClosed, self.backgroundIdle { return false }
            return nil
        }
        if ok == true { return }
        if let violation = log.violation { throw StepFailure(outcome: .error, message: "protocol violation: \(violation)") }
        let what = "\(count) event\(count == 1 ? "" : "s") matching \(Judge.render(selector)) (saw \(matched))"
        if ok == false {
            throw StepFailure(outcome: .fail, message: "the implementation ended (\(process?.termination?.description ?? "?")) before \(currentStep) saw \(what)")
        }
        throw timeout("waiting for \(what)")
    }

    var backgroundIdle: Bool { backgroundDone.load(ordering: .sequentiallyConsistent) == backgroundThreads }

    func awaitGone(_ workers: [Int], within: Int) throws {
        let limit = min(deadline, .now + scaled(within))
        var pids: [Int32: Int] = [:]
        for w in workers {
            guard let pid = pid(of: w) else { throw StepFailure(outcome: .fail, message: "worker \(w) reported no pid before \(currentStep)") }
            pids[pid] = w
        }
        let started = ContinuousClock.now
        let running = Set(waitForExit(Array(pids.keys), until: limit))
        for (pid, w) in pids.sorted(by: { $0.value < $1.value }) where !running.contains(pid) {
            runnerEvent("gone", [("worker", .number(Double(w))), ("pid", .number(Double(pid)))])
        }
        if !running.isEmpty {
            let ms = (ContinuousClock.now - started).components.seconds * 1000
            throw StepFailure(outcome: .fail, message: "worker(s) \(running.sorted().map { "\(pids[$0]!) (pid \($0))" }.joined(separator: ", ")) still running \(ms) ms later at \(currentStep) (allowed: \(within) ms)")
        }
    }
}
