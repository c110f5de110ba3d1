import GutsGit
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsTrust
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Serves GetRefs and GetObjects from a node's repositories. Disk and CPU work runs on
/// thread pools, never on an event loop: refs on a small pool of their own, so they are
/// answered however many transfers run, and each object transfer on its own thread (at
/// most `maxTransfers`; beyond that peers are told "busy" at once). A transfer streams
/// a pack in chunks with at most `window` chunks queued per connection, so a large
/// transfer neither grows memory nor starves pings on the same connection; a peer that
/// reads nothing for `stallTimeout` seconds is disconnected, freeing its slot.
public final class SyncServer: Sendable {
    public let catalog: RepositoryCatalog
    let pool: NIOThreadPool
    let transferPool: NIOThreadPool
    let log: @Sendable (String) -> Void
    let maxTransfers: Int
    let stallTimeout: Double
    let window = 4
    /// Bytes per Objects message (leaves room for the trailer the stream may append).
    static let chunkSize = SyncLimits.maxObjectsChunk - 64
    /// Transfers one peer (identity) or one address group may hold at once, so no single
    /// source can take every slot.
    public let maxTransfersPerPeer: Int
    public let maxTransfersPerGroup: Int
    /// GetRefs waiting for a thread, in all and per connection; beyond that: busy.
    public let maxQueuedRefs = 64
    public let maxQueuedRefsPerLink = 4
    /// Seconds suggested to a peer told "busy".
    public static let retryAfter = 5
    /// The transfer slots a peer may hold now, at most `maxTransfersPerPeer`: the node
    /// gives an identity that has not earned anything yet a smaller share.
    public let transferShare: @Sendable (PeerID) -> Int
    /// Told when a transfer is cut off because the peer stopped reading.
    public let onStall: @Sendable (any PeerLink) -> Void
    private let slots = NIOLockedValueBox(Slots())

    struct Slots {
        var transfers = 0
        var perPeer: [PeerID: Int] = [:]
        var perGroup: [AddressGroup: Int] = [:]
        var queuedRefs = 0
        var refsPerLink: [ObjectIdentifier: Int] = [:]
    }
    /// Served repositories by repository ID (GetRefs and GetObjects may name either).
    let ids = RepositoryIDIndex()

    public init(catalog: RepositoryCatalog, threads: Int = 2, maxTransfers: Int = 8, stallTimeout: Double = 60,
                maxTransfersPerPeer: Int = 2, maxTransfersPerGroup: Int = 4,
                transferShare: @escaping @Sendable (PeerID) -> Int = { _ in .max },
                onStall: @escaping @Sendable (any PeerLink) -> Void = { _ in },
                log: @escaping @Sendable (String) -> Void) {
        self.catalog = catalog
        self.maxTransfersPerPeer = max(1, maxTransfersPerPeer)
        self.transferShare = transferShare
        self.maxTransfersPerGroup = max(1, maxTransfersPerGroup)
        self.onStall = onStall
        self.pool = NIOThreadPool(numberOfThreads: max(1, threads))
        self.maxTransfers = max(1, maxTransfers)
        self.transferPool = NIOThreadPool(numberOfThreads: max(1, maxTransfers))
        self.stallTimeout = stallTimeout
        self.log = log
        pool.start()
        transferPool.start()
    }

    public func shutdown() {
        try? pool.syncShutdownGracefully()
        try? transferPool.syncShutdownGracefully()
    }

    /// Transfers running now.
    public var activeTransfers: Int { slots.withLockedValue { $0.transfers } }

    static func group(of connection: any PeerLink) -> AddressGroup? {
        let text = connection.remoteAddress
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return IPAddress(text[text.index(after: text.startIndex)..<close])?.group
        }
        return text.lastIndex(of: ":").flatMap { IPAddress(text[..<$0]) }?.group
    }

    static func busy(_ id: UInt32, _ why: String) -> Message {
        .error(ErrorReply(requestID: id, code: .busy, message: "retry-after=\(retryAfter); \(why)"))
    }

    /// Capabilities to announce in Hello when serving.
    public static let capabilities = ["refs", "objects"]

    /// Handles a sync request; returns false for messages that are not sync requests.
    public func handle(_ message: Message, from connection: any PeerLink) -> Bool {
        if let request = message.syncMessage, request.requestID == 0, request.isRequest {
            connection.send(.error(ErrorReply(requestID: 0, code: .badRequest, message: "request_id 0 is reserved")))
            return true
        }
        switch message.syncMessage {
        case .getRefs?, .listRepositories?:
            guard let request = message.syncMessage else { return false }
            // A bounded queue in front of the refs threads: a burst from one connection
            // is answered busy, never queued without bound.
            let link = ObjectIdentifier(connection)
            let queued = slots.withLockedValue { s -> Bool in
                guard s.queuedRefs < maxQueuedRefs, s.refsPerLink[link, default: 0] < maxQueuedRefsPerLink else { return false }
                s.queuedRefs += 1
                s.refsPerLink[link, default: 0] += 1
                return true
            }
            guard queued else {
                connection.send(Self.busy(request.requestID, "too many refs requests waiting"))
                return true
            }
            pool.submit { [self] state in
                defer {
                    slots.withLockedValue { s in
                        s.queuedRefs -= 1
                        s.refsPerLink[link, default: 1] -= 1
                        if s.refsPerLink[link] == 0 { s.refsPerLink[link] = nil }
                    }
                }
                // Work for a peer that has gone is dropped, not done.
                guard state == .active, !connection.isClosed else { return }
                switch request {
                case let .getRefs(r):
                    MemoryTrace.mark("serve: refs asked")
                    connection.send(answerRefs(r, peer: connection.peer?.peerID))
                    MemoryTrace.mark("serve: refs answered")
                case let .listRepositories(l): connection.send(answerRepositories(l, peer: connection.peer?.peerID))
                default: break
                }
            }
            return true
        case let .getObjects(request)?:
            // Admitted here, not when a thread picks it up: a peer over a limit hears
            // "busy" now instead of waiting silently behind the running transfers.
            let peer = connection.peer?.peerID
            let group = Self.group(of: connection)
            let share = peer.map(transferShare)
            let refusal = slots.withLockedValue { s -> String? in
                if s.transfers >= maxTransfers { return "this node is serving \(maxTransfers) transfers" }
                if let peer, s.perPeer[peer, default: 0] >= max(1, min(maxTransfersPerPeer, share ?? maxTransfersPerPeer)) {
                    return "at most \(max(1, min(maxTransfersPerPeer, share ?? maxTransfersPerPeer))) transfers for this peer now"
                }
                if let group, s.perGroup[group, default: 0] >= maxTransfersPerGroup {
                    return "at most \(maxTransfersPerGroup) transfers per address group"
                }
                s.transfers += 1
                if let peer { s.perPeer[peer, default: 0] += 1 }
                if let group { s.perGroup[group, default: 0] += 1 }
                return nil
            }
            if let refusal {
                connection.send(Self.busy(request.requestID, refusal))
                return true
            }
            transferPool.submit { [self] state in
                defer {
                    slots.withLockedValue { s in
                        s.transfers -= 1
                        if let peer {
                            s.perPeer[peer, default: 1] -= 1
                            if s.perPeer[peer] == 0 { s.perPeer[peer] = nil }
                        }
                        if let group {
                            s.perGroup[group, default: 1] -= 1
                            if s.perGroup[group] == 0 { s.perGroup[group] = nil }
                        }
                    }
                }
                guard state == .active, !connection.isClosed else { return }
                serveObjects(request, connection: connection)
                // A long-lived node: the transfer's freed heap (object lists, walked
                // trees, stream buffers, all released by now) goes back to the system
                // instead of staying resident until the next one.
                MemoryTrace.releaseFreeHeap()
            }
            return true
        default:
            return false
        }
    }

    /// Opens a repository for `peer`, or the Error reply explaining why not.
    func open(_ rawName: String, requestID: UInt32, peer: PeerID?) -> Result<(RepositoryName, Repository), ErrorReply> {
        let name: RepositoryName
        let path: String
        if let id = RepositoryID(rawName) {
            guard let hit = ids.locate(id, in: catalog) else {
                return .failure(ErrorReply(requestID: requestID, code: .notFound, message: "no repository with ID \(id) on this node"))
            }
            (name, path) = hit
        } else {
            guard let n = RepositoryName(rawName) else {
                return .failure(ErrorReply(requestID: requestID, code: .badRequest, message: "invalid repository name '\(rawName.prefix(100))'"))
            }
            guard let p = catalog.locate(n) else {
                return .failure(ErrorReply(requestID: requestID, code: .notFound, message: "no repository '\(n)' on this node"))
            }
            (name, path) = (n, p)
        }
        if let peer {
            switch catalog.access(path, for: peer) {
            case .allowed: break
            case .denied:
                return .failure(ErrorReply(requestID: requestID, code: .accessDenied,
                                           message: "repository '\(name)' is restricted and \(peer) is not on its allow list"))
            case let .broken(why):
                log("refusing '\(name)': \(why)")
                return .failure(ErrorReply(requestID: requestID, code: .accessDenied, message: "repository '\(name)' is restricted"))
            }
        }
        do {
            return .success((name, try Repository.open(path)))
        } catch {
            log("cannot open \(path): \(error)")
            return .failure(ErrorReply(requestID: requestID, code: .internalError, message: "repository '\(name)' cannot be read"))
        }
    }

    func answerRefs(_ request: GetRefs, peer: PeerID?) -> Message {
        let repo: Repository
        let name: RepositoryName
        switch open(request.repository, requestID: request.requestID, peer: peer) {
        case let .failure(reply): return .error(reply)
        case let .success((n, r)):
            name = n
            repo = r
        }
        do {
            let refs = try repo.listRefs().filter { $0.symbolicTarget == nil && $0.name.hasPrefix(request.prefix) }
            var head = ""
            if case let .symbolic(target, _) = try repo.head() { head = target }
            let entries = refs.compactMap { r in WireOID(r.id.bytes).map { RefEntry(name: r.name, id: $0) } }
            guard entries.count <= SyncLimits.maxRefs else {
                return .error(ErrorReply(requestID: request.requestID, code: .internalError, message: "more than \(SyncLimits.maxRefs) refs"))
            }
            let restricted = catalog.locate(name).map(catalog.isRestricted) ?? false
            return .sync(.refs(Refs(requestID: request.requestID, head: head, refs: entries, restricted: restricted)))
        } catch {
            log("cannot read refs of '\(request.repository)': \(error)")
            return .error(ErrorReply(requestID: request.requestID, code: .internalError, message: "cannot read refs: \(error)"))
        }
    }

    /// The next page of the repositories `peer` may read: names after `request.after`, in
    /// byte order, at most `SyncLimits.maxRepositoriesPerPage`. A restricted repository
    /// is listed only to the peers its allow list names (as GetRefs serves it), so the
    /// others do not even learn its name; one whose allow list is broken, to nobody.
    func answerRepositories(_ request: ListRepositories, peer: PeerID?) -> Message {
        var entries: [RepositoryEntry] = []
        var more = false
        for name in catalog.all() where name.value > request.after {
            guard let path = catalog.locate(name) else { continue }
            guard let peer, catalog.access(path, for: peer) == .allowed else { continue }
            if entries.count == SyncLimits.maxRepositoriesPerPage {
                more = true
                break
            }
            var head = ""
            var headID: WireOID?
            if let repo = try? Repository.open(path) {
                switch try? repo.head() {
                case let .symbolic(target, id)?:
                    head = target
                    headID = id.flatMap { WireOID($0.bytes) }
                case let .detached(id)?:
                    headID = WireOID(id.bytes)
                case nil:
                    break
                }
            }
            entries.append(RepositoryEntry(name: name.value, id: ids.id(of: path)?.bytes, restricted: catalog.isRestricted(path),
                                           head: head.utf8.count <= SyncLimits.maxRefName ? head : "", headID: headID))
        }
        return .sync(.repositories(Repositories(requestID: request.requestID, repositories: entries, more: more)))
    }

    func serveObjects(_ request: GetObjects, connection: any PeerLink) {
        let id = request.requestID
        func fail(_ code: ReasonCode, _ text: String) {
            connection.send(.error(ErrorReply(requestID: id, code: code, message: text)))
        }
        let name: RepositoryName
        let repo: Repository
        switch open(request.repository, requestID: id, peer: connection.peer?.peerID) {
        case let .failure(reply): return connection.send(.error(reply)).whenComplete { _ in }
        case let .success((n, r)):
            name = n
            repo = r
        }
        let started = Instant.now()
        MemoryTrace.mark("serve: objects asked, \(request.wants.count) wants, \(request.haves.count) haves")
        do {
            // Only ref tips may be asked for: nothing unreachable or hidden leaks out.
            let tips = Set(try repo.listRefs().filter { $0.symbolicTarget == nil }.map(\.id))
            var wants: [ObjectID] = []
            for w in request.wants {
                guard let oid = ObjectID(bytes: w.bytes), tips.contains(oid) else {
                    return fail(.badRequest, "\(w) is not the tip of a ref in '\(name)'")
                }
                wants.append(oid)
            }
            let haves = request.haves.compactMap { ObjectID(bytes: $0.bytes) }.filter { repo.contains($0) }
            let plan = try objectsToSend(repo: repo, name: name, wants: wants, haves: haves, allTips: tips)
            MemoryTrace.mark("serve: walked \(plan.objects.count) objects")
            let offsetDeltas = connection.peer?.capabilities.contains(SyncClient.offsetDeltaCapability) ?? false
            // Thin packs too, only to peers that announce ofs-delta (they consolidate
            // the bases appended to complete them away); others get what they always did.
            let stream = PackStream(repository: repo, objects: plan.objects, offsetDeltas: offsetDeltas,
                                    thinBases: offsetDeltas ? plan.excluded : [])
            var inflight: [EventLoopFuture<Void>] = []
            while let chunk = try stream.nextChunk(maxBytes: Self.chunkSize) {
                inflight.append(connection.send(.sync(.objects(Objects(requestID: id, final: false, data: chunk)))))
                if inflight.count >= window { try awaitWrite(inflight.removeFirst(), connection) }
            }
            inflight.append(connection.send(.sync(.objects(Objects(requestID: id, final: true, data: [])))))
            for f in inflight { try awaitWrite(f, connection) }
            MemoryTrace.mark("serve: streamed")
            let peer = connection.peer.map { $0.peerID.short } ?? connection.remoteAddress
            log("served '\(name)' to \(peer): \(plan.objects.count) objects, \(stream.bytesProduced) bytes (\(stream.reusedObjects) reused, \(stream.reusedDeltas) deltas, \(stream.offsetDeltaCount) as OFS_DELTA, \(stream.thinDeltaCount) thin) in \(Int(Instant.now().seconds(since: started) * 1000)) ms (\(plan.source) \(Int(plan.seconds * 1000)) ms)")
            if let record = plan.record {
                // The walk just made, kept for the next mirror of the same refs.
                do {
                    try record.file.write(for: record.pack)
                } catch {
                    log("cannot write \(ReachabilityFile.path(forPack: record.pack.packPath)): \(error)")
                }
            }
        } catch let e as TransportError {
            log("transfer of '\(name)' to \(connection.remoteAddress) stopped: \(e)")
        } catch is Stalled {
            log("transfer of '\(name)' to \(connection.remoteAddress) stopped: the peer read nothing for \(stallTimeout) s; disconnected")
            onStall(connection)
        } catch {
            log("cannot serve '\(name)': \(error)")
            fail(.internalError, "cannot produce objects: \(error)")
        }
    }

    struct Stalled: Error {}

    /// What a transfer sends, and how that was found.
    struct SendPlan {
        var objects: [ObjectID]
        var excluded: Set<ObjectID>
        /// "reachability file" or "walk".
        var source: String
        var seconds: Double
        /// A full walk from every current tip that fits in one pack: worth saving.
        var record: (file: ReachabilityFile, pack: PackReader)?
    }

    /// The objects to send for `wants` (each a current ref tip, checked by the caller)
    /// down to `haves`. A request with no haves whose wants are exactly the tips a
    /// pack's reachability file was written for is answered from the file, without
    /// walking; otherwise the history is walked, and a walk from every current tip
    /// with no haves is returned for recording.
    func objectsToSend(repo: Repository, name: RepositoryName, wants: [ObjectID], haves: [ObjectID],
                       allTips: Set<ObjectID>) throws -> SendPlan {
        let started = Instant.now()
        let asked = ReachabilityFile.normalize(wants)
        if haves.isEmpty && !asked.isEmpty {
            for pack in repo.packs {
                guard let file = ReachabilityFile.load(for: pack, problem: { self.log("ignoring \($0)") }), file.tips == asked else { continue }
                do {
                    let objects = try file.objects(in: pack)
                    return SendPlan(objects: objects, excluded: [], source: "reachability file",
                                    seconds: Instant.now().seconds(since: started), record: nil)
                } catch {
                    log("ignoring \(ReachabilityFile.path(forPack: pack.packPath)): \(error)")
                }
            }
        }
        // A reachability file whose tips are all among the haves marks objects the
        // receiver has, with all they reach: the walk stops at them instead of reading
        // the haves' history and the boundary's whole tree.
        let closed = haves.isEmpty ? ClosedObjects()
            : ClosedObjects.load(repo.packs, coveredBy: Set(haves), problem: { self.log("ignoring \($0)") })
        // Our own objects were hashed when they came in: the walk does not hash them
        // again (the receiver hashes everything it gets).
        let walk = try ObjectWalk(store: repo, verifyReads: false, closed: closed).objects(reachableFrom: wants, excluding: haves)
        var record: (ReachabilityFile, PackReader)?
        if haves.isEmpty && !asked.isEmpty && Set(asked) == allTips, let pack = repo.packs.max(by: { $0.count < $1.count }),
           let file = ReachabilityFile.from(walked: walk.objects, tips: asked, pack: pack) {
            record = (file, pack)
        }
        return SendPlan(objects: walk.objects, excluded: walk.excluded, source: closed.isEmpty ? "walk" : "walk to the reachability file",
                        seconds: Instant.now().seconds(since: started), record: record)
    }

    /// Waits for a write to reach the socket. A peer that takes no bytes at all for
    /// `stallTimeout` seconds is cut off (a slow reader is fine, as long as the bytes
    /// queued for it keep going down): the channel is closed outright, since a Goodbye
    /// would queue behind the very bytes it does not read.
    func awaitWrite(_ write: EventLoopFuture<Void>, _ connection: any PeerLink) throws {
        struct Watch {
            var buffered = Int.max
            var lastProgress = Instant.now()
            var stalled = false
        }
        let watch = NIOLockedValueBox(Watch())
        let limit = stallTimeout
        let tick = TimeAmount.nanoseconds(Int64(min(1, limit / 4) * 1e9))
        let task = write.eventLoop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { task in
            connection.pendingOutboundBytes().whenSuccess { now in
                let cut = watch.withLockedValue { w -> Bool in
                    if now < w.buffered { w.lastProgress = Instant.now() }
                    w.buffered = now
                    w.stalled = w.stalled || Instant.now().seconds(since: w.lastProgress) >= limit
                    return w.stalled
                }
                if cut {
                    task.cancel()
                    connection.abort()
                }
            }
        }
        defer { task.cancel() }
        do {
            try write.wait()
        } catch {
            if watch.withLockedValue({ $0.stalled }) { throw Stalled() }
            throw error
        }
    }
}
