import GutsCrypto
import GutsIdentity

/// The handshake payload that binds a node's Ed25519 identity to one Noise session
/// (guts-protocol(7), IDENTITY PROOF).
///
///     u8  version (1)
///     32  Ed25519 public key
///     64  Ed25519 signature over  "guts-noise-identity-v1" || h || s
///
/// where h is the handshake hash just before the carrying handshake message is written
/// (so it covers the initiator's fresh ephemeral key, making the proof unusable in any
/// other session), and s is the sender's Noise static public key.
public enum IdentityProof {
    public static let version: UInt8 = 1
    public static let domain: [UInt8] = Array("guts-noise-identity-v1".utf8)
    public static let length = 1 + 32 + 64

    static func signedBytes(handshakeHash: [UInt8], noiseStatic: [UInt8]) -> [UInt8] {
        domain + handshakeHash + noiseStatic
    }

    public static func make(identity: Ed25519KeyPair, handshakeHash: [UInt8], noiseStatic: [UInt8]) -> [UInt8] {
        let sig = identity.sign(signedBytes(handshakeHash: handshakeHash, noiseStatic: noiseStatic))
        return [version] + identity.publicKey + sig
    }

    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        case malformed(String)
        case badSignature

        public var description: String {
            switch self {
            case let .malformed(why): return "malformed identity proof: \(why)"
            case .badSignature: return "identity proof signature does not verify"
            }
        }
    }

    /// Checks a received proof and returns the proven peer identity.
    public static func verify(_ payload: [UInt8], handshakeHash: [UInt8], remoteNoiseStatic: [UInt8]) throws -> PeerID {
        guard payload.count == length else { throw Failure.malformed("\(payload.count) bytes, expected \(length)") }
        guard payload[0] == version else { throw Failure.malformed("unknown proof version \(payload[0])") }
        let key = Array(payload[1..<33])
        let sig = Array(payload[33..<97])
        guard Ed25519.verify(signature: sig, message: signedBytes(handshakeHash: handshakeHash, noiseStatic: remoteNoiseStatic), publicKey: key) else {
            throw Failure.badSignature
        }
        guard let id = try? PeerID(publicKey: key) else { throw Failure.malformed("bad key") }
        return id
    }
}
