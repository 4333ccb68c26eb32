import Testing
@testable import Cluster

/// The round-robin queue: who gets which connection, and when.
@Suite("Round-robin queue")
struct RoundRobinQueueTests {
    /// A queue with workers 1, 2, 3 joined in that order.
    func three() -> RoundRobinQueue<String> {
        var q = RoundRobinQueue<String>()
        for w in 1...3 { #expect(q.add(w) == nil) }
        return q
    }

    @Test("sequential connections rotate in join order")
    func rotation() {
        var q = three()
        var order: [Int] = []
        for c in 0..<9 {
            let h = q.distribute("c\(c)")!
            order.append(h.worker)
            #expect(q.acknowledge(h.id, accepted: true)?.next == nil)
        }
        #expect(order == [1, 2, 3, 1, 2, 3, 1, 2, 3])
    }

    @Test("a worker is busy until it acknowledges; connections wait while none is free")
    func busyUntilAcknowledged() {
        var q = three()
        let a = q.distribute("a")!, b = q.distribute("b")!, c = q.distribute("c")!
        #expect([a.worker, b.worker, c.worker] == [1, 2, 3])
        #expect(q.distribute("d") == nil)
        #expect(q.waiting == 1)
        // Worker 2 answers first: it gets the waiting connection at once.
        let ack = q.acknowledge(b.id, accepted: true)!
        #expect(ack.connection == "b")
        #expect(ack.next?.worker == 2)
        #expect(ack.next?.connection == "d")
        #expect(q.waiting == 0)
    }

    @Test("a refused connection goes to the worker free longest, then the refuser takes the next")
    func refusal() {
        var q = three()
        let a = q.distribute("a")!  // to 1; free: 2, 3
        let ack = q.acknowledge(a.id, accepted: false)!
        #expect(ack.redistributed?.worker == 2)
        #expect(ack.redistributed?.connection == "a")
        #expect(ack.next == nil)
        #expect(q.free == [3, 1])
    }

    @Test("when every worker refuses, the connection keeps bouncing and is never lost")
    func bouncing() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        var h = q.distribute("x")!
        for _ in 0..<5 {
            let ack = q.acknowledge(h.id, accepted: false)!
            #expect(ack.redistributed == nil)
            h = ack.next!
            #expect(h.connection == "x")
        }
    }

    @Test("a joining worker drains the queue")
    func joinDrains() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        _ = q.distribute("a")!
        #expect(q.distribute("b") == nil)
        let h = q.add(2)
        #expect(h?.worker == 2)
        #expect(h?.connection == "b")
    }

    @Test("a leaving worker's hand-offs stay in flight until it answers; the last one to leave takes the queue")
    func removal() {
        var q = three()
        let a = q.distribute("a")!
        _ = q.distribute("b")!
        _ = q.distribute("c")!
        _ = q.distribute("d")
        let r1 = q.remove(a.worker)!
        #expect(r1.orphaned.isEmpty)
        #expect(!r1.wasLast)
        #expect(q.acknowledge(a.id, accepted: true)?.connection == "a")
        #expect(q.remove(a.worker) == nil)
        _ = q.remove(2)
        let last = q.remove(3)!
        #expect(last.wasLast)
        #expect(last.orphaned == ["d"])
    }

    @Test("a connection refused by a worker that left goes to the next free worker, and the leaver takes nothing more")
    func refusedAfterLeaving() {
        var q = three()
        let a = q.distribute("a")!  // to 1; free: 2, 3
        _ = q.remove(1)
        let ack = q.acknowledge(a.id, accepted: false)!
        #expect(!ack.dropped)
        #expect(ack.redistributed?.worker == 2)
        #expect(ack.redistributed?.connection == "a")
        #expect(ack.next == nil)
        #expect(q.free == [3])
    }

    @Test("a connection refused by a worker that left waits for a busy worker, as Node queues it (rr.disconnect.refused-handoff-redistributed)")
    func refusedWhileOthersBusy() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        _ = q.add(2)
        let a = q.distribute("a")!  // to 1, which is blocked
        let b = q.distribute("b")!  // to 2, which refuses and leaves
        _ = q.remove(b.worker)
        let ack = q.acknowledge(b.id, accepted: false)!
        #expect(!ack.dropped && ack.redistributed == nil && ack.next == nil)
        #expect(q.waiting == 1)
        #expect(q.acknowledge(a.id, accepted: true)?.next?.connection == "b")
    }

    @Test("a connection refused when no worker is left is dropped, to be closed by the caller")
    func refusedWithNoneLeft() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        let a = q.distribute("a")!
        #expect(q.remove(1)?.wasLast == true)
        let ack = q.acknowledge(a.id, accepted: false)!
        #expect(ack.dropped)
        #expect(ack.connection == "a")
        #expect(ack.redistributed == nil && ack.next == nil)
        #expect(q.waiting == 0)
    }

    @Test("a hand-off whose worker can no longer answer goes to the next free worker, once; a later answer finds nothing")
    func abandonment() {
        var q = three()
        let a = q.distribute("a")!
        _ = q.remove(a.worker)
        guard case .requeued(let again?)? = q.abandon(a.id) else {
            Issue.record("the abandoned connection was not offered again")
            return
        }
        #expect(again.connection == "a" && again.worker != a.worker)
        #expect(q.abandon(a.id) == nil)
        #expect(q.acknowledge(a.id, accepted: false) == nil)
        #expect(q.waiting == 0)
    }

    @Test("an abandoned hand-off with every other worker busy waits for the first to be free")
    func abandonmentWaits() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        _ = q.add(2)
        let a = q.distribute("a")!, b = q.distribute("b")!
        _ = q.remove(a.worker)
        guard case .requeued(nil)? = q.abandon(a.id) else {
            Issue.record("the abandoned connection did not wait")
            return
        }
        #expect(q.waiting == 1)
        #expect(q.acknowledge(b.id, accepted: true)?.next?.connection == "a")
    }

    @Test("an abandoned hand-off with no worker left is given back to be closed")
    func abandonmentDropped() {
        var q = RoundRobinQueue<String>()
        _ = q.add(1)
        let a = q.distribute("a")!
        _ = q.remove(1)
        guard case .dropped("a")? = q.abandon(a.id) else {
            Issue.record("the connection was not given back")
            return
        }
    }

    @Test("a hand-off that could not be sent is the next one again")
    func undo() {
        var q = three()
        let a = q.distribute("a")!
        q.undo(a)
        #expect(q.waiting == 1)
        #expect(q.next(for: 2)?.connection == "a")
    }
}

@Suite("Keys and listen indexes")
struct KeyTests {
    @Test("the handle key is address:port:addressType:fd:index, as Node writes it")
    func keys() {
        #expect(HandleKey(address: "127.0.0.1", port: 0, addressType: .ipv4, fd: nil, index: 0).description == "127.0.0.1:0:4:undefined:0")
        #expect(HandleKey(address: nil, port: 8000, addressType: .ipv4, fd: nil, index: 1).description == "null:8000:4:undefined:1")
        #expect(HandleKey(address: nil, port: 0, addressType: .descriptor, fd: 7, index: 0).description == "null:0:null:7:0")
        #expect(HandleKey(address: "0.0.0.0", port: 0, addressType: .udp4, fd: -1, index: 0).description == "0.0.0.0:0:\"udp4\":-1:0")
        #expect(HandleKey(address: "/tmp/s", port: -1, addressType: .unix, fd: nil, index: 0).description == "/tmp/s:-1:-1:undefined:0")
    }

    @Test("the k-th concurrent listen on a tuple gets index k; indexes are not reused while one is open")
    func indexes() {
        var ix = ListenIndexes()
        #expect(ix.take("a") == 0)
        #expect(ix.take("a") == 1)
        #expect(ix.take("b") == 0)
        ix.release("a", 0)
        #expect(ix.isOpen("a"))
        #expect(ix.take("a") == 2)
    }

    @Test("the counter restarts when every server of the tuple closed")
    func restart() {
        var ix = ListenIndexes()
        _ = ix.take("a")
        _ = ix.take("a")
        ix.release("a", 1)
        ix.release("a", 0)
        #expect(!ix.isOpen("a"))
        #expect(ix.take("a") == 0)
    }
}

@Suite("Scheduling policy")
struct PolicyTests {
    @Test("the environment variable chooses rr or none; anything else falls back to the platform default",
          arguments: [
              ([String: String](), SchedulingPolicy.roundRobin),
              (["NODE_CLUSTER_SCHED_POLICY": "rr"], .roundRobin),
              (["NODE_CLUSTER_SCHED_POLICY": "none"], .shared),
              (["NODE_CLUSTER_SCHED_POLICY": ""], .roundRobin),
              (["NODE_CLUSTER_SCHED_POLICY": "RR"], .roundRobin),
              (["SWIFT_CLUSTER_PLATFORM": "win32"], .shared),
              (["SWIFT_CLUSTER_PLATFORM": "win32", "NODE_CLUSTER_SCHED_POLICY": "rr"], .roundRobin),
              (["SWIFT_CLUSTER_PLATFORM": "win32", "NODE_CLUSTER_SCHED_POLICY": "bogus"], .shared),
          ])
    func resolution(_ env: [String: String], _ expected: SchedulingPolicy) {
        #expect(Primary.defaultPolicy(env) == expected)
    }

    @Test("the policy is frozen by the first setup; later assignments change the property only")
    func frozen() {
        let primary = Primary(loop: EventLoop(), environment: [:])
        primary.schedulingPolicy = .shared
        primary.setupPrimary()
        primary.schedulingPolicy = .roundRobin
        #expect(primary.frozenPolicy == .shared)
        #expect(primary.schedulingPolicy == .roundRobin)
    }
}
