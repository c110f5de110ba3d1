#if canImport(Glibc)
import Glibc
#endif
import GutsControl
import GutsGossip
import GutsIdentity
import GutsSupport
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
                                   bytesIn: c.bytesReceived, bytesOut: c.bytesSent)
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
