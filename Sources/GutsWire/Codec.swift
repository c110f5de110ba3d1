/// Encoding and decoding of application messages (guts-protocol(7), MESSAGES).
///
/// A message on the application stream is `type (u8) | length (u32, big-endian) | body`.
/// This file owns the envelope and the control messages; every other protocol's bodies
/// are encoded by its own `WireMessage` and decoded by its own `MessageFamily`.
/// Decoding validates every field and its limits; it never traps on any input.
public enum MessageCodec {
    /// Encodes `message` with its header. Throws when a field exceeds a wire limit,
    /// so a node never sends what a peer would have to reject.
    public static func encode(_ message: Message) throws -> [UInt8] {
        var w = ByteWriter(capacity: WireProtocol.headerLength + estimatedBodySize(message))
        w.u8(message.typeCode)
        w.u32(0)
        let limit: Int
        switch message {
        case let .app(m):
            try m.encodeBody(into: &w)
            limit = m.maxBodySize
        default:
            try encodeControl(message, into: &w)
            limit = ControlKind(rawValue: message.typeCode)?.maxBodySize ?? 0
        }
        let bodyLength = w.bytes.count - WireProtocol.headerLength
        guard bodyLength <= limit else {
            throw DecodeError.tooLarge(field: "body", size: bodyLength, limit: limit)
        }
        w.patchU32(at: 1, UInt32(bodyLength))
        return w.bytes
    }

    /// Encodes a protocol message with its header.
    public static func encode(_ message: any WireMessage) throws -> [UInt8] {
        try encode(.app(message))
    }

    static func estimatedBodySize(_ message: Message) -> Int {
        if case let .app(m) = message { return min(m.maxBodySize, 1 << 20 + 64) }
        return 128
    }

    static func encodeControl(_ message: Message, into w: inout ByteWriter) throws {
        switch message {
        case let .hello(h):
            guard h.minVersion <= h.maxVersion else {
                throw DecodeError.invalidValue(field: "max_version", reason: "smaller than min_version")
            }
            try WireField.checkCapabilities(h.capabilities)
            try WireField.check(h.agent, "agent", Limits.maxAgentLength)
            w.u16(h.minVersion)
            w.u16(h.maxVersion)
            WireField.writeStrings(&w, h.capabilities)
            w.str8(h.agent)
            if h.quicPort != 0 { w.u16(h.quicPort) }
        case let .helloAck(h):
            try WireField.checkCapabilities(h.capabilities)
            try WireField.check(h.agent, "agent", Limits.maxAgentLength)
            w.u16(h.version)
            WireField.writeStrings(&w, h.capabilities)
            w.str8(h.agent)
            if h.quicPort != 0 { w.u16(h.quicPort) }
        case let .ping(nonce), let .pong(nonce):
            w.u64(nonce)
        case let .goodbye(g):
            try WireField.check(g.reason, "reason", Limits.maxReasonLength)
            w.u16(g.code.rawValue)
            w.str16(g.reason)
        case let .error(e):
            try WireField.check(e.message, "message", Limits.maxReasonLength)
            w.u32(e.requestID)
            w.u16(e.code.rawValue)
            w.str16(e.message)
        case .app:
            break
        }
    }

    /// Decodes the body of a message whose header said `type`, dispatching protocol
    /// messages to the family of `registry` that owns the type code.
    public static func decode(type: UInt8, body: [UInt8], registry: MessageRegistry) throws -> Message {
        try decode(type: type, body: body[...], registry: registry)
    }

    /// Decodes a body held in a slice of a larger buffer, without copying it first.
    public static func decode(type: UInt8, body: ArraySlice<UInt8>, registry: MessageRegistry) throws -> Message {
        guard let limit = registry.maxBodySize(type: type) else { throw DecodeError.unknownType(type) }
        guard body.count <= limit else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: limit)
        }
        if let kind = ControlKind(rawValue: type) { return try decodeControl(kind, body: body) }
        guard let family = registry.family(for: type) else { throw DecodeError.unknownType(type) }
        return .app(try family.decode(type: type, body: body))
    }

    /// The optional `quic_port` that ends Hello and HelloAck: absent means no QUIC; when
    /// present it is not 0 (one encoding per meaning).
    static func readQUICPort(_ r: inout ByteReader) throws -> UInt16 {
        guard r.remaining > 0 else { return 0 }
        let port = try r.u16("quic_port")
        guard port != 0 else { throw DecodeError.invalidValue(field: "quic_port", reason: "0 (a sender without QUIC omits the field)") }
        return port
    }

    /// Decodes a control message body.
    public static func decodeControl(_ kind: ControlKind, body: ArraySlice<UInt8>) throws -> Message {
        guard body.count <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: body.count, limit: kind.maxBodySize)
        }
        var r = ByteReader(slice: body)
        let message: Message
        switch kind {
        case .hello:
            let minV = try r.u16("min_version")
            let maxV = try r.u16("max_version")
            guard minV <= maxV else {
                throw DecodeError.invalidValue(field: "max_version", reason: "smaller than min_version")
            }
            let caps = try WireField.readCapabilities(&r)
            let agent = try r.str8("agent")
            message = .hello(Hello(minVersion: minV, maxVersion: maxV, capabilities: caps, agent: agent,
                                   quicPort: try readQUICPort(&r)))
        case .helloAck:
            let v = try r.u16("version")
            let caps = try WireField.readCapabilities(&r)
            let agent = try r.str8("agent")
            message = .helloAck(HelloAck(version: v, capabilities: caps, agent: agent, quicPort: try readQUICPort(&r)))
        case .ping:
            message = .ping(nonce: try r.u64("nonce"))
        case .pong:
            message = .pong(nonce: try r.u64("nonce"))
        case .goodbye:
            let code = ReasonCode(rawValue: try r.u16("code"))
            let reason = try r.str16("reason", limit: Limits.maxReasonLength)
            message = .goodbye(Goodbye(code: code, reason: reason))
        case .error:
            let id = try r.u32("request_id")
            let code = ReasonCode(rawValue: try r.u16("code"))
            let text = try r.str16("message", limit: Limits.maxReasonLength)
            message = .error(ErrorReply(requestID: id, code: code, message: text))
        }
        try r.expectEnd()
        return message
    }
}

/// Field checks and encodings shared by every protocol's codec.
public enum WireField {
    /// A string field of at most `limit` bytes of UTF-8.
    public static func check(_ s: String, _ field: String, _ limit: Int) throws {
        let n = s.utf8.count
        if n > limit { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
    }

    /// A list of at most `limit` entries.
    public static func checkCount(_ n: Int, _ field: String, _ limit: Int) throws {
        if n > limit { throw DecodeError.tooMany(field: field, count: n, limit: limit) }
    }

    /// An object ID: u8 length (20 or 32, or 0 for "none" where optional) + bytes.
    public static func writeOID(_ w: inout ByteWriter, _ id: WireOID?) {
        guard let id else {
            w.u8(0)
            return
        }
        w.u8(UInt8(id.bytes.count))
        w.raw(id.bytes)
    }

    public static func readOID(_ r: inout ByteReader, _ field: String, optional: Bool = false) throws -> WireOID? {
        let n = Int(try r.u8(field))
        if n == 0 && optional { return nil }
        guard n == 20 || n == 32 else {
            throw DecodeError.invalidValue(field: field, reason: "object ID length \(n), expected 20 or 32")
        }
        return WireOID(try r.raw(n, field))
    }

    /// u32 count + object IDs, the count checked against `limit` and the bytes left
    /// before anything is allocated.
    public static func readOIDList(_ r: inout ByteReader, _ field: String, _ limit: Int) throws -> [WireOID] {
        let count = Int(try r.u32(field))
        try checkCount(count, field, limit)
        guard count * 21 <= r.remaining else { throw DecodeError.truncated(field: field) }
        var out: [WireOID] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            guard let id = try readOID(&r, field) else { throw DecodeError.truncated(field: field) }
            out.append(id)
        }
        return out
    }

    static func writeStrings(_ w: inout ByteWriter, _ list: [String]) {
        w.u8(UInt8(list.count))
        for s in list { w.str8(s) }
    }

    static func validCapability(_ c: String) -> Bool {
        !c.isEmpty && c.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7f }
    }

    static func checkCapabilities(_ caps: [String]) throws {
        try checkCount(caps.count, "capabilities", Limits.maxCapabilities)
        var seen = Set<String>()
        for c in caps {
            try check(c, "capability", Limits.maxCapabilityLength)
            guard validCapability(c) else {
                throw DecodeError.invalidValue(field: "capability", reason: "must be printable ASCII without spaces")
            }
            guard seen.insert(c).inserted else {
                throw DecodeError.invalidValue(field: "capability", reason: "'\(c)' is listed twice")
            }
        }
    }

    /// Capabilities are case-sensitive; a duplicate is dropped on receipt (guts-protocol(7)).
    static func readCapabilities(_ r: inout ByteReader) throws -> [String] {
        let n = Int(try r.u8("capabilities"))
        try checkCount(n, "capabilities", Limits.maxCapabilities)
        var out: [String] = []
        var seen = Set<String>()
        for _ in 0..<n {
            let c = try r.str8("capability", limit: Limits.maxCapabilityLength)
            guard validCapability(c) else {
                throw DecodeError.invalidValue(field: "capability", reason: "must be printable ASCII without spaces")
            }
            if seen.insert(c).inserted { out.append(c) }
        }
        return out
    }
}
