import GutsCrypto
import GutsGossip
import GutsSupport
import GutsWire
import XCTest

final class EngineTests: XCTestCase {
    // MARK: Dedup, expiry, bounds

    func testDuplicateIsDeliveredOnceAndPrunesItsSender() throws {
        var engine = try makeEngine(peers: [1, 2, 3])
        let g = signedGossip("hello", by: try keyPair(1))

        let first = engine.receive(.gossip(g), from: 1, now: at(1), wallClockMillis: wall(1))
        XCTAssertEqual(first.delivered, [g])
        XCTAssertEqual(first.first, .deliver(g, id: g.id, from: 1), "delivery comes first")
        XCTAssertEqual(first.gossipTargets, [2, 3])

        let second = engine.receive(.gossip(g), from: 2, now: at(1.01), wallClockMillis: wall(1))
        XCTAssertEqual(second, [.send(2, .prune(Prune(topic: "chat")))])
        XCTAssertEqual(engine.stats.received, 2)
        XCTAssertEqual(engine.stats.duplicates, 1)
        XCTAssertEqual(engine.stats.delivered, 1)
        XCTAssertEqual(engine.stats.pruneSent, 1)
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 3])
        XCTAssertEqual(engine.lazyPeers("chat"), [2])

        // Our own message coming back is a duplicate too.
        let (id, _) = try engine.publish(topic: "chat", data: [1], now: at(2), wallClockMillis: wall(2))
        XCTAssertEqual(id.count, 32)
        let back = engine.receive(.gossip(try XCTUnwrap(lastPublished(engine: &engine, topic: "chat", id: id))),
                                  from: 3, now: at(2.1), wallClockMillis: wall(2))
        XCTAssertEqual(back, [.send(3, .prune(Prune(topic: "chat")))])
    }

    /// Fetches a message from the engine's cache the way a peer would: with IWant.
    private func lastPublished(engine: inout GossipEngine, topic: String, id: [UInt8]) -> Gossip? {
        _ = engine.peerConnected(99, now: at(2))
        let answer = engine.receive(.iWant(IWant(ids: [id])), from: 99, now: at(2), wallClockMillis: wall(2))
        engine.peerDisconnected(99)
        for case let .send(_, .gossip(g)) in answer { return g }
        return nil
    }

    func testSeenEntriesExpireAndTheWindowRejectsTheReplay() throws {
        var engine = try makeEngine(peers: [1, 2])
        let g = signedGossip("old news", by: try keyPair(1), timestamp: wall(0))
        XCTAssertEqual(engine.receive(.gossip(g), from: 1, now: at(0), wallClockMillis: wall(0)).delivered, [g])
        XCTAssertEqual(engine.seenCount, 1)
        XCTAssertEqual(engine.cachedCount, 1)

        // The cache expires first (60 s), then the seen entry (120 s), each at its deadline.
        XCTAssertEqual(engine.nextDeadline, at(60))
        _ = engine.tick(now: at(60))
        XCTAssertEqual(engine.cachedCount, 0)
        XCTAssertEqual(engine.seenCount, 1)
        let retention = GossipConfig().seenRetention
        XCTAssertEqual(retention, 120)
        XCTAssertEqual(engine.nextDeadline, at(retention))
        _ = engine.tick(now: at(retention))
        XCTAssertEqual(engine.seenCount, 0, "the seen-cache shrinks")
        XCTAssertNil(engine.nextDeadline)

        // Replayed after it was forgotten: outside the acceptance window, so not re-delivered.
        let replay = engine.receive(.gossip(g), from: 2, now: at(retention + 1), wallClockMillis: wall(retention + 1))
        XCTAssertTrue(replay.delivered.isEmpty)
        XCTAssertTrue(replay.gossipTargets.isEmpty)
        XCTAssertEqual(replay.penalized, [2])
        XCTAssertEqual(engine.stats.rejected[.tooOld], 1)
        XCTAssertEqual(engine.seenCount, 0)
    }

    func testCachesStayBoundedUnderLoad() throws {
        var config = GossipConfig()
        config.maxSeenEntries = 100
        config.maxCachedMessages = 30
        config.maxPendingWants = 50
        config.originRate = 1e9  // this test is about caches, not the per-origin budget
        config.originBurst = 1e9
        var engine = try makeEngine(peers: [1, 2], config: config)
        let origin = try keyPair(7)
        for i in 0..<(10 * config.maxSeenEntries) {
            let g = signedGossip("message \(i)", by: origin, sequence: UInt64(i))
            let actions = engine.receive(.gossip(g), from: 1, now: at(Double(i) * 0.001), wallClockMillis: wall(0))
            XCTAssertEqual(actions.delivered.count, 1)
            XCTAssertLessThanOrEqual(engine.seenCount, config.maxSeenEntries)
            XCTAssertLessThanOrEqual(engine.cachedCount, config.maxCachedMessages)
        }
        XCTAssertEqual(engine.seenCount, config.maxSeenEntries)
        XCTAssertEqual(engine.stats.delivered, 10 * config.maxSeenEntries)

        // Announcements of unseen messages are bounded too.
        let ids = (0..<1000).map { i in BLAKE2b.hash(Array("id \(i)".utf8), outputLength: 32) }
        _ = engine.receive(.iHave(IHave(topic: "chat", ids: ids)), from: 2, now: at(2), wallClockMillis: wall(2))
        XCTAssertEqual(engine.pendingWantCount, config.maxPendingWants)
        XCTAssertEqual(engine.stats.announcementsDropped, 1000 - config.maxPendingWants)
    }

    // MARK: Validation

    func testForgedMessagesArePenalisedNotDeliveredNotRelayed() throws {
        var engine = try makeEngine(peers: [1, 2, 3, 4, 5, 6])
        let alice = try keyPair(1), mallory = try keyPair(2)
        let genuine = signedGossip("pay bob 10", by: alice)

        var tamperedData = genuine
        tamperedData.data = Array("pay eve 99".utf8)
        var wrongOrigin = genuine
        wrongOrigin.origin = mallory.publicKey
        var wrongSignature = genuine
        wrongSignature.signature = mallory.sign(genuine.signedBytes)
        var shortSignature = genuine
        shortSignature.signature = Array(genuine.signature.prefix(63))

        // The last two have the same ID as the genuine message: they must not poison the seen-cache.
        for (peer, forged) in zip([PeerKey(1), 2, 3, 4], [tamperedData, wrongOrigin, wrongSignature, shortSignature]) {
            let actions = engine.receive(.gossip(forged), from: peer, now: at(1), wallClockMillis: wall(1))
            XCTAssertEqual(actions, [.penalize(peer, reason: "bad signature", weight: 1)])
        }
        XCTAssertEqual(engine.stats.rejected[.badSignature], 4)
        XCTAssertEqual(engine.stats.delivered, 0)
        XCTAssertEqual(engine.seenCount, 0)

        let actions = engine.receive(.gossip(genuine), from: 5, now: at(1), wallClockMillis: wall(1))
        XCTAssertEqual(actions.delivered, [genuine])
        XCTAssertEqual(actions.gossipTargets, [1, 2, 3, 4, 6])
    }

    func testTimestampWindow() throws {
        var engine = try makeEngine(peers: [1, 2, 3, 4])
        let key = try keyPair(1)
        let now = at(1000), clock = wall(1000)
        let cases: [(Double, GossipRejection?)] = [(-91, .tooOld), (31, .tooNew), (-89, nil), (29, nil), (0, nil)]
        for (i, (offset, expected)) in cases.enumerated() {
            let g = signedGossip("t\(i)", by: key, timestamp: UInt64(Int64(clock) + Int64(offset * 1000)))
            let actions = engine.receive(.gossip(g), from: 1, now: now, wallClockMillis: clock)
            if let expected {
                XCTAssertEqual(actions, [.penalize(1, reason: expected.description, weight: 0.2)], "offset \(offset)")
            } else {
                XCTAssertEqual(actions.delivered, [g], "offset \(offset)")
            }
        }
        XCTAssertEqual(engine.stats.rejected, [.tooOld: 1, .tooNew: 1])
        XCTAssertEqual(engine.penalty(of: 1), 2 * GossipConfig().stalePenalty)
    }

    func testMalformedTopicOversizeDataAndBadOrigin() throws {
        var engine = try makeEngine(peers: [1, 2, 3, 4])
        let key = try keyPair(1)
        let badTopic = signedGossip("x", topic: "Bad Topic", by: key)
        var oversize = Gossip(topic: "chat", origin: key.publicKey, sequence: 1, timestamp: wallStart,
                              data: [UInt8](repeating: 0, count: GossipLimits.maxData + 1), signature: [])
        oversize.signature = key.sign(oversize.signedBytes)
        var badOrigin = signedGossip("x", by: key)
        badOrigin.origin = Array(key.publicKey.prefix(31))

        XCTAssertEqual(engine.receive(.gossip(badTopic), from: 1, now: at(0), wallClockMillis: wall(0)),
                       [.penalize(1, reason: "invalid topic", weight: 1)])
        XCTAssertEqual(engine.receive(.gossip(oversize), from: 2, now: at(0), wallClockMillis: wall(0)),
                       [.penalize(2, reason: "data too large", weight: 1)])
        XCTAssertEqual(engine.receive(.gossip(badOrigin), from: 3, now: at(0), wallClockMillis: wall(0)),
                       [.penalize(3, reason: "invalid origin", weight: 1)])
        XCTAssertEqual(engine.stats.rejected, [.invalidTopic: 1, .dataTooLarge: 1, .invalidOrigin: 1])

        // The same rules for local publishing.
        XCTAssertThrowsError(try engine.publish(topic: "Bad Topic", data: [], now: at(0), wallClockMillis: wall(0))) {
            XCTAssertEqual($0 as? GossipRejection, .invalidTopic)
        }
        XCTAssertThrowsError(try engine.publish(topic: "chat", data: oversize.data, now: at(0), wallClockMillis: wall(0))) {
            XCTAssertEqual($0 as? GossipRejection, .dataTooLarge)
        }
        XCTAssertThrowsError(try engine.subscribe("Bad Topic", now: at(0)))
        XCTAssertEqual(engine.stats.delivered, 0)
    }

    func testInjectValidatesLikeAReceivedMessage() throws {
        var engine = try makeEngine(peers: [1, 2])
        let client = try keyPair(9)
        let g = signedGossip("from the cli", by: client)
        let (result, actions) = engine.inject(g, now: at(0), wallClockMillis: wall(0))
        XCTAssertEqual(result, .success(g.id))
        XCTAssertEqual(actions.first, .deliver(g, id: g.id, from: nil))
        XCTAssertEqual(actions.gossipTargets, [1, 2])

        XCTAssertEqual(engine.inject(g, now: at(0), wallClockMillis: wall(0)).result, .failure(.duplicate))
        var forged = signedGossip("other", by: client)
        forged.data = [0]
        let rejected = engine.inject(forged, now: at(0), wallClockMillis: wall(0))
        XCTAssertEqual(rejected.result, .failure(.badSignature))
        XCTAssertEqual(rejected.actions, [])
        XCTAssertEqual(engine.inject(signedGossip("late", by: client, timestamp: wall(-200)), now: at(0),
                                     wallClockMillis: wall(0)).result, .failure(.tooOld))
        XCTAssertEqual(engine.stats.published, 1)
    }

    // MARK: Dissemination

    func testNeverSendsBackToTheSource() throws {
        var config = GossipConfig()
        config.eagerFanout = 3
        var engine = try makeEngine(peers: Array(1...6), config: config)
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 2, 3])
        XCTAssertEqual(engine.lazyPeers("chat"), [4, 5, 6])
        let key = try keyPair(1)
        for source in PeerKey(1)...6 {
            let (eager, lazy) = (Set(engine.eagerPeers("chat")), Set(engine.lazyPeers("chat")))
            let g = signedGossip("from \(source)", by: key, sequence: source)
            let actions = engine.receive(.gossip(g), from: source, now: at(Double(source)), wallClockMillis: wall(0))
                + engine.tick(now: at(Double(source) + 1))
            XCTAssertEqual(actions.delivered, [g])
            XCTAssertFalse(actions.sent.contains { $0.peer == source }, "nothing back to \(source)")
            XCTAssertEqual(Set(actions.gossipTargets), eager.subtracting([source]))
            XCTAssertEqual(Set(actions.iHaves.map(\.peer)), lazy.subtracting([source]))
            XCTAssertTrue(actions.iHaves.allSatisfy { $0.iHave == IHave(topic: "chat", ids: [g.id]) })
        }
    }

    func testTheLinkOfAFirstCopyBecomesEager() throws {
        var config = GossipConfig()
        config.eagerFanout = 1
        var engine = try makeEngine(peers: [1, 2, 3], config: config)
        XCTAssertEqual(engine.eagerPeers("chat"), [1])
        // Peer 3 pushed us a new message: it is our parent in the tree, so we push to it too.
        _ = engine.receive(.gossip(signedGossip("x", by: try keyPair(1))), from: 3, now: at(1), wallClockMillis: wall(1))
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 3])
        XCTAssertEqual(try engine.publish(topic: "chat", data: [], now: at(2), wallClockMillis: wall(2)).actions.gossipTargets, [1, 3])
    }

    func testOnlySubscribedPeersReceive() throws {
        var engine = try makeEngine(peers: [1, 2], topics: ["chat"])
        _ = engine.peerConnected(3, now: at(0))
        _ = engine.receive(.subscribe(Subscribe(subscribe: true, topics: ["other"])), from: 3, now: at(0), wallClockMillis: wall(0))
        XCTAssertEqual(engine.topics(of: 3), ["other"])

        var actions = try engine.publish(topic: "chat", data: [1], now: at(1), wallClockMillis: wall(1)).actions
        actions += engine.tick(now: at(3))
        XCTAssertEqual(actions.gossipTargets, [1, 2])
        XCTAssertFalse(actions.sent.contains { $0.peer == 3 })

        // Peer 2 leaves the topic, peer 3 joins it.
        _ = engine.receive(.subscribe(Subscribe(subscribe: false, topics: ["chat"])), from: 2, now: at(4), wallClockMillis: wall(4))
        _ = engine.receive(.subscribe(Subscribe(subscribe: true, topics: ["chat"])), from: 3, now: at(4), wallClockMillis: wall(4))
        actions = try engine.publish(topic: "chat", data: [2], now: at(5), wallClockMillis: wall(5)).actions
        XCTAssertEqual(actions.gossipTargets, [1, 3])

        // A topic this node does not subscribe to is neither delivered nor relayed nor penalised.
        let foreign = signedGossip("x", topic: "other", by: try keyPair(1))
        XCTAssertEqual(engine.receive(.gossip(foreign), from: 3, now: at(6), wallClockMillis: wall(6)), [])
        XCTAssertEqual(engine.stats.unsubscribedDropped, 1)
        XCTAssertEqual(engine.seenCount, 2)
    }

    func testPublishingWithoutSubscriptionPushesToSomeSubscribers() throws {
        var config = GossipConfig()
        config.eagerFanout = 4
        var engine = try makeEngine(peers: Array(1...10), topics: ["other"], config: config)
        let actions = try engine.publish(topic: "other", data: [1], now: at(1), wallClockMillis: wall(1)).actions
        XCTAssertEqual(actions.delivered, [])
        XCTAssertEqual(actions.gossipTargets.count, 4)
        XCTAssertEqual(Set(actions.gossipTargets).count, 4)
        XCTAssertEqual(engine.tick(now: at(5)), [])
    }

    func testSubscriptionsAreExchanged() throws {
        var engine = GossipEngine(config: GossipConfig(), identity: try keyPair(1), seed: 3)
        XCTAssertEqual(engine.peerConnected(1, now: at(0)), [], "nothing to tell")
        XCTAssertEqual(try engine.subscribe("chat", now: at(0)), [.send(1, .subscribe(Subscribe(subscribe: true, topics: ["chat"])))])
        XCTAssertEqual(try engine.subscribe("chat", now: at(0)), [], "already subscribed")
        _ = try engine.subscribe("guts/commits", now: at(0))
        XCTAssertEqual(engine.peerConnected(2, now: at(0)),
                       [.send(2, .subscribe(Subscribe(subscribe: true, topics: ["chat", "guts/commits"])))])
        XCTAssertEqual(engine.unsubscribe("chat"), [
            .send(1, .subscribe(Subscribe(subscribe: false, topics: ["chat"]))),
            .send(2, .subscribe(Subscribe(subscribe: false, topics: ["chat"]))),
        ])
        XCTAssertEqual(engine.unsubscribe("chat"), [])
        XCTAssertEqual(engine.subscriptions, ["guts/commits"])
        XCTAssertEqual(engine.stats.subscribeSent, 5)
    }

    func testPruneMovesThePeerToLazy() throws {
        var engine = try makeEngine(peers: [1, 2])
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 2])
        XCTAssertEqual(engine.receive(.prune(Prune(topic: "chat")), from: 1, now: at(1), wallClockMillis: wall(1)), [])
        XCTAssertEqual(engine.eagerPeers("chat"), [2])
        XCTAssertEqual(engine.lazyPeers("chat"), [1])

        let (id, actions) = try engine.publish(topic: "chat", data: [1], now: at(1), wallClockMillis: wall(1))
        XCTAssertEqual(actions.gossipTargets, [2])
        // Announced at the next heartbeat, which is within one interval.
        let deadline = try XCTUnwrap(engine.nextDeadline)
        XCTAssertLessThanOrEqual(deadline, at(2))
        XCTAssertEqual(engine.tick(now: deadline), [.send(1, .iHave(IHave(topic: "chat", ids: [id])))])
    }

    func testAnnouncementsAreBatchedPerHeartbeat() throws {
        var engine = try makeEngine(peers: [1, 2])
        _ = engine.receive(.prune(Prune(topic: "chat")), from: 1, now: at(1), wallClockMillis: wall(1))
        let a = try engine.publish(topic: "chat", data: [1], now: at(1), wallClockMillis: wall(1)).id
        let b = try engine.publish(topic: "chat", data: [2], now: at(1), wallClockMillis: wall(1)).id
        // An IHave from peer 1 for b shows it has b: no need to announce b to it.
        _ = engine.receive(.iHave(IHave(topic: "chat", ids: [b])), from: 1, now: at(1), wallClockMillis: wall(1))
        let c = try engine.publish(topic: "chat", data: [3], now: at(1), wallClockMillis: wall(1)).id
        XCTAssertEqual(engine.tick(now: at(2)), [.send(1, .iHave(IHave(topic: "chat", ids: [a, c])))])
        XCTAssertEqual(engine.stats.iHaveSent, 1)
    }

    func testIHaveThenIWantRecoversTheMessage() throws {
        var engine = try makeEngine(peers: [1, 2, 3])
        _ = engine.receive(.prune(Prune(topic: "chat")), from: 1, now: at(0), wallClockMillis: wall(0))
        _ = engine.receive(.prune(Prune(topic: "chat")), from: 2, now: at(0), wallClockMillis: wall(0))
        XCTAssertEqual(engine.lazyPeers("chat"), [1, 2])
        let g = signedGossip("lost push", by: try keyPair(5))

        XCTAssertEqual(engine.receive(.iHave(IHave(topic: "chat", ids: [g.id])), from: 1, now: at(1), wallClockMillis: wall(1)), [])
        XCTAssertEqual(engine.receive(.iHave(IHave(topic: "chat", ids: [g.id])), from: 2, now: at(1.1), wallClockMillis: wall(1)), [])
        XCTAssertEqual(engine.pendingWantCount, 1)
        XCTAssertEqual(engine.nextDeadline, at(1.5))

        // First request to the first announcer, which becomes eager (graft).
        var actions = engine.tick(now: at(1.5))
        XCTAssertEqual(actions.iWants.map(\.peer), [1])
        XCTAssertEqual(actions.iWants.first?.iWant, IWant(ids: [g.id]))
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 3])
        // No answer: the next announcer is asked.
        actions = engine.tick(now: at(2))
        XCTAssertEqual(actions.iWants.map(\.peer), [2])
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 2, 3])

        actions = engine.receive(.gossip(g), from: 2, now: at(2.1), wallClockMillis: wall(2))
        XCTAssertEqual(actions.delivered, [g])
        XCTAssertEqual(Set(actions.gossipTargets), [1, 3])
        XCTAssertEqual(engine.pendingWantCount, 0)
        XCTAssertTrue(engine.tick(now: at(3)).iWants.isEmpty)
    }

    func testAMessageArrivingInTimeCancelsTheRequest() throws {
        var engine = try makeEngine(peers: [1, 2])
        let g = signedGossip("on time", by: try keyPair(5))
        _ = engine.receive(.iHave(IHave(topic: "chat", ids: [g.id])), from: 1, now: at(1), wallClockMillis: wall(1))
        _ = engine.receive(.gossip(g), from: 2, now: at(1.2), wallClockMillis: wall(1))
        XCTAssertTrue(engine.tick(now: at(1.5)).iWants.isEmpty)
        XCTAssertEqual(engine.stats.iWantSent, 0)
    }

    func testRequestsAreAbandonedAfterTheRetries() throws {
        var engine = try makeEngine(peers: [1])
        let id = BLAKE2b.hash([1, 2, 3], outputLength: 32)
        _ = engine.receive(.iHave(IHave(topic: "chat", ids: [id])), from: 1, now: at(0), wallClockMillis: wall(0))
        var requests = 0
        var time = 0.0
        while let deadline = engine.nextDeadline, deadline < at(30) {
            time = deadline.seconds(since: at(0))
            requests += engine.tick(now: deadline).iWants.count
        }
        XCTAssertEqual(requests, 1 + GossipConfig().maxIWantRetries)
        XCTAssertEqual(engine.stats.wantsAbandoned, 1)
        XCTAssertEqual(engine.pendingWantCount, 0)
        XCTAssertLessThan(time, 10)
    }

    func testIWantIsServedFromTheCacheAndGrafts() throws {
        var engine = try makeEngine(peers: [1, 2])
        _ = engine.receive(.prune(Prune(topic: "chat")), from: 1, now: at(0), wallClockMillis: wall(0))
        let (id, _) = try engine.publish(topic: "chat", data: [42], now: at(1), wallClockMillis: wall(1))
        let unknown = BLAKE2b.hash([0], outputLength: 32)
        let actions = engine.receive(.iWant(IWant(ids: [unknown, id])), from: 1, now: at(1.5), wallClockMillis: wall(1))
        XCTAssertEqual(actions.gossipTargets, [1])
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 2])
        XCTAssertEqual(engine.stats.iWantServed, 1)
        XCTAssertEqual(engine.stats.iWantMisses, 1)
        // Answered, so no need to announce it to peer 1 any more.
        XCTAssertEqual(engine.tick(now: at(3)), [])

        // The same peer asking over and over is answered a bounded number of times.
        var served = 1
        for _ in 0..<20 {
            served += engine.receive(.iWant(IWant(ids: [id])), from: 1, now: at(2), wallClockMillis: wall(2)).gossipTargets.count
        }
        XCTAssertEqual(served, GossipConfig().maxIWantRetries + 1)
    }

    // MARK: Penalties

    func testPenaltiesLeadToDisconnect() throws {
        var engine = try makeEngine(peers: [1, 2])
        let key = try keyPair(1)
        func forged(_ n: Int) -> Gossip {
            var g = signedGossip("n\(n)", by: key, sequence: UInt64(n))
            g.signature[0] ^= 1
            return g
        }
        // 25 points each, 1 point forgiven per second: three now, three a minute later is still fine...
        for n in 0..<3 { XCTAssertEqual(engine.receive(.gossip(forged(n)), from: 1, now: at(0), wallClockMillis: wall(0)).penalized, [1]) }
        for n in 3..<6 {
            XCTAssertEqual(engine.receive(.gossip(forged(n)), from: 1, now: at(60), wallClockMillis: wall(60)).disconnected, [])
        }
        XCTAssertEqual(engine.penalty(of: 1), 90)
        // ...the next one crosses the threshold.
        let actions = engine.receive(.gossip(forged(6)), from: 1, now: at(60), wallClockMillis: wall(60))
        XCTAssertEqual(actions, [.penalize(1, reason: "bad signature", weight: 1),
                                 .disconnect(1, reason: "too many penalties (last: bad signature)")])
        XCTAssertEqual(engine.connectedPeers, [2])
        XCTAssertEqual(engine.eagerPeers("chat"), [2])
        XCTAssertEqual(engine.receive(.gossip(signedGossip("ok", by: key)), from: 1, now: at(61), wallClockMillis: wall(61)), [],
                       "a disconnected peer is ignored")
        XCTAssertEqual(engine.stats.penalties, 7)
        XCTAssertEqual(engine.stats.disconnects, 1)
    }

    func testControlFloodsArePenalised() throws {
        var engine = try makeEngine(peers: [1, 2])
        let ids = (0..<GossipLimits.maxIDsPerControl).map { i in BLAKE2b.hash(Array("\(i)".utf8), outputLength: 32) }
        var iWantPenalties = 0, iHavePenalties = 0
        for _ in 0..<9 {
            iWantPenalties += engine.receive(.iWant(IWant(ids: ids)), from: 1, now: at(0), wallClockMillis: wall(0)).penalized.count
        }
        for _ in 0..<5 {
            iHavePenalties += engine.receive(.iHave(IHave(topic: "chat", ids: ids)), from: 2, now: at(0), wallClockMillis: wall(0))
                .penalized.count
        }
        XCTAssertEqual(iWantPenalties, 1, "a burst of 8192 requested IDs is tolerated, not more")
        XCTAssertEqual(iHavePenalties, 1, "a burst of 4096 announced IDs is tolerated, not more")
        // A flood penalty weighs 10 points against an invalid message's 25.
        let over = engine.receive(.iWant(IWant(ids: ids)), from: 1, now: at(0), wallClockMillis: wall(0))
        XCTAssertTrue(over.contains { if case .penalize(1, _, 0.4) = $0 { true } else { false } }, "\(over)")
        // The budget refills with time.
        XCTAssertEqual(engine.receive(.iWant(IWant(ids: ids)), from: 1, now: at(1), wallClockMillis: wall(1)).penalized, [])
    }

    func testUnknownPeersAreIgnored() throws {
        var engine = try makeEngine(peers: [1])
        XCTAssertEqual(engine.receive(.gossip(signedGossip("x", by: try keyPair(1))), from: 77, now: at(0), wallClockMillis: wall(0)), [])
        XCTAssertEqual(engine.stats.received, 0)
    }

    func testPeerDisconnectLeavesTheMesh() throws {
        var engine = try makeEngine(peers: [1, 2, 3])
        engine.peerDisconnected(2)
        XCTAssertEqual(engine.eagerPeers("chat"), [1, 3])
        XCTAssertEqual(engine.connectedPeers, [1, 3])
        let actions = try engine.publish(topic: "chat", data: [], now: at(1), wallClockMillis: wall(1)).actions
        XCTAssertEqual(actions.gossipTargets, [1, 3])
    }

    /// A flood of valid messages from one origin is carried up to its budget and dropped
    /// beyond it (unrelayed, the relay not penalised); other origins are unaffected.
    func testOneOriginCannotFloodTheNetwork() throws {
        var config = GossipConfig()
        config.originRate = 10
        config.originBurst = 20
        var engine = try makeEngine(peers: [1, 2], config: config)
        let flooder = try keyPair(7)
        let honest = try keyPair(8)
        var delivered = 0
        for i in 0..<200 {
            let g = signedGossip("flood \(i)", by: flooder, sequence: UInt64(i))
            let actions = engine.receive(.gossip(g), from: 1, now: at(Double(i) * 0.01), wallClockMillis: wall(0))
            delivered += actions.delivered.count
            XCTAssertEqual(actions.penalized, [], "relays are not at fault")
        }
        // 2 s of flooding: the burst plus about 2 s of the rate.
        XCTAssertGreaterThanOrEqual(delivered, 20)
        XCTAssertLessThanOrEqual(delivered, 20 + 21)
        XCTAssertEqual(engine.stats.originLimited, 200 - delivered)
        let fine = engine.receive(.gossip(signedGossip("hello", by: honest, sequence: 1)), from: 2, now: at(2), wallClockMillis: wall(0))
        XCTAssertEqual(fine.delivered.count, 1)
    }
}
