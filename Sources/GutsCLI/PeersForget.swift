import GutsIdentity
import GutsNode
import GutsPolicy
import GutsSupport

/// `guts peers forget`: remove known_peers entries, so the next connection to the address
/// records the identity it finds (guts-known-peers(5)).
enum PeersForgetCommand: Command {
    static let name = "peers forget"
    static let summary = "remove addresses (or every address of a peer ID) from known_peers"
    static let synopsis = "peers forget ADDR|ALIAS|PEERID ..."
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard !args.positionals.isEmpty else { throw UsageError("peers forget needs an address (HOST:PORT), an alias or a peer ID") }
        let config = try NodeConfig.load(home: context.homePath)
        var targets: [String] = []
        for text in args.positionals {
            if let alias = config.aliases[text] {
                targets.append(alias.address)
            } else if PeerID(text) != nil || KnownPeers.normalize(text) != nil {
                targets.append(text)
            } else {
                throw UsageError("'\(text.prefix(100))' is not an address (HOST:PORT), an alias or a peer ID")
            }
        }
        let path = KnownPeersFile.path(home: context.homePath)
        let removed: [KnownPeers.Entry]
        do { removed = try KnownPeersFile.forget(path, targets) } catch { throw CommandError(.io, error.description) }
        if context.json {
            for e in removed {
                context.out(JSON.object(["address": .string(e.address), "peer_id": .string(e.peer.description), "line": .int(e.line)]))
            }
        } else {
            for e in removed { context.out("forgot \(e.address) \(e.peer)") }
        }
        if removed.isEmpty {
            context.log("no entry for \(args.positionals.joined(separator: ", ")) in \(path)")
            return .noReply
        }
        return .ok
    }
}
