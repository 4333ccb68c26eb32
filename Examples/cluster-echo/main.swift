import Cluster
import Glibc

// A clustered TCP echo server: the primary forks two workers, which share one port (argument 1, default
// 8080; 0 picks a free one, the same for every worker).
let port = Int(CommandLine.arguments.dropFirst().first ?? "8080") ?? 8080
switch AsyncCluster.start() {
case .primary(let primary):
    await withTaskGroup(of: Void.self) { group in
        for _ in 0..<2 {
            guard let worker = try? await primary.fork() else { continue }
            // A worker's events end when it does; the primary ends when both have.
            group.addTask {
                for await case .listening(let address) in worker.events {
                    print("worker \(worker.id) listening on port \(address.port)")
                    fflush(nil)
                }
            }
        }
    }
case .worker(let worker):
    let server = try await worker.listen(.tcp(host: "127.0.0.1", port: port))
    for await connection in server.connections {
        Task {
            while let bytes = try? await connection.read(), !bytes.isEmpty { try await connection.write(bytes) }
            await connection.close()
        }
    }
}
