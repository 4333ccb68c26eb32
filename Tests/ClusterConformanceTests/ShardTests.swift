import ClusterConformance
import Testing

/// `--shard K/N`: every spec in exactly one shard, the same on every machine, bad input refused.
@Suite("Shards")
struct ShardTests {
    @Test("the shards of a list are disjoint, cover it, keep its order and do not depend on it", arguments: [1, 2, 3, 7])
    func split(_ n: Int) throws {
        let ids = (0..<23).map { "spec.\($0 * 7 % 23)" }
        var seen: [String] = []
        for k in 1...n {
            let shard = try Shard(parsing: "\(k)/\(n)")
            let part = shard.select(ids, id: { $0 })
            #expect(part == ids.filter(part.contains), "shard \(k)/\(n) reordered its specs")
            #expect(Set(shard.select(ids.reversed(), id: { $0 })) == Set(part), "shard \(k)/\(n) depends on the order")
            #expect(abs(part.count - ids.count / n) <= 1)
            seen += part
        }
        #expect(seen.count == ids.count && Set(seen) == Set(ids))
    }

    @Test("a shard that is not K/N with 1 ≤ K ≤ N is refused with what is wrong",
          arguments: ["3/2", "0/0", "0/3", "1/0", "-1/2", "a/b", "1", "1/2/3", "", "1/ 2"])
    func refused(_ text: String) {
        #expect(throws: Shard.ParseError.self) { try Shard(parsing: text) }
    }

    @Test("run and list refuse a bad shard with exit code 2, naming it")
    func cli() throws {
        let r = try runCommand([Paths.cli, "list", "--shard", "3/2"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("--shard '3/2': the shard number must be from 1 to 2"))
        let listed = try (1...3).map { k in try runCommand([Paths.cli, "list", "--shard", "\(k)/3"]) }
        #expect(listed.allSatisfy { $0.status == 0 })
        let all = try runCommand([Paths.cli, "list"])
        let lines = { (output: String) in output.split(separator: "\n").dropLast().map { String($0.split(separator: " ")[0]) } }
        #expect(Set(listed.flatMap { lines($0.stdout) }) == Set(lines(all.stdout)))
        #expect(listed.map { lines($0.stdout).count }.reduce(0, +) == lines(all.stdout).count)
    }
}
