#if canImport(Glibc)
import Glibc
#endif
import GutsControl
import GutsDHT
import GutsGossip
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTrust
import GutsTransport
import NIOConcurrencyHelpers
import NIOCore

/// The node's side of the control socket: answers `ControlHandler` from what `Node`
/// exposes (its options, established sessions and gossip service).
public final class NodeControl: ControlHandler {
    let node: Node
    /// Unix time and monotonic instant of construction (just before the node starts).
    let startedAt = unixTime()
    let started = Instant.now()
    private let listening = NIOLockedValueBox<[String]>([])

    /// Seconds `peers` waits for each peer's Pong before reporting without it.
    public static let probeTimeout = 1.0

    public init(node: Node) {
        self.node = node
    }

    /// The addresses the node accepts peers on, once bound.
    public func setListening(_ addresses: [String]) {
        listening.withLockedValue { $0 = addresses }
    }

    public func status() -> NodeStatus {
        let sessions = node.establishedConnections
        let inbound = sessions.filter(\.inbound).count
        return NodeStatus(peerID: node.peerID.description, agent: node.options.session.agent, pid: Int(getpid()),
                          listening: listening.withLockedValue { $0 },
                          repositories: (node.options.repositories?.all() ?? []).map(\.value).sorted(),
                          startedAt: startedAt, uptimeSeconds: Instant.now().seconds(since: started),
                          inbound: inbound, outbound: sessions.count - inbound, open: node.connectionCount)
    }

    public func peers(_ done: @escaping @Sendable ([PeerSummary]) -> Void) {
        let sessions = node.establishedConnections
        let probes = sessions.map { $0.measureRoundTrip(timeout: Self.probeTimeout) }
        EventLoopFuture.whenAllComplete(probes, on: node.group.next()).whenComplete { _ in
            let list = sessions.compactMap { c -> PeerSummary? in
                guard let peer = c.peer else { return nil }
                return PeerSummary(peerID: peer.peerID.description, direction: c.inbound ? .inbound : .outbound,
                                   address: c.remoteAddress, agent: peer.agent,
                                   isClient: peer.capabilities.contains(GossipClient.capability),
                                   roundTrip: c.lastRoundTrip, connectedSince: c.openedAt,
                                   bytesIn: c.bytesReceived, bytesOut: c.bytesSent, transport: c.transportName)
            }
            done(list.sorted { ($0.connectedSince, $0.peerID) < ($1.connectedSince, $1.peerID) })
        }
    }

    public func publish(topic: String, data: [UInt8], _ done: @escaping @Sendable (Result<PublishReceipt, ControlError>) -> Void) {
        guard Topic.isValid(topic) else {
            done(.failure(Self.invalidTopic(topic)))
            return
        }
        let origin = node.peerID.description
        node.gossipService.publishReporting(topic: topic, data: data).whenComplete { result in
            switch result {
            case let .success(id):
                done(.success(PublishReceipt(id: id, topic: topic, origin: origin, bytes: data.count)))
            case let .failure(error):
                done(.failure(ControlError(.rejected, "the node cannot publish it: \(error)")))
            }
        }
    }

    public func subscribe(topics: [String], deliver: @escaping @Sendable (GossipDelivery) -> Bool,
                          _ done: @escaping @Sendable (Result<any ControlSubscription, ControlError>) -> Void) {
        if let bad = topics.first(where: { !Topic.isValid($0) }) {
            done(.failure(Self.invalidTopic(bad)))
            return
        }
        let service = node.gossipService
        service.addLocalSubscriber(topics: Set(topics)) { gossip, id in
            let origin = (try? PeerID(publicKey: gossip.origin))?.description ?? Hex.encode(gossip.origin)
            return deliver(GossipDelivery(topic: gossip.topic, origin: origin, id: id,
                                          timestampMillis: gossip.timestamp, data: gossip.data))
        }.whenComplete { result in
            switch result {
            case let .success(token): done(.success(Subscription(service: service, token: token)))
            case let .failure(error): done(.failure(ControlError(.unavailable, "the node cannot subscribe now: \(error)")))
            }
        }
    }

    // MARK: Scores and bans

    public func scores(peers: [String]) -> Result<PeerScores, ControlError> {
        var ids: [PeerID] = []
        for text in peers {
            guard let id = PeerID(text) else { return .failure(Self.invalidPeer(text)) }
            if !ids.contains(id) { ids.append(id) }
        }
        return .success(node.scoreReports(ids))
    }

    public func ban(target: String, seconds: Double?) -> Result<Bool, ControlError> {
        let parsed: BanTarget
        do { parsed = try BanTarget.parse(target) } catch { return .failure(ControlError(.badRequest, error.description)) }
        if let seconds, !(seconds.isFinite && seconds > 0) {
            return .failure(ControlError(.badRequest, "\"seconds\" must be a positive number, or null"))
        }
        let changed = node.ban(parsed, seconds: seconds)
        node.persistSoon()
        return .success(changed)
    }

    public func unban(target: String) -> Result<Bool, ControlError> {
        let parsed: BanTarget
        do { parsed = try BanTarget.parse(target) } catch { return .failure(ControlError(.badRequest, error.description)) }
        let changed = node.unban(parsed)
        if changed { node.persistSoon() }
        return .success(changed)
    }

    public func find(key: String, _ done: @escaping @Sendable (Result<FindResult, ControlError>) -> Void) {
        guard let dht = node.dht else {
            done(.failure(ControlError(.unavailable, "this node takes no part in the DHT (--no-dht)")))
            return
        }
        guard let query = DHTService.query(key) else {
            done(.failure(ControlError(.badRequest, "\(JSON.quote(String(key.prefix(60)))) is neither a peer ID nor a repository ID")))
            return
        }
        let node = self.node
        dht.lookup(query) { result in
            guard case let .providers(repo) = query, let rid = RepositoryID(bytes: repo.bytes) else {
                done(.success(DHTService.findResult(result, key: key, local: [])))
                return
            }
            dht.localProviders(repo).whenComplete { local in
                let found = DHTService.findResult(result, key: key, local: (try? local.get()) ?? [])
                Self.addAnnouncers(found, of: rid, node: node, dht: dht, done: done)
            }
        }
    }

    /// Peer lookups at most for announcers without a known address, per `find`.
    static let maxAnnouncerLookups = 3

    /// Merges the announcers of `rid` seen through gossip into a `find` result: those the
    /// DHT did not name, with the addresses this node knows for them (else from a peer
    /// lookup, for a few), then every provider ordered by this node's score of it, best
    /// first (equal scores keep DHT providers first).
    static func addAnnouncers(_ found: FindResult, of rid: RepositoryID, node: Node, dht: DHTService,
                              done: @escaping @Sendable (Result<FindResult, ControlError>) -> Void) {
        let named = Set(found.providers.map(\.peerID))
        let seen = node.announcers(of: rid).filter { !named.contains($0.peer.description) }
        let lifetime = node.seenProviders.withLockedValue { $0.limits.lifetime }
        let ids = seen.map { NodeID(publicKey: $0.peer.publicKey) }
        dht.knownAddresses(ids).whenComplete { known in
            let known = (try? known.get()) ?? [:]
            let unresolved = ids.filter { known[$0] == nil }.prefix(maxAnnouncerLookups)
            let resolved = NIOLockedValueBox(known)
            let pending = NIOLockedValueBox(unresolved.count)
            let finish: @Sendable () -> Void = {
                let addresses = resolved.withLockedValue { $0 }
                let now = Instant.now(), unix = UInt64(max(0, unixTime()))
                let extra = seen.compactMap { p -> FoundProvider? in
                    guard let list = addresses[NodeID(publicKey: p.peer.publicKey)], !list.isEmpty else { return nil }
                    let left = max(0, lifetime - now.seconds(since: p.seen))
                    return FoundProvider(peerID: p.peer.description, addresses: list.map(\.description), expires: unix + UInt64(left))
                }
                done(.success(DHTService.merge(found, announcers: extra, score: { node.score($0) })))
            }
            guard !unresolved.isEmpty else { return finish() }
            for id in unresolved {
                dht.lookup(.peer(id)) { r in
                    if let record = r.peerRecord { resolved.withLockedValue { $0[id] = record.addresses } }
                    let left = pending.withLockedValue { n -> Int in
                        n -= 1
                        return n
                    }
                    if left == 0 { finish() }
                }
            }
        }
    }

    public func report(peer: String, event: String, reason: String) -> Result<PeerScoreInfo, ControlError> {
        guard let id = PeerID(peer) else { return .failure(Self.invalidPeer(peer)) }
        guard let kind = ScoreEvent(name: event), kind.isPenalty else {
            let names = ScoreEvent.allCases.filter(\.isPenalty).map(\.rawValue).joined(separator: ", ")
            return .failure(ControlError(.badRequest, "\(JSON.quote(String(event.prefix(40)))) is not a penalty; report one of: \(names)"))
        }
        node.report(kind, peer: id, reason: "reported: " + reason)
        node.persistSoon()
        guard let info = node.scoreReports([id]).peers.first else {
            return .failure(ControlError(.unavailable, "the node lost the peer's score"))
        }
        return .success(info)
    }

    static func invalidPeer(_ text: String) -> ControlError {
        ControlError(.badRequest, "\(JSON.quote(String(text.prefix(60)))) is not a valid peer ID (bad length or checksum)")
    }

    static func invalidTopic(_ topic: String) -> ControlError {
        let shown = topic.count > 60 ? String(topic.prefix(60)) + "..." : topic
        return ControlError(.rejected, "invalid topic \(JSON.quote(shown)): 1 to 255 of a-z 0-9 / . _ - , not starting or ending with /")
    }

    struct Subscription: ControlSubscription {
        let service: GossipService
        let token: Int
        func cancel() { service.removeLocalSubscriber(token) }
    }
}
