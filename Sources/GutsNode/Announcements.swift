import GutsSync
import GutsWire

public struct NewCommit: Equatable, Sendable {
    public var repository: String
    public var ref: String
    public var old: WireOID?
    public var new: WireOID
    public init(repository: String, ref: String, old: WireOID?, new: WireOID) {
        self.repository = repository
        self.ref = ref
        self.old = old
        self.new = new
    }
}

public struct NewRepository: Equatable, Sendable {
    public var repository: String
    public init(repository: String) { self.repository = repository }
}

/// Repository announcements (type codes 0x20-0x2F, guts-protocol(7), ANNOUNCEMENTS).
/// They travel only as the data of signed gossip messages on the announcement topics,
/// encoded with the ordinary message header; never directly on a session.
public enum Announcement: WireMessage, Equatable {
    case newCommit(NewCommit)
    case newRepository(NewRepository)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case newCommit = 0x20
        case newRepository = 0x21

        public var maxBodySize: Int {
            switch self {
            case .newCommit: return 2 + SyncLimits.maxRepositoryName + 2 + SyncLimits.maxRefName + 2 * 33
            case .newRepository: return 2 + SyncLimits.maxRepositoryName
            }
        }

        public var name: String {
            switch self {
            case .newCommit: return "NewCommit"
            case .newRepository: return "NewRepository"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .newCommit: return .newCommit
        case .newRepository: return .newRepository
        }
    }

    public var typeCode: UInt8 { kind.rawValue }
    public var typeName: String { kind.name }
    public var maxBodySize: Int { kind.maxBodySize }

    public func encodeBody(into w: inout ByteWriter) throws {
        switch self {
        case let .newCommit(n):
            try WireField.check(n.repository, "repository", SyncLimits.maxRepositoryName)
            try WireField.check(n.ref, "ref", SyncLimits.maxRefName)
            w.str16(n.repository)
            w.str16(n.ref)
            WireField.writeOID(&w, n.old)
            WireField.writeOID(&w, n.new)
        case let .newRepository(n):
            try WireField.check(n.repository, "repository", SyncLimits.maxRepositoryName)
            w.str16(n.repository)
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
        case .newCommit:
            let repo = try r.str16("repository", limit: SyncLimits.maxRepositoryName)
            let ref = try r.str16("ref", limit: SyncLimits.maxRefName)
            let old = try WireField.readOID(&r, "old", optional: true)
            guard let new = try WireField.readOID(&r, "new") else { throw DecodeError.truncated(field: "new") }
            message = .newCommit(NewCommit(repository: repo, ref: ref, old: old, new: new))
        case .newRepository:
            message = .newRepository(NewRepository(repository: try r.str16("repository", limit: SyncLimits.maxRepositoryName)))
        }
        try r.expectEnd()
        return message
    }
}
