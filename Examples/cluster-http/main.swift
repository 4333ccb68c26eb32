import Cluster
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

// A clustered HTTP server: two workers share one port (argument 1, default 8080; 0 picks a free one, the
// same for every worker); Cluster accepts the connections and SwiftNIO serves them.
let port = Int(CommandLine.arguments.dropFirst().first ?? "8080") ?? 8080
switch AsyncCluster.start() {
case .primary(let primary):
    for _ in 0..<2 { _ = try await primary.fork() }
    for await case .listening(let worker, let address) in primary.events {
        print("worker \(worker.id) listening on port \(address.port)")
        fflush(nil)
    }
case .worker(let worker):
    let server = try await worker.listen(.tcp(host: "127.0.0.1", port: port))
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    for await connection in server.connections {
        // NIO closes the descriptor; the server counts the connection until release().
        guard let socket = await connection.handOff() else { continue }
        let id = worker.id
        do {
            let channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(Hello(worker: id))
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
}

/// Answers every request with `{"worker":ID}`, keeping the connection alive unless the client says not to.
final class Hello: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    let worker: Int
    var keepAlive = true

    init(worker: Int) { self.worker = worker }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): keepAlive = head.isKeepAlive
        case .body: break
        case .end:
            let body = ByteBuffer(string: "{\"worker\":\(worker)}")
            var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.readableBytes)")])
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
