import GutsSupport

/// A token bucket: holds up to `burst` tokens and refills at `rate` tokens per second. An
/// action costing `n` tokens may proceed when the bucket holds at least `n`.
///
/// Pure and deterministic: time is passed in, refill is computed lazily from the elapsed
/// nanoseconds, and nothing reads a clock. A bucket starts full. Time running backwards is
/// treated as no time passing.
public struct TokenBucket: Equatable, Sendable {
    /// Tokens added per second (0 means the bucket never refills).
    public let rate: Double
    /// Capacity: the largest burst that may pass at once.
    public let burst: Double
    private var level: Double
    private var updated: Instant

    /// A full bucket. Negative or non-finite `rate` and `burst` count as 0.
    public init(rate: Double, burst: Double, now: Instant) {
        self.rate = rate.isFinite && rate > 0 ? rate : 0
        self.burst = burst.isFinite && burst > 0 ? burst : 0
        level = self.burst
        updated = now
    }

    /// Tokens available at `now` (at most `burst`).
    public func available(now: Instant) -> Double {
        guard now > updated, rate > 0 else { return level }
        return min(burst, level + now.seconds(since: updated) * rate)
    }

    /// Whether the bucket is full at `now`; a full bucket carries no memory of past use.
    public func isFull(now: Instant) -> Bool { available(now: now) >= burst }

    /// Takes `n` tokens if the bucket holds them, and says whether it did. `n` above `burst`
    /// never passes; a negative or non-finite `n` is refused.
    public mutating func take(_ n: Double = 1, now: Instant) -> Bool {
        guard n.isFinite, n >= 0 else { return false }
        refill(now)
        // A take made at `now + retryAfter` must pass even though both that sum and the
        // elapsed-time arithmetic round; a billionth of the burst absorbs the rounding.
        guard level + Self.slack(burst) >= n, n <= burst else { return false }
        level -= n
        return true
    }

    /// Seconds from `now` until `take(n)` would pass: 0 when it would pass now, infinity when
    /// it never can (`n` above `burst`, or a bucket that does not refill). Rounded up to the
    /// next nanosecond, so taking at `now.adding(seconds: retryAfter(n, now:))` passes.
    public func retryAfter(_ n: Double = 1, now: Instant) -> Double {
        guard n.isFinite, n >= 0, n <= burst else { return .infinity }
        let deficit = n - available(now: now)
        if deficit <= Self.slack(burst) { return 0 }
        guard rate > 0 else { return .infinity }
        return ((deficit / rate) * 1e9).rounded(.up) / 1e9 + 1e-9
    }

    /// Seconds from `now` until the bucket is full again.
    public func secondsUntilFull(now: Instant) -> Double {
        let deficit = burst - available(now: now)
        if deficit <= 0 { return 0 }
        return rate > 0 ? deficit / rate : .infinity
    }

    private mutating func refill(_ now: Instant) {
        guard now > updated else { return }
        level = available(now: now)
        updated = now
    }

    private static func slack(_ burst: Double) -> Double { max(burst, 1) * 1e-9 }
}

/// `now` plus `seconds`, saturating (an infinite or huge delay gives the last instant) where
/// `Instant.adding(seconds:)` would overflow.
func later(_ now: Instant, _ seconds: Double) -> Instant {
    guard seconds.isFinite else { return Instant(nanoseconds: .max) }
    if seconds <= 0 { return now }
    let room = Double(UInt64.max - now.nanoseconds) / 1e9 * 0.999
    return seconds >= room ? Instant(nanoseconds: .max) : now.adding(seconds: seconds)
}

/// A token bucket per key (an address group, a peer) with a hard cap on the number of keys
/// tracked, so a flood of distinct keys cannot grow memory.
///
/// A key seen for the first time gets a full bucket. When `maxKeys` buckets exist, buckets
/// that have refilled to full are dropped first: a full bucket is the same as no bucket, so
/// nothing is forgotten. A bucket that is not full is never dropped, because that would let
/// a key escape its limit by cycling through other keys. While every tracked bucket is
/// still refilling, new keys share one overflow bucket with the same rate and burst: a key
/// flood then gets one key's worth of service in total, while tracked keys keep theirs.
///
/// Cost: a key lookup per call; a sweep over all buckets (O(maxKeys)) happens only when the
/// table is full and some bucket may have refilled since the last sweep.
public struct KeyedLimiter<Key: Hashable & Sendable>: Sendable {
    public let rate: Double
    public let burst: Double
    public let maxKeys: Int
    private var buckets: [Key: TokenBucket] = [:]
    private var overflow: TokenBucket?
    /// No bucket can be full before this instant (valid while the table is full).
    private var nextSweep: Instant?

    /// `maxKeys` is at least 1.
    public init(rate: Double, burst: Double, maxKeys: Int) {
        self.rate = rate
        self.burst = burst
        self.maxKeys = max(1, maxKeys)
    }

    /// The number of keys with a bucket of their own (never more than `maxKeys`).
    public var trackedKeys: Int { buckets.count }

    /// Whether `key` has a bucket of its own (rather than sharing the overflow bucket).
    public func isTracked(_ key: Key) -> Bool { buckets[key] != nil }

    /// Takes `n` tokens from `key`'s bucket (or the shared overflow bucket when the table is
    /// full of refilling buckets) and says whether the action may proceed.
    public mutating func take(_ key: Key, _ n: Double = 1, now: Instant) -> Bool {
        if var bucket = buckets[key] {
            let passed = bucket.take(n, now: now)
            buckets[key] = bucket
            return passed
        }
        if makeRoom(now: now) {
            var bucket = TokenBucket(rate: rate, burst: burst, now: now)
            let passed = bucket.take(n, now: now)
            buckets[key] = bucket
            return passed
        }
        var shared = overflow ?? TokenBucket(rate: rate, burst: burst, now: now)
        let passed = shared.take(n, now: now)
        overflow = shared
        return passed
    }

    /// Seconds until `take(key, n)` would pass (see `TokenBucket.retryAfter`).
    public func retryAfter(_ key: Key, _ n: Double = 1, now: Instant) -> Double {
        if let bucket = buckets[key] { return bucket.retryAfter(n, now: now) }
        if buckets.count < maxKeys || nextSweep.map({ now >= $0 }) ?? true {
            return TokenBucket(rate: rate, burst: burst, now: now).retryAfter(n, now: now)
        }
        return (overflow ?? TokenBucket(rate: rate, burst: burst, now: now)).retryAfter(n, now: now)
    }

    /// Drops every bucket that has refilled to full. Call it now and then to return memory;
    /// correctness does not depend on it.
    ///
    /// The next automatic sweep waits until some bucket may be full, and at least an eighth
    /// of the time an empty bucket takes to refill, so a trickle of keys that each become
    /// full at a different moment cannot make every new key pay for a scan of the table.
    public mutating func sweep(now: Instant) {
        var soonest: Double = .infinity
        buckets = buckets.filter { _, bucket in
            if bucket.isFull(now: now) { return false }
            soonest = min(soonest, bucket.secondsUntilFull(now: now))
            return true
        }
        if let shared = overflow, shared.isFull(now: now) { overflow = nil }
        let refillTime = rate > 0 ? burst / rate : Double.infinity
        nextSweep = later(now, max(soonest, refillTime / 8))
    }

    /// Whether a new key can get its own bucket, sweeping when that can help.
    private mutating func makeRoom(now: Instant) -> Bool {
        if buckets.count < maxKeys { return true }
        if let next = nextSweep, now < next { return false }
        sweep(now: now)
        return buckets.count < maxKeys
    }
}
