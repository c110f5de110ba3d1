import GutsWire

/// Field limits of the sync protocol.
public enum SyncLimits {
    public static let maxRepositoryName = 255
    public static let maxRefName = 1024
    public static let maxRefs = 200_000
    public static let maxWants = 100_000
    public static let maxHaves = 100_000
    public static let maxObjectsChunk = 1 << 20
    /// Repositories in one Repositories answer (a page; the `more` flag says whether
    /// another follows).
    public static let maxRepositoriesPerPage = 256
}

/// Asks for the repositories a node serves that the asker may read, in pages.
public struct ListRepositories: Equatable, Sendable {
    public var requestID: UInt32
    /// List only names after this one in byte order ("" from the first).
    public var after: String
    public init(requestID: UInt32, after: String = "") {
        self.requestID = requestID
        self.after = after
    }
}

/// One served repository in a Repositories answer.
public struct RepositoryEntry: Equatable, Sendable {
    public var name: String
    /// The repository ID (32 bytes) when it has a valid identity.
    public var id: [UInt8]?
    /// Served only to the peers its owner lists (and the asker is one of them).
    public var restricted: Bool
    /// Target of the symbolic HEAD, "" when detached.
    public var head: String
    /// The object HEAD resolves to, nil when it resolves to nothing (unborn).
    public var headID: WireOID?
    public init(name: String, id: [UInt8]? = nil, restricted: Bool = false, head: String, headID: WireOID?) {
        self.name = name
        self.id = id
        self.restricted = restricted
        self.head = head
        self.headID = headID
    }
}

public struct Repositories: Equatable, Sendable {
    public var requestID: UInt32
    public var repositories: [RepositoryEntry]
    /// More repositories follow the last one listed: ask again with `after` set to its name.
    public var more: Bool
    public init(requestID: UInt32, repositories: [RepositoryEntry], more: Bool) {
        self.requestID = requestID
        self.repositories = repositories
        self.more = more
    }
}

public struct RefEntry: Equatable, Sendable {
    public var name: String
    public var id: WireOID
    public init(name: String, id: WireOID) {
        self.name = name
        self.id = id
    }
}

public struct GetRefs: Equatable, Sendable {
    public var requestID: UInt32
    public var repository: String
    public var prefix: String
    public init(requestID: UInt32, repository: String, prefix: String = "") {
        self.requestID = requestID
        self.repository = repository
        self.prefix = prefix
    }
}

public struct Refs: Equatable, Sendable {
    public var requestID: UInt32
    /// Target of the symbolic HEAD (e.g. "refs/heads/main"), or "" when HEAD is detached or absent.
    public var head: String
    public var refs: [RefEntry]
    /// The repository is restricted (served only to the peers its owner lists): a
    /// mirror of it must not be served to anyone else or announced.
    public var restricted: Bool
    public init(requestID: UInt32, head: String, refs: [RefEntry], restricted: Bool = false) {
        self.requestID = requestID
        self.head = head
        self.refs = refs
        self.restricted = restricted
    }
}

public struct GetObjects: Equatable, Sendable {
    public var requestID: UInt32
    public var repository: String
    public var wants: [WireOID]
    public var haves: [WireOID]
    public init(requestID: UInt32, repository: String, wants: [WireOID], haves: [WireOID]) {
        self.requestID = requestID
        self.repository = repository
        self.wants = wants
        self.haves = haves
    }
}

public struct Objects: Equatable, Sendable {
    public var requestID: UInt32
    /// Set on the last chunk of the response.
    public var final: Bool
    /// The next chunk of a git pack stream.
    public var data: [UInt8]
    public init(requestID: UInt32, final: Bool, data: [UInt8]) {
        self.requestID = requestID
        self.final = final
        self.data = data
    }
}

/// The sync protocol's messages (type codes 0x10-0x1F, guts-protocol(7), REPOSITORY SYNC).
public enum SyncMessage: WireMessage, Equatable {
    case getRefs(GetRefs)
    case refs(Refs)
    case getObjects(GetObjects)
    case objects(Objects)
    case listRepositories(ListRepositories)
    case repositories(Repositories)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case getRefs = 0x10
        case refs = 0x11
        case getObjects = 0x12
        case objects = 0x13
        case listRepositories = 0x14
        case repositories = 0x15

        /// The largest Repositories entry: name, flags, ID, head, head object ID.
        static let maxRepositoryEntry = 2 + SyncLimits.maxRepositoryName + 1 + 32 + 2 + SyncLimits.maxRefName + 1 + 32

        public var maxBodySize: Int {
            switch self {
            case .getRefs: return 4 + 2 + SyncLimits.maxRepositoryName + 2 + SyncLimits.maxRefName
            case .refs: return (16 << 20) + 1
            case .getObjects: return 8 << 20
            case .objects: return 4 + 1 + 4 + SyncLimits.maxObjectsChunk
            case .listRepositories: return 4 + 2 + SyncLimits.maxRepositoryName
            case .repositories: return 4 + 2 + SyncLimits.maxRepositoriesPerPage * Self.maxRepositoryEntry + 1
            }
        }

        public var name: String {
            switch self {
            case .getRefs: return "GetRefs"
            case .refs: return "Refs"
            case .getObjects: return "GetObjects"
            case .objects: return "Objects"
            case .listRepositories: return "ListRepositories"
            case .repositories: return "Repositories"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .getRefs: return .getRefs
        case .refs: return .refs
        case .getObjects: return .getObjects
        case .objects: return .objects
        case .listRepositories: return .listRepositories
        case .repositories: return .repositories
        }
    }

    public var typeCode: UInt8 { kind.rawValue }
    public var typeName: String { kind.name }
    public var maxBodySize: Int { kind.maxBodySize }

    /// Whether this is a request (GetRefs, GetObjects) rather than an answer.
    public var isRequest: Bool {
        switch self {
        case .getRefs, .getObjects, .listRepositories: return true
        case .refs, .objects, .repositories: return false
        }
    }

    /// The request this message opens or answers.
    public var requestID: UInt32 {
        switch self {
        case let .getRefs(m): return m.requestID
        case let .refs(m): return m.requestID
        case let .getObjects(m): return m.requestID
        case let .objects(m): return m.requestID
        case let .listRepositories(m): return m.requestID
        case let .repositories(m): return m.requestID
        }
    }

    /// An Objects chunk is sent from where it lies (see `WireMessage.bodyTail`).
    public var bodyTail: [UInt8]? {
        if case let .objects(o) = self { return o.data }
        return nil
    }

    public func encodeBodyHead(into w: inout ByteWriter) throws {
        guard case let .objects(o) = self else { return try encodeBody(into: &w) }
        try WireField.checkCount(o.data.count, "data", SyncLimits.maxObjectsChunk)
        w.u32(o.requestID)
        w.u8(o.final ? 1 : 0)
        w.u32(UInt32(o.data.count))
    }

    public func encodeBody(into w: inout ByteWriter) throws {
        switch self {
        case let .getRefs(g):
            try WireField.check(g.repository, "repository", SyncLimits.maxRepositoryName)
            try WireField.check(g.prefix, "prefix", SyncLimits.maxRefName)
            w.u32(g.requestID)
            w.str16(g.repository)
            w.str16(g.prefix)
        case let .refs(r):
            try WireField.check(r.head, "head", SyncLimits.maxRefName)
            try WireField.checkCount(r.refs.count, "refs", SyncLimits.maxRefs)
            w.u32(r.requestID)
            w.str16(r.head)
            w.u32(UInt32(r.refs.count))
            for ref in r.refs {
                try WireField.check(ref.name, "ref name", SyncLimits.maxRefName)
                w.str16(ref.name)
                WireField.writeOID(&w, ref.id)
            }
            w.u8(r.restricted ? 1 : 0)
        case let .getObjects(g):
            try WireField.check(g.repository, "repository", SyncLimits.maxRepositoryName)
            try WireField.checkCount(g.wants.count, "wants", SyncLimits.maxWants)
            try WireField.checkCount(g.haves.count, "haves", SyncLimits.maxHaves)
            w.u32(g.requestID)
            w.str16(g.repository)
            w.u32(UInt32(g.wants.count))
            for id in g.wants { WireField.writeOID(&w, id) }
            w.u32(UInt32(g.haves.count))
            for id in g.haves { WireField.writeOID(&w, id) }
        case let .objects(o):
            try WireField.checkCount(o.data.count, "data", SyncLimits.maxObjectsChunk)
            w.u32(o.requestID)
            w.u8(o.final ? 1 : 0)
            w.bytes32(o.data)
        case let .listRepositories(l):
            try WireField.check(l.after, "after", SyncLimits.maxRepositoryName)
            w.u32(l.requestID)
            w.str16(l.after)
        case let .repositories(r):
            try WireField.checkCount(r.repositories.count, "repositories", SyncLimits.maxRepositoriesPerPage)
            w.u32(r.requestID)
            w.u16(UInt16(r.repositories.count))
            for e in r.repositories {
                guard !e.name.isEmpty else { throw DecodeError.invalidValue(field: "name", reason: "empty") }
                try WireField.check(e.name, "name", SyncLimits.maxRepositoryName)
                try WireField.check(e.head, "head", SyncLimits.maxRefName)
                if let id = e.id, id.count != 32 { throw DecodeError.invalidValue(field: "id", reason: "not 32 bytes") }
                w.str16(e.name)
                w.u8((e.restricted ? 1 : 0) | (e.id != nil ? 2 : 0))
                if let id = e.id { w.raw(id) }
                w.str16(e.head)
                WireField.writeOID(&w, e.headID)
            }
            w.u8(r.more ? 1 : 0)
        }
    }
}

/// The sync protocol's message family.
public struct SyncProtocol: MessageFamily {
    public init() {}
    public var name: String { "sync" }
    public var typeCodes: ClosedRange<UInt8> { 0x10...0x1F }

    public func maxBodySize(type: UInt8) -> Int? { SyncMessage.Kind(rawValue: type)?.maxBodySize }

    /// Refs and Objects answer GetRefs and GetObjects.
    public func isAnswer(type: UInt8) -> Bool {
        type == SyncMessage.Kind.refs.rawValue || type == SyncMessage.Kind.objects.rawValue || type == SyncMessage.Kind.repositories.rawValue
    }

    public func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage {
        guard let kind = SyncMessage.Kind(rawValue: type) else { throw DecodeError.unknownType(type) }
        guard body.count <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: kind.maxBodySize)
        }
        var r = ByteReader(slice: body)
        let message: SyncMessage
        switch kind {
        case .getRefs:
            let id = try r.u32("request_id")
            let repo = try r.str16("repository", limit: SyncLimits.maxRepositoryName)
            let prefix = try r.str16("prefix", limit: SyncLimits.maxRefName)
            message = .getRefs(GetRefs(requestID: id, repository: repo, prefix: prefix))
        case .refs:
            let id = try r.u32("request_id")
            let head = try r.str16("head", limit: SyncLimits.maxRefName)
            let count = Int(try r.u32("count"))
            try WireField.checkCount(count, "refs", SyncLimits.maxRefs)
            // Each entry takes at least 2 + 1 + 20 bytes: a lying count fails before allocating.
            guard count * 23 <= r.remaining else { throw DecodeError.truncated(field: "refs") }
            var refs: [RefEntry] = []
            refs.reserveCapacity(count)
            for _ in 0..<count {
                let name = try r.str16("ref name", limit: SyncLimits.maxRefName)
                guard let oid = try WireField.readOID(&r, "ref id") else { throw DecodeError.truncated(field: "ref id") }
                refs.append(RefEntry(name: name, id: oid))
            }
            let flags = try r.u8("flags")
            guard flags & ~1 == 0 else { throw DecodeError.invalidValue(field: "flags", reason: "unknown flag bits \(flags)") }
            message = .refs(Refs(requestID: id, head: head, refs: refs, restricted: flags & 1 == 1))
        case .getObjects:
            let id = try r.u32("request_id")
            let repo = try r.str16("repository", limit: SyncLimits.maxRepositoryName)
            let wants = try WireField.readOIDList(&r, "wants", SyncLimits.maxWants)
            let haves = try WireField.readOIDList(&r, "haves", SyncLimits.maxHaves)
            message = .getObjects(GetObjects(requestID: id, repository: repo, wants: wants, haves: haves))
        case .objects:
            let id = try r.u32("request_id")
            let flags = try r.u8("flags")
            guard flags & ~1 == 0 else { throw DecodeError.invalidValue(field: "flags", reason: "unknown flag bits \(flags)") }
            let data = try r.bytes32("data", limit: SyncLimits.maxObjectsChunk)
            message = .objects(Objects(requestID: id, final: flags & 1 == 1, data: data))
        case .listRepositories:
            let id = try r.u32("request_id")
            let after = try r.str16("after", limit: SyncLimits.maxRepositoryName)
            message = .listRepositories(ListRepositories(requestID: id, after: after))
        case .repositories:
            let id = try r.u32("request_id")
            let count = Int(try r.u16("count"))
            try WireField.checkCount(count, "repositories", SyncLimits.maxRepositoriesPerPage)
            // Each entry takes at least 2 + 1 + 1 + 2 + 1 bytes: a lying count fails before allocating.
            guard count * 7 <= r.remaining else { throw DecodeError.truncated(field: "repositories") }
            var entries: [RepositoryEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let name = try r.str16("name", limit: SyncLimits.maxRepositoryName)
                guard !name.isEmpty else { throw DecodeError.invalidValue(field: "name", reason: "empty") }
                let flags = try r.u8("repository flags")
                guard flags & ~3 == 0 else { throw DecodeError.invalidValue(field: "repository flags", reason: "unknown flag bits \(flags)") }
                let repoID = flags & 2 != 0 ? try r.raw(32, "id") : nil
                let head = try r.str16("head", limit: SyncLimits.maxRefName)
                let headID = try WireField.readOID(&r, "head id", optional: true)
                entries.append(RepositoryEntry(name: name, id: repoID, restricted: flags & 1 != 0, head: head, headID: headID))
            }
            let flags = try r.u8("flags")
            guard flags & ~1 == 0 else { throw DecodeError.invalidValue(field: "flags", reason: "unknown flag bits \(flags)") }
            message = .repositories(Repositories(requestID: id, repositories: entries, more: flags & 1 == 1))
        }
        try r.expectEnd()
        return message
    }
}

extension Message {
    /// The sync message carried, if any.
    public var syncMessage: SyncMessage? { payload(SyncMessage.self) }

    public static func sync(_ m: SyncMessage) -> Message { .app(m) }
}

/// Default limits of a sync (guts-config(5)): pure values, so the config parser needs no
/// networking code.
public enum SyncDefaults {
    /// Most pack bytes accepted in one sync.
    public static let maxPackBytes = 4 << 30
    /// Free space kept on the repository's file system.
    public static let minFreeBytes = 256 << 20
    /// Seconds a whole sync may take.
    public static let deadline = 3600.0
}

extension SyncMessage: StreamRouted {
    /// Over QUIC each GetRefs and GetObjects runs on a stream of its own; its answers come
    /// back on that stream, which ends after the final one (a Refs, or the Objects with
    /// `final` set). Listings stay on the control stream.
    public var streamRoute: StreamRoute {
        switch self {
        case let .getRefs(m): return .request(m.requestID)
        case let .getObjects(m): return .request(m.requestID)
        case let .refs(m): return .answer(m.requestID, final: true)
        case let .objects(m): return .answer(m.requestID, final: m.final)
        case .listRepositories, .repositories: return .control
        }
    }
}
