import GutsCrypto

/// A Noise `SymmetricState` (spec section 5.2): the chaining key `ck`, the handshake
/// hash `h`, and the `CipherState` keyed from `ck`. Internal: only `HandshakeState`
/// drives it, in the order the handshake pattern dictates.
struct SymmetricState: Sendable {
    private(set) var chainingKey: [UInt8]
    private(set) var handshakeHash: [UInt8]
    private(set) var cipher: CipherState

    /// `InitializeSymmetric(protocol_name)`: a name of at most HASHLEN (64) bytes is
    /// zero-padded to 64 bytes, a longer one is hashed; `ck = h`; no key.
    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        let h: [UInt8]
        if name.count <= NoiseProtocol.hashLength {
            h = name + [UInt8](repeating: 0, count: NoiseProtocol.hashLength - name.count)
        } else {
            h = BLAKE2b.hash(name)
        }
        handshakeHash = h
        chainingKey = h
        cipher = CipherState(key: nil)
    }

    var hasKey: Bool { cipher.hasKey }

    /// `MixKey(input_key_material)`: `ck, temp_k = HKDF(ck, ikm, 2)`, then
    /// `InitializeKey(temp_k)` with `temp_k` truncated to 32 bytes (HASHLEN is 64).
    mutating func mixKey(_ inputKeyMaterial: [UInt8]) {
        let (ck, k) = Self.hkdf2(chainingKey, inputKeyMaterial)
        chainingKey = ck
        cipher = CipherState(key: k)
    }

    /// HKDF(ck, ikm, 2): the first output whole, the second truncated to a cipher key.
    static func hkdf2(_ ck: [UInt8], _ ikm: [UInt8]) -> ([UInt8], [UInt8]) {
        let h = NoiseProtocol.hashLength
        var second: [UInt8] = []
        let first = [UInt8](unsafeUninitializedCapacity: h) { out, initialized in
            withUnsafeTemporaryAllocation(byteCount: 2 * h, alignment: 8) { both in
                guard let b = both.baseAddress, let o = out.baseAddress else { preconditionFailure("unreachable: buffers have bytes") }
                ck.withUnsafeBytes { c in
                    ikm.withUnsafeBytes { i in BLAKE2b.hkdf(chainingKey: c, inputKeyMaterial: i, outputs: 2, into: b) }
                }
                UnsafeMutableRawPointer(o).copyMemory(from: b, byteCount: h)
                second = Array(UnsafeRawBufferPointer(start: b + h, count: CipherState.keyLength))
            }
            initialized = h
        }
        return (first, second)
    }

    /// `MixHash(data)`: `h = HASH(h || data)`.
    mutating func mixHash(_ data: [UInt8]) {
        handshakeHash = BLAKE2b.hash(handshakeHash, data)
    }

    /// `EncryptAndHash(plaintext)`: encrypts with `h` as associated data, then mixes the
    /// ciphertext into `h`.
    mutating func encryptAndHash(_ plaintext: [UInt8]) throws -> [UInt8] {
        let ciphertext = try cipher.encryptWithAd(handshakeHash, plaintext)
        mixHash(ciphertext)
        return ciphertext
    }

    /// `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data, then mixes the
    /// ciphertext into `h`.
    mutating func decryptAndHash(_ ciphertext: [UInt8]) throws -> [UInt8] {
        let plaintext = try cipher.decryptWithAd(handshakeHash, ciphertext)
        mixHash(ciphertext)
        return plaintext
    }

    /// `Split()`: `temp_k1, temp_k2 = HKDF(ck, zerolen, 2)`, each truncated to 32 bytes,
    /// as two fresh `CipherState`s (initiator-to-responder first).
    func split() -> (CipherState, CipherState) {
        let (first, second) = Self.hkdf2(chainingKey, [])
        return (CipherState(key: Array(first.prefix(CipherState.keyLength))), CipherState(key: second))
    }
}
