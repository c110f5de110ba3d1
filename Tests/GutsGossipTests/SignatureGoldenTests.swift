import GutsCrypto
import GutsGossip
import GutsSupport
import XCTest

/// The bytes a gossip origin signs, the signature and the message ID, byte for byte with a
/// fixed key. The expected values were not made by this code: the signed bytes were
/// assembled from guts-protocol(7) (0x30 Gossip), signed with OpenSSL 3 (`openssl pkeyutl
/// -sign -rawin`, pure Ed25519) and hashed with Python's hashlib.blake2b(digest_size=32),
/// so a mistake made the same way when signing and verifying fails here.
///
///     seed 00 01 .. 1f, topic "guts/commits", sequence 0x0102030405060708,
///     timestamp 1800000000123, data "hello gossip"
final class SignatureGoldenTests: XCTestCase {
    static let signedBytes = "677574732d676f737369702d7631"  // "guts-gossip-v1"
        + "00"  // zero byte
        + "0c677574732f636f6d6d697473"  // str8 topic
        + "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"  // origin
        + "0102030405060708"  // u64 sequence
        + "000001a3185c507b"  // u64 timestamp
        + "0000000c68656c6c6f20676f73736970"  // bytes32 data
    static let signature = "141e0392c5c735aca6483dbecf0c428287ac291ad4212d96f9ab78512e3719ac"
        + "888250327d3454c8614c13f1c534faa01dd480441e5f64dbae4b79f87b3db70c"
    static let id = "8090b7f1837eba824161353917c3197eba58bc03402ebcd06a6d7cb074016557"
    /// The same key's signature over the same bytes with sequence and timestamp swapped.
    static let swappedSignature = "8a3d46366e02764295e837786b076e93d8cbce4927832ce608b715ee0c740e82"
        + "f4220814a36de71c9dc080230a55e74ca2114e36d3e2879fe94023cf1728fd0a"

    let timestamp: UInt64 = 1_800_000_000_123

    func golden(signature: String = signature) throws -> Gossip {
        let key = try Ed25519KeyPair(seed: Array(0..<32))
        return Gossip(topic: "guts/commits", origin: key.publicKey, sequence: 0x0102_0304_0506_0708, timestamp: timestamp,
                      data: Array("hello gossip".utf8), signature: try XCTUnwrap(Hex.decode(signature)))
    }

    func testSignedBytesSignatureAndIDAreByteExact() throws {
        let g = try golden()
        XCTAssertEqual(Hex.encode(g.signedBytes), Self.signedBytes)
        XCTAssertEqual(Hex.encode(try Ed25519KeyPair(seed: Array(0..<32)).sign(g.signedBytes)), Self.signature)
        XCTAssertEqual(Hex.encode(g.id), Self.id)
    }

    /// The engine accepts the golden message under the golden ID, and refuses a signature
    /// over the fields in another order.
    func testEngineVerifiesAgainstTheSpecifiedBytes() throws {
        // The ID does not cover the signature, so each message goes to its own engine.
        var engine = try makeEngine(peers: [])
        let (swapped, _) = engine.inject(try golden(signature: Self.swappedSignature), now: at(1), wallClockMillis: timestamp)
        XCTAssertEqual(swapped, .failure(.badSignature))
        engine = try makeEngine(peers: [])
        let (result, _) = engine.inject(try golden(), now: at(1), wallClockMillis: timestamp)
        XCTAssertEqual(try result.get(), try XCTUnwrap(Hex.decode(Self.id)))
    }
}
