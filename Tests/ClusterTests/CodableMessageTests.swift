import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// `Codable` messages: what `send` encodes arrives as the JSON value a Node peer would see, and decodes back.
@Suite("Codable messages")
struct CodableMessageTests {
    struct Job: Codable, Equatable {
        enum Kind: String, Codable { case resize, crop }
        var id: Int
        var kind: Kind
        var tags: [String]
        var deadline: Double?
    }

    @Test("a worker's Codable message arrives as a JSON object and decodes to the same value")
    func workerSendsCodable() throws {
        let loop = EventLoop()
        let (w, p) = seqpacketPair()
        let worker = ClusterWorker(id: 1, loop: loop, channelFD: w)
        let primarySide = Channel(fd: p, loop: loop)
        defer {
            // A worker whose channel is lost ends its process (Node's rule); this one is the test runner.
            worker.channel.onClose = {}
            worker.channel.close()
            primarySide.close()
        }
        var user: [JSONValue] = []
        primarySide.onFrame = { kind, value, fds in
            fds.forEach { close($0) }
            if kind == .user { user.append(value) }
        }
        let job = Job(id: 7, kind: .crop, tags: ["a", "é"], deadline: nil)
        #expect(try worker.send(encoding: job))
        run(loop, until: "the message") { !user.isEmpty }
        #expect(user.first == .object(JSONObject([("id", 7), ("kind", "crop"), ("tags", .array(["a", "é"]))])))
        #expect(try user.first?.decode(Job.self) == job)
    }

    @Test("a value JSON cannot hold is refused before anything is sent")
    func unencodable() {
        let loop = EventLoop()
        let (w, p) = seqpacketPair()
        let worker = ClusterWorker(id: 1, loop: loop, channelFD: w)
        defer {
            worker.channel.onClose = {}
            worker.channel.close()
            close(p)
        }
        #expect(throws: EncodingError.self) { try worker.send(encoding: Job(id: 1, kind: .resize, tags: [], deadline: .nan)) }
        #expect(worker.channel.queuedPackets == 0)
    }
}
