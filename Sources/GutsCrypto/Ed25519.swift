import CSodium

/// An Ed25519 signing key pair: the node identity.
public struct Ed25519KeyPair: Sendable {
    public static let seedLength = 32
    public static let publicKeyLength = 32
    public static let signatureLength = 64

    /// 32-byte seed; the secret from which everything else is derived.
    public let seed: [UInt8]
    public let publicKey: [UInt8]
    /// libsodium's 64-byte expanded secret key (seed || public key).
    private let secretKey: [UInt8]

    public init(seed: [UInt8]) throws {
        guard seed.count == Self.seedLength else {
            throw CryptoError.invalidKeyLength(expected: Self.seedLength, got: seed.count)
        }
        Sodium.ensureInitialized()
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        _ = pk.withUnsafeMutableBufferPointer { p in
            sk.withUnsafeMutableBufferPointer { s in
                seed.withUnsafeBufferPointer { sd in
                    crypto_sign_seed_keypair(p.baseAddress!, s.baseAddress!, sd.baseAddress!)
                }
            }
        }
        self.seed = seed
        self.publicKey = pk
        self.secretKey = sk
    }

    public static func generate() -> Ed25519KeyPair {
        guard let kp = try? Ed25519KeyPair(seed: Random.bytes(seedLength)) else {
            preconditionFailure("unreachable: 32-byte seed always accepted")
        }
        return kp
    }

    /// Detached signature over `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        var sig = [UInt8](repeating: 0, count: Self.signatureLength)
        _ = sig.withUnsafeMutableBufferPointer { sg in
            message.withUnsafeBufferPointer { m in
                secretKey.withUnsafeBufferPointer { s in
                    crypto_sign_detached(sg.baseAddress!, nil, m.baseAddress, UInt64(m.count), s.baseAddress!)
                }
            }
        }
        return sig
    }
}

public enum Ed25519 {
    /// Verifies a detached signature. Wrong lengths simply fail verification.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        guard signature.count == Ed25519KeyPair.signatureLength,
              publicKey.count == Ed25519KeyPair.publicKeyLength else { return false }
        Sodium.ensureInitialized()
        return signature.withUnsafeBufferPointer { sg in
            message.withUnsafeBufferPointer { m in
                publicKey.withUnsafeBufferPointer { p in
                    crypto_sign_verify_detached(sg.baseAddress!, m.baseAddress, UInt64(m.count), p.baseAddress!) == 0
                }
            }
        }
    }
}
