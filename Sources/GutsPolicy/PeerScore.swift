#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GutsSupport

/// Something a peer did that moves its score, reported by any protocol (gossip, sync, ping,
/// the transport). The raw value is the name used in `components` and in the peers file.
public enum ScoreEvent: String, CaseIterable, Sendable {
    // Penalties.
    /// A malformed or out-of-order message, a message type it must not send, a failed proof.
    case protocolViolation = "protocol-violation"
    /// Gossip that failed validation: a forged signature, a malformed payload.
    case invalidGossip = "invalid-gossip"
    /// A sync that sent objects that failed verification, or objects we did not ask for.
    case badObjects = "bad-objects"
    /// A request it accepted and then left unanswered past its deadline; a stalled transfer.
    case stall
    /// A request or message refused by a rate limit (record one per refusal).
    case rateLimitOverrun = "rate-limit-overrun"
    // Rewards (capped, so volume cannot buy protection).
    /// The first copy of a valid gossip message from an origin other than the peer itself.
    case firstDelivery = "first-delivery"
    /// A sync it served whose objects all verified.
    case objectsServed = "objects-served"
    /// One minute of connection (record one per minute connected).
    case uptime
    /// A ping answered in time.
    case answeredPing = "answered-ping"

    /// Whether the event counts against the peer.
    public var isPenalty: Bool {
        switch self {
        case .protocolViolation, .invalidGossip, .badObjects, .stall, .rateLimitOverrun: return true
        case .firstDelivery, .objectsServed, .uptime, .answeredPing: return false
        }
    }

    /// The event named `name` (its raw value).
    public init?(name: some StringProtocol) { self.init(rawValue: String(name)) }

    var index: Int {
        switch self {
        case .protocolViolation: return 0
        case .invalidGossip: return 1
        case .badObjects: return 2
        case .stall: return 3
        case .rateLimitOverrun: return 4
        case .firstDelivery: return 5
        case .objectsServed: return 6
        case .uptime: return 7
        case .answeredPing: return 8
        }
    }
}

/// Every weight, cap, half-life and threshold of peer scoring.
///
/// A score is the sum over events of `weight * counter`. Each counter grows by the count
/// recorded, never above its `cap`, and decays toward 0, halving every `halfLife` seconds.
/// Penalties have negative weights; rewards positive weights and small caps (like gossipsub
/// v1.1 caps P2), so a peer cannot bank protection by volume: with the defaults the rewards
/// add up to at most +25, while one protocol violation costs 60.
///
/// Defaults, as `weight / cap / half-life`:
///
///     protocol-violation   -60   / 1e6 / 1 day
///     invalid-gossip       -20   / 1e6 / 6 h
///     bad-objects          -30   / 1e6 / 6 h
///     stall                 -5   / 1e6 / 1 h
///     rate-limit-overrun    -2   / 1e6 / 10 min
///     first-delivery        +1   / 10  / 1 h       (at most +10)
///     objects-served        +2   / 5   / 1 day     (at most +10)
///     uptime               +0.05 / 60  / 1 day     (per minute; at most +3)
///     answered-ping        +0.2  / 10  / 1 h       (at most +2)
///
/// invalid-gossip counts a forged or malformed message as 1 and, in the gossip engine's
/// proportion (guts-protocol(7): 5 or 10 points against 25), a timestamp outside the window
/// as 0.2 and an IHave or IWant over its rate as 0.4: honest peers with skewed clocks cause
/// the first, so three of them must not disconnect a peer.
///
/// Thresholds (a score strictly below one applies it): graylist -20 (ignore the peer's gossip
/// and requests), disconnect -50, ban -100. So a new peer is disconnected after one protocol
/// violation and refused until its score recovers (about 6 h at the defaults); a second one
/// before then (on a session still open, or one this node dialed) bans it. A peer with every
/// reward maxed needs three. A ban lasts `banBase` (10 min) on the first offence and `banGrowth` (2) times longer
/// on each repeat, up to `banMax` (7 days). Automatic address bans last at most
/// `addressBanMax` (1 hour): many honest users can share one address behind a NAT.
public struct ScoreParameters: Equatable, Sendable {
    /// How one event counter contributes to the score.
    public struct Counter: Equatable, Sendable {
        /// Score per unit of the counter (negative for penalties).
        public var weight: Double
        /// The counter never exceeds this. Small for rewards; large for penalties, only to keep
        /// the number finite.
        public var cap: Double
        /// Seconds for the counter to halve. `.infinity` (or a non-positive value) disables decay.
        public var halfLife: Double

        public init(weight: Double, cap: Double, halfLife: Double) {
            self.weight = weight
            self.cap = cap
            self.halfLife = halfLife
        }
    }

    /// The cap given to penalty counters.
    public static let penaltyCap = 1e6

    public var protocolViolation = Counter(weight: -60, cap: penaltyCap, halfLife: 86_400)
    public var invalidGossip = Counter(weight: -20, cap: penaltyCap, halfLife: 21_600)
    public var badObjects = Counter(weight: -30, cap: penaltyCap, halfLife: 21_600)
    public var stall = Counter(weight: -5, cap: penaltyCap, halfLife: 3_600)
    public var rateLimitOverrun = Counter(weight: -2, cap: penaltyCap, halfLife: 600)
    public var firstDelivery = Counter(weight: 1, cap: 10, halfLife: 3_600)
    public var objectsServed = Counter(weight: 2, cap: 5, halfLife: 86_400)
    public var uptime = Counter(weight: 0.05, cap: 60, halfLife: 86_400)
    public var answeredPing = Counter(weight: 0.2, cap: 10, halfLife: 3_600)

    /// Below this, ignore the peer's gossip and requests.
    public var graylistThreshold = -20.0
    /// Below this, close the connection.
    public var disconnectThreshold = -50.0
    /// Below this, ban the peer ID (and, when known, its address for at most `addressBanMax`).
    public var banThreshold = -100.0

    /// Seconds of the first ban.
    public var banBase = 600.0
    /// Factor applied to the ban duration for each repeat offence.
    public var banGrowth = 2.0
    /// Longest automatic ban of a peer ID, in seconds.
    public var banMax = 604_800.0
    /// Longest automatic ban of an address, in seconds (manual bans may be longer).
    public var addressBanMax = 3_600.0

    public init() {}

    public subscript(event: ScoreEvent) -> Counter {
        get {
            switch event {
            case .protocolViolation: return protocolViolation
            case .invalidGossip: return invalidGossip
            case .badObjects: return badObjects
            case .stall: return stall
            case .rateLimitOverrun: return rateLimitOverrun
            case .firstDelivery: return firstDelivery
            case .objectsServed: return objectsServed
            case .uptime: return uptime
            case .answeredPing: return answeredPing
            }
        }
        set {
            switch event {
            case .protocolViolation: protocolViolation = newValue
            case .invalidGossip: invalidGossip = newValue
            case .badObjects: badObjects = newValue
            case .stall: stall = newValue
            case .rateLimitOverrun: rateLimitOverrun = newValue
            case .firstDelivery: firstDelivery = newValue
            case .objectsServed: objectsServed = newValue
            case .uptime: uptime = newValue
            case .answeredPing: answeredPing = newValue
            }
        }
    }

    /// Seconds of the ban for offence number `offence` (1 for the first):
    /// `min(banBase * banGrowth^(offence-1), banMax)`.
    public func banDuration(offence: Int) -> Double {
        var duration = banBase
        var k = 1
        while k < offence, duration < banMax {
            duration *= banGrowth
            k += 1
        }
        return min(duration, banMax)
    }

    /// What is wrong with these parameters, in words; empty when they are usable.
    public var problems: [String] {
        var out = [String]()
        for event in ScoreEvent.allCases {
            let c = self[event]
            if !c.weight.isFinite { out.append("\(event.rawValue): weight must be finite") }
            if event.isPenalty, c.weight > 0 { out.append("\(event.rawValue): a penalty needs a weight of 0 or less") }
            if !event.isPenalty, c.weight < 0 { out.append("\(event.rawValue): a reward needs a weight of 0 or more") }
            if !(c.cap >= 0 && c.cap <= Self.penaltyCap) { out.append("\(event.rawValue): cap must be from 0 to \(Int(Self.penaltyCap))") }
            if c.halfLife.isNaN { out.append("\(event.rawValue): half-life must be a number") }
        }
        if !(graylistThreshold <= 0) { out.append("the graylist threshold must be 0 or less") }
        if !(disconnectThreshold <= graylistThreshold) { out.append("the disconnect threshold must not be above the graylist threshold") }
        if !(banThreshold <= disconnectThreshold) { out.append("the ban threshold must not be above the disconnect threshold") }
        if !(banBase > 0 && banBase.isFinite) { out.append("the first ban must last a positive, finite time") }
        if !(banGrowth >= 1 && banGrowth.isFinite) { out.append("ban growth must be at least 1") }
        if !(banMax >= banBase && banMax.isFinite) { out.append("the longest ban must be at least the first") }
        if !(addressBanMax >= 0 && addressBanMax.isFinite) { out.append("the longest address ban must be 0 or more") }
        return out
    }
}

/// What a score says to do with a peer, from mildest to harshest.
public enum ScoreVerdict: Int, Comparable, Sendable {
    case good
    /// Ignore its gossip and requests.
    case graylist
    /// Close the connection.
    case disconnect
    /// Ban the peer ID.
    case ban

    public static func < (a: ScoreVerdict, b: ScoreVerdict) -> Bool { a.rawValue < b.rawValue }
}

/// A peer's score: one decaying counter per `ScoreEvent`, weighted and summed.
///
/// A new identity starts neutral (every counter 0, score 0). Counters decay lazily: they are
/// stored as of `updated` and decayed exactly (`counter * 2^(-elapsed/halfLife)`) whenever
/// read or changed; below a millionth a counter becomes 0. Time is passed in.
public struct PeerScore: Equatable, Sendable {
    /// Counters below this are zero (like gossipsub's DecayToZero).
    public static let decayToZero = 1e-6

    private let box: ParametersBox
    private var values: [Double]
    /// The instant the stored counters are valid at.
    public private(set) var updated: Instant

    public var parameters: ScoreParameters { box.value }

    /// A neutral score.
    public init(parameters: ScoreParameters = ScoreParameters(), now: Instant) {
        self.init(box: ParametersBox(parameters), now: now)
    }

    init(box: ParametersBox, now: Instant) {
        self.box = box
        values = [Double](repeating: 0, count: ScoreEvent.allCases.count)
        updated = now
    }

    /// A score restored from counters valid at `updated` (as saved in the peers file).
    /// Counters are clamped to `0...cap`; non-finite ones count as 0.
    public init(parameters: ScoreParameters = ScoreParameters(), counters: [ScoreEvent: Double], updated: Instant) {
        self.init(box: ParametersBox(parameters), counters: counters, updated: updated)
    }

    init(box: ParametersBox, counters: [ScoreEvent: Double], updated: Instant) {
        self.init(box: box, now: updated)
        for (event, value) in counters where value.isFinite && value > 0 {
            values[event.index] = min(value, box.value[event].cap)
        }
        values = values.map { $0 < Self.decayToZero ? 0 : $0 }
    }

    public static func == (a: PeerScore, b: PeerScore) -> Bool {
        a.values == b.values && a.updated == b.updated && (a.box === b.box || a.box.value == b.box.value)
    }

    /// Adds `count` (default 1) to the event's counter, up to its cap. A negative or
    /// non-finite count is ignored.
    public mutating func record(_ event: ScoreEvent, count: Double = 1, now: Instant) {
        decay(to: now)
        guard count.isFinite, count > 0 else { return }
        let i = event.index
        values[i] = min(values[i] + count, parameters[event].cap)
    }

    /// The event's counter at `now` (decayed, not weighted).
    public func counter(_ event: ScoreEvent, now: Instant) -> Double {
        decayed(values[event.index], halfLife: parameters[event].halfLife, over: now.seconds(since: updated))
    }

    /// The nonzero counters at `now`.
    public func counters(now: Instant) -> [ScoreEvent: Double] {
        var out = [ScoreEvent: Double]()
        for event in ScoreEvent.allCases {
            let v = counter(event, now: now)
            if v > 0 { out[event] = v }
        }
        return out
    }

    /// The score at `now`: the sum of weighted counters.
    public func value(now: Instant) -> Double {
        var sum = 0.0
        for event in ScoreEvent.allCases {
            let v = counter(event, now: now)
            if v != 0 { sum += v * parameters[event].weight }
        }
        return sum
    }

    /// Each event's weighted contribution at `now`, in `ScoreEvent.allCases` order, named by
    /// the event's raw value; for display.
    public func components(now: Instant) -> [(name: String, value: Double)] {
        ScoreEvent.allCases.map { event in
            let v = counter(event, now: now)
            return (event.rawValue, v == 0 ? 0 : v * parameters[event].weight)
        }
    }

    /// What the score says to do at `now`.
    public func verdict(now: Instant) -> ScoreVerdict {
        let v = value(now: now)
        let p = parameters
        if v < p.banThreshold { return .ban }
        if v < p.disconnectThreshold { return .disconnect }
        if v < p.graylistThreshold { return .graylist }
        return .good
    }

    /// Whether every counter is 0 at `now`.
    public func isNeutral(now: Instant) -> Bool {
        ScoreEvent.allCases.allSatisfy { counter($0, now: now) == 0 }
    }

    /// Back to neutral (after a ban has been served, or on manual unban).
    public mutating func reset(now: Instant) {
        values = values.map { _ in 0 }
        updated = max(updated, now)
    }

    /// The same score with its counters decayed to `now` (or to `updated` when `now` is earlier).
    public func decayed(to now: Instant) -> PeerScore {
        var copy = self
        copy.decay(to: now)
        return copy
    }

    private mutating func decay(to now: Instant) {
        guard now > updated else { return }
        let elapsed = now.seconds(since: updated)
        for event in ScoreEvent.allCases {
            let i = event.index
            values[i] = decayed(values[i], halfLife: parameters[event].halfLife, over: elapsed)
        }
        updated = now
    }

    /// Counters that were valid `seconds` before `updated`'s origin, carried forward: used to
    /// restore a score saved before the current clock's zero.
    mutating func decayExtra(seconds: Double) {
        guard seconds > 0 else { return }
        for event in ScoreEvent.allCases {
            let i = event.index
            values[i] = decayed(values[i], halfLife: parameters[event].halfLife, over: seconds)
        }
    }

    private func decayed(_ value: Double, halfLife: Double, over seconds: Double) -> Double {
        guard value > 0 else { return 0 }
        guard seconds > 0, halfLife > 0, halfLife.isFinite else { return value }
        let v = value * exp2(-seconds / halfLife)
        return v < Self.decayToZero ? 0 : v
    }
}

/// Score parameters shared by reference between the scores of one book.
final class ParametersBox: Sendable {
    let value: ScoreParameters
    init(_ value: ScoreParameters) { self.value = value }
}
