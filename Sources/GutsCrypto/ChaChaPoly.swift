import CSodium

/// ChaCha20-Poly1305 IETF with Noise's nonce encoding: 32 bits of zeros followed
/// by the 64-bit counter in little-endian (Noise spec section 12.3).
public enum ChaChaPoly {
    public static let keyLength = 32
    public static let tagLength = 16

    /// The 12-byte IETF nonce (4 zero bytes, then the counter little-endian) in a
    /// stack value, so the per-message hot path does not allocate.
    @inline(__always)
    static func noiseNonce(_ n: UInt64) -> (UInt32, UInt32, UInt32) {
        (0, UInt32(truncatingIfNeeded: n).littleEndian, UInt32(truncatingIfNeeded: n >> 32).littleEndian)
    }

    /// Encrypts `plaintextCount` bytes at `plaintext` into `output`, which must have
    /// room for `plaintextCount + 16` bytes. `output` may equal `plaintext` (in place).
    @inline(__always)
    public static func seal(
        key: UnsafeRawBufferPointer, nonce: UInt64, ad: UnsafeRawBufferPointer,
        plaintext: UnsafeRawPointer?, plaintextCount: Int, output: UnsafeMutableRawPointer
    ) {
        var npub = noiseNonce(nonce)
        var clen: UInt64 = 0
        _ = withUnsafeBytes(of: &npub) { np in
            crypto_aead_chacha20poly1305_ietf_encrypt(
                output.assumingMemoryBound(to: UInt8.self), &clen,
                plaintext?.assumingMemoryBound(to: UInt8.self), UInt64(plaintextCount),
                ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count),
                nil, np.baseAddress!.assumingMemoryBound(to: UInt8.self), key.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// Decrypts and authenticates `ciphertextCount` bytes (tag included) into `output`
    /// (room for `ciphertextCount - 16`). Returns false when authentication fails;
    /// `output` is then unspecified and must not be used.
    @inline(__always)
    public static func open(
        key: UnsafeRawBufferPointer, nonce: UInt64, ad: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawPointer, ciphertextCount: Int, output: UnsafeMutableRawPointer?
    ) -> Bool {
        guard ciphertextCount >= tagLength else { return false }
        var npub = noiseNonce(nonce)
        var mlen: UInt64 = 0
        let rc = withUnsafeBytes(of: &npub) { np in
            crypto_aead_chacha20poly1305_ietf_decrypt(
                output?.assumingMemoryBound(to: UInt8.self), &mlen, nil,
                ciphertext.assumingMemoryBound(to: UInt8.self), UInt64(ciphertextCount),
                ad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(ad.count),
                np.baseAddress!.assumingMemoryBound(to: UInt8.self), key.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        return rc == 0
    }

    /// Array convenience: returns ciphertext || tag.
    public static func seal(key: [UInt8], nonce: UInt64, ad: [UInt8], plaintext: [UInt8]) -> [UInt8] {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: plaintext.count + tagLength)
        key.withUnsafeBytes { k in
            ad.withUnsafeBytes { a in
                plaintext.withUnsafeBytes { p in
                    out.withUnsafeMutableBytes { o in
                        seal(key: k, nonce: nonce, ad: a, plaintext: p.baseAddress, plaintextCount: p.count, output: o.baseAddress!)
                    }
                }
            }
        }
        return out
    }

    /// Array convenience: authenticates and decrypts ciphertext || tag.
    public static func open(key: [UInt8], nonce: UInt64, ad: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        Sodium.ensureInitialized()
        guard ciphertext.count >= tagLength else { throw CryptoError.inputTooShort }
        var out = [UInt8](repeating: 0, count: ciphertext.count - tagLength)
        let ok = key.withUnsafeBytes { k in
            ad.withUnsafeBytes { a in
                ciphertext.withUnsafeBytes { c in
                    out.withUnsafeMutableBytes { o in
                        open(key: k, nonce: nonce, ad: a, ciphertext: c.baseAddress!, ciphertextCount: c.count, output: o.baseAddress)
                    }
                }
            }
        }
        guard ok else { throw CryptoError.authenticationFailed }
        return out
    }
}
