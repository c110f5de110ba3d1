import GutsCrypto
import GutsDHT
import GutsPolicy
import GutsWire
import XCTest

final class LookupTests: XCTestCase {
    /// 120 nodes join one after another through node 0 alone; afterwards every node finds
    /// every sampled node, its peer record and a provider, in few hops.
    func testLookupsConvergeAfterJoiningThroughOneBootstrapNode() throws {
        let seed: UInt64 = 20261201
        var config = DHTConfig()
        config.storeRadius = 0
        var net = TestNetwork()
        var ids: [NodeID] = []
        var rng = DHTRandom(seed: seed)
        for i in 0..<120 {
            let id = net.add(keyPair(100 + i), "10.\(i / 200).\(i % 200).1:9000", config: config, seed: rng.next())
            ids.append(id)
            if i > 0, var engine = net.engines[id], let boot = net.contacts[ids[0]] {
                var actions = engine.peerVerified(boot, now: net.time)
                actions += engine.bootstrap(now: net.time)
                net.engines[id] = engine
                try net.run(actions, at: id)
            }
        }
        // Contacts learned only from answers are not in the tables: every entry was verified.
        XCTAssertGreaterThan(net.engines[ids[0]]?.table.count ?? 0, 30, "seed \(seed)")
        var hops: [Int] = []
        for _ in 0..<60 {
            let a = ids[Int(rng.next() % 120)], b = ids[Int(rng.next() % 120)]
            guard a != b, var engine = net.engines[a] else { continue }
            let (lookup, actions) = engine.findNode(b, now: net.time)
            net.engines[a] = engine
            try net.run(actions, at: a)
            let result = try XCTUnwrap(net.finished[a]?[lookup], "seed \(seed)")
            XCTAssertTrue(result.found, "seed \(seed): \(a.short) did not find \(b.short)")
            XCTAssertEqual(result.closest.first?.id, b)
            hops.append(result.hops)

            var e2 = try XCTUnwrap(net.engines[a])
            let (peerLookup, peerActions) = e2.findPeer(b, now: net.time)
            net.engines[a] = e2
            try net.run(peerActions, at: a)
            let peer = try XCTUnwrap(net.finished[a]?[peerLookup])
            XCTAssertEqual(peer.peerRecord?.publisherID, b, "seed \(seed)")
            XCTAssertEqual(peer.peerRecord?.addresses, net.contacts[b].map { [$0.address] })
        }
        XCTAssertLessThanOrEqual(hops.sorted()[hops.count / 2], 3, "seed \(seed)")

        // Providing and finding a repository.
        let repo = NodeID(publicKey: Array("some repository".utf8))
        var provider = try XCTUnwrap(net.engines[ids[7]])
        let announce = provider.provide(repo, now: net.time)
        net.engines[ids[7]] = provider
        try net.run(announce, at: ids[7])
        let holders = net.engines.values.filter { !$0.storedProviders(of: repo, unixNow: net.time.unixSeconds).isEmpty }.count
        XCTAssertGreaterThanOrEqual(holders, 20, "seed \(seed)")
        var seeker = try XCTUnwrap(net.engines[ids[99]])
        let (find, findActions) = seeker.findProviders(repo, now: net.time)
        net.engines[ids[99]] = seeker
        try net.run(findActions, at: ids[99])
        let found = try XCTUnwrap(net.finished[ids[99]]?[find])
        XCTAssertEqual(found.providers.map(\.publisherID), [ids[7]], "seed \(seed)")
    }

    private func engineWithContacts(_ n: Int, paths: Int = 1, timeout: Double = 5) -> (DHTEngine, [DHTContact]) {
        var config = DHTConfig()
        config.disjointPaths = paths
        config.requestTimeout = timeout
        var e = DHTEngine(config: config, identity: keyPair(1), seed: 7, now: at(0).monotonic)
        var list: [DHTContact] = []
        for i in 0..<n {
            let c = contact(keyPair(300 + i), "198.51.\(i).1:9000")
            _ = e.peerVerified(c, now: at(0))
            list.append(c)
        }
        return (e, list)
    }

    func testUnansweredRequestsTimeOutByTheClock() throws {
        var (e, contacts) = engineWithContacts(3, timeout: 5)
        let target = NodeID(publicKey: [1, 2, 3])
        let (id, actions) = e.findNode(target, now: at(10))
        XCTAssertEqual(sends(actions).count, 3)
        XCTAssertEqual(e.nextDeadline, at(15).monotonic)
        XCTAssertEqual(e.tick(now: at(14.9)), [])
        let done = e.tick(now: at(15))
        guard case let .lookupFinished(finished, result)? = done.last else { return XCTFail("lookup did not finish: \(done)") }
        XCTAssertEqual(finished, id)
        XCTAssertFalse(result.found)
        XCTAssertEqual(result.messages, 3)
        XCTAssertEqual(e.pendingRequests, 0)
        XCTAssertEqual(e.stats.timeouts, 3)
        for c in contacts { XCTAssertEqual(e.table.entry(c.id)?.failures, 1) }
        // A late answer is ignored.
        XCTAssertEqual(e.receive(.nodes(Nodes(requestID: 1, contacts: [])), from: contacts[0], now: at(16)), [])
        XCTAssertEqual(e.stats.answersIgnored, 1)
    }

    func testAnswersFeedLookupsNotTheTableAndComeOnlyFromTheAskedPeer() throws {
        var (e, contacts) = engineWithContacts(1)
        let target = NodeID(publicKey: [9])
        let (_, actions) = e.findNode(target, now: at(0))
        guard case let .findNode(request)? = sends(actions).first?.1 else { return XCTFail("no FindNode") }
        let learned = (0..<5).map { contact(keyPair(400 + $0), "203.0.113.\($0 + 1):9000") }
        // The same request ID answered by someone else is ignored.
        let stranger = contact(keyPair(499), "203.0.113.99:9000")
        XCTAssertEqual(e.receive(.nodes(Nodes(requestID: request.requestID, contacts: learned)), from: stranger, now: at(1)), [])
        let next = e.receive(.nodes(Nodes(requestID: request.requestID, contacts: learned)), from: contacts[0], now: at(1))
        XCTAssertEqual(Set(sends(next).map(\.0)), Set(learned.sorted { $0.id.distance(to: target) < $1.id.distance(to: target) }.prefix(3)))
        XCTAssertEqual(e.table.count, 1)
        // An answer of the wrong type is penalised and fails the request.
        guard case let .findNode(second)? = sends(next).first?.1 else { return XCTFail("no FindNode") }
        let wrong = e.receive(.peerRecord(PeerRecordAnswer(requestID: second.requestID, record: nil, closer: [])), from: learned[0],
                              now: at(1))
        XCTAssertEqual(wrong.first, .penalize(learned[0].id, .wrongAnswer))
    }

    func testScopeRuleForContacts() throws {
        var config = DHTConfig()
        config.maxPerGroupTotal = 100
        var e = DHTEngine(config: config, identity: keyPair(1), seed: 1, now: at(0).monotonic)
        let loop = contact(keyPair(500), "127.0.0.5:9000"), lan = contact(keyPair(501), "192.168.1.5:9000")
        let wan = contact(keyPair(502), "198.51.100.5:9000")
        for c in [loop, lan, wan] { _ = e.peerVerified(c, now: at(0)) }
        let target = NodeID(publicKey: [1])
        func answer(to peer: DHTContact) -> Set<DHTContact> {
            guard case let .nodes(n)? = replies(e.receive(.findNode(FindNode(requestID: 1, target: target)), from: peer, now: at(1))).first
            else { return [] }
            return Set(n.contacts)
        }
        XCTAssertEqual(answer(to: contact(keyPair(510), "203.0.113.1:1")), [wan])
        XCTAssertEqual(answer(to: contact(keyPair(511), "10.0.0.1:1")), [lan, wan])
        XCTAssertEqual(answer(to: contact(keyPair(512), "127.0.0.1:1")), [loop, lan, wan])
        // A global peer's answer naming loopback and private contacts: those are not followed.
        var (l, seeds) = engineWithContacts(1)
        let (_, actions) = l.findNode(target, now: at(0))
        guard case let .findNode(request)? = sends(actions).first?.1 else { return XCTFail("no FindNode") }
        let next = l.receive(.nodes(Nodes(requestID: request.requestID, contacts: [loop, lan, wan])), from: seeds[0], now: at(1))
        XCTAssertEqual(sends(next).map(\.0), [wan])
    }

    func testDisjointPathsNeverShareANode() throws {
        var (e, seeds) = engineWithContacts(6, paths: 3)
        let target = NodeID(publicKey: [42])
        let (_, actions) = e.findNode(target, now: at(0))
        let first = sends(actions)
        XCTAssertEqual(Set(first.map(\.0)), Set(seeds))
        // Every seed names the same two new contacts: each is queried once, on one path.
        let shared = [contact(keyPair(600), "203.0.113.60:9000"), contact(keyPair(601), "203.0.113.61:9000")]
        var asked: [DHTContact] = []
        for (c, m) in first {
            guard case let .findNode(r) = m else { continue }
            asked += sends(e.receive(.nodes(Nodes(requestID: r.requestID, contacts: shared + seeds)), from: c, now: at(1))).map(\.0)
        }
        XCTAssertEqual(asked.count, 2)
        XCTAssertEqual(Set(asked), Set(shared))
    }

    func testRequestsOverTheRateAreDroppedAndPenalised() {
        var config = DHTConfig()
        config.peerRequestRate = 1
        config.peerRequestBurst = 3
        config.groupRequestRate = 1
        config.groupRequestBurst = 4
        var e = DHTEngine(config: config, identity: keyPair(1), seed: 1, now: at(0).monotonic)
        let flooder = contact(keyPair(700), "203.0.113.1:9000")
        let neighbour = contact(keyPair(701), "203.0.113.2:9000")
        let legit = contact(keyPair(702), "198.51.100.1:9000")
        func ask(_ c: DHTContact, _ t: Double) -> [DHTAction] {
            e.receive(.findNode(FindNode(requestID: 1, target: NodeID(publicKey: [1]))), from: c, now: at(t))
        }
        for _ in 0..<3 { XCTAssertEqual(replies(ask(flooder, 0)).count, 1) }
        XCTAssertEqual(ask(flooder, 0), [.penalize(flooder.id, .rateLimited)])
        XCTAssertEqual(e.stats.requestsRateLimited, 1)
        XCTAssertEqual(e.requestRetryAfter(flooder, now: at(0)), 1, accuracy: 0.001)
        XCTAssertEqual(e.requestRetryAfter(legit, now: at(0)), 0)
        // Another peer is still served; the flooder again after refilling.
        XCTAssertEqual(replies(ask(legit, 0)).count, 1)
        XCTAssertEqual(replies(ask(flooder, 1)).count, 1)
        // The flooder's address group (203.0.113.0/24) has spent its burst too.
        XCTAssertEqual(replies(ask(neighbour, 1)).count, 1)
        XCTAssertEqual(ask(neighbour, 1), [.penalize(neighbour.id, .rateLimited)])
        XCTAssertEqual(replies(ask(legit, 1)).count, 1)
    }

    func testUnreachableContactFailsItsRequestsAtOnce() {
        var (e, contacts) = engineWithContacts(2)
        let (_, actions) = e.findNode(NodeID(publicKey: [5]), now: at(0))
        XCTAssertEqual(sends(actions).count, 2)
        XCTAssertEqual(e.unreachable(contacts[0].id, now: at(0.1)), [])
        XCTAssertEqual(e.pendingRequests, 1)
        XCTAssertEqual(e.table.entry(contacts[0].id)?.failures, 1)
        let done = e.unreachable(contacts[1].id, now: at(0.2))
        guard case let .lookupFinished(_, result)? = done.last else { return XCTFail("lookup did not finish: \(done)") }
        XCTAssertFalse(result.found)
        XCTAssertEqual(result.duration, 0.2, accuracy: 0.001)
    }

    func testBusyContactFailsItsRequestsAtOnceButStaysHealthy() {
        var (e, contacts) = engineWithContacts(2)
        let (_, actions) = e.findNode(NodeID(publicKey: [6]), now: at(0))
        XCTAssertEqual(sends(actions).count, 2)
        XCTAssertEqual(e.busy(contacts[0].id, now: at(0.1)), [])
        XCTAssertEqual(e.pendingRequests, 1)
        XCTAssertEqual(e.table.entry(contacts[0].id)?.failures, 0, "busy is not a failure of the contact")
        XCTAssertEqual(e.busy(contacts[0].id, now: at(0.1)), [], "nothing left in flight to it")
        let done = e.busy(contacts[1].id, now: at(0.2))
        guard case let .lookupFinished(_, result)? = done.last else { return XCTFail("lookup did not finish: \(done)") }
        XCTAssertFalse(result.found)
        XCTAssertEqual(e.table.count, 2)
    }

    func testProvidedRepositoriesAreRepublishedEveryInterval() throws {
        var config = DHTConfig()
        config.republishInterval = 100
        var e = DHTEngine(config: config, identity: keyPair(1), seed: 1, now: at(0).monotonic)
        _ = e.setAddresses([address("192.0.2.1:9000")], now: at(0))
        let peer = contact(keyPair(800), "198.51.100.80:9000")
        _ = e.peerVerified(peer, now: at(0))
        let repo = NodeID(publicKey: Array("repo".utf8))
        func announce(_ actions: [DHTAction], at t: Double) throws -> ProviderRecord? {
            guard case let .findNode(f)? = sends(actions).first(where: { $0.0 == peer })?.1, f.target == repo else { return nil }
            let next = e.receive(.nodes(Nodes(requestID: f.requestID, contacts: [])), from: peer, now: at(t))
            guard case let .addProvider(a)? = sends(next).first?.1 else { return nil }
            return a.record
        }
        let first = try XCTUnwrap(try announce(e.provide(repo, now: at(0)), at: 0.1))
        XCTAssertEqual(first.expires, at(0).unixSeconds + 24 * 3600)
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(1).unixSeconds), [first])
        XCTAssertNil(try announce(e.tick(now: at(99)), at: 99))
        let second = try XCTUnwrap(try announce(e.tick(now: at(100)), at: 100))
        XCTAssertEqual(second.expires, at(100).unixSeconds + 24 * 3600)
        e.stopProviding(repo)
        XCTAssertNil(try announce(e.tick(now: at(200)), at: 200))
    }

    /// Lookups number their requests below 0x80000000 forever: the dial-back probes take
    /// the IDs with the high bit set (guts-protocol(7), DHT, Dial-back) and 0 is reserved.
    func testLookupRequestIDsNeverReachTheProbeRange() {
        XCTAssertEqual(DHTEngine.requestID(after: 1), 2)
        XCTAssertEqual(DHTEngine.requestID(after: 0x7FFF_FFFE), 0x7FFF_FFFF)
        XCTAssertEqual(DHTEngine.requestID(after: 0x7FFF_FFFF), 1)
    }
}
