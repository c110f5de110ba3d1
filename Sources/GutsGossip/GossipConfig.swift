import GutsWire

/// Tunables of a `GossipEngine`. Durations are in seconds. The defaults suit guts' two
/// well-known topics (a few messages per second at most) on networks of up to thousands of nodes.
public struct GossipConfig: Sendable, Equatable {
    /// Most peers per topic to which a new message is pushed in full (eager push) before the
    /// broadcast tree has formed; the other subscribed peers get announcements (IHave) only.
    /// Grafts (IWant) may add eager peers above this number; duplicates prune them again.
    public var eagerFanout = 6

    /// How long a processed message ID is remembered, so that the message is processed and
    /// relayed at most once. Must be at least `maxMessageAge + maxClockSkew` (the width of the
    /// acceptance window) so that a replay arriving after its ID was forgotten falls outside the
    /// window; the engine uses `max(seenTTL, maxMessageAge + maxClockSkew)`.
    public var seenTTL: Double = 120
    /// Most IDs in the seen-cache; the oldest is evicted first.
    public var maxSeenEntries = 50_000

    /// Oldest accepted message: `timestamp` may be at most this far behind the local wall clock.
    public var maxMessageAge: Double = 90
    /// Newest accepted message: `timestamp` may be at most this far ahead of the local wall clock.
    public var maxClockSkew: Double = 30

    /// How long full messages are kept to answer IWant.
    public var messageCacheTTL: Double = 60
    /// Most messages kept for IWant (oldest evicted first).
    public var maxCachedMessages = 4096
    /// Most bytes kept for IWant, counting each message as its data plus 400 bytes.
    public var maxCacheBytes = 32 << 20

    /// Heartbeat period: announcements (IHave) queued since the last heartbeat are sent then.
    public var heartbeatInterval: Double = 1
    /// Most IDs announced to one peer per heartbeat; further announcements are dropped.
    /// A receiver accepts twice this many per heartbeat interval (a burst of two heartbeats).
    public var maxIHaveIDsPerHeartbeat = 2048

    /// How long after the first announcement of an unseen message the engine waits for the
    /// message before asking an announcer (IWant), and between successive requests.
    public var iWantTimeout: Double = 0.5
    /// Requests after the first one for a message (each to the next announcer, in turn).
    public var maxIWantRetries = 5
    /// Most unseen announced messages being waited for at once; further announcements are ignored.
    public var maxPendingWants = 4096
    /// Most announcers remembered per awaited message.
    public var maxAnnouncersPerWant = 8
    /// IDs a peer may request per second (IWant), with a burst of twice as many.
    public var maxIWantIDsPerSecond: Double = 4096

    /// Most topics remembered per peer (further Subscribe topics are ignored).
    public var maxTopicsPerPeer = 1024
    /// Messages per second one origin may have accepted and relayed (burst
    /// `originBurst`), whoever brings them: a throwaway identity cannot make the network
    /// carry more than this. Messages over it are dropped unrelayed, without penalty
    /// (the relays are not at fault).
    public var originRate: Double = 20
    public var originBurst: Double = 100
    /// Origins tracked at once for `originRate` (a flood of identities shares one bucket).
    public var maxTrackedOrigins = 10_000

    /// Penalty points for a message that is malformed or forged (invalid topic, oversized data,
    /// bad origin, bad signature).
    public var invalidMessagePenalty: Double = 25
    /// Penalty points for a message whose timestamp is outside the acceptance window
    /// (honest peers can cause this with a skewed clock).
    public var stalePenalty: Double = 5
    /// Penalty points for exceeding the IHave or IWant rate.
    public var floodPenalty: Double = 10
    /// A peer whose points reach this is disconnected.
    public var penaltyThreshold: Double = 100
    /// Points forgiven per second.
    public var penaltyDecayPerSecond: Double = 1

    /// The points a rejected message costs its sender.
    public func penalty(for rejection: GossipRejection) -> Double {
        rejection == .tooOld || rejection == .tooNew ? stalePenalty : invalidMessagePenalty
    }

    /// `points` in units of an invalid message's penalty (1 when that penalty is not positive).
    public func weight(ofPenalty points: Double) -> Double {
        invalidMessagePenalty > 0 ? points / invalidMessagePenalty : 1
    }

    /// The documented defaults.
    public init() {}

    /// How long IDs stay in the seen-cache: `max(seenTTL, maxMessageAge + maxClockSkew)`.
    public var seenRetention: Double { max(seenTTL, maxMessageAge + maxClockSkew) }
}

/// Seconds to nanoseconds, clamped to [0, 2^63).
func nanoseconds(_ seconds: Double) -> UInt64 {
    guard seconds > 0 else { return 0 }
    let ns = seconds * 1e9
    return ns >= 9.2e18 ? UInt64(9.2e18) : UInt64(ns)
}
