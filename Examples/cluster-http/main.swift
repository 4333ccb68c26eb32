import Cluster
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

// A clustered HTTP server: workers (argument 2, default 2) share one port (argument 1, default 8080; 0 picks
// a free one, the same for every worker), and SwiftNIO speaks HTTP/1.1. Under round-robin (the default)
// the primary accepts and Cluster hands each connection to NIO; under NODE_CLUSTER_SCHED_POLICY=none each
// worker has the shared listening socket and NIO accepts on it itself. (A socket shared by several
// processes wakes all of them for one connection; SwiftNIO's debug builds assert that a wake-up brings a
// connection, so run several `none` workers from a release build.)
let arguments = CommandLine.arguments.dropFirst()
let port = Int(arguments.first ?? "8080") ?? 8080
let workers = Int(arguments.dropFirst().first ?? "2") ?? 2
switch AsyncCluster.start() {
case .primary(let primary):
    for _ in 0..<workers { _ = try await primary.fork() }
    for await case .listening(let worker, let address) in primary.events {
        print("worker \(worker.id) listening on port \(address.port)")
        fflush(nil)
    }
case .worker(let worker):
    let server = try await worker.listen(.tcp(host: "127.0.0.1", port: port))
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let id = worker.id
    if let socket = try await server.handOffListeningSocket() {
        // Shared policy: NIO accepts on the worker's own copy of the listening socket, and closes it.
        // What Cluster accepted before the hand-off is in `connections`, served as under round-robin.
        Task { for await connection in server.connections { await serve(connection, worker: id, group: group) } }
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Hello(worker: id, acceptedBy: "nio"))
                }
            }
            .withBoundSocket(socket)
            .get()
        for await _ in worker.messages {}  // until the primary disconnects this worker
        try await listener.close()
        await server.close()
    } else {
        // Round-robin: the primary accepts and hands each connection to a worker.
        for await connection in server.connections { await serve(connection, worker: id, group: group) }
    }
}

/// Serves a connection Cluster accepted with NIO, which closes the descriptor; the server counts the
/// connection until release().
func serve(_ connection: AsyncConnection, worker id: Int, group: MultiThreadedEventLoopGroup) async {
    guard let socket = await connection.handOff() else { return }
    do {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Hello(worker: id, acceptedBy: "cluster"))
                }
            }
            .withConnectedSocket(socket.fd)
            .get()
        channel.closeFuture.whenComplete { _ in socket.release() }
    } catch {
        close(socket.fd)  // NIO did not take it
        socket.release()
    }
}

/// Answers every request with `{"worker":ID}` and who accepted the connection (`X-Accepted-By`), keeping
/// the connection alive unless the client says not to.
final class Hello: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let worker: Int
    let acceptedBy: String
    var keepAlive = true

    init(worker: Int, acceptedBy: String) {
        self.worker = worker
        self.acceptedBy = acceptedBy
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): keepAlive = head.isKeepAlive
        case .body: break
        case .end:
            let body = ByteBuffer(string: "{\"worker\":\(worker)}")
            var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.readableBytes)"),
                                       ("X-Accepted-By", acceptedBy)])
            headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            let keepAlive = keepAlive
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                if !keepAlive { context.close(promise: nil) }
            }
        }
    }
}
