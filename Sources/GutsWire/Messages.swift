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
    /// The UDP port the sender serves QUIC on (at the IP addresses it serves TCP on); 0:
    /// none. On the wire an optional trailing field, present only when not 0.
    public var quicPort: UInt16

    public init(minVersion: UInt16 = WireProtocol.minVersion, maxVersion: UInt16 = WireProtocol.maxVersion,
                capabilities: [String], agent: String, quicPort: UInt16 = 0) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.capabilities = capabilities
        self.agent = agent
        self.quicPort = quicPort
    }
}

public struct HelloAck: Equatable, Sendable {
    public var version: UInt16
    public var capabilities: [String]
    public var agent: String
    /// As in Hello: the responder's QUIC port, 0 for none.
    public var quicPort: UInt16

    public init(version: UInt16, capabilities: [String], agent: String, quicPort: UInt16 = 0) {
        self.version = version
        self.capabilities = capabilities
        self.agent = agent
        self.quicPort = quicPort
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

/// One protocol's message (sync, gossip, announcements, and every later protocol).
/// GutsWire knows only the envelope and the control messages; each protocol owns its
/// messages, their codec and size limits, and a range of type codes (`MessageFamily`).
public protocol WireMessage: Sendable, CustomStringConvertible {
    /// The type code: the first byte of the message header.
    var typeCode: UInt8 { get }
    /// The message's name as guts-protocol(7) spells it ("GetRefs"), for logs and errors.
    var typeName: String { get }
    /// Largest body the family accepts for this type.
    var maxBodySize: Int { get }
    /// Writes the body (not the header). Throws when a field exceeds a wire limit.
    func encodeBody(into w: inout ByteWriter) throws
    /// Equality across the existential (messages of other types are never equal).
    func isEqual(to other: any WireMessage) -> Bool
}

extension WireMessage where Self: Equatable {
    public func isEqual(to other: any WireMessage) -> Bool { (other as? Self) == self }
}

extension WireMessage {
    public var description: String { typeName }
}

/// A protocol's set of messages: its type-code range, per-type body limits (checked from
/// the header before any allocation) and its decoder. A session dispatches each message
/// to the family whose range holds its type code.
public protocol MessageFamily: Sendable {
    /// Short name, e.g. "sync".
    var name: String { get }
    /// The type codes this family owns (guts-protocol(7), MESSAGE TYPES).
    var typeCodes: ClosedRange<UInt8> { get }
    /// Largest body for `type`, or nil when the family defines no such type.
    func maxBodySize(type: UInt8) -> Int?
    /// Decodes one body. Never traps; every failure is a `DecodeError`.
    func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage
    /// Whether `type` answers a request (and so is expected only while one is outstanding).
    func isAnswer(type: UInt8) -> Bool
}

extension MessageFamily {
    public func isAnswer(type: UInt8) -> Bool { false }
}

/// The protocols one session speaks besides the control messages. Built once from the
/// families a command or node links; a type code outside every family is an unknown type.
public struct MessageRegistry: Sendable {
    public let families: [any MessageFamily]
    /// Family index per type code, for a lookup without search.
    private let table: [Int8]

    /// Fails when two families (or a family and the control range) claim one type code.
    public init(_ families: [any MessageFamily]) {
        var table = [Int8](repeating: -1, count: 256)
        var kept: [any MessageFamily] = []
        for f in families {
            let clash = f.typeCodes.contains { table[Int($0)] >= 0 || ControlKind.range.contains($0) }
            precondition(!clash, "message family \(f.name) overlaps another family's type codes")
            for code in f.typeCodes { table[Int(code)] = Int8(kept.count) }
            kept.append(f)
        }
        self.families = kept
        self.table = table
    }

    /// Only the control messages (Hello, HelloAck, Ping, Pong, Goodbye, Error).
    public static let control = MessageRegistry([])

    /// The family that owns `type`, if any.
    public func family(for type: UInt8) -> (any MessageFamily)? {
        let i = Int(table[Int(type)])
        return i >= 0 ? families[i] : nil
    }

    /// Largest body for `type`, nil for an unknown type.
    public func maxBodySize(type: UInt8) -> Int? {
        if let k = ControlKind(rawValue: type) { return k.maxBodySize }
        return family(for: type)?.maxBodySize(type: type)
    }

    /// Whether a family named `name` is present.
    public func contains(_ name: String) -> Bool { families.contains { $0.name == name } }
}

/// The control messages, owned by GutsWire (type codes 0x01-0x0F).
public enum ControlKind: UInt8, Sendable, CaseIterable {
    case hello = 0x01
    case helloAck = 0x02
    case ping = 0x03
    case pong = 0x04
    case goodbye = 0x05
    case error = 0x06

    /// Type codes reserved for control messages.
    public static let range: ClosedRange<UInt8> = 0x01...0x0F

    /// Largest body accepted for this type, checked from the header before any allocation.
    public var maxBodySize: Int {
        switch self {
        case .hello, .helloAck: return 4096
        case .ping, .pong: return 8
        // Goodbye: code (2) + reason (2 + 1024). Error: request_id (4) + code (2) + message (2 + 1024).
        case .goodbye: return 2 + 2 + Limits.maxReasonLength
        case .error: return 4 + 2 + 2 + Limits.maxReasonLength
        }
    }

    public var name: String {
        switch self {
        case .hello: return "Hello"
        case .helloAck: return "HelloAck"
        case .ping: return "Ping"
        case .pong: return "Pong"
        case .goodbye: return "Goodbye"
        case .error: return "Error"
        }
    }
}

/// A message on a session's application stream: a control message or a message of one of
/// the protocols in the session's registry.
public enum Message: Sendable, Equatable, CustomStringConvertible {
    case hello(Hello)
    case helloAck(HelloAck)
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case goodbye(Goodbye)
    case error(ErrorReply)
    case app(any WireMessage)

    public var typeCode: UInt8 {
        switch self {
        case .hello: return ControlKind.hello.rawValue
        case .helloAck: return ControlKind.helloAck.rawValue
        case .ping: return ControlKind.ping.rawValue
        case .pong: return ControlKind.pong.rawValue
        case .goodbye: return ControlKind.goodbye.rawValue
        case .error: return ControlKind.error.rawValue
        case let .app(m): return m.typeCode
        }
    }

    /// The name guts-protocol(7) gives the message type.
    public var typeName: String {
        if case let .app(m) = self { return m.typeName }
        return ControlKind(rawValue: typeCode)?.name ?? "?"
    }

    public var description: String { typeName }

    /// The protocol message carried, when it is of type `T`.
    public func payload<T: WireMessage>(_ type: T.Type) -> T? {
        if case let .app(m) = self { return m as? T }
        return nil
    }

    public static func == (a: Message, b: Message) -> Bool {
        switch (a, b) {
        case let (.hello(x), .hello(y)): return x == y
        case let (.helloAck(x), .helloAck(y)): return x == y
        case let (.ping(x), .ping(y)): return x == y
        case let (.pong(x), .pong(y)): return x == y
        case let (.goodbye(x), .goodbye(y)): return x == y
        case let (.error(x), .error(y)): return x == y
        case let (.app(x), .app(y)): return x.isEqual(to: y)
        default: return false
        }
    }
}

/// Field limits of the control messages and the envelope.
public enum Limits {
    public static let maxCapabilities = 32
    public static let maxCapabilityLength = 64
    public static let maxAgentLength = 255
    public static let maxReasonLength = 1024
}

/// Which stream a message travels on over a transport with streams (QUIC; see
/// guts-protocol(7), QUIC). Over TCP every message shares the one stream.
public enum StreamRoute: Sendable, Equatable {
    /// The control stream (Hello, Ping, Goodbye, gossip, DHT, everything not below).
    case control
    /// A request that opens a stream of its own, with its request ID.
    case request(UInt32)
    /// An answer to request `id`, sent on that request's stream; `final` ends the stream.
    case answer(UInt32, final: Bool)
}

/// Messages that do not travel on the control stream say so.
public protocol StreamRouted {
    var streamRoute: StreamRoute { get }
}

extension Message {
    /// The stream this message takes over QUIC.
    public var streamRoute: StreamRoute {
        switch self {
        case let .app(m): return (m as? any StreamRouted)?.streamRoute ?? .control
        case let .error(e) where e.requestID != 0: return .answer(e.requestID, final: true)
        default: return .control
        }
    }
}
