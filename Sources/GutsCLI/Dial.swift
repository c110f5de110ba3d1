import GutsAddress
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOPosix

/// `guts dial`: connect, handshake, exchange Hello, print who answered.
enum DialCommand: Command {
    static let name = "dial"
    static let summary = "connect to a node, authenticate it and show its identity"
    static let synopsis = "dial [--timeout SECONDS] [--network ID] [--ephemeral] [--known-peers MODE] [--transport tcp|quic] [PEERID@]ADDR|ALIAS|PEERID"
    static let options = [
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "limit for the TCP connect and, separately, for the handshake (default: connect-timeout and handshake-timeout from config, 10 each)"),
        OptionSpec("network", value: "ID", help: "network ID to connect within (default: network from config, empty)"),
        Network.ephemeralOption,
        PeerResolver.option,
        PeerResolver.transportOption,
        DHTLookup.bootstrapOption,
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count == 1 else { throw UsageError("dial needs exactly one address: [PEERID@]HOST[:PORT], an alias, or a PEERID to look up in the DHT") }
        var config = try NodeConfig.load(home: context.homePath)
        let peers = try PeerResolver(args, config: config, context: context)
        let target = try DHTLookup.resolveTarget(args.positionals[0], peers, context, args)
        if let t = try args.seconds("timeout", in: 0.1...3600) {
            config.connectTimeout = t
            config.handshakeTimeout = t
        }
        try Network.applyNetworkOption(args, to: &config)
        let identity = try Network.clientIdentity(context, args)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let connection = try peers.dial(target, config: Network.sessionConfig(identity: identity, config: config),
                                        group: group, connectTimeout: config.connectTimeout, context)
        guard let peer = connection.peer else { throw CommandError(.protocolError, "session not established") }
        connection.close(.shutdown, "dial finished")
        _ = try? connection.closeFuture.wait()
        if context.json {
            context.out(JSON.object([
                "peer_id": .string(peer.peerID.description),
                "address": .string(connection.remoteAddress),
                "transport": .string(connection.transportName),
                "protocol_version": .int(Int(peer.version)),
                "capabilities": .array(peer.capabilities.map { .string($0) }),
                "agent": .string(peer.agent),
                "handshake_ms": .double(peer.handshakeSeconds * 1000),
                "verified": .bool(target.endpoint.peer != nil),
                "known": .bool(target.known != nil),
            ]))
        } else {
            let verified = target.known != nil ? " (verified: known_peers)" : (target.named != nil ? " (verified)" : "")
            context.out("peer         \(peer.peerID)" + verified)
            context.out("address      \(connection.remoteAddress)")
            context.out("transport    \(connection.transportName)")
            context.out("protocol     \(peer.version)")
            // The agent and capabilities are the peer's words: escaped as printed.
            context.out("agent        \(Escape.text(peer.agent))")
            context.out("capabilities \(peer.capabilities.isEmpty ? "-" : Escape.text(peer.capabilities.joined(separator: " ")))")
            context.out("handshake    \(Network.ms(peer.handshakeSeconds)) ms")
        }
        return .ok
    }
}
