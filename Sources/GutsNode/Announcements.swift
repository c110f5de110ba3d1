import GutsIdentity
import GutsSync
import GutsTrust
import GutsWire

/// A repository this node serves appeared (once per repository, signed or not).
public struct NewRepository: Equatable, Sendable {
    public var repository: String
    public init(repository: String) { self.repository = repository }
}

/// The refs of an unsigned repository (one without identity) changed. `refsHash` is
/// BLAKE2b-256 of its refs (guts-protocol(7), RefsChanged); followers of unsigned
/// repositories act only on the announcements of the peer they named.
public struct RefsChanged: Equatable, Sendable {
    public var repository: String
    public var refsHash: [UInt8]
    public init(repository: String, refsHash: [UInt8]) {
        self.repository = repository
        self.refsHash = refsHash
    }
}

/// A delegate's signed refs changed: the announcing node (the gossip origin) holds the
/// signed-refs commit `signedRefs` of `delegate`, sequence `sequence`, for repository
/// `repository`. One per change, however many refs changed.
public struct SignedRefsUpdate: Equatable, Sendable {
    public var repository: RepositoryID
    public var delegate: PeerID
    public var sequence: UInt64
    public var signedRefs: WireOID
    public init(repository: RepositoryID, delegate: PeerID, sequence: UInt64, signedRefs: WireOID) {
        self.repository = repository
        self.delegate = delegate
        self.sequence = sequence
        self.signedRefs = signedRefs
    }
}

/// Repository announcements (type codes 0x20-0x2F, guts-protocol(7), ANNOUNCEMENTS).
/// They travel only as the data of signed gossip messages on the announcement topics,
/// encoded with the ordinary message header; never directly on a session. Type 0x20
/// (NewCommit, one message per ref) is retired and never sent.
public enum Announcement: WireMessage, Equatable {
    case newRepository(NewRepository)
    case refsChanged(RefsChanged)
    case signedRefs(SignedRefsUpdate)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case newRepository = 0x21
        case refsChanged = 0x22
        case signedRefs = 0x23

        public var maxBodySize: Int {
            switch self {
            case .newRepository: return 2 + SyncLimits.maxRepositoryName
            case .refsChanged: return 2 + SyncLimits.maxRepositoryName + 32
            case .signedRefs: return 32 + 32 + 8 + 33
            }
        }

        public var name: String {
            switch self {
            case .newRepository: return "NewRepository"
            case .refsChanged: return "RefsChanged"
            case .signedRefs: return "SignedRefs"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .newRepository: return .newRepository
        case .refsChanged: return .refsChanged
        case .signedRefs: return .signedRefs
        }
    }

    public var typeCode: UInt8 { kind.rawValue }
    public var typeName: String { kind.name }
    public var maxBodySize: Int { kind.maxBodySize }

    public func encodeBody(into w: inout ByteWriter) throws {
        switch self {
        case let .newRepository(n):
            try WireField.check(n.repository, "repository", SyncLimits.maxRepositoryName)
            w.str16(n.repository)
        case let .refsChanged(n):
            try WireField.check(n.repository, "repository", SyncLimits.maxRepositoryName)
            guard n.refsHash.count == 32 else { throw DecodeError.invalidValue(field: "refs_hash", reason: "must be 32 bytes") }
            w.str16(n.repository)
            w.raw(n.refsHash)
        case let .signedRefs(s):
            w.raw(s.repository.bytes)
            w.raw(s.delegate.publicKey)
            w.u64(s.sequence)
            WireField.writeOID(&w, s.signedRefs)
        }
    }

    /// Encodes the announcement as gossip data (header and body).
    public func encoded() throws -> [UInt8] { try MessageCodec.encode(self) }

    /// Decodes gossip data on an announcement topic; nil when it is not an announcement.
    public static func decode(_ data: [UInt8]) -> Announcement? {
        let registry = MessageRegistry([AnnouncementProtocol()])
        guard data.count >= WireProtocol.headerLength else { return nil }
        let length = Int(data[1]) << 24 | Int(data[2]) << 16 | Int(data[3]) << 8 | Int(data[4])
        guard length == data.count - WireProtocol.headerLength,
              let message = try? MessageCodec.decode(type: data[0], body: data[WireProtocol.headerLength...], registry: registry)
        else { return nil }
        return message.payload(Announcement.self)
    }
}

/// The announcement message family.
public struct AnnouncementProtocol: MessageFamily {
    public init() {}
    public var name: String { "announce" }
    public var typeCodes: ClosedRange<UInt8> { 0x20...0x2F }

    public func maxBodySize(type: UInt8) -> Int? { Announcement.Kind(rawValue: type)?.maxBodySize }

    public func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage {
        guard let kind = Announcement.Kind(rawValue: type) else { throw DecodeError.unknownType(type) }
        guard body.count <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: kind.maxBodySize)
        }
        var r = ByteReader(slice: body)
        let message: Announcement
        switch kind {
        case .newRepository:
            message = .newRepository(NewRepository(repository: try r.str16("repository", limit: SyncLimits.maxRepositoryName)))
        case .refsChanged:
            let repo = try r.str16("repository", limit: SyncLimits.maxRepositoryName)
            message = .refsChanged(RefsChanged(repository: repo, refsHash: try r.raw(32, "refs_hash")))
        case .signedRefs:
            guard let rid = RepositoryID(bytes: try r.raw(32, "repository")) else { throw DecodeError.truncated(field: "repository") }
            guard let delegate = try? PeerID(publicKey: try r.raw(32, "delegate")) else { throw DecodeError.truncated(field: "delegate") }
            let sequence = try r.u64("sequence")
            guard sequence >= 1 else { throw DecodeError.invalidValue(field: "sequence", reason: "must be at least 1") }
            guard let oid = try WireField.readOID(&r, "signed_refs") else { throw DecodeError.truncated(field: "signed_refs") }
            message = .signedRefs(SignedRefsUpdate(repository: rid, delegate: delegate, sequence: sequence, signedRefs: oid))
        }
        try r.expectEnd()
        return message
    }
}
