// swift-tools-version:6.0
import PackageDescription

// A package of its own that uses the conformance suite of the package two directories up, as any other package
// would: by depending on it (here by path; from elsewhere by URL), with no copy of the specs.
let package = Package(
    name: "conformance-dependent",
    dependencies: [
        // The suite's package; from another repository: .package(url: "<git URL of the Cluster package>", branch: "main").
        // A path dependency's identity is its directory's name, which differs between clones; `name:` fixes it.
        .package(name: "Cluster", path: "../.."),
    ],
    targets: [
        .testTarget(
            name: "ConformanceDependentTests",
            dependencies: [.product(name: "ClusterConformance", package: "Cluster")],
            exclude: ["expectations.yaml"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
