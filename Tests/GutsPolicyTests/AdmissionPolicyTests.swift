import GutsPolicy
import GutsSupport
import XCTest

final class AdmissionPolicyTests: XCTestCase {
    private func limits(perGroup: Int, total: Int, rate: Double? = nil) -> AdmissionPolicy<Int>.Limits {
        var l = AdmissionPolicy<Int>.Limits()
        l.maxPendingPerGroup = perGroup
        l.maxPending = total
        l.groupRate = rate
        return l
    }

    func testAFullGroupEvictsOneOfItsOwn() {
        var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 3, total: 10), seed: 1)
        let g = v4(1, 1, 1).group
        for id in 0..<3 { XCTAssertEqual(policy.admit(id, group: g, now: at(0)), .accept) }
        guard case let .acceptEvicting(victim) = policy.admit(3, group: g, now: at(0)) else { return XCTFail("expected an eviction") }
        XCTAssertTrue((0..<3).contains(victim))
        XCTAssertFalse(policy.isPending(victim), "the victim is forgotten at once")
        XCTAssertTrue(policy.isPending(3))
        XCTAssertEqual(policy.pending(in: g), 3)
        XCTAssertEqual(policy.admit(4, group: v4(2, 2, 2).group, now: at(0)), .accept, "other groups are unaffected")
        policy.pendingEnded(victim)  // the caller closing it later is harmless
        policy.pendingEnded(12345)
        XCTAssertEqual(policy.pendingCount, 4)
    }

    func testTheGlobalCapEvictsFromTheBusiestGroup() {
        let seed = testSeed()
        var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 8, total: 10), seed: seed)
        let attacker = v4(200, 0, 0).group
        for id in 0..<7 { XCTAssertEqual(policy.admit(id, group: attacker, now: at(0)), .accept) }
        for id in 7..<10 { XCTAssertEqual(policy.admit(id, group: v4(id, 0, 0).group, now: at(0)), .accept) }
        for id in 10..<16 {
            guard case let .acceptEvicting(victim) = policy.admit(id, group: v4(id, 0, 0).group, now: at(0)) else {
                return XCTFail("seed \(seed): expected an eviction")
            }
            XCTAssertLessThan(victim, 7, "seed \(seed): the victim comes from the attacker's group")
        }
        XCTAssertEqual(policy.pending(in: attacker), 1)
        XCTAssertEqual(policy.pendingCount, 10)
    }

    func testDuplicatesNoCapacityAndRateLimits() {
        var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 4, total: 8, rate: 1), seed: 3)
        let g = v4(1, 1, 1).group
        XCTAssertEqual(policy.admit(1, group: g, now: at(0)), .accept)
        XCTAssertEqual(policy.admit(1, group: g, now: at(0)), .refuse(.duplicate))
        // The default burst is 20 a group; the 21st in the same instant waits a second.
        for id in 2...20 { XCTAssertNotEqual(policy.admit(id, group: g, now: at(0)), .refuse(.rateLimited(retryAfter: 1))) }
        guard case let .refuse(.rateLimited(wait)) = policy.admit(21, group: g, now: at(0)) else { return XCTFail("rate limited") }
        XCTAssertEqual(wait, 1, accuracy: 1e-6)
        XCTAssertEqual(policy.admit(22, group: v4(9, 9, 9).group, now: at(0)), .accept, "the limit is per group")
        XCTAssertNotEqual(policy.admit(21, group: g, now: at(wait)), .refuse(.rateLimited(retryAfter: wait)))
        XCTAssertFalse({ if case .refuse = policy.admit(23, group: g, now: at(2)) { return true }; return false }())

        var closed = AdmissionPolicy<Int>(limits: limits(perGroup: 0, total: 8), seed: 3)
        XCTAssertEqual(closed.admit(1, group: g, now: at(0)), .refuse(.noCapacity))
    }

    func testTheSeedDecidesTheVictims() {
        let seed = testSeed()
        func run() -> [AdmissionPolicy<Int>.Decision] {
            var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 4, total: 16), seed: seed)
            return (0..<500).map { policy.admit($0, group: v4($0 % 7, 0, 0).group, now: at(0)) }
        }
        XCTAssertEqual(run(), run(), "seed \(seed)")
    }

    /// One address group opening handshakes without end (and never finishing them) only ever
    /// evicts its own: honest handshakes from other groups are never touched.
    func testAFloodFromOneGroupNeverEvictsOthers() {
        let seed = testSeed()
        var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 8, total: 64), seed: seed)
        let attacker = v4(200, 0, 0).group
        var honestPending = Set<Int>()
        var honestDone = 0
        for step in 0..<20_000 {
            if case let .acceptEvicting(victim) = policy.admit(step, group: attacker, now: at(0)) {
                XCTAssertFalse(honestPending.contains(victim), "seed \(seed)")
            }
            if step % 100 == 0 {
                let id = -1 - step
                XCTAssertEqual(policy.admit(id, group: v4(step / 100 % 250, 1, 1).group, now: at(0)), .accept, "seed \(seed)")
                honestPending.insert(id)
            }
            if step % 100 == 50, let done = honestPending.first {  // honest handshakes finish
                policy.pendingEnded(done)
                honestPending.remove(done)
                honestDone += 1
            }
        }
        XCTAssertEqual(honestDone, 200, "seed \(seed)")
        XCTAssertEqual(policy.pending(in: attacker), 8)
    }

    /// The worst case: a botnet spreads handshakes over more groups than there are slots, so
    /// every group has one pending and the victim is drawn from all of them. An honest
    /// handshake that needs `needs` more admissions to finish survives with probability about
    /// (1 - 1/64)^needs; the attacker can slow honest peers down but not lock them out.
    func testABotnetTrickleStillLetsHonestPeersThrough() {
        let seed = testSeed()
        var policy = AdmissionPolicy<Int>(limits: limits(perGroup: 8, total: 64), seed: seed)
        var rng = PolicyRandom(seed: seed ^ 0x5EED)
        let needs = 20
        var started = [Int: Int]()  // honest id -> step started
        var finished = 0, evicted = 0, attempts = 0
        for step in 0..<20_000 {
            let roundRobin = step % 2 == 0
            let group = roundRobin ? v4(100 + step % 500, 0, 0).group : v4(Int.random(in: 0..<250, using: &rng), 50, 0).group
            if case let .acceptEvicting(victim) = policy.admit(step, group: group, now: at(0)), started[victim] != nil {
                started[victim] = nil
                evicted += 1
            }
            if step % 50 == 0 {
                attempts += 1
                let id = -1 - step
                _ = policy.admit(id, group: v4(250, step / 50 % 250, 1).group, now: at(0))
                started[id] = step
            }
            for (id, begun) in started where step - begun >= needs {
                policy.pendingEnded(id)
                started[id] = nil
                finished += 1
            }
        }
        let rate = Double(finished) / Double(attempts)
        print("admission under a botnet trickle: \(finished) of \(attempts) honest handshakes finished (\(Int(rate * 100))%), seed \(seed)")
        XCTAssertGreaterThan(rate, 0.5, "seed \(seed): \(finished) finished, \(evicted) evicted")
    }
}
