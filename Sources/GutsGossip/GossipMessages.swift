import GutsCrypto
import GutsWire

/// Field limits of the gossip protocol.
public enum GossipLimits {
    public static let maxTopicLength = 255
    public static let maxData = 64 << 10
    public static let maxTopicsPerSubscribe = 64
    public static let maxIDsPerControl = 1024
    /// Gossip message IDs are BLAKE2b-256 of the signed bytes.
    public static let idLength = 32
}

/// A signed gossip message. The signature (by `origin`, an Ed25519 public key) covers
/// every other field; see guts-protocol(7), GOSSIP.
public struct Gossip: Equatable, Sendable {
    public var topic: String
    public var origin: [UInt8]
    public var sequence: UInt64
    public var timestamp: UInt64
    public var data: [UInt8]
    public var signature: [UInt8]

    public init(topic: String, origin: [UInt8], sequence: UInt64, timestamp: UInt64, data: [UInt8], signature: [UInt8]) {
        self.topic = topic
        self.origin = origin
        self.sequence = sequence
        self.timestamp = timestamp
        self.data = data
        self.signature = signature
    }

    /// The message ID: BLAKE2b-256 of `signedBytes` (guts-protocol(7), GOSSIP).
    public var id: [UInt8] { BLAKE2b.hash(signedBytes, outputLength: GossipLimits.idLength) }

    /// The bytes the origin signs: a domain string then the fields in wire order.
    public var signedBytes: [UInt8] {
        var w = ByteWriter(capacity: 64 + data.count)
        w.raw(Array("guts-gossip-v1".utf8))
        w.u8(0)
        w.str8(topic)
        w.raw(origin)
        w.u64(sequence)
        w.u64(timestamp)
        w.bytes32(data)
        return w.bytes
    }
}

/// Topic subscription changes, sent to every connected peer (and the full set on connect).
public struct Subscribe: Equatable, Sendable {
    public var subscribe: Bool
    public var topics: [String]
    public init(subscribe: Bool, topics: [String]) {
        self.subscribe = subscribe
        self.topics = topics
    }
}

/// Lazy push: "I have these gossip messages on this topic" (IDs only).
public struct IHave: Equatable, Sendable {
    public var topic: String
    public var ids: [[UInt8]]
    public init(topic: String, ids: [[UInt8]]) {
        self.topic = topic
        self.ids = ids
    }
}

/// Lazy pull: "send me the gossip messages with these IDs".
public struct IWant: Equatable, Sendable {
    public var ids: [[UInt8]]
    public init(ids: [[UInt8]]) { self.ids = ids }
}

/// "Stop pushing me whole messages on this topic; announcements (IHave) are enough."
/// The receiver moves the sender from eager to lazy push for the topic.
public struct Prune: Equatable, Sendable {
    public var topic: String
    public init(topic: String) { self.topic = topic }
}

/// The gossip protocol's messages (type codes 0x30-0x3F, guts-protocol(7), GOSSIP).
public enum GossipMessage: WireMessage, Equatable {
    case gossip(Gossip)
    case subscribe(Subscribe)
    case iHave(IHave)
    case iWant(IWant)
    case prune(Prune)

    public enum Kind: UInt8, Sendable, CaseIterable {
        case gossip = 0x30
        case subscribe = 0x31
        case iHave = 0x32
        case iWant = 0x33
        case prune = 0x34

        public var maxBodySize: Int {
            switch self {
            case .gossip: return 1 + 255 + 32 + 8 + 8 + 4 + GossipLimits.maxData + 64
            case .subscribe: return 1 + 1 + GossipLimits.maxTopicsPerSubscribe * 256
            case .iHave: return 1 + 255 + 2 + GossipLimits.maxIDsPerControl * GossipLimits.idLength
            case .iWant: return 2 + GossipLimits.maxIDsPerControl * GossipLimits.idLength
            case .prune: return 1 + 255
            }
        }

        public var name: String {
            switch self {
            case .gossip: return "Gossip"
            case .subscribe: return "Subscribe"
            case .iHave: return "IHave"
            case .iWant: return "IWant"
            case .prune: return "Prune"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .gossip: return .gossip
        case .subscribe: return .subscribe
        case .iHave: return .iHave
        case .iWant: return .iWant
        case .prune: return .prune
        }
    }

    public var typeCode: UInt8 { kind.rawValue }
    public var typeName: String { kind.name }
    public var maxBodySize: Int { kind.maxBodySize }

    public func encodeBody(into w: inout ByteWriter) throws {
        switch self {
        case let .gossip(g):
            try WireField.check(g.topic, "topic", GossipLimits.maxTopicLength)
            try WireField.checkCount(g.data.count, "data", GossipLimits.maxData)
            guard g.origin.count == 32 else { throw DecodeError.invalidValue(field: "origin", reason: "must be 32 bytes") }
            guard g.signature.count == 64 else { throw DecodeError.invalidValue(field: "signature", reason: "must be 64 bytes") }
            w.str8(g.topic)
            w.raw(g.origin)
            w.u64(g.sequence)
            w.u64(g.timestamp)
            w.bytes32(g.data)
            w.raw(g.signature)
        case let .subscribe(sub):
            try WireField.checkCount(sub.topics.count, "topics", GossipLimits.maxTopicsPerSubscribe)
            w.u8(sub.subscribe ? 1 : 0)
            w.u8(UInt8(sub.topics.count))
            for t in sub.topics {
                try Self.checkTopic(t)
                w.str8(t)
            }
        case let .iHave(ih):
            try Self.checkTopic(ih.topic)
            try Self.checkIDs(ih.ids)
            w.str8(ih.topic)
            w.u16(UInt16(ih.ids.count))
            for id in ih.ids { w.raw(id) }
        case let .iWant(iw):
            try Self.checkIDs(iw.ids)
            w.u16(UInt16(iw.ids.count))
            for id in iw.ids { w.raw(id) }
        case let .prune(pr):
            try Self.checkTopic(pr.topic)
            w.str8(pr.topic)
        }
    }

    static func checkTopic(_ t: String) throws {
        try WireField.check(t, "topic", GossipLimits.maxTopicLength)
        guard !t.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
    }

    static func checkIDs(_ ids: [[UInt8]]) throws {
        try WireField.checkCount(ids.count, "ids", GossipLimits.maxIDsPerControl)
        for id in ids where id.count != GossipLimits.idLength {
            throw DecodeError.invalidValue(field: "ids", reason: "message IDs are \(GossipLimits.idLength) bytes")
        }
    }

    static func readIDs(_ r: inout ByteReader) throws -> [[UInt8]] {
        let count = Int(try r.u16("count"))
        try WireField.checkCount(count, "ids", GossipLimits.maxIDsPerControl)
        guard count * GossipLimits.idLength <= r.remaining else { throw DecodeError.truncated(field: "ids") }
        var ids: [[UInt8]] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try r.raw(GossipLimits.idLength, "id")) }
        return ids
    }

    static func readTopic(_ r: inout ByteReader) throws -> String {
        let t = try r.str8("topic", limit: GossipLimits.maxTopicLength)
        guard !t.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
        return t
    }
}

/// The gossip protocol's message family.
public struct GossipProtocol: MessageFamily {
    public init() {}
    public var name: String { "gossip" }
    public var typeCodes: ClosedRange<UInt8> { 0x30...0x3F }

    public func maxBodySize(type: UInt8) -> Int? { GossipMessage.Kind(rawValue: type)?.maxBodySize }

    public func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage {
        guard let kind = GossipMessage.Kind(rawValue: type) else { throw DecodeError.unknownType(type) }
        guard body.count <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: kind.maxBodySize)
        }
        var r = ByteReader(slice: body)
        let message: GossipMessage
        switch kind {
        case .gossip:
            let topic = try r.str8("topic", limit: GossipLimits.maxTopicLength)
            let origin = try r.raw(32, "origin")
            let seq = try r.u64("sequence")
            let ts = try r.u64("timestamp")
            let data = try r.bytes32("data", limit: GossipLimits.maxData)
            let sig = try r.raw(64, "signature")
            message = .gossip(Gossip(topic: topic, origin: origin, sequence: seq, timestamp: ts, data: data, signature: sig))
        case .subscribe:
            let action = try r.u8("action")
            guard action <= 1 else { throw DecodeError.invalidValue(field: "action", reason: "must be 0 or 1") }
            let count = Int(try r.u8("count"))
            try WireField.checkCount(count, "topics", GossipLimits.maxTopicsPerSubscribe)
            var topics: [String] = []
            for _ in 0..<count { topics.append(try GossipMessage.readTopic(&r)) }
            message = .subscribe(Subscribe(subscribe: action == 1, topics: topics))
        case .iHave:
            let topic = try GossipMessage.readTopic(&r)
            message = .iHave(IHave(topic: topic, ids: try GossipMessage.readIDs(&r)))
        case .iWant:
            message = .iWant(IWant(ids: try GossipMessage.readIDs(&r)))
        case .prune:
            message = .prune(Prune(topic: try GossipMessage.readTopic(&r)))
        }
        try r.expectEnd()
        return message
    }
}

extension Message {
    /// The gossip message carried, if any.
    public var gossipMessage: GossipMessage? { payload(GossipMessage.self) }

    public static func gossip(_ m: GossipMessage) -> Message { .app(m) }
}
