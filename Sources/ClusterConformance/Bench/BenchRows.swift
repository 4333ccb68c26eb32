// What the bench measures and what it found: measurements, parameters, rows.

import ClusterSpec

/// One kind of row of the bench.
public enum BenchMeasurement: String, CaseIterable, Sendable {
    /// The client against the bench's own accept loop (once per run).
    case limit
    /// Short connections under round-robin.
    case rr
    /// Short connections under the shared handle.
    case none
    /// Spawn of the fixture to the N-th worker listening.
    case coldStart = "cold-start"
    /// Idle RSS of the primary and the workers.
    case memory
    /// The primary's descriptors before and after many round-robin connections.
    case descriptors
    /// IPC round-trips of small messages.
    case ipcSmall = "ipc-small"
    /// IPC round-trips of 1 MiB messages.
    case ipcLarge = "ipc-1mib"
    /// Round-robin load while workers are killed and re-forked.
    case chaos

    /// The names `--row` accepts (`ipc` selects both IPC rows).
    public static let selectable = ["limit", "rr", "none", "cold-start", "memory", "descriptors", "ipc", "chaos"]

    /// The measurements a `--row` name selects.
    public static func selected(by name: String) -> [BenchMeasurement]? {
        if name == "ipc" { return [.ipcSmall, .ipcLarge] }
        return BenchMeasurement(rawValue: name).map { [$0] }
    }

    /// The metric ratios compare, and whether more of it is better; nil when a ratio means nothing.
    public var headline: (metric: String, higherIsBetter: Bool)? {
        switch self {
        case .limit, .rr, .none: ("connPerS", true)
        case .coldStart: ("medianMs", false)
        case .memory: ("workerMedianKB", false)
        case .ipcSmall, .ipcLarge: ("roundTripsPerS", true)
        case .descriptors, .chaos: nil
        }
    }
}

/// The knobs of a bench run.
public struct BenchParameters: Sendable {
    /// Workers per fixture (N).
    public var workers = 2
    /// Concurrent client threads (C).
    public var clients = 8
    /// Sequential connections per client thread (M) in the limit, rr and none rows.
    public var connections = 2500
    /// Cold-start trials (K); the row is their median.
    public var coldStarts = 10
    /// Idle time before RSS is read, milliseconds.
    public var settleMs = 1000
    /// Round-robin connections between the two descriptor counts.
    public var descriptorConnections = 100_000
    /// Round-trips of small messages, and their `data` size in bytes.
    public var ipcCount = 10_000
    public var ipcSmallBytes = 16
    /// Round-trips of large messages, and their `data` size in bytes.
    public var ipcLargeCount = 100
    public var ipcLargeBytes = 1 << 20
    /// Milliseconds between two kills, and the number of kills, in the chaos row.
    public var chaosIntervalMs = 200
    public var chaosKills = 20
    /// The client's deadline for each step of a connection (connect, greeting, end of stream), milliseconds.
    public var deadlineMs = 3000
    /// Whether the counts are the smoke run's.
    public var smoke = false
    /// The rows to produce, in report order.
    public var rows: [BenchMeasurement] = BenchMeasurement.allCases

    /// The defaults of a full run, or of `--smoke` (every count small enough for a debug build).
    public init(smoke: Bool = false) {
        self.smoke = smoke
        if smoke {
            connections = 100
            coldStarts = 3
            settleMs = 200
            descriptorConnections = 2000
            ipcCount = 200
            ipcLargeCount = 5
            chaosKills = 3
        }
    }

    /// Connections of each load row: C × M.
    public var loadConnections: Int { clients * connections }

    /// As JSON, for reports.
    public var json: JSONValue {
        .object(JSONObject([
            ("workers", .number(Double(workers))), ("clients", .number(Double(clients))),
            ("connectionsPerClient", .number(Double(connections))), ("loadConnections", .number(Double(loadConnections))),
            ("coldStarts", .number(Double(coldStarts))), ("settleMs", .number(Double(settleMs))),
            ("descriptorConnections", .number(Double(descriptorConnections))),
            ("ipcCount", .number(Double(ipcCount))), ("ipcSmallBytes", .number(Double(ipcSmallBytes))),
            ("ipcLargeCount", .number(Double(ipcLargeCount))), ("ipcLargeBytes", .number(Double(ipcLargeBytes))),
            ("chaosIntervalMs", .number(Double(chaosIntervalMs))), ("chaosKills", .number(Double(chaosKills))),
            ("deadlineMs", .number(Double(deadlineMs))), ("smoke", .bool(smoke)),
            ("rows", .array(rows.map { .string($0.rawValue) })),
        ]))
    }
}

/// One measurement of one implementation (`limit`: of the bench itself).
public struct BenchRow: Sendable {
    /// What was measured.
    public var measurement: BenchMeasurement
    /// The `--impl` name, or `bench` for the limit row.
    public var implementation: String
    /// The numbers, by name (see BENCHMARKS.md's "What the rows measure"); empty when `error` is set.
    public var metrics: JSONObject
    /// Why the measurement could not be made.
    public var error: String?

    public init(_ measurement: BenchMeasurement, _ implementation: String, metrics: JSONObject = JSONObject(), error: String? = nil) {
        self.measurement = measurement
        self.implementation = implementation
        self.metrics = metrics
        self.error = error
    }

    /// The value ratios compare (see `BenchMeasurement.headline`).
    public var headline: Double? {
        guard error == nil, let h = measurement.headline, case .number(let v)? = metrics[h.metric] else { return nil }
        return v
    }

    /// A metric as a number.
    public func number(_ name: String) -> Double? {
        if case .number(let v)? = metrics[name] { return v }
        return nil
    }
}

/// An implementation as the bench saw it.
public struct BenchImplementation: Sendable {
    /// The `--impl` name.
    public var descriptor: String
    /// Name, version and runtime from its hello event (nil when it never answered).
    public var name: String?
    public var version: String?
    public var runtime: String?
    /// The fixture's command line, resolved (nil when the descriptor could not be loaded).
    public var command: [String]?

    public init(descriptor: String) { self.descriptor = descriptor }

    /// "node 20.20.2", or the descriptor name alone.
    public var label: String { [name ?? descriptor, version].compactMap { $0 }.joined(separator: " ") }
}

/// Everything a bench run found.
public struct BenchResults: Sendable {
    public var parameters: BenchParameters
    public var implementations: [BenchImplementation]
    /// The `--impl` name ratios are computed against, when it is in the run.
    public var reference: String?
    public var rows: [BenchRow]
    public var machine: MachineInfo
    /// The command line as given.
    public var commandLine: String
    /// Wall time of the run, seconds.
    public var seconds: Double = 0

    public init(parameters: BenchParameters, implementations: [BenchImplementation], reference: String?, rows: [BenchRow],
                machine: MachineInfo, commandLine: String) {
        self.parameters = parameters
        self.implementations = implementations
        self.reference = reference
        self.rows = rows
        self.machine = machine
        self.commandLine = commandLine
    }

    /// The row's headline over the reference's headline for the same measurement, within this run.
    public func ratio(_ row: BenchRow) -> Double? {
        guard let reference, let value = row.headline,
              let base = rows.first(where: { $0.measurement == row.measurement && $0.implementation == reference })?.headline,
              base > 0 else { return nil }
        return value / base
    }
}
