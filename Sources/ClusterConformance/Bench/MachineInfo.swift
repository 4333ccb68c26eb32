// The machine a bench ran on, for the report.

import ClusterSpec
import Foundation
import SystemSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Facts about the machine and the build, read from /proc, uname(2) and `swift --version`.
public struct MachineInfo: Sendable {
    /// Online processors.
    public var processors: Int
    /// `model name` of /proc/cpuinfo.
    public var cpuModel: String
    /// uname's system name and release.
    public var kernel: String
    /// MemTotal of /proc/meminfo, in kB.
    public var memoryKB: Int
    /// The first line of `swift --version` (nil when `swift` is not on PATH or does not answer).
    public var swiftCompiler: String?
    /// `debug` or `release`: the configuration the running `cluster-conformance` was built in (the directory
    /// SwiftPM put it in), which is also the `cluster-fixture` beside it.
    public var build: String
    /// The running executable.
    public var runner: String

    /// Reads the facts of this machine.
    public static func current() -> MachineInfo {
        let cpuinfo = SocketProbe.procText("/proc/cpuinfo") ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" } ?? "unknown"
        let meminfo = SocketProbe.procText("/proc/meminfo") ?? ""
        let memory = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { Int($0.dropFirst(9).split(separator: " ").first ?? "") } ?? 0
        var names = utsname()
        uname(&names)
        func field<T>(_ value: T) -> String {
            withUnsafeBytes(of: value) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let runner = Implementation.buildDirectory.appendingPathComponent("cluster-conformance").path
        let configuration = Implementation.buildDirectory.lastPathComponent
        return MachineInfo(processors: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), cpuModel: model,
                           kernel: "\(field(names.sysname)) \(field(names.release))", memoryKB: memory,
                           swiftCompiler: firstLine(of: ["swift", "--version"], deadlineSeconds: 20),
                           build: ["debug", "release"].contains(configuration) ? configuration : "unknown (\(configuration))",
                           runner: runner)
    }

    /// The first line a command prints (stdout and stderr together), or nil when it cannot run or does not
    /// finish in time (it is then killed).
    static func firstLine(of argv: [String], deadlineSeconds: Int) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        let done = DispatchSemaphore(value: 0)
        p.terminationHandler = { _ in done.signal() }
        do { try p.run() } catch { return nil }
        let reader = pipe.fileHandleForReading
        let output = Mutex<Data>(Data())
        let readDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let data = reader.readDataToEndOfFile()
            output.withLock { $0 = data }
            readDone.signal()
        }
        if done.wait(timeout: .now() + .seconds(deadlineSeconds)) == .timedOut {
            kill(p.processIdentifier, SIGKILL)
            done.wait()
        }
        // The pipe ends with the process (unless it left a child holding it: then do not wait long).
        _ = readDone.wait(timeout: .now() + 2)
        guard p.terminationStatus == 0 else { return nil }
        let text = String(decoding: output.withLock { $0 }, as: UTF8.self)
        return text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) }
    }

    public var json: JSONValue {
        .object(JSONObject([
            ("processors", .number(Double(processors))), ("cpuModel", .string(cpuModel)), ("kernel", .string(kernel)),
            ("memoryKB", .number(Double(memoryKB))), ("swiftCompiler", swiftCompiler.map { .string($0) } ?? .null),
            ("build", .string(build)), ("runner", .string(runner)),
        ]))
    }
}
