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
            return (id, .failure(ControlError(.badRequest, "missing \"cmd\" (a string: status, peers, publish or subscribe)")))
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
        default:
            let shown = command.count > 40 ? String(command.prefix(40)) + "..." : command
            return (id, .failure(ControlError(.unknownCommand, "unknown command \(JSON.quote(shown)); known: status, peers, publish, subscribe")))
        }
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

    /// The members describing a peer (also `guts peers --json`).
    public static func json(_ p: PeerSummary) -> [(String, JSONValue)] {
        [("peer_id", .string(p.peerID)), ("direction", .string(p.direction.rawValue)), ("address", .string(p.address)),
         ("agent", .string(p.agent)), ("client", .bool(p.isClient)),
         ("rtt_ms", p.roundTrip.map { .double($0 * 1000) } ?? .null),
         ("connected_since", .double(p.connectedSince)),
         ("bytes_in", .int(Int(clamping: p.bytesIn))), ("bytes_out", .int(Int(clamping: p.bytesOut)))]
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
        }
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
              let address = v["address"]?.stringValue, let agent = v["agent"]?.stringValue, let client = v["client"]?.boolValue,
              let rtt = v["rtt_ms"], rtt.isNull || rtt.doubleValue != nil,
              let since = v["connected_since"]?.doubleValue,
              let bytesIn = v["bytes_in"]?.intValue, let bytesOut = v["bytes_out"]?.intValue, bytesIn >= 0, bytesOut >= 0 else {
            throw ControlCodecError("peer entry lacks a member or has one of the wrong type")
        }
        return PeerSummary(peerID: peerID, direction: dir, address: address, agent: agent, isClient: client,
                           roundTrip: rtt.doubleValue.map { $0 / 1000 }, connectedSince: since,
                           bytesIn: UInt64(bytesIn), bytesOut: UInt64(bytesOut))
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
