#if canImport(Glibc)
import Glibc
#endif
import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport

/// One verified version of the identity: the document, its hash, who signed it and the
/// commit that stores it.
public struct IdentityVersion: Sendable, Equatable {
    public let document: IdentityDocument
    public let hash: [UInt8]
    public let signatures: DocumentSignatures
    public let commit: ObjectID
}

/// A verified identity chain, root first (guts-identity(5), VERIFYING AN IDENTITY).
public struct IdentityChain: Sendable, Equatable {
    public let versions: [IdentityVersion]
    public var id: RepositoryID {
        // versions is never empty and hashes are 32 bytes, checked on load.
        guard let rid = RepositoryID(bytes: versions[0].hash) else { preconditionFailure("unreachable") }
        return rid
    }
    public var current: IdentityDocument { versions[versions.count - 1].document }
    public var tip: ObjectID { versions[versions.count - 1].commit }

    /// Whether `other` is this chain or a longer chain that starts with it.
    public func isPrefix(of other: IdentityChain) -> Bool {
        other.versions.count >= versions.count && zip(versions, other.versions).allSatisfy { $0.hash == $1.hash }
    }
}

/// A delegate's signed refs as installed in a repository, signature verified.
public struct DelegateState: Sendable, Equatable {
    public let refs: SignedRefs
    /// The commit at `refs/namespaces/<delegate>/refs/guts/sigrefs`.
    public let commit: ObjectID
    public var sequence: UInt64 { refs.sequence }

    public init(refs: SignedRefs, commit: ObjectID) {
        self.refs = refs
        self.commit = commit
    }
}

/// Reading and writing identity chains and signed refs as git objects.
public enum TrustStore {
    static let identityFile = "identity"
    static let signaturesFile = "signatures"
    static let signedRefsFile = "signed-refs"

    // MARK: Reading

    static func object(_ store: any ObjectStore, _ id: ObjectID, _ type: ObjectType, _ what: String) throws -> [UInt8] {
        let obj: GitObject?
        do { obj = try store.read(id) } catch { throw TrustError(.io, "cannot read \(what) \(id): \(error)") }
        guard let obj else { throw TrustError(.missing, "\(what) \(id) is missing") }
        guard obj.type == type else { throw TrustError(.malformed, "\(what) \(id) is a \(obj.type.name), not a \(type.name)") }
        return obj.body
    }

    /// The blobs of a commit's tree, which must hold exactly `names` as regular files.
    static func files(_ store: any ObjectStore, commit id: ObjectID, _ names: [String], _ what: String) throws -> (Commit, [[UInt8]]) {
        let commit: Commit
        do { commit = try Commit(parsing: try object(store, id, .commit, what)) } catch let e as TrustError { throw e } catch {
            throw TrustError(.malformed, "\(what) \(id): \(error)")
        }
        let tree: Tree
        do { tree = try Tree(parsing: try object(store, commit.tree, .tree, what + " tree")) } catch let e as TrustError { throw e } catch {
            throw TrustError(.malformed, "\(what) \(id): \(error)")
        }
        let entries = tree.entries.map { ($0.nameString, $0) }
        guard entries.map(\.0).sorted() == names.sorted(), tree.entries.allSatisfy({ $0.mode == 0o100644 }) else {
            throw TrustError(.malformed, "\(what) \(id): its tree must hold exactly \(names.joined(separator: ", ")) as files")
        }
        var blobs: [[UInt8]] = []
        for name in names {
            guard let entry = entries.first(where: { $0.0 == name })?.1 else { throw TrustError(.malformed, "\(what) \(id): no \(name)") }
            blobs.append(try object(store, entry.id, .blob, "\(what) \(name)"))
        }
        return (commit, blobs)
    }

    /// Loads and verifies the identity chain ending at `tip` (guts-identity(5)): version 1
    /// signed by a threshold of its own delegates, every later version numbered one more,
    /// naming the previous version's hash, stored in a child of the previous version's
    /// commit and signed by a threshold of the previous version's delegates.
    public static func loadChain(_ store: any ObjectStore, tip: ObjectID) throws -> IdentityChain {
        var raw: [(ObjectID, IdentityDocument, [UInt8], DocumentSignatures, [ObjectID])] = []
        var next: ObjectID? = tip
        while let id = next {
            guard raw.count < TrustLimits.maxVersions else {
                throw TrustError(.chain, "identity chain longer than \(TrustLimits.maxVersions) versions")
            }
            let (commit, blobs) = try files(store, commit: id, [identityFile, signaturesFile], "identity commit")
            let doc = try IdentityDocument.parse(blobs[0])
            let sigs = try DocumentSignatures.parse(blobs[1])
            guard commit.parents.count <= 1 else { throw TrustError(.chain, "identity commit \(id) has \(commit.parents.count) parents") }
            raw.append((id, doc, BLAKE2b.hash(blobs[0], outputLength: 32), sigs, commit.parents))
            next = commit.parents.first
        }
        raw.reverse()
        var versions: [IdentityVersion] = []
        for (i, (commit, doc, hash, sigs, _)) in raw.enumerated() {
            guard doc.version == UInt64(i + 1) else {
                throw TrustError(.chain, "identity commit \(commit) holds version \(doc.version) where version \(i + 1) belongs")
            }
            let signers: [PeerID]
            let threshold: Int
            if let prev = versions.last {
                guard doc.previous == prev.hash else {
                    throw TrustError(.chain, "identity version \(doc.version) does not name version \(i)'s hash as its previous version")
                }
                signers = prev.document.delegates
                threshold = prev.document.threshold
            } else {
                signers = doc.delegates
                threshold = doc.threshold
            }
            let valid = sigs.validSigners(of: doc, among: signers)
            if valid.count < threshold {
                let strangers = sigs.entries.keys.filter { !signers.contains($0) }
                if let s = strangers.first, valid.count + strangers.count >= threshold {
                    throw TrustError(.notDelegate, "identity version \(doc.version) is signed by \(s), who is not a delegate of version \(max(1, i))")
                }
                throw TrustError(.threshold, "identity version \(doc.version) has \(valid.count) valid delegate signature\(valid.count == 1 ? "" : "s"); it needs \(threshold)")
            }
            versions.append(IdentityVersion(document: doc, hash: hash, signatures: sigs, commit: commit))
        }
        return IdentityChain(versions: versions)
    }

    /// The repository's identity (nil when it has none). Throws when it has one that
    /// does not verify. `refs`: the repository's refs when already read.
    public static func identity(of repo: Repository, refs: [Ref]? = nil) throws -> IdentityChain? {
        let tip: ObjectID?
        if let refs {
            tip = refs.first(where: { $0.name == TrustLayout.identityRef && $0.symbolicTarget == nil })?.id
        } else {
            do { tip = try repo.resolveRef(TrustLayout.identityRef) } catch { throw TrustError(.io, "cannot read \(TrustLayout.identityRef): \(error)") }
        }
        guard let tip else { return nil }
        return try loadChain(repo, tip: tip)
    }

    /// Loads the signed refs stored in the commit `id` (format only; see `verify`).
    public static func loadSignedRefs(_ store: any ObjectStore, commit id: ObjectID) throws -> SignedRefs {
        let (_, blobs) = try files(store, commit: id, [signedRefsFile], "signed-refs commit")
        return try SignedRefs.parse(blobs[0])
    }

    /// Checks that signed refs belong here: this repository, the expected delegate, a
    /// delegate of the identity, and a valid signature.
    public static func verify(_ refs: SignedRefs, repository: RepositoryID, delegate: PeerID, identity: IdentityDocument,
                              cache: SignedRefsCache? = nil, commit: ObjectID? = nil) throws {
        guard refs.repository == repository else {
            throw TrustError(.mismatch, "signed refs of \(delegate.short) are for repository \(refs.repository), not \(repository)")
        }
        guard refs.delegate == delegate else {
            throw TrustError(.malformed, "signed refs under \(delegate.short)'s namespace name \(refs.delegate) as their delegate")
        }
        guard identity.delegates.contains(delegate) else {
            throw TrustError(.notDelegate, "\(delegate) is not a delegate of \(repository)")
        }
        if let cache, let commit, cache.get(commit) != nil { return }  // verified when it was cached
        guard refs.isSignatureValid else {
            throw TrustError(.badSignature, "signed refs of \(delegate.short) (sequence \(refs.sequence)) carry a signature that does not verify")
        }
        if let cache, let commit { cache.put(commit, refs) }
    }

    /// Every delegate state installed in `repo` whose signature verifies, for the
    /// identity's current delegates. States that fail to load or verify are left out and
    /// reported through `problem`.
    public static func installedStates(_ repo: Repository, identity: IdentityChain, refs known: [Ref]? = nil,
                                       cache: SignedRefsCache? = nil,
                                       problem: (PeerID, TrustError) -> Void = { _, _ in }) throws -> [PeerID: DelegateState] {
        let refs: [Ref]
        if let known {
            refs = known
        } else {
            do { refs = try repo.listRefs() } catch { throw TrustError(.io, "cannot read refs: \(error)") }
        }
        var out: [PeerID: DelegateState] = [:]
        for r in refs where r.symbolicTarget == nil {
            guard let delegate = TrustLayout.sigrefsDelegate(r.name), identity.current.delegates.contains(delegate) else { continue }
            do {
                let signed: SignedRefs
                if let hit = cache?.get(r.id) {
                    signed = hit
                } else {
                    signed = try loadSignedRefs(repo, commit: r.id)
                }
                try verify(signed, repository: identity.id, delegate: delegate, identity: identity.current, cache: cache, commit: r.id)
                out[delegate] = DelegateState(refs: signed, commit: r.id)
            } catch let e as TrustError {
                problem(delegate, e)
            }
        }
        return out
    }

    // MARK: Writing

    static func signature(_ key: Ed25519KeyPair, time: Int64) -> Signature {
        let peer = (try? PeerID(publicKey: key.publicKey)).map(\.description) ?? "guts"
        return Signature(name: "guts", email: peer + "@guts.invalid", time: time, timezone: "+0000")
    }

    static func writeCommit(_ repo: Repository, files: [(String, [UInt8])], parent: ObjectID?, message: String,
                            key: Ed25519KeyPair, time: Int64) throws -> ObjectID {
        do {
            var entries: [TreeEntry] = []
            for (name, bytes) in files {
                entries.append(TreeEntry(mode: 0o100644, name: Array(name.utf8), id: try repo.writeLoose(type: .blob, body: bytes)))
            }
            let tree = try repo.writeLoose(type: .tree, body: Tree(entries: entries).serialized())
            let sig = signature(key, time: time)
            let commit = Commit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig, committer: sig, message: Array(message.utf8))
            return try repo.writeLoose(type: .commit, body: commit.serialized())
        } catch {
            throw TrustError(.io, "cannot write objects: \(error)")
        }
    }

    /// Writes the first version of an identity, signed by `key`, and points
    /// `refs/guts/id` at it. Refuses a repository that already has an identity.
    @discardableResult
    public static func create(_ repo: Repository, document: IdentityDocument, key: Ed25519KeyPair,
                              time: Int64 = Int64(unixTime())) throws -> IdentityChain {
        try document.validate()
        guard document.version == 1 else { throw TrustError(.chain, "a new identity starts at version 1") }
        var sigs = DocumentSignatures()
        if let me = try? PeerID(publicKey: key.publicKey) { sigs.entries[me] = key.sign(document.signingMessage) }
        let commit = try writeCommit(repo, files: [(identityFile, document.serialized()), (signaturesFile, sigs.serialized())],
                                     parent: nil, message: "identity version 1\n", key: key, time: time)
        let chain = try loadChain(repo, tip: commit)
        do {
            try repo.updateRef(TrustLayout.identityRef, to: commit, expectedOld: .absent)
        } catch {
            throw TrustError(.io, "cannot set \(TrustLayout.identityRef): \(error)")
        }
        return chain
    }

    /// Appends a new version to `chain` with the given signatures (which must meet the
    /// previous version's threshold) and moves `refs/guts/id` to it.
    @discardableResult
    public static func append(_ repo: Repository, to chain: IdentityChain, document: IdentityDocument,
                              signatures: DocumentSignatures, key: Ed25519KeyPair,
                              time: Int64 = Int64(unixTime())) throws -> IdentityChain {
        try document.validate()
        let commit = try writeCommit(repo, files: [(identityFile, document.serialized()), (signaturesFile, signatures.serialized())],
                                     parent: chain.tip, message: "identity version \(document.version)\n", key: key, time: time)
        let next = try loadChain(repo, tip: commit)
        guard chain.isPrefix(of: next) else { throw TrustError(.chain, "the new version does not extend the identity") }
        do {
            try repo.updateRef(TrustLayout.identityRef, to: commit, expectedOld: .value(chain.tip))
        } catch {
            throw TrustError(.io, "cannot move \(TrustLayout.identityRef): \(error)")
        }
        return next
    }

    /// The next document version: `change` applied to the current one.
    public static func nextVersion(of chain: IdentityChain, _ change: (inout IdentityDocument) -> Void) -> IdentityDocument {
        var doc = chain.current
        change(&doc)
        doc.version = chain.current.version + 1
        doc.previous = chain.versions[chain.versions.count - 1].hash
        doc.delegates.sort { $0.description < $1.description }
        return doc
    }
}

/// Signed refs already parsed and whose signature verified, by commit (immutable, so
/// a scan every few seconds does not parse and verify the same state again). Bounded.
public final class SignedRefsCache: Sendable {
    private let lock = Mutex()
    nonisolated(unsafe) private var entries: [ObjectID: SignedRefs] = [:]
    let limit: Int

    public init(limit: Int = 256) { self.limit = limit }

    public func get(_ commit: ObjectID) -> SignedRefs? { lock.locked { entries[commit] } }

    func put(_ commit: ObjectID, _ refs: SignedRefs) {
        lock.locked {
            if entries.count >= limit { entries.removeAll() }
            entries[commit] = refs
        }
    }
}
