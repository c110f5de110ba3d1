#if canImport(Glibc)
import Glibc
import GutsAddress
#endif
import GutsControl
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsNode
import GutsSupport
import GutsTransport
import GutsWire
import NIOPosix

/// Connection settings for talking to a node as a gossip client.
enum GossipConnect {
    static func open(_ args: ParsedArguments, _ context: Context, timeout: Double, signals: SignalWatcher?) throws -> (any PeerLink, Identity, MultiThreadedEventLoopGroup) {
        guard let peerText = args.value("peer") else { throw UsageError("needs --peer [PEERID@]ADDR: the node to talk to") }
        var config = try NodeConfig.load(home: context.homePath)
        let peers = try PeerResolver(args, config: config, context: context)
        let target = try peers.resolve(peerText)
        config.connectTimeout = timeout
        config.handshakeTimeout = timeout
        try Network.applyNetworkOption(args, to: &config)
        let identity = try Network.clientIdentity(context, args)
        let session = Network.sessionConfig(identity: identity, config: config, capabilities: [Capabilities.ping, GossipClient.capability],
                                             protocols: MessageRegistry([GossipProtocol()]))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            let connection = try peers.dial(target, config: session, group: group, connectTimeout: timeout, context)
            return (connection, identity, group)
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    /// The local node has its own network: --network means nothing without --peer.
    static func refuseNetworkWithoutPeer(_ args: ParsedArguments) throws {
        if args.has("network") { throw UsageError("--network applies only with --peer (the local node keeps its own network)") }
    }

    static func topic(_ args: ParsedArguments) throws -> String {
        guard let topic = args.value("topic") else { throw UsageError("needs --topic TOPIC") }
        guard Topic.isValid(topic) else {
            throw UsageError("invalid topic '\(topic)': 1 to 255 of a-z 0-9 / . _ - , not starting or ending with /")
        }
        return topic
    }
}

/// `guts gossip publish`: sign a message with this node's identity and hand it to a node.
enum GossipPublishCommand: Command {
    static let name = "gossip publish"
    static let summary = "sign a message and hand it to a node, which floods it on its topic"
    static let synopsis = "gossip publish --topic TOPIC [--peer [PEERID@]ADDR [--ephemeral]] [--data STRING]"
    static let options = [
        OptionSpec("topic", short: "t", value: "TOPIC", help: "topic to publish on"),
        OptionSpec("peer", short: "p", value: "[PEERID@]ADDR", help: "node to hand the message to (default: the node running for this home)"),
        OptionSpec("data", short: "d", value: "STRING", help: "payload (default: all of standard input, binary-safe)"),
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "connect, handshake and acknowledgement timeout (default 10)"),
        OptionSpec("network", value: "ID", help: "with --peer: network ID to connect within (default: network from config, empty)"),
        OptionSpec("ephemeral", help: "with --peer: use a one-time identity instead of the state directory's"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("gossip publish takes no arguments (payload: --data or standard input)") }
        let topic = try GossipConnect.topic(args)
        let timeout = try args.seconds("timeout", in: 0.1...3600) ?? 10
        let data: [UInt8]
        if let text = args.value("data") {
            data = Array(text.utf8)
        } else {
            data = try readStandardInput(limit: GossipLimits.maxData)
        }
        guard data.count <= GossipLimits.maxData else {
            throw UsageError("payload is \(data.count) bytes; the limit is \(GossipLimits.maxData)")
        }
        guard args.has("peer") else {
            try GossipConnect.refuseNetworkWithoutPeer(args)
            return try publishLocally(topic: topic, data: data, timeout: timeout, context)
        }
        let (connection, identity, group) = try GossipConnect.open(args, context, timeout: timeout, signals: nil)
        defer { try? group.syncShutdownGracefully() }
        let timestamp = UInt64(unixTime() * 1000)
        var gossip = Gossip(topic: topic, origin: identity.keyPair.publicKey, sequence: Random.uint64() >> 1,
                            timestamp: timestamp, data: data, signature: [])
        gossip.signature = identity.keyPair.sign(gossip.signedBytes)
        let id = gossip.id
        connection.send(.gossip(.gossip(gossip)))
        defer {
            connection.close(.shutdown, "published")
            _ = try? connection.closeFuture.wait()
        }
        // The node acknowledges with IHave {topic, [id]} or explains with Error.
        let started = Instant.now()
        while true {
            let remaining = timeout - Instant.now().seconds(since: started)
            guard remaining > 0 else { throw CommandError(.timeout, "the node did not acknowledge the message within \(formatNumber(timeout)) s") }
            let message: Message
            do {
                message = try connection.nextMessage(timeout: remaining).wait()
            } catch TransportError.timeout {
                throw CommandError(.timeout, "the node did not acknowledge the message within \(formatNumber(timeout)) s")
            } catch {
                throw CommandError(.unreachable, "connection lost before the node acknowledged: \(error)")
            }
            switch (message, message.gossipMessage) {
            case let (_, .iHave(ack)?) where ack.ids.contains(id):
                if context.json {
                    context.out(JSON.object(["id": .string(Hex.encode(id)), "topic": .string(topic),
                                             "origin": .string(identity.peerID.description), "bytes": .int(data.count)]))
                } else {
                    context.out(Hex.encode(id))
                }
                return .ok
            case let (.error(e), _):
                throw CommandError(.refused, "the node rejected the message: \(e.message)")
            default:
                continue
            }
        }
    }

    /// Through the control socket of the node running for this home; the node signs.
    static func publishLocally(topic: String, data: [UInt8], timeout: Double, _ context: Context) throws -> ExitCode {
        let client = try LocalNode.connect(context, timeout: timeout, hint: ", or give --peer")
        defer { client.close() }
        let response: ControlResponse
        do {
            response = try client.call(.publish(topic: topic, data: data), timeout: timeout)
        } catch .timeout {
            throw CommandError(.timeout, "the node did not acknowledge the message within \(formatNumber(timeout)) s")
        } catch {
            throw LocalNode.describe(error, context)
        }
        switch response {
        case let .published(r):
            if context.json {
                context.out(JSON.object(["id": .string(Hex.encode(r.id)), "topic": .string(r.topic),
                                         "origin": .string(r.origin), "bytes": .int(r.bytes)]))
            } else {
                context.out(Hex.encode(r.id))
            }
            return .ok
        case let .failure(e):
            throw LocalNode.describe(e)
        default:
            throw CommandError(.protocolError, "the node answered publish with something else")
        }
    }

    static func readStandardInput(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CommandError(.io, "cannot read standard input")
            }
            if n == 0 { break }
            out += buffer[0..<n]
            if out.count > limit { throw UsageError("payload on standard input exceeds \(limit) bytes") }
        }
        return out
    }
}

/// `guts gossip subscribe`: stream every message on a topic, one line each.
enum GossipSubscribeCommand: Command {
    static let name = "gossip subscribe"
    static let summary = "print every message on a topic as a node receives it, one line each"
    static let synopsis = "gossip subscribe --topic TOPIC [--peer [PEERID@]ADDR [--ephemeral]] [--count N] [--timeout SECONDS] [--raw]"
    static let options = [
        OptionSpec("topic", short: "t", value: "TOPIC", help: "topic to follow"),
        OptionSpec("peer", short: "p", value: "[PEERID@]ADDR", help: "node to follow it through (default: the node running for this home)"),
        OptionSpec("count", short: "c", value: "N", help: "exit after N messages"),
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "exit after SECONDS (also the connect and handshake timeout)"),
        OptionSpec("raw", help: "print announcements as their raw payload, not decoded"),
        OptionSpec("network", value: "ID", help: "with --peer: network ID to connect within (default: network from config, empty)"),
        OptionSpec("ephemeral", help: "with --peer: use a one-time identity instead of the state directory's"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("gossip subscribe takes no arguments") }
        let topic = try GossipConnect.topic(args)
        let count = try args.int("count", in: 1...Int(Int32.max))
        let limit = try args.seconds("timeout", in: 0.1...31_536_000)
        let raw = args.has("raw")
        let signals = SignalWatcher.install()
        guard args.has("peer") else {
            try GossipConnect.refuseNetworkWithoutPeer(args)
            return try subscribeLocally(topic: topic, count: count, limit: limit, raw: raw, signals: signals, context)
        }
        let (connection, _, group) = try GossipConnect.open(args, context, timeout: min(limit ?? 10, 10), signals: signals)
        defer { try? group.syncShutdownGracefully() }
        signals.onSignal { _ in connection.close(.shutdown, "subscriber interrupted") }
        // Ends as soon as standard output's reader goes away (`| head -1`), not only
        // when the next message fails to be written.
        let hangup = StdoutWatcher.start { connection.close(.shutdown, "subscriber's output closed") }
        defer { hangup.stop() }
        connection.send(.gossip(.subscribe(Subscribe(subscribe: true, topics: [topic]))))
        // The node handles a connection's messages in order: its pong to this ping means
        // the subscription is in place (what scripts waiting on -v's line rely on).
        let probe = UInt64.random(in: 1...UInt64.max)
        connection.send(.ping(nonce: probe))
        let started = Instant.now()
        var received = 0
        defer {
            connection.close(.shutdown, "subscriber done")
            _ = try? connection.closeFuture.wait()
        }
        while count.map({ received < $0 }) ?? true {
            if signals.received != 0 { break }
            var wait = 3600.0
            if let limit {
                wait = limit - Instant.now().seconds(since: started)
                if wait <= 0 { break }
            }
            let message: Message
            do {
                message = try connection.nextMessage(timeout: wait).wait()
            } catch TransportError.timeout {
                if limit != nil { break }
                continue
            } catch {
                if signals.received != 0 || hangup.fired { break }
                let lost = Network.describe(error, endpoint: try Network.parseEndpoint(args.value("peer") ?? ""))
                throw CommandError(lost.code, "connection to the node lost: \(lost.message)")
            }
            if case .pong(probe) = message {
                context.debug("subscribed to \(topic)")
                continue
            }
            guard case let .gossip(g)? = message.gossipMessage, g.topic == topic else { continue }
            received += 1
            let origin = (try? PeerID(publicKey: g.origin))?.description ?? Hex.encode(g.origin)
            let line = render(GossipDelivery(topic: g.topic, origin: origin, id: g.id, timestampMillis: g.timestamp, data: g.data),
                              json: context.json, raw: raw)
            if !context.outChecked(line) { break }  // reader went away (| head)
        }
        return received > 0 ? .ok : .noReply
    }

    /// Through the control socket of the node running for this home. Ends as soon as
    /// standard output's reader goes away (`| head -1`), not only at the next message.
    static func subscribeLocally(topic: String, count: Int?, limit: Double?, raw: Bool, signals: SignalWatcher, _ context: Context) throws -> ExitCode {
        let started = Instant.now()
        let request = ControlRequest.subscribe(topics: [topic])
        let client = try LocalNode.connect(context, timeout: min(limit ?? 10, 10), hint: ", or give --peer")
        defer { client.close() }
        signals.onSignal { _ in client.interrupt() }
        let setup = min(limit ?? 10, 10)  // for connecting and the acknowledgement
        var received = 0
        var id: Int?
        var subscribed = false
        while count.map({ received < $0 }) ?? true {
            if signals.received != 0 { break }
            let elapsed = Instant.now().seconds(since: started)
            if let limit, elapsed >= limit { break }
            let wait = subscribed ? limit.map { $0 - elapsed } : setup - elapsed
            let event: ControlClient.Event
            do {
                if id == nil { id = try client.send(request, timeout: setup) }
                event = try client.next(answering: request, timeout: wait, watch: 1)
            } catch {
                if signals.received != 0 { break }
                switch error {
                case .timeout where !subscribed:
                    throw CommandError(.timeout, "the node did not acknowledge the subscription within \(formatNumber(setup)) s")
                case .timeout:
                    return received > 0 ? .ok : .noReply
                case .closed:
                    throw CommandError(.unreachable, "the node closed the subscription (it stopped, or this reader fell too far behind)")
                default:
                    throw LocalNode.describe(error, context)
                }
            }
            guard case let .line(lineID, response) = event else { break }  // stdout's reader went away
            guard lineID == id || lineID == nil else { continue }
            switch response {
            case .subscribed:
                subscribed = true
                context.debug("subscribed to \(topic)")
            case let .gossip(d) where d.topic == topic:
                received += 1
                if !context.outChecked(render(d, json: context.json, raw: raw)) { return .ok }
            case let .failure(e):
                throw LocalNode.describe(e)
            default:
                continue
            }
        }
        return received > 0 ? .ok : .noReply
    }

    static func render(_ g: GossipDelivery, json: Bool, raw: Bool = false) -> String {
        let id = Hex.encode(g.id)
        let time = rfc3339(milliseconds: g.timestampMillis)
        // Announcements (guts/commits, guts/repositories) decoded into their fields.
        if !raw, [Topic.commits, Topic.repositories].contains(g.topic), let a = Announcement.decode(g.data) {
            let fields = announcementFields(a)
            if json {
                var object: [(String, JSONValue)] = [("topic", .string(g.topic)), ("origin", .string(g.origin)), ("id", .string(id)),
                                                     ("time", .string(time)), ("timestamp_ms", .int(Int(clamping: g.timestampMillis))),
                                                     ("type", .string(a.typeName))]
                object += fields.map { ($0.0, .string($0.1)) }
                return JSONValue.object(object).rendered
            }
            // Repository names come from the peer: escaped.
            let text = fields.map { "\($0.0)=\(Escape.text($0.1))" }.joined(separator: " ")
            return "\(g.origin) \(id) \(time) \(a.typeName) \(text)"
        }
        let text = decodeUTF8(g.data)
        if json {
            return JSON.object([
                "topic": .string(g.topic), "origin": .string(g.origin), "id": .string(id),
                "time": .string(time), "timestamp_ms": .int(Int(clamping: g.timestampMillis)),
                "encoding": .string(text == nil ? "base64" : "utf8"),
                "payload": .string(text ?? Base64.encode(g.data)),
            ])
        }
        // One line whatever the payload: printable text as is, the rest escaped.
        return "\(g.origin) \(id) \(time) \(Escape.bytes(g.data))"
    }

    /// The fields of an announcement, in the order they are printed.
    static func announcementFields(_ a: Announcement) -> [(String, String)] {
        switch a {
        case let .newRepository(n): return [("repository", n.repository)]
        case let .refsChanged(r): return [("repository", r.repository), ("refs_hash", Hex.encode(r.refsHash))]
        case let .signedRefs(u):
            return [("repository_id", u.repository.description), ("delegate", u.delegate.description),
                    ("sequence", String(u.sequence)), ("signed_refs", u.signedRefs.description)]
        }
    }

    static func rfc3339(milliseconds ms: UInt64) -> String {
        var t = time_t(ms / 1000)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }
}
