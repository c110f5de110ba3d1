import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// Capability a CLI tool announces in Hello to talk to a node as a gossip client
/// (publish into the node, or receive its deliveries) rather than as a peer.
public enum GossipClient {
    public static let capability = "gossip-client"
}

/// Drives the pure `GossipEngine` for a node: every engine call runs on one event loop,
/// actions are carried out in order, and the engine's deadlines are honoured.
///
/// Peers (other nodes) take part in dissemination. Gossip clients (CLI tools) do not:
/// a client's Gossip is injected (validated as any other, then flooded) and answered
/// with IHave {topic, [id]} when accepted or Error when rejected; a client's Subscribe
/// makes the node subscribe to those topics and forward every delivery on them.
final class GossipService: Sendable {
    let loop: EventLoop
    private let log: NodeLog

    /// A gossip client and its budgets: publishing is rate- and byte-limited per client,
    /// and a client may follow a bounded number of topics.
    struct Client {
        let connection: any PeerLink
        var topics: Set<String> = []
        var publishes: TokenBucket
        var bytes: TokenBucket

        init(_ connection: any PeerLink, limits: ClientLimits, now: Instant) {
            self.connection = connection
            publishes = TokenBucket(rate: limits.publishRate, burst: limits.publishBurst, now: now)
            bytes = TokenBucket(rate: limits.byteRate, burst: limits.byteBurst, now: now)
        }
    }

    /// Limits on gossip clients (publishers and subscribers using the node).
    struct ClientLimits {
        var publishRate = 20.0
        var publishBurst = 50.0
        var byteRate = 512.0 * 1024
        var byteBurst = 2.0 * 1024 * 1024
        /// Topics one client may follow.
        var topicsPerClient = 64
        /// Topics all clients together may add to what the node carries.
        var clientTopics = 1024
    }

    let clientLimits = ClientLimits()
    /// Topics the node subscribes to for its own sake (well-known and configured).
    private let pinned: Set<String>
    /// What the service tells the node; set once, before the node starts.
    struct Hooks {
        /// A peer or client sent invalid gossip (for its score), with the penalty's weight in
        /// units of an invalid message's (`GossipAction.penalize`).
        var onOffence: (@Sendable (any PeerLink, String, Double) -> Void)?
        /// The engine disconnects a peer for its gossip penalties, each already reported
        /// through `onOffence`: the close is their verdict, not a further offence.
        var onVerdict: (@Sendable (any PeerLink) -> Void)?
        /// A peer was the first to bring a valid message of another origin.
        var onFirstDelivery: (@Sendable (any PeerLink) -> Void)?
        /// A client went over a budget.
        var onOverrun: (@Sendable (any PeerLink, String) -> Void)?
        /// Every delivery (announcement handling, mirroring).
        var onDeliver: (@Sendable (Gossip, [UInt8], (any PeerLink)?) -> Void)?
    }

    private let hooks = NIOLockedValueBox(Hooks())
    var onOffence: (@Sendable (any PeerLink, String, Double) -> Void)? {
        get { hooks.withLockedValue { $0.onOffence } }
        set { hooks.withLockedValue { $0.onOffence = newValue } }
    }
    var onVerdict: (@Sendable (any PeerLink) -> Void)? {
        get { hooks.withLockedValue { $0.onVerdict } }
        set { hooks.withLockedValue { $0.onVerdict = newValue } }
    }
    var onFirstDelivery: (@Sendable (any PeerLink) -> Void)? {
        get { hooks.withLockedValue { $0.onFirstDelivery } }
        set { hooks.withLockedValue { $0.onFirstDelivery = newValue } }
    }
    var onOverrun: (@Sendable (any PeerLink, String) -> Void)? {
        get { hooks.withLockedValue { $0.onOverrun } }
        set { hooks.withLockedValue { $0.onOverrun = newValue } }
    }
    var onDeliver: (@Sendable (Gossip, [UInt8], (any PeerLink)?) -> Void)? {
        get { hooks.withLockedValue { $0.onDeliver } }
        set { hooks.withLockedValue { $0.onDeliver = newValue } }
    }

    /// Everything that changes, bound to `loop`: only code running there may touch it,
    /// and the compiler holds every other path to that.
    struct State {
        var engine: GossipEngine
        var peers: [PeerKey: any PeerLink] = [:]
        var keys: [ObjectIdentifier: PeerKey] = [:]
        var clients: [ObjectIdentifier: Client] = [:]
        var nextKey: PeerKey = 1
        /// Gossip messages not sent because the peer or client was not reading.
        var droppedForBackpressure = 0
        var timer: Scheduled<Void>?
        var timerDeadline: Instant?
        /// Subscribers inside this process (control-socket clients), by token.
        var locals: [Int: LocalSubscriber] = [:]
        var nextLocal = 1
    }

    private let state: NIOLoopBoundBox<State>

    init(loop: EventLoop, identity: Ed25519KeyPair, topics: Set<String>, log: NodeLog, config: GossipConfig = GossipConfig()) {
        self.loop = loop
        self.log = log
        self.pinned = topics.union([Topic.repositories, Topic.commits])
        var engine = GossipEngine(config: config, identity: identity, seed: Random.uint64())
        let now = Instant.now()
        for t in pinned { _ = try? engine.subscribe(t, now: now) }
        state = NIOLoopBoundBox.makeBoxSendingValue(State(engine: engine), eventLoop: loop)
    }

    static func wallClock() -> UInt64 { UInt64(unixTime() * 1000) }

    func isClient(_ connection: any PeerLink) -> Bool {
        connection.peer?.capabilities.contains(GossipClient.capability) ?? false
    }

    /// Capability a node announces to take part in gossip as a peer.
    static let capability = "gossip"

    /// Whether the peer announced `gossip` (and so may be sent Subscribe and Gossip).
    func isGossipPeer(_ connection: any PeerLink) -> Bool {
        connection.peer?.capabilities.contains(Self.capability) ?? false
    }

    /// A session was established: gossip peers join dissemination; clients just get an
    /// entry; a peer that announced neither is never sent gossip.
    func connected(_ connection: any PeerLink) {
        // A session that announced neither (a command's dial) is never registered: no hop to
        // the gossip loop for it, here or when it closes.
        guard isClient(connection) || isGossipPeer(connection) else { return }
        loop.execute { [self] in
            let id = ObjectIdentifier(connection)
            if isClient(connection) {
                state.value.clients[id] = Client(connection, limits: clientLimits, now: .now())
                return
            }
            guard isGossipPeer(connection) else { return }
            let key = state.value.nextKey
            state.value.nextKey += 1
            state.value.keys[id] = key
            state.value.peers[key] = connection
            perform(state.value.engine.peerConnected(key, now: .now()))
        }
    }

    func disconnected(_ connection: any PeerLink) {
        guard isClient(connection) || isGossipPeer(connection) else { return }
        loop.execute { [self] in
            let id = ObjectIdentifier(connection)
            if let client = state.value.clients.removeValue(forKey: id) {
                release(client.topics)
                return
            }
            guard let key = state.value.keys.removeValue(forKey: id) else { return }
            state.value.peers[key] = nil
            state.value.engine.peerDisconnected(key)
        }
    }

    /// Handles gossip traffic; returns false for other messages.
    func handle(_ message: Message, from connection: any PeerLink) -> Bool {
        guard let message = message.gossipMessage else { return false }
        loop.execute { [self] in
            let id = ObjectIdentifier(connection)
            if state.value.clients[id] != nil {
                handleClient(message, from: connection)
            } else if let key = state.value.keys[id] {
                perform(state.value.engine.receive(message, from: key, now: .now(), wallClockMillis: Self.wallClock()))
            } else if connection.peer != nil, !isGossipPeer(connection), !isClient(connection) {
                // Gossip from a peer that did not announce the capability (guts-protocol(7)).
                connection.close(.protocolViolation, "\(message.typeName) from a peer that did not announce 'gossip' or 'gossip-client'")
            }
        }
        return true
    }

    private func handleClient(_ message: GossipMessage, from connection: any PeerLink) {
        let id = ObjectIdentifier(connection)
        switch message {
        case let .gossip(g):
            let now = Instant.now()
            guard var client = state.value.clients[id] else { return }
            let ok = client.publishes.take(1, now: now) && client.bytes.take(Double(g.data.count), now: now)
            let wait = max(client.publishes.retryAfter(1, now: now), client.bytes.retryAfter(Double(g.data.count), now: now))
            state.value.clients[id] = client
            guard ok else {
                let seconds = wait.isFinite ? Int(wait.rounded(.up)) : 60
                connection.send(.error(ErrorReply(requestID: 0, code: .busy,
                                                  message: "retry-after=\(seconds); gossip rejected: this client publishes faster than the node accepts")))
                onOverrun?(connection, "publish rate")
                return
            }
            let (result, actions) = state.value.engine.inject(g, now: .now(), wallClockMillis: Self.wallClock())
            switch result {
            case let .success(messageID):
                connection.send(.gossip(.iHave(IHave(topic: g.topic, ids: [messageID]))))
                log.debug("gossip: accepted \(Hex.encode(messageID.prefix(8))) on \(g.topic) from client \(connection.remoteAddress)")
            case .failure(.duplicate):
                connection.send(.gossip(.iHave(IHave(topic: g.topic, ids: [g.id]))))
            case let .failure(rejection):
                log.info("gossip: rejected a message from client \(connection.remoteAddress): \(rejection)")
                // Clients are scored like peers: a forged message costs the same. Scored before
                // the answer, so a client that comes back on reading it meets its new score.
                let config = state.value.engine.config
                onOffence?(connection, "\(rejection)", config.weight(ofPenalty: config.penalty(for: rejection)))
                connection.send(.error(ErrorReply(requestID: 0, code: .badRequest, message: "gossip rejected: \(rejection)")))
            }
            perform(actions)
        case let .subscribe(s):
            guard var client = state.value.clients[id] else { return }
            let topics = Set(s.topics.filter(Topic.isValid))
            if s.subscribe {
                var added = topics.subtracting(client.topics)
                // A client follows at most `topicsPerClient` topics, and clients together add
                // at most `clientTopics` to what the node carries; the rest are ignored.
                let room = max(0, clientLimits.topicsPerClient - client.topics.count)
                let carried = Set(state.value.clients.values.flatMap(\.topics)).subtracting(pinned).count
                let fresh = added.filter { !isWanted($0, except: nil) }
                let nodeRoom = max(0, clientLimits.clientTopics - carried)
                if added.count > room || fresh.count > nodeRoom {
                    let keptFresh = Set(fresh.sorted().prefix(min(room, nodeRoom)))
                    let keptOld = Set(added.subtracting(fresh).sorted().prefix(max(0, room - keptFresh.count)))
                    added = keptFresh.union(keptOld)
                    onOverrun?(connection, "topic subscriptions")
                    log.debug("gossip: client \(connection.remoteAddress) asked for more topics than it may follow")
                }
                client.topics.formUnion(added)
                state.value.clients[id] = client
                for t in added where !isWanted(t, except: id) {
                    perform((try? state.value.engine.subscribe(t, now: .now())) ?? [])
                }
            } else {
                let removed = topics.intersection(client.topics)
                client.topics.subtract(removed)
                state.value.clients[id] = client
                release(removed)
            }
        default:
            break
        }
    }

    /// Whether anything other than client `except` wants `topic`.
    private func isWanted(_ topic: String, except: ObjectIdentifier?) -> Bool {
        pinned.contains(topic) || state.value.clients.contains { $0.key != except && $0.value.topics.contains(topic) }
            || state.value.locals.values.contains { $0.topics.contains(topic) }
    }

    private func release(_ topics: Set<String>) {
        for t in topics where !isWanted(t, except: nil) {
            perform(state.value.engine.unsubscribe(t))
        }
    }

    /// Publishes `data` on `topic` signed by this node.
    func publish(topic: String, data: [UInt8]) {
        loop.execute { [self] in
            do {
                let (id, actions) = try state.value.engine.publish(topic: topic, data: data, now: .now(), wallClockMillis: Self.wallClock())
                log.debug("gossip: published \(Hex.encode(id.prefix(8))) on \(topic)")
                perform(actions)
            } catch {
                log.info("gossip: cannot publish on \(topic): \(error)")
            }
        }
    }

    /// The engine's counters (read on the loop).
    func stats() -> EventLoopFuture<GossipStats> {
        loop.submit { self.state.value.engine.stats }
    }

    private func perform(_ actions: [GossipAction]) {
        for action in actions {
            switch action {
            case let .send(key, message):
                guard let peer = state.value.peers[key] else { break }
                // Full messages are best effort: a peer that does not take what it was sent
                // gets announcements only (it can pull with IWant once it reads again).
                if case .gossip = message, !peer.isWritable {
                    state.value.droppedForBackpressure += 1
                    break
                }
                peer.send(.gossip(message))
            case let .deliver(gossip, id, from):
                for (_, client) in state.value.clients where client.topics.contains(gossip.topic) {
                    guard client.connection.isWritable else {
                        state.value.droppedForBackpressure += 1
                        continue
                    }
                    client.connection.send(.gossip(.gossip(gossip)))
                }
                deliverLocally(gossip, id: id)
                if let key = from, let peer = state.value.peers[key], peer.peer?.peerID.publicKey != gossip.origin {
                    onFirstDelivery?(peer)
                }
                onDeliver?(gossip, id, from.flatMap { state.value.peers[$0] })
            case let .penalize(key, reason, weight):
                log.info("gossip: penalised \(state.value.peers[key].map(Self.describe) ?? "peer"): \(reason)")
                if let peer = state.value.peers[key] { onOffence?(peer, reason, weight) }
            case let .disconnect(key, reason):
                if let conn = state.value.peers.removeValue(forKey: key) {
                    state.value.keys[ObjectIdentifier(conn)] = nil
                    log.info("gossip: disconnecting \(Self.describe(conn)): \(reason)")
                    onVerdict?(conn)
                    conn.close(.protocolViolation, "gossip penalties: \(reason)")
                }
            }
        }
        schedule()
    }

    static func describe(_ c: any PeerLink) -> String {
        c.peer.map { "\($0.peerID.short) \(c.remoteAddress)" } ?? c.remoteAddress
    }

    private func schedule() {
        guard let deadline = state.value.engine.nextDeadline else { return }
        if let current = state.value.timerDeadline, current <= deadline, state.value.timer != nil { return }
        state.value.timer?.cancel()
        state.value.timerDeadline = deadline
        let now = Instant.now()
        let delay = deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0
        state.value.timer = loop.scheduleTask(in: .nanoseconds(delay)) { [self] in
            state.value.timer = nil
            state.value.timerDeadline = nil
            perform(state.value.engine.tick(now: .now()))
        }
    }
}

// MARK: - Local publishers and subscribers (the control socket)

extension GossipService {
    /// A subscriber in this process: `deliver` returns false to end the subscription.
    struct LocalSubscriber {
        let topics: Set<String>
        let deliver: @Sendable (Gossip, [UInt8]) -> Bool
    }

    /// Publishes like `publish`, but reports the message ID or why it was refused.
    func publishReporting(topic: String, data: [UInt8]) -> EventLoopFuture<[UInt8]> {
        loop.submit { [self] in
            let (id, actions) = try state.value.engine.publish(topic: topic, data: data, now: .now(), wallClockMillis: Self.wallClock())
            log.debug("gossip: published \(Hex.encode(id.prefix(8))) on \(topic) for a control client")
            perform(actions)
            return id
        }
    }

    /// Subscribes the node to `topics` (valid ones; check first) for an in-process
    /// subscriber; completes with a token for `removeLocalSubscriber` once deliveries flow.
    func addLocalSubscriber(topics: Set<String>, deliver: @escaping @Sendable (Gossip, [UInt8]) -> Bool) -> EventLoopFuture<Int> {
        loop.submit { [self] in
            let token = state.value.nextLocal
            state.value.nextLocal += 1
            for t in topics where !isWanted(t, except: nil) {
                perform((try? state.value.engine.subscribe(t, now: .now())) ?? [])
            }
            state.value.locals[token] = LocalSubscriber(topics: topics, deliver: deliver)
            return token
        }
    }

    func removeLocalSubscriber(_ token: Int) {
        loop.execute { [self] in
            guard let gone = state.value.locals.removeValue(forKey: token) else { return }
            release(gone.topics)
        }
    }

    /// Hands a delivery to the local subscribers of its topic; drops those that are done.
    fileprivate func deliverLocally(_ gossip: Gossip, id: [UInt8]) {
        var done: [Int] = []
        for (token, sub) in state.value.locals where sub.topics.contains(gossip.topic) {
            if !sub.deliver(gossip, id) { done.append(token) }
        }
        for token in done {
            if let gone = state.value.locals.removeValue(forKey: token) { release(gone.topics) }
        }
    }
}
