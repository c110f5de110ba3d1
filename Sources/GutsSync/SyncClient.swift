#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// Why a sync failed. The CLI maps each case to its own exit code.
public enum SyncFailure: Error, Equatable, CustomStringConvertible, Sendable {
    /// The peer has no such repository.
    case notFound(String)
    /// The peer refused (access list, busy).
    case refused(String)
    /// Something the peer sent is wrong, malformed, missing or unrequested.
    case integrity(String)
    /// The peer broke the protocol.
    case protocolViolation(String)
    /// The peer went silent.
    case timeout(String)
    /// The connection failed or closed.
    case connection(String)
    /// A local problem (disk, repository).
    case local(String)
    /// What the peer sent crosses one of the receiver's limits (pack size, object size,
    /// delta depth, work budget). An integrity failure (exit 6) whose reason is
    /// structured, so the peer can be held to account for it.
    case budget(limit: ResourceLimit, String)
    /// Another process holds the repository's lock (`RepositoryLock`) and the wait ended.
    case busy(String)
    /// Signed refs or an identity that do not verify (guts-identity(5)).
    case forged(String)
    /// Signed state older than installed or announced (rollback, replay).
    case stale(String)
    /// Another identity than the one pinned or asked for.
    case identityMismatch(String)
    /// No identity pinned and nothing the user named vouches for the one offered.
    case untrusted(String)

    public var description: String {
        switch self {
        case let .notFound(s), let .refused(s), let .integrity(s), let .protocolViolation(s),
             let .timeout(s), let .connection(s), let .local(s), let .budget(_, s), let .busy(s), let .forged(s), let .stale(s),
             let .identityMismatch(s), let .untrusted(s): return s
        }
    }

    /// The limit crossed, for `.budget`.
    public var limit: ResourceLimit? {
        if case let .budget(limit, _) = self { return limit }
        return nil
    }
}

/// Progress of a running sync (for a TTY progress line).
public struct SyncProgress: Sendable {
    public enum Phase: String, Sendable { case refs, receiving, indexing, checking, updating }
    public var phase: Phase
    public var bytes: Int
    /// Objects announced by the pack header, once known.
    public var objects: Int?
    public var seconds: Double
}

/// What a sync did.
public struct SyncReport: Sendable {
    public var repositoryPath: String
    public var created: Bool
    public var upToDate: Bool
    public var changes: [RefChange]
    public var headChanged: Bool
    /// The symbolic HEAD target after the sync, when the peer has one.
    public var head: String?
    public var objectsReceived: Int
    public var bytesReceived: Int
    public var seconds: Double
    /// The packs consolidated after the sync, when it left more than
    /// `SyncOptions.maxPacks` (`PackMaintenance`).
    public var consolidated: PackMaintenance.Result? = nil
    /// Why that consolidation failed (the sync itself succeeded; the old packs stay).
    public var maintenanceProblem: String? = nil
}

public struct SyncOptions: Sendable {
    /// Longest wait for an answer, and longest time without pack bytes during the
    /// transfer (unrelated messages and empty chunks meanwhile do not count).
    public var timeout: Double
    /// Seconds the whole sync may take, whatever the peer does (nil: no deadline).
    public var deadline: Double?
    /// Most pack bytes accepted in one sync.
    public var maxPackBytes: Int
    /// Bytes that must stay free on the repository's file system.
    public var minFreeBytes: Int
    /// Object limits and work budget for what the peer sends.
    public var limits: ObjectLimits
    public var progress: (@Sendable (SyncProgress) -> Void)?
    /// Mirror into an existing repository that guts did not create (its refs are replaced).
    public var adoptExisting = false
    /// Seconds to wait for the repository's lock when `run` takes it itself (0: fail
    /// with `.busy` at once if another sync, mirroring or maintenance holds it).
    public var lockWait: Double = 0
    /// Consolidate the packs after a sync that leaves more than this many (0: never;
    /// guts-config(5), `max-packs`).
    public var maxPacks = PackMaintenance.defaultMaxPacks

    public static let defaultMaxPackBytes = SyncDefaults.maxPackBytes
    public static let defaultMinFreeBytes = SyncDefaults.minFreeBytes
    public static let defaultDeadline = SyncDefaults.deadline

    public init(timeout: Double = 60, deadline: Double? = SyncOptions.defaultDeadline, maxPackBytes: Int = SyncOptions.defaultMaxPackBytes,
                minFreeBytes: Int = SyncOptions.defaultMinFreeBytes, limits: ObjectLimits = .default,
                progress: (@Sendable (SyncProgress) -> Void)? = nil, adoptExisting: Bool = false, lockWait: Double = 0,
                maxPacks: Int = PackMaintenance.defaultMaxPacks) {
        self.maxPacks = maxPacks
        self.adoptExisting = adoptExisting
        self.lockWait = lockWait
        self.timeout = timeout
        self.deadline = deadline
        self.maxPackBytes = maxPackBytes
        self.minFreeBytes = minFreeBytes
        self.limits = limits
        self.progress = progress
    }
}

/// Mirrors one repository from a connected peer into a local bare repository.
///
/// Nothing the peer sends becomes visible before it is verified: the pack is written
/// to `objects/incoming-*` (a quarantine), indexed (every object hashed and checked
/// with fsck rules, deltas resolved), checked for completeness (everything reachable
/// from the new tips present) and for extras (nothing unrequested), and only then
/// moved into `objects/pack`; the refs switch last, in one transaction. Any failure or
/// interruption leaves the repository as it was. A first sync builds the repository
/// under a hidden name beside the target and renames it into place once complete, so
/// a failed or killed first sync leaves no repository at the target at all.
///
/// All of it happens under the repository's `RepositoryLock` (`<target>.lock`), so syncs
/// of one repository take turns, first syncs included: the second finds the first's
/// result and fetches only what is still missing.
public enum SyncClient {
    /// Announced in Hello by a side that takes OFS_DELTA entries in the packs it is
    /// sent (guts-protocol(7), Capabilities): a server sends reused deltas whose base
    /// precedes them in the pack as OFS_DELTA only to a peer that announced it.
    public static let offsetDeltaCapability = "ofs-delta"
    /// Capabilities to announce in Hello when fetching.
    public static let capabilities = [offsetDeltaCapability]

    public static let quarantinePrefix = "incoming-"
    /// Marks a repository as a guts mirror: a sync replaces every ref in it, so a sync
    /// into a repository without this file (someone's own work) is refused unless adopted.
    public static let mirrorMarker = "guts-mirror"

    /// Gives a mirror of a restricted repository an allow list that admits nobody (only
    /// comments), unless it has one already: it is never served to strangers or announced.
    public static func keepPrivate(_ path: String, name: String) throws {
        let file = path + "/" + RepositoryCatalog.allowFile
        guard !Files.exists(file) else { return }
        let text = """
            # \(name) is restricted where it was mirrored from, so this mirror serves nobody
            # until you list the peer IDs that may read it, one per line (guts-listen(1)).

            """
        do {
            try Files.writeAtomically(file, string: text, mode: 0o644)
        } catch {
            throw SyncFailure.local("cannot write \(file): \(error)")
        }
    }

    /// Syncs `name` into `target`. `lock` is the target's lock when the caller already
    /// holds it (`takeLock`); otherwise it is taken here, waiting up to `options.lockWait`.
    /// `remote`: the peer's refs when already asked for (they are not asked for again).
    public static func run(repository name: RepositoryName, into target: String, over connection: any PeerLink,
                           options: SyncOptions = SyncOptions(), holding lock: RepositoryLock? = nil,
                           remote known: Refs? = nil) throws -> SyncReport {
        let started = Instant.now()
        let path = RepositoryLock.normalize(target)
        let held: RepositoryLock
        if let lock {
            guard lock.repositoryPath == path, lock.isHeld else {
                throw SyncFailure.local("internal error: the lock held is not the lock of \(path)")
            }
            held = lock
        } else {
            held = try takeLock(path, wait: options.lockWait)
        }
        defer { if lock == nil { held.release() } }
        connection.beginRequests()
        defer { connection.endRequests() }
        removeStaleStaging(for: path)
        guard !Files.exists(path) || (Files.isDirectory(path) && Files.list(path).isEmpty) else {
            return try sync(name, into: path, created: false, remote: known, over: connection, options: options, started: started)
        }

        // A first sync. Refs first, before anything touches the disk: a refusal or an
        // unknown repository leaves nothing behind. Then the repository is built beside
        // the target under a hidden name and renamed into place only when complete, so
        // the target never exists half-built, even if this process is killed (the
        // hidden leftover is removed by the next sync of the same path).
        let remote = try known ?? requestRefs(name, over: connection, options: options, started: started)
        let parent = Files.directoryName(path)
        let staging = (parent == "/" ? "" : parent) + "/" + stagingPrefix(for: path) + "\(getpid())-" + Hex.encode(randomBytes(4))
        var installed = false
        // Missing parent directories were created with the lock, which removes them again
        // if they are left empty.
        defer { if !installed { Files.removeTree(staging) } }
        do {
            try Files.makeDirectories(parent)
            try Repository.create(bare: staging)
            try Files.writeAtomically(staging + "/" + mirrorMarker, string: "mirror of \(name), kept by guts sync\n")
        } catch {
            throw SyncFailure.local("cannot create \(path): \(error)")
        }
        var report = try sync(name, into: staging, created: true, remote: remote, over: connection, options: options, started: started)
        guard rename(staging, path) == 0 else {
            let code = errno
            if code == EEXIST || code == ENOTEMPTY {
                throw SyncFailure.local("\(path) was created by something else during the sync; nothing was changed (run again)")
            }
            throw SyncFailure.local(FileError(path: path, operation: "rename into place", code: code).description)
        }
        installed = true
        Files.syncDirectory(parent)
        report.repositoryPath = path
        return report
    }

    /// `.<name>.guts-sync-`: the hidden sibling a first sync builds the repository in.
    static func stagingPrefix(for path: String) -> String {
        "." + Files.baseName(path) + ".guts-sync-"
    }

    /// Takes the lock of the repository at `path` for a sync, waiting up to `wait` seconds.
    /// `waiting` is told the holder's PID once if the lock is busy at first; `interrupted`
    /// is polled while waiting.
    public static func takeLock(_ path: String, wait: Double, waiting: ((Int32?) -> Void)? = nil,
                                interrupted: () -> Bool = { false }) throws -> RepositoryLock {
        do {
            return try RepositoryLock.acquire(repositoryPath: path, wait: wait, waiting: waiting, interrupted: interrupted)
        } catch let e as RepositoryLockError {
            switch e {
            case .busy: throw SyncFailure.busy(e.description)
            case .interrupted, .io: throw SyncFailure.local(e.description)
            }
        }
    }

    /// Removes staging directories left by killed first syncs. Called with the
    /// repository's lock held: only a holder builds a staging directory, so whatever is
    /// there belongs to a process that is gone.
    static func removeStaleStaging(for path: String) {
        let parent = Files.directoryName(path)
        let prefix = stagingPrefix(for: path)
        for entry in Files.list(parent) where entry.hasPrefix(prefix) {
            Files.removeTree((parent == "/" ? "" : parent) + "/" + entry)
        }
    }

    /// Asks for the refs: one round trip.
    static func requestRefs(_ name: RepositoryName, over connection: any PeerLink, options: SyncOptions,
                            started: Instant) throws -> Refs {
        options.progress?(SyncProgress(phase: .refs, bytes: 0, objects: nil, seconds: 0))
        let refsID = RequestIDs.next()
        connection.send(.sync(.getRefs(GetRefs(requestID: refsID, repository: name.value))))
        let deadline = options.deadline.map { started.adding(seconds: $0) }
        return try waitFor(connection, options.timeout, deadline: deadline, deadlineSeconds: options.deadline, "the list of refs") { message in
            switch (message, message.syncMessage) {
            case let (_, .refs(r)?) where r.requestID == refsID: return .done(r)
            case let (.error(e), _) where e.requestID == refsID: throw failure(for: e, repository: name)
            default: return .skip
            }
        }
    }

    /// Syncs into the existing repository at `path`; `remote` is the refs answer when
    /// already asked for.
    static func sync(_ name: RepositoryName, into path: String, created: Bool, remote known: Refs?,
                     over connection: any PeerLink, options: SyncOptions, started: Instant) throws -> SyncReport {
        let marker = path + "/" + mirrorMarker
        if !created && !Files.exists(marker) {
            guard options.adoptExisting else {
                throw SyncFailure.local("\(path) was not created by guts sync (it has no \(mirrorMarker) file); a sync would replace all its refs with the peer's. Use --force to mirror into it anyway")
            }
        }
        let repo: Repository
        do {
            // Our own repository is read with the limits for local stores; what the peer
            // sends is held to `options.limits`.
            repo = try Repository.open(path, limits: .localStore)
        } catch {
            throw SyncFailure.local("\(error)")
        }
        for leftover in Files.list(repo.objectsDirectory) where leftover.hasPrefix(quarantinePrefix) {
            Files.removeTree(repo.objectsDirectory + "/" + leftover)
        }

        // 1. Refs.
        let remote = try known ?? requestRefs(name, over: connection, options: options, started: started)
        // The peer serves it only to those its owner lists: so does this mirror, which
        // admits nobody until its owner edits the list (before any ref is installed).
        if remote.restricted { try keepPrivate(path, name: "\(name)") }
        let local: [Ref]
        let localHead: String?
        do {
            local = try repo.listRefs()
            if case let .symbolic(target, _) = try repo.head() { localHead = target } else { localHead = nil }
        } catch {
            throw SyncFailure.local("cannot read local refs: \(error)")
        }
        MemoryTrace.mark("sync: refs \(remote.refs.count) remote, \(local.count) local")
        let plan: SyncPlan
        do {
            plan = try SyncPlan.make(remote: remote, local: local, localHead: localHead) { repo.contains($0) }
        } catch {
            throw SyncFailure.integrity("\(error)")
        }
        MemoryTrace.mark("sync: planned \(plan.wants.count) wants, \(plan.haves.count) haves")
        var report = SyncReport(repositoryPath: path, created: created, upToDate: plan.isUpToDate, changes: plan.changes,
                                headChanged: plan.headChanges, head: plan.remoteHead.isEmpty ? nil : plan.remoteHead,
                                objectsReceived: 0, bytesReceived: 0, seconds: 0)
        if plan.isUpToDate && !created {
            report.seconds = Instant.now().seconds(since: started)
            return report
        }

        // 2. Objects, into quarantine. Removed on every way out; only what the index
        // and the checks accept is moved out of it first.
        let quarantine = repo.objectsDirectory + "/" + quarantinePrefix + Hex.encode(randomBytes(6))
        defer { Files.removeTree(quarantine) }
        if !plan.wants.isEmpty {
            // The pack is fsynced while it is indexed and checked; installed only once durable.
            let received = try receivePack(plan: plan, name: name, connection: connection, quarantine: quarantine,
                                           options: options, started: started, syncLater: true)
            report.bytesReceived = received.bytes
            MemoryTrace.mark("sync: received")
            options.progress?(SyncProgress(phase: .indexing, bytes: received.bytes, objects: received.objects,
                                           seconds: Instant.now().seconds(since: started)))
            // The work the pack may cost follows from the bytes that arrived; the
            // deadline still runs.
            let budget = WorkBudget(limits: options.limits, inputBytes: received.bytes,
                                    deadline: options.deadline.map { started.adding(seconds: $0) })
            let indexed: PackIndexer.Result
            do {
                // Bases a thin pack leaves out are read with the peer's limits: the peer
                // picks them, so none may be larger than an object it could send.
                let bases = try Repository.open(path, limits: options.limits)
                let prescanned = received.prescan.result()
                MemoryTrace.mark("sync: prescan \(prescanned == nil ? "not used" : "done")")
                indexed = try PackIndexer.index(packPath: received.path, outputDirectory: quarantine, baseStore: bases,
                                                limits: options.limits, budget: budget, prescan: prescanned,
                                                collectLinks: created && plan.haves.isEmpty)
            } catch {
                throw failure(rejecting: error, "received pack rejected", options: options)
            }
            MemoryTrace.mark("sync: indexed")
            options.progress?(SyncProgress(phase: .checking, bytes: received.bytes, objects: indexed.count,
                                           seconds: Instant.now().seconds(since: started)))
            let reached = try checkSelfContained(indexed, plan: plan, created: created)
                ?? check(indexed, plan: plan, repo: repo, limits: options.limits, budget: budget, options: options)
            if let late = deadlineFailure(budget.deadline, options.deadline, at: Instant.now(), doing: "checking the received objects") {
                throw late
            }
            MemoryTrace.mark("sync: checked")
            report.objectsReceived = indexed.count - indexed.appendedBases
            if let code = received.durable?.wait(), code != 0 {
                throw SyncFailure.local(FileError(path: received.path, operation: "fsync", code: code).description)
            }
            do {
                try repo.installPack(packPath: indexed.packPath, indexPath: indexed.indexPath)
            } catch {
                throw SyncFailure.local("cannot install the received pack: \(error)")
            }
            recordReachability(reached, indexed: indexed, plan: plan, created: created, repo: repo)
        }

        // 3. Refs, in one step.
        options.progress?(SyncProgress(phase: .updating, bytes: report.bytesReceived, objects: report.objectsReceived,
                                       seconds: Instant.now().seconds(since: started)))
        do {
            for r in plan.remoteRefs where !repo.contains(r.id) {
                throw SyncFailure.integrity("ref \(r.name) names \(r.id), which the peer did not send")
            }
            try repo.replaceRefs(with: plan.remoteRefs, expected: local)
            if plan.headChanges || (created && !plan.remoteHead.isEmpty) {
                try repo.setHead(symbolic: plan.remoteHead)
                report.headChanged = true
            }
        } catch let f as SyncFailure {
            throw f
        } catch {
            throw SyncFailure.local("cannot update refs: \(error)")
        }
        if !Files.exists(marker) {
            // Adopted with --force: from now on it is a mirror.
            try? Files.writeAtomically(marker, string: "mirror of \(name), kept by guts sync\n")
        }
        report.upToDate = false
        MemoryTrace.mark("sync: refs updated")
        maintain(repo, options: options, report: &report)
        report.seconds = Instant.now().seconds(since: started)
        return report
    }

    /// Consolidates the packs of `repo` when the sync left more than `options.maxPacks`
    /// (still under the repository's lock). A failure is reported, not thrown: the sync
    /// is complete, and the old packs are all still there.
    public static func maintain(_ repo: Repository, options: SyncOptions, report: inout SyncReport) {
        repo.reloadPacks()
        guard PackMaintenance.needed(repo, maxPacks: options.maxPacks) else { return }
        do {
            report.consolidated = try PackMaintenance.consolidate(repo)
        } catch {
            report.maintenanceProblem = "could not consolidate the packs of \(report.repositoryPath): \(error)"
        }
    }

    /// Receives the Objects stream into `<quarantine>/incoming.pack`.
    /// With `syncLater`, the pack is fsynced in the background (`durable`), and the
    /// caller must wait for that before installing it; otherwise it is fsynced here.
    static func receivePack(plan: SyncPlan, name: RepositoryName, connection: any PeerLink, quarantine: String,
                            options: SyncOptions, started: Instant, syncLater: Bool = false)
        throws -> (path: String, bytes: Int, objects: Int?, prescan: PackPrescan, durable: BackgroundFsync?) {
        do {
            try Files.makeDirectories(quarantine)
        } catch {
            throw SyncFailure.local("cannot create quarantine \(quarantine): \(error)")
        }
        let packPath = quarantine + "/incoming.pack"
        var limits = TransferGuard(noProgressTimeout: options.timeout, deadlineSeconds: options.deadline, started: started,
                                   maxPackBytes: options.maxPackBytes, minFreeBytes: options.minFreeBytes)
        try limits.checkDisk(free: TransferGuard.freeBytes(quarantine), path: quarantine)
        let fd = open(packPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SyncFailure.local(FileError(path: packPath, operation: "create", code: errno).description) }
        var closed = false
        defer { if !closed { close(fd) } }
        // Entries are located while the rest arrives (`PackPrescan`).
        let prescan = PackPrescan(path: packPath, limits: options.limits)
        var complete = false
        defer { if !complete { prescan.cancel() } }
        let requestID = RequestIDs.next()
        let wants = plan.wants.compactMap { WireOID($0.bytes) }
        let haves = plan.haves.compactMap { WireOID($0.bytes) }
        connection.send(.sync(.getObjects(GetObjects(requestID: requestID, repository: name.value, wants: wants, haves: haves))))
        limits.start(at: Instant.now())
        var header: [UInt8] = []
        var objects: Int?
        var lastProgress = Instant.now()
        while true {
            // Waits until the next chunk with pack bytes in it: empty chunks and other
            // messages do not restart the clock.
            let chunk: Objects = try waitFor(connection, guard: limits, "objects") { message in
                switch (message, message.syncMessage) {
                case let (_, .objects(o)?) where o.requestID == requestID:
                    return o.data.isEmpty && !o.final ? .skip : .done(o)
                case let (.error(e), _) where e.requestID == requestID: throw failure(for: e, repository: name)
                default: return .skip
                }
            }
            let checkDisk = try limits.received(chunk.data.count, at: Instant.now())
            let bytes = limits.bytes
            if objects == nil && header.count < 12 {
                header += chunk.data.prefix(12 - header.count)
                if header.count == 12 {
                    objects = Int(header[8]) << 24 | Int(header[9]) << 16 | Int(header[10]) << 8 | Int(header[11])
                }
            }
            let code = Files.writeAll(fd, chunk.data)
            guard code == 0 else { throw SyncFailure.local(FileError(path: packPath, operation: "write", code: code).description) }
            prescan.advance(to: bytes)
            if checkDisk || chunk.final { try limits.checkDisk(free: TransferGuard.freeBytes(quarantine), path: quarantine) }
            if let progress = options.progress, Instant.now().seconds(since: lastProgress) > 0.1 || chunk.final {
                lastProgress = Instant.now()
                progress(SyncProgress(phase: .receiving, bytes: bytes, objects: objects, seconds: Instant.now().seconds(since: started)))
            }
            if chunk.final { break }
        }
        var durable: BackgroundFsync?
        if syncLater {
            durable = BackgroundFsync(fd: fd)
        } else {
            guard fsync(fd) == 0 else { throw SyncFailure.local(FileError(path: packPath, operation: "fsync", code: errno).description) }
            close(fd)
        }
        closed = true
        prescan.finish(total: limits.bytes)
        complete = true
        return (packPath, limits.bytes, objects, prescan, durable)
    }

    /// After a first sync, the check's walk is what a serving walk from the new refs
    /// would find: it is saved as the pack's reachability file, so this mirror serves
    /// its first mirror without walking. Best effort: without the file it walks.
    static func recordReachability(_ reached: PositionSet?, indexed: PackIndexer.Result, plan: SyncPlan, created: Bool,
                                   repo: Repository) {
        guard created, plan.haves.isEmpty, indexed.appendedBases == 0, let reached,
              Set(plan.wants) == Set(plan.remoteRefs.map(\.id)),
              let pack = repo.packs.first(where: { $0.checksum == indexed.checksum && $0.count == indexed.count })
        else { return }
        let file = ReachabilityFile(packChecksum: pack.checksumBytes, objectCount: pack.count, tips: plan.wants, reachable: reached)
        try? file.write(for: pack)
    }

    /// Completeness and no extras for a first sync, from the links the indexer
    /// collected (`PackIndexer.index(collectLinks:)`) instead of a walk, as git's
    /// index-pack does for a clone (`--check-self-contained-and-connected`): every
    /// object named by an object of the pack is in the pack with the type it must
    /// have, and every object of the pack is wanted or named by one. Since names are
    /// hashes the graph has no cycles, so the second rule means every object is
    /// reachable from a want. Returns every position (all reachable) when both hold;
    /// nil when they do not or cannot be checked so, and then the walk decides (and
    /// says what is wrong).
    static func checkSelfContained(_ indexed: PackIndexer.Result, plan: SyncPlan, created: Bool) -> PositionSet? {
        guard created, plan.haves.isEmpty, indexed.appendedBases == 0, let links = indexed.links, links.conflict == nil,
              let pack = try? PackReader(packPath: indexed.packPath, indexPath: indexed.indexPath) else { return nil }
        var named = PositionSet(count: pack.count)
        var complete = true
        links.forEach { id, type in
            guard complete else { return }
            guard let j = pack.position(of: id), indexed.type(atIndexPosition: j) == type else {
                complete = false
                return
            }
            _ = named.insert(j)
        }
        guard complete else { return nil }
        for w in plan.wants {
            guard let j = pack.position(of: w) else { return nil }
            _ = named.insert(j)
        }
        for j in 0..<pack.count where !named.contains(j) {
            // A name the pack holds twice is found at one position only.
            guard let p = pack.position(of: pack.id(at: j)), p != j, named.contains(p) else { return nil }
            _ = named.insert(j)
        }
        MemoryTrace.mark("sync: self-contained, \(links.count) objects named")
        return named
    }

    /// Completeness and no extras: every object reachable from the wanted tips (down to
    /// what we already have) is present, and the pack holds nothing beyond that.
    /// Returns the index positions of the received pack that the walk reached.
    @discardableResult
    static func check(_ indexed: PackIndexer.Result, plan: SyncPlan, repo: Repository, limits: ObjectLimits,
                      budget: WorkBudget, options: SyncOptions) throws -> PositionSet? {
        let incoming: PackReader
        do {
            incoming = try PackReader(packPath: indexed.packPath, indexPath: indexed.indexPath, limits: limits, budget: budget)
        } catch {
            throw failure(rejecting: error, "received pack unreadable", options: options)
        }
        let store = CombinedStore([incoming, repo])
        // The indexer hashed every received object and wrote the index from those
        // names, and the repository's own objects were hashed as they came in.
        // What this repository's own reachability files mark is stored with all it
        // reaches: the walk stops there (`ClosedObjects`), so an incremental check costs
        // what is new, not the boundary's whole tree. Only our files, written after our
        // own checks, are trusted so; the received pack can add no marks.
        let walk = ObjectWalk(store: store, limits: limits, verifyReads: false,
                              closed: plan.haves.isEmpty ? ClosedObjects() : ClosedObjects.load(repo.packs))
        var result: ObjectWalk.Result
        do {
            result = try walk.checkReceived(incoming, reachableFrom: plan.wants, excluding: plan.haves)
        } catch {
            throw failure(rejecting: budget.exceeded ?? error, "received objects do not form valid history", options: options)
        }
        // The walk skips objects it cannot read; when that was the budget, say so.
        if let exceeded = budget.exceeded {
            throw failure(rejecting: exceeded, "received objects could not be checked", options: options)
        }
        if let first = result.missing.first {
            throw SyncFailure.integrity("object \(first) is missing (\(result.missing.count) missing in all): the peer did not send everything the new refs need")
        }
        result.excluded = []
        if let extra = unrequested(in: incoming, reached: result.reachedInPack, appended: indexed.appendedBaseIDs, store: repo) {
            throw SyncFailure.integrity("object \(extra) was not requested: it is not reachable from the refs being fetched")
        }
        return result.reachedInPack
    }

    /// The first object of `pack` that the walk did not reach (`reached`, by index
    /// position) and that is neither an appended thin-pack base nor already in `store`;
    /// nil when there is none.
    static func unrequested(in pack: PackReader, reached: PositionSet?, appended: [ObjectID], store: any ObjectStore) -> ObjectID? {
        let reached = reached ?? PositionSet(count: 0)
        let appended = Set(appended)
        for j in 0..<pack.count where !reached.contains(j) {
            let id = pack.id(at: j)
            // A name the pack holds twice is found at one position only.
            if let p = pack.position(of: id), p != j, reached.contains(p) { continue }
            if !appended.contains(id) && !store.contains(id) { return id }
        }
        return nil
    }

    enum Step<T> {
        case done(T)
        case skip
    }

    /// Waits up to `timeout` seconds (and never past `deadline`) for the message `match`
    /// accepts, skipping unrelated ones. Skipped messages do not restart the clock: a
    /// peer that keeps talking but never answers times out like a silent one.
    static func waitFor<T>(_ connection: any PeerLink, _ timeout: Double, deadline: Instant?, deadlineSeconds: Double?,
                           _ what: String, _ match: (Message) throws -> Step<T>) throws -> T {
        let started = Instant.now()
        return try waitFor(connection, limit: { now in
            if let failure = deadlineFailure(deadline, deadlineSeconds, at: now, doing: "waiting for \(what)") { throw failure }
            let left = timeout - now.seconds(since: started)
            guard left > 0 else { throw SyncFailure.timeout("timed out after \(formatSeconds(timeout)) s waiting for \(what)") }
            return deadline.map { min(left, max(0.001, $0.seconds(since: now))) } ?? left
        }, what, match)
    }

    /// Waits for the next message `match` accepts for as long as `guard` allows.
    static func waitFor<T>(_ connection: any PeerLink, guard limits: TransferGuard, _ what: String,
                           _ match: (Message) throws -> Step<T>) throws -> T {
        try waitFor(connection, limit: { try limits.waitLimit(at: $0, waitingFor: what) }, what, match)
    }

    /// The wait loop: `limit` gives the seconds left at a given instant, or throws the
    /// failure once none are.
    static func waitFor<T>(_ connection: any PeerLink, limit: (Instant) throws -> Double, _ what: String,
                           _ match: (Message) throws -> Step<T>) throws -> T {
        while true {
            let message: Message
            do {
                let left = try limit(Instant.now())
                message = try connection.nextMessage(timeout: left).wait()
            } catch let f as SyncFailure {
                throw f
            } catch TransportError.timeout {
                // The limit says which one ran out.
                _ = try limit(Instant.now().adding(seconds: 0.002))
                continue
            } catch let TransportError.closed(reason) {
                throw SyncFailure.connection("connection closed while waiting for \(what): \(reason)")
            } catch {
                throw SyncFailure.connection("\(error)")
            }
            if case let .done(value) = try match(message) { return value }
        }
    }

    /// The failure for an error from indexing or checking the received pack: a crossed
    /// limit is named (the deadline is a timeout), anything else is bad data.
    static func failure(rejecting error: any Error, _ what: String, options: SyncOptions) -> SyncFailure {
        if let e = error as? GitError, let limit = e.limit {
            if limit == .deadline {
                return .timeout("the deadline of \(formatSeconds(options.deadline ?? 0)) s passed while checking the received objects")
            }
            return .budget(limit: limit, "\(what): \(e.message)")
        }
        return .integrity("\(what): \(error)")
    }

    /// The timeout failure when `deadline` has passed at `now`, else nil.
    static func deadlineFailure(_ deadline: Instant?, _ seconds: Double?, at now: Instant, doing what: String) -> SyncFailure? {
        guard let deadline, now >= deadline else { return nil }
        return .timeout("the deadline of \(formatSeconds(seconds ?? 0)) s passed while \(what)")
    }

    static func failure(for error: ErrorReply, repository: RepositoryName) -> SyncFailure {
        switch error.code {
        case .notFound: return .notFound(error.message)
        case .accessDenied, .busy: return .refused(error.message)
        case .badRequest, .protocolViolation: return .protocolViolation("peer rejected the request: \(error.message)")
        default: return .refused("peer could not serve '\(repository)': \(error.message)")
        }
    }

    static func formatSeconds(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(v)
    }

    static func randomBytes(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0...255) }
    }
}

/// Request IDs unique within the process, so several syncs can share a connection.
enum RequestIDs {
    private static let counter = NIOLockedValueBox<UInt32>(0)
    /// Never 0: request_id 0 is reserved for errors that answer no request.
    static func next() -> UInt32 {
        counter.withLockedValue {
            $0 &+= 1
            if $0 == 0 { $0 = 1 }
            return $0
        }
    }
}
