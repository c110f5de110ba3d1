import GutsPolicy
import GutsSupport
import XCTest

final class TokenBucketTests: XCTestCase {
    func testStartsFullThenRefillsAtItsRate() {
        var bucket = TokenBucket(rate: 2, burst: 4, now: at(0))
        XCTAssertEqual(bucket.available(now: at(0)), 4)
        for i in 0..<4 { XCTAssertTrue(bucket.take(now: at(0)), "take \(i) of the burst") }
        XCTAssertFalse(bucket.take(now: at(0)))
        XCTAssertEqual(bucket.retryAfter(now: at(0)), 0.5, accuracy: 1e-8)
        XCTAssertFalse(bucket.take(now: at(0.49)))
        XCTAssertTrue(bucket.take(now: at(0.5)))
        // A long pause refills to the burst, never beyond.
        XCTAssertEqual(bucket.available(now: at(1000)), 4)
        XCTAssertTrue(bucket.take(3, now: at(1000)))
        XCTAssertEqual(bucket.available(now: at(1000)), 1)
        XCTAssertEqual(bucket.retryAfter(3, now: at(1000)), 1, accuracy: 1e-8)
        XCTAssertEqual(bucket.secondsUntilFull(now: at(1000)), 1.5, accuracy: 1e-12)
        XCTAssertFalse(bucket.isFull(now: at(1001)))
        XCTAssertTrue(bucket.isFull(now: at(1001.5)))
    }

    func testImpossibleAndInvalidRequestsAreRefused() {
        var bucket = TokenBucket(rate: 1, burst: 2, now: at(0))
        XCTAssertFalse(bucket.take(3, now: at(0)), "more than the burst never passes")
        XCTAssertEqual(bucket.retryAfter(3, now: at(0)), .infinity)
        XCTAssertFalse(bucket.take(-1, now: at(0)))
        XCTAssertFalse(bucket.take(.nan, now: at(0)))
        XCTAssertEqual(bucket.available(now: at(0)), 2, "refused takes cost nothing")

        var frozen = TokenBucket(rate: 0, burst: 1, now: at(0))
        XCTAssertTrue(frozen.take(now: at(0)))
        XCTAssertEqual(frozen.retryAfter(now: at(1e6)), .infinity, "a bucket with no rate never refills")

        let broken = TokenBucket(rate: -.infinity, burst: .nan, now: at(0))
        XCTAssertEqual(broken.rate, 0)
        XCTAssertEqual(broken.burst, 0)
    }

    func testTimeRunningBackwardsAddsNothing() {
        var bucket = TokenBucket(rate: 1, burst: 1, now: at(10))
        XCTAssertTrue(bucket.take(now: at(10)))
        XCTAssertFalse(bucket.take(now: at(5)))
        XCTAssertEqual(bucket.available(now: at(5)), 0)
        XCTAssertTrue(bucket.take(now: at(11)))
    }

    /// Taking exactly `retryAfter` later passes; taking noticeably earlier does not, for
    /// arbitrary rates, bursts, sizes and nanosecond-odd instants.
    func testRetryAfterIsExact() {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        for round in 0..<2_000 {
            let rate = Double.random(in: 0.001...1e6, using: &rng)
            let burst = Double.random(in: 1...10_000, using: &rng)
            var now = Instant(nanoseconds: UInt64.random(in: 0...(1 << 50), using: &rng))
            var bucket = TokenBucket(rate: rate, burst: burst, now: now)
            _ = bucket.take(Double.random(in: 0...burst, using: &rng), now: now)
            now = Instant(nanoseconds: now.nanoseconds + UInt64.random(in: 0...1_000_000, using: &rng))
            let n = Double.random(in: 0...burst, using: &rng)
            let wait = bucket.retryAfter(n, now: now)
            XCTAssertTrue(wait.isFinite && wait >= 0, "seed \(seed) round \(round)")
            var onTime = bucket
            XCTAssertTrue(onTime.take(n, now: now.adding(seconds: wait)),
                          "seed \(seed) round \(round): rate \(rate) burst \(burst) n \(n) wait \(wait)")
            let deficit = n - bucket.available(now: now)
            if wait > 1e-3, deficit >= 0.01 {
                var early = bucket
                XCTAssertFalse(early.take(n, now: now.adding(seconds: wait * 0.99)), "seed \(seed) round \(round)")
            }
        }
    }

    /// A greedy taker at random instants never gets more than burst + rate * time.
    func testLongRunThroughputNeverExceedsTheRate() {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        let rate = 7.5, burst = 20.0
        var bucket = TokenBucket(rate: rate, burst: burst, now: at(0))
        var taken = 0.0
        var t = 0.0
        while t < 1_000 {
            t += Double.random(in: 0...0.05, using: &rng)
            let n = Double(Int.random(in: 1...3, using: &rng))
            if bucket.take(n, now: at(t)) { taken += n }
        }
        XCTAssertLessThanOrEqual(taken, burst + rate * t + 1e-6, "seed \(seed)")
        XCTAssertGreaterThan(taken, rate * t * 0.95, "seed \(seed): a greedy taker gets nearly the whole rate")
    }
}

final class KeyedLimiterTests: XCTestCase {
    func testEachKeyHasItsOwnBucket() {
        var limiter = KeyedLimiter<String>(rate: 1, burst: 2, maxKeys: 10)
        XCTAssertTrue(limiter.take("a", now: at(0)))
        XCTAssertTrue(limiter.take("a", now: at(0)))
        XCTAssertFalse(limiter.take("a", now: at(0)))
        XCTAssertEqual(limiter.retryAfter("a", now: at(0)), 1, accuracy: 1e-8)
        XCTAssertTrue(limiter.take("b", now: at(0)), "another key is unaffected")
        XCTAssertEqual(limiter.retryAfter("c", now: at(0)), 0)
        XCTAssertTrue(limiter.take("a", now: at(1)))
        XCTAssertEqual(limiter.trackedKeys, 2)
    }

    /// A flood of distinct keys never grows the table past its cap, gets a bounded amount of
    /// service however many keys it uses, and does not disturb a key that uses its own rate.
    func testFloodOfKeysStaysWithinTheCap() {
        let rate = 1.0, burst = 5.0, maxKeys = 100
        var limiter = KeyedLimiter<Int>(rate: rate, burst: burst, maxKeys: maxKeys)
        var floodPassed = 0.0
        let keys = 100_000
        for key in 0..<keys {
            let t = Double(key) * 0.0001  // 10 s of flood, 10,000 new keys a second
            if key % 10_000 == 0 {
                // The honest key takes one token a second, its full rate, and is always served.
                XCTAssertTrue(limiter.take(-1, now: at(t)), "honest key at \(t) s")
                XCTAssertTrue(limiter.isTracked(-1))
            }
            // Each flood key drains its bucket, so none of them is full again for 5 s.
            for _ in 0..<6 where limiter.take(key, now: at(t)) { floodPassed += 1 }
            XCTAssertLessThanOrEqual(limiter.trackedKeys, maxKeys)
        }
        // At most the whole table's burst once per refill time, plus the overflow bucket.
        let elapsed = Double(keys) * 0.0001
        let bound = Double(maxKeys) * burst * (1 + elapsed / (burst / rate)) + burst + rate * elapsed
        XCTAssertLessThanOrEqual(floodPassed, bound)
        XCTAssertLessThan(floodPassed, Double(keys) * burst / 100, "the flood gets under 1% of what it asked for")
        print("KeyedLimiter flood: \(keys) keys asked for \(Int(Double(keys) * burst)) tokens, got \(Int(floodPassed)) (bound \(Int(bound)))")
    }

    /// A key cannot escape its limit by cycling other keys through the table: buckets that are
    /// not full are never dropped.
    func testDepletedBucketsAreNeverEvicted() {
        var limiter = KeyedLimiter<Int>(rate: 0.1, burst: 1, maxKeys: 10)
        for key in 0..<10 { XCTAssertTrue(limiter.take(key, now: at(0))) }
        for key in 10..<1_000 { _ = limiter.take(key, now: at(Double(key - 10) * 0.001)) }
        for key in 0..<10 {
            XCTAssertTrue(limiter.isTracked(key))
            XCTAssertFalse(limiter.take(key, now: at(1)), "key \(key) is still limited")
        }
    }

    /// Buckets that refilled are reclaimed for new keys, so the table does not fill for good.
    func testFullBucketsAreReclaimed() {
        var limiter = KeyedLimiter<Int>(rate: 1, burst: 1, maxKeys: 10)
        for key in 0..<10 { XCTAssertTrue(limiter.take(key, now: at(0))) }
        XCTAssertTrue(limiter.take(100, now: at(0)), "the overflow bucket serves the first newcomer")
        XCTAssertFalse(limiter.isTracked(100))
        XCTAssertTrue(limiter.take(101, now: at(5)), "after a refill newcomers get their own bucket")
        XCTAssertTrue(limiter.isTracked(101))
        limiter.sweep(now: at(10))
        XCTAssertEqual(limiter.trackedKeys, 0, "every bucket is full again, so none is kept")
    }
}
