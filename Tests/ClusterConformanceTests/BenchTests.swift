import ClusterSpec
import Foundation
import Testing
@testable import ClusterConformance

/// `cluster-conformance bench`: the percentile code with known inputs, the options it refuses, and a smoke run
/// against the Swift implementation and Node whose structure and counts are checked (never a time or a rate).
@Suite("Bench")
struct BenchTests {
    // MARK: - Percentiles and histogram

    @Test("nearest-rank percentiles of known samples")
    func percentiles() {
        let hundred = Array(1...100)
        #expect(Percentiles.nearestRank(hundred, 0.5) == 50)
        #expect(Percentiles.nearestRank(hundred, 0.99) == 99)
        #expect(Percentiles.nearestRank(hundred, 0.999) == 100)
        #expect(Percentiles.nearestRank(hundred, 1) == 100)
        #expect(Percentiles.nearestRank(hundred, 0) == 1)
        #expect(Percentiles.nearestRank([7], 0.5) == 7)
        #expect(Percentiles.nearestRank([7], 0.999) == 7)
        #expect(Percentiles.nearestRank([Int](), 0.5) == nil)
        // Ten samples: the median is the 5th, p99 and p99.9 the 10th.
        let ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]
        #expect(Percentiles.nearestRank(ten, 0.5) == 50)
        #expect(Percentiles.nearestRank(ten, 0.99) == 1000)
        // 1000 samples: p99.9 is the 999th.
        let thousand = Array(1...1000)
        #expect(Percentiles.nearestRank(thousand, 0.999) == 999)
        #expect(Percentiles.nearestRank(thousand, 0.99) == 990)
    }

    @Test("a latency summary of unsorted nanoseconds: microseconds, extremes, mean and histogram")
    func summary() {
        // 1 µs … 100 µs, shuffled.
        let samples = (1...100).map { UInt64($0) * 1000 }.shuffled()
        let s = LatencySummary(nanoseconds: samples)
        #expect(s.count == 100)
        #expect(s.p50 == 50)
        #expect(s.p99 == 99)
        #expect(s.p999 == 100)
        #expect(s.min == 1)
        #expect(s.max == 100)
        #expect(s.mean == 50.5)
        // Buckets: ≤1 µs, ≤2, ≤4, ≤8, ≤16, ≤32, ≤64, ≤128.
        #expect(s.histogram == [1, 1, 2, 4, 8, 16, 32, 36])
        #expect(s.histogram.reduce(0, +) == 100)

        let empty = LatencySummary(nanoseconds: [])
        #expect(empty.count == 0 && empty.p50 == 0 && empty.p999 == 0 && empty.histogram.isEmpty)
        // Sub-microsecond samples fall in the first bucket; 1001 ns rounds up to 2 µs.
        #expect(LatencySummary(nanoseconds: [0, 999, 1000, 1001]).histogram == [3, 1])
    }

    @Test("the worker named by a greeting line, a number or a string")
    func greeting() {
        #expect(LoadClient.workerID(inGreeting: Array(#"{"worker":2,"server":"s"}"#.utf8)) == "2")
        #expect(LoadClient.workerID(inGreeting: Array(#"{"worker":"primary","server":"s"}"#.utf8)) == "primary")
        #expect(LoadClient.workerID(inGreeting: Array(#"{"server":"s","worker":13}"#.utf8)) == "13")
        #expect(LoadClient.workerID(inGreeting: Array(#"{"server":"s"}"#.utf8)) == nil)
    }

    @Test("report number formats")
    func formats() {
        #expect(BenchReport.grouped(0) == "0")
        #expect(BenchReport.grouped(999) == "999")
        #expect(BenchReport.grouped(1000) == "1,000")
        #expect(BenchReport.grouped(1_234_567) == "1,234,567")
        #expect(BenchReport.grouped(-12_345) == "-12,345")
        #expect(BenchReport.bytes(16) == "16 B")
        #expect(BenchReport.bytes(1 << 20) == "1 MiB")
        #expect(BenchReport.microseconds(45.4) == "45 µs")
        #expect(BenchReport.microseconds(12_500) == "12.5 ms")
    }

    // MARK: - Options

    @Test("bad options are exit code 2 with a clear message", arguments: [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--connections=-5"], "--connections must be at least 1"),
        (["--chaos-kills=-1"], "--chaos-kills must not be negative"),
        (["--row", "bogus"], "unknown --row 'bogus' (rows: limit, rr, none, cold-start, memory, descriptors, ipc, chaos)"),
        (["--format", "yaml"], "--format must be table or json"),
        (["--impl", "nosuch"], "--impl nosuch: no implementation 'nosuch'"),
        (["--impl", "node", "--impl", "node"], "--impl node is given twice"),
        (["--impl", "swift", "--reference", "node"], "--reference node is not one of the implementations (swift)"),
    ])
    func badOptions(_ arguments: [String], _ message: String) throws {
        let r = try runCommand([Paths.cli, "bench"] + arguments, cwd: Paths.packageRoot)
        #expect(r.status == 2, "\(r.stderr)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    // MARK: - Implementations that cannot take part

    @Test("an implementation that cannot start, or lacks a benchmark command, has error rows; the bench goes on and exits 0")
    func errorRows() throws {
        // A suite root of its own (Specs/features.yaml marks it), whose fixtures/ holds two fake implementations.
        let root = try temporaryDirectory("bench-errors")
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/Specs", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Paths.specs + "/features.yaml", toPath: root + "/Specs/features.yaml")
        for (name, mode) in [("nobench", "nobench"), ("broken", "crash")] {
            try FileManager.default.createDirectory(atPath: root + "/fixtures/\(name)", withIntermediateDirectories: true)
            try "name: \(name)\ncommand: [python3, \(Paths.fake), \(mode)]\n"
                .write(toFile: root + "/fixtures/\(name)/implementation.yaml", atomically: true, encoding: .utf8)
        }
        let r = try runCommand([Paths.cli, "bench", "--impl", "nobench", "--impl", "broken", "--row", "ipc", "--format", "json"],
                               cwd: root, deadline: 120)
        #expect(r.status == 0, "\(r.stderr)")
        let rows = try #require(try JSONValue.parse(r.stdout)["rows"]?.arrayValue)
        #expect(rows.count == 4)
        for row in rows {
            let error = row["error"]?.stringValue ?? ""
            switch row["impl"]?.stringValue {
            case "nobench": #expect(error.contains("does not know the command 'pingpong' (ERR_UNKNOWN_COMMAND)"), "\(error)")
            case "broken": #expect(error.contains("hello"), "\(error)")  // it dies before the handshake
            default: Issue.record("unexpected row \(row.jsonText)")
            }
            #expect(row["metrics"] == .object(JSONObject()))
        }
        #expect(r.stdout.contains("\"measurement\": \"ipc-1mib\""))
    }

    // MARK: - A smoke run

    @Test("bench --smoke --format json against swift and node: every row, the counts asked, sane numbers")
    func smoke() throws {
        let tmp = try temporaryDirectory("bench")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let markdown = tmp + "/BENCHMARKS.md"
        let clients = 4, perClient = 40
        // A long client deadline: on a loaded machine a slow answer must not count as a hang.
        let r = try runCommand([Paths.cli, "bench", "--smoke", "--format", "json", "--impl", "swift", "--impl", "node",
                                "--clients", "\(clients)", "--connections", "\(perClient)", "--deadline", "20000",
                                "--markdown", markdown], cwd: Paths.packageRoot, deadline: 300)
        #expect(r.status == 0, "\(r.stderr.suffix(3000))")
        let root = try JSONValue.parse(r.stdout)
        let asked = clients * perClient

        let parameters = try #require(root["parameters"])
        #expect(parameters["smoke"] == .bool(true))
        #expect(parameters["loadConnections"]?.intValue == asked)
        let descriptorConnections = try #require(parameters["descriptorConnections"]?.intValue)
        let ipcCount = try #require(parameters["ipcCount"]?.intValue), ipcLargeCount = try #require(parameters["ipcLargeCount"]?.intValue)
        let kills = try #require(parameters["chaosKills"]?.intValue), coldStarts = try #require(parameters["coldStarts"]?.intValue)
        let workers = try #require(parameters["workers"]?.intValue)
        #expect(root["reference"] == .string("node"))

        let impls = try #require(root["implementations"]?.arrayValue)
        #expect(impls.map { $0["impl"]?.stringValue } == ["swift", "node"])
        for impl in impls {
            #expect(impl["version"]?.stringValue?.isEmpty == false, "\(impl.jsonText)")
        }

        let rows = try #require(root["rows"]?.arrayValue)
        func row(_ measurement: String, _ impl: String) throws -> JSONValue {
            let found = rows.filter { $0["measurement"] == .string(measurement) && $0["impl"] == .string(impl) }
            #expect(found.count == 1, "\(measurement) \(impl): \(found.count) rows")
            let row = try #require(found.first)
            #expect(row["error"] == .null, "\(measurement) \(impl): \(row["error"]?.jsonText ?? "")")
            return try #require(row["metrics"])
        }
        func int(_ m: JSONValue, _ key: String) -> Int { m[key]?.intValue ?? -1 }

        // The bench's own accept loop: every connection served.
        let limit = try row("limit", "bench")
        #expect(int(limit, "connections") == asked)
        #expect(int(limit, "attempted") == asked)
        #expect(int(limit, "ok") == asked)
        #expect(int(limit, "errors") == 0)
        #expect(["refused", "lost", "hung", "other"].allSatisfy { int(limit, $0) == 0 })
        #expect(rows.filter { $0["measurement"] == .string("limit") }.count == 1)

        for impl in ["swift", "node"] {
            for kind in ["rr", "none"] {
                let m = try row(kind, impl)
                #expect(int(m, "connections") == asked, "\(kind) \(impl)")
                #expect(int(m, "attempted") == asked, "\(kind) \(impl)")
                #expect(int(m, "ok") + int(m, "errors") == asked, "\(kind) \(impl)")
                #expect(int(m, "refused") + int(m, "lost") + int(m, "hung") + int(m, "other") == int(m, "errors"), "\(kind) \(impl)")
                // Every served connection named its worker; the fixture reported each connection it accepted.
                let perWorker = m["perWorker"].flatMap { v -> [Int]? in
                    if case .object(let o) = v { return o.members.compactMap { $0.value.intValue } }
                    return nil
                } ?? []
                #expect(perWorker.reduce(0, +) == int(m, "ok"), "\(kind) \(impl)")
                #expect(perWorker.count <= workers, "\(kind) \(impl)")
                #expect(int(m, "connectionEvents") >= int(m, "ok"), "\(kind) \(impl)")
                #expect(m["histogramUs"]?.arrayValue?.compactMap(\.intValue).reduce(0, +) == int(m, "ok"), "\(kind) \(impl)")
            }

            let memory = try row("memory", impl)
            #expect(int(memory, "primaryKB") > 0)
            let workerKB = memory["workersKB"]?.arrayValue?.compactMap(\.intValue) ?? []
            #expect(workerKB.count == workers, "\(impl)")
            #expect(workerKB.allSatisfy { $0 > 0 }, "\(impl)")
            #expect(int(memory, "workerMedianKB") > 0)

            let descriptors = try row("descriptors", impl)
            #expect(int(descriptors, "connections") == descriptorConnections, "\(impl)")
            #expect(int(descriptors, "primaryBefore") > 0)
            #expect(int(descriptors, "primaryAfter") > 0)
            #expect(int(descriptors, "growth") == int(descriptors, "primaryAfter") - int(descriptors, "primaryBefore"))

            let small = try row("ipc-small", impl), large = try row("ipc-1mib", impl)
            #expect(int(small, "count") == ipcCount, "\(impl)")
            #expect(int(small, "bytes") == 16)
            #expect(int(large, "count") == ipcLargeCount, "\(impl)")
            #expect(int(large, "bytes") == 1 << 20)
            #expect(small["latencyUs"]?["p50"] != nil && large["latencyUs"]?["p99"] != nil)

            let chaos = try row("chaos", impl)
            #expect(int(chaos, "kills") == kills, "\(impl)")
            #expect(int(chaos, "replacements") >= kills, "\(impl)")
            #expect(int(chaos, "ok") + int(chaos, "lost") + int(chaos, "hung") + int(chaos, "refused") + int(chaos, "other")
                    == int(chaos, "attempted"), "\(impl)")

            let cold = try row("cold-start", impl)
            #expect(int(cold, "trials") == coldStarts, "\(impl)")
            #expect(cold["samplesMs"]?.arrayValue?.count == coldStarts, "\(impl)")
        }
        // Ratios are within the run: the reference's own rows are 1.
        for r in rows where r["impl"] == .string("node") && ["rr", "none", "memory", "ipc-small"].contains(r["measurement"]?.stringValue ?? "") {
            #expect(r["ratio"] == .number(1), "\(r["measurement"]?.jsonText ?? "")")
        }

        // The document: machine, versions, the command line, parameters, tables and ratios.
        let doc = try String(contentsOfFile: markdown, encoding: .utf8)
        for heading in ["# Benchmarks", "## Machine", "## Versions", "## Command", "## Parameters", "## Results", "## Ratios to `node`",
                        "## What the rows measure", "swift run -c release cluster-conformance bench"] {
            #expect(doc.contains(heading), "\(heading)")
        }
        #expect(doc.contains("--impl swift --impl node"))
        #expect(doc.contains("| rr | swift 0.1.0 |") || doc.contains("| rr | swift "))
    }
}
