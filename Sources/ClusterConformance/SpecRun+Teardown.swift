// The end of a spec: shutdown, the orphan invariant, clean-up.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

extension SpecRun {

    /// Shuts the implementation down, checks for orphans, cleans up; returns the invariants that failed.
    func finish(polite: Bool) -> [InvariantViolation] {
        var failures: [InvariantViolation] = []
        if let process {
            if !polite { process.signalGroup(SIGKILL) }
            if process.termination == nil {
                try? process.send(#"{"cmd":"shutdown"}"#)
                let limit = ContinuousClock.now + scaled(5000)
                _ = log.wait(until: limit, stopOnViolation: false) { _ in process.termination != nil ? true : nil }
                if process.termination == nil {
                    failures.append(InvariantViolation(invariant: .shutdown, message: "the primary did not exit within \(Int(5000 * options.timeoutScale)) ms of the shutdown command"))
                }
            }
            // Every process the implementation reported must go by itself.
            var reported: [(String, Int32)] = []
            for e in log.snapshot() {
                guard let pid = e["pid"]?.intValue, e["at"] != .string("runner") else { continue }
                let who = e["at"] == .string("worker") ? "worker \(e["worker"]?.intValue ?? 0)" : "the primary"
                if (e["ev"] == .string("hello") || e["ev"] == .string("start")), !reported.contains(where: { $0.1 == Int32(pid) }) {
                    reported.append((who, Int32(pid)))
                }
            }
            let graceEnd = ContinuousClock.now + scaled(options.orphanGraceMs)
            let running = Set(waitForExit(reported.map(\.1), until: graceEnd))
            for (who, pid) in reported where running.contains(pid) {
                failures.append(InvariantViolation(invariant: .orphans, message: "orphan: \(who) (pid \(pid)) was still running \(Int(Double(options.orphanGraceMs) * options.timeoutScale)) ms after the primary exited"))
                kill(pid, SIGKILL)
            }
            process.signalGroup(SIGKILL)
            let drain = ContinuousClock.now + .seconds(1)
            _ = log.wait(until: drain, stopOnViolation: false) { _ in process.outputClosed ? true : nil }
            process.stopReading()
        }
        control?.stop()
        let drain = ContinuousClock.now + .milliseconds(500)
        _ = log.wait(until: drain, stopOnViolation: false) { _ in self.backgroundIdle ? true : nil }
        for fds in held.values { fds.forEach(Client.finish) }
        for fds in backgroundFDs.withLock({ $0.values }) { fds.forEach(Client.finish) }
        inheritedFDs.forEach { close($0) }
        control?.release()
        if !tmpdir.isEmpty { try? FileManager.default.removeItem(atPath: tmpdir) }
        return failures
    }
}
