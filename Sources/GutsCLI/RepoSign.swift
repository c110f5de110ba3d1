import GutsIdentity
import GutsSupport
import GutsTrust

/// `guts repo sign [REPO]`: sign this node's refs now (a running node does it on its own).
enum RepoSignCommand: Command {
    static let name = "repo sign"
    static let summary = "sign this node's refs of a repository it is a delegate of, now (a running node does it on every change)"
    static let synopsis = "repo sign [--json] [NAME|ID|PATH]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count <= 1 else { throw UsageError("repo sign takes at most one repository") }
        let identity = try loadIdentity(context)
        let location = try RepoSupport.locate(args.positionals.first ?? ".", home: context.homePath)
        let repo = try RepoSupport.open(location.path)
        let chain = try RepoSupport.identity(repo)
        guard chain.current.delegates.contains(identity.peerID) else {
            throw CommandError(.refused, "this node (\(identity.peerID)) is not a delegate of \(chain.id)")
        }
        guard !RepoSupport.isMirror(repo) else {
            throw CommandError(.refused, "\(repo.gitDirectory) is a mirror; make it this node's working copy first with 'guts repo init'")
        }
        let signed: RefSigner.Signed?
        do {
            signed = try RefSigner.signIfChanged(repo, identity: chain, key: identity.keyPair)
        } catch let e as TrustError {
            throw CommandError(.io, "cannot sign: \(e)")
        }
        let states = (try? TrustStore.installedStates(repo, identity: chain)) ?? [:]
        let sequence = signed?.sequence ?? states[identity.peerID]?.sequence ?? 0
        if context.json {
            context.out(JSON.object(["id": .string(chain.id.description), "signed": .bool(signed != nil), "sequence": .int(Int(sequence)),
                                     "refs": .int(signed?.refs ?? states[identity.peerID]?.refs.refs.count ?? 0)]))
        } else if let signed {
            context.out("signed \(signed.refs) refs of \(chain.id), sequence \(signed.sequence)")
        } else {
            context.out("nothing to sign: the refs of \(chain.id) are as signed at sequence \(sequence)")
        }
        return signed == nil ? .noReply : .ok
    }
}
