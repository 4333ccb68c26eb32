// The command/ack protocol with the fixture: commands to the primary (stdin) or a worker (control socket), and waiting for events.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SpecRun {

    func sendToPrimary(_ command: JSONObject) throws {
        guard let process else { throw StepFailure(outcome: .error, message: "no process") }
        if let t = process.termination {
            throw StepFailure(outcome: .fail, message: "the primary already exited (\(t)) before \(currentStep)")
        }
        do { try process.send(JSONValue.object(command).jsonText) } catch {
            throw StepFailure(outcome: .fail, message: "cannot write to the primary's stdin before \(currentStep): \(error)")
        }
    }

    /// Sends a command to its recipient (the primary on stdin, a worker on its control connection) and waits
    /// for its ack unless the command is not acknowledged (`exit`).
    @discardableResult
    func command(_ wire: WireCommand, step: Step) throws -> Event? {
        let name = wire.name, ack = wire.acknowledged
        let worker: Int? = if case .worker(let w) = wire.recipient { w } else { nil }
        seq += 1
        let n = seq
        acks.withLock { $0[n] = name }
        let command = wire.json(seq: n)
        if let worker {
            guard let control else { throw StepFailure(outcome: .error, message: "no control server") }
            guard let fd = control.connection(for: worker, until: deadline) else {
                if control.isClosed(worker) {
                    throw StepFailure(outcome: .fail, message: "worker \(worker) is gone; cannot send '\(name)' at \(currentStep)")
                }
                throw timeout("waiting for worker \(worker) to connect to the control socket")
            }
            do { try writeAll(fd, Array((JSONValue.object(command).jsonText + "\n").utf8)) } catch {
                throw StepFailure(outcome: .fail, message: "worker \(worker) is gone (\(error.code)); cannot send '\(name)' at \(currentStep)")
            }
        } else {
            try sendToPrimary(command)
        }
        guard ack else { return nil }
        let reply = try waitForEvent("the ack of '\(name)' (seq \(n))" + (worker.map { " from worker \($0)" } ?? " from the primary"),
                                     primaryMatters: worker == nil) {
            $0["ev"] == .string("ack") && $0["seq"]?.intValue == n
        }
        let code = reply["error"]?["code"]?.stringValue ?? (reply["error"] != nil ? "unknown" : nil)
        switch (code, step.expectError) {
        case (nil, nil): break
        case (let c?, nil):
            throw StepFailure(outcome: .fail, message: "'\(name)' failed at \(currentStep) with \(c): \(reply.line)")
        case (nil, let e?):
            throw StepFailure(outcome: .fail, message: "expected '\(name)' to fail with \(e) at \(currentStep), but it succeeded: \(reply.line)")
        case (let c?, let e?):
            if e != "any" && e != c {
                throw StepFailure(outcome: .fail, message: "expected '\(name)' to fail with \(e) at \(currentStep), got \(c): \(reply.line)")
            }
        }
        return reply
    }

    /// Waits for the first event (in the whole log) satisfying `test`.
    func waitForEvent(_ what: String, primaryMatters: Bool = true, _ test: @escaping (Event) -> Bool) throws -> Event {
        let process = self.process
        let found: Event? = log.wait(until: deadline) { new in
            if let e = new.first(where: test) { return e }
            return nil
        }
        if let found { return found }
        if let violation = log.violation { throw StepFailure(outcome: .error, message: "protocol violation: \(violation)") }
        if primaryMatters, let t = process?.termination {
            throw StepFailure(outcome: sawHello.load(ordering: .sequentiallyConsistent) ? .fail : .error,
                              message: "the primary exited (\(t)) while the runner was waiting for \(what) at \(currentStep)")
        }
        throw timeout("waiting for \(what)")
    }

    func timeout(_ what: String) -> StepFailure {
        StepFailure(outcome: .fail, message: "timed out after \(Int(Double(spec.timeout) * options.timeoutScale)) ms at \(currentStep), \(what)")
    }
}
