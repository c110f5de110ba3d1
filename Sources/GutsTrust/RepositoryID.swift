import GutsCrypto
import GutsSupport

/// A repository's network-wide name: the BLAKE2b-256 hash of the first version of its
/// identity document (guts-identity(5)). It never changes, whoever the delegates become.
///
/// Text form: `gr` followed by 56 characters of unpadded lowercase RFC 4648 base32
/// encoding 35 bytes: the 32-byte hash and a 3-byte checksum, the first 3 bytes of
/// BLAKE2b-256 of the ASCII bytes `guts-repository-id` followed by the hash. The checksum
/// catches typos and differs from a peer ID's, so neither can be mistaken for the other.
public struct RepositoryID: Hashable, Sendable, CustomStringConvertible, Comparable {
    public static let prefix = "gr"
    public static let textLength = 58
    public static let length = 32

    /// The 32 hash bytes.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.length else { return nil }
        self.bytes = bytes
    }

    static func checksum(_ bytes: [UInt8]) -> [UInt8] {
        Array(BLAKE2b.hash(Array("guts-repository-id".utf8) + bytes, outputLength: 32).prefix(3))
    }

    /// Parses the text form. Accepts either case; rejects a wrong prefix, length or checksum.
    public init?(_ text: some StringProtocol) {
        let lower = text.lowercased()
        guard lower.utf8.count == Self.textLength, lower.hasPrefix(Self.prefix),
              let raw = Base32.decode(lower.dropFirst(Self.prefix.count)), raw.count == 35 else { return nil }
        let hash = Array(raw[0..<32])
        guard Array(raw[32..<35]) == Self.checksum(hash) else { return nil }
        bytes = hash
    }

    public var description: String { Self.prefix + Base32.encode(bytes + Self.checksum(bytes)) }

    /// A short form for logs: the first 12 characters.
    public var short: String { String(description.prefix(12)) }

    public static func < (a: RepositoryID, b: RepositoryID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
