import GutsCrypto
import GutsSupport
import XCTest

/// Known-answer tests for the libsodium wrappers in GutsCrypto.
final class CryptoTests: XCTestCase {
    private func h(_ text: String) -> [UInt8] {
        guard let bytes = Hex.decode(text.filter { !$0.isWhitespace }) else {
            preconditionFailure("bad hex literal in test")
        }
        return bytes
    }

    // MARK: ChaCha20-Poly1305 IETF

    // RFC 8439 appendix A.5. Its nonce, 00000000 01020304 05060708, has the Noise form
    // (4 zero bytes, then a 64-bit little-endian counter), so it checks our nonce encoding
    // too: counter 0x0807060504030201. (The section 2.8.2 vector's nonce 07000000 40414243
    // 44454647 does not start with zeros and cannot be expressed through this API.)
    private var a5Key: [UInt8] { h("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0") }
    private let a5Counter: UInt64 = 0x0807_0605_0403_0201
    private var a5AD: [UInt8] { h("f33388860000000000004e91") }
    private var a5Plaintext: [UInt8] {
        Array(("Internet-Drafts are draft documents valid for a maximum of six months and may be "
            + "updated, replaced, or obsoleted by other documents at any time. It is inappropriate "
            + "to use Internet-Drafts as reference material or to cite them other than as "
            + "/\u{201C}work in progress./\u{201D}").utf8)
    }
    private var a5Ciphertext: [UInt8] {
        h("""
        64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2
        4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf
        332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855
        9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4
        b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e
        af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a
        0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10
        49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29
        a6ad5cb4022b02709b
        eead9d67890cbb22392336fea1851f38
        """)
    }

    func testChaChaPolyRFC8439AppendixA5() throws {
        XCTAssertEqual(a5Plaintext.count, 265)
        let sealed = ChaChaPoly.seal(key: a5Key, nonce: a5Counter, ad: a5AD, plaintext: a5Plaintext)
        XCTAssertEqual(Hex.encode(sealed), Hex.encode(a5Ciphertext))
        XCTAssertEqual(try ChaChaPoly.open(key: a5Key, nonce: a5Counter, ad: a5AD, ciphertext: a5Ciphertext), a5Plaintext)
    }

    func testChaChaPolyInPlaceMatchesArrayAPI() {
        var buffer = a5Plaintext + [UInt8](repeating: 0, count: ChaChaPoly.tagLength)
        let key = a5Key, ad = a5AD, count = a5Plaintext.count, counter = a5Counter
        buffer.withUnsafeMutableBytes { b in
            key.withUnsafeBytes { k in
                ad.withUnsafeBytes { a in
                    ChaChaPoly.seal(key: k, nonce: counter, ad: a, plaintext: b.baseAddress, plaintextCount: count,
                                    output: b.baseAddress!)
                }
            }
        }
        XCTAssertEqual(buffer, a5Ciphertext)
        let ok = buffer.withUnsafeMutableBytes { b in
            key.withUnsafeBytes { k in
                ad.withUnsafeBytes { a in
                    ChaChaPoly.open(key: k, nonce: counter, ad: a, ciphertext: b.baseAddress!,
                                    ciphertextCount: b.count, output: b.baseAddress)
                }
            }
        }
        XCTAssertTrue(ok)
        XCTAssertEqual(Array(buffer.prefix(count)), a5Plaintext)
    }

    func testChaChaPolyDetectsTampering() {
        let ct = a5Ciphertext
        for index in [0, 100, ct.count - 17, ct.count - 16, ct.count - 1] { // body, last body byte, tag
            var bad = ct
            bad[index] ^= 0x01
            XCTAssertThrowsError(try ChaChaPoly.open(key: a5Key, nonce: a5Counter, ad: a5AD, ciphertext: bad)) {
                XCTAssertEqual($0 as? CryptoError, .authenticationFailed)
            }
        }
        var badAD = a5AD
        badAD[0] ^= 0x80
        XCTAssertThrowsError(try ChaChaPoly.open(key: a5Key, nonce: a5Counter, ad: badAD, ciphertext: ct))
        XCTAssertThrowsError(try ChaChaPoly.open(key: a5Key, nonce: a5Counter + 1, ad: a5AD, ciphertext: ct))
        var badKey = a5Key
        badKey[31] ^= 0x01
        XCTAssertThrowsError(try ChaChaPoly.open(key: badKey, nonce: a5Counter, ad: a5AD, ciphertext: ct))
        XCTAssertThrowsError(try ChaChaPoly.open(key: a5Key, nonce: 0, ad: [], ciphertext: Array(ct.prefix(15)))) {
            XCTAssertEqual($0 as? CryptoError, .inputTooShort)
        }
    }

    func testChaChaPolyRoundTrips() throws {
        let key = Random.bytes(32)
        for length in [0, 1, 15, 16, 17, 63, 64, 65, 1000] {
            let plaintext = Random.bytes(length)
            for nonce: UInt64 in [0, 1, 0xffff_ffff, .max - 1] {
                let sealed = ChaChaPoly.seal(key: key, nonce: nonce, ad: [1, 2, 3], plaintext: plaintext)
                XCTAssertEqual(sealed.count, length + 16)
                XCTAssertEqual(try ChaChaPoly.open(key: key, nonce: nonce, ad: [1, 2, 3], ciphertext: sealed), plaintext)
            }
        }
        // Different nonces give different ciphertexts for the same plaintext.
        XCTAssertNotEqual(ChaChaPoly.seal(key: key, nonce: 0, ad: [], plaintext: [0]),
                          ChaChaPoly.seal(key: key, nonce: 1, ad: [], plaintext: [0]))
    }

    // MARK: BLAKE2b, HMAC, HKDF

    func testBLAKE2b512OfABC() {
        // RFC 7693 appendix A.
        XCTAssertEqual(Hex.encode(BLAKE2b.hash(Array("abc".utf8))), """
            ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
            7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923
            """)
        let streaming = BLAKE2b.Hasher()
        streaming.update(Array("a".utf8))
        streaming.update([])
        streaming.update(Array("bc".utf8))
        XCTAssertEqual(streaming.finalize(), BLAKE2b.hash(Array("abc".utf8)))
    }

    func testHMACBLAKE2bKnownAnswers() {
        // Expected values computed with an independent implementation: Python's
        // hmac.new(key, data, hashlib.blake2b) (RFC 2104 with a 128-byte block).
        XCTAssertEqual(Hex.encode(BLAKE2b.hmac(key: Array("key".utf8),
                                               data: Array("The quick brown fox jumps over the lazy dog".utf8))), """
            92294f92c0dfb9b00ec9ae8bd94d7e7d8a036b885a499f149dfe2fd2199394aa\
            af6b8894a1730cccb2cd050f9bcf5062a38b51b0dab33207f8ef35ae2c9df51b
            """)
        // A key longer than the block is hashed first.
        XCTAssertEqual(Hex.encode(BLAKE2b.hmac(key: (0..<200).map { UInt8($0) }, data: Array("data".utf8))), """
            dd83a68ea9b851310510d607d0313b685f724931a2a647eb5cd2c13189622293\
            b8beb6035ca8b00005f251bb5ab9483e9c93bcbc10430e91fbbf9cd946c461c3
            """)
    }

    func testNoiseHKDF() {
        let ck = (0..<64).map { UInt8($0) }
        let ikm = Array("input key material".utf8)
        let three = BLAKE2b.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 3)
        XCTAssertEqual(three.count, 3)
        XCTAssertTrue(three.allSatisfy { $0.count == 64 })
        XCTAssertEqual(Set(three).count, 3, "HKDF outputs must differ")
        // Deterministic, and the 2-output form is a prefix of the 3-output form.
        XCTAssertEqual(BLAKE2b.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 2), Array(three.prefix(2)))
        XCTAssertNotEqual(BLAKE2b.hkdf(chainingKey: ck, inputKeyMaterial: ikm + [0], outputs: 2)[0], three[0])
        // Noise spec section 4.3 by hand with Python's hmac/hashlib.blake2b.
        XCTAssertEqual(three.map { Hex.encode($0) }, [
            "a94ec1ceaa5ac0280eafc97980003e4019176e4bf7c914c45fb0bbda0b22a995"
                + "4d01f3697bbf32817ed0fccbf6dd1ebd24c0b05611051e63dc56e131af4f7c10",
            "f9d83f6c5d34695529eb8e35c8a2ed78658092e7c3b38fdf0cea2a2096b6f6e5"
                + "42af644e298508f37da08860db285a8ad4b604c1f160f23356df6b28c183508d",
            "bb6f14b645bac5dd79c98ce583e3357b43b431c22400c9b79d690c1d2fe2d391"
                + "ab8372b0b08553b56e802dc6badace75398c1b8a973d0aab18d857d431c3a48f",
        ])
    }

    // MARK: X25519

    func testX25519RFC7748Section6_1() throws {
        let alice = try X25519KeyPair(secretKey: h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
        let bob = try X25519KeyPair(secretKey: h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"))
        XCTAssertEqual(Hex.encode(alice.publicKey), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        XCTAssertEqual(Hex.encode(bob.publicKey), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        XCTAssertEqual(Hex.encode(try alice.sharedSecret(with: bob.publicKey)), shared)
        XCTAssertEqual(Hex.encode(try bob.sharedSecret(with: alice.publicKey)), shared)
    }

    func testX25519RejectsLowOrderPointsAndBadLengths() {
        let kp = X25519KeyPair.generate()
        XCTAssertThrowsError(try kp.sharedSecret(with: [UInt8](repeating: 0, count: 32))) {
            XCTAssertEqual($0 as? CryptoError, .invalidPublicKey)
        }
        XCTAssertThrowsError(try kp.sharedSecret(with: [1] + [UInt8](repeating: 0, count: 31))) {
            XCTAssertEqual($0 as? CryptoError, .invalidPublicKey)
        }
        XCTAssertThrowsError(try kp.sharedSecret(with: [UInt8](repeating: 9, count: 31)))
        XCTAssertThrowsError(try X25519KeyPair(secretKey: [UInt8](repeating: 1, count: 33)))
    }

    // MARK: Ed25519

    func testEd25519RFC8032Test1() throws {
        let kp = try Ed25519KeyPair(seed: h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
        XCTAssertEqual(Hex.encode(kp.publicKey), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = kp.sign([])
        XCTAssertEqual(Hex.encode(signature), """
            e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
            5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b
            """)
        XCTAssertTrue(Ed25519.verify(signature: signature, message: [], publicKey: kp.publicKey))
        var bad = signature
        bad[0] ^= 1
        XCTAssertFalse(Ed25519.verify(signature: bad, message: [], publicKey: kp.publicKey))
        XCTAssertFalse(Ed25519.verify(signature: signature, message: [0], publicKey: kp.publicKey))
        XCTAssertFalse(Ed25519.verify(signature: Array(signature.prefix(63)), message: [], publicKey: kp.publicKey))
    }
}
