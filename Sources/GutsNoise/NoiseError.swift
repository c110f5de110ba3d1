/// Which side of the handshake a `HandshakeState` plays (Noise spec section 5.3, `initiator`).
public enum NoiseRole: Sendable {
    /// Sends the first handshake message (`-> e`).
    case initiator
    /// Receives the first handshake message.
    case responder
}

/// Failures of the Noise layer. None of them carries secret material.
///
/// A `HandshakeState` treats every error as terminal: after the first thrown error
/// every later call throws `failedState` (see `HandshakeState`).
public enum NoiseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `writeMessage` was called when a message from the peer was expected, or
    /// `readMessage` when it was our turn to write.
    case notMyTurn
    /// All handshake messages have been processed; use `intoTransport()`.
    case handshakeFinished
    /// `intoTransport()` was called before the last handshake message.
    case handshakeNotFinished
    /// A message would exceed, or does exceed, 65535 bytes (Noise spec section 3).
    case messageTooLong
    /// A message is shorter than its tokens and authentication tags require.
    case messageTooShort
    /// Authenticated decryption failed: the message was corrupted, forged, or keyed
    /// differently (wrong prologue, wrong peer, reordered message).
    case decryptionFailed
    /// The 64-bit nonce reached 2^64-1, which Noise reserves (spec section 5.1).
    case nonceExhausted
    /// The peer sent a public key that yields an all-zero Diffie-Hellman output
    /// (a low-order point, spec section 12.1).
    case invalidPublicKey
    /// An earlier call on this handshake failed; the handshake cannot be resumed.
    case failedState

    public var description: String {
        switch self {
        case .notMyTurn: return "noise: not this side's turn in the handshake"
        case .handshakeFinished: return "noise: handshake already finished"
        case .handshakeNotFinished: return "noise: handshake not finished yet"
        case .messageTooLong: return "noise: message longer than 65535 bytes"
        case .messageTooShort: return "noise: message too short"
        case .decryptionFailed: return "noise: decryption failed (corrupted, forged or mis-keyed message)"
        case .nonceExhausted: return "noise: nonce exhausted"
        case .invalidPublicKey: return "noise: invalid remote public key (low-order point)"
        case .failedState: return "noise: handshake state unusable after an earlier failure"
        }
    }
}
