import ClusterSpec
import Foundation

/// Reassembles events written as `part` lines (protocol §1.1): each process's pieces, base64-decoded and
/// concatenated until its `last` part, give one event line.
struct EventAssembler {
    /// The largest event the runner reassembles (a spec's payload is at most 4 MiB; its JSON may escape).
    static let maxEventBytes = 64 << 20

    private var pending: [Int: [UInt8]] = [:]

    /// What one part line contributed.
    enum Outcome: Equatable {
        /// More parts are expected.
        case incomplete
        /// The event is whole: its line, UTF-8.
        case complete(String)
        /// The part is malformed; the message says why.
        case malformed(String)
    }

    /// Takes one `part` event's fields.
    mutating func accept(_ part: JSONObject) -> Outcome {
        guard let pid = part["pid"]?.intValue else { return .malformed("a part line without a numeric 'pid'") }
        guard let data = part["data"]?.stringValue, let bytes = Data(base64Encoded: data) else {
            return .malformed("a part line whose 'data' is not base64")
        }
        let last: Bool
        switch part["last"] {
        case nil: last = false
        case .bool(let b)?: last = b
        default: return .malformed("a part line whose 'last' is not a boolean")
        }
        var buffer = pending.removeValue(forKey: pid) ?? []
        buffer += bytes
        if buffer.count > Self.maxEventBytes { return .malformed("an event of process \(pid) longer than \(Self.maxEventBytes >> 20) MiB") }
        guard last else {
            pending[pid] = buffer
            return .incomplete
        }
        guard let line = String(validating: buffer, as: UTF8.self) else {
            return .malformed("the parts of process \(pid) are not UTF-8")
        }
        return .complete(line)
    }

    /// Processes whose last event is unfinished.
    var unfinished: [Int] { pending.keys.sorted() }
}
