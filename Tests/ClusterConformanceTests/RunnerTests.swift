import ClusterSpec
import Foundation
import Synchronization
import Testing
@testable import ClusterConformance

/// The runner against fake implementations that misbehave on purpose (FakeFixtures/fake.py). Whatever an
/// implementation does, the runner ends with an outcome and leaves no process behind.
@Suite("Runner against misbehaving implementations", .serialized, .enabled(if: onPath("python3")))
struct RunnerTests {
    static let forkSpec = """
        id: fake.fork
        description: the fake forks one worker
        refs: [{doc: api/cluster, anchor: clusterforkenv}]
        basis: documented
        behaviours: [LIFE-02]
        features: [fork]
        timeout: 1500
        steps:
          - fork: 1
          - await: {ev: fork, at: primary}
        expect:
          - events: {ev: fork, at: primary, on: cluster}
            count: 1
            each: {worker: 1}
        """

    func run(_ mode: String, _ yaml: String = forkSpec) throws -> SpecResult {
        let impl = Implementation(command: ["python3", Paths.fake, mode], name: "fake-\(mode)")
        let result = SpecRun(spec: try spec(yaml), implementation: impl, options: RunOptions()).run()
        // The check below is over the reported pids: every mode but the crash reports at least the primary's.
        #expect(mode == "crash" || !reportedPIDs(result).isEmpty, "no pid reported (\(mode))")
        for pid in reportedPIDs(result) {
            #expect(!processIsAlive(pid), "pid \(pid) outlived the spec run (\(mode))")
        }
        return result
    }

    @Test("implementations run from one shared pool each get their own begin, results, end and summary")
    func sharedPool() throws {
        let specs = try (1...3).map { n in try spec(Self.forkSpec.replacingOccurrences(of: "id: fake.fork", with: "id: fake.fork.\(n)")) }
        let recorders = [Recorder(), Recorder()]
        let shares = try zip(["good", "crash"], recorders).map { mode, recorder in
            let impl = Implementation(command: ["python3", Paths.fake, mode], name: "fake-\(mode)")
            // The crashing fake has no handshake to give: its runner is told what a handshake would say.
            let info = mode == "good" ? try impl.probe(options: RunOptions()).get()
                : ImplementationInfo(name: "fake-crash", version: "0", features: ["fork"])
            return SuiteRunner.Share(runner: SuiteRunner(implementation: impl, info: info, options: RunOptions(), jobs: 1, repeats: 2),
                                     specs: specs, reporter: recorder)
        }
        let summaries = SuiteRunner.run(shares, jobs: 3)
        #expect(summaries.map(\.passed) == [6, 0])
        #expect(summaries.map(\.errors) == [0, 6])
        #expect(summaries.allSatisfy { $0.specs == 3 && $0.repeats == 2 })
        for recorder in recorders {
            let calls = recorder.calls.withLock { $0 }
            #expect(calls.first == "begin 3×2 jobs 3")
            #expect(calls.last == "end")
            #expect(calls.dropFirst().dropLast().sorted() == ["fake.fork.1 1", "fake.fork.1 2", "fake.fork.2 1", "fake.fork.2 2", "fake.fork.3 1", "fake.fork.3 2"])
        }
    }

    /// Every reporter call, in order.
    final class Recorder: Reporter {
        let calls = Mutex<[String]>([])
        func begin(implementation: ImplementationInfo, specs: Int, repeats: Int, jobs: Int) {
            calls.withLock { $0.append("begin \(specs)×\(repeats) jobs \(jobs)") }
        }
        func result(_ result: SpecResult, iteration: Int) { calls.withLock { $0.append("\(result.id) \(iteration)") } }
        func end(_ summary: Summary) { calls.withLock { $0.append("end") } }
    }

    @Test("an implementation that speaks the protocol passes")
    func good() throws {
        let r = try run("good")
        #expect(r.outcome == .pass, "\(r.messages)")
        #expect(r.events.contains { $0["ev"] == .string("exited") && $0["code"] == .number(0) })
    }

    @Test("an expectation that does not hold fails the spec and says what was observed")
    func failingExpectation() throws {
        let r = try run("good", Self.forkSpec.replacingOccurrences(of: "count: 1", with: "count: 2"))
        #expect(r.outcome == .fail)
        #expect(r.messages.count == 1)
        #expect(r.messages.first?.contains("expected exactly 2 events matching {ev: \"fork\", at: \"primary\", on: \"cluster\"}") == true)
        #expect(r.messages.first?.contains("observed 1") == true)
    }

    @Test("a crash before the handshake is an error that quotes stderr")
    func crash() throws {
        let r = try run("crash")
        #expect(r.outcome == .error)
        #expect(r.messages.first?.contains("exited (code 3)") == true, "\(r.messages)")
        #expect(r.stderrTail.contains("crashing on purpose"))
    }

    @Test("a hang ends at the spec's time budget with the last events quoted")
    func hang() throws {
        let started = ContinuousClock.now
        let r = try run("hang")
        #expect(r.outcome == .fail)
        #expect(r.messages.first?.hasPrefix("timed out after 1500 ms at step 1 (fork") == true, "\(r.messages)")
        #expect(r.logTail.contains { $0.contains("\"ev\": \"start\"") || $0.contains("\"ev\":\"start\"") })
        // The budget plus the kill, not the polite shutdown wait.
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("a line that is not JSON is a protocol violation quoting the line")
    func garbage() throws {
        let r = try run("garbage")
        #expect(r.outcome == .error)
        #expect(r.messages.contains { $0.contains("'this is not a protocol line'") }, "\(r.messages)")
    }

    @Test("a flood of events is stopped and reported")
    func flood() throws {
        // The flood is stopped by its size, whatever the machine's speed: a budget it cannot run out of.
        let r = try run("flood", Self.forkSpec.replacingOccurrences(of: "timeout: 1500", with: "timeout: 60000"))
        #expect(r.outcome == .error)
        #expect(r.messages.contains { $0.contains("flooded") }, "\(r.messages)")
    }

    @Test("a process that outlives the primary is an orphan, and is killed")
    func orphan() throws {
        let r = try run("orphan")
        #expect(r.outcome == .fail)
        #expect(r.messages.contains { $0.hasPrefix("orphan: worker 1") }, "\(r.messages)")
        #expect(reportedPIDs(r).count == 3)  // hello, primary start, worker start
    }

    @Test("another protocol version is refused")
    func oldProtocol() throws {
        let r = try run("old-protocol")
        #expect(r.outcome == .error)
        #expect(r.messages.first?.contains("protocol 0 not supported") == true, "\(r.messages)")
    }

    @Test("a primary that exits mid-spec fails the step it was in")
    func exitsMidway() throws {
        let r = try run("exits")
        #expect(r.outcome == .fail)
        #expect(r.messages.first?.contains("the primary exited (code 5)") == true, "\(r.messages)")
    }
}
