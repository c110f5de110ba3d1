import GutsIdentity
import GutsTrust

/// `guts repo delegates remove REPO PEERID`: publish a new identity version without a delegate.
enum RepoDelegatesRemoveCommand: Command {
    static let name = "repo delegates remove"
    static let summary = "remove a delegate from a repository's identity (a new version, or a proposal when several delegates must sign)"
    static let synopsis = "repo delegates remove [--threshold N] [--proposal FILE] NAME|ID|PATH PEERID"
    static let options = [
        OptionSpec("threshold", short: "t", value: "N", help: "signatures the next versions need (default: unchanged, at most the delegates left)"),
        OptionSpec("proposal", short: "p", value: "FILE", help: "write a proposal signed by this node to FILE instead of publishing (needed when the threshold is above 1)"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count == 2 else { throw UsageError("repo delegates remove needs a repository and a peer ID") }
        guard let peer = PeerID(args.positionals[1]) else { throw UsageError("'\(args.positionals[1])' is not a peer ID: \(PeerID.problem(args.positionals[1]) ?? "invalid")") }
        let threshold = try args.int("threshold", in: 1...TrustLimits.maxDelegates)
        let identity = try loadIdentity(context)
        let location = try RepoSupport.locate(args.positionals[0], home: context.homePath)
        let repo = try RepoSupport.open(location.path)
        let chain = try RepoSupport.identity(repo)
        guard chain.current.delegates.contains(peer) else {
            context.error("\(peer) is not a delegate of \(chain.id)")
            return .noReply
        }
        guard chain.current.delegates.count > 1 else {
            throw CommandError(.refused, "\(peer) is the only delegate of \(chain.id); a repository needs at least one")
        }
        let doc = TrustStore.nextVersion(of: chain) { d in
            d.delegates.removeAll { $0 == peer }
            d.threshold = threshold ?? min(d.threshold, d.delegates.count)
        }
        guard let next = try RepoSupport.publishOrPropose(repo, chain: chain, document: doc, identity: identity,
                                                          proposal: args.value("proposal"), context) else { return .ok }
        context.log("published version \(next.current.version) of \(next.id): \(next.current.delegates.count) delegates, threshold \(next.current.threshold)")
        try RepoSupport.describe(next, repo: repo, location: location, me: identity.peerID, context)
        return .ok
    }
}
