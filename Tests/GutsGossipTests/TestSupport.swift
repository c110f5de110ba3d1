import GutsCrypto
import GutsGossip
import GutsSupport
import GutsWire
import XCTest

/// Fixed points on both clocks for unit tests.
let monotonicStart: UInt64 = 1_000_000_000_000
let wallStart: UInt64 = 1_800_000_000_000

/// The monotonic instant `seconds` after the start.
func at(_ seconds: Double) -> Instant { Instant(nanoseconds: monotonicStart + UInt64(seconds * 1e9)) }
/// The wall clock (ms) `seconds` after the start.
func wall(_ seconds: Double) -> UInt64 { UInt64(Int64(wallStart) + Int64(seconds * 1000)) }

func keyPair(_ n: UInt8) throws -> Ed25519KeyPair { try Ed25519KeyPair(seed: [UInt8](repeating: n, count: 32)) }

/// A message signed by `key` (timestamp defaults to the wall clock at start).
func signedGossip(_ text: String, topic: String = "chat", by key: Ed25519KeyPair, sequence: UInt64 = 1,
                  timestamp: UInt64 = wallStart) -> Gossip {
    var g = Gossip(topic: topic, origin: key.publicKey, sequence: sequence, timestamp: timestamp, data: Array(text.utf8),
                   signature: [])
    g.signature = key.sign(g.signedBytes)
    return g
}

/// An engine subscribed to "chat" with peers that subscribed to `topics` (default "chat").
func makeEngine(peers: [PeerKey], topics: [String] = ["chat"], config: GossipConfig = GossipConfig(),
                subscribe: [String] = ["chat"]) throws -> GossipEngine {
    var engine = GossipEngine(config: config, identity: try keyPair(200), seed: 1)
    for topic in subscribe { _ = try engine.subscribe(topic, now: at(0)) }
    for peer in peers {
        _ = engine.peerConnected(peer, now: at(0))
        _ = engine.receive(.subscribe(Subscribe(subscribe: true, topics: topics)), from: peer, now: at(0), wallClockMillis: wall(0))
    }
    return engine
}

extension [GossipAction] {
    /// Peers that were sent a full gossip message.
    var gossipTargets: [PeerKey] {
        compactMap { if case let .send(peer, .gossip) = $0 { return peer } else { return nil } }
    }

    var delivered: [Gossip] {
        compactMap { if case let .deliver(g, _, _) = $0 { return g } else { return nil } }
    }

    var penalized: [PeerKey] {
        compactMap { if case let .penalize(peer, _, _) = $0 { return peer } else { return nil } }
    }

    var disconnected: [PeerKey] {
        compactMap { if case let .disconnect(peer, _) = $0 { return peer } else { return nil } }
    }

    /// Every message sent, with its destination.
    var sent: [(peer: PeerKey, message: GossipMessage)] {
        compactMap { if case let .send(peer, message) = $0 { return (peer, message) } else { return nil } }
    }

    /// IHave messages sent, by destination.
    var iHaves: [(peer: PeerKey, iHave: IHave)] {
        compactMap { if case let .send(peer, .iHave(ih)) = $0 { return (peer, ih) } else { return nil } }
    }

    var iWants: [(peer: PeerKey, iWant: IWant)] {
        compactMap { if case let .send(peer, .iWant(iw)) = $0 { return (peer, iw) } else { return nil } }
    }
}
