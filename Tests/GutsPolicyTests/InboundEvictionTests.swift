import GutsPolicy
import GutsSupport
import XCTest

final class InboundEvictionTests: XCTestCase {
    private typealias Candidate = EvictionCandidate<Int>

    /// Only the protections named are on.
    private func only(_ change: (inout InboundEviction.Parameters) -> Void) -> InboundEviction {
        var p = InboundEviction.Parameters()
        p.protectGroups = 0
        p.protectFastest = 0
        p.protectUseful = 0
        p.protectBestScore = 0
        p.protectLongestFraction = 0
        change(&p)
        return InboundEviction(parameters: p, key: 42)
    }

    /// `count` peers of one group, connected one second apart (peer 0 the oldest).
    private func sameGroup(_ count: Int) -> [Candidate] {
        (0..<count).map { Candidate(id: $0, group: v4(1, 1, 1).group, connectedSince: at(Double($0)), minPing: 0.1) }
    }

    func testNilWhenEveryoneIsProtected() {
        let eviction = InboundEviction(key: 7)
        XCTAssertNil(eviction.select([Candidate]()))
        let few = (0..<4).map { Candidate(id: $0, group: v4($0, 0, 0).group, connectedSince: at(0)) }
        XCTAssertNil(eviction.select(few), "four groups, four protected")
        let fast = (0..<12).map { Candidate(id: $0, group: v4($0, 1, 1).group, connectedSince: at(0), minPing: 0.01 * Double($0 + 1)) }
        XCTAssertNil(eviction.select(fast), "one by group, eight by ping, the rest by the others")
    }

    func testEachProtectionKeepsItsPeer() {
        var peers = sameGroup(30)
        XCTAssertEqual(only { _ in }.select(peers), 29, "no protection: the newest goes")

        peers[29].minPing = 0.001
        XCTAssertEqual(only { $0.protectFastest = 1 }.select(peers), 28)
        peers[29].minPing = 0.1

        peers[29].lastUseful = at(100)
        XCTAssertEqual(only { $0.protectUseful = 1 }.select(peers), 28)
        peers[29].lastUseful = nil

        peers[29].score = 5
        XCTAssertEqual(only { $0.protectBestScore = 1 }.select(peers), 28)
        peers[29].score = 0

        XCTAssertEqual(only { $0.protectLongestFraction = 1 }.select(peers), nil, "all protected by age")
        XCTAssertEqual(only { $0.protectLongestFraction = 0.5 }.select(peers), 29)
    }

    func testHandshakingAndBadlyScoredPeersGoFirst() {
        var peers = sameGroup(30)
        peers[0].inHandshake = true  // the oldest, and would be protected by age if it had finished
        XCTAssertEqual(InboundEviction(key: 1).select(peers), 0)
        peers[0].inHandshake = false
        peers[3].score = -10
        XCTAssertEqual(InboundEviction(key: 1).select(peers), 3)
        peers[3].score = 0
        XCTAssertEqual(InboundEviction(key: 1).select(peers), 29)
    }

    func testBusiestGroupLosesItsNewestConnection() {
        let a = v4(1, 0, 0).group, b = v4(2, 0, 0).group, c = v4(3, 0, 0).group
        var peers = [Candidate]()
        for k in 0..<3 { peers.append(Candidate(id: k, group: a, connectedSince: at(Double(k)))) }
        for k in 3..<6 { peers.append(Candidate(id: k, group: b, connectedSince: at(Double(k)))) }
        peers.append(Candidate(id: 6, group: c, connectedSince: at(100)))
        let eviction = only { _ in }
        XCTAssertEqual(eviction.select(peers), 5, "a tie in size goes to the group with the newest connection")
        peers.append(Candidate(id: 7, group: a, connectedSince: at(1)))
        XCTAssertEqual(eviction.select(peers), 2, "the biggest group, its newest")
    }

    /// Which groups are protected depends on the secret key, so an attacker cannot predict it.
    func testGroupProtectionIsKeyed() {
        let peers = (0..<5).map { Candidate(id: $0, group: v4($0, 0, 0).group, connectedSince: at(Double($0))) }
        var evicted = Set<Int>()
        for key in 0..<200 as Range<UInt64> {
            let eviction = InboundEviction(parameters: { var p = InboundEviction.Parameters(); p.protectLongestFraction = 0; return p }(), key: key)
            guard let victim = eviction.select(peers) else { return XCTFail("one of five groups is unprotected") }
            XCTAssertEqual(eviction.select(peers), victim, "deterministic for one key")
            evicted.insert(victim)
        }
        XCTAssertEqual(evicted, [0, 1, 2, 3, 4], "every group is sometimes the unprotected one")
    }

    /// Many inbound connections from one /24 are evicted before any honest peer, youngest first.
    func testConnectionFloodFromOneGroupIsEvictedFirst() {
        var peers = [Candidate]()
        for k in 0..<20 {
            peers.append(Candidate(id: k, group: v4(k, 1, 1).group, connectedSince: at(Double(k)), minPing: 0.05 + 0.002 * Double(k),
                                   lastUseful: k % 2 == 0 ? at(500) : nil, score: Double(k % 5)))
        }
        for k in 0..<30 {
            // The attacker answers pings (slower than the honest peers) and does nothing useful.
            peers.append(Candidate(id: 100 + k, group: v4(200, 0, 0).group, connectedSince: at(1_000 + Double(k)), minPing: 0.2))
        }
        let eviction = InboundEviction(key: 99)
        XCTAssertEqual(eviction.select(peers), 129, "the newest attacker")
        var evicted = [Int]()
        while let victim = eviction.select(peers), victim >= 100 {
            evicted.append(victim)
            peers.removeAll { $0.id == victim }
        }
        XCTAssertGreaterThanOrEqual(evicted.count, 25, "attackers go first: \(evicted)")
        XCTAssertEqual(evicted.prefix(5), [129, 128, 127, 126, 125])
    }

    /// For random inputs: of the peers that can be protected (handshake done, score not
    /// negative), the fastest, the most recently useful and the best scored are never evicted,
    /// and the input order does not matter.
    func testRandomInputsKeepTheirBestPeers() {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        for round in 0..<500 {
            let count = Int.random(in: 1...60, using: &rng)
            let peers = (0..<count).map { k in
                Candidate(id: k, group: v4(Int.random(in: 0..<8, using: &rng), 0, 0).group,
                          connectedSince: at(Double.random(in: 0...1_000, using: &rng)),
                          minPing: Bool.random(using: &rng) ? Double.random(in: 0.001...1, using: &rng) : nil,
                          lastUseful: Bool.random(using: &rng) ? at(Double.random(in: 0...1_000, using: &rng)) : nil,
                          score: Double.random(in: -30...30, using: &rng), inHandshake: Int.random(in: 0..<10, using: &rng) == 0)
            }
            let eviction = InboundEviction(key: rng.next())
            let victim = eviction.select(peers)
            var shuffled = peers
            shuffled.shuffle(using: &rng)
            XCTAssertEqual(eviction.select(shuffled), victim, "seed \(seed) round \(round): order must not matter")
            guard let victim else { continue }
            let settled = peers.filter { !$0.inHandshake && $0.score >= 0 }
            if let fastest = settled.filter({ $0.minPing != nil }).min(by: { $0.minPing! < $1.minPing! }) {
                XCTAssertNotEqual(victim, fastest.id, "seed \(seed) round \(round)")
            }
            if let useful = settled.filter({ $0.lastUseful != nil }).max(by: { $0.lastUseful! < $1.lastUseful! }) {
                XCTAssertNotEqual(victim, useful.id, "seed \(seed) round \(round)")
            }
            if let best = settled.filter({ $0.score > 0 }).max(by: { $0.score < $1.score }) {
                XCTAssertNotEqual(victim, best.id, "seed \(seed) round \(round)")
            }
        }
    }
}
