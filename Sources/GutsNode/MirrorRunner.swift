import GutsAddress
import GutsGit
import GutsIdentity
import GutsPolicy
import GutsSync
import GutsTransport
import GutsTrust

/// Runs one mirror sync for the node (blocking; on the mirror executor). Signed
/// repositories are synced from whoever announced, then any connected peer: what they
/// serve is verified. A repository not pinned yet (no identity here, not followed by
/// ID) and an unsigned one are synced only from the peer the user named. The first peer
/// that misbehaves (forged, stale or invalid data) ends the run with a failure that
/// names it; unavailable peers are skipped.
enum MirrorRunner {
    static func run(_ job: MirrorJob, root: String, localPeer: PeerID, connected: [any PeerLink],
                    maxPacks: Int = PackMaintenance.defaultMaxPacks, log: (String) -> Void = { _ in },
                    record: (ScoreEvent, any PeerLink, String) -> Void = { _, _, _ in },
                    dial: (Endpoint) -> (any PeerLink)?) -> MirrorOutcome {
        let spec = job.spec
        let pinned: Bool
        switch spec.repository {
        case .id: pinned = true
        case let .name(n):
            let repo = try? Repository.open(n.path(in: root))
            pinned = repo.flatMap { try? TrustStore.identity(of: $0) } != nil
        }
        let named = spec.trusted
        var candidates = connected
        if !pinned || job.onlyFrom != nil {
            guard let only = job.onlyFrom ?? named else {
                return .failed(MirrorFailure(.untrusted, peer: nil, "\(spec) is not pinned yet; follow it as \(spec)@PEERID with a delegate's peer ID, or by repository ID"))
            }
            candidates = candidates.filter { $0.peer?.peerID == only }
        }
        var dialled: (any PeerLink)?
        if let endpoint = spec.peer, candidates.first.map({ $0.peer?.peerID != job.origin }) ?? true,
           pinned || endpoint.peer == (job.onlyFrom ?? named) {
            dialled = dial(endpoint)
            if let dialled { candidates.insert(dialled, at: 0) }
        }
        defer { dialled?.close(.shutdown, "mirror sync finished") }
        var last = MirrorFailure(.unreachable, peer: nil, "no peer that serves objects is connected")
        for connection in candidates {
            let peer = connection.peer?.peerID
            let who = connection.peer.map { "\($0.peerID.short)@\(connection.remoteAddress)" } ?? connection.remoteAddress
            // Only the announcer promised those sequences; others may lag behind honestly.
            let request = SignedSyncRequest(repository: spec.repository, namedPeer: named, localPeer: localPeer,
                                            expected: peer == job.origin ? job.expected : [:])
            do {
                // Mirrors run on their own executor, so they may wait for a cron sync or
                // maintenance holding the repository's lock.
                let report = try SignedSync.run(request, to: .root(root), over: connection, options: SyncOptions(lockWait: 60, maxPacks: maxPacks))
                if let c = report.sync.consolidated {
                    log("consolidated \(c.packsRemoved) packs and \(c.looseRemoved) loose objects of \(spec) into one: \(c.objects) objects, \(c.bytesBefore) -> \(c.bytesAfter) bytes")
                }
                if let problem = report.sync.maintenanceProblem { log("warning: \(problem)") }
                if report.sync.objectsReceived > 0 { record(.objectsServed, connection, "served verified objects") }
                return report.sync.upToDate ? .upToDate(from: who)
                    : .updated(from: who, refs: report.sync.changes.count, objects: report.sync.objectsReceived)
            } catch let f as SyncFailure {
                let failure = MirrorFailure(kind(of: f), peer: peer, "\(who): \(f)")
                switch failure.kind {
                case .forged, .stale, .integrity, .identityMismatch: record(.badObjects, connection, "\(f)")
                case .protocolViolation: record(.protocolViolation, connection, "\(f)")
                case .timeout: record(.stall, connection, "\(f)")
                default: break
                }
                if failure.penalizes || failure.kind == .local { return .failed(failure) }
                last = failure
            } catch {
                last = MirrorFailure(.local, peer: nil, "\(who): \(error)")
            }
        }
        return .failed(last)
    }

    static func kind(of f: SyncFailure) -> MirrorFailure.Kind {
        switch f {
        case .forged: return .forged
        case .stale: return .stale
        case .integrity: return .integrity
        case .identityMismatch: return .identityMismatch
        case .untrusted: return .untrusted
        case .protocolViolation: return .protocolViolation
        case .timeout: return .timeout
        case .connection: return .unreachable
        case .notFound, .refused: return .refused
        case .local, .busy: return .local
        case .budget: return .integrity
        }
    }
}
