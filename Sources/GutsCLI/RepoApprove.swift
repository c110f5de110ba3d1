import GutsIdentity
import GutsSupport
import GutsTrust

/// `guts repo approve FILE [REPO]`: add this node's signature to a proposed identity
/// version and publish it once a threshold of the current delegates has signed.
enum RepoApproveCommand: Command {
    static let name = "repo approve"
    static let summary = "sign a proposed identity version (from 'repo delegates add|remove --proposal') and publish it at the threshold"
    static let synopsis = "repo approve [--no-publish] [--json] FILE [NAME|ID|PATH]"
    static let options = [
        OptionSpec("no-publish", help: "only add this node's signature to FILE, even when the threshold is met"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard (1...2).contains(args.positionals.count) else { throw UsageError("repo approve needs a proposal file and at most one repository") }
        let path = args.positionals[0]
        let bytes: [UInt8]
        do { bytes = try Files.read(path, limit: IdentityProposal.maxBytes + 1) } catch {
            throw CommandError(.io, "cannot read \(path): \(error)")
        }
        var proposal: IdentityProposal
        do { proposal = try IdentityProposal.parse(bytes) } catch let e as TrustError {
            throw CommandError(.integrity, "\(path): \(e)")
        }
        let identity = try loadIdentity(context)
        let location = try RepoSupport.locate(args.positionals.count == 2 ? args.positionals[1] : proposal.repository.description,
                                              home: context.homePath)
        let repo = try RepoSupport.open(location.path)
        let chain = try RepoSupport.identity(repo)
        do { try proposal.check(against: chain) } catch let e as TrustError {
            switch e.kind {
            case .chain, .mismatch: throw CommandError(.refused, "\(path): \(e)")
            default: throw CommandError(.integrity, "\(path): \(e)")
            }
        }
        let me = identity.peerID
        let current = chain.current
        guard current.delegates.contains(me) else {
            throw CommandError(.refused, "this node (\(me)) is not a delegate of version \(current.version) of \(chain.id); only its delegates can approve")
        }
        let added = proposal.signatures.entries[me] == nil
        if added {
            proposal.signatures.entries[me] = identity.keyPair.sign(proposal.document.signingMessage)
            try RepoSupport.writeProposal(proposal, to: path)
        }
        let signers = proposal.validSigners(chain)
        let publish = signers.count >= current.threshold && !args.has("no-publish")
        var next: IdentityChain?
        if publish {
            next = try RepoSupport.publish(repo, chain: chain, document: proposal.document, signatures: proposal.signatures,
                                           identity: identity, context)
        }
        let doc = proposal.document
        let addedDelegates = doc.delegates.filter { !current.delegates.contains($0) }
        let removedDelegates = current.delegates.filter { !doc.delegates.contains($0) }
        if context.json {
            context.out(JSON.object([
                "id": .string(chain.id.description),
                "version": .int(Int(doc.version)),
                "signed": .bool(added),
                "signatures": .int(signers.count),
                "threshold": .int(current.threshold),
                "published": .bool(next != nil),
                "delegates_added": .array(addedDelegates.map { .string($0.description) }),
                "delegates_removed": .array(removedDelegates.map { .string($0.description) }),
                "next_threshold": .int(doc.threshold),
            ]))
        } else {
            context.out("proposal     version \(doc.version) of \(chain.id)")
            for d in addedDelegates { context.out("adds         \(d)") }
            for d in removedDelegates { context.out("removes      \(d)") }
            if doc.threshold != current.threshold { context.out("threshold    \(current.threshold) -> \(doc.threshold)") }
            if doc.name != current.name { context.out("name         \(current.name) -> \(doc.name)") }
            if doc.defaultBranch != current.defaultBranch { context.out("branch       \(current.defaultBranch) -> \(doc.defaultBranch)") }
            context.out("signatures   \(signers.count) of \(current.threshold)" + (added ? " (with this node's)" : " (this node had signed)"))
            context.out(next != nil ? "published    version \(doc.version)" : "published    no")
        }
        if next == nil { RepoSupport.reportProposal(proposal, chain: chain, path: path, context) }
        return .ok
    }
}
