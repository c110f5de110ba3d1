import GutsCrypto
import GutsIdentity
import GutsSupport
import XCTest
@testable import GutsWire

/// The identity proof byte for byte, with fixed keys. The expected bytes were not made
/// by this code: M was assembled from guts-protocol(7), IDENTITY PROOF, and signed with
/// OpenSSL 3 (`openssl pkeyutl -sign -rawin`, pure Ed25519, RFC 8032), so a mistake made
/// the same way on both sides (field order, domain string, key in the wrong place) fails.
///
///     seed   00 01 02 .. 1f (Ed25519)      h  80 81 .. bf (64 bytes)    s  c0 c1 .. df (32 bytes)
///     M      "guts-noise-identity-v1" || h || s
final class IdentityProofGoldenTests: XCTestCase {
    var identity: Ed25519KeyPair {
        guard let key = try? Ed25519KeyPair(seed: Array(0..<32)) else { preconditionFailure("a 32-byte seed") }
        return key
    }
    let handshakeHash: [UInt8] = Array(0x80..<0xc0)
    let noiseStatic: [UInt8] = Array(0xc0..<0xe0)

    static let publicKey = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    static let proof = "01" + publicKey
        + "a01243a9099add8c67a44810a342362cba82301e6d2c2e2a098df6a20d1e6f8d"
        + "2ca78980378a422fdb11ebadff4deb682d3cb6ecde6b63dff3e43ecadc333506"
    /// The same key's signature over "guts-noise-identity-v1" || s || h (h and s swapped).
    static let swappedProof = "01" + publicKey
        + "3f485d67d357a22fb9870729395bbf60e3a9a467a3b4b948e3edadaa2387d3cb"
        + "119a3776e768fb7e6aa4a23a4949ead982e6484eba774c7b0b066a14cd723d08"

    func testSignedBytesAreDomainThenHashThenStatic() {
        let m = IdentityProof.signedBytes(handshakeHash: handshakeHash, noiseStatic: noiseStatic)
        XCTAssertEqual(m.count, 118)
        XCTAssertEqual(Hex.encode(m), Hex.encode(Array("guts-noise-identity-v1".utf8)) + Hex.encode(handshakeHash) + Hex.encode(noiseStatic))
    }

    func testProofIsByteExact() {
        XCTAssertEqual(Hex.encode(identity.publicKey), Self.publicKey)
        let proof = IdentityProof.make(identity: identity, handshakeHash: handshakeHash, noiseStatic: noiseStatic)
        XCTAssertEqual(Hex.encode(proof), Self.proof)
    }

    func testGoldenProofVerifies() throws {
        let proof = try XCTUnwrap(Hex.decode(Self.proof))
        let id = try IdentityProof.verify(proof, handshakeHash: handshakeHash, remoteNoiseStatic: noiseStatic)
        XCTAssertEqual(id, try PeerID(publicKey: identity.publicKey))
    }

    /// A signature over the fields in another order, or bound to another session or key, is refused.
    func testProofOverOtherBytesIsRejected() throws {
        let swapped = try XCTUnwrap(Hex.decode(Self.swappedProof))
        XCTAssertThrowsError(try IdentityProof.verify(swapped, handshakeHash: handshakeHash, remoteNoiseStatic: noiseStatic)) {
            XCTAssertEqual($0 as? IdentityProof.Failure, .badSignature)
        }
        let proof = try XCTUnwrap(Hex.decode(Self.proof))
        var otherHash = handshakeHash
        otherHash[63] ^= 1
        XCTAssertThrowsError(try IdentityProof.verify(proof, handshakeHash: otherHash, remoteNoiseStatic: noiseStatic))
        var otherStatic = noiseStatic
        otherStatic[0] ^= 1
        XCTAssertThrowsError(try IdentityProof.verify(proof, handshakeHash: handshakeHash, remoteNoiseStatic: otherStatic))
        XCTAssertThrowsError(try IdentityProof.verify([2] + proof.dropFirst(), handshakeHash: handshakeHash,
                                                      remoteNoiseStatic: noiseStatic)) {
            XCTAssertEqual($0 as? IdentityProof.Failure, .malformed("unknown proof version 2"))
        }
    }
}
