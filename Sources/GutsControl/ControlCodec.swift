import GutsSupport

/// A response line that does not have the documented form.
public struct ControlCodecError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Lines of the control protocol (guts-control(7)): one JSON object per line, UTF-8,
/// ended by "\n". Pure functions: bytes in, values out, and back.
public enum ControlCodec {
    // MARK: - Requests

    /// The request line, newline included.
    public static func encode(_ request: ControlRequest, id: Int) -> [UInt8] {
        var pairs: [(String, JSONValue)] = [("id", .int(id)), ("cmd", .string(request.command))]
        switch request {
        case .status, .peers:
            break
        case let .publish(topic, data):
            pairs += [("topic", .string(topic)), ("data", .string(Base64.encode(data)))]
        case let .subscribe(topics):
            pairs.append(("topics", .array(topics.map { .string($0) })))
        case let .scores(peers):
            if !peers.isEmpty { pairs.append(("peers", .array(peers.map { .string($0) }))) }
        case let .ban(target, seconds):
            pairs += [("target", .string(target)), ("seconds", seconds.map { number($0) } ?? .null)]
        case let .unban(target):
            pairs.append(("target", .string(target)))
        case let .report(peer, event, reason):
            pairs += [("peer", .string(peer)), ("event", .string(event)), ("reason", .string(reason))]
        case let .find(key):
            pairs.append(("key", .string(key)))
        }
        return line(.object(pairs))
    }

    /// Decodes one request line (without its newline). The id is returned whenever it
    /// could be read, so even a rejected request is answered under its id. Members the
    /// command does not use are ignored.
    public static func decodeRequest(_ line: [UInt8]) -> (id: Int?, request: Result<ControlRequest, ControlError>) {
        let value: JSONValue
        do {
            value = try JSON.parse(line, maxDepth: ControlSocket.maxRequestDepth, maxBytes: ControlSocket.maxRequestLine)
        } catch {
            return (nil, .failure(ControlError(.badRequest, "not JSON: \(error)")))
        }
        guard case .object = value else {
            return (nil, .failure(ControlError(.badRequest, "a request is a JSON object")))
        }
        var id: Int?
        if let v = value["id"] {
            guard let i = v.intValue else {
                return (nil, .failure(ControlError(.badRequest, "\"id\" must be an integer")))
            }
            id = i
        }
        guard let command = value["cmd"]?.stringValue else {
            return (id, .failure(ControlError(.badRequest, "missing \"cmd\" (a string: \(knownCommands))")))
        }
        switch command {
        case "status":
            return (id, .success(.status))
        case "peers":
            return (id, .success(.peers))
        case "publish":
            guard let topic = value["topic"]?.stringValue else {
                return (id, .failure(ControlError(.badRequest, "publish needs \"topic\" (a string)")))
            }
            guard let text = value["data"]?.stringValue, let data = Base64.decode(text) else {
                return (id, .failure(ControlError(.badRequest, "publish needs \"data\" (the payload in base64)")))
            }
            return (id, .success(.publish(topic: topic, data: data)))
        case "subscribe":
            guard let items = value["topics"]?.arrayValue, !items.isEmpty, items.count <= ControlSocket.maxTopics else {
                return (id, .failure(ControlError(.badRequest, "subscribe needs \"topics\": 1 to \(ControlSocket.maxTopics) strings")))
            }
            var topics: [String] = []
            for item in items {
                guard let t = item.stringValue else {
                    return (id, .failure(ControlError(.badRequest, "\"topics\" must hold strings only")))
                }
                if !topics.contains(t) { topics.append(t) }
            }
            return (id, .success(.subscribe(topics: topics)))
        case "find":
            guard let key = value["key"]?.stringValue, looksLikePeerID(key) || looksLikeRepositoryID(key) else {
                return (id, .failure(ControlError(.badRequest, "find needs \"key\": a peer ID (gt...) or a repository ID (gr...)")))
            }
            return (id, .success(.find(key: key)))
        case "scores", "ban", "unban", "report":
            return (id, decodePeerRequest(command, value).mapError { ControlError(.badRequest, $0.message) })
        default:
            let shown = command.count > 40 ? String(command.prefix(40)) + "..." : command
            return (id, .failure(ControlError(.unknownCommand, "unknown command \(JSON.quote(shown)); known: \(knownCommands)")))
        }
    }

    static let knownCommands = "status, peers, publish, subscribe, scores, ban, unban, report, find"

    /// `scores`, `ban`, `unban` and `report`: every member checked for type, size and
    /// form here; what needs the node's knowledge (a peer ID's checksum, whether an
    /// address parses, event names) the node checks and answers `bad-request` too.
    static func decodePeerRequest(_ command: String, _ value: JSONValue) -> Result<ControlRequest, ControlCodecError> {
        switch command {
        case "scores":
            guard let member = value["peers"], !member.isNull else { return .success(.scores(peers: [])) }
            guard let items = member.arrayValue, items.count <= ControlSocket.maxScorePeers else {
                return .failure(ControlCodecError("\"peers\" must be an array of at most \(ControlSocket.maxScorePeers) peer IDs"))
            }
            var peers: [String] = []
            var seen = Set<String>()
            for item in items {
                guard let text = item.stringValue, looksLikePeerID(text) else {
                    return .failure(ControlCodecError("\"peers\" must hold peer IDs (gt and 56 base32 characters), not \(shown(item))"))
                }
                if seen.insert(text.lowercased()).inserted { peers.append(text) }
            }
            return .success(.scores(peers: peers))
        case "ban":
            let target: String
            switch banTarget(value) {
            case let .success(t): target = t
            case let .failure(e): return .failure(e)
            }
            guard let member = value["seconds"] else {
                return .failure(ControlCodecError("ban needs \"seconds\": a number of seconds, or null for a ban until unbanned"))
            }
            if member.isNull { return .success(.ban(target: target, seconds: nil)) }
            guard let seconds = member.doubleValue, seconds.isFinite, seconds >= 1, seconds <= ControlSocket.maxBanSeconds else {
                return .failure(ControlCodecError("\"seconds\" must be a number from 1 to \(Int(ControlSocket.maxBanSeconds)), or null"))
            }
            return .success(.ban(target: target, seconds: seconds))
        case "unban":
            return banTarget(value).map { .unban(target: $0) }
        default:  // report
            guard let peer = value["peer"]?.stringValue, looksLikePeerID(peer) else {
                return .failure(ControlCodecError("report needs \"peer\": a peer ID (gt and 56 base32 characters)"))
            }
            guard let event = value["event"]?.stringValue, (1...40).contains(event.utf8.count),
                  event.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d }) else {
                return .failure(ControlCodecError("report needs \"event\": the name of a penalty, e.g. \"bad-objects\""))
            }
            guard let reason = value["reason"]?.stringValue, reason.utf8.count <= ControlSocket.maxReasonLength else {
                return .failure(ControlCodecError("report needs \"reason\": a string of at most \(ControlSocket.maxReasonLength) bytes"))
            }
            return .success(.report(peer: peer, event: event, reason: reason))
        }
    }

    /// The `target` member: 1 to `maxTargetLength` bytes of printable ASCII.
    static func banTarget(_ value: JSONValue) -> Result<String, ControlCodecError> {
        guard let target = value["target"]?.stringValue, (1...ControlSocket.maxTargetLength).contains(target.utf8.count),
              target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            return .failure(ControlCodecError("\"target\" must be a peer ID or ADDR[/PREFIX] (1 to \(ControlSocket.maxTargetLength) printable ASCII characters)"))
        }
        return .success(target)
    }

    /// The form of a peer ID (its checksum is the node's to check): `gt` and 56
    /// characters of base32, either case.
    public static func looksLikePeerID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 58, bytes[0] == 0x67 || bytes[0] == 0x47, bytes[1] == 0x74 || bytes[1] == 0x54 else { return false }
        return bytes[2...].allSatisfy { b in (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x32 && b <= 0x37) }
    }

    /// The form of a repository ID: `gr` and 56 characters of base32, either case.
    public static func looksLikeRepositoryID(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 58, bytes[0] == 0x67 || bytes[0] == 0x47, bytes[1] == 0x72 || bytes[1] == 0x52 else { return false }
        return bytes[2...].allSatisfy { b in (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x32 && b <= 0x37) }
    }

    /// A JSON value for a message, cut short.
    static func shown(_ value: JSONValue) -> String {
        let text = value.rendered
        return text.count > 60 ? String(text.prefix(60)) + "..." : text
    }

    /// An integer when the value is one (so `3600` is written `3600`).
    static func number(_ v: Double) -> JSONValue {
        v == v.rounded() && abs(v) < 1e15 ? .int(Int(v)) : .double(v)
    }

    // MARK: - Responses

    /// The response line, newline included; `id` nil writes `"id":null` (the request's id
    /// could not be read).
    public static func encode(_ response: ControlResponse, id: Int?) -> [UInt8] {
        let idValue: JSONValue = id.map { .int($0) } ?? .null
        var pairs: [(String, JSONValue)] = [("id", idValue)]
        switch response {
        case let .status(s):
            pairs.append(("ok", .bool(true)))
            pairs += json(s)
        case let .peers(list):
            pairs += [("ok", .bool(true)), ("peers", .array(list.map { .object(json($0)) }))]
        case let .published(r):
            pairs += [("ok", .bool(true)), ("msg_id", .string(Hex.encode(r.id))), ("topic", .string(r.topic)),
                      ("origin", .string(r.origin)), ("bytes", .int(r.bytes))]
        case let .subscribed(topics):
            pairs += [("ok", .bool(true)), ("topics", .array(topics.map { .string($0) }))]
        case let .scores(scores):
            pairs += [("ok", .bool(true)), ("scores", .array(scores.peers.map { .object(json($0)) })),
                      ("address_bans", .array(scores.addressBans.map { .object(json($0)) }))]
        case let .changed(changed):
            pairs += [("ok", .bool(true)), ("changed", .bool(changed))]
        case let .reported(info):
            pairs += [("ok", .bool(true)), ("score", .object(json(info)))]
        case let .found(r):
            pairs.append(("ok", .bool(true)))
            pairs += json(r)
        case let .gossip(g):
            pairs += [("event", .string("gossip")), ("topic", .string(g.topic)), ("origin", .string(g.origin)),
                      ("msg_id", .string(Hex.encode(g.id))), ("timestamp_ms", .int(Int(clamping: g.timestampMillis))),
                      ("data", .string(Base64.encode(g.data)))]
        case let .failure(e):
            pairs += [("ok", .bool(false)),
                      ("error", .object([("code", .string(e.code.rawValue)), ("message", .string(e.message))]))]
        }
        return line(.object(pairs))
    }

    /// The members describing a node's status (also `guts status --json`).
    public static func json(_ s: NodeStatus) -> [(String, JSONValue)] {
        [("peer_id", .string(s.peerID)), ("agent", .string(s.agent)), ("pid", .int(s.pid)),
         ("listening", .array(s.listening.map { .string($0) })),
         ("repositories", .array(s.repositories.map { .string($0) })),
         ("started_at", .double(s.startedAt)), ("uptime_s", .double(s.uptimeSeconds)),
         ("connections", .object([("inbound", .int(s.inbound)), ("outbound", .int(s.outbound)), ("open", .int(s.open))]))]
    }

    /// The members describing a lookup's result (also `guts find --json`).
    public static func json(_ r: FindResult) -> [(String, JSONValue)] {
        [("kind", .string(r.kind)), ("key", .string(r.key)), ("found", .bool(r.found)),
         ("addresses", .array(r.addresses.map { .string($0) })),
         ("providers", .array(r.providers.map { p in
             .object([("peer_id", .string(p.peerID)), ("addresses", .array(p.addresses.map { .string($0) })),
                      ("expires", .int(Int(clamping: p.expires)))])
         })),
         ("hops", .int(r.hops)), ("messages", .int(r.messages)), ("seconds", .double(r.seconds))]
    }

    /// The members describing a peer (also `guts peers --json`).
    public static func json(_ p: PeerSummary) -> [(String, JSONValue)] {
        [("peer_id", .string(p.peerID)), ("direction", .string(p.direction.rawValue)), ("transport", .string(p.transport)),
         ("address", .string(p.address)), ("agent", .string(p.agent)), ("client", .bool(p.isClient)),
         ("rtt_ms", p.roundTrip.map { .double($0 * 1000) } ?? .null),
         ("connected_since", .double(p.connectedSince)),
         ("bytes_in", .int(Int(clamping: p.bytesIn))), ("bytes_out", .int(Int(clamping: p.bytesOut)))]
    }

    /// The members describing a peer's score (also `guts peers score --json`).
    public static func json(_ p: PeerScoreInfo) -> [(String, JSONValue)] {
        [("peer_id", .string(p.peerID)), ("score", number(p.score)),
         ("components", .object(p.components.map { ($0.name, number($0.value)) })),
         ("state", .string(p.state)), ("banned_until", p.bannedUntil.map { number($0) } ?? .null),
         ("permanent", .bool(p.permanent)), ("addresses", .array(p.addresses.map { .string($0) })),
         ("last_seen", p.lastSeen.map { number($0) } ?? .null), ("connected", .bool(p.connected))]
    }

    /// The members describing an address ban (also `guts peers score --json`).
    public static func json(_ b: AddressBanInfo) -> [(String, JSONValue)] {
        [("prefix", .string(b.prefix)), ("banned_until", b.bannedUntil.map { number($0) } ?? .null),
         ("permanent", .bool(b.permanent)), ("automatic", .bool(b.automatic))]
    }

    /// Decodes one response line (without its newline) to the request `answering`:
    /// its answer, a gossip event, or an error.
    public static func decodeResponse(_ line: [UInt8], answering request: ControlRequest) throws(ControlCodecError) -> (id: Int?, response: ControlResponse) {
        let value: JSONValue
        do {
            value = try JSON.parse(line, maxDepth: 8, maxBytes: ControlSocket.maxResponseLine)
        } catch {
            throw ControlCodecError("the node sent a line that is not JSON: \(error)")
        }
        guard case .object = value else { throw ControlCodecError("the node sent JSON that is not an object") }
        let id = value["id"]?.intValue
        if let event = value["event"]?.stringValue {
            guard event == "gossip" else { throw ControlCodecError("unknown event \(JSON.quote(event))") }
            return (id, .gossip(try delivery(value)))
        }
        guard let ok = value["ok"]?.boolValue else { throw ControlCodecError("response without \"ok\"") }
        if !ok {
            guard let e = value["error"], let code = e["code"]?.stringValue, let message = e["message"]?.stringValue else {
                throw ControlCodecError("error response without \"error\": {\"code\", \"message\"}")
            }
            return (id, .failure(ControlError(ControlError.Code(rawValue: code), message)))
        }
        switch request {
        case .status: return (id, .status(try status(value)))
        case .peers:
            guard let items = value["peers"]?.arrayValue else { throw ControlCodecError("peers response without \"peers\"") }
            var list: [PeerSummary] = []
            for item in items { list.append(try peer(item)) }
            return (id, .peers(list))
        case .publish:
            guard let hex = value["msg_id"]?.stringValue, let msgID = Hex.decode(hex), let topic = value["topic"]?.stringValue,
                  let origin = value["origin"]?.stringValue, let bytes = value["bytes"]?.intValue else {
                throw ControlCodecError("publish response lacks msg_id, topic, origin or bytes")
            }
            return (id, .published(PublishReceipt(id: msgID, topic: topic, origin: origin, bytes: bytes)))
        case .subscribe:
            return (id, .subscribed(topics: try strings(value["topics"], "topics")))
        case .scores:
            guard let items = value["scores"]?.arrayValue, let bans = value["address_bans"]?.arrayValue else {
                throw ControlCodecError("scores response without \"scores\" and \"address_bans\" arrays")
            }
            var peers: [PeerScoreInfo] = []
            for item in items { peers.append(try score(item)) }
            var addressBans: [AddressBanInfo] = []
            for item in bans { addressBans.append(try addressBan(item)) }
            return (id, .scores(PeerScores(peers: peers, addressBans: addressBans)))
        case .ban, .unban:
            guard let changed = value["changed"]?.boolValue else { throw ControlCodecError("\(request.command) response without \"changed\"") }
            return (id, .changed(changed))
        case .report:
            guard let item = value["score"] else { throw ControlCodecError("report response without \"score\"") }
            return (id, .reported(try score(item)))
        case .find:
            return (id, .found(try found(value)))
        }
    }

    static func found(_ v: JSONValue) throws(ControlCodecError) -> FindResult {
        guard let kind = v["kind"]?.stringValue, let key = v["key"]?.stringValue, let found = v["found"]?.boolValue,
              let items = v["providers"]?.arrayValue, let hops = v["hops"]?.intValue, let messages = v["messages"]?.intValue,
              let seconds = v["seconds"]?.doubleValue else {
            throw ControlCodecError("find response lacks a member or has one of the wrong type")
        }
        var providers: [FoundProvider] = []
        for item in items {
            guard let peer = item["peer_id"]?.stringValue, let expires = item["expires"]?.intValue, expires >= 0 else {
                throw ControlCodecError("provider entry lacks a member or has one of the wrong type")
            }
            providers.append(FoundProvider(peerID: peer, addresses: try strings(item["addresses"], "addresses"), expires: UInt64(expires)))
        }
        return FindResult(kind: kind, key: key, found: found, addresses: try strings(v["addresses"], "addresses"),
                          providers: providers, hops: hops, messages: messages, seconds: seconds)
    }

    static func score(_ v: JSONValue) throws(ControlCodecError) -> PeerScoreInfo {
        guard let peerID = v["peer_id"]?.stringValue, let score = v["score"]?.doubleValue,
              case let .object(pairs)? = v["components"], let state = v["state"]?.stringValue,
              let until = v["banned_until"], until.isNull || until.doubleValue != nil,
              let permanent = v["permanent"]?.boolValue,
              let seen = v["last_seen"], seen.isNull || seen.doubleValue != nil,
              let connected = v["connected"]?.boolValue else {
            throw ControlCodecError("score entry lacks a member or has one of the wrong type")
        }
        var components: [PeerScoreInfo.Component] = []
        for (name, value) in pairs {
            guard let d = value.doubleValue else { throw ControlCodecError("score component \(JSON.quote(name)) is not a number") }
            components.append(.init(name: name, value: d))
        }
        return PeerScoreInfo(peerID: peerID, score: score, components: components, state: state, bannedUntil: until.doubleValue,
                             permanent: permanent, addresses: try strings(v["addresses"], "addresses"),
                             lastSeen: seen.doubleValue, connected: connected)
    }

    static func addressBan(_ v: JSONValue) throws(ControlCodecError) -> AddressBanInfo {
        guard let prefix = v["prefix"]?.stringValue, let until = v["banned_until"], until.isNull || until.doubleValue != nil,
              let automatic = v["automatic"]?.boolValue else {
            throw ControlCodecError("address ban lacks a member or has one of the wrong type")
        }
        return AddressBanInfo(prefix: prefix, bannedUntil: until.doubleValue, automatic: automatic)
    }

    static func status(_ v: JSONValue) throws(ControlCodecError) -> NodeStatus {
        guard let peerID = v["peer_id"]?.stringValue, let agent = v["agent"]?.stringValue, let pid = v["pid"]?.intValue,
              let started = v["started_at"]?.doubleValue, let uptime = v["uptime_s"]?.doubleValue,
              let c = v["connections"], let inbound = c["inbound"]?.intValue, let outbound = c["outbound"]?.intValue,
              let open = c["open"]?.intValue else {
            throw ControlCodecError("status response lacks a member")
        }
        return NodeStatus(peerID: peerID, agent: agent, pid: pid, listening: try strings(v["listening"], "listening"),
                          repositories: try strings(v["repositories"], "repositories"), startedAt: started,
                          uptimeSeconds: uptime, inbound: inbound, outbound: outbound, open: open)
    }

    static func peer(_ v: JSONValue) throws(ControlCodecError) -> PeerSummary {
        guard let peerID = v["peer_id"]?.stringValue, let dir = v["direction"]?.stringValue.flatMap(PeerSummary.Direction.init),
              let transport = v["transport"]?.stringValue, transport == "tcp" || transport == "quic",
              let address = v["address"]?.stringValue, let agent = v["agent"]?.stringValue, let client = v["client"]?.boolValue,
              let rtt = v["rtt_ms"], rtt.isNull || rtt.doubleValue != nil,
              let since = v["connected_since"]?.doubleValue,
              let bytesIn = v["bytes_in"]?.intValue, let bytesOut = v["bytes_out"]?.intValue, bytesIn >= 0, bytesOut >= 0 else {
            throw ControlCodecError("peer entry lacks a member or has one of the wrong type")
        }
        return PeerSummary(peerID: peerID, direction: dir, address: address, agent: agent, isClient: client,
                           roundTrip: rtt.doubleValue.map { $0 / 1000 }, connectedSince: since,
                           bytesIn: UInt64(bytesIn), bytesOut: UInt64(bytesOut), transport: transport)
    }

    static func delivery(_ v: JSONValue) throws(ControlCodecError) -> GossipDelivery {
        guard let topic = v["topic"]?.stringValue, let origin = v["origin"]?.stringValue,
              let hex = v["msg_id"]?.stringValue, let msgID = Hex.decode(hex),
              let ts = v["timestamp_ms"]?.intValue, ts >= 0,
              let text = v["data"]?.stringValue, let data = Base64.decode(text) else {
            throw ControlCodecError("gossip event lacks a member or has one of the wrong type")
        }
        return GossipDelivery(topic: topic, origin: origin, id: msgID, timestampMillis: UInt64(ts), data: data)
    }

    static func strings(_ v: JSONValue?, _ name: String) throws(ControlCodecError) -> [String] {
        guard let items = v?.arrayValue else { throw ControlCodecError("response lacks \"\(name)\"") }
        var out: [String] = []
        for item in items {
            guard let s = item.stringValue else { throw ControlCodecError("\"\(name)\" must hold strings") }
            out.append(s)
        }
        return out
    }

    static func line(_ value: JSONValue) -> [UInt8] {
        Array(value.rendered.utf8) + [0x0a]
    }
}
