import GutsAddress
import GutsControl
import GutsDHT
import GutsIdentity
import GutsNode
import GutsSupport
import GutsTransport
import NIOPosix

/// DHT lookups for commands: through the running node's control socket, or, with no node
/// running, through a one-shot client that joins via the config's bootstrap peers.
enum DHTLookup {
    static let bootstrapOption = OptionSpec("bootstrap", value: "[PEERID@]ADDR", repeatable: true,
                                            help: "without a running node, join the DHT through this peer (repeatable; adds to config)")
    /// Seconds a lookup may take in all.
    static let timeout = 30.0

    /// Looks `key` (a peer ID or repository ID as text) up.
    static func find(_ key: String, _ context: Context, _ args: ParsedArguments) throws -> FindResult {
        let client: ControlClient?
        do {
            client = try ControlClient.connect(directory: context.homePath, timeout: LocalNode.timeout)
        } catch .notRunning {
            client = nil
            context.debug("no node is running for \(context.homePath); looking up through the bootstrap peers")
        } catch {
            throw LocalNode.describe(error, context)
        }
        if let client {
            defer { client.close() }
            context.debug("asking the running node to look up \(key)")
            let response: ControlResponse
            do { response = try client.call(.find(key: key), timeout: timeout + 5) } catch { throw LocalNode.describe(error, context) }
            switch response {
            case let .found(r): return r
            case let .failure(e) where e.code == .unavailable:
                context.debug("the node cannot look up: \(e.message); looking up directly")
            case let .failure(e): throw LocalNode.describe(e)
            default: throw CommandError(.protocolError, "the node answered find with something else")
            }
        }
        return try oneShot(key, context, args)
    }

    static func oneShot(_ key: String, _ context: Context, _ args: ParsedArguments) throws -> FindResult {
        guard let query = DHTService.query(key) else { throw UsageError("'\(key)' is neither a peer ID nor a repository ID") }
        var config = try NodeConfig.load(home: context.homePath)
        config.bootstrap += args.all("bootstrap")
        try Network.applyNetworkOption(args, to: &config)
        guard !config.bootstrap.isEmpty else {
            throw CommandError(.io, "no node is running for \(context.homePath) and no bootstrap peer is configured: start one with 'guts listen', or give --bootstrap ADDR (config bootstrap)")
        }
        let endpoints = try config.bootstrap.map { try Network.parseEndpoint($0) }
        let identity = try Network.clientIdentity(context, args)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let log = NodeLog(info: { context.log($0) }, debug: { context.debug($0) })
        let client = DHTClient(session: Network.sessionConfig(identity: identity, config: config), group: group,
                               connectTimeout: config.connectTimeout, log: log)
        defer { client.close() }
        let reached = (try? client.join(endpoints).wait()) ?? 0
        guard reached > 0 else {
            throw CommandError(.unreachable, "cannot reach any bootstrap peer (\(config.bootstrap.joined(separator: ", ")))")
        }
        let result: LookupResult
        do { result = try client.find(query, timeout: timeout).wait() } catch {
            throw CommandError(.timeout, "the lookup of \(key) took longer than \(Int(timeout)) s")
        }
        return DHTService.findResult(result, key: key, local: [])
    }

    /// Dialable `PEERID@ADDR` endpoints of a peer (its record's addresses) or of a
    /// repository's providers (best score first when `score` is given).
    static func endpoints(_ r: FindResult, score: (String) -> Double = { _ in 0 }) -> [Endpoint] {
        if r.kind == "peer" {
            guard let peer = PeerID(r.key) else { return [] }
            return DHTService.endpoints(r.addresses.compactMap { DHTAddress($0) }, peer: peer)
        }
        let ordered = r.providers.enumerated().sorted { a, b in
            let sa = score(a.element.peerID), sb = score(b.element.peerID)
            return sa != sb ? sa > sb : a.offset < b.offset
        }.map(\.element)
        return ordered.flatMap { p in
            PeerID(p.peerID).map { id in DHTService.endpoints(p.addresses.compactMap { DHTAddress($0) }, peer: id) } ?? []
        }
    }

    /// A command's address argument: `[PEERID@]HOST[:PORT]`, or a bare peer ID resolved
    /// through the DHT (its peer record's first address).
    static func resolve(_ text: String, _ context: Context, _ args: ParsedArguments) throws -> Endpoint {
        guard let peer = PeerID(text) else { return try Network.parseEndpoint(text) }
        let r = try find(peer.description, context, args)
        guard let first = endpoints(r).first else {
            throw CommandError(.unreachable, "no address of \(peer) found in the DHT (\(r.messages) requests)")
        }
        context.debug("\(peer) is at \(first) (from the DHT; QUIC: \(first.quicPort.map { "port \($0)" } ?? "none"))")
        return first
    }

    /// A command's peer argument through the resolver (aliases, known_peers); a bare peer
    /// ID is first looked up in the DHT, and its record's QUIC address (or its lack of one)
    /// is kept for the dial.
    static func resolveTarget(_ text: String, _ peers: PeerResolver, _ context: Context, _ args: ParsedArguments) throws -> PeerTarget {
        guard PeerID(text) != nil else { return try peers.resolve(text) }
        let e = try resolve(text, context, args)
        var target = try peers.resolve("\(text)@\(e.transport.map { $0.rawValue + "/" } ?? "")\(e.address)")
        target.endpoint.quic = e.quic
        return target
    }
}

/// `guts find`: a peer's addresses or a repository's providers, from the DHT.
enum FindCommand: Command {
    static let name = "find"
    static let summary = "look a peer or a repository up in the DHT: a peer's addresses, a repository's providers"
    static let synopsis = "find [--bootstrap [PEERID@]ADDR ...] [--json] PEERID|REPO-ID"
    static let options = [DHTLookup.bootstrapOption, Network.ephemeralOption,
                          OptionSpec("network", value: "ID", help: "network ID for a lookup without a running node (default: config)")]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count == 1 else { throw UsageError("find needs exactly one peer ID or repository ID") }
        let key = args.positionals[0]
        guard DHTService.query(key) != nil else {
            throw UsageError("'\(key)' is neither a peer ID (gt...) nor a repository ID (gr...)")
        }
        let r = try DHTLookup.find(key, context, args)
        if context.json {
            context.out(JSONValue.object(ControlCodec.json(r)).rendered)
        } else if r.kind == "peer" {
            for a in r.addresses { context.out("\(r.key)@\(a)") }
        } else {
            for p in r.providers {
                for a in p.addresses { context.out("\(p.peerID)@\(a)") }
            }
        }
        guard r.found else {
            context.log(r.kind == "peer" ? "no peer record of \(key) found (\(r.messages) requests)"
                                         : "no provider of \(key) found (\(r.messages) requests)")
            return .noReply
        }
        context.debug("lookup: \(r.hops) hops, \(r.messages) requests, \(Int(r.seconds * 1000)) ms")
        return .ok
    }
}
