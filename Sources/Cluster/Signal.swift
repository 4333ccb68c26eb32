import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// A POSIX signal: what `worker.kill(signal)` sends and what `'exit'` reports as `signal` (Node spells it by
/// name, `'SIGTERM'`; `name` gives that spelling).
public struct Signal: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The signal number.
    public let rawValue: Int32

    /// The signal of this number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The signal of a Node-style name (`"SIGTERM"`), if known.
    public init?(name: String) {
        guard let number = Signals.number(name) else { return nil }
        rawValue = number
    }

    /// Node's name of the signal (`"SIGTERM"`); `"SIG<n>"` for one without a name.
    public var name: String { Signals.name(rawValue) }

    /// The name, as `String(describing:)` shows it.
    public var description: String { name }

    /// `SIGTERM`, the default of `worker.kill()`.
    public static let terminate = Signal(rawValue: SIGTERM)
    /// `SIGKILL`.
    public static let kill = Signal(rawValue: SIGKILL)
    /// `SIGINT`.
    public static let interrupt = Signal(rawValue: SIGINT)
    /// `SIGHUP`.
    public static let hangup = Signal(rawValue: SIGHUP)
    /// `SIGQUIT`.
    public static let quit = Signal(rawValue: SIGQUIT)
    /// `SIGUSR1`.
    public static let userDefinedOne = Signal(rawValue: SIGUSR1)
    /// `SIGUSR2`.
    public static let userDefinedTwo = Signal(rawValue: SIGUSR2)
}
