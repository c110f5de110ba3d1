import GutsCrypto

/// Protocol constants of guts wire version 1. Man/guts-protocol.7 is the normative text.
public enum WireProtocol {
    /// Application protocol versions this implementation speaks.
    public static let minVersion: UInt16 = 1
    public static let maxVersion: UInt16 = 1
    /// Bytes before the network ID in the Noise prologue.
    public static let prologuePrefix: [UInt8] = Array("guts/1".utf8) + [0]
    /// Longest network ID (bytes of UTF-8).
    public static let maxNetworkIDLength = 64

    /// Noise prologue: "guts/1", a zero byte, then the network ID (UTF-8, may be empty).
    public static func prologue(networkID: String) -> [UInt8] {
        prologuePrefix + Array(networkID.utf8)
    }

    /// Largest plaintext carried by one Noise transport message (65535 - 16-byte tag).
    public static let maxChunk = 65535 - 16
    /// Application message header: type (u8) + body length (u32).
    public static let headerLength = 5
}

/// A git object ID on the wire: 20 bytes (SHA-1) or 32 bytes (SHA-256).
public struct WireOID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(_ bytes: [UInt8]) {
        guard bytes.count == 20 || bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public var description: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Reason codes of Goodbye and Error messages.
public struct ReasonCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let shutdown = ReasonCode(rawValue: 1)
    public static let protocolViolation = ReasonCode(rawValue: 2)
    public static let unsupportedVersion = ReasonCode(rawValue: 3)
    public static let unknownMessageType = ReasonCode(rawValue: 4)
    public static let messageTooLarge = ReasonCode(rawValue: 5)
    public static let timeout = ReasonCode(rawValue: 6)
    public static let tooManyConnections = ReasonCode(rawValue: 7)
    public static let identityRejected = ReasonCode(rawValue: 8)
    public static let notFound = ReasonCode(rawValue: 9)
    public static let accessDenied = ReasonCode(rawValue: 10)
    public static let internalError = ReasonCode(rawValue: 11)
    public static let badRequest = ReasonCode(rawValue: 12)
    public static let busy = ReasonCode(rawValue: 13)

    public var description: String {
        switch rawValue {
        case 1: return "shutdown"
        case 2: return "protocol-violation"
        case 3: return "unsupported-version"
        case 4: return "unknown-message-type"
        case 5: return "message-too-large"
        case 6: return "timeout"
        case 7: return "too-many-connections"
        case 8: return "identity-rejected"
        case 9: return "not-found"
        case 10: return "access-denied"
        case 11: return "internal-error"
        case 12: return "bad-request"
        case 13: return "busy"
        default: return "code-\(rawValue)"
        }
    }
}

public struct Hello: Equatable, Sendable {
    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var capabilities: [String]
    public var agent: String

    public init(minVersion: UInt16 = WireProtocol.minVersion, maxVersion: UInt16 = WireProtocol.maxVersion,
                capabilities: [String], agent: String) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.capabilities = capabilities
        self.agent = agent
    }
}

public struct HelloAck: Equatable, Sendable {
    public var version: UInt16
    public var capabilities: [String]
    public var agent: String

    public init(version: UInt16, capabilities: [String], agent: String) {
        self.version = version
        self.capabilities = capabilities
        self.agent = agent
    }
}

public struct Goodbye: Equatable, Sendable {
    public var code: ReasonCode
    public var reason: String
    public init(code: ReasonCode, reason: String) {
        self.code = code
        self.reason = reason
    }
}

public struct ErrorReply: Error, Equatable, Sendable {
    public var requestID: UInt32
    public var code: ReasonCode
    public var message: String
    public init(requestID: UInt32, code: ReasonCode, message: String) {
        self.requestID = requestID
        self.code = code
        self.message = message
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
    public init(requestID: UInt32, head: String, refs: [RefEntry]) {
        self.requestID = requestID
        self.head = head
        self.refs = refs
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
    public var id: [UInt8] { BLAKE2b.hash(signedBytes, outputLength: Limits.gossipIDLength) }

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

/// Every application message of wire version 1.
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case helloAck(HelloAck)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case goodbye(Goodbye)
    case error(ErrorReply)
    case getRefs(GetRefs)
    case refs(Refs)
    case getObjects(GetObjects)
    case objects(Objects)
    case newCommit(NewCommit)
    case newRepository(NewRepository)
    case gossip(Gossip)
    case subscribe(Subscribe)
    case iHave(IHave)
    case iWant(IWant)
    case prune(Prune)

    /// Type codes (the first header byte).
    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 0x01
        case helloAck = 0x02
        case ping = 0x03
        case pong = 0x04
        case goodbye = 0x05
        case error = 0x06
        case getRefs = 0x10
        case refs = 0x11
        case getObjects = 0x12
        case objects = 0x13
        case newCommit = 0x20
        case newRepository = 0x21
        case gossip = 0x30
        case subscribe = 0x31
        case iHave = 0x32
        case iWant = 0x33
        case prune = 0x34

        /// Largest body accepted for this type, checked from the header before any allocation.
        public var maxBodySize: Int {
            switch self {
            case .hello, .helloAck: return 4096
            case .ping, .pong: return 8
            case .goodbye, .error: return 4 + 2 + 2 + 1024
            case .getRefs: return 4 + 2 + Limits.maxRepositoryName + 2 + Limits.maxRefName
            case .refs: return 16 << 20
            case .getObjects: return 8 << 20
            case .objects: return 4 + 1 + 4 + Limits.maxObjectsChunk
            case .newCommit: return 2 + Limits.maxRepositoryName + 2 + Limits.maxRefName + 2 * 33
            case .newRepository: return 2 + Limits.maxRepositoryName
            case .gossip: return 1 + 255 + 32 + 8 + 8 + 4 + Limits.maxGossipData + 64
            case .subscribe: return 1 + 1 + Limits.maxTopicsPerSubscribe * 256
            case .iHave: return 1 + 255 + 2 + Limits.maxIDsPerControl * Limits.gossipIDLength
            case .iWant: return 2 + Limits.maxIDsPerControl * Limits.gossipIDLength
            case .prune: return 1 + 255
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .hello: return .hello
        case .helloAck: return .helloAck
        case .ping: return .ping
        case .pong: return .pong
        case .goodbye: return .goodbye
        case .error: return .error
        case .getRefs: return .getRefs
        case .refs: return .refs
        case .getObjects: return .getObjects
        case .objects: return .objects
        case .newCommit: return .newCommit
        case .newRepository: return .newRepository
        case .gossip: return .gossip
        case .subscribe: return .subscribe
        case .iHave: return .iHave
        case .iWant: return .iWant
        case .prune: return .prune
        }
    }
}

/// Field limits of wire version 1.
public enum Limits {
    public static let maxCapabilities = 32
    public static let maxCapabilityLength = 64
    public static let maxAgentLength = 255
    public static let maxReasonLength = 1024
    public static let maxRepositoryName = 255
    public static let maxRefName = 1024
    public static let maxRefs = 200_000
    public static let maxWants = 100_000
    public static let maxHaves = 100_000
    public static let maxObjectsChunk = 1 << 20
    public static let maxTopicLength = 255
    public static let maxGossipData = 64 << 10
    public static let maxTopicsPerSubscribe = 64
    public static let maxIDsPerControl = 1024
    /// Gossip message IDs are BLAKE2b-256 of the signed bytes.
    public static let gossipIDLength = 32
}
