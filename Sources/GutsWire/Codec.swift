/// Encoding and decoding of application messages (guts-protocol(7), MESSAGES).
///
/// A message on the application stream is `type (u8) | length (u32, big-endian) | body`.
/// Decoding validates every field and its limits; it never traps on any input.
public enum MessageCodec {
    /// Encodes `message` with its header. Throws when a field exceeds a wire limit,
    /// so a node never sends what a peer would have to reject.
    public static func encode(_ message: Message) throws -> [UInt8] {
        let kind = message.kind
        // Header first with a length placeholder, body after it: one buffer, no body copy.
        var w = ByteWriter(capacity: WireProtocol.headerLength + estimatedBodySize(message))
        w.u8(kind.rawValue)
        w.u32(0)
        try encodeBody(message, into: &w)
        let bodyLength = w.bytes.count - WireProtocol.headerLength
        guard bodyLength <= kind.maxBodySize else {
            throw DecodeError.tooLarge(field: "body", size: bodyLength, limit: kind.maxBodySize)
        }
        w.patchU32(at: 1, UInt32(bodyLength))
        return w.bytes
    }

    static func estimatedBodySize(_ message: Message) -> Int {
        switch message {
        case let .objects(o): return 16 + o.data.count
        case let .gossip(g): return 400 + g.data.count
        case let .refs(r): return 64 + r.refs.count * 64
        default: return 128
        }
    }

    static func check(_ s: String, _ field: String, _ limit: Int) throws {
        let n = s.utf8.count
        if n > limit { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
    }

    static func checkCount(_ n: Int, _ field: String, _ limit: Int) throws {
        if n > limit { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
    }

    static func writeOID(_ w: inout ByteWriter, _ id: WireOID?) {
        guard let id else {
            w.u8(0)
            return
        }
        w.u8(UInt8(id.bytes.count))
        w.raw(id.bytes)
    }

    static func readOID(_ r: inout ByteReader, _ field: String, optional: Bool = false) throws -> WireOID? {
        let n = Int(try r.u8(field))
        if n == 0 && optional { return nil }
        guard n == 20 || n == 32 else {
            throw DecodeError.invalidValue(field: field, reason: "object ID length \(n), expected 20 or 32")
        }
        return WireOID(try r.raw(n, field))
    }

    static func writeStrings(_ w: inout ByteWriter, _ list: [String]) {
        w.u8(UInt8(list.count))
        for s in list { w.str8(s) }
    }

    static func checkCapabilities(_ caps: [String]) throws {
        try checkCount(caps.count, "capabilities", Limits.maxCapabilities)
        for c in caps {
            try check(c, "capability", Limits.maxCapabilityLength)
            guard !c.isEmpty, c.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw DecodeError.invalidValue(field: "capability", reason: "must be printable ASCII without spaces")
            }
        }
    }

    static func readCapabilities(_ r: inout ByteReader) throws -> [String] {
        let n = Int(try r.u8("capabilities"))
        try checkCount(n, "capabilities", Limits.maxCapabilities)
        var out: [String] = []
        for _ in 0..<n {
            let c = try r.str8("capability", limit: Limits.maxCapabilityLength)
            guard !c.isEmpty, c.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw DecodeError.invalidValue(field: "capability", reason: "must be printable ASCII without spaces")
            }
            out.append(c)
        }
        return out
    }

    static func encodeBody(_ message: Message, into w: inout ByteWriter) throws {
        switch message {
        case let .hello(h):
            guard h.minVersion <= h.maxVersion else {
                throw DecodeError.invalidValue(field: "max_version", reason: "smaller than min_version")
            }
            try checkCapabilities(h.capabilities)
            try check(h.agent, "agent", Limits.maxAgentLength)
            w.u16(h.minVersion)
            w.u16(h.maxVersion)
            writeStrings(&w, h.capabilities)
            w.str8(h.agent)
        case let .helloAck(h):
            try checkCapabilities(h.capabilities)
            try check(h.agent, "agent", Limits.maxAgentLength)
            w.u16(h.version)
            writeStrings(&w, h.capabilities)
            w.str8(h.agent)
        case let .ping(nonce), let .pong(nonce):
            w.u64(nonce)
        case let .goodbye(g):
            try check(g.reason, "reason", Limits.maxReasonLength)
            w.u16(g.code.rawValue)
            w.str16(g.reason)
        case let .error(e):
            try check(e.message, "message", Limits.maxReasonLength)
            w.u32(e.requestID)
            w.u16(e.code.rawValue)
            w.str16(e.message)
        case let .getRefs(g):
            try check(g.repository, "repository", Limits.maxRepositoryName)
            try check(g.prefix, "prefix", Limits.maxRefName)
            w.u32(g.requestID)
            w.str16(g.repository)
            w.str16(g.prefix)
        case let .refs(r):
            try check(r.head, "head", Limits.maxRefName)
            try checkCount(r.refs.count, "refs", Limits.maxRefs)
            w.u32(r.requestID)
            w.str16(r.head)
            w.u32(UInt32(r.refs.count))
            for ref in r.refs {
                try check(ref.name, "ref name", Limits.maxRefName)
                w.str16(ref.name)
                writeOID(&w, ref.id)
            }
        case let .getObjects(g):
            try check(g.repository, "repository", Limits.maxRepositoryName)
            try checkCount(g.wants.count, "wants", Limits.maxWants)
            try checkCount(g.haves.count, "haves", Limits.maxHaves)
            w.u32(g.requestID)
            w.str16(g.repository)
            w.u32(UInt32(g.wants.count))
            for id in g.wants { writeOID(&w, id) }
            w.u32(UInt32(g.haves.count))
            for id in g.haves { writeOID(&w, id) }
        case let .objects(o):
            try checkCount(o.data.count, "data", Limits.maxObjectsChunk)
            w.u32(o.requestID)
            w.u8(o.final ? 1 : 0)
            w.bytes32(o.data)
        case let .newCommit(n):
            try check(n.repository, "repository", Limits.maxRepositoryName)
            try check(n.ref, "ref", Limits.maxRefName)
            w.str16(n.repository)
            w.str16(n.ref)
            writeOID(&w, n.old)
            writeOID(&w, n.new)
        case let .newRepository(n):
            try check(n.repository, "repository", Limits.maxRepositoryName)
            w.str16(n.repository)
        case let .gossip(g):
            try check(g.topic, "topic", Limits.maxTopicLength)
            try checkCount(g.data.count, "data", Limits.maxGossipData)
            guard g.origin.count == 32 else { throw DecodeError.invalidValue(field: "origin", reason: "must be 32 bytes") }
            guard g.signature.count == 64 else { throw DecodeError.invalidValue(field: "signature", reason: "must be 64 bytes") }
            w.str8(g.topic)
            w.raw(g.origin)
            w.u64(g.sequence)
            w.u64(g.timestamp)
            w.bytes32(g.data)
            w.raw(g.signature)
        case let .subscribe(sub):
            try checkCount(sub.topics.count, "topics", Limits.maxTopicsPerSubscribe)
            w.u8(sub.subscribe ? 1 : 0)
            w.u8(UInt8(sub.topics.count))
            for t in sub.topics {
                try checkTopic(t)
                w.str8(t)
            }
        case let .iHave(ih):
            try checkTopic(ih.topic)
            try checkIDs(ih.ids)
            w.str8(ih.topic)
            w.u16(UInt16(ih.ids.count))
            for id in ih.ids { w.raw(id) }
        case let .iWant(iw):
            try checkIDs(iw.ids)
            w.u16(UInt16(iw.ids.count))
            for id in iw.ids { w.raw(id) }
        case let .prune(pr):
            try checkTopic(pr.topic)
            w.str8(pr.topic)
        }
    }

    static func checkTopic(_ t: String) throws {
        try check(t, "topic", Limits.maxTopicLength)
        guard !t.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
    }

    static func checkIDs(_ ids: [[UInt8]]) throws {
        try checkCount(ids.count, "ids", Limits.maxIDsPerControl)
        for id in ids where id.count != Limits.gossipIDLength {
            throw DecodeError.invalidValue(field: "ids", reason: "message IDs are \(Limits.gossipIDLength) bytes")
        }
    }

    static func readIDs(_ r: inout ByteReader) throws -> [[UInt8]] {
        let count = Int(try r.u16("count"))
        try checkCount(count, "ids", Limits.maxIDsPerControl)
        guard count * Limits.gossipIDLength <= r.remaining else { throw DecodeError.truncated(field: "ids") }
        var ids: [[UInt8]] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try r.raw(Limits.gossipIDLength, "id")) }
        return ids
    }

    /// Decodes the body of a message whose header said `kind`. The caller has already
    /// checked the body length against `kind.maxBodySize`.
    public static func decode(kind: Message.Kind, body: [UInt8]) throws -> Message {
        try decode(kind: kind, body: body[...])
    }

    /// Decodes a body held in a slice of a larger buffer, without copying it first.
    public static func decode(kind: Message.Kind, body: ArraySlice<UInt8>) throws -> Message {
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
            let caps = try readCapabilities(&r)
            let agent = try r.str8("agent")
            message = .hello(Hello(minVersion: minV, maxVersion: maxV, capabilities: caps, agent: agent))
        case .helloAck:
            let v = try r.u16("version")
            let caps = try readCapabilities(&r)
            let agent = try r.str8("agent")
            message = .helloAck(HelloAck(version: v, capabilities: caps, agent: agent))
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
        case .getRefs:
            let id = try r.u32("request_id")
            let repo = try r.str16("repository", limit: Limits.maxRepositoryName)
            let prefix = try r.str16("prefix", limit: Limits.maxRefName)
            message = .getRefs(GetRefs(requestID: id, repository: repo, prefix: prefix))
        case .refs:
            let id = try r.u32("request_id")
            let head = try r.str16("head", limit: Limits.maxRefName)
            let count = Int(try r.u32("count"))
            try checkCount(count, "refs", Limits.maxRefs)
            // Each entry takes at least 2 + 1 + 20 bytes: a lying count fails before allocating.
            guard count * 23 <= r.remaining else { throw DecodeError.truncated(field: "refs") }
            var refs: [RefEntry] = []
            refs.reserveCapacity(count)
            for _ in 0..<count {
                let name = try r.str16("ref name", limit: Limits.maxRefName)
                guard let oid = try readOID(&r, "ref id") else { throw DecodeError.truncated(field: "ref id") }
                refs.append(RefEntry(name: name, id: oid))
            }
            message = .refs(Refs(requestID: id, head: head, refs: refs))
        case .getObjects:
            let id = try r.u32("request_id")
            let repo = try r.str16("repository", limit: Limits.maxRepositoryName)
            let wants = try readOIDList(&r, "wants", Limits.maxWants)
            let haves = try readOIDList(&r, "haves", Limits.maxHaves)
            message = .getObjects(GetObjects(requestID: id, repository: repo, wants: wants, haves: haves))
        case .objects:
            let id = try r.u32("request_id")
            let flags = try r.u8("flags")
            guard flags & ~1 == 0 else { throw DecodeError.invalidValue(field: "flags", reason: "unknown flag bits \(flags)") }
            let data = try r.bytes32("data", limit: Limits.maxObjectsChunk)
            message = .objects(Objects(requestID: id, final: flags & 1 == 1, data: data))
        case .newCommit:
            let repo = try r.str16("repository", limit: Limits.maxRepositoryName)
            let ref = try r.str16("ref", limit: Limits.maxRefName)
            let old = try readOID(&r, "old", optional: true)
            guard let new = try readOID(&r, "new") else { throw DecodeError.truncated(field: "new") }
            message = .newCommit(NewCommit(repository: repo, ref: ref, old: old, new: new))
        case .newRepository:
            message = .newRepository(NewRepository(repository: try r.str16("repository", limit: Limits.maxRepositoryName)))
        case .gossip:
            let topic = try r.str8("topic", limit: Limits.maxTopicLength)
            let origin = try r.raw(32, "origin")
            let seq = try r.u64("sequence")
            let ts = try r.u64("timestamp")
            let data = try r.bytes32("data", limit: Limits.maxGossipData)
            let sig = try r.raw(64, "signature")
            message = .gossip(Gossip(topic: topic, origin: origin, sequence: seq, timestamp: ts, data: data, signature: sig))
        case .subscribe:
            let action = try r.u8("action")
            guard action <= 1 else { throw DecodeError.invalidValue(field: "action", reason: "must be 0 or 1") }
            let count = Int(try r.u8("count"))
            try checkCount(count, "topics", Limits.maxTopicsPerSubscribe)
            var topics: [String] = []
            for _ in 0..<count {
                let t = try r.str8("topic", limit: Limits.maxTopicLength)
                guard !t.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
                topics.append(t)
            }
            message = .subscribe(Subscribe(subscribe: action == 1, topics: topics))
        case .iHave:
            let topic = try r.str8("topic", limit: Limits.maxTopicLength)
            guard !topic.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
            message = .iHave(IHave(topic: topic, ids: try readIDs(&r)))
        case .iWant:
            message = .iWant(IWant(ids: try readIDs(&r)))
        case .prune:
            let topic = try r.str8("topic", limit: Limits.maxTopicLength)
            guard !topic.isEmpty else { throw DecodeError.invalidValue(field: "topic", reason: "empty") }
            message = .prune(Prune(topic: topic))
        }
        try r.expectEnd()
        return message
    }

    static func readOIDList(_ r: inout ByteReader, _ field: String, _ limit: Int) throws -> [WireOID] {
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
}
