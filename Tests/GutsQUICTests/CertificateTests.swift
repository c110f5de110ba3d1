import GutsCrypto
import GutsIdentity
import GutsSupport
@testable import GutsQUIC
import XCTest

final class CertificateTests: XCTestCase {
    let now: Int64 = 1_800_000_000

    func testValidCertificateYieldsPeerID() throws {
        let identity = Ed25519KeyPair.generate()
        let cert = QUICCertificate.make(identity: identity, networkID: "testnet", now: now)
        let id = try QUICCertificate.verify(cert.der, networkID: "testnet", now: now)
        XCTAssertEqual(id, try PeerID(publicKey: identity.publicKey))
    }

    func testWrongNetworkRefused() {
        let cert = QUICCertificate.make(identity: .generate(), networkID: "a", now: now)
        XCTAssertThrowsError(try QUICCertificate.verify(cert.der, networkID: "b", now: now)) {
            XCTAssertEqual($0 as? CertificateError, .badIdentitySignature)
        }
    }

    func testTamperedIdentitySignatureRefused() throws {
        let cert = QUICCertificate.make(identity: .generate(), networkID: "", now: now)
        var der = cert.der
        // The identity signature is the 64 bytes just before the TBS ends; flip one and
        // re-sign the TBS with the TLS key, so only the identity signature is wrong.
        let sigStart = try XCTUnwrap(Self.find(der, cert.tlsKey.publicKey)) // SPKI key position
        _ = sigStart
        guard let idx = Self.identitySignatureOffset(der) else { return XCTFail("no extension") }
        der[idx] ^= 1
        let resigned = Self.resign(der, key: cert.tlsKey)
        XCTAssertThrowsError(try QUICCertificate.verify(resigned, networkID: "", now: now)) {
            XCTAssertEqual($0 as? CertificateError, .badIdentitySignature)
        }
        // Without re-signing, the self-signature breaks first.
        XCTAssertThrowsError(try QUICCertificate.verify(der, networkID: "", now: now)) {
            XCTAssertEqual($0 as? CertificateError, .badSelfSignature)
        }
    }

    func testIdentitySignatureForAnotherKeyRefused() throws {
        // A certificate whose extension was copied from another node's certificate: the
        // identity signature covers the other TLS key, not this one.
        let identity = Ed25519KeyPair.generate()
        let honest = QUICCertificate.make(identity: identity, networkID: "", now: now)
        let attackerKey = Ed25519KeyPair.generate()
        var der = honest.der
        let old = honest.tlsKey.publicKey
        guard let at = Self.find(der, old) else { return XCTFail("key not found") }
        der.replaceSubrange(at..<(at + 32), with: attackerKey.publicKey)
        let forged = Self.resign(der, key: attackerKey)
        XCTAssertThrowsError(try QUICCertificate.verify(forged, networkID: "", now: now)) {
            XCTAssertEqual($0 as? CertificateError, .badIdentitySignature)
        }
    }

    func testExpiredAndNotYetValidRefused() {
        let cert = QUICCertificate.make(identity: .generate(), networkID: "", now: now, validity: 100)
        XCTAssertThrowsError(try QUICCertificate.verify(cert.der, networkID: "", now: now + 101)) {
            XCTAssertEqual($0 as? CertificateError, .expired)
        }
        XCTAssertThrowsError(try QUICCertificate.verify(cert.der, networkID: "", now: now - 3601)) {
            XCTAssertEqual($0 as? CertificateError, .notYetValid)
        }
        XCTAssertNoThrow(try QUICCertificate.verify(cert.der, networkID: "", now: now + 99))
    }

    func testGarbageRefusedWithoutCrash() {
        var rng = SplitMix64(seed: 0x51c)
        let cert = QUICCertificate.make(identity: .generate(), networkID: "", now: now).der
        for _ in 0..<2000 {
            var d = cert
            let n = Int(rng.next() % 4) + 1
            for _ in 0..<n { d[Int(rng.next() % UInt64(d.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            if rng.next() % 3 == 0 { d = Array(d.prefix(Int(rng.next() % UInt64(d.count)))) }
            _ = try? QUICCertificate.verify(d, networkID: "", now: now)
        }
        XCTAssertThrowsError(try QUICCertificate.verify([], networkID: "", now: now))
    }

    func testOIDEncoding() {
        XCTAssertEqual(DER.oid("2.5.4.3"), [0x06, 0x03, 0x55, 0x04, 0x03])
        XCTAssertEqual(DER.oid("1.3.101.112"), [0x06, 0x03, 0x2b, 0x65, 0x70])
        // 2.25.N: first byte 2*40+25 = 105 = 0x69, then N in base 128 (9 bytes for a 62-bit N).
        let ours = DER.oid(QUICCertificate.extensionOID)
        XCTAssertEqual(ours, [0x06, 0x0a, 0x69, 0xbf, 0xe1, 0x82, 0xb9, 0x97, 0xa0, 0x9d, 0xf1, 0x17])
        // Arcs beyond 64 bits encode too (decimal arithmetic).
        XCTAssertEqual(DER.oid("2.25.18446744073709551616"), [0x06, 0x0b, 0x69, 0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00])
    }

    /// The certificate byte for byte as guts-protocol(7), QUIC, Certificate lays it out,
    /// read with a DER walker of the test's own (fixed keys; the serial is random).
    func testCertificateLayoutGolden() throws {
        let identity = try Ed25519KeyPair(seed: [UInt8](repeating: 1, count: 32))
        let tls = try Ed25519KeyPair(seed: [UInt8](repeating: 2, count: 32))
        let cert = QUICCertificate.make(identity: identity, networkID: "lab", now: now, tlsKey: tls)
        let top = try Self.children(cert.der)
        XCTAssertEqual(top.count, 1)
        let fields = try Self.children(top[0], skipHeader: true)
        XCTAssertEqual(fields.count, 3)
        let alg = Self.bytes("30 05 06 03 2b 65 70")
        XCTAssertEqual(fields[1], alg)
        XCTAssertEqual(Array(fields[2].prefix(3)), Self.bytes("03 41 00"))
        XCTAssertEqual(fields[2].count, 3 + 64)
        XCTAssertTrue(Ed25519.verify(signature: Array(fields[2].suffix(64)), message: fields[0], publicKey: tls.publicKey))
        let tbs = try Self.children(fields[0], skipHeader: true)
        XCTAssertEqual(tbs.count, 8)
        XCTAssertEqual(tbs[0], Self.bytes("a0 03 02 01 02"))
        XCTAssertEqual(Array(tbs[1].prefix(2)), Self.bytes("02 08"))
        XCTAssertEqual(tbs[1].count, 10)
        XCTAssertEqual(tbs[2], alg)
        let name = Self.bytes("30 0f 31 0d 30 0b 06 03 55 04 03 0c 04") + Array("guts".utf8)
        XCTAssertEqual(tbs[3], name)
        // Valid from an hour before `now` until 365 days after it, as UTCTime.
        XCTAssertEqual(tbs[4], Self.bytes("30 1e 17 0d") + Array("270115070000Z".utf8) + Self.bytes("17 0d") + Array("280115080000Z".utf8))
        XCTAssertEqual(tbs[5], name)
        let spki = Self.bytes("30 2a 30 05 06 03 2b 65 70 03 21 00") + tls.publicKey
        XCTAssertEqual(tbs[6], spki)
        XCTAssertEqual(QUICCertificate.subjectPublicKeyInfo(tls.publicKey), spki)
        // [3] EXPLICIT SEQUENCE OF Extension, holding only the identity extension.
        let signed = Array("guts-quic-certificate:".utf8) + Self.bytes("00 03") + Array("lab".utf8) + spki
        XCTAssertEqual(QUICCertificate.signedMessage(networkID: "lab", subjectPublicKeyInfo: spki), signed)
        XCTAssertEqual(signed.count, 22 + 2 + 3 + 44)
        let identitySignature = identity.sign(signed)  // Ed25519 is deterministic
        let ext = Self.bytes("30 74 06 0a 69 bf e1 82 b9 97 a0 9d f1 17 04 66 30 64 04 20") + identity.publicKey
            + Self.bytes("04 40") + identitySignature
        XCTAssertEqual(tbs[7], Self.bytes("a3 78 30 76") + ext)
        XCTAssertEqual(try QUICCertificate.verify(cert.der, networkID: "lab", now: now), try PeerID(publicKey: identity.publicKey))
    }

    static func bytes(_ hex: String) -> [UInt8] {
        hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
    }

    /// The DER elements (tag, length, value) in `der`, each whole; `skipHeader` reads
    /// those inside the single element `der` is.
    static func children(_ der: [UInt8], skipHeader: Bool = false) throws -> [[UInt8]] {
        var i = 0
        var end = der.count
        if skipHeader {
            let (_, start, length) = try header(der, 0)
            i = start
            end = start + length
            XCTAssertEqual(end, der.count)
        }
        var out: [[UInt8]] = []
        while i < end {
            let (_, start, length) = try header(der, i)
            out.append(Array(der[i..<(start + length)]))
            i = start + length
        }
        return out
    }

    /// Tag, offset of the value and its length of the element at `i` (short and long forms).
    static func header(_ der: [UInt8], _ i: Int) throws -> (UInt8, Int, Int) {
        let first = try XCTUnwrap(der.indices.contains(i + 1) ? der[i + 1] : nil)
        if first < 0x80 { return (der[i], i + 2, Int(first)) }
        let n = Int(first & 0x7f)
        var length = 0
        for k in 0..<n { length = length << 8 | Int(der[i + 2 + k]) }
        return (der[i], i + 2 + n, length)
    }

    func testCivilTimeRoundTrip() {
        for t: Int64 in [0, 951_782_400, 1_800_000_000, 2_524_608_000, 4_102_444_800] {
            XCTAssertEqual(CivilTime(unix: t).unix, t)
        }
        XCTAssertEqual(CivilTime(unix: 951_782_400), CivilTime(year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0))
    }

    // MARK: - helpers

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where Array(haystack[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    static func identitySignatureOffset(_ der: [UInt8]) -> Int? {
        // extension value ends with OCTET STRING(64) of the signature, just before the TBS ends.
        guard let oid = find(der, QUICCertificate.extensionOIDBytes) else { return nil }
        return oid + QUICCertificate.extensionOIDBytes.count + 2 + 2 + 34 + 2 + 10
    }

    /// Re-signs the TBS of `der` with `key` (DER lengths unchanged).
    static func resign(_ der: [UInt8], key: Ed25519KeyPair) -> [UInt8] {
        var top = DER.Reader(der)
        guard let cert = try? top.expect(DER.sequence, "c") else { return der }
        var r = DER.Reader(der, range: cert)
        guard let tbs = try? r.read() else { return der }
        let sig = key.sign(Array(der[tbs.whole]))
        return DER.sequence(Array(der[tbs.whole]), QUICCertificate.ed25519Algorithm, DER.tlv(DER.bitString, [0] + sig))
    }
}
