import GutsIdentity
import GutsSupport
import GutsSync
import GutsTransport
import GutsTrust
import GutsWire
import NIOPosix

/// `guts ls`: the repositories a peer serves to this node, or the refs of one of them
/// (as `git ls-remote` prints them).
enum LsCommand: Command {
    static let name = "ls"
    static let summary = "list the repositories a peer serves to you, or the refs of one (like git ls-remote)"
    static let synopsis = "ls [--timeout SECONDS] [--network ID] [--ephemeral] [--known-peers MODE] [--json] [PEERID@]ADDR|ALIAS [REPO]"
    static let options = [
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "connect, handshake and per-answer limit (default 30)"),
        OptionSpec("network", value: "ID", help: "network ID to connect within (default: network from config, empty)"),
        Network.ephemeralOption,
        PeerResolver.option,
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard (1...2).contains(args.positionals.count) else {
            throw UsageError("ls needs a peer ([PEERID@]ADDR or an alias) and, for its refs, a repository (NAME, OWNER/NAME or ID)")
        }
        let repository = args.positionals.count == 2 ? args.positionals[1] : nil
        if let repository, RepositoryRef(repository) == nil {
            throw UsageError("invalid repository name '\(repository)': use NAME or OWNER/NAME with letters, digits, '.', '_' and '-', or a repository ID")
        }
        let timeout = try args.seconds("timeout", in: 0.1...3600) ?? SyncCommand.defaultTimeout
        var config = try NodeConfig.load(home: context.homePath)
        config.connectTimeout = timeout
        config.handshakeTimeout = timeout
        try Network.applyNetworkOption(args, to: &config)
        let peers = try PeerResolver(args, config: config, context: context)
        let target = try peers.resolve(args.positionals[0])
        let identity = try Network.clientIdentity(context, args)
        let session = Network.sessionConfig(identity: identity, config: config, protocols: MessageRegistry([SyncProtocol()]))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let connection = try peers.dial(target, config: session, group: group, connectTimeout: timeout, context)
        defer {
            connection.close(.shutdown, "ls finished")
            _ = try? connection.closeFuture.wait()
        }
        let who = "peer \(connection.peer.map { "\($0.peerID)@" } ?? "")\(connection.remoteAddress)"
        do {
            if let repository {
                print(try RepositoryListing.refs(of: repository, over: connection, timeout: timeout), context)
            } else {
                print(try RepositoryListing.list(over: connection, timeout: timeout), context)
            }
        } catch {
            throw SyncCommand.describe(error, peer: who)
        }
        return .ok
    }

    /// One line per repository: name, repository ID, HEAD's object and HEAD's target
    /// ("-" for what it lacks), and whether it is restricted; tab-separated.
    static func print(_ list: [RepositoryEntry], _ context: Context) {
        for e in list {
            let id = e.id.flatMap { RepositoryID(bytes: $0) }
            let line: String
            if context.json {
                line = JSON.object([
                    "name": .string(e.name),
                    "id": id.map { .string($0.description) } ?? .null,
                    "head": e.head.isEmpty ? .null : .string(e.head),
                    "head_oid": e.headID.map { .string($0.description) } ?? .null,
                    "restricted": .bool(e.restricted),
                ])
            } else {
                line = [e.name, id?.description ?? "-", e.headID?.description ?? "-", e.head.isEmpty ? "-" : e.head,
                        e.restricted ? "restricted" : "public"].joined(separator: "\t")
            }
            if !context.outChecked(line) { return }
        }
        if list.isEmpty { context.log("the peer serves no repository you may read") }
    }

    /// `<oid>\tHEAD` (when HEAD names a listed ref), then `<oid>\t<ref>` for every ref.
    static func print(_ refs: Refs, _ context: Context) {
        var lines: [(String, String)] = []
        if !refs.head.isEmpty, let head = refs.refs.first(where: { $0.name == refs.head }) {
            lines.append((head.id.description, "HEAD"))
        }
        lines += refs.refs.map { ($0.id.description, $0.name) }
        for (oid, name) in lines {
            let line: String
            if context.json {
                var fields: [(String, JSONValue)] = [("oid", .string(oid)), ("ref", .string(name))]
                if name == "HEAD" { fields.append(("target", .string(refs.head))) }
                line = JSONValue.object(fields).rendered
            } else {
                line = "\(oid)\t\(name)"
            }
            if !context.outChecked(line) { return }
        }
    }
}
