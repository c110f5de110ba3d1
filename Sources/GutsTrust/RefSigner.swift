import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport

/// Signs a delegate's own refs in its working copy (guts-identity(5), SIGNING): the
/// branches, tags and other refs outside the reserved namespaces become the delegate's
/// namespace `refs/namespaces/<peer>/…`, and a new signed-refs commit with the next
/// sequence number goes to `refs/namespaces/<peer>/refs/guts/sigrefs`, all in one
/// packed-refs update. Nothing is written when the signed state already matches.
public enum RefSigner {
    public struct Signed: Sendable, Equatable {
        public let sequence: UInt64
        public let commit: ObjectID
        public let refs: Int
    }

    /// The refs a delegate signs now: every direct ref that may be signed.
    public static func signableRefs(_ refs: [Ref]) -> [(name: String, id: ObjectID)] {
        refs.filter { $0.symbolicTarget == nil && SignedRefs.isSignable($0.name) }.map { ($0.name, $0.id) }
    }

    /// Signs when the refs differ from this delegate's installed signed state, or when
    /// that state was signed `refreshAfter` seconds ago or more (so followers can tell a
    /// quiet repository from one whose newer state is withheld: guts-identity(5),
    /// FRESHNESS); returns what was signed, or nil when nothing changed. Throws when
    /// `key` is not a delegate.
    @discardableResult
    public static func signIfChanged(_ repo: Repository, identity: IdentityChain, key: Ed25519KeyPair,
                                     time: Int64 = Int64(unixTime()), force: Bool = false, refreshAfter: Int64? = nil,
                                     refs known: [Ref]? = nil, cache: SignedRefsCache? = nil) throws -> Signed? {
        guard let me = try? PeerID(publicKey: key.publicKey), identity.current.delegates.contains(me) else {
            throw TrustError(.notDelegate, "this node is not a delegate of \(identity.id)")
        }
        let all: [Ref]
        if let known {
            all = known
        } else {
            do { all = try repo.listRefs() } catch { throw TrustError(.io, "cannot read refs: \(error)") }
        }
        let current = signableRefs(all)
        guard current.count <= TrustLimits.maxSignedRefs else {
            throw TrustError(.malformed, "\(current.count) refs; at most \(TrustLimits.maxSignedRefs) can be signed")
        }
        let installed = try TrustStore.installedStates(repo, identity: identity, refs: all, cache: cache)[me]
        let due = refreshAfter.map { $0 > 0 && installed.map { time - $0.refs.time } ?? 0 >= $0 } ?? false
        if !force, !due, let installed,
           installed.refs.refMap == Dictionary(current.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a }) {
            return nil
        }
        let sequence = (installed?.sequence ?? 0) + 1
        // Never sign an earlier time than the previous state: times only move forward.
        var signed = SignedRefs(repository: identity.id, delegate: me, sequence: sequence,
                                time: max(time, installed?.refs.time ?? 0), refs: current)
        signed.sign(with: key)
        let commit = try TrustStore.writeCommit(repo, files: [(TrustStore.signedRefsFile, signed.serialized())],
                                                parent: installed?.commit, message: "signed refs, sequence \(sequence)\n",
                                                key: key, time: signed.time)
        let ns = TrustLayout.namespace(me)
        var refs = current.map { (name: ns + $0.name, id: $0.id) }
        refs.append((TrustLayout.sigrefsRef(me), commit))
        do {
            try repo.replaceRefs(under: ns, with: refs)
        } catch {
            throw TrustError(.io, "cannot write signed refs: \(error)")
        }
        return Signed(sequence: sequence, commit: commit, refs: current.count)
    }
}
