import CSodium

/// A Curve25519 Diffie-Hellman key pair (Noise's `DH = 25519`).
public struct X25519KeyPair: Sendable {
    public let publicKey: [UInt8]
    public let secretKey: [UInt8]

    public static let keyLength = 32

    /// Derives the key pair from a 32-byte secret (clamping happens inside scalarmult).
    public init(secretKey: [UInt8]) throws {
        guard secretKey.count == Self.keyLength else {
            throw CryptoError.invalidKeyLength(expected: Self.keyLength, got: secretKey.count)
        }
        Sodium.ensureInitialized()
        var pub = [UInt8](repeating: 0, count: Self.keyLength)
        _ = pub.withUnsafeMutableBufferPointer { p in
            secretKey.withUnsafeBufferPointer { s in crypto_scalarmult_curve25519_base(p.baseAddress!, s.baseAddress!) }
        }
        self.publicKey = pub
        self.secretKey = secretKey
    }

    /// A fresh random key pair.
    public static func generate() -> X25519KeyPair {
        // 32 random bytes are always a valid secret key.
        guard let kp = try? X25519KeyPair(secretKey: Random.bytes(keyLength)) else {
            preconditionFailure("unreachable: 32-byte secret always accepted")
        }
        return kp
    }

    /// DH(secret, remotePublic). Throws for low-order remote points (all-zero output),
    /// as the Noise spec allows implementations to.
    public func sharedSecret(with remotePublicKey: [UInt8]) throws -> [UInt8] {
        guard remotePublicKey.count == Self.keyLength else {
            throw CryptoError.invalidKeyLength(expected: Self.keyLength, got: remotePublicKey.count)
        }
        var out = [UInt8](repeating: 0, count: Self.keyLength)
        let rc = out.withUnsafeMutableBufferPointer { o in
            secretKey.withUnsafeBufferPointer { s in
                remotePublicKey.withUnsafeBufferPointer { p in
                    crypto_scalarmult_curve25519(o.baseAddress!, s.baseAddress!, p.baseAddress!)
                }
            }
        }
        guard rc == 0 else { throw CryptoError.invalidPublicKey }
        return out
    }
}
