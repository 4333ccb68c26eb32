// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Cluster",
    // Linux only: the Cluster library is built on epoll, pidfd, SOCK_SEQPACKET and /proc (Sources/Cluster
    // refuses to compile elsewhere). No `platforms` entry, since SwiftPM has none for Linux versions.
    products: [
        .executable(name: "cluster-conformance", targets: ["cluster-conformance"]),
        .executable(name: "cluster-fixture", targets: ["cluster-fixture"]),
        .library(name: "ClusterSpec", targets: ["ClusterSpec"]),
        .library(name: "ClusterConformance", targets: ["ClusterConformance"]),
        .library(name: "Cluster", targets: ["Cluster"]),
        // `swift package cluster-conformance …` in a package that depends on this one: the CLI on this suite.
        .plugin(name: "cluster-conformance-plugin", targets: ["ClusterConformancePlugin"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // Only the fixture and the HTTP example serve HTTP through SwiftNIO; the Cluster library stays NIO-free.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // libyaml from the system (Debian: libyaml-dev).
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        // The few libc pieces Swift cannot import: wait-status macros, spawn
        // close-from, process groups.
        .target(name: "CSupport"),
        // A JSON value type shared by the spec model, the runner and the cluster's IPC messages.
        .target(name: "ClusterJSON"),
        .target(name: "ClusterSpec", dependencies: ["CYAML", "ClusterJSON"]),
        // POSIX helpers shared by the runner and the implementation (neither imports the other).
        .target(name: "SystemSupport"),
        .target(name: "ClusterConformance", dependencies: ["ClusterSpec", "CSupport", "SystemSupport"]),
        // The native Swift implementation of the node:cluster model.
        .target(name: "Cluster", dependencies: ["ClusterJSON", "CSupport", "SystemSupport"]),
        // The Swift implementation's fixture: speaks fixtures/PROTOCOL.md and drives Cluster.
        .executableTarget(
            name: "cluster-fixture",
            dependencies: [
                "Cluster", "ClusterJSON", "SystemSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "fixtures/swift",
            exclude: ["implementation.yaml", "expectations.yaml"]
        ),
        // The README's clustered echo server, built and tested.
        .executableTarget(
            name: "cluster-echo",
            dependencies: ["Cluster"],
            path: "Examples/cluster-echo"
        ),
        // The README's clustered HTTP server: Cluster accepts, SwiftNIO serves. Built and tested.
        .executableTarget(
            name: "cluster-http",
            dependencies: [
                "Cluster",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Examples/cluster-http"
        ),
        // The async layer's test probe: scenarios run as a real primary and workers (Tests/ClusterTests/Async*).
        .executableTarget(
            name: "cluster-async-probe",
            dependencies: ["Cluster"],
            path: "Tests/cluster-async-probe"
        ),
        .executableTarget(
            name: "cluster-conformance",
            dependencies: [
                "ClusterConformance",
                "ClusterSpec",
                // Only so that `swift run cluster-conformance` (the README's first command) also builds the
                // default implementation's fixture next to it; the runner does not import it.
                "cluster-fixture",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .plugin(
            name: "ClusterConformancePlugin",
            capability: .command(
                intent: .custom(verb: "cluster-conformance", description: "Run the node:cluster conformance suite (cluster-conformance run, list, lint, matrix, bench)")
            )
            // No tool dependency on cluster-conformance: the plugin builds that product in the ordinary build, shared
            // with `swift build`, instead of a second host build of it and swift-nio (Plugins/…/plugin.swift).
        ),
        .testTarget(
            name: "ClusterSpecTests",
            dependencies: ["ClusterSpec", "ClusterJSON"],
            exclude: ["LintCases", "Coverage"]
        ),
        .testTarget(
            name: "ClusterTests",
            // cluster-fixture: the worker-process tests fork it as a real worker; cluster-async-probe: the
            // async layer's tests run it.
            dependencies: ["Cluster", "ClusterJSON", "CSupport", "cluster-echo", "cluster-http", "cluster-fixture",
                           "cluster-async-probe"]
        ),
        .testTarget(
            name: "ClusterConformanceTests",
            dependencies: ["ClusterConformance", "ClusterSpec", "cluster-conformance", "cluster-fixture"],
            exclude: ["FakeFixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
