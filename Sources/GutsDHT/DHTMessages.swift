import GutsCrypto
import GutsPolicy
import GutsWire

/// Field encodings shared by the DHT messages and the signed records.
///
/// - address: `family (u8: 4 or 6) | address (4 or 16 bytes) | port (u16, not 0)`; an
///   IPv4-mapped IPv6 address is sent as IPv4, so family 6 never carries one. In signed
///   records the family may have bit 0x80 set (0x84, 0x86): a UDP port serving QUIC.
/// - contact: `public key (32) | address`.
/// - address list: `count (u8, 1-8) | addresses`.
public enum DHTCoding {
    static func addressSize(_ a: DHTAddress) -> Int {
        switch a.ip {
        case .v4: return 1 + 4 + 2
        case .v6: return 1 + 16 + 2
        }
    }

    /// The family bit of a QUIC address (records only).
    static let quicFlag: UInt8 = 0x80

    public static func writeAddress(_ w: inout ByteWriter, _ a: DHTAddress) {
        let flag = a.quic ? quicFlag : 0
        switch a.ip {
        case let .v4(v):
            w.u8(4 | flag)
            w.u32(v)
        case let .v6(hi, lo):
            w.u8(6 | flag)
            w.u64(hi)
            w.u64(lo)
        }
        w.u16(a.port)
    }

    /// Reads an address; `quic` allows the QUIC families (in signed records only).
    public static func readAddress(_ r: inout ByteReader, quic: Bool = false) throws -> DHTAddress {
        var family = try r.u8("family")
        let isQUIC = quic && family & quicFlag != 0
        if isQUIC { family &= ~quicFlag }
        let ip: IPAddress
        switch family {
        case 4:
            ip = .v4(try r.u32("address"))
        case 6:
            let hi = try r.u64("address"), lo = try r.u64("address")
            guard !(hi == 0 && lo >> 32 == 0xFFFF) else {
                throw DecodeError.invalidValue(field: "address", reason: "IPv4-mapped addresses are sent as family 4")
            }
            ip = .v6(hi, lo)
        default:
            throw DecodeError.invalidValue(field: "family", reason: quic ? "must be 4, 6, 0x84 or 0x86" : "must be 4 or 6")
        }
        let port = try r.u16("port")
        guard let address = DHTAddress(ip: ip, port: port, quic: isQUIC) else {
            throw DecodeError.invalidValue(field: "address", reason: "port 0, unspecified or multicast address")
        }
        return address
    }

    static func writeAddresses(_ w: inout ByteWriter, _ list: [DHTAddress]) {
        w.u8(UInt8(truncatingIfNeeded: list.count))
        for a in list { writeAddress(&w, a) }
    }

    static func readAddresses(_ r: inout ByteReader) throws -> [DHTAddress] {
        let n = Int(try r.u8("addresses"))
        guard n >= 1 else { throw DecodeError.invalidValue(field: "addresses", reason: "a record has at least one address") }
        try WireField.checkCount(n, "addresses", DHTLimits.maxAddresses)
        var out: [DHTAddress] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try readAddress(&r, quic: true)) }
        return out
    }

    static func writeContacts(_ w: inout ByteWriter, _ list: [DHTContact]) throws {
        try WireField.checkCount(list.count, "contacts", DHTLimits.maxContacts)
        w.u8(UInt8(list.count))
        for c in list {
            w.raw(c.publicKey)
            writeAddress(&w, c.address)
        }
    }

    static func readContacts(_ r: inout ByteReader) throws -> [DHTContact] {
        let n = Int(try r.u8("contacts"))
        try WireField.checkCount(n, "contacts", DHTLimits.maxContacts)
        guard n * (32 + 7) <= r.remaining else { throw DecodeError.truncated(field: "contacts") }
        var out: [DHTContact] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let key = try r.raw(32, "public_key")
            let address = try readAddress(&r)
            guard let c = DHTContact(publicKey: key, address: address) else { throw DecodeError.truncated(field: "public_key") }
            out.append(c)
        }
        return out
    }

    static func readID(_ r: inout ByteReader, _ field: String) throws -> NodeID {
        guard let id = NodeID(bytes: try r.raw(32, field)) else { throw DecodeError.truncated(field: field) }
        return id
    }

    /// Shape checks common to both record kinds (everything but the signature).
    static func checkRecordShape(publisher: [UInt8], addresses: [DHTAddress], expires: UInt64,
                                 unixNow: UInt64) throws(RecordRejection) {
        guard publisher.count == Ed25519KeyPair.publicKeyLength else { throw .badPublicKey }
        guard !addresses.isEmpty else { throw .noAddresses }
        guard addresses.count <= DHTLimits.maxAddresses else { throw .tooManyAddresses }
        guard Set(addresses).count == addresses.count else { throw .duplicateAddress }
        guard expires > unixNow else { throw .expired }
        guard expires - unixNow <= DHTLimits.maxRecordLifetime else { throw .lifetimeTooLong }
    }

    static func checkRecordForEncoding(publisher: [UInt8], addresses: [DHTAddress], signature: [UInt8]) throws {
        guard publisher.count == 32 else { throw DecodeError.invalidValue(field: "publisher", reason: "must be 32 bytes") }
        guard signature.count == 64 else { throw DecodeError.invalidValue(field: "signature", reason: "must be 64 bytes") }
        guard !addresses.isEmpty else { throw DecodeError.invalidValue(field: "addresses", reason: "at least one") }
        try WireField.checkCount(addresses.count, "addresses", DHTLimits.maxAddresses)
    }

    static func writeProvider(_ w: inout ByteWriter, _ p: ProviderRecord) throws {
        try checkRecordForEncoding(publisher: p.publisher, addresses: p.addresses, signature: p.signature)
        w.raw(p.repository.bytes)
        w.raw(p.publisher)
        w.u64(p.expires)
        writeAddresses(&w, p.addresses)
        w.raw(p.signature)
    }

    static func readProvider(_ r: inout ByteReader) throws -> ProviderRecord {
        let repo = try readID(&r, "repository")
        let publisher = try r.raw(32, "publisher")
        let expires = try r.u64("expires")
        let addresses = try readAddresses(&r)
        let sig = try r.raw(64, "signature")
        return ProviderRecord(repository: repo, publisher: publisher, expires: expires, addresses: addresses, signature: sig)
    }

    static func writePeer(_ w: inout ByteWriter, _ p: PeerRecord) throws {
        try checkRecordForEncoding(publisher: p.publisher, addresses: p.addresses, signature: p.signature)
        w.raw(p.publisher)
        w.u64(p.sequence)
        w.u64(p.expires)
        writeAddresses(&w, p.addresses)
        w.raw(p.signature)
    }

    static func readPeer(_ r: inout ByteReader) throws -> PeerRecord {
        let publisher = try r.raw(32, "publisher")
        let seq = try r.u64("sequence")
        let expires = try r.u64("expires")
        let addresses = try readAddresses(&r)
        let sig = try r.raw(64, "signature")
        return PeerRecord(publisher: publisher, sequence: seq, expires: expires, addresses: addresses, signature: sig)
    }
}

/// FindNode: "send me the k contacts you know closest to `target`".
public struct FindNode: Equatable, Sendable {
    public var requestID: UInt32
    public var target: NodeID
    public init(requestID: UInt32, target: NodeID) {
        self.requestID = requestID
        self.target = target
    }
}

/// Nodes: the answer to FindNode.
public struct Nodes: Equatable, Sendable {
    public var requestID: UInt32
    public var contacts: [DHTContact]
    public init(requestID: UInt32, contacts: [DHTContact]) {
        self.requestID = requestID
        self.contacts = contacts
    }
}

/// GetProviders: "who serves this repository?" (the key is the repository ID).
public struct GetProviders: Equatable, Sendable {
    public var requestID: UInt32
    public var repository: NodeID
    public init(requestID: UInt32, repository: NodeID) {
        self.requestID = requestID
        self.repository = repository
    }
}

/// Providers: the provider records the answering node holds for the repository, and the
/// contacts it knows closest to the repository ID.
public struct Providers: Equatable, Sendable {
    public var requestID: UInt32
    public var records: [ProviderRecord]
    public var closer: [DHTContact]
    public init(requestID: UInt32, records: [ProviderRecord], closer: [DHTContact]) {
        self.requestID = requestID
        self.records = records
        self.closer = closer
    }
}

/// AddProvider: "store my provider record" (sent by the publisher only; no answer).
public struct AddProvider: Equatable, Sendable {
    public var record: ProviderRecord
    public init(record: ProviderRecord) { self.record = record }
}

/// GetPeer: "send me the peer record of node `target`".
public struct GetPeer: Equatable, Sendable {
    public var requestID: UInt32
    public var target: NodeID
    public init(requestID: UInt32, target: NodeID) {
        self.requestID = requestID
        self.target = target
    }
}

/// PeerRecordAnswer (type PeerRecord): the record if the answering node holds it, and the
/// contacts it knows closest to the target.
public struct PeerRecordAnswer: Equatable, Sendable {
    public var requestID: UInt32
    public var record: PeerRecord?
    public var closer: [DHTContact]
    public init(requestID: UInt32, record: PeerRecord?, closer: [DHTContact]) {
        self.requestID = requestID
        self.record = record
        self.closer = closer
    }
}

/// PutPeer: "store my peer record" (sent by the publisher only; no answer).
public struct PutPeer: Equatable, Sendable {
    public var record: PeerRecord
    public init(record: PeerRecord) { self.record = record }
}

/// ObservedAddress: "your session reaches me from this address" (sent once per session to
/// a peer that lists `dht`; no answer). The receiver learns its own IP address from it
/// (guts-protocol(7), DHT, Observed addresses); the port of an inbound session is the
/// peer's ephemeral source port, so only the IP address is used.
public struct ObservedAddress: Equatable, Sendable {
    public var address: DHTAddress
    public init(address: DHTAddress) { self.address = address }
}

/// The DHT's messages (type codes 0x40-0x4F, guts-protocol(7), DHT).
public enum DHTMessage: WireMessage, Equatable {
    case findNode(FindNode)
    case nodes(Nodes)
    case getProviders(GetProviders)
    case providers(Providers)
    case addProvider(AddProvider)
    case getPeer(GetPeer)
    case peerRecord(PeerRecordAnswer)
    case putPeer(PutPeer)
    case observedAddress(ObservedAddress)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case findNode = 0x40
        case nodes = 0x41
        case getProviders = 0x42
        case providers = 0x43
        case addProvider = 0x44
        case getPeer = 0x45
        case peerRecord = 0x46
        case putPeer = 0x47
        case observedAddress = 0x48

        /// Largest body, checked from the header before anything is allocated.
        public var maxBodySize: Int {
            let contacts = 1 + DHTLimits.maxContacts * DHTLimits.maxContactSize
            switch self {
            case .findNode, .getProviders, .getPeer: return 4 + 32
            case .nodes: return 4 + contacts
            case .providers: return 4 + 1 + DHTLimits.maxProviders * DHTLimits.maxProviderRecordSize + contacts
            case .addProvider: return DHTLimits.maxProviderRecordSize
            case .peerRecord: return 4 + 1 + DHTLimits.maxPeerRecordSize + contacts
            case .putPeer: return DHTLimits.maxPeerRecordSize
            case .observedAddress: return 1 + 16 + 2
            }
        }

        public var name: String {
            switch self {
            case .findNode: return "FindNode"
            case .nodes: return "Nodes"
            case .getProviders: return "GetProviders"
            case .providers: return "Providers"
            case .addProvider: return "AddProvider"
            case .getPeer: return "GetPeer"
            case .peerRecord: return "PeerRecord"
            case .putPeer: return "PutPeer"
            case .observedAddress: return "ObservedAddress"
            }
        }

        public var isAnswer: Bool { self == .nodes || self == .providers || self == .peerRecord }
    }

    public var kind: Kind {
        switch self {
        case .findNode: return .findNode
        case .nodes: return .nodes
        case .getProviders: return .getProviders
        case .providers: return .providers
        case .addProvider: return .addProvider
        case .getPeer: return .getPeer
        case .peerRecord: return .peerRecord
        case .putPeer: return .putPeer
        case .observedAddress: return .observedAddress
        }
    }

    public var typeCode: UInt8 { kind.rawValue }
    public var typeName: String { kind.name }
    public var maxBodySize: Int { kind.maxBodySize }

    /// The request ID of a request or answer (nil for AddProvider, PutPeer and ObservedAddress).
    public var requestID: UInt32? {
        switch self {
        case let .findNode(m): return m.requestID
        case let .nodes(m): return m.requestID
        case let .getProviders(m): return m.requestID
        case let .providers(m): return m.requestID
        case let .getPeer(m): return m.requestID
        case let .peerRecord(m): return m.requestID
        case .addProvider, .putPeer, .observedAddress: return nil
        }
    }

    public func encodeBody(into w: inout ByteWriter) throws {
        switch self {
        case let .findNode(m):
            w.u32(m.requestID)
            w.raw(m.target.bytes)
        case let .nodes(m):
            w.u32(m.requestID)
            try DHTCoding.writeContacts(&w, m.contacts)
        case let .getProviders(m):
            w.u32(m.requestID)
            w.raw(m.repository.bytes)
        case let .providers(m):
            try WireField.checkCount(m.records.count, "records", DHTLimits.maxProviders)
            w.u32(m.requestID)
            w.u8(UInt8(m.records.count))
            for r in m.records { try DHTCoding.writeProvider(&w, r) }
            try DHTCoding.writeContacts(&w, m.closer)
        case let .addProvider(m):
            try DHTCoding.writeProvider(&w, m.record)
        case let .getPeer(m):
            w.u32(m.requestID)
            w.raw(m.target.bytes)
        case let .peerRecord(m):
            w.u32(m.requestID)
            if let r = m.record {
                w.u8(1)
                try DHTCoding.writePeer(&w, r)
            } else {
                w.u8(0)
            }
            try DHTCoding.writeContacts(&w, m.closer)
        case let .putPeer(m):
            try DHTCoding.writePeer(&w, m.record)
        case let .observedAddress(m):
            DHTCoding.writeAddress(&w, m.address)
        }
    }

    /// Encodes the whole message (header and body).
    public func encoded() throws -> [UInt8] { try MessageCodec.encode(self) }
}

/// The DHT's message family.
public struct DHTProtocol: MessageFamily {
    public init() {}
    public var name: String { "dht" }
    /// The capability a node lists in Hello when it answers DHT requests.
    public static let capability = "dht"
    public var typeCodes: ClosedRange<UInt8> { 0x40...0x4F }

    public func maxBodySize(type: UInt8) -> Int? { DHTMessage.Kind(rawValue: type)?.maxBodySize }
    public func isAnswer(type: UInt8) -> Bool { DHTMessage.Kind(rawValue: type)?.isAnswer ?? false }

    public func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage {
        try Self.decodeDHT(type: type, body: body)
    }

    /// Decodes one body into a `DHTMessage`. Never traps.
    public static func decodeDHT(type: UInt8, body: ArraySlice<UInt8>) throws -> DHTMessage {
        guard let kind = DHTMessage.Kind(rawValue: type) else { throw DecodeError.unknownType(type) }
        guard body.count <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: kind.maxBodySize)
        }
        var r = ByteReader(slice: body)
        let message: DHTMessage
        switch kind {
        case .findNode:
            let id = try r.u32("request_id")
            message = .findNode(FindNode(requestID: id, target: try DHTCoding.readID(&r, "target")))
        case .nodes:
            let id = try r.u32("request_id")
            message = .nodes(Nodes(requestID: id, contacts: try DHTCoding.readContacts(&r)))
        case .getProviders:
            let id = try r.u32("request_id")
            message = .getProviders(GetProviders(requestID: id, repository: try DHTCoding.readID(&r, "repository")))
        case .providers:
            let id = try r.u32("request_id")
            let n = Int(try r.u8("records"))
            try WireField.checkCount(n, "records", DHTLimits.maxProviders)
            var records: [ProviderRecord] = []
            records.reserveCapacity(n)
            for _ in 0..<n { records.append(try DHTCoding.readProvider(&r)) }
            message = .providers(Providers(requestID: id, records: records, closer: try DHTCoding.readContacts(&r)))
        case .addProvider:
            message = .addProvider(AddProvider(record: try DHTCoding.readProvider(&r)))
        case .getPeer:
            let id = try r.u32("request_id")
            message = .getPeer(GetPeer(requestID: id, target: try DHTCoding.readID(&r, "target")))
        case .peerRecord:
            let id = try r.u32("request_id")
            let has = try r.u8("has_record")
            guard has <= 1 else { throw DecodeError.invalidValue(field: "has_record", reason: "must be 0 or 1") }
            let record = has == 1 ? try DHTCoding.readPeer(&r) : nil
            message = .peerRecord(PeerRecordAnswer(requestID: id, record: record, closer: try DHTCoding.readContacts(&r)))
        case .putPeer:
            message = .putPeer(PutPeer(record: try DHTCoding.readPeer(&r)))
        case .observedAddress:
            message = .observedAddress(ObservedAddress(address: try DHTCoding.readAddress(&r)))
        }
        try r.expectEnd()
        return message
    }

    /// Decodes a whole message (header and body) as a DHT message: for tests, the simulation
    /// and tools; a node decodes through its session's `MessageRegistry`.
    public static func decodeMessage(_ bytes: [UInt8]) throws -> DHTMessage {
        guard bytes.count >= WireProtocol.headerLength else { throw DecodeError.truncated(field: "header") }
        let type = bytes[0]
        var r = ByteReader(Array(bytes[1..<5]))
        let length = Int(try r.u32("length"))
        guard let kind = DHTMessage.Kind(rawValue: type) else { throw DecodeError.unknownType(type) }
        guard length <= kind.maxBodySize else { throw DecodeError.tooLarge(field: "body", size: length, limit: kind.maxBodySize) }
        guard bytes.count - WireProtocol.headerLength == length else {
            throw bytes.count - WireProtocol.headerLength < length ? DecodeError.truncated(field: "body")
                : DecodeError.trailingBytes(bytes.count - WireProtocol.headerLength - length)
        }
        return try decodeDHT(type: type, body: bytes[WireProtocol.headerLength...])
    }
}

extension Message {
    /// The DHT message carried, if any.
    public var dhtMessage: DHTMessage? { payload(DHTMessage.self) }
    public static func dht(_ m: DHTMessage) -> Message { .app(m) }
}
