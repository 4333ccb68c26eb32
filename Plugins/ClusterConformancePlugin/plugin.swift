import Foundation
import PackagePlugin

/// `swift package cluster-conformance …`: builds the `cluster-conformance` product of the package that provides this
/// plugin and runs it on that package's suite (Specs/ and fixtures/ in its checkout) with the user's arguments, from
/// the user's package directory (so that a relative `--impl-command ./my-fixture` means what it says there).
@main
struct ClusterConformancePlugin: CommandPlugin {
    /// Builds the tool, runs it and ends with its exit status.
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let tool = try build()
        let process = Process()
        process.executableURL = tool
        process.arguments = arguments
        process.currentDirectoryURL = context.package.directoryURL
        var environment = ProcessInfo.processInfo.environment
        // The tool would find its suite from its own source path anyway; naming it makes the choice independent of
        // how the tool was built. A root the user named (this variable, or --suite-root) still wins.
        if environment[Self.rootVariable] == nil, let suite = Self.suitePackage(of: context.package) {
            environment[Self.rootVariable] = suite.directoryURL.path
        }
        process.environment = environment
        try process.run()
        process.waitUntilExit()
        // The tool's exit codes mean something (1 a spec failed, 2 bad input, 3 broken): pass them on unchanged.
        if process.terminationReason == .uncaughtSignal {
            Diagnostics.error("cluster-conformance was killed by signal \(process.terminationStatus)")
            exit(128 + process.terminationStatus)
        }
        if process.terminationStatus != 0 { exit(process.terminationStatus) }
    }

    /// Builds `cluster-conformance` (with `cluster-fixture` beside it, for `--impl swift`) in the user's ordinary
    /// debug build, which `swift build` and `swift test` share, rather than declaring it a plugin tool: a tool is
    /// built a second time for the host, swift-nio included, at minutes of cost on a first run.
    func build() throws -> URL {
        FileHandle.standardError.write(Data("cluster-conformance: building the runner (swift build --product cluster-conformance)…\n".utf8))
        let result = try packageManager.build(.product("cluster-conformance"),
                                              parameters: PackageManager.BuildParameters(configuration: .debug, logging: .concise))
        guard result.succeeded else {
            FileHandle.standardError.write(Data(result.logText.utf8))
            throw PluginFailure("could not build cluster-conformance")
        }
        guard let tool = result.builtArtifacts.first(where: { $0.kind == .executable && $0.url.lastPathComponent == "cluster-conformance" }) else {
            throw PluginFailure("the build did not produce cluster-conformance")
        }
        return tool.url
    }

    /// ConformanceSuite.rootVariable (a plugin cannot import the library).
    static let rootVariable = "CLUSTER_CONFORMANCE_ROOT"

    /// The package that vends the `cluster-conformance` executable: the user's package itself, or one of its
    /// dependencies, searched breadth-first.
    static func suitePackage(of package: Package) -> Package? {
        var queue = [package]
        var seen = Set<String>()
        while !queue.isEmpty {
            let next = queue.removeFirst()
            guard seen.insert(next.id).inserted else { continue }
            if next.products.contains(where: { $0.name == "cluster-conformance" && $0 is ExecutableProduct }) { return next }
            queue += next.dependencies.map(\.package)
        }
        return nil
    }
}

/// Why the plugin could not run the tool.
struct PluginFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
