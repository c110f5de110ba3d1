import GutsGit
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust

/// `guts repo init [NAME|PATH]`: give a repository an identity with this node as its
/// sole delegate (threshold 1), and sign its refs.
enum RepoInitCommand: Command {
    static let name = "repo init"
    static let summary = "give a repository an identity with this node as its delegate, and sign its refs"
    static let synopsis = "repo init [--name NAME] [--description TEXT] [--default-branch BRANCH] [NAME|PATH]"
    static let options = [
        OptionSpec("name", value: "NAME", help: "the name in the identity document (default: the repository's name)"),
        OptionSpec("description", value: "TEXT", help: "a one-line description (default empty)"),
        OptionSpec("default-branch", value: "BRANCH", help: "the default branch (default: HEAD's branch, else main)"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count <= 1 else { throw UsageError("repo init takes at most one repository") }
        let home = try context.home()
        let identity = try loadIdentity(context)
        let location = try RepoSupport.locate(args.positionals.first ?? ".", home: home, mustExist: false)
        var created = false
        if !Files.exists(location.path) {
            // A new repository under <home>/repos, ready to be pushed to.
            do {
                try Files.makeDirectories(Files.directoryName(location.path))
                try Repository.create(bare: location.path, initialBranch: args.value("default-branch") ?? "main")
            } catch {
                throw CommandError(.io, "cannot create \(location.path): \(error)")
            }
            created = true
        }
        let repo = try RepoSupport.open(location.path)
        let me = identity.peerID

        let existing: IdentityChain?
        do { existing = try TrustStore.identity(of: repo) } catch let e as TrustError {
            throw CommandError(.integrity, "\(repo.gitDirectory) has an identity that does not verify: \(e)")
        }
        if let chain = existing {
            guard chain.current.delegates.contains(me), RepoSupport.isMirror(repo) else {
                context.error("\(repo.gitDirectory) already has the identity \(chain.id)")
                context.out(chain.id.description)
                return .noReply
            }
            // A mirror of a repository this node is a delegate of becomes its working copy.
            Files.remove(repo.gitDirectory + "/" + SyncClient.mirrorMarker)
            let signed = try sign(repo, chain, identity)
            context.log("\(repo.gitDirectory) is now this node's working copy of \(chain.id)\(signed.map { "; signed \($0.refs) refs, sequence \($0.sequence)" } ?? "")")
            emit(chain, repo: repo, context)
            return .ok
        }
        guard !RepoSupport.isMirror(repo) else {
            throw CommandError(.refused, "\(repo.gitDirectory) is a mirror kept by guts sync; identities are created by a repository's own delegates, not by mirrors")
        }
        let docName = args.value("name") ?? location.name?.value ?? defaultName(repo.gitDirectory)
        var branch = args.value("default-branch") ?? "main"
        if args.value("default-branch") == nil, case let .symbolic(target, _)? = try? repo.head(), target.hasPrefix("refs/heads/") {
            branch = String(target.dropFirst("refs/heads/".count))
        }
        let doc = IdentityDocument(name: docName, description: args.value("description") ?? "", defaultBranch: branch,
                                   threshold: 1, delegates: [me])
        do { try doc.validate() } catch let e as TrustError { throw UsageError(e.message) }
        let chain: IdentityChain
        do {
            chain = try TrustStore.create(repo, document: doc, key: identity.keyPair)
        } catch let e as TrustError {
            throw CommandError(.io, "cannot create the identity: \(e)")
        }
        let signed = try sign(repo, chain, identity)
        context.log("\(created ? "created" : "initialized") \(repo.gitDirectory) as \(chain.id)\(signed.map { "; signed \($0.refs) refs" } ?? "")")
        emit(chain, repo: repo, context)
        return .ok
    }

    static func sign(_ repo: Repository, _ chain: IdentityChain, _ identity: Identity) throws -> RefSigner.Signed? {
        do {
            return try RefSigner.signIfChanged(repo, identity: chain, key: identity.keyPair)
        } catch let e as TrustError {
            throw CommandError(.io, "cannot sign the refs: \(e)")
        }
    }

    /// `.../owner/name.git` -> `name`.
    static func defaultName(_ path: String) -> String {
        var base = Files.baseName(path == "." ? "repository" : path)
        if base == ".git" { base = Files.baseName(Files.directoryName(path)) }
        if base.hasSuffix(".git") { base = String(base.dropLast(4)) }
        return base
    }

    static func emit(_ chain: IdentityChain, repo: Repository, _ context: Context) {
        if context.json {
            context.out(JSON.object([
                "id": .string(chain.id.description), "path": .string(repo.gitDirectory), "name": .string(chain.current.name),
                "version": .int(Int(chain.current.version)), "threshold": .int(chain.current.threshold),
                "delegates": .array(chain.current.delegates.map { .string($0.description) }),
            ]))
        } else {
            context.out(chain.id.description)
        }
    }
}
