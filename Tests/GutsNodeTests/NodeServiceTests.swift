import XCTest
import GutsAddress
import GutsCrypto
import GutsGit
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust
import GutsWire
@testable import GutsNode

/// The node service driven alone, with a virtual clock: no sockets, no threads.
final class NodeServiceTests: XCTestCase {
    let seed: UInt64 = 0x6e6f_6465
    var now = Instant(nanoseconds: 1_000_000_000)

    func peer() -> PeerID {
        guard let id = try? PeerID(publicKey: Ed25519KeyPair.generate().publicKey) else { preconditionFailure("key") }
        return id
    }

    func info(_ id: PeerID, _ caps: [String] = ["ping", "refs", "objects", "gossip"]) -> PeerInfo {
        PeerInfo(peerID: id, version: 1, capabilities: caps, agent: "test", handshakeSeconds: 0.001)
    }

    func advance(_ s: Double) { now = now.adding(seconds: s) }

    func oid(_ fill: UInt8) -> ObjectID {
        guard let id = ObjectID(bytes: [UInt8](repeating: fill, count: 20)) else { preconditionFailure("oid") }
        return id
    }

    func name(_ s: String) -> RepositoryName {
        guard let n = RepositoryName(s) else { preconditionFailure("name") }
        return n
    }

    func dials(_ actions: [NodeAction]) -> [Int] {
        actions.compactMap { if case let .dial(b, _) = $0 { return b } else { return nil } }
    }

    func publishes(_ actions: [NodeAction]) -> [Announcement] {
        actions.compactMap { if case let .publish(_, a) = $0 { return a } else { return nil } }
    }

    func mirrorJobs(_ actions: [NodeAction]) -> [MirrorJob] {
        actions.compactMap { if case let .mirror(j) = $0 { return j } else { return nil } }
    }

    // MARK: known_peers

    func testBootstrapWithoutPeerIDIsPinnedToItsFirstIdentityAndRecorded() throws {
        var options = NodeService.Options()
        options.bootstrap = [try Endpoint.parse("127.0.0.1:9000"), try Endpoint.parse("127.0.0.1:9001")]
        options.learnBootstrap = [0]
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        XCTAssertEqual(dials(s.handle(.started, now: now)), [0, 1])
        let first = peer()
        let out = s.handle(.established(1, info(first), address: "127.0.0.1:9000", inbound: false, bootstrap: 0), now: now)
        XCTAssertTrue(out.contains(.remember(bootstrap: 0, address: "127.0.0.1:9000", first)), "\(out)")
        // Not learning: index 1 is neither pinned nor recorded.
        let other = s.handle(.established(2, info(peer()), address: "127.0.0.1:9001", inbound: false, bootstrap: 1), now: now)
        XCTAssertFalse(other.contains { if case .remember = $0 { return true } else { return false } })
        // The redial after a disconnect demands the identity first seen.
        _ = s.handle(.closed(1, reason: "lost"), now: now)
        _ = s.handle(.closed(2, reason: "lost"), now: now)
        advance(5)
        let redials = s.handle(.tick, now: now).compactMap { a -> Endpoint? in if case let .dial(_, e) = a { return e } else { return nil } }
        XCTAssertEqual(redials.map(\.peer), [first, nil])
        // A second session (same identity) records nothing new.
        let again = s.handle(.established(3, info(first), address: "127.0.0.1:9000", inbound: false, bootstrap: 0), now: now)
        XCTAssertFalse(again.contains { if case .remember = $0 { return true } else { return false } })
    }

    // MARK: Simultaneous dial

    func disconnects(_ actions: [NodeAction]) -> [LinkID] {
        actions.compactMap { if case let .disconnect(l, _, _) = $0 { return l } else { return nil } }
    }

    /// Two peers ordered by ID: (lower, higher).
    func orderedPeers() -> (PeerID, PeerID) {
        let a = peer(), b = peer()
        return a < b ? (a, b) : (b, a)
    }

    func testSimultaneousDialKeepsTheSessionDialedByTheLowerPeerID() throws {
        let (low, high) = orderedPeers()
        var options = NodeService.Options()
        options.bootstrap = [try Endpoint.parse("127.0.0.1:9000")]
        // This node is the lower ID: it keeps the session it dialed, whichever came first.
        var s = NodeService(options: options, localPeer: low, seed: seed)
        _ = s.handle(.started, now: now)
        XCTAssertEqual(disconnects(s.handle(.established(1, info(high), address: "127.0.0.1:9000", inbound: false, bootstrap: 0), now: now)), [])
        XCTAssertEqual(disconnects(s.handle(.established(2, info(high), address: "127.0.0.1:40000", inbound: true, bootstrap: nil), now: now)), [2])
        var t = NodeService(options: NodeService.Options(), localPeer: low, seed: seed)
        _ = t.handle(.established(5, info(high), address: "127.0.0.1:40000", inbound: true, bootstrap: nil), now: now)
        XCTAssertEqual(disconnects(t.handle(.established(6, info(high), address: "127.0.0.1:9000", inbound: false, bootstrap: nil), now: now)), [5])
        XCTAssertTrue(PeerManager.keepsOwnDial(local: low, remote: high))
        XCTAssertFalse(PeerManager.keepsOwnDial(local: high, remote: low))
    }

    func testTheHigherPeerIDDropsItsOwnDialAndTheBootstrapRoleMoves() throws {
        let (low, high) = orderedPeers()
        var options = NodeService.Options()
        options.bootstrap = [try Endpoint.parse("127.0.0.1:9000")]
        var s = NodeService(options: options, localPeer: high, seed: seed)
        _ = s.handle(.started, now: now)
        _ = s.handle(.established(1, info(low), address: "127.0.0.1:9000", inbound: false, bootstrap: 0), now: now)
        let out = s.handle(.established(2, info(low), address: "127.0.0.1:40000", inbound: true, bootstrap: nil), now: now)
        XCTAssertEqual(disconnects(out), [1])
        XCTAssertTrue(out.contains(.disconnect(1, .shutdown, PeerManager.duplicateReason)), "\(out)")
        // The dropped session's close does not redial the bootstrap peer...
        _ = s.handle(.closed(1, reason: "duplicate"), now: now)
        advance(60)
        XCTAssertEqual(dials(s.handle(.tick, now: now)), [])
        // ...the kept session's close does.
        _ = s.handle(.closed(2, reason: "lost"), now: now)
        advance(60)
        XCTAssertEqual(dials(s.handle(.tick, now: now)), [0])
    }

    func testOnlyNodeSessionsInOppositeDirectionsAreDuplicates() throws {
        let (low, high) = orderedPeers()
        var s = NodeService(options: NodeService.Options(), localPeer: high, seed: seed)
        _ = s.handle(.established(1, info(low), address: "127.0.0.1:9000", inbound: false, bootstrap: nil), now: now)
        // A one-shot command run with the peer's identity (no gossip capability).
        XCTAssertEqual(disconnects(s.handle(.established(2, info(low, ["ping", "ofs-delta"]), address: "127.0.0.1:40000", inbound: true, bootstrap: nil), now: now)), [])
        // A gossip client.
        XCTAssertEqual(disconnects(s.handle(.established(3, info(low, ["gossip", "gossip-client"]), address: "127.0.0.1:40001", inbound: true, bootstrap: nil), now: now)), [])
        // Two sessions the same way.
        XCTAssertEqual(disconnects(s.handle(.established(4, info(low), address: "127.0.0.1:9000", inbound: false, bootstrap: nil), now: now)), [])
    }

    // MARK: Reconnect backoff

    func testBootstrapIsDialledAtStartAndRetriedWithGrowingJitteredBackoff() throws {
        var options = NodeService.Options()
        options.bootstrap = [try Endpoint.parse("127.0.0.1:9000")]
        options.minBackoff = 1
        options.maxBackoff = 8
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        XCTAssertEqual(dials(s.handle(.started, now: now)), [0], "dialled at once")
        XCTAssertEqual(dials(s.handle(.tick, now: now)), [], "not again while the dial is under way")
        var expected = 1.0
        for attempt in 0..<6 {
            _ = s.handle(.dialFailed(bootstrap: 0, reason: "refused"), now: now)
            let deadline = try XCTUnwrap(s.nextDeadline, "seed \(seed)")
            let wait = deadline.seconds(since: now)
            XCTAssertGreaterThanOrEqual(wait, expected * 0.8 - 1e-9, "attempt \(attempt), seed \(seed)")
            XCTAssertLessThanOrEqual(wait, expected * 1.2 + 1e-9, "attempt \(attempt), seed \(seed)")
            XCTAssertEqual(dials(s.handle(.tick, now: Instant(nanoseconds: deadline.nanoseconds - 10_000_000))), [], "not before its time")
            now = deadline
            XCTAssertEqual(dials(s.handle(.tick, now: now)), [0])
            expected = min(8, expected * 2)
        }
        // Success resets the backoff; a later disconnect redials after the minimum.
        let p = peer()
        _ = s.handle(.established(7, info(p), address: "127.0.0.1:9000", inbound: false, bootstrap: 0), now: now)
        XCTAssertNil(s.nextDeadline)
        let closed = s.handle(.closed(7, reason: "connection lost"), now: now)
        XCTAssertTrue(closed.contains { if case let .log(_, t) = $0 { return t.contains("reconnecting") } else { return false } })
        let wait = try XCTUnwrap(s.nextDeadline).seconds(since: now)
        XCTAssertLessThanOrEqual(wait, 1.2 + 1e-9)
        now = try XCTUnwrap(s.nextDeadline)
        XCTAssertEqual(dials(s.handle(.tick, now: now)), [0])
        // After stop nothing is dialled again.
        _ = s.handle(.dialFailed(bootstrap: 0, reason: "refused"), now: now)
        s.stop()
        advance(100)
        XCTAssertEqual(dials(s.handle(.tick, now: now)), [])
    }

    func testJitterIsReproducibleFromTheSeed() throws {
        func deadlines(_ seed: UInt64) throws -> [UInt64] {
            var options = NodeService.Options()
            options.bootstrap = [try Endpoint.parse("127.0.0.1:9000")]
            var s = NodeService(options: options, localPeer: peer(), seed: seed)
            let t = Instant(nanoseconds: 5_000_000_000)
            _ = s.handle(.started, now: t)
            var out: [UInt64] = []
            for _ in 0..<4 {
                _ = s.handle(.dialFailed(bootstrap: 0, reason: "x"), now: t)
                out.append(try XCTUnwrap(s.nextDeadline).nanoseconds)
                _ = s.handle(.tick, now: Instant(nanoseconds: out.last ?? 0))
            }
            return out
        }
        XCTAssertEqual(try deadlines(seed), try deadlines(seed))
        XCTAssertNotEqual(try deadlines(seed), try deadlines(seed + 1))
    }

    // MARK: Announcements

    func rid(_ fill: UInt8) -> RepositoryID {
        guard let id = RepositoryID(bytes: [UInt8](repeating: fill, count: 32)) else { preconditionFailure("rid") }
        return id
    }

    func unsigned(_ fill: UInt8) -> ScannedRepository {
        ScannedRepository(refsHash: [UInt8](repeating: fill, count: 32), hasRefs: true)
    }

    func signed(_ id: RepositoryID, _ states: [PeerID: (UInt64, UInt8)], signed: UInt64? = nil, by signer: PeerID? = nil) -> ScannedRepository {
        ScannedRepository(id: id, states: states.mapValues { SignedHead(sequence: $0.0, commit: oid($0.1)) }, hasRefs: true,
                          signed: signed, signer: signer)
    }

    func testAnnouncerScansOnScheduleAndAnnouncesEachChangeOnce() throws {
        var options = NodeService.Options()
        options.serving = true
        options.announceInterval = 2
        let me = peer(), other = peer()
        var s = NodeService(options: options, localPeer: me, seed: seed)
        XCTAssertFalse(s.handle(.started, now: now).contains(.scan), "the first scan waits a moment")
        advance(1)
        XCTAssertTrue(s.handle(.tick, now: now).contains(.scan))
        XCTAssertFalse(s.handle(.tick, now: now).contains(.scan), "never two scans at once")
        // First scan: repositories only, plus what this node signed during the scan.
        let first = publishes(s.handle(.scanned([
            name("a/x"): unsigned(1),
            name("s/y"): signed(rid(1), [me: (3, 30), other: (7, 70)], signed: 3, by: me),
        ]), now: now))
        XCTAssertEqual(first, [
            .newRepository(NewRepository(repository: "a/x")),
            .newRepository(NewRepository(repository: "s/y")),
            .signedRefs(SignedRefsUpdate(repository: rid(1), delegate: me, sequence: 3, signedRefs: try XCTUnwrap(WireOID(oid(30).bytes)))),
        ])
        XCTAssertEqual(try XCTUnwrap(s.nextDeadline).seconds(since: now), 2, accuracy: 1e-9)
        advance(2)
        XCTAssertTrue(s.handle(.tick, now: now).contains(.scan))
        // Changed refs of the unsigned repository, a new state of the other delegate (a
        // sync installed it), and a new unsigned repository with refs: one message each.
        let second = publishes(s.handle(.scanned([
            name("a/x"): unsigned(2),
            name("b/z"): unsigned(3),
            name("s/y"): signed(rid(1), [me: (3, 30), other: (8, 80)]),
        ]), now: now))
        XCTAssertEqual(second, [
            .refsChanged(RefsChanged(repository: "a/x", refsHash: [UInt8](repeating: 2, count: 32))),
            .newRepository(NewRepository(repository: "b/z")),
            .refsChanged(RefsChanged(repository: "b/z", refsHash: [UInt8](repeating: 3, count: 32))),
            .signedRefs(SignedRefsUpdate(repository: rid(1), delegate: other, sequence: 8, signedRefs: try XCTUnwrap(WireOID(oid(80).bytes)))),
        ])
        advance(2)
        _ = s.handle(.tick, now: now)
        XCTAssertEqual(publishes(s.handle(.scanned([
            name("a/x"): unsigned(2), name("b/z"): unsigned(3), name("s/y"): signed(rid(1), [me: (3, 30), other: (8, 80)]),
        ]), now: now)), [], "nothing changed, nothing announced")
    }

    func testAnnouncerReportsBrokenRepositoriesOnceAndNeverAnnouncesThem() {
        var options = NodeService.Options()
        options.serving = true
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        _ = s.handle(.started, now: now)
        for _ in 0..<3 {
            advance(2)
            _ = s.handle(.tick, now: now)
            let out = s.handle(.scanned([name("bad/one"): ScannedRepository(problem: "its identity does not verify: x")]), now: now)
            XCTAssertEqual(publishes(out), [])
        }
    }

    func testNodeThatServesNothingNeverScans() {
        var s = NodeService(options: NodeService.Options(), localPeer: peer(), seed: seed)
        _ = s.handle(.started, now: now)
        advance(100)
        XCTAssertFalse(s.handle(.tick, now: now).contains(.scan))
        XCTAssertNil(s.nextDeadline)
    }

    // MARK: Mirroring

    func testMirrorSyncsCoalesce() throws {
        let origin = peer()
        var options = NodeService.Options()
        options.serving = true
        options.mirrors = [MirrorSpec(repository: .id(rid(1)), peer: nil)]
        options.mirrorAtStart = false
        options.mirrorInterval = 0
        let me = peer()
        var s = NodeService(options: options, localPeer: me, seed: seed)
        _ = s.handle(.started, now: now)
        let server = peer()
        _ = s.handle(.established(3, info(server), address: "127.0.0.1:1", inbound: true, bootstrap: nil), now: now)
        _ = s.handle(.established(4, info(origin), address: "127.0.0.1:2", inbound: true, bootstrap: nil), now: now)
        _ = s.handle(.established(5, info(peer(), ["ping", "gossip-client"]), address: "127.0.0.1:3", inbound: true, bootstrap: nil), now: now)
        let delegate = peer()
        let update = Announcement.signedRefs(SignedRefsUpdate(repository: rid(1), delegate: delegate, sequence: 2, signedRefs: try XCTUnwrap(WireOID(oid(1).bytes))))
        let jobs = mirrorJobs(s.handle(.announced(update, origin: origin), now: now))
        XCTAssertEqual(jobs.count, 1)
        XCTAssertEqual(jobs.first?.links, [4, 3], "the announcer first; gossip clients never")
        XCTAssertEqual(jobs.first?.expected, [delegate: 2])
        // Three more announcements while it runs: no new job now, exactly one afterwards.
        for _ in 0..<3 { XCTAssertEqual(mirrorJobs(s.handle(.announced(update, origin: origin), now: now)), []) }
        XCTAssertEqual(s.mirrorer.active, 1)
        let after = s.handle(.mirrored(spec: 0, .updated(from: "x", refs: 1, objects: 3)), now: now)
        XCTAssertEqual(mirrorJobs(after).count, 1)
        XCTAssertTrue(after.contains { if case let .log(_, t) = $0 { return t.contains("mirror: synced \(rid(1))") } else { return false } })
        XCTAssertTrue(after.contains(.scan), "a finished mirror is announced promptly")
        XCTAssertEqual(mirrorJobs(s.handle(.mirrored(spec: 0, .upToDate(from: "x")), now: now)), [])
        XCTAssertEqual(s.mirrorer.active, 0)
        // Other repository IDs and this node's own announcements start nothing.
        let other = Announcement.signedRefs(SignedRefsUpdate(repository: rid(2), delegate: delegate, sequence: 2, signedRefs: try XCTUnwrap(WireOID(oid(1).bytes))))
        XCTAssertEqual(mirrorJobs(s.handle(.announced(other, origin: origin), now: now)), [])
        XCTAssertEqual(mirrorJobs(s.handle(.announced(update, origin: me), now: now)), [])
    }

    func testSignedAnnouncementsNotNewerThanInstalledStartNothing() throws {
        var options = NodeService.Options()
        options.serving = true
        options.mirrors = [MirrorSpec(repository: name("demo/app"), peer: nil)]
        options.mirrorAtStart = false
        let delegate = peer(), announcer = peer()
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        _ = s.handle(.started, now: now)
        advance(1)
        _ = s.handle(.tick, now: now)
        // The mirror is pinned to rid(1) with the delegate at sequence 5.
        _ = s.handle(.scanned([name("demo/app"): signed(rid(1), [delegate: (5, 50)])]), now: now)
        func announce(_ id: RepositoryID, _ seq: UInt64) throws -> [MirrorJob] {
            mirrorJobs(s.handle(.announced(.signedRefs(SignedRefsUpdate(repository: id, delegate: delegate, sequence: seq,
                                                                        signedRefs: try XCTUnwrap(WireOID(oid(9).bytes)))), origin: announcer), now: now))
        }
        XCTAssertEqual(try announce(rid(1), 4), [], "an old state (replay) is ignored")
        XCTAssertEqual(try announce(rid(1), 5), [], "the installed state")
        XCTAssertEqual(try announce(rid(2), 99), [], "another identity under the same name")
        XCTAssertEqual(mirrorJobs(s.handle(.announced(.refsChanged(RefsChanged(repository: "demo/app", refsHash: [UInt8](repeating: 1, count: 32))),
                                                      origin: announcer), now: now)), [], "unsigned announcements of a signed repository")
        let jobs = try announce(rid(1), 6)
        XCTAssertEqual(jobs.count, 1)
        XCTAssertEqual(jobs.first?.expected, [delegate: 6])
    }

    func testUnsignedAndUnpinnedMirrorsFollowOnlyTheNamedPeer() throws {
        let named = peer(), stranger = peer()
        var options = NodeService.Options()
        options.serving = true
        options.mirrors = [MirrorSpec(repository: name("demo/app"), peer: try Endpoint.parse("\(named)@127.0.0.1:9000")),
                           MirrorSpec(repository: name("other/app"), peer: nil)]
        options.mirrorAtStart = false
        options.mirrorInterval = 0
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        _ = s.handle(.started, now: now)
        let changed = Announcement.refsChanged(RefsChanged(repository: "demo/app", refsHash: [UInt8](repeating: 1, count: 32)))
        XCTAssertEqual(mirrorJobs(s.handle(.announced(changed, origin: stranger), now: now)), [])
        let jobs = mirrorJobs(s.handle(.announced(changed, origin: named), now: now))
        XCTAssertEqual(jobs.map(\.onlyFrom), [named])
        // Nothing pinned yet: a first signed announcement counts only from the named peer.
        let first = Announcement.signedRefs(SignedRefsUpdate(repository: rid(3), delegate: stranger, sequence: 1, signedRefs: try XCTUnwrap(WireOID(oid(1).bytes))))
        _ = s.handle(.mirrored(spec: 0, .upToDate(from: "x")), now: now)
        XCTAssertEqual(mirrorJobs(s.handle(.announced(first, origin: stranger), now: now)), [])
        XCTAssertEqual(mirrorJobs(s.handle(.announced(first, origin: named), now: now)).map(\.index), [0])
        _ = s.handle(.mirrored(spec: 0, .upToDate(from: "x")), now: now)
        // An unsigned local copy whose named peer starts signing: still only that peer.
        advance(3)
        _ = s.handle(.tick, now: now)
        _ = s.handle(.scanned([name("demo/app"): unsigned(4)]), now: now)
        XCTAssertEqual(mirrorJobs(s.handle(.announced(first, origin: stranger), now: now)), [])
        XCTAssertEqual(mirrorJobs(s.handle(.announced(first, origin: named), now: now)).map(\.index), [0])
        // A mirror with no named peer and nothing pinned follows nobody.
        let otherChanged = Announcement.refsChanged(RefsChanged(repository: "other/app", refsHash: [UInt8](repeating: 1, count: 32)))
        XCTAssertEqual(mirrorJobs(s.handle(.announced(otherChanged, origin: stranger), now: now)), [])
    }

    /// Each followed repository is synced at start (once a peer is there to ask) and then
    /// every interval ±10% after its last sync ended, on the virtual clock; the jitter
    /// comes from the seed.
    func testMirrorsSyncAtStartAndCatchUpOnAJitteredSchedule() throws {
        let named = peer()
        var options = NodeService.Options()
        options.serving = true
        options.mirrorInterval = 100
        options.mirrors = [MirrorSpec(repository: .id(rid(1)), peer: nil),
                           MirrorSpec(repository: name("demo/app"), peer: try Endpoint.parse("\(named)@127.0.0.1:9000"))]
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        // At start: the one with an address syncs at once; the other waits for a peer.
        let started = mirrorJobs(s.handle(.started, now: now))
        XCTAssertEqual(started.map(\.index), [1], "seed \(seed)")
        XCTAssertNil(started.first?.origin)
        XCTAssertEqual(mirrorJobs(s.handle(.tick, now: now)), [], "not twice")
        // A gossip client serves no objects: still waiting.
        XCTAssertEqual(mirrorJobs(s.handle(.established(7, info(peer(), ["ping", "gossip-client"]), address: "127.0.0.1:3",
                                                        inbound: true, bootstrap: nil), now: now)), [])
        let server = peer()
        let joined = mirrorJobs(s.handle(.established(3, info(server), address: "127.0.0.1:1", inbound: false, bootstrap: nil), now: now))
        XCTAssertEqual(joined.map(\.index), [0])
        XCTAssertEqual(joined.first?.links, [3])
        // Nothing is planned while both run.
        XCTAssertNil(s.mirrorer.nextSync[0])
        // Finished: the next catch-up is 90 to 110 s later.
        _ = s.handle(.mirrored(spec: 0, .upToDate(from: "x")), now: now)
        let due = try XCTUnwrap(s.mirrorer.nextSync[0])
        let wait = due.seconds(since: now)
        XCTAssertGreaterThanOrEqual(wait, 90, "seed \(seed)")
        XCTAssertLessThanOrEqual(wait, 110, "seed \(seed)")
        XCTAssertNotNil(s.nextDeadline)
        XCTAssertLessThanOrEqual(try XCTUnwrap(s.nextDeadline), due)
        advance(wait - 0.5)
        XCTAssertEqual(mirrorJobs(s.handle(.tick, now: now)), [], "not before its time")
        advance(0.5)
        let catchUp = s.handle(.tick, now: now)
        XCTAssertEqual(mirrorJobs(catchUp).map(\.index), [0])
        XCTAssertTrue(catchUp.contains(.log(.debug, "mirror: catch-up sync of \(rid(1))")), "\(catchUp)")
        // An announcement while the catch-up runs coalesces into one more run after it.
        let update = Announcement.signedRefs(SignedRefsUpdate(repository: rid(1), delegate: named, sequence: 3,
                                                              signedRefs: try XCTUnwrap(WireOID(oid(1).bytes))))
        XCTAssertEqual(mirrorJobs(s.handle(.announced(update, origin: server), now: now)), [])
        let again = mirrorJobs(s.handle(.mirrored(spec: 0, .updated(from: "x", refs: 1, objects: 1)), now: now))
        XCTAssertEqual(again.map(\.expected), [[named: 3]])
        XCTAssertNil(s.mirrorer.nextSync[0], "planned only when no run is left")

        // The jitter is reproducible from the seed, and spread.
        func plannedWait(_ seed: UInt64) -> Double {
            var options = NodeService.Options()
            options.mirrorInterval = 100
            options.mirrors = [MirrorSpec(repository: name("demo/app"), peer: try? Endpoint.parse("127.0.0.1:9000"))]
            var t = NodeService(options: options, localPeer: peer(), seed: seed)
            _ = t.handle(.started, now: now)
            _ = t.handle(.mirrored(spec: 0, .upToDate(from: "x")), now: now)
            return t.mirrorer.nextSync[0].map { $0.seconds(since: now) } ?? -1
        }
        XCTAssertEqual(plannedWait(seed), plannedWait(seed))
        let waits = Set((0..<20).map { plannedWait(seed &+ UInt64($0)) })
        XCTAssertGreaterThan(waits.count, 10, "jittered: \(waits.sorted())")
        XCTAssertTrue(waits.allSatisfy { (90...110).contains($0) }, "\(waits.sorted())")

        // 0 turns the catch-up off; the initial sync stays.
        options.mirrorInterval = 0
        var off = NodeService(options: options, localPeer: peer(), seed: seed)
        XCTAssertEqual(mirrorJobs(off.handle(.started, now: now)).map(\.index), [1])
        _ = off.handle(.mirrored(spec: 1, .upToDate(from: "x")), now: now)
        XCTAssertNil(off.mirrorer.nextSync[1])
    }

    func testMisbehaviourIsReportedWithItsKind() {
        var options = NodeService.Options()
        options.serving = true
        options.mirrors = [MirrorSpec(repository: .id(rid(1)), peer: nil)]
        var s = NodeService(options: options, localPeer: peer(), seed: seed)
        let bad = peer()
        let out = s.handle(.mirrored(spec: 0, .failed(MirrorFailure(.stale, peer: bad, "old signed refs"))), now: now)
        XCTAssertTrue(out.contains { if case let .log(_, t) = $0 { return t.contains("misbehaved: stale") && t.contains(bad.short) } else { return false } }, "\(out)")
        XCTAssertTrue(MirrorFailure(.forged, peer: bad, "x").penalizes)
        XCTAssertFalse(MirrorFailure(.unreachable, peer: bad, "x").penalizes)
        XCTAssertFalse(MirrorFailure(.forged, peer: nil, "x").penalizes)
    }

    // MARK: Requests

    func testRequestsAreDispatchedByCapability() {
        var serving = NodeService.Options()
        serving.serving = true
        var s = NodeService(options: serving, localPeer: peer(), seed: seed)
        let get = SyncMessage.getRefs(GetRefs(requestID: 9, repository: "a/b"))
        XCTAssertEqual(s.handle(.message(1, .sync(get)), now: now), [.serve(1, get)])

        var plain = NodeService(options: NodeService.Options(), localPeer: peer(), seed: seed)
        XCTAssertEqual(plain.handle(.message(1, .sync(get)), now: now),
                       [.send(1, .error(ErrorReply(requestID: 9, code: .badRequest, message: "this node does not offer the 'refs' capability")))])
        let objects = SyncMessage.getObjects(GetObjects(requestID: 10, repository: "a/b", wants: [], haves: []))
        XCTAssertEqual(plain.handle(.message(1, .sync(objects)), now: now),
                       [.send(1, .error(ErrorReply(requestID: 10, code: .badRequest, message: "this node does not offer the 'objects' capability")))])
        // Answers nobody asked for are dropped, never queued.
        let unsolicited = s.handle(.message(1, .sync(.refs(Refs(requestID: 1, head: "", refs: [])))), now: now)
        XCTAssertEqual(unsolicited.count, 1)
        if case .log(.debug, _)? = unsolicited.first {} else { XCTFail("expected only a debug log, got \(unsolicited)") }
    }

    func testPeerStringsAreEscapedInLogs() {
        var s = NodeService(options: NodeService.Options(), localPeer: peer(), seed: seed)
        let evil = PeerInfo(peerID: peer(), version: 1, capabilities: [], agent: "x\u{1b}[2Jy", handshakeSeconds: 0)
        let out = s.handle(.established(1, evil, address: "127.0.0.1:1", inbound: true, bootstrap: nil), now: now)
        guard case let .log(_, text)? = out.first else { return XCTFail("no log") }
        XCTAssertFalse(text.contains("\u{1b}"))
        XCTAssertTrue(text.contains("x\\x1b[2Jy"), text)
    }
}
