/// One part of a run split across machines (`--shard K/N`): the suite's specs, sorted by id, are dealt out
/// in turn to N shards, so every spec is in exactly one shard whatever the order the files were found in,
/// and the shards of one suite are the same on every machine.
public struct Shard: Sendable, Hashable, CustomStringConvertible {
    /// This shard's number, 1...count.
    public let index: Int
    /// How many shards there are.
    public let count: Int

    /// Why a shard could not be read.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// What was wrong.
        public let description: String
    }

    /// Reads `K/N` with 1 ≤ K ≤ N.
    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]) else {
            throw ParseError(description: "--shard '\(text)' is not K/N (two whole numbers, as in 2/4)")
        }
        guard n >= 1 else { throw ParseError(description: "--shard '\(text)': there must be at least one shard") }
        guard (1...n).contains(k) else {
            throw ParseError(description: "--shard '\(text)': the shard number must be from 1 to \(n)")
        }
        index = k
        count = n
    }

    /// The items of this shard, in their given order.
    public func select<Item>(_ items: [Item], id: (Item) -> String) -> [Item] {
        let ranked = Dictionary(items.map(id).sorted().enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
        return items.filter { ranked[id($0)]! % count == index - 1 }
    }

    /// `K/N`.
    public var description: String { "\(index)/\(count)" }
}
