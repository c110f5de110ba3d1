import GutsIdentity
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers

/// What the node needs of known_peers (guts-known-peers(5)) for its bootstrap peers. The
/// CLI resolves every bootstrap address before the node starts: one known_peers lists is
/// dialled with that peer ID demanded, so a different identity fails the handshake. The
/// others (`learn`) are pinned to the identity of their first session, which is recorded.
public final class KnownPeersHook: Sendable {
    /// The known_peers file.
    public let path: String
    /// Bootstrap indices to pin and record on their first session.
    public let learn: Set<Int>
    /// The command that forgets the entry of an address.
    public let forgetCommand: @Sendable (String) -> String
    /// Bootstrap indices whose demanded identity comes from known_peers (read or learned).
    private let fromFile: NIOLockedValueBox<Set<Int>>

    public init(path: String, learn: Set<Int>, fromFile: Set<Int>, forgetCommand: @escaping @Sendable (String) -> String) {
        self.path = path
        self.learn = learn
        self.fromFile = NIOLockedValueBox(fromFile)
        self.forgetCommand = forgetCommand
    }

    func pinned(_ b: Int) { fromFile.withLockedValue { _ = $0.insert(b) } }

    /// The log text for a failed dial of bootstrap peer `b` whose identity changed from the
    /// one known_peers records; nil for other failures.
    func explain(_ error: Error, bootstrap b: Int, address: String) -> String? {
        guard fromFile.withLockedValue({ $0.contains(b) }) else { return nil }
        var close = error as? SessionClose
        if let t = error as? TransportError, case let .closed(c) = t { close = c }
        guard case let .identityMismatch(expected, actual)? = close else { return nil }
        return "WARNING: its identity has changed: \(path) records \(expected) for \(address), but it presented \(actual); refusing it (if the change is expected: \(forgetCommand(address)), then restart the node)"
    }
}
