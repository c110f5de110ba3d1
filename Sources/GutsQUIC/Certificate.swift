import GutsCrypto
import GutsIdentity

/// Why a peer's QUIC certificate was refused.
public enum CertificateError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformed(String)
    case unsupported(String)
    case badSelfSignature
    case notYetValid
    case expired
    case missingIdentity
    /// The identity signature does not cover this certificate's key under this network
    /// ID: a forged certificate, or a node of another network.
    case badIdentitySignature

    public var description: String {
        switch self {
        case let .malformed(why): return "malformed certificate: \(why)"
        case let .unsupported(why): return "unsupported certificate: \(why)"
        case .badSelfSignature: return "certificate self-signature is invalid"
        case .notYetValid: return "certificate is not yet valid"
        case .expired: return "certificate has expired"
        case .missingIdentity: return "certificate carries no guts identity extension"
        case .badIdentitySignature: return "identity signature does not verify (different network ID, or forged certificate)"
        }
    }
}

/// The self-signed X.509 certificate a node presents in the TLS 1.3 handshake inside
/// QUIC (guts-protocol(7), QUIC). Its key is a per-run Ed25519 TLS key; an extension
/// carries the node's identity key and that key's signature over the network ID and
/// the certificate's SubjectPublicKeyInfo, which binds the TLS key to the peer ID.
/// All signatures are made and checked with libsodium; GnuTLS only runs TLS.
public struct QUICCertificate: Sendable {
    /// The extension's object identifier: under 2.25 (UUID arc, which anyone may mint),
    /// a random number below 2^62. A full 128-bit UUID arc would be the textbook choice,
    /// but GnuTLS's ASN.1 parser (libtasn1) rejects arcs above 2^63-1 and with them the
    /// whole certificate, so the arc is 62 random bits (a UUID whose upper bits are zero).
    public static let extensionOID = "2.25.4594245330711050391"
    /// ALPN protocol name: the guts protocol over QUIC, mapping version 1.
    public static let alpn = "guts/1"
    /// Prefix of the bytes the identity key signs.
    public static let signingContext = Array("guts-quic-certificate:".utf8)
    /// Largest certificate accepted from a peer.
    public static let maxSize = 4096
    /// How long a generated certificate is valid (it is regenerated at every start).
    public static let defaultValidity: Int64 = 365 * 86400

    /// The DER certificate.
    public let der: [UInt8]
    /// The TLS key (its seed and public key), for GnuTLS.
    public let tlsKey: Ed25519KeyPair

    /// AlgorithmIdentifier of Ed25519 (1.3.101.112, no parameters).
    static let ed25519Algorithm: [UInt8] = [0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]
    static let extensionOIDBytes = DER.oid(extensionOID)

    /// SubjectPublicKeyInfo of an Ed25519 key: 44 bytes.
    public static func subjectPublicKeyInfo(_ publicKey: [UInt8]) -> [UInt8] {
        DER.sequence(ed25519Algorithm, DER.tlv(DER.bitString, [0] + publicKey))
    }

    /// What the identity key signs: the context, the network ID (2-byte length, UTF-8) and
    /// the certificate's SubjectPublicKeyInfo DER.
    public static func signedMessage(networkID: String, subjectPublicKeyInfo spki: [UInt8]) -> [UInt8] {
        let net = Array(networkID.utf8)
        return signingContext + [UInt8(net.count >> 8 & 0xff), UInt8(net.count & 0xff)] + net + spki
    }

    /// A fresh certificate for `identity` in `networkID`, valid from an hour before `now`.
    public static func make(identity: Ed25519KeyPair, networkID: String, now: Int64,
                            validity: Int64 = defaultValidity, tlsKey: Ed25519KeyPair = .generate()) -> QUICCertificate {
        let spki = subjectPublicKeyInfo(tlsKey.publicKey)
        let identitySignature = identity.sign(signedMessage(networkID: networkID, subjectPublicKeyInfo: spki))
        let extensionValue = DER.sequence(DER.tlv(DER.octetString, identity.publicKey), DER.tlv(DER.octetString, identitySignature))
        let ext = DER.sequence(extensionOIDBytes, DER.tlv(DER.octetString, extensionValue))
        let name = DER.sequence(DER.tlv(DER.set, DER.sequence(DER.oid("2.5.4.3"), DER.tlv(DER.utf8String, Array("guts".utf8)))))
        var serial = Random.bytes(8)
        serial[0] = serial[0] & 0x7f | 0x40
        let tbs = DER.sequence(
            DER.tlv(0xa0, DER.tlv(DER.integer, [2])),
            DER.unsignedInteger(serial),
            ed25519Algorithm,
            name,
            DER.sequence(DER.time(now - 3600), DER.time(now + validity)),
            name,
            spki,
            DER.tlv(0xa3, DER.sequence(ext)))
        let signature = tlsKey.sign(tbs)
        let der = DER.sequence(tbs, ed25519Algorithm, DER.tlv(DER.bitString, [0] + signature))
        return QUICCertificate(der: der, tlsKey: tlsKey)
    }

    /// Checks a peer's certificate and returns the peer ID it proves. `now` is Unix time.
    public static func verify(_ der: [UInt8], networkID: String, now: Int64) throws -> PeerID {
        guard der.count <= maxSize else { throw CertificateError.malformed("larger than \(maxSize) bytes") }
        var top = DER.Reader(der)
        let certRange = try top.expect(DER.sequence, "Certificate")
        guard top.atEnd else { throw CertificateError.malformed("trailing bytes") }
        var cert = DER.Reader(der, range: certRange)
        let tbsElement = try cert.read()
        guard tbsElement.tag == DER.sequence else { throw CertificateError.malformed("expected TBSCertificate") }
        let outerAlgorithm = try cert.read()
        guard Array(der[outerAlgorithm.whole]) == ed25519Algorithm else { throw CertificateError.unsupported("signature algorithm is not Ed25519") }
        let sigRange = try cert.expect(DER.bitString, "signature")
        guard cert.atEnd else { throw CertificateError.malformed("trailing fields in Certificate") }
        guard sigRange.count == 65, der[sigRange.lowerBound] == 0 else { throw CertificateError.malformed("signature is not 64 bytes") }
        let signature = Array(der[(sigRange.lowerBound + 1)..<sigRange.upperBound])

        var tbs = DER.Reader(der, range: tbsElement.value)
        let version = try tbs.expect(0xa0, "version")
        guard Array(der[version]) == [DER.integer, 1, 2] else { throw CertificateError.unsupported("not an X.509 v3 certificate") }
        _ = try tbs.expect(DER.integer, "serialNumber")
        let innerAlgorithm = try tbs.read()
        guard Array(der[innerAlgorithm.whole]) == ed25519Algorithm else { throw CertificateError.unsupported("TBS signature algorithm is not Ed25519") }
        _ = try tbs.expect(DER.sequence, "issuer")
        let validityRange = try tbs.expect(DER.sequence, "validity")
        _ = try tbs.expect(DER.sequence, "subject")
        let spkiElement = try tbs.read()
        let spki = Array(der[spkiElement.whole])
        guard spki.count == 44, Array(spki.prefix(12)) == Array(subjectPublicKeyInfo([UInt8](repeating: 0, count: 32)).prefix(12)) else {
            throw CertificateError.unsupported("public key is not Ed25519")
        }
        let tlsPublicKey = Array(spki.suffix(32))
        var extensionsRange: Range<Int>?
        while !tbs.atEnd {
            let e = try tbs.read()
            switch e.tag {
            case 0x81, 0x82: continue  // unique IDs: allowed, ignored
            case 0xa3:
                guard extensionsRange == nil else { throw CertificateError.malformed("two extension lists") }
                var inner = DER.Reader(der, range: e.value)
                extensionsRange = try inner.expect(DER.sequence, "extensions")
                guard inner.atEnd else { throw CertificateError.malformed("trailing bytes after extensions") }
            default:
                throw CertificateError.malformed("unexpected field in TBSCertificate")
            }
        }
        guard Ed25519.verify(signature: signature, message: Array(der[tbsElement.whole]), publicKey: tlsPublicKey) else {
            throw CertificateError.badSelfSignature
        }

        var validity = DER.Reader(der, range: validityRange)
        let notBefore = try readTime(&validity, der)
        let notAfter = try readTime(&validity, der)
        guard validity.atEnd else { throw CertificateError.malformed("trailing bytes in validity") }
        if now < notBefore { throw CertificateError.notYetValid }
        if now > notAfter { throw CertificateError.expired }

        guard let extensionsRange else { throw CertificateError.missingIdentity }
        var extensions = DER.Reader(der, range: extensionsRange)
        var identityValue: Range<Int>?
        while !extensions.atEnd {
            var ext = DER.Reader(der, range: try extensions.expect(DER.sequence, "Extension"))
            let oid = try ext.read()
            guard oid.tag == DER.objectIdentifier else { throw CertificateError.malformed("extension without OID") }
            var critical = false
            var next = try ext.read()
            if next.tag == DER.boolean {
                guard next.value.count == 1 else { throw CertificateError.malformed("bad BOOLEAN") }
                critical = der[next.value.lowerBound] == 0xff
                next = try ext.read()
            }
            guard next.tag == DER.octetString, ext.atEnd else { throw CertificateError.malformed("bad extension value") }
            if Array(der[oid.whole]) == extensionOIDBytes {
                guard identityValue == nil else { throw CertificateError.malformed("identity extension appears twice") }
                identityValue = next.value
            } else if critical {
                throw CertificateError.unsupported("unknown critical extension")
            }
        }
        guard let identityValue else { throw CertificateError.missingIdentity }
        var outer = DER.Reader(der, range: identityValue)
        var fields = DER.Reader(der, range: try outer.expect(DER.sequence, "identity extension"))
        guard outer.atEnd else { throw CertificateError.malformed("trailing bytes in identity extension") }
        let keyRange = try fields.expect(DER.octetString, "identity key")
        let identitySigRange = try fields.expect(DER.octetString, "identity signature")
        guard fields.atEnd, keyRange.count == 32, identitySigRange.count == 64 else {
            throw CertificateError.malformed("identity extension fields have wrong sizes")
        }
        let identityKey = Array(der[keyRange])
        guard Ed25519.verify(signature: Array(der[identitySigRange]),
                             message: signedMessage(networkID: networkID, subjectPublicKeyInfo: spki),
                             publicKey: identityKey) else {
            throw CertificateError.badIdentitySignature
        }
        do {
            return try PeerID(publicKey: identityKey)
        } catch {
            throw CertificateError.malformed("identity key: \(error)")
        }
    }

    static func readTime(_ reader: inout DER.Reader, _ der: [UInt8]) throws -> Int64 {
        let e = try reader.read()
        guard e.tag == DER.utcTime || e.tag == DER.generalizedTime,
              let t = CivilTime.parse(der[e.value], generalized: e.tag == DER.generalizedTime) else {
            throw CertificateError.malformed("bad validity time")
        }
        return t
    }
}
