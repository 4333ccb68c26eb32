import ClusterSpec

/// Which suite a set of results comes from: the spec count and a digest of every spec's content, so that
/// results produced in separate runs or on separate machines are merged only when they judged the same specs.
public struct SuiteIdentity: Sendable, Hashable, CustomStringConvertible {
    /// The number of specs in the whole suite (not only those a run selected).
    public var specs: Int
    /// FNV-1a (64 bits, hexadecimal) over the specs sorted by id, each in `SpecEncoder`'s canonical YAML, so
    /// that a change to any spec, and nothing else (file names, layout, YAML comments), changes it.
    public var digest: String

    /// The identity of a suite from its specs (every spec, whatever a run selects).
    public init(specs: [Spec]) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for spec in specs.sorted(by: { $0.id < $1.id }) {
            for byte in SpecEncoder.yaml(spec).utf8 + [0] {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        self.specs = specs.count
        let hex = String(hash, radix: 16)
        self.digest = String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// An identity as a results file states it.
    public init(specs: Int, digest: String) {
        self.specs = specs
        self.digest = digest
    }

    /// `167 specs, digest 0123456789abcdef`.
    public var description: String { "\(specs) specs, digest \(digest)" }
}
