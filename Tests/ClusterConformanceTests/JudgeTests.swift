import ClusterSpec
import Testing
@testable import ClusterConformance

/// A log from JSON lines.
func log(_ lines: String...) -> [Event] {
    lines.map { line in
        guard case .object(let o) = try! JSONValue.parse(line) else { fatalError("not an object: \(line)") }
        return Event(fields: o, line: line)
    }
}

/// The expectations of a spec written inline.
func expectations(_ yaml: String) throws -> [ClusterSpec.Expectation] {
    try spec("""
        id: judge.case
        description: expectations under test
        refs: [{doc: api/cluster, anchor: how-it-works}]
        basis: documented
        behaviours: [LIFE-02]
        features: [fork]
        setup: {ports: [P]}
        steps: [{fork: 1}]
        expect:
        \(yaml)
        """).expect
}

func failures(_ yaml: String, _ events: [Event], _ vars: [String: JSONValue] = [:]) throws -> [String] {
    Judge.failures(of: try expectations(yaml), in: events, variables: vars).map(\.description)
}

let threeListening = log(
    #"{"ev":"fork","at":"primary","worker":1}"#,
    #"{"ev":"listening","at":"primary","worker":1,"port":4000,"addressType":4}"#,
    #"{"ev":"listening","at":"primary","worker":2,"port":4000,"addressType":4}"#,
    #"{"ev":"listening","at":"primary","worker":3,"port":4000,"addressType":4,"fd":7}"#
)

@Suite("Expectation engine")
struct JudgeTests {
    @Test("count: exactly, range, default at least one")
    func counts() throws {
        #expect(try failures("  - {events: {ev: listening}, count: 3}", threeListening).isEmpty)
        #expect(try failures("  - {events: {ev: listening}, count: 2}", threeListening).count == 1)
        #expect(try failures("  - {events: {ev: listening}, count: {$min: 2, $max: 3}}", threeListening).isEmpty)
        #expect(try failures("  - {events: {ev: listening}, count: {$max: 2}}", threeListening).count == 1)
        #expect(try failures("  - {events: {ev: exit}}", threeListening) != [])
    }

    @Test("never")
    func never() throws {
        #expect(try failures("  - {never: {ev: exit}}", threeListening).isEmpty)
        let f = try failures("  - {never: {ev: listening, worker: 2}}", threeListening)
        #expect(f.count == 1)
        #expect(f[0].contains(#""worker":2"#))
    }

    @Test("each names the failing field and its value")
    func each() throws {
        #expect(try failures("  - {events: {ev: listening}, each: {port: {$min: 1}, addressType: 4}}", threeListening).isEmpty)
        let f = try failures("  - {events: {ev: listening}, each: {fd: {$absent: true}}}", threeListening)
        #expect(f.count == 1)
        #expect(f[0].contains("fd is 7, not {$absent: true}"))
    }

    @Test("same and distinct")
    func sameDistinct() throws {
        #expect(try failures("  - {events: {ev: listening}, same: [port], distinct: [worker]}", threeListening).isEmpty)
        #expect(try failures("  - {events: {ev: listening}, same: [worker]}", threeListening).count == 1)
        #expect(try failures("  - {events: {ev: listening}, distinct: [port]}", threeListening).count == 1)
    }

    @Test("sequence: in order, other events between are fine")
    func sequence() throws {
        #expect(try failures("  - sequence: [{ev: fork}, {ev: listening, worker: 3}]", threeListening).isEmpty)
        let f = try failures("  - sequence: [{ev: listening, worker: 3}, {ev: fork}]", threeListening)
        #expect(f.count == 1)
        #expect(f[0].contains("after that; it occurs earlier"))
    }

    @Test("groups: exact counts, absent values count zero, extra values fail")
    func groups() throws {
        let served = log(
            #"{"ev":"served","worker":2}"#, #"{"ev":"served","worker":3}"#, #"{"ev":"served","worker":3}"#)
        #expect(try failures("  - {events: {ev: served}, groups: {by: worker, counts: {1: 0, 2: 1, 3: 2}}}", served).isEmpty)
        #expect(try failures("  - {events: {ev: served}, groups: {by: worker, counts: {2: 1}}}", served).count == 1)
        #expect(try failures("  - {events: {ev: served}, groups: {by: worker, each: 1}}", served).count == 1)
    }

    @Test("cycle: strict rotation only")
    func cycle() throws {
        let rotating = log(#"{"w":1}"#, #"{"w":2}"#, #"{"w":3}"#, #"{"w":1}"#, #"{"w":2}"#, #"{"w":3}"#, #"{"w":1}"#)
        let broken = log(#"{"w":1}"#, #"{"w":2}"#, #"{"w":3}"#, #"{"w":2}"#, #"{"w":1}"#, #"{"w":3}"#)
        #expect(try failures("  - {events: {w: {$type: number}}, cycle: w}", rotating).isEmpty)
        #expect(try failures("  - {events: {w: {$type: number}}, cycle: w}", broken).count == 1)
    }

    @Test("forEach repeats the expectation per value and says which failed")
    func forEach() throws {
        let f = try failures("  - {events: {ev: listening}, count: 1, forEach: {worker: [1, 2, 4]}}", threeListening)
        #expect(f.count == 1)
        #expect(f[0].contains("(for worker: 4)"))
    }

    @Test("predicates", arguments: [
        ("{$not: 0}", "4000", true), ("{$not: 4000}", "4000", false), ("{$not: 0}", nil, true),
        ("{$oneOf: [1, 4000]}", "4000", true), ("{$oneOf: [1, 2]}", "4000", false),
        ("{$min: 1, $max: 65535}", "4000", true), ("{$min: 5000}", "4000", false), ("{$min: 1}", "\"4000\"", false),
        ("{$absent: true}", nil, true), ("{$absent: false}", nil, false), ("{$absent: false}", "null", true),
        ("{$type: null}", "null", true), ("{$type: list}", "[1]", true), ("{$type: object}", "[1]", false),
        ("{$contains: 2}", "[1,2]", true), ("{$contains: 3}", "[1,2]", false),
        ("[1, {$min: 2}]", "[1,3]", true), ("[1]", "[1,3]", false),
        ("{a: 1}", "{\"a\":1,\"b\":2}", true), ("{a: {$absent: true}}", "{\"b\":2}", true), ("{a: 1}", "1", false),
        ("null", "null", true), ("null", nil, false), ("3", "3.0", true), ("\"3\"", "3", false),
        ("$P", "8080", true), ("$P", "\"$P\"", false), ("$$P", "\"$P\"", true),
    ] as [(String, String?, Bool)])
    func predicate(_ written: String, _ observed: String?, _ holds: Bool) throws {
        let event = observed.map { log("{\"ev\":\"x\",\"f\":\($0)}") } ?? log(#"{"ev":"x"}"#)
        let f = try failures("  - {events: {ev: x, f: \(written)}}", event, ["P": .number(8080)])
        #expect(f.isEmpty == holds, "\(written) against \(observed ?? "absent"): \(f)")
    }
}
