#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsTrust
import GutsWire

/// What to sync and whom to trust for it.
public struct SignedSyncRequest: Sendable {
    /// The repository as the user (or a followed announcement) named it.
    public var repository: RepositoryRef
    /// The peer the user named for this repository: it may pin a first identity, when
    /// it is one of that identity's delegates.
    public var namedPeer: PeerID?
    /// This node's peer ID: a repository it is a delegate of is its working copy.
    public var localPeer: PeerID?
    /// Sequences announced per delegate: a peer serving older signed refs is stale.
    public var expected: [PeerID: UInt64] = [:]

    public init(repository: RepositoryRef, namedPeer: PeerID? = nil, localPeer: PeerID? = nil, expected: [PeerID: UInt64] = [:]) {
        self.repository = repository
        self.namedPeer = namedPeer
        self.localPeer = localPeer
        self.expected = expected
    }
}

/// Where the repository goes.
public enum SyncDestination: Sendable {
    /// Exactly this path (`--into`).
    case path(String)
    /// `<root>/<name>.git`; for a repository named by ID, the repository under `root`
    /// already pinned to it, else the name its identity gives when free, else the ID.
    case root(String)
}

/// One delegate's signed state that a sync installed.
public struct DelegateUpdate: Sendable, Equatable {
    public var delegate: PeerID
    public var from: UInt64?
    public var to: UInt64
}

public struct SignedSyncReport: Sendable {
    public var sync: SyncReport
    /// nil for a repository without identity (synced as before: the peer's refs).
    public var id: RepositoryID?
    public var name: RepositoryName?
    public var identityVersion: UInt64?
    /// This sync pinned the identity (the repository's first signed sync).
    public var pinned = false
    public var delegates: [DelegateUpdate] = []
    /// Canonical refs left where they were because the delegates' histories diverge.
    public var diverged: [String] = []
    /// Whether the local repository is this node's working copy (only other delegates'
    /// namespaces and the identity were updated).
    public var workingCopy = false
    /// The newest signing time among the delegates' installed states after the sync
    /// (nil when none has signed): how fresh the state is (guts-identity(5), FRESHNESS).
    public var newestSignedTime: Int64?
}

/// Syncs a repository accepting only signed state (guts-identity(5), ACCEPTING SIGNED
/// STATE): the identity first, then each delegate's newer signed refs, then exactly the
/// objects they name, each step verified before the next is asked for; everything lands
/// in one ref update at the end, or nothing does. A repository without identity is
/// synced as before (`SyncClient`), and the report says it is unsigned.
public enum SignedSync {
    /// `lock` is the repository's lock when the caller already holds it (taken before
    /// dialling); otherwise the lock of the path decided here is taken, waiting up to
    /// `options.lockWait`.
    public static func run(_ request: SignedSyncRequest, to destination: SyncDestination, over connection: any PeerLink,
                           options: SyncOptions = SyncOptions(), holding lock: RepositoryLock? = nil) throws -> SignedSyncReport {
        let started = Instant.now()
        connection.beginRequests()
        defer { connection.endRequests() }
        guard let wireName = RepositoryName(request.repository.description) else {
            throw SyncFailure.local("invalid repository '\(request.repository)'")
        }
        let remote = try SyncClient.requestRefs(wireName, over: connection, options: options, started: started)
        var remoteMap: [String: ObjectID] = [:]
        for r in remote.refs {
            guard let id = ObjectID(bytes: r.id.bytes), id.algorithm == .sha1 else { continue }
            if remoteMap.updateValue(id, forKey: r.name) != nil { throw SyncFailure.integrity("peer sent ref '\(Escape.text(r.name))' twice") }
        }

        // Where it goes, when that does not depend on the identity.
        var path: String?
        switch (destination, request.repository) {
        case let (.path(p), _): path = p
        case let (.root(root), .name(n)): path = n.path(in: root)
        case let (.root(root), .id(id)): path = RepositoryIDIndex().locate(id, in: RepositoryCatalog(roots: [root]))?.path
        }

        guard let idTip = remoteMap[TrustLayout.identityRef] else {
            // A repository without identity.
            if case let .id(id) = request.repository {
                throw SyncFailure.notFound("peer has no repository with ID \(id)")
            }
            if let p = path, let repo = try? Repository.open(p), let pinned = try? TrustStore.identity(of: repo) {
                throw SyncFailure.identityMismatch("peer serves \(request.repository) without an identity, but it is pinned to \(pinned.id) here; nothing was changed")
            }
            guard let p = path else { throw SyncFailure.local("no destination") }
            // Reserved refs never come from an unsigned peer.
            let plain = Refs(requestID: remote.requestID, head: remote.head, refs: remote.refs.filter { !TrustLayout.isReserved($0.name) },
                             restricted: remote.restricted)
            let held = lock.flatMap { $0.repositoryPath == RepositoryLock.normalize(p) ? $0 : nil }
            let report = try SyncClient.run(repository: wireName, into: p, over: connection, options: options, holding: held, remote: plain)
            return SignedSyncReport(sync: report, id: nil, name: RepositoryName(request.repository.description))
        }

        var session = Session(request: request, wireName: wireName, remote: remoteMap, remoteHead: remote.head, idTip: idTip,
                              connection: connection, options: options, started: started)
        session.heldLock = lock
        session.restricted = remote.restricted
        if let path {
            return try session.runInPlace(path: path, destination: destination)
        }
        guard case let .root(root) = destination else { throw SyncFailure.local("no destination") }
        return try session.runFirst(root: root)
    }

    /// One signed sync in progress.
    struct Session {
        let request: SignedSyncRequest
        let wireName: RepositoryName
        let remote: [String: ObjectID]
        let remoteHead: String
        let idTip: ObjectID
        let connection: any PeerLink
        let options: SyncOptions
        let started: Instant
        var quarantines: [String] = []
        var readers: [PackReader] = []
        var packs: [(pack: String, index: String)] = []
        var bytes = 0
        var objects = 0
        /// The caller's lock, used when it is the lock of the path synced into.
        var heldLock: RepositoryLock?
        /// The peer serves the repository only to the peers its owner lists.
        var restricted = false

        init(request: SignedSyncRequest, wireName: RepositoryName, remote: [String: ObjectID], remoteHead: String, idTip: ObjectID,
             connection: any PeerLink, options: SyncOptions, started: Instant) {
            self.request = request
            self.wireName = wireName
            self.remote = remote
            self.remoteHead = remoteHead
            self.idTip = idTip
            self.connection = connection
            self.options = options
            self.started = started
        }

        /// A repository named by ID and not here yet: fetch the identity into a staging
        /// repository first, then decide its name.
        mutating func runFirst(root: String) throws -> SignedSyncReport {
            do { try Files.makeDirectories(root) } catch { throw SyncFailure.local("cannot create \(root): \(error)") }
            // Leftovers of killed syncs by ID (named after their process).
            for entry in Files.list(root) where entry.hasPrefix(".guts-sync-id-") {
                if let pid = entry.dropFirst(".guts-sync-id-".count).split(separator: "-").first.flatMap({ Int32($0) }),
                   pid != getpid(), kill(pid, 0) != 0, errno == ESRCH {
                    Files.removeTree(root + "/" + entry)
                }
            }
            let staging = root + "/.guts-sync-id-\(getpid())-" + Hex.encode(SyncClient.randomBytes(4))
            defer { Files.removeTree(staging) }
            do {
                try Repository.create(bare: staging)
            } catch {
                throw SyncFailure.local("cannot create \(staging): \(error)")
            }
            let repo = try open(staging)
            let chain = try fetchIdentity(repo, local: nil)
            let name = RepositoryName(chain.current.name).flatMap { n -> RepositoryName? in
                Files.exists(n.path(in: root)) ? nil : n
            } ?? RepositoryName(chain.id.description)
            guard let name else { throw SyncFailure.local("no local name for \(chain.id)") }
            cleanup()
            return try runInPlace(path: name.path(in: root), destination: .root(root))
        }

        /// Syncs into `path`, building it beside the target and renaming it into place
        /// when it does not exist yet.
        mutating func runInPlace(path rawPath: String, destination: SyncDestination) throws -> SignedSyncReport {
            let path = rawPath.count > 1 && rawPath.hasSuffix("/") ? String(rawPath.dropLast()) : rawPath
            SyncClient.removeStaleStaging(for: path)
            if Files.exists(path) && !(Files.isDirectory(path) && Files.list(path).isEmpty) {
                var report = try sync(into: path, created: false)
                report.sync.repositoryPath = path
                return report
            }
            let parent = Files.directoryName(path)
            var missing: [String] = []
            var dir = parent
            while !dir.isEmpty && dir != "/" && dir != "." && !Files.exists(dir) {
                missing.append(dir)
                dir = Files.directoryName(dir)
            }
            let staging = (parent == "/" ? "" : parent) + "/" + SyncClient.stagingPrefix(for: path) + "\(getpid())-"
                + Hex.encode(SyncClient.randomBytes(4))
            var installed = false
            defer {
                if !installed {
                    Files.removeTree(staging)
                    for d in missing { rmdir(d) }
                }
            }
            do {
                try Files.makeDirectories(parent)
                try Repository.create(bare: staging)
                try Files.writeAtomically(staging + "/" + SyncClient.mirrorMarker, string: "mirror of \(request.repository), kept by guts sync\n")
            } catch {
                throw SyncFailure.local("cannot create \(path): \(error)")
            }
            var report = try sync(into: staging, created: true)
            guard rename(staging, path) == 0 else {
                let code = errno
                if code == EEXIST || code == ENOTEMPTY {
                    throw SyncFailure.local("\(path) was created by something else during the sync; nothing was changed (run again)")
                }
                throw SyncFailure.local(FileError(path: path, operation: "rename into place", code: code).description)
            }
            installed = true
            Files.syncDirectory(parent)
            report.sync.repositoryPath = path
            return report
        }

        func open(_ path: String) throws -> Repository {
            do { return try Repository.open(path, limits: options.limits) } catch { throw SyncFailure.local("\(error)") }
        }

        var store: CombinedStore { CombinedStore(readers.map { $0 as any ObjectStore }) }

        mutating func cleanup() {
            for q in quarantines { Files.removeTree(q) }
            quarantines = []
            readers = []
            packs = []
        }

        /// Fetches `wants` into a quarantine of its own and checks it: everything they
        /// reach is present (with what is already here) and nothing else came.
        mutating func fetch(_ wants: [ObjectID], repo: Repository, haves: [ObjectID], what: String) throws {
            let wants = wants.filter { !repo.contains($0) && !store.contains($0) }
            guard !wants.isEmpty else { return }
            let quarantine = repo.objectsDirectory + "/" + SyncClient.quarantinePrefix + Hex.encode(SyncClient.randomBytes(6))
            quarantines.append(quarantine)
            let plan = SyncPlan(remoteRefs: [], remoteHead: "", wants: wants, haves: haves, changes: [], headChanges: false)
            let received = try SyncClient.receivePack(plan: plan, name: wireName, connection: connection, quarantine: quarantine,
                                                      options: options, started: started)
            bytes += received.bytes
            let base = CombinedStore(readers.map { $0 as any ObjectStore } + [repo])
            let indexed: PackIndexer.Result
            do {
                indexed = try PackIndexer.index(packPath: received.path, outputDirectory: quarantine, baseStore: base, limits: options.limits,
                                                prescan: received.prescan.result())
            } catch {
                throw SyncFailure.integrity("received pack (\(what)) rejected: \(error)")
            }
            let reader: PackReader
            do {
                reader = try PackReader(packPath: indexed.packPath, indexPath: indexed.indexPath, limits: options.limits)
            } catch {
                throw SyncFailure.integrity("received pack (\(what)) unreadable: \(error)")
            }
            let all = CombinedStore([reader as any ObjectStore] + readers.map { $0 as any ObjectStore } + [repo])
            var result: ObjectWalk.Result
            do {
                // Received objects were hashed as they were indexed (see SyncClient.check).
                result = try ObjectWalk(store: all, limits: options.limits, verifyReads: false)
                    .checkReceived(reader, reachableFrom: wants, excluding: haves)
            } catch {
                throw SyncFailure.integrity("received objects (\(what)) do not form valid history: \(error)")
            }
            if let first = result.missing.first {
                throw SyncFailure.integrity("object \(first) is missing (\(result.missing.count) missing in all): the peer did not send all of \(what)")
            }
            result.excluded = []
            if let extra = SyncClient.unrequested(in: reader, reached: result.reachedInPack, appended: indexed.appendedBaseIDs, store: base) {
                throw SyncFailure.integrity("object \(extra) was not requested: it is not part of \(what)")
            }
            objects += indexed.count - indexed.appendedBases
            readers.append(reader)
            packs.append((indexed.packPath, indexed.indexPath))
        }

        /// The identity chain at the peer's `refs/guts/id`, verified and checked against
        /// the pin (the local chain, or the ID the user gave, or the peer the user named).
        mutating func fetchIdentity(_ repo: Repository, local: IdentityChain?) throws -> IdentityChain {
            let chain: IdentityChain
            if let local, local.tip == idTip {
                chain = local
            } else {
                let haves = Array(Set(((try? repo.listRefs()) ?? []).filter { $0.symbolicTarget == nil }.map(\.id))).prefix(SyncLimits.maxHaves).map { $0 }
                try fetch([idTip], repo: repo, haves: haves, what: "the identity")
                do {
                    chain = try TrustStore.loadChain(CombinedStore(readers.map { $0 as any ObjectStore } + [repo]), tip: idTip)
                } catch let e as TrustError {
                    throw e.kind == .missing || e.kind == .io ? SyncFailure.integrity("identity: \(e)") : SyncFailure.forged("identity: \(e)")
                }
            }
            if case let .id(id) = request.repository, chain.id != id {
                throw SyncFailure.identityMismatch("peer serves identity \(chain.id) for \(id)")
            }
            guard let local else {
                if case .id = request.repository { return chain }
                let peer = connection.peer?.peerID
                guard let named = request.namedPeer, peer == named else {
                    throw SyncFailure.untrusted("\(request.repository) is signed (\(chain.id)) but not pinned here, and this peer was not named: name one of its delegates (PEERID@ADDR) or sync it by ID")
                }
                guard chain.current.delegates.contains(named) || chain.versions[0].document.delegates.contains(named) else {
                    throw SyncFailure.untrusted("\(named.short) offers \(request.repository) as \(chain.id) but is not one of its delegates; to trust this identity sync it by ID (guts sync \(chain.id) ...) or from a delegate")
                }
                return chain
            }
            guard chain.id == local.id else {
                throw SyncFailure.identityMismatch("peer serves a different identity under \(request.repository): \(chain.id), but \(request.repository) is pinned to \(local.id) here; refusing it")
            }
            if !local.isPrefix(of: chain) {
                if chain.isPrefix(of: local) {
                    throw SyncFailure.stale("peer offers identity version \(chain.current.version) of \(chain.id), older than the installed version \(local.current.version) (rollback refused)")
                }
                throw SyncFailure.forged("peer's identity for \(chain.id) diverges from the installed one at version \(zip(local.versions, chain.versions).prefix(while: { $0.hash == $1.hash }).count + 1)")
            }
            return chain
        }

        mutating func sync(into path: String, created: Bool) throws -> SignedSyncReport {
            defer { cleanup() }
            let marker = path + "/" + SyncClient.mirrorMarker
            let normalized = RepositoryLock.normalize(path)
            let own: RepositoryLock? = heldLock?.repositoryPath == normalized && heldLock?.isHeld == true
                ? nil : try SyncClient.takeLock(normalized, wait: options.lockWait)
            defer { own?.release() }
            if restricted { try SyncClient.keepPrivate(path, name: "\(request.repository)") }
            let repo = try open(path)
            for leftover in Files.list(repo.objectsDirectory) where leftover.hasPrefix(SyncClient.quarantinePrefix) {
                Files.removeTree(repo.objectsDirectory + "/" + leftover)
            }
            let local: [Ref]
            let localChain: IdentityChain?
            do {
                local = try repo.listRefs().filter { $0.symbolicTarget == nil }
                localChain = try TrustStore.identity(of: repo, refs: local)
            } catch {
                throw SyncFailure.local("cannot read \(path): \(error)")
            }
            // A repository guts did not create: this node's working copy when it is a
            // delegate there, otherwise only with --force.
            var workingCopy = false
            if !created && !Files.exists(marker) {
                if let me = request.localPeer, let localChain, localChain.current.delegates.contains(me) {
                    workingCopy = true
                } else if !options.adoptExisting {
                    throw SyncFailure.local("\(path) was not created by guts sync (it has no \(SyncClient.mirrorMarker) file); a sync would replace its branches with the signed ones. Use --force to mirror into it anyway")
                }
            }
            var seen = Set<ObjectID>()
            let haves = local.map(\.id).filter { seen.insert($0).inserted }.prefix(SyncLimits.maxHaves).map { $0 }

            // 1. The identity.
            let chain = try fetchIdentity(repo, local: localChain)
            let doc = chain.current

            // 2. Each delegate's signed refs, when newer than installed.
            let installed: [PeerID: DelegateState]
            do { installed = try TrustStore.installedStates(repo, identity: chain, refs: local) } catch {
                throw SyncFailure.local("cannot read installed signed refs: \(error)")
            }
            var offered: [PeerID: ObjectID] = [:]
            for d in doc.delegates {
                let have = installed[d]
                guard let tip = remote[TrustLayout.sigrefsRef(d)], tip != have?.commit else {
                    if let want = request.expected[d], want > (have?.sequence ?? 0) {
                        throw SyncFailure.stale("\(d.short)'s signed refs at sequence \(want) were announced, but the peer serves \(remote[TrustLayout.sigrefsRef(d)] == nil ? "none" : "sequence \(have?.sequence ?? 0)")")
                    }
                    continue
                }
                if d == request.localPeer && workingCopy { continue }  // this node's own state comes from its own signing
                offered[d] = tip
            }
            try fetch(Array(offered.values), repo: repo, haves: haves, what: "the signed refs")
            var accepted: [PeerID: DelegateState] = [:]
            for (d, tip) in offered.sorted(by: { $0.key < $1.key }) {
                let signed: SignedRefs
                do {
                    signed = try TrustStore.loadSignedRefs(CombinedStore(readers.map { $0 as any ObjectStore } + [repo]), commit: tip)
                    try TrustStore.verify(signed, repository: chain.id, delegate: d, identity: doc)
                } catch let e as TrustError {
                    throw e.kind == .missing || e.kind == .io ? SyncFailure.integrity("signed refs of \(d.short): \(e)") : SyncFailure.forged("signed refs of \(d.short): \(e)")
                }
                if let have = installed[d] {
                    if signed == have.refs { continue }  // the same statement in another commit
                    if signed.sequence < have.sequence {
                        throw SyncFailure.stale("peer offers \(d.short)'s signed refs at sequence \(signed.sequence), older than the installed sequence \(have.sequence) (rollback refused)")
                    }
                    if signed.sequence == have.sequence {
                        throw SyncFailure.stale("peer offers \(d.short)'s signed refs at sequence \(signed.sequence) with other contents than the installed ones (replay refused)")
                    }
                }
                if let want = request.expected[d], signed.sequence < want {
                    throw SyncFailure.stale("\(d.short)'s signed refs at sequence \(want) were announced, but the peer serves sequence \(signed.sequence)")
                }
                let now = Int64(unixTime())
                if signed.time > now + TrustLimits.maxClockSkew {
                    throw SyncFailure.stale("\(d.short)'s signed refs at sequence \(signed.sequence) are dated \(signed.time - now) s in the future (more than \(TrustLimits.maxClockSkew) s ahead of this clock), which would make them look fresh for longer than they are")
                }
                accepted[d] = DelegateState(refs: signed, commit: tip)
            }

            // 3. Exactly the objects the accepted signed refs name.
            let named = Array(Set(accepted.values.flatMap { $0.refs.refs.map(\.id) })).sorted()
            guard named.count <= SyncLimits.maxWants else {
                throw SyncFailure.integrity("the signed refs name \(named.count) distinct objects; at most \(SyncLimits.maxWants) can be fetched at once")
            }
            do {
                try fetch(named, repo: repo, haves: haves, what: "the objects of the signed refs")
            } catch let f as SyncFailure {
                switch f {
                case .timeout, .connection, .local, .integrity: throw f
                default: throw SyncFailure.integrity("peer advertises signed refs it cannot serve the objects of: \(f)")
                }
            }
            for id in named where !repo.contains(id) && !store.contains(id) {
                throw SyncFailure.integrity("signed refs name \(id), which the peer did not send")
            }

            // 4. One ref update: namespaces, signed refs, identity, canonical refs.
            var refs = Dictionary(local.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
            refs[TrustLayout.identityRef] = chain.tip
            for (d, state) in accepted {
                let ns = TrustLayout.namespace(d)
                for name in refs.keys where name.hasPrefix(ns) { refs[name] = nil }
                for r in state.refs.refs { refs[ns + r.name] = r.id }
                refs[TrustLayout.sigrefsRef(d)] = state.commit
            }
            var states = installed.mapValues(\.refs)
            for (d, s) in accepted { states[d] = s.refs }
            var diverged: [String] = []
            if !workingCopy {
                let current = refs.filter { TrustLayout.isCanonicalKind($0.key) }
                let decision = Canonical.compute(states: states, threshold: doc.threshold, current: current,
                                                 store: CombinedStore(readers.map { $0 as any ObjectStore } + [repo]))
                for name in current.keys { refs[name] = nil }
                for (name, id) in decision.refs { refs[name] = id }
                diverged = decision.diverged
            }
            let before = Dictionary(local.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
            var changes: [RefChange] = []
            let changed = Set(before.keys).union(refs.keys).filter { before[$0] != refs[$0] }
            for name in changed.sorted(by: GutsGit.Refs.byteOrder) {
                changes.append(RefChange(name: name, old: before[name], new: refs[name]))
            }
            let head = "refs/heads/" + doc.defaultBranch
            var localHead: String?
            if case let .symbolic(target, _)? = try? repo.head() { localHead = target }
            let headChanges = !workingCopy && refs[head] != nil && localHead != head
            var report = SyncReport(repositoryPath: path, created: created, upToDate: changes.isEmpty && !headChanges, changes: changes,
                                    headChanged: false, head: workingCopy ? localHead : (refs[head] != nil ? head : localHead),
                                    objectsReceived: objects, bytesReceived: bytes, seconds: 0)
            if !changes.isEmpty || created {
                options.progress?(SyncProgress(phase: .updating, bytes: bytes, objects: objects, seconds: Instant.now().seconds(since: started)))
                do {
                    for p in packs { try repo.installPack(packPath: p.pack, indexPath: p.index) }
                    try repo.replaceRefs(with: refs.map { (name: $0.key, id: $0.value) }, expected: local)
                } catch {
                    throw SyncFailure.local("cannot update refs: \(error)")
                }
            }
            if headChanges {
                do { try repo.setHead(symbolic: head) } catch { throw SyncFailure.local("cannot set HEAD: \(error)") }
                report.headChanged = true
            }
            if !workingCopy && !Files.exists(marker) {
                try? Files.writeAtomically(marker, string: "mirror of \(chain.id), kept by guts sync\n")
            }
            if !packs.isEmpty { SyncClient.maintain(repo, options: options, report: &report) }
            report.seconds = Instant.now().seconds(since: started)
            var out = SignedSyncReport(sync: report, id: chain.id, name: nil, identityVersion: doc.version)
            out.pinned = localChain == nil
            out.delegates = accepted.keys.sorted().map { DelegateUpdate(delegate: $0, from: installed[$0]?.sequence, to: accepted[$0]?.sequence ?? 0) }
            out.diverged = diverged
            out.workingCopy = workingCopy
            out.newestSignedTime = states.values.map(\.time).max()
            return out
        }
    }
}
