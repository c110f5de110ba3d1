import GutsWire

/// An opaque key for one connection, chosen by the node that drives the engine.
public typealias PeerKey = UInt64

/// What the engine asks its driver to do. Actions are returned in the order they must be
/// carried out.
public enum GossipAction: Equatable, Sendable {
    /// Send a wire message to one peer.
    case send(PeerKey, GossipMessage)
    /// A new valid message on a topic this node subscribes to; `from` is the peer it came
    /// from, or nil when it was published or injected locally.
    case deliver(Gossip, id: [UInt8], from: PeerKey?)
    /// The peer sent something invalid (the engine keeps its own points). `weight` is the
    /// penalty in units of an invalid message's (`GossipConfig.invalidMessagePenalty`): 1 for
    /// a malformed or forged message, less for what honest peers can cause (a timestamp
    /// outside the window, announcing or asking too fast), so a node's peer score can charge
    /// in the same proportion.
    case penalize(PeerKey, reason: String, weight: Double)
    /// The peer's penalties reached the threshold: close the connection. The engine has
    /// already forgotten the peer and ignores anything more from it.
    case disconnect(PeerKey, reason: String)
}

/// Why a gossip message was not accepted.
public enum GossipRejection: Error, Hashable, Sendable, CustomStringConvertible {
    /// The topic does not satisfy `Topic.isValid`.
    case invalidTopic
    /// The data is over `GossipLimits.maxData`.
    case dataTooLarge
    /// The origin is not a 32-byte Ed25519 public key.
    case invalidOrigin
    /// The timestamp is more than `maxMessageAge` behind the local wall clock.
    case tooOld
    /// The timestamp is more than `maxClockSkew` ahead of the local wall clock.
    case tooNew
    /// The signature does not verify over `signedBytes` with `origin`.
    case badSignature
    /// The message was already processed (only returned by `inject`; never penalised).
    case duplicate
    /// Its origin published more than `GossipConfig.originRate` allows (never penalised).
    case originRateLimited

    public var description: String {
        switch self {
        case .invalidTopic: return "invalid topic"
        case .dataTooLarge: return "data too large"
        case .invalidOrigin: return "invalid origin"
        case .tooOld: return "timestamp too old"
        case .tooNew: return "timestamp too far in the future"
        case .badSignature: return "bad signature"
        case .duplicate: return "already seen"
        case .originRateLimited: return "its origin publishes faster than this node relays"
        }
    }
}

/// Counters of one engine, for tests, logs and benchmarks.
public struct GossipStats: Equatable, Sendable {
    /// Gossip messages received from peers (every copy, valid or not).
    public var received = 0
    /// Received copies of messages already processed.
    public var duplicates = 0
    /// Messages handed to the local subscriber (`.deliver` actions).
    public var delivered = 0
    /// Messages published or injected locally and accepted.
    public var published = 0
    /// Full messages pushed to eager peers (own and relayed).
    public var relayed = 0
    /// Received and injected messages rejected, by reason.
    public var rejected: [GossipRejection: Int] = [:]
    /// Valid-looking messages dropped because this node does not subscribe to their topic.
    public var unsubscribedDropped = 0
    /// Valid messages dropped because their origin was over `originRate`.
    public var originLimited = 0
    /// Control messages sent, by kind.
    public var subscribeSent = 0
    public var iHaveSent = 0
    public var iWantSent = 0
    public var pruneSent = 0
    /// Full messages sent in answer to IWant.
    public var iWantServed = 0
    /// Requested IDs not in the message cache (or requested too often by that peer).
    public var iWantMisses = 0
    /// Awaited messages given up after every request timed out.
    public var wantsAbandoned = 0
    /// Announcements not queued or not followed because of the per-peer or pending limits.
    public var announcementsDropped = 0
    /// `.penalize` and `.disconnect` actions emitted.
    public var penalties = 0
    public var disconnects = 0

    public init() {}

    /// All control messages sent (Subscribe, IHave, IWant, Prune).
    public var controlSent: Int { subscribeSent + iHaveSent + iWantSent + pruneSent }
    /// All rejections.
    public var rejectedTotal: Int { rejected.values.reduce(0, +) }
}
