import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust

/// One delegate's installed signed state, as announced: its sequence and commit.
public struct SignedHead: Sendable, Equatable, Hashable {
    public var sequence: UInt64
    public var commit: ObjectID
    public init(sequence: UInt64, commit: ObjectID) {
        self.sequence = sequence
        self.commit = commit
    }
}

/// What a scan learned about one served repository.
public struct ScannedRepository: Sendable, Equatable {
    /// The repository ID, for a repository with a valid identity.
    public var id: RepositoryID?
    /// Installed, verified signed states of the identity's current delegates.
    public var states: [PeerID: SignedHead] = [:]
    /// For a repository without identity: BLAKE2b-256 of its refs (see `refsHash(_:)`).
    public var refsHash: [UInt8] = []
    /// Whether it has any refs.
    public var hasRefs = false
    /// The sequence this node signed during the scan, when it signed, and its peer ID.
    public var signed: UInt64?
    public var signer: PeerID?
    /// Why its identity or signing failed (the repository is then not announced).
    public var problem: String?
    /// It has a `guts-allow` file: served only to the peers listed, never announced.
    public var restricted = false

    public init(id: RepositoryID? = nil, states: [PeerID: SignedHead] = [:], refsHash: [UInt8] = [], hasRefs: Bool = false,
                signed: UInt64? = nil, signer: PeerID? = nil, problem: String? = nil) {
        self.signer = signer
        self.id = id
        self.states = states
        self.refsHash = refsHash
        self.hasRefs = hasRefs
        self.signed = signed
        self.problem = problem
    }

    /// BLAKE2b-256 over `<hex> <name>\n` of every direct ref, sorted by name
    /// (guts-protocol(7), RefsChanged).
    public static func refsHash(_ refs: [(name: String, id: ObjectID)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for r in refs.sorted(by: { Refs.byteOrder($0.name, $1.name) }) {
            bytes += Array("\(r.id.hex) \(r.name)\n".utf8)
        }
        return BLAKE2b.hash(bytes, outputLength: 32)
    }
}

/// Reads every served repository for the announcer, and first signs the refs of those
/// this node is a delegate of (working copies: not mirrors). Blocking; runs on the
/// announcer's executor.
public enum RepositoryScanner {
    /// Verified signed refs by commit, shared by every scan of this process.
    static let cache = SignedRefsCache(limit: 1024)

    /// Scans every repository of `catalog`, signing this node's changed refs (and, every
    /// `refreshAfter` seconds, its unchanged ones too).
    public static func scan(_ catalog: RepositoryCatalog, key: Ed25519KeyPair, refreshAfter: Int64? = nil) -> [RepositoryName: ScannedRepository] {
        var out: [RepositoryName: ScannedRepository] = [:]
        for name in catalog.all() {
            guard let path = catalog.locate(name), let repo = try? Repository.open(path) else { continue }
            var scanned = scan(repo, key: key, refreshAfter: refreshAfter)
            scanned.restricted = catalog.isRestricted(path)
            out[name] = scanned
        }
        return out
    }

    public static func scan(_ repo: Repository, key: Ed25519KeyPair, refreshAfter: Int64? = nil) -> ScannedRepository {
        guard var refs = try? repo.listRefs() else { return ScannedRepository(problem: "cannot read its refs") }
        let chain: IdentityChain?
        do {
            chain = try TrustStore.identity(of: repo, refs: refs)
        } catch {
            return ScannedRepository(problem: "its identity does not verify: \(error)")
        }
        guard let chain else {
            let direct = refs.filter { $0.symbolicTarget == nil }
            return ScannedRepository(refsHash: ScannedRepository.refsHash(direct.map { ($0.name, $0.id) }), hasRefs: !direct.isEmpty)
        }
        var result = ScannedRepository(id: chain.id)
        let me = try? PeerID(publicKey: key.publicKey)
        let mirror = Files.exists(repo.gitDirectory + "/" + SyncClient.mirrorMarker)
        if let me, chain.current.delegates.contains(me), !mirror {
            do {
                result.signed = try RefSigner.signIfChanged(repo, identity: chain, key: key, refreshAfter: refreshAfter, refs: refs, cache: cache)?.sequence
                result.signer = me
                if result.signed != nil, let again = try? repo.listRefs() { refs = again }
            } catch {
                result.problem = "cannot sign its refs: \(error)"
            }
        }
        do {
            for (d, s) in try TrustStore.installedStates(repo, identity: chain, refs: refs, cache: cache) {
                result.states[d] = SignedHead(sequence: s.sequence, commit: s.commit)
            }
            result.hasRefs = !result.states.isEmpty
        } catch {
            result.problem = "cannot read its signed refs: \(error)"
        }
        return result
    }
}
