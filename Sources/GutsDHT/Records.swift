import GutsCrypto
import GutsPolicy
import GutsWire

/// Field limits of the DHT protocol (guts-protocol(7), DHT).
public enum DHTLimits {
    /// Contacts in one answer (k).
    public static let maxContacts = 20
    /// Provider records in one Providers answer.
    public static let maxProviders = 20
    /// Addresses in one signed record.
    public static let maxAddresses = 8
    /// Longest validity of a record: its `expires` may be at most this far ahead.
    public static let maxRecordLifetime: UInt64 = 48 * 3600
    /// Encoded size of an address: family (1) + 16 + port (2) at most.
    public static let maxAddressSize = 19
    /// Encoded size of a contact: public key (32) + address.
    public static let maxContactSize = 32 + maxAddressSize
    /// Encoded size of a provider record at most.
    public static let maxProviderRecordSize = 32 + 32 + 8 + 1 + maxAddresses * maxAddressSize + 64
    /// Encoded size of a peer record at most.
    public static let maxPeerRecordSize = 32 + 8 + 8 + 1 + maxAddresses * maxAddressSize + 64
}

/// Why a record was not accepted.
public enum RecordRejection: Error, Hashable, Sendable, CustomStringConvertible {
    case badPublicKey
    case noAddresses
    case tooManyAddresses
    case duplicateAddress
    case expired
    case lifetimeTooLong
    case badSignature
    /// The record was sent by someone other than its publisher.
    case notPublisher
    /// An address is narrower in scope than the peer that sent it (loopback from a global peer).
    case addressScope
    /// This node is not among the nodes closest to the record's key.
    case notClose
    /// A bound of the store (total, per publisher or per key) is reached.
    case storeFull
    /// A peer record with a sequence number not above the stored one.
    case staleSequence

    public var description: String {
        switch self {
        case .badPublicKey: return "publisher is not a 32-byte Ed25519 key"
        case .noAddresses: return "no addresses"
        case .tooManyAddresses: return "more than \(DHTLimits.maxAddresses) addresses"
        case .duplicateAddress: return "an address is listed twice"
        case .expired: return "expired"
        case .lifetimeTooLong: return "expires more than \(DHTLimits.maxRecordLifetime / 3600) hours ahead"
        case .badSignature: return "bad signature"
        case .notPublisher: return "sent by someone other than its publisher"
        case .addressScope: return "an address is narrower in scope than the peer that sent it"
        case .notClose: return "this node is not among the closest to the key"
        case .storeFull: return "record store full"
        case .staleSequence: return "sequence number not newer than the stored record"
        }
    }
}

/// "Node `publisher` serves repository `repository` at `addresses` until `expires`", signed by
/// the publisher's Ed25519 identity key.
public struct ProviderRecord: Hashable, Sendable {
    /// The 32-byte repository ID; also the record's key in the DHT.
    public var repository: NodeID
    /// The publisher's Ed25519 public key (its node ID is the hash of it).
    public var publisher: [UInt8]
    /// Unix seconds after which nobody may store or pass on the record.
    public var expires: UInt64
    public var addresses: [DHTAddress]
    public var signature: [UInt8]

    public init(repository: NodeID, publisher: [UInt8], expires: UInt64, addresses: [DHTAddress], signature: [UInt8]) {
        self.repository = repository
        self.publisher = publisher
        self.expires = expires
        self.addresses = addresses
        self.signature = signature
    }

    /// A record signed with `key`.
    public static func signed(repository: NodeID, addresses: [DHTAddress], expires: UInt64, key: Ed25519KeyPair) -> ProviderRecord {
        var r = ProviderRecord(repository: repository, publisher: key.publicKey, expires: expires, addresses: addresses, signature: [])
        r.signature = key.sign(r.signedBytes)
        return r
    }

    /// The domain string, a zero byte, then the fields in wire order without the signature.
    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 160)
        w.raw(Array("guts-dht-provider-v1".utf8))
        w.u8(0)
        w.raw(repository.bytes)
        w.raw(publisher)
        w.u64(expires)
        DHTCoding.writeAddresses(&w, addresses)
        return w.bytes
    }

    public var publisherID: NodeID { NodeID(publicKey: publisher) }

    /// Bytes the record occupies in a store (its wire size).
    public var size: Int { 32 + 32 + 8 + 1 + addresses.reduce(0) { $0 + DHTCoding.addressSize($1) } + 64 }

    /// Checks sizes, lifetime against `unixNow`, then the signature (the expensive step last).
    public func validate(unixNow: UInt64) throws(RecordRejection) {
        try DHTCoding.checkRecordShape(publisher: publisher, addresses: addresses, expires: expires, unixNow: unixNow)
        guard Ed25519.verify(signature: signature, message: signedBytes, publicKey: publisher) else { throw .badSignature }
    }
}

/// A node's own addresses, signed, with a sequence number: a newer record (higher sequence)
/// replaces an older one.
public struct PeerRecord: Hashable, Sendable {
    public var publisher: [UInt8]
    public var sequence: UInt64
    public var expires: UInt64
    public var addresses: [DHTAddress]
    public var signature: [UInt8]

    public init(publisher: [UInt8], sequence: UInt64, expires: UInt64, addresses: [DHTAddress], signature: [UInt8]) {
        self.publisher = publisher
        self.sequence = sequence
        self.expires = expires
        self.addresses = addresses
        self.signature = signature
    }

    public static func signed(sequence: UInt64, addresses: [DHTAddress], expires: UInt64, key: Ed25519KeyPair) -> PeerRecord {
        var r = PeerRecord(publisher: key.publicKey, sequence: sequence, expires: expires, addresses: addresses, signature: [])
        r.signature = key.sign(r.signedBytes)
        return r
    }

    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.raw(Array("guts-dht-peer-v1".utf8))
        w.u8(0)
        w.raw(publisher)
        w.u64(sequence)
        w.u64(expires)
        DHTCoding.writeAddresses(&w, addresses)
        return w.bytes
    }

    /// The record's key: the publisher's node ID.
    public var publisherID: NodeID { NodeID(publicKey: publisher) }

    public var size: Int { 32 + 8 + 8 + 1 + addresses.reduce(0) { $0 + DHTCoding.addressSize($1) } + 64 }

    public func validate(unixNow: UInt64) throws(RecordRejection) {
        try DHTCoding.checkRecordShape(publisher: publisher, addresses: addresses, expires: expires, unixNow: unixNow)
        guard Ed25519.verify(signature: signature, message: signedBytes, publicKey: publisher) else { throw .badSignature }
    }
}

/// The scope rule (guts-protocol(7), DHT): an address travels only to and from peers whose
/// own scope is no wider than the address's. Loopback test networks see everything; a peer
/// on the Internet never receives or plants a loopback or private address.
public enum ScopeRule {
    /// Whether `address` may be stored when it came from a peer at `peerScope`, or passed on
    /// to a peer at `peerScope`.
    @inline(__always)
    public static func allows(_ address: DHTAddress, peerScope: AddressScope) -> Bool { address.scope >= peerScope }

    /// Whether every address of a signed record passes (a signed record cannot be trimmed).
    public static func allows(_ addresses: [DHTAddress], peerScope: AddressScope) -> Bool {
        addresses.allSatisfy { allows($0, peerScope: peerScope) }
    }
}
