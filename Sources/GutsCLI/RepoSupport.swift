import GutsGit
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust

/// What the `repo` commands share: finding a repository from NAME, ID or PATH, and
/// describing its identity and signed refs.
enum RepoSupport {
    struct Located {
        var path: String
        /// The local name, when it lies in `<home>/repos`.
        var name: RepositoryName?
    }

    /// A path when it exists; a repository ID among `<home>/repos`; else a name in `<home>/repos`.
    static func locate(_ argument: String, home: String, mustExist: Bool = true) throws -> Located {
        if argument.isEmpty { throw UsageError("empty repository argument") }
        if Files.exists(argument) { return Located(path: argument, name: nil) }
        let root = home + "/repos"
        if let id = RepositoryID(argument) {
            guard let hit = RepositoryIDIndex().locate(id, in: RepositoryCatalog(roots: [root])) else {
                throw CommandError(.io, "no repository with ID \(id) in \(root)")
            }
            return Located(path: hit.path, name: hit.name)
        }
        guard let name = RepositoryName(argument) else {
            throw UsageError("'\(argument)' is neither an existing path, a repository ID nor a repository name (NAME or OWNER/NAME)")
        }
        let path = name.path(in: root)
        if mustExist && !Files.isDirectory(path) { throw CommandError(.io, "no repository '\(name)' (looked for \(path))") }
        return Located(path: path, name: name)
    }

    static func open(_ path: String) throws -> Repository {
        do { return try Repository.open(path) } catch { throw CommandError(.io, "\(error)") }
    }

    /// The verified identity, or an error saying why there is none.
    static func identity(_ repo: Repository) throws -> IdentityChain {
        do {
            guard let chain = try TrustStore.identity(of: repo) else {
                throw CommandError(.noReply, "\(repo.gitDirectory) has no identity (it is unsigned; 'guts repo init' creates one)")
            }
            return chain
        } catch let e as TrustError {
            throw CommandError(.integrity, "\(repo.gitDirectory): identity does not verify: \(e)")
        }
    }

    static func isMirror(_ repo: Repository) -> Bool { Files.exists(repo.gitDirectory + "/" + SyncClient.mirrorMarker) }

    /// A new document version: published at once when this node's signature meets the
    /// current threshold and no proposal file was asked for; otherwise written, signed by
    /// this node, to `proposal` for the other delegates to approve (`guts repo approve`).
    /// Returns the chain after publishing, or nil when a proposal was written.
    static func publishOrPropose(_ repo: Repository, chain: IdentityChain, document: IdentityDocument, identity: Identity,
                                 proposal path: String?, _ context: Context) throws -> IdentityChain? {
        let me = identity.peerID
        guard chain.current.delegates.contains(me) else {
            throw CommandError(.refused, "this node (\(me)) is not a delegate of \(chain.id); only its delegates can change it")
        }
        do { try document.validate() } catch let e as TrustError { throw UsageError(e.message) }
        let sigs = DocumentSignatures([me: identity.keyPair.sign(document.signingMessage)])
        guard let path else {
            guard chain.current.threshold <= 1 else {
                throw CommandError(.refused, "version \(chain.current.version) of \(chain.id) needs signatures from \(chain.current.threshold) delegates; write a proposal with --proposal FILE, have the other delegates run 'guts repo approve FILE', and publish it when enough have signed")
            }
            return try publish(repo, chain: chain, document: document, signatures: sigs, identity: identity, context)
        }
        let proposal = IdentityProposal(repository: chain.id, document: document, signatures: sigs)
        try writeProposal(proposal, to: path)
        reportProposal(proposal, chain: chain, path: path, context)
        return nil
    }

    static func writeProposal(_ proposal: IdentityProposal, to path: String) throws {
        do { try Files.writeAtomically(path, proposal.serialized()) } catch {
            throw CommandError(.io, "cannot write the proposal to \(path): \(error)")
        }
    }

    static func reportProposal(_ proposal: IdentityProposal, chain: IdentityChain, path: String, _ context: Context) {
        let have = proposal.validSigners(chain).count
        let need = chain.current.threshold
        if have >= need {
            context.log("proposal \(path) for version \(proposal.document.version) of \(chain.id) has \(have) of \(need) signatures; 'guts repo approve \(path)' publishes it")
        } else {
            context.log("proposal \(path) for version \(proposal.document.version) of \(chain.id) has \(have) of \(need) signatures; each other delegate runs 'guts repo approve \(path)'")
        }
    }

    /// Appends `document` with `signatures` (which must meet the current threshold), then
    /// signs the refs again so the change is announced.
    static func publish(_ repo: Repository, chain: IdentityChain, document: IdentityDocument, signatures sigs: DocumentSignatures,
                        identity: Identity, _ context: Context) throws -> IdentityChain {
        let me = identity.peerID
        let signers = sigs.validSigners(of: document, among: chain.current.delegates)
        guard signers.count >= chain.current.threshold else {
            throw CommandError(.refused, "version \(document.version) has \(signers.count) of the \(chain.current.threshold) signatures version \(chain.current.version) requires")
        }
        let next: IdentityChain
        do {
            next = try TrustStore.append(repo, to: chain, document: document, signatures: sigs, key: identity.keyPair)
        } catch let e as TrustError {
            throw CommandError(e.kind == .io ? .io : .integrity, "cannot publish version \(document.version): \(e)")
        }
        if next.current.delegates.contains(me), !isMirror(repo) {
            do {
                try RefSigner.signIfChanged(repo, identity: next, key: identity.keyPair, force: true)
            } catch {
                context.error("published version \(document.version), but cannot sign the refs again: \(error)")
            }
        }
        return next
    }

    static func describe(_ chain: IdentityChain, repo: Repository, location: Located, me: PeerID?, _ context: Context) throws {
        var problems: [String] = []
        let states: [PeerID: DelegateState]
        do {
            states = try TrustStore.installedStates(repo, identity: chain) { peer, e in problems.append("\(peer): \(e)") }
        } catch let e as TrustError {
            throw CommandError(.io, e.message)
        }
        let doc = chain.current
        let name = location.name?.value ?? repo.gitDirectory
        if context.json {
            let delegates: [JSONValue] = doc.delegates.map { d in
                let s = states[d]
                return .object([
                    ("peer_id", .string(d.description)),
                    ("this_node", .bool(d == me)),
                    ("sequence", s.map { .int(Int($0.sequence)) } ?? .null),
                    ("time", s.map { .int(Int($0.refs.time)) } ?? .null),
                    ("refs", s.map { .int($0.refs.refs.count) } ?? .null),
                    ("signed_refs", s.map { .string($0.commit.hex) } ?? .null),
                ])
            }
            context.out(JSON.object([
                "repository": .string(name),
                "path": .string(repo.gitDirectory),
                "id": .string(chain.id.description),
                "name": .string(doc.name),
                "description": .string(doc.description),
                "default_branch": .string(doc.defaultBranch),
                "version": .int(Int(doc.version)),
                "threshold": .int(doc.threshold),
                "delegates": .array(delegates),
                "mirror": .bool(isMirror(repo)),
                "problems": .array(problems.map { .string($0) }),
            ]))
            return
        }
        var rows: [(String, String)] = [
            ("repository", name), ("id", chain.id.description), ("name", doc.name),
            ("description", doc.description.isEmpty ? "-" : Escape.text(doc.description)),
            ("default branch", doc.defaultBranch), ("version", "\(doc.version)"),
            ("threshold", "\(doc.threshold) of \(doc.delegates.count)"),
        ]
        for d in doc.delegates {
            let mine = d == me ? " (this node)" : ""
            if let s = states[d] {
                rows.append(("delegate", "\(d)\(mine)  sequence \(s.sequence), \(s.refs.refs.count) refs, signed at \(s.refs.time)"))
            } else {
                rows.append(("delegate", "\(d)\(mine)  no signed refs here"))
            }
        }
        let width = (rows.map(\.0.count).max() ?? 0) + 2
        for (k, v) in rows { context.out(k.padded(to: width) + v) }
        for p in problems { context.error("signed refs of \(p)") }
    }
}
