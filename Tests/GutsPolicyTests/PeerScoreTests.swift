import GutsPolicy
import GutsSupport
import XCTest

final class PeerScoreTests: XCTestCase {
    func testNewIdentityStartsNeutral() {
        let score = PeerScore(now: at(0))
        XCTAssertEqual(score.value(now: at(0)), 0)
        XCTAssertEqual(score.verdict(now: at(100)), .good)
        XCTAssertTrue(score.isNeutral(now: at(0)))
        XCTAssertEqual(score.components(now: at(0)).map(\.name), ScoreEvent.allCases.map(\.rawValue))
        XCTAssertTrue(score.components(now: at(0)).allSatisfy { $0.value == 0 })
    }

    func testHalfLifeIsExact() {
        var score = PeerScore(now: at(0))
        score.record(.stall, count: 8, now: at(0))
        let halfLife = ScoreParameters().stall.halfLife
        XCTAssertEqual(score.counter(.stall, now: at(halfLife)), 4)
        XCTAssertEqual(score.counter(.stall, now: at(3 * halfLife)), 1)
        XCTAssertEqual(score.value(now: at(3 * halfLife)), -5)
        XCTAssertEqual(score.counter(.stall, now: at(halfLife / 2)), 8 / 2.0.squareRoot(), accuracy: 1e-12)

        // Decaying in many small steps (each record decays first) equals one jump.
        var stepped = PeerScore(now: at(0))
        stepped.record(.stall, count: 8, now: at(0))
        for k in 1...1_000 { stepped.record(.answeredPing, count: 0, now: at(Double(k) * halfLife / 1_000)) }
        XCTAssertEqual(stepped.counter(.stall, now: at(halfLife)), 4, accuracy: 1e-12)

        // Each counter decays with its own half-life.
        var mixed = PeerScore(now: at(0))
        mixed.record(.rateLimitOverrun, count: 4, now: at(0))
        mixed.record(.protocolViolation, count: 4, now: at(0))
        XCTAssertEqual(mixed.counter(.rateLimitOverrun, now: at(600)), 2)
        XCTAssertEqual(mixed.counter(.protocolViolation, now: at(86_400)), 2)
    }

    func testCountersDecayToExactlyZero() {
        var score = PeerScore(now: at(0))
        score.record(.badObjects, count: 3, now: at(0))
        score.record(.firstDelivery, count: 3, now: at(0))
        XCTAssertFalse(score.isNeutral(now: at(0)))
        let later = at(30 * 86_400)
        XCTAssertTrue(score.isNeutral(now: later))
        XCTAssertEqual(score.value(now: later), 0)
        XCTAssertEqual(score.counters(now: later), [:])
    }

    /// Rewards are capped, so no volume of good behaviour (or of cheap spam posing as it) buys
    /// protection: a fully rewarded peer is still disconnected and banned for misbehaviour.
    func testRewardCapsHoldUnderSpam() {
        var score = PeerScore(now: at(0))
        for _ in 0..<100_000 { score.record(.firstDelivery, now: at(0)) }
        score.record(.objectsServed, count: 1e9, now: at(0))
        score.record(.uptime, count: 1e12, now: at(0))
        score.record(.answeredPing, count: .infinity, now: at(0))  // ignored: not finite
        for _ in 0..<1_000 { score.record(.answeredPing, now: at(0)) }
        XCTAssertEqual(score.counter(.firstDelivery, now: at(0)), 10)
        XCTAssertEqual(score.value(now: at(0)), 25, accuracy: 1e-9, "every reward maxed is worth 25")

        score.record(.protocolViolation, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .graylist)
        score.record(.protocolViolation, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .disconnect)
        score.record(.protocolViolation, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .ban)
    }

    func testThresholds() {
        var score = PeerScore(now: at(0))
        score.record(.invalidGossip, now: at(0))
        XCTAssertEqual(score.value(now: at(0)), -20)
        XCTAssertEqual(score.verdict(now: at(0)), .good, "thresholds apply strictly below")
        score.record(.invalidGossip, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .graylist)
        score.record(.invalidGossip, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .disconnect)
        score.record(.invalidGossip, count: 3, now: at(0))
        XCTAssertEqual(score.verdict(now: at(0)), .ban)
        XCTAssertTrue(ScoreVerdict.good < .graylist && ScoreVerdict.disconnect < .ban)

        var one = PeerScore(now: at(0))
        one.record(.protocolViolation, now: at(0))
        XCTAssertEqual(one.verdict(now: at(0)), .disconnect, "one protocol violation disconnects a new peer")
        one.record(.protocolViolation, now: at(3_600))
        XCTAssertEqual(one.verdict(now: at(3_600)), .ban, "a second within the hour bans it")
    }

    func testComponentsSumToTheValue() {
        var score = PeerScore(now: at(0))
        score.record(.stall, count: 2, now: at(0))
        score.record(.uptime, count: 30, now: at(0))
        score.record(.firstDelivery, count: 4, now: at(0))
        let parts = score.components(now: at(100))
        XCTAssertEqual(parts.reduce(0) { $0 + $1.value }, score.value(now: at(100)), accuracy: 1e-12)
        XCTAssertLessThan(parts.first { $0.name == "stall" }?.value ?? 0, 0)
        XCTAssertGreaterThan(parts.first { $0.name == "uptime" }?.value ?? 0, 0)
        XCTAssertEqual(parts.first { $0.name == "bad-objects" }?.value, 0)
    }

    func testRestoringClampsCounters() {
        let restored = PeerScore(counters: [.firstDelivery: 500, .stall: -3, .badObjects: .nan, .uptime: 12], updated: at(0))
        XCTAssertEqual(restored.counters(now: at(0)), [.firstDelivery: 10, .uptime: 12])
        XCTAssertEqual(restored.updated, at(0))
    }

    func testBanDurationDoublesUpToSevenDays() {
        let p = ScoreParameters()
        XCTAssertEqual((1...5).map { p.banDuration(offence: $0) }, [600, 1_200, 2_400, 4_800, 9_600])
        XCTAssertEqual(p.banDuration(offence: 10), 307_200)
        XCTAssertEqual(p.banDuration(offence: 11), 604_800)
        XCTAssertEqual(p.banDuration(offence: 1_000_000), 604_800)
        XCTAssertEqual(p.banDuration(offence: 0), 600)
    }

    func testParameterProblemsAreNamed() {
        XCTAssertEqual(ScoreParameters().problems, [])
        var p = ScoreParameters()
        p.stall.weight = 3
        p.firstDelivery.cap = -1
        p.banThreshold = 10
        p.banGrowth = 0.5
        let problems = p.problems
        XCTAssertTrue(problems.contains { $0.hasPrefix("stall:") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.hasPrefix("first-delivery:") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("ban threshold") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("growth") }, "\(problems)")
    }
}
