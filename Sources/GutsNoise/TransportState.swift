/// The transport phase after a finished handshake (Noise spec section 5, "after
/// `Split()`"): one `CipherState` per direction, plus the values that identify the session.
///
/// Messages must be decrypted in the order they were encrypted (nonces are implicit).
/// A `decryptionFailed` error means the stream was corrupted or forged: tear the session
/// down rather than continuing. `sender` and `receiver` are exposed for the in-place fast
/// path and for `rekey()` (spec section 11.3), which both peers must apply at the same
/// point of the stream.
public struct TransportState: Sendable {
    /// Largest plaintext in one transport message: 65535 minus the 16-byte tag.
    public static let maxPlaintextLength = NoiseProtocol.maxMessageLength - NoiseProtocol.tagLength

    /// The final handshake hash `h` (64 bytes), equal on both sides (spec section 11.2).
    public let handshakeHash: [UInt8]
    /// The peer's authenticated static public key.
    public let remoteStaticKey: [UInt8]
    /// Encrypts our messages: the first `Split()` output for the initiator, the second for
    /// the responder.
    public var sender: CipherState
    /// Decrypts the peer's messages.
    public var receiver: CipherState

    init(handshakeHash: [UInt8], remoteStaticKey: [UInt8], sender: CipherState, receiver: CipherState) {
        self.handshakeHash = handshakeHash
        self.remoteStaticKey = remoteStaticKey
        self.sender = sender
        self.receiver = receiver
    }

    /// Encrypts one transport message (empty associated data). Throws `messageTooLong` for
    /// plaintexts over `maxPlaintextLength` bytes, or `nonceExhausted`.
    public mutating func encrypt(_ plaintext: [UInt8]) throws -> [UInt8] {
        try sender.encryptWithAd([], plaintext)
    }

    /// Authenticates and decrypts one transport message. Throws `messageTooLong`,
    /// `messageTooShort` (under 16 bytes), `decryptionFailed`, or `nonceExhausted`.
    public mutating func decrypt(_ ciphertext: [UInt8]) throws -> [UInt8] {
        try receiver.decryptWithAd([], ciphertext)
    }
}
