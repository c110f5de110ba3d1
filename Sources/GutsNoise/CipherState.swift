import GutsCrypto

/// A Noise `CipherState` (spec section 5.1): an optional 32-byte ChaCha20-Poly1305
/// key `k` and a 64-bit nonce `n` that counts messages.
///
/// Without a key every operation passes data through unchanged, exactly as the spec's
/// `EncryptWithAd`/`DecryptWithAd` do before the first `MixKey`.
///
/// Nonce 2^64-1 is reserved (spec section 5.1): once `n` reaches it, encryption and
/// decryption throw `NoiseError.nonceExhausted`. No ciphertext handled here may exceed
/// 65535 bytes, the Noise message limit (spec section 3).
///
/// A failed decryption leaves `n` unchanged (spec section 5.1); callers of a transport
/// should still treat it as fatal for the session.
public struct CipherState: Sendable {
    /// Reserved nonce value used only by `rekey()` (spec sections 4.2 and 5.1).
    public static let maxNonce: UInt64 = .max
    public static let keyLength = ChaChaPoly.keyLength

    private var key: [UInt8]?
    /// The next nonce to use (`n`).
    public private(set) var nonce: UInt64

    /// `InitializeKey(key)` (spec section 5.1): sets `k = key` and `n = 0`.
    /// `key` must be nil (empty) or exactly 32 bytes.
    public init(key: [UInt8]?) {
        precondition(key == nil || key?.count == Self.keyLength, "CipherState key must be 32 bytes")
        Sodium.ensureInitialized()
        self.key = key
        self.nonce = 0
    }

    /// `HasKey()` (spec section 5.1).
    public var hasKey: Bool { key != nil }

    /// `SetNonce(nonce)` (spec section 5.1). Only for protocols that carry explicit
    /// nonces or for tests; in-order transports never need it.
    public mutating func setNonce(_ nonce: UInt64) {
        self.nonce = nonce
    }

    /// `EncryptWithAd(ad, plaintext)` (spec section 5.1): returns
    /// `ENCRYPT(k, n++, ad, plaintext)` (ciphertext followed by a 16-byte tag), or the
    /// plaintext unchanged when there is no key.
    public mutating func encryptWithAd(_ ad: [UInt8], _ plaintext: [UInt8]) throws -> [UInt8] {
        guard let key else {
            guard plaintext.count <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
            return plaintext
        }
        guard plaintext.count <= NoiseProtocol.maxMessageLength - NoiseProtocol.tagLength else {
            throw NoiseError.messageTooLong
        }
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
        let ciphertext = ChaChaPoly.seal(key: key, nonce: nonce, ad: ad, plaintext: plaintext)
        nonce += 1
        return ciphertext
    }

    /// `DecryptWithAd(ad, ciphertext)` (spec section 5.1): authenticates and decrypts
    /// with `n`, incrementing `n` only on success; returns the input unchanged when there
    /// is no key.
    public mutating func decryptWithAd(_ ad: [UInt8], _ ciphertext: [UInt8]) throws -> [UInt8] {
        guard ciphertext.count <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
        guard let key else { return ciphertext }
        guard ciphertext.count >= NoiseProtocol.tagLength else { throw NoiseError.messageTooShort }
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
        guard let plaintext = try? ChaChaPoly.open(key: key, nonce: nonce, ad: ad, ciphertext: ciphertext) else {
            throw NoiseError.decryptionFailed
        }
        nonce += 1
        return plaintext
    }

    /// Fast path for transport: encrypts `plaintextCount` bytes at the start of `buffer` in
    /// place and appends the 16-byte tag, with empty associated data. Returns the number of
    /// bytes written (`plaintextCount + 16`, or `plaintextCount` when there is no key).
    ///
    /// `buffer.count` must be at least `plaintextCount + 16` (a programmer error otherwise).
    public mutating func encryptInPlace(_ buffer: UnsafeMutableRawBufferPointer, plaintextCount: Int) throws -> Int {
        precondition(plaintextCount >= 0 && buffer.count >= plaintextCount + NoiseProtocol.tagLength,
                     "encryptInPlace: buffer must hold the plaintext plus a 16-byte tag")
        guard let key else {
            guard plaintextCount <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
            return plaintextCount
        }
        guard plaintextCount <= NoiseProtocol.maxMessageLength - NoiseProtocol.tagLength else {
            throw NoiseError.messageTooLong
        }
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
        guard let base = buffer.baseAddress else { preconditionFailure("unreachable: buffer has at least 16 bytes") }
        let n = nonce
        key.withUnsafeBytes { k in
            ChaChaPoly.seal(key: k, nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                            plaintext: base, plaintextCount: plaintextCount, output: base)
        }
        nonce += 1
        return plaintextCount + NoiseProtocol.tagLength
    }

    /// Fast path for transport: authenticates and decrypts `ciphertextCount` bytes (tag
    /// included) at the start of `buffer` in place, with empty associated data. Returns the
    /// plaintext length (`ciphertextCount - 16`, or `ciphertextCount` when there is no key).
    /// After a failure the first `ciphertextCount` bytes of `buffer` are unspecified.
    ///
    /// `ciphertextCount` must lie in `0...buffer.count` (a programmer error otherwise).
    public mutating func decryptInPlace(_ buffer: UnsafeMutableRawBufferPointer, ciphertextCount: Int) throws -> Int {
        precondition(ciphertextCount >= 0 && ciphertextCount <= buffer.count,
                     "decryptInPlace: ciphertextCount out of buffer bounds")
        guard let base = buffer.baseAddress else {
            return try decrypt(UnsafeRawBufferPointer(start: nil, count: 0), into: nil)
        }
        return try decrypt(UnsafeRawBufferPointer(start: base, count: ciphertextCount), into: base)
    }

    /// Fast path for transport: authenticates and decrypts `ciphertext` (tag included) into
    /// `output`, which must have room for `ciphertext.count - 16` bytes and may equal the
    /// ciphertext's address. Empty associated data. Returns the plaintext length. Decrypting
    /// straight out of a receive buffer saves a copy per byte on bulk transfers.
    public mutating func decrypt(_ ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer?) throws -> Int {
        guard ciphertext.count <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
        guard let key else {
            if ciphertext.count > 0, let output, let src = ciphertext.baseAddress, output != UnsafeMutableRawPointer(mutating: src) {
                output.copyMemory(from: src, byteCount: ciphertext.count)
            }
            return ciphertext.count
        }
        guard ciphertext.count >= NoiseProtocol.tagLength, let src = ciphertext.baseAddress else { throw NoiseError.messageTooShort }
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
        let n = nonce
        let ok = key.withUnsafeBytes { k in
            ChaChaPoly.open(key: k, nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                            ciphertext: src, ciphertextCount: ciphertext.count, output: output)
        }
        guard ok else { throw NoiseError.decryptionFailed }
        nonce += 1
        return ciphertext.count - NoiseProtocol.tagLength
    }

    /// Fast path for transport: encrypts `plaintext` into `output` (room for
    /// `plaintext.count + 16` bytes; may equal the plaintext's address) and appends the tag.
    /// Empty associated data. Returns the bytes written.
    public mutating func encrypt(_ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawPointer) throws -> Int {
        guard let key else {
            guard plaintext.count <= NoiseProtocol.maxMessageLength else { throw NoiseError.messageTooLong }
            if plaintext.count > 0, let src = plaintext.baseAddress, output != UnsafeMutableRawPointer(mutating: src) {
                output.copyMemory(from: src, byteCount: plaintext.count)
            }
            return plaintext.count
        }
        guard plaintext.count <= NoiseProtocol.maxMessageLength - NoiseProtocol.tagLength else {
            throw NoiseError.messageTooLong
        }
        guard nonce < Self.maxNonce else { throw NoiseError.nonceExhausted }
        let n = nonce
        key.withUnsafeBytes { k in
            ChaChaPoly.seal(key: k, nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                            plaintext: plaintext.baseAddress, plaintextCount: plaintext.count, output: output)
        }
        nonce += 1
        return plaintext.count + NoiseProtocol.tagLength
    }

    /// `Rekey()` (spec sections 4.2 and 5.1): `k = REKEY(k)`, the first 32 bytes of
    /// `ENCRYPT(k, 2^64-1, zerolen, zeros)`. The nonce is not reset. Does nothing
    /// without a key. Both peers must rekey at the same point in the message stream.
    public mutating func rekey() {
        guard let key else { return }
        let zeros = [UInt8](repeating: 0, count: Self.keyLength)
        let sealed = ChaChaPoly.seal(key: key, nonce: Self.maxNonce, ad: [], plaintext: zeros)
        self.key = Array(sealed.prefix(Self.keyLength))
    }
}
