import GutsCrypto
import GutsSupport

/// A node's identity as seen by others: its Ed25519 public key.
///
/// Text form: `gt` followed by 56 characters of unpadded lowercase RFC 4648
/// base32 encoding 35 bytes: the 32-byte public key and a 3-byte checksum,
/// the first 3 bytes of BLAKE2b-256(public key). The checksum catches typos; the
/// alphabet has no symbols, so the ID survives double-click selection, URLs and shells.
public struct PeerID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public static let prefix = "gt"
    public static let textLength = 58

    public let publicKey: [UInt8]

    public init(publicKey: [UInt8]) throws {
        guard publicKey.count == Ed25519KeyPair.publicKeyLength else {
            throw CryptoError.invalidKeyLength(expected: Ed25519KeyPair.publicKeyLength, got: publicKey.count)
        }
        self.publicKey = publicKey
    }

    static func checksum(_ key: [UInt8]) -> [UInt8] {
        Array(BLAKE2b.hash(key, outputLength: 32).prefix(3))
    }

    /// Parses the text form. Accepts either case; rejects wrong prefix, length or checksum.
    public init?(_ text: some StringProtocol) {
        let lower = text.lowercased()
        guard lower.utf8.count == Self.textLength, lower.hasPrefix(Self.prefix),
              let raw = Base32.decode(lower.dropFirst(Self.prefix.count)), raw.count == 35 else { return nil }
        let key = Array(raw[0..<32])
        guard Array(raw[32..<35]) == Self.checksum(key) else { return nil }
        self.publicKey = key
    }

    /// Why `text` is not a peer ID, in user terms ("bad checksum" for a typo), or nil
    /// when it is one.
    public static func problem(_ text: some StringProtocol) -> String? {
        let lower = text.lowercased()
        guard lower.hasPrefix(prefix) else { return "a peer ID starts with 'gt'" }
        guard lower.utf8.count == textLength else {
            return "a peer ID is gt followed by 56 base32 characters; this has \(max(0, lower.utf8.count - prefix.count))"
        }
        guard let raw = Base32.decode(lower.dropFirst(prefix.count)), raw.count == 35 else {
            return "a peer ID is gt followed by 56 base32 characters (a-z, 2-7)"
        }
        guard Array(raw[32..<35]) == checksum(Array(raw[0..<32])) else {
            return "bad checksum (a character is wrong: copy the peer ID again)"
        }
        return nil
    }

    public var description: String {
        Self.prefix + Base32.encode(publicKey + Self.checksum(publicKey))
    }

    /// A short form for logs: the first 12 characters.
    public var short: String { String(description.prefix(12)) }

    public static func < (a: PeerID, b: PeerID) -> Bool { a.publicKey.lexicographicallyPrecedes(b.publicKey) }
}
