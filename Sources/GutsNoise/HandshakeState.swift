import GutsCrypto

/// A Noise `HandshakeState` (spec section 5.3) for `Noise_XX_25519_ChaChaPoly_BLAKE2b`,
/// a pure state machine: bytes in, bytes out, no I/O and no clock.
///
/// The XX pattern (spec section 7.5) has no pre-messages and three messages:
///
///     -> e
///     <- e, ee, s, es
///     -> s, se
///
/// Each side alternates `writeMessage` and `readMessage` as `isMyTurn` says; once
/// `isFinished` is true, `intoTransport()` performs `Split()` and yields the
/// `TransportState`.
///
/// Every thrown error is terminal: the state records the failure and every later
/// `writeMessage`, `readMessage` or `intoTransport` throws `NoiseError.failedState`, so a
/// peer cannot probe or retry a handshake. (This is a value type: code that deliberately
/// keeps a copy from before the failing call still has that copy. Don't.)
public struct HandshakeState: Sendable {
    /// Message pattern tokens (spec section 7.1). `ss` and pre-messages are not needed by XX.
    enum Token: Sendable { case e, s, ee, es, se }

    /// The XX message patterns, in order; even indices are sent by the initiator.
    static let messagePatterns: [[Token]] = [
        [.e],
        [.e, .ee, .s, .es],
        [.s, .se],
    ]

    /// Which side of the handshake this state plays.
    public let role: NoiseRole
    private var symmetric: SymmetricState
    private let localStatic: X25519KeyPair
    private var localEphemeral: X25519KeyPair?
    /// The peer's static public key (`rs`), known once it has been received and decrypted
    /// (after message 2 for the initiator, message 3 for the responder). Only
    /// authenticated once the handshake is finished.
    public private(set) var remoteStaticKey: [UInt8]?
    /// The peer's ephemeral public key (`re`), known after its first message.
    public private(set) var remoteEphemeralKey: [UInt8]?
    private var messageIndex = 0
    private var failed = false

    /// `Initialize()` (spec section 5.3) for XX: `InitializeSymmetric(protocol_name)`, then
    /// `MixHash(prologue)`. Both peers must use the same prologue or the handshake fails.
    ///
    /// - Parameters:
    ///   - localStatic: this node's long-term X25519 key pair (`s`).
    ///   - localEphemeral: the ephemeral key pair (`e`); for test vectors only. Leave nil
    ///     so a fresh random one is generated when the `e` token is written. Reusing an
    ///     ephemeral key destroys the handshake's security.
    public init(role: NoiseRole, prologue: [UInt8], localStatic: X25519KeyPair, localEphemeral: X25519KeyPair? = nil) {
        self.role = role
        self.localStatic = localStatic
        self.localEphemeral = localEphemeral
        self.symmetric = SymmetricState(protocolName: NoiseProtocol.name)
        self.symmetric.mixHash(prologue)
    }

    /// This node's static public key, as the peer will see it.
    public var localStaticPublicKey: [UInt8] { localStatic.publicKey }

    /// True when `writeMessage` is the legal next call; false when `readMessage` is, or
    /// when the handshake is finished or has failed.
    public var isMyTurn: Bool {
        guard !failed, messageIndex < Self.messagePatterns.count else { return false }
        return (messageIndex % 2 == 0) == (role == .initiator)
    }

    /// True once all three XX messages have been written or read without failure.
    public var isFinished: Bool { !failed && messageIndex == Self.messagePatterns.count }

    /// True once any call has thrown; the state is then unusable.
    public var hasFailed: Bool { failed }

    /// The current handshake hash `h` (64 bytes, spec section 5.2 `GetHandshakeHash()`).
    /// After the handshake both peers hold the same value; it identifies the session and
    /// is suitable for channel binding (spec section 11.2).
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// `WriteMessage(payload, message_buffer)` (spec section 5.3): processes the tokens of
    /// the next message pattern, then appends `EncryptAndHash(payload)`. Returns the whole
    /// handshake message. The payload of message 1 is sent in clear; that of message 2 is
    /// encrypted but the responder does not yet know who it talks to.
    ///
    /// Throws `notMyTurn`, `handshakeFinished`, `messageTooLong` (message over 65535 bytes),
    /// or `failedState`.
    public mutating func writeMessage(payload: [UInt8]) throws -> [UInt8] {
        guard !failed else { throw NoiseError.failedState }
        do {
            try checkTurn(writing: true)
            var message: [UInt8] = []
            for token in Self.messagePatterns[messageIndex] {
                switch token {
                case .e:
                    let e = localEphemeral ?? X25519KeyPair.generate()
                    localEphemeral = e
                    message += e.publicKey
                    symmetric.mixHash(e.publicKey)
                case .s:
                    message += try symmetric.encryptAndHash(localStatic.publicKey)
                case .ee, .es, .se:
                    try mixDH(token)
                }
            }
            guard message.count + payload.count + (symmetric.hasKey ? NoiseProtocol.tagLength : 0)
                <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
            message += try symmetric.encryptAndHash(payload)
            messageIndex += 1
            return message
        } catch {
            failed = true
            throw error
        }
    }

    /// `ReadMessage(message, payload_buffer)` (spec section 5.3): processes the tokens of
    /// the next message pattern from `message`, then returns `DecryptAndHash` of the rest
    /// (the peer's payload).
    ///
    /// Throws `notMyTurn`, `handshakeFinished`, `messageTooLong`, `messageTooShort`,
    /// `decryptionFailed`, `invalidPublicKey`, or `failedState`.
    public mutating func readMessage(_ message: [UInt8]) throws -> [UInt8] {
        guard !failed else { throw NoiseError.failedState }
        do {
            try checkTurn(writing: false)
            guard message.count <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
            var reader = Reader(message)
            for token in Self.messagePatterns[messageIndex] {
                switch token {
                case .e:
                    let re = try reader.take(NoiseProtocol.dhLength)
                    remoteEphemeralKey = re
                    symmetric.mixHash(re)
                case .s:
                    let count = NoiseProtocol.dhLength + (symmetric.hasKey ? NoiseProtocol.tagLength : 0)
                    remoteStaticKey = try symmetric.decryptAndHash(reader.take(count))
                case .ee, .es, .se:
                    try mixDH(token)
                }
            }
            let rest = reader.rest()
            if symmetric.hasKey, rest.count < NoiseProtocol.tagLength { throw NoiseError.messageTooShort }
            let payload = try symmetric.decryptAndHash(rest)
            messageIndex += 1
            return payload
        } catch {
            failed = true
            throw error
        }
    }

    /// `Split()` (spec section 5.2) once the handshake is finished: the initiator sends with
    /// the first derived `CipherState` and receives with the second; the responder the
    /// reverse. Throws `handshakeNotFinished` or `failedState`.
    public func intoTransport() throws -> TransportState {
        guard !failed else { throw NoiseError.failedState }
        guard isFinished else { throw NoiseError.handshakeNotFinished }
        guard let remoteStaticKey else { preconditionFailure("XX invariant: finished handshake without rs") }
        let (c1, c2) = symmetric.split()
        let (sender, receiver) = role == .initiator ? (c1, c2) : (c2, c1)
        return TransportState(handshakeHash: symmetric.handshakeHash, remoteStaticKey: remoteStaticKey,
                              sender: sender, receiver: receiver)
    }

    private func checkTurn(writing: Bool) throws {
        guard messageIndex < Self.messagePatterns.count else { throw NoiseError.handshakeFinished }
        guard isMyTurn == writing else { throw NoiseError.notMyTurn }
    }

    /// `MixKey(DH(...))` for a DH token; which local key meets which remote key depends on
    /// the role (spec section 5.3): `es` is initiator-ephemeral with responder-static,
    /// `se` initiator-static with responder-ephemeral.
    private mutating func mixDH(_ token: Token) throws {
        let local: X25519KeyPair?
        let remote: [UInt8]?
        switch (token, role) {
        case (.ee, _): (local, remote) = (localEphemeral, remoteEphemeralKey)
        case (.es, .initiator): (local, remote) = (localEphemeral, remoteStaticKey)
        case (.es, .responder): (local, remote) = (localStatic, remoteEphemeralKey)
        case (.se, .initiator): (local, remote) = (localStatic, remoteEphemeralKey)
        case (.se, .responder): (local, remote) = (localEphemeral, remoteStaticKey)
        case (.e, _), (.s, _): preconditionFailure("not a DH token")
        }
        guard let local, let remote else { preconditionFailure("XX invariant: DH key missing for \(token)") }
        let shared: [UInt8]
        do {
            shared = try local.sharedSecret(with: remote)
        } catch {
            throw NoiseError.invalidPublicKey
        }
        symmetric.mixKey(shared)
    }
}

/// Bounds-checked cursor over an incoming message.
private struct Reader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func take(_ count: Int) throws -> [UInt8] {
        guard bytes.count - offset >= count else { throw NoiseError.messageTooShort }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    func rest() -> [UInt8] { Array(bytes[offset...]) }
}
