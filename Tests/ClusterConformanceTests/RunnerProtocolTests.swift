import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// Protocol 2 against fake implementations (FakeFixtures/fake.py): long events from several processes at
/// once arrive whole; a fixture that breaks the framing or answers HTTP with garbage is an outcome, never a
/// runner crash or hang; an invariant deviation stated once hides no spec's own result.
@Suite("Runner: protocol 2", .serialized, .enabled(if: onPath("python3")))
struct RunnerProtocolTests {
    func run(_ mode: String, _ yaml: String, expectations: Expectations? = nil) throws -> SpecResult {
        let impl = Implementation(command: ["python3", Paths.fake, mode], name: "fake-\(mode)")
        let s = try spec(yaml)
        let result: SpecResult
        if let expectations {
            let info = ImplementationInfo(name: "fake-\(mode)", version: "0", features: ["fork", "messaging", "listen.http"])
            result = SuiteRunner(implementation: impl, info: info, options: RunOptions(), jobs: 1, repeats: 1, expectations: expectations).run(s)
        } else {
            result = SpecRun(spec: s, implementation: impl, options: RunOptions()).run()
        }
        // Every mode completes the handshake, so the check below is never over an empty list.
        #expect(!reportedPIDs(result).isEmpty, "no pid reported (\(mode))")
        for pid in reportedPIDs(result) { #expect(!processIsAlive(pid), "pid \(pid) outlived the spec run (\(mode))") }
        return result
    }

    static let bigEvents = """
        id: fake.big-events
        description: four processes write a 3 MiB event at the same time
        refs: [{doc: api/cluster, anchor: workersendmessage-sendhandle-options-callback}]
        basis: documented
        behaviours: [MSG-01]
        features: [fork]
        timeout: 20000
        setup:
          payloads: {BIG: 3145728}
        steps:
          - send: {to: 1, message: $BIG}
          - await: {ev: message, count: 4}
        expect:
          - events: {ev: message}
            count: 4
            each: {message: $BIG}
          - events: {ev: message, at: worker}
            groups: {by: worker, counts: {1: 1, 2: 1, 3: 1}}
        """

    @Test("multi-MiB events written by several processes at once arrive whole")
    func bigEventsFromSeveralProcesses() throws {
        for _ in 0..<3 {
            let r = try run("bigevents", Self.bigEvents)
            #expect(r.outcome == .pass, "\(r.messages.map { Judge.shortened($0) })")
        }
    }

    static let quiet = """
        id: fake.quiet
        description: the handshake only
        refs: [{doc: api/cluster, anchor: how-it-works}]
        basis: documented
        behaviours: [LIFE-01]
        features: [fork]
        timeout: 3000
        steps:
          - fork: 1
        expect:
          - events: {ev: fork}
        """

    @Test("framing faults are protocol violations, reported as errors", arguments: [
        ("unframed", "must be framed as part lines"),
        ("badpart", "not base64"),
        ("cutpart", "in the middle of a framed event"),
    ])
    func framingFaults(_ mode: String, _ message: String) throws {
        let r = try run(mode, Self.quiet)
        #expect(r.outcome == .error)
        #expect(r.messages.contains { $0.contains(message) }, "\(r.messages)")
    }

    @Test("a malformed HTTP response is logged as unanswered with the reason, and fails the spec")
    func malformedHTTP() throws {
        let r = try run("badhttp", """
            id: fake.bad-http
            description: the fake's HTTP server answers garbage
            refs: [{doc: api/http, anchor: class-httpserver}]
            basis: documented
            behaviours: [MISC-02]
            features: [fork]
            timeout: 5000
            steps:
              - listen: {primary: true, server: p, http: {host: 127.0.0.1, port: 0}}
              - await: {ev: listening, server: p}
              - request: {server: p, count: 2, wait: 2000}
            expect:
              - events: {ev: served, server: p}
                count: 2
            """)
        #expect(r.outcome == .fail, "\(r.messages)")
        let unanswered = r.events.filter { $0["ev"] == .string("unanswered") }
        #expect(unanswered.count == 2, "\(r.messages) \(r.events.map(\.line))")
        #expect(unanswered.allSatisfy { $0["code"] == .string("EPROTO") && $0["detail"]?.stringValue?.contains("Content-Length") == true },
                "\(unanswered.map(\.line))")
    }

    @Test("with retries, an unexpected failure runs again; a later pass stands, labelled retried, with the failure kept")
    func retries() throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("flaky-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let impl = Implementation(command: ["python3", Paths.fake, "flaky", marker], name: "fake-flaky")
        let info = ImplementationInfo(name: "fake-flaky", version: "0", features: ["fork"])
        var options = RunOptions()
        let s = try spec(Self.quiet)
        let once = SuiteRunner(implementation: impl, info: info, options: options, jobs: 1, repeats: 1).run(s)
        #expect(once.outcome == .error)
        #expect(once.failedAttempts.isEmpty)

        try FileManager.default.removeItem(atPath: marker)
        options.retries = 1
        let retried = SuiteRunner(implementation: impl, info: info, options: options, jobs: 1, repeats: 1).run(s)
        #expect(retried.outcome == .pass, "\(retried.messages)")
        #expect(retried.failedAttempts.count == 1)
        #expect(retried.label == "pass · retried")
        #expect(retried.messages.contains { $0.hasPrefix("attempt 1 failed:") })
    }

    static let orphanPasses = """
        id: fake.orphan-passes
        description: the fake forks one worker that outlives it
        refs: [{doc: api/cluster, anchor: clusterforkenv}]
        basis: documented
        behaviours: [LIFE-02]
        features: [fork]
        timeout: 3000
        steps:
          - fork: 1
          - await: {ev: fork, at: primary}
        expect:
          - events: {ev: fork, at: primary}
            count: 1
        """

    @Test("an orphan fails the spec unless the expectations file states the invariant deviation; then the spec's own result shows")
    func invariantsApart() throws {
        let stated = Expectations([:], invariants: [.orphans: KnownDeviation(expected: .flaky, reason: "workers outlive the primary")])
        let plain = try run("orphan", Self.orphanPasses, expectations: Expectations())
        #expect(plain.outcome == .fail)
        #expect(plain.messages.contains { $0.hasPrefix("orphan:") })

        let waived = try run("orphan", Self.orphanPasses, expectations: stated)
        #expect(waived.outcome == .pass, "\(waived.messages)")
        #expect(waived.label == "pass · orphans")

        // The same deviation does not hide the spec's own failure.
        let failing = try run("orphan", Self.orphanPasses.replacingOccurrences(of: "count: 1", with: "count: 2"), expectations: stated)
        #expect(failing.outcome == .fail)
        #expect(failing.label == "fail · orphans")
        #expect(failing.messages.contains { $0.contains("exactly 2 events") })
    }
}
