import Foundation
import Synchronization
import Testing
@testable import Cluster

#if canImport(Glibc)
import Glibc
#endif

// Helpers shared by the cluster tests. Every wait has a deadline: a test that loses something fails at
// the deadline with what it was waiting for; it never hangs.

/// Runs `loop` on the calling thread until `condition` holds; records an issue naming `what` if it does
/// not within `limit`. Returns whether it held.
@discardableResult
func run(_ loop: EventLoop, until what: String, within limit: Duration = .seconds(10),
         sourceLocation: SourceLocation = #_sourceLocation, _ condition: () -> Bool) -> Bool {
    let held = loop.run(until: condition, deadline: .now + limit)
    if !held { Issue.record("no \(what) within \(limit)", sourceLocation: sourceLocation) }
    return held
}

/// A value shared between a test and a loop running on another thread.
final class Shared<Value>: @unchecked Sendable {
    private let lock = Mutex(())
    private var value: Value
    init(_ value: Value) { self.value = value }
    func get() -> Value { lock.withLock { _ in value } }
    func set(_ v: Value) { lock.withLock { _ in value = v } }
    func update<R>(_ body: (inout Value) -> R) -> R { lock.withLock { _ in body(&value) } }
}

/// A SOCK_SEQPACKET socketpair, as the cluster's channel uses.
func seqpacketPair() -> (Int32, Int32) {
    var fds: [Int32] = [-1, -1]
    precondition(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
    return (fds[0], fds[1])
}

/// A string of exactly `bytes` UTF-8 bytes mixing one- to four-byte characters and the characters JSON
/// escapes, different at every position, so that a lost, repeated or reordered piece changes it.
func payload(bytes: Int, seed: Int = 0) -> String {
    var out = ""
    out.reserveCapacity(bytes)
    var size = 0
    var i = seed
    let pieces = ["a", "é", "漢", "😀", "\"", "\\", "\n", "\u{1}"]
    while size < bytes {
        let marker = "<\(i)>"
        if size + marker.utf8.count > bytes { break }
        out += marker
        size += marker.utf8.count
        let piece = pieces[i % pieces.count]
        if size + piece.utf8.count <= bytes {
            out += piece
            size += piece.utf8.count
        }
        i += 1
    }
    out += String(repeating: "z", count: bytes - size)
    return out
}

/// The directory holding the built products (the test bundle's own directory).
let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()

/// A fresh private directory; removed by `removeDirectory`.
func makeTemporaryDirectory() -> String {
    var template = Array((NSTemporaryDirectory() + "/cluster-tests-XXXXXX").utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    precondition(made != nil, "mkdtemp: \(String(cString: strerror(errno)))")
    return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// The descriptor numbers process `pid` has open ("self" for this process), from `/proc/PID/fd`.
func openDescriptors(of pid: String = "self") -> [Int32] {
    guard let dir = opendir("/proc/\(pid)/fd") else { return [] }
    defer { closedir(dir) }
    var numbers: [Int32] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let n = Int32(name) { numbers.append(n) }
    }
    return numbers
}
