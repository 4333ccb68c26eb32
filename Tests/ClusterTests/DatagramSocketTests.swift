import ClusterJSON
import Foundation
import SystemSupport
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

/// UDP sockets: a worker's clustered bind against a primary played by the test over a real channel, so
/// that the test decides when the primary answers (LISTEN-15), and `bind({fd})` on this process's own
/// descriptors.
@Suite("Datagram sockets")
struct DatagramSocketTests {
    /// A worker runtime on one end of a real channel; the test holds the primary's end and records what
    /// the worker sends it (control messages and the descriptors that came with them).
    final class FakePrimary {
        let loop = EventLoop()
        let worker: ClusterWorker
        let channel: Channel
        private(set) var messages: [JSONValue] = []

        init() {
            let (w, p) = seqpacketPair()
            worker = ClusterWorker(id: 1, loop: loop, channelFD: w)
            channel = Channel(fd: p, loop: loop)
            channel.onFrame = { [unowned self] _, value, fds in
                fds.forEach { Glibc.close($0) }
                messages.append(value)
            }
        }

        deinit {
            // A worker whose channel is lost ends its process (Node's rule); this one is the test runner.
            worker.channel.onClose = {}
            worker.channel.close()
            channel.close()
        }

        func acts(_ act: String) -> [JSONValue] { messages.filter { $0["act"]?.stringValue == act } }

        /// Answers a `queryServer` as the primary does: the key, and an error code or a socket.
        func reply(to query: JSONValue, key: String, errno code: String? = nil, fd: Int32? = nil) {
            var object = JSONObject([("act", "reply"), ("ack", query["seq"] ?? .null), ("key", .string(key))])
            if let code { object["errno"] = .string(code) }
            #expect(throws: Never.self) { try channel.send(.control, .object(object), fds: fd.map { [$0] } ?? []).get() }
        }

        /// A worker's UDP socket whose clustered bind of 127.0.0.1:0 waits for this primary's answer, what
        /// it reports, and the `queryServer` to answer.
        func bindingSocket() -> (DatagramSocket, Events, query: JSONValue) {
            let socket = DatagramSocket(loop: loop, family: .udp4, cluster: worker)
            let events = Events()
            events.watch(socket)
            let asked = acts("queryServer").count
            socket.bind(host: "127.0.0.1", port: 0)
            run(loop, until: "the worker's queryServer") { acts("queryServer").count > asked }
            return (socket, events, acts("queryServer")[asked])
        }

        /// A user message from the worker, once it reached this end: everything the worker sent before it
        /// has arrived too (one channel, in order).
        func roundTrip(_ marker: String) {
            #expect(worker.send(.string(marker)))
            run(loop, until: "the worker's message \(marker)") { messages.contains(.string(marker)) }
        }
    }

    /// What a socket reported, in order.
    final class Events {
        var names: [String] = []
        var errors: [ClusterError] = []

        func watch(_ socket: DatagramSocket) {
            socket.onListening = { [unowned self] in names.append("listening") }
            socket.onClose = { [unowned self] in names.append("close") }
            socket.onError = { [unowned self] in
                names.append("error")
                errors.append($0)
            }
        }
    }

    @Test("closed while its clustered bind waits, a socket gives the primary's socket back and only emits 'close' (LISTEN-15)")
    func closeBeforeGrant() throws {
        let p = FakePrimary()
        let (socket, events, query) = p.bindingSocket()
        socket.close()

        // The primary's answer arrives after the close: a real bound socket, as a shared handle.
        let shared = try Sockets.bound(udp: true, host: "127.0.0.1", port: 0).get()
        let port = SocketAddress.local(of: shared)!.port
        let key = "127.0.0.1:0:\"udp4\":-1:0"
        p.reply(to: query, key: key, fd: shared)
        close(shared)  // the worker now holds the only copy, if it kept one

        run(p.loop, until: "the worker's close notice for the key") { !p.acts("close").isEmpty }
        #expect(p.acts("close").map { $0["key"] } == [.string(key)])
        p.roundTrip("after the answer")
        #expect(events.names == ["close"])
        #expect(p.acts("listening").isEmpty, "a socket that never listened is not reported to the primary")
        #expect(socket.address() == nil)
        // The worker's copy is closed: nothing holds the port any more, so it can be bound again.
        let again = Sockets.bound(udp: true, host: "127.0.0.1", port: port)
        #expect(throws: Never.self) { try again.get() }
        if case .success(let fd) = again { close(fd) }
        // The index was given back: the next bind on the tuple asks for index 0 again.
        let (_, _, second) = p.bindingSocket()
        #expect(second["index"] == 0)
    }

    @Test("closed while its clustered bind waits, a socket reports no error when the primary's answer is one")
    func closeBeforeError() {
        let p = FakePrimary()
        let (socket, events, query) = p.bindingSocket()
        socket.close()
        p.reply(to: query, key: "127.0.0.1:0:\"udp4\":-1:0", errno: "EADDRINUSE")
        p.roundTrip("after the answer")
        run(p.loop, until: "the close") { events.names.contains("close") }
        #expect(events.names == ["close"])
        #expect(p.acts("close").isEmpty, "nothing was granted, so there is nothing to give back")
    }

    @Test("a clustered bind answered before any close listens, reports itself, and closes once")
    func grantThenClose() throws {
        let p = FakePrimary()
        let (socket, events, query) = p.bindingSocket()
        let shared = try Sockets.bound(udp: true, host: "127.0.0.1", port: 0).get()
        defer { close(shared) }
        p.reply(to: query, key: "k", fd: shared)
        run(p.loop, until: "the listening report") { !p.acts("listening").isEmpty }
        #expect(events.names == ["listening"])
        #expect(p.acts("listening")[0]["port"]?.intValue == SocketAddress.local(of: shared)?.port)
        socket.close()
        socket.close()
        run(p.loop, until: "the close") { events.names.count == 2 }
        p.roundTrip("after the close")
        #expect(events.names == ["listening", "close"])
        #expect(p.acts("close").map { $0["key"] } == ["k"])
    }

    @Test("a socket closed before it was bound emits 'close' once")
    func closeUnbound() {
        let loop = EventLoop()
        let socket = DatagramSocket(loop: loop, family: .udp6)
        let events = Events()
        events.watch(socket)
        socket.close()
        socket.close()
        run(loop, until: "the close") { !events.names.isEmpty }
        #expect(events.names == ["close"])
    }

    @Test("bind({fd}) outside a cluster receives on this process's UDP socket; other descriptors are refused")
    func bindOwnDescriptor() throws {
        let loop = EventLoop()
        let udp = try Sockets.bound(udp: true, host: "127.0.0.1", port: 0).get()
        let port = SocketAddress.local(of: udp)!.port
        let socket = DatagramSocket(loop: loop, family: .udp4)
        let events = Events()
        events.watch(socket)
        var received: [String] = []
        socket.onMessage = { bytes, _ in received.append(String(decoding: bytes, as: UTF8.self)) }
        try socket.bind(fd: udp)
        let twice = #expect(throws: ClusterError.self) { try socket.bind(fd: udp) }
        #expect(twice?.code == "ERR_SOCKET_ALREADY_BOUND")
        run(loop, until: "listening") { events.names == ["listening"] }
        #expect(socket.address() == .inet(address: "127.0.0.1", family: "IPv4", port: port))

        let sender = try Sockets.bound(udp: true, host: "127.0.0.1", port: 0).get()
        defer { close(sender) }
        let to = SocketAddress(host: "127.0.0.1", port: port)!
        #expect(to.withSockaddr { a, l in "hello".withCString { sendto(sender, $0, 5, 0, a, l) } } == 5)
        run(loop, until: "the datagram") { received == ["hello"] }
        socket.close()  // closes udp: the socket owns it

        let tcp = try Sockets.listeningTCP(host: "127.0.0.1", port: 0, ipv6Only: false, backlog: 1).get()
        defer { close(tcp) }
        let other = DatagramSocket(loop: loop, family: .udp4)
        let typeError = #expect(throws: ClusterError.self) { try other.bind(fd: tcp) }
        #expect(typeError?.code == "ERR_INVALID_FD_TYPE")
        let numberError = #expect(throws: ClusterError.self) { try other.bind(fd: 0) }
        #expect(numberError?.code == "ERR_INVALID_FD")
    }
}
