import GutsCrypto
import GutsPolicy
import GutsSupport
import GutsWire

/// The gossip protocol of one node as a pure state machine: messages, events and the current
/// time go in, `GossipAction`s come out. It never reads a clock, does no I/O and keeps no
/// global state; every random choice comes from the seed, so a run is reproducible.
///
/// Dissemination follows epidemic broadcast trees (Plumtree): per topic, each peer subscribed
/// to it is either *eager* (new messages are pushed to it in full) or *lazy* (it gets only the
/// message IDs, in IHave batches at the heartbeat). All subscribed peers start eager, up to
/// `eagerFanout` chosen at random; a peer that sends a message this node already has is made
/// lazy and told so (Prune), so the eager links shrink to a tree; a lazy peer that announces a
/// message which does not arrive in time is asked for it (IWant) and made eager again (graft),
/// which repairs the tree.
///
/// Rules: a node accepts and relays only topics it subscribes to, and sends messages and
/// announcements of a topic only to peers that subscribed to it. Every received message is
/// checked (topic, size, origin, then ID and dedup, then timestamp window and signature)
/// before anything else happens; a failure penalises the sender. A message is processed and
/// relayed at most once, and never sent back to the peer it came from.
///
/// `GossipEngine` is a value type: a copy is an independent engine with the same identity and
/// state at the time of the copy. Drive exactly one copy per node.
public struct GossipEngine: Sendable {
    private struct Announcement: Sendable {
        var topic: String
        var order: UInt64
    }

    private struct PeerState: Sendable {
        var topics: Set<String> = []
        var penalty: Double = 0
        var penaltyUpdated: UInt64
        var iHaveBudget: TokenBucket
        var iWantBudget: TokenBucket
        /// Announcements queued for the next heartbeat.
        var pendingIHave: [MessageID: Announcement] = [:]
    }

    private struct TopicMesh: Sendable {
        var eager: Set<PeerKey> = []
        var lazy: Set<PeerKey> = []
    }

    private struct PendingWant: Sendable {
        var topic: String
        var announcers: [PeerKey]
        var attempts = 0
        var deadline: UInt64
    }

    /// The configuration this engine was created with.
    public let config: GossipConfig
    private let identity: Ed25519KeyPair
    private var rng: SplitMix64
    private var meshes: [String: TopicMesh] = [:]
    private var peers: [PeerKey: PeerState] = [:]
    private var seen: SeenCache
    /// Accepted messages per origin (see `GossipConfig.originRate`).
    private var origins: KeyedLimiter<[UInt8]>
    private var cache: MessageCache
    private var wants: [MessageID: PendingWant] = [:]
    private var wantTimers = MinHeap<MessageID>()
    private var nextHeartbeat: UInt64?
    private var sequence: UInt64 = 0
    private var announceCounter: UInt64 = 0
    private let heartbeatNs: UInt64
    private let iWantTimeoutNs: UInt64
    private let maxAgeMillis: UInt64
    private let maxSkewMillis: UInt64

    /// Counters since creation.
    public private(set) var stats = GossipStats()

    /// - Parameters:
    ///   - config: tunables; see `GossipConfig` for the defaults.
    ///   - identity: this node's key pair; `publish` signs with it.
    ///   - seed: seeds every random choice (eager peer selection, heartbeat phase).
    public init(config: GossipConfig, identity: Ed25519KeyPair, seed: UInt64) {
        self.config = config
        self.identity = identity
        rng = SplitMix64(seed: seed)
        seen = SeenCache(ttl: nanoseconds(config.seenRetention), capacity: config.maxSeenEntries)
        origins = KeyedLimiter(rate: config.originRate, burst: config.originBurst, maxKeys: config.maxTrackedOrigins)
        cache = MessageCache(ttl: nanoseconds(config.messageCacheTTL), maxEntries: config.maxCachedMessages,
                             maxBytes: config.maxCacheBytes)
        heartbeatNs = max(1_000_000, nanoseconds(config.heartbeatInterval))
        iWantTimeoutNs = nanoseconds(config.iWantTimeout)
        maxAgeMillis = nanoseconds(config.maxMessageAge) / 1_000_000
        maxSkewMillis = nanoseconds(config.maxClockSkew) / 1_000_000
    }

    // MARK: Introspection

    /// This node's Ed25519 public key (the `origin` of what it publishes).
    public var publicKey: [UInt8] { identity.publicKey }
    /// Topics this node subscribes to, sorted.
    public var subscriptions: [String] { meshes.keys.sorted() }
    /// Connected peers, sorted.
    public var connectedPeers: [PeerKey] { peers.keys.sorted() }
    /// Topics a peer told us it subscribes to, sorted (empty for an unknown peer).
    public func topics(of peer: PeerKey) -> [String] { peers[peer].map { $0.topics.sorted() } ?? [] }
    /// Peers that get new messages of `topic` in full, sorted.
    public func eagerPeers(_ topic: String) -> [PeerKey] { meshes[topic].map { $0.eager.sorted() } ?? [] }
    /// Peers that get only announcements of `topic`, sorted.
    public func lazyPeers(_ topic: String) -> [PeerKey] { meshes[topic].map { $0.lazy.sorted() } ?? [] }
    /// IDs in the seen-cache.
    public var seenCount: Int { seen.count }
    /// Messages in the IWant cache.
    public var cachedCount: Int { cache.count }
    /// Announced messages being waited for.
    public var pendingWantCount: Int { wants.count }
    /// A peer's current penalty points, before decay since its last penalty (nil if unknown).
    public func penalty(of peer: PeerKey) -> Double? { peers[peer]?.penalty }

    /// When `tick` must be called next (nil: nothing scheduled). Calling it later delays
    /// announcements and requests; calling it earlier is harmless.
    public var nextDeadline: Instant? {
        var deadline = wantTimers.minKey
        for candidate in [seen.nextExpiry, cache.nextExpiry, hasPendingAnnouncements ? nextHeartbeat : nil] {
            if let c = candidate, deadline.map({ c < $0 }) ?? true { deadline = c }
        }
        return deadline.map { Instant(nanoseconds: $0) }
    }

    // MARK: Peers and subscriptions

    /// A connection to `peer` is established: returns our subscriptions for it (if any).
    /// Reusing the key of a connected peer starts it afresh.
    public mutating func peerConnected(_ peer: PeerKey, now: Instant) -> [GossipAction] {
        let t = now.nanoseconds
        advance(to: t)
        removePeer(peer)
        let iHaveRate = Double(config.maxIHaveIDsPerHeartbeat) / max(0.001, config.heartbeatInterval)
        peers[peer] = PeerState(
            penaltyUpdated: t,
            iHaveBudget: TokenBucket(capacity: 2 * Double(config.maxIHaveIDsPerHeartbeat), rate: iHaveRate, now: t),
            iWantBudget: TokenBucket(capacity: 2 * config.maxIWantIDsPerSecond, rate: config.maxIWantIDsPerSecond, now: t))
        let topics = meshes.keys.sorted()
        var actions: [GossipAction] = []
        for start in stride(from: 0, to: topics.count, by: GossipLimits.maxTopicsPerSubscribe) {
            let chunk = Array(topics[start..<min(topics.count, start + GossipLimits.maxTopicsPerSubscribe)])
            actions.append(.send(peer, .subscribe(Subscribe(subscribe: true, topics: chunk))))
            stats.subscribeSent += 1
        }
        return actions
    }

    /// The connection to `peer` is gone. Unknown peers are ignored.
    public mutating func peerDisconnected(_ peer: PeerKey) {
        removePeer(peer)
    }

    /// Subscribes to `topic`: this node will deliver and relay its messages. Tells every
    /// connected peer. Subscribing twice does nothing.
    public mutating func subscribe(_ topic: String, now: Instant) throws(GossipRejection) -> [GossipAction] {
        guard Topic.isValid(topic) else { throw .invalidTopic }
        advance(to: now.nanoseconds)
        guard meshes[topic] == nil else { return [] }
        var candidates = peers.filter { $0.value.topics.contains(topic) }.map(\.key).sorted()
        candidates.shuffle(using: &rng)
        var mesh = TopicMesh()
        for (i, peer) in candidates.enumerated() {
            if i < config.eagerFanout { mesh.eager.insert(peer) } else { mesh.lazy.insert(peer) }
        }
        meshes[topic] = mesh
        return announceSubscription(true, topic)
    }

    /// Unsubscribes from `topic` and tells every connected peer. Unknown topics are ignored.
    public mutating func unsubscribe(_ topic: String) -> [GossipAction] {
        guard meshes.removeValue(forKey: topic) != nil else { return [] }
        wants = wants.filter { $0.value.topic != topic }
        for key in Array(peers.keys) {
            let kept = peers[key]?.pendingIHave.filter { $0.value.topic != topic } ?? [:]
            peers[key]?.pendingIHave = kept
        }
        return announceSubscription(false, topic)
    }

    // MARK: Messages

    /// Signs a new message with this node's identity and sends it on. Delivered locally
    /// (`from: nil`) when this node subscribes to `topic`; when it does not, the message is
    /// pushed to up to `eagerFanout` random peers subscribed to the topic.
    /// - Returns: the message ID and the actions.
    /// - Throws: `.invalidTopic` or `.dataTooLarge`.
    public mutating func publish(topic: String, data: [UInt8], now: Instant,
                                 wallClockMillis: UInt64) throws(GossipRejection) -> (id: [UInt8], actions: [GossipAction]) {
        guard Topic.isValid(topic) else { throw .invalidTopic }
        guard data.count <= GossipLimits.maxData else { throw .dataTooLarge }
        let t = now.nanoseconds
        advance(to: t)
        sequence &+= 1
        var gossip = Gossip(topic: topic, origin: identity.publicKey, sequence: sequence, timestamp: wallClockMillis,
                            data: data, signature: [])
        let signed = gossip.signedBytes
        gossip.signature = identity.sign(signed)
        let idBytes = BLAKE2b.hash(signed, outputLength: GossipLimits.idLength)
        guard let id = MessageID(idBytes) else { throw .invalidOrigin }
        guard !seen.contains(id) else { throw .duplicate }
        var actions: [GossipAction] = []
        stats.published += 1
        accept(gossip, id: id, idBytes: idBytes, from: nil, now: t, into: &actions)
        return (idBytes, actions)
    }

    /// A message signed elsewhere (e.g. by a client that handed it to this node): validated
    /// exactly like a received one (no penalty on failure), then delivered and sent on like a
    /// published one. An already processed message gives `.failure(.duplicate)` and no actions.
    public mutating func inject(_ gossip: Gossip, now: Instant,
                                wallClockMillis: UInt64) -> (result: Result<[UInt8], GossipRejection>, actions: [GossipAction]) {
        let t = now.nanoseconds
        advance(to: t)
        var actions: [GossipAction] = []
        let result = process(gossip, from: nil, now: t, wallClockMillis: wallClockMillis, into: &actions)
        if case .success = result { stats.published += 1 }
        return (result, actions)
    }

    /// A gossip message from a connected peer; anything from a peer that is not connected
    /// is ignored.
    public mutating func receive(_ message: GossipMessage, from peer: PeerKey, now: Instant,
                                 wallClockMillis: UInt64) -> [GossipAction] {
        guard peers[peer] != nil else { return [] }
        let t = now.nanoseconds
        advance(to: t)
        var actions: [GossipAction] = []
        switch message {
        case let .gossip(gossip):
            stats.received += 1
            _ = process(gossip, from: peer, now: t, wallClockMillis: wallClockMillis, into: &actions)
        case let .subscribe(sub):
            onSubscribe(sub, from: peer)
        case let .iHave(iHave):
            onIHave(iHave, from: peer, now: t, into: &actions)
        case let .iWant(iWant):
            onIWant(iWant, from: peer, now: t, into: &actions)
        case let .prune(prune):
            if meshes[prune.topic]?.eager.remove(peer) != nil { meshes[prune.topic]?.lazy.insert(peer) }
        }
        return actions
    }

    /// Timers: requests (IWant) for announced messages that did not arrive, the heartbeat
    /// (queued announcements), and expiry of the seen-cache and the message cache.
    public mutating func tick(now: Instant) -> [GossipAction] {
        let t = now.nanoseconds
        advance(to: t)
        var actions: [GossipAction] = []
        requestOverdue(now: t, into: &actions)
        if let heartbeat = nextHeartbeat, t >= heartbeat {
            flushAnnouncements(into: &actions)
            nextHeartbeat = heartbeat + ((t - heartbeat) / heartbeatNs + 1) * heartbeatNs
        }
        return actions
    }

    // MARK: Internals

    private var hasPendingAnnouncements: Bool { peers.values.contains { !$0.pendingIHave.isEmpty } }

    /// Expires caches and keeps the heartbeat phase; called on every input.
    private mutating func advance(to now: UInt64) {
        if let heartbeat = nextHeartbeat {
            if heartbeat <= now, !hasPendingAnnouncements {
                nextHeartbeat = heartbeat + ((now - heartbeat) / heartbeatNs + 1) * heartbeatNs
            }
        } else {
            // A random phase, so that the nodes of a network do not announce in lockstep.
            nextHeartbeat = now + 1 + UInt64(Double(heartbeatNs - 1) * rng.unit())
        }
        seen.expire(now: now)
        cache.expire(now: now)
    }

    private mutating func removePeer(_ peer: PeerKey) {
        guard let state = peers.removeValue(forKey: peer) else { return }
        for topic in state.topics {
            meshes[topic]?.eager.remove(peer)
            meshes[topic]?.lazy.remove(peer)
        }
    }

    private mutating func announceSubscription(_ subscribe: Bool, _ topic: String) -> [GossipAction] {
        let keys = peers.keys.sorted()
        stats.subscribeSent += keys.count
        return keys.map { .send($0, .subscribe(Subscribe(subscribe: subscribe, topics: [topic]))) }
    }

    /// Validation in order, then dedup, then acceptance. `from` is nil for an injected message.
    private mutating func process(_ gossip: Gossip, from peer: PeerKey?, now: UInt64, wallClockMillis: UInt64,
                                  into actions: inout [GossipAction]) -> Result<[UInt8], GossipRejection> {
        // Cheap structural checks first (they also bound the bytes hashed for the ID).
        if let rejection = structuralRejection(gossip) {
            reject(rejection, from: peer, now: now, into: &actions)
            return .failure(rejection)
        }
        let signed = gossip.signedBytes
        let idBytes = BLAKE2b.hash(signed, outputLength: GossipLimits.idLength)
        guard let id = MessageID(idBytes) else { return .failure(.invalidOrigin) }
        if seen.contains(id) {
            if let peer { onDuplicate(id, topic: gossip.topic, from: peer, into: &actions) }
            return .failure(.duplicate)
        }
        if peer != nil, meshes[gossip.topic] == nil {
            // Not (or no longer) subscribed: not ours to judge or relay, and no penalty (the
            // peer may not have our Unsubscribe yet). The result is not seen by any caller.
            stats.unsubscribedDropped += 1
            return .failure(.invalidTopic)
        }
        if let rejection = windowRejection(gossip, wallClockMillis: wallClockMillis)
            ?? (Ed25519.verify(signature: gossip.signature, message: signed, publicKey: gossip.origin) ? nil : .badSignature)
        {
            reject(rejection, from: peer, now: now, into: &actions)
            return .failure(rejection)
        }
        // Only after the signature: forged copies must not spend a real origin's budget.
        guard origins.take(gossip.origin, now: Instant(nanoseconds: now)) else {
            stats.originLimited += 1
            seen.insert(id, now: now)
            return .failure(.originRateLimited)
        }
        accept(gossip, id: id, idBytes: idBytes, from: peer, now: now, into: &actions)
        return .success(idBytes)
    }

    private func structuralRejection(_ gossip: Gossip) -> GossipRejection? {
        guard Topic.isValid(gossip.topic) else { return .invalidTopic }
        guard gossip.data.count <= GossipLimits.maxData else { return .dataTooLarge }
        guard gossip.origin.count == Ed25519KeyPair.publicKeyLength else { return .invalidOrigin }
        return nil
    }

    private func windowRejection(_ gossip: Gossip, wallClockMillis: UInt64) -> GossipRejection? {
        if gossip.timestamp < wallClockMillis, wallClockMillis - gossip.timestamp > maxAgeMillis { return .tooOld }
        if gossip.timestamp > wallClockMillis, gossip.timestamp - wallClockMillis > maxSkewMillis { return .tooNew }
        return nil
    }

    private mutating func reject(_ rejection: GossipRejection, from peer: PeerKey?, now: UInt64,
                                 into actions: inout [GossipAction]) {
        stats.rejected[rejection, default: 0] += 1
        guard let peer else { return }
        penalize(peer, reason: rejection.description, points: config.penalty(for: rejection), now: now, into: &actions)
    }

    private mutating func penalize(_ peer: PeerKey, reason: String, points: Double, now: UInt64,
                                   into actions: inout [GossipAction]) {
        guard var state = peers[peer] else { return }
        if now > state.penaltyUpdated {
            let forgiven = config.penaltyDecayPerSecond * Double(now - state.penaltyUpdated) / 1e9
            state.penalty = max(0, state.penalty - forgiven)
            state.penaltyUpdated = now
        }
        state.penalty += points
        stats.penalties += 1
        actions.append(.penalize(peer, reason: reason, weight: config.weight(ofPenalty: points)))
        if state.penalty >= config.penaltyThreshold {
            stats.disconnects += 1
            actions.append(.disconnect(peer, reason: "too many penalties (last: \(reason))"))
            removePeer(peer)
        } else {
            peers[peer] = state
        }
    }

    /// A full copy of a message already processed: the sender's eager link is redundant.
    private mutating func onDuplicate(_ id: MessageID, topic: String, from peer: PeerKey, into actions: inout [GossipAction]) {
        stats.duplicates += 1
        peers[peer]?.pendingIHave.removeValue(forKey: id)
        guard meshes[topic] != nil else { return }
        if meshes[topic]?.eager.remove(peer) != nil { meshes[topic]?.lazy.insert(peer) }
        actions.append(.send(peer, .prune(Prune(topic: topic))))
        stats.pruneSent += 1
    }

    /// A new valid message: remember, deliver, push to eager peers, queue announcements for lazy ones.
    private mutating func accept(_ gossip: Gossip, id: MessageID, idBytes: [UInt8], from source: PeerKey?, now: UInt64,
                                 into actions: inout [GossipAction]) {
        seen.insert(id, now: now)
        cache.insert(id, gossip, now: now)
        wants.removeValue(forKey: id)
        guard meshes[gossip.topic] != nil else {
            // Published here without a subscription: push to a random subset of subscribers.
            var targets = peers.filter { $0.key != source && $0.value.topics.contains(gossip.topic) }.map(\.key).sorted()
            targets.shuffle(using: &rng)
            for peer in targets.prefix(config.eagerFanout) {
                actions.append(.send(peer, .gossip(gossip)))
                stats.relayed += 1
            }
            return
        }
        stats.delivered += 1
        actions.append(.deliver(gossip, id: idBytes, from: source))
        if let source, meshes[gossip.topic]?.lazy.remove(source) != nil {
            // The first copy came over this link: it is a branch of the tree, so keep it eager
            // in our direction too (the eager cap may have left it lazy).
            meshes[gossip.topic]?.eager.insert(source)
        }
        guard let mesh = meshes[gossip.topic] else { return }
        for peer in mesh.eager.sorted() where peer != source {
            actions.append(.send(peer, .gossip(gossip)))
            stats.relayed += 1
        }
        announceCounter += 1
        for peer in mesh.lazy where peer != source {
            guard let queued = peers[peer]?.pendingIHave.count else { continue }
            if queued < config.maxIHaveIDsPerHeartbeat {
                peers[peer]?.pendingIHave[id] = Announcement(topic: gossip.topic, order: announceCounter)
            } else {
                stats.announcementsDropped += 1
            }
        }
    }

    private mutating func onSubscribe(_ sub: Subscribe, from peer: PeerKey) {
        for topic in sub.topics where Topic.isValid(topic) {
            if sub.subscribe {
                guard let state = peers[peer], !state.topics.contains(topic), state.topics.count < config.maxTopicsPerPeer else {
                    continue
                }
                peers[peer]?.topics.insert(topic)
                if let mesh = meshes[topic] {
                    if mesh.eager.count < config.eagerFanout {
                        meshes[topic]?.eager.insert(peer)
                    } else {
                        meshes[topic]?.lazy.insert(peer)
                    }
                }
            } else {
                guard peers[peer]?.topics.remove(topic) != nil else { continue }
                meshes[topic]?.eager.remove(peer)
                meshes[topic]?.lazy.remove(peer)
                let kept = peers[peer]?.pendingIHave.filter { $0.value.topic != topic } ?? [:]
                peers[peer]?.pendingIHave = kept
            }
        }
    }

    private mutating func onIHave(_ iHave: IHave, from peer: PeerKey, now: UInt64, into actions: inout [GossipAction]) {
        guard let granted = peers[peer]?.iHaveBudget.take(iHave.ids.count, now: now) else { return }
        if granted < iHave.ids.count {
            penalize(peer, reason: "too many announced IDs", points: config.floodPenalty, now: now, into: &actions)
            guard peers[peer] != nil else { return }
        }
        guard meshes[iHave.topic] != nil else { return }
        for raw in iHave.ids.prefix(granted) {
            guard let id = MessageID(raw) else { continue }
            if seen.contains(id) {
                // The peer has it: no need to announce it there.
                peers[peer]?.pendingIHave.removeValue(forKey: id)
                continue
            }
            if var want = wants[id] {
                if !want.announcers.contains(peer), want.announcers.count < config.maxAnnouncersPerWant {
                    want.announcers.append(peer)
                    wants[id] = want
                }
                continue
            }
            guard wants.count < config.maxPendingWants else {
                stats.announcementsDropped += 1
                continue
            }
            let deadline = now + iWantTimeoutNs
            wants[id] = PendingWant(topic: iHave.topic, announcers: [peer], deadline: deadline)
            wantTimers.push(deadline, id)
        }
    }

    private mutating func onIWant(_ iWant: IWant, from peer: PeerKey, now: UInt64, into actions: inout [GossipAction]) {
        guard let granted = peers[peer]?.iWantBudget.take(iWant.ids.count, now: now) else { return }
        if granted < iWant.ids.count {
            penalize(peer, reason: "too many requested IDs", points: config.floodPenalty, now: now, into: &actions)
            guard peers[peer] != nil else { return }
        }
        for raw in iWant.ids.prefix(granted) {
            guard let id = MessageID(raw) else { continue }
            switch cache.serve(id, to: peer, limit: config.maxIWantRetries + 1) {
            case .missing, .limitReached:
                stats.iWantMisses += 1
            case let .message(gossip):
                actions.append(.send(peer, .gossip(gossip)))
                stats.iWantServed += 1
                peers[peer]?.pendingIHave.removeValue(forKey: id)
                // The requester lacked it: our link to it is part of its tree now (graft).
                if meshes[gossip.topic]?.lazy.remove(peer) != nil { meshes[gossip.topic]?.eager.insert(peer) }
            }
        }
    }

    /// Sends IWant for announced messages whose wait expired, to the next announcer, and
    /// makes that announcer eager (graft).
    private mutating func requestOverdue(now: UInt64, into actions: inout [GossipAction]) {
        var requests: [PeerKey: [[UInt8]]] = [:]
        while let key = wantTimers.minKey, key <= now, let (deadline, id) = wantTimers.popMin() {
            guard var want = wants[id], want.deadline == deadline else { continue }  // stale timer
            want.announcers.removeAll { peers[$0] == nil }
            guard !want.announcers.isEmpty, want.attempts <= config.maxIWantRetries else {
                wants.removeValue(forKey: id)
                stats.wantsAbandoned += 1
                continue
            }
            let announcer = want.announcers[want.attempts % want.announcers.count]
            want.attempts += 1
            want.deadline = now + max(1, iWantTimeoutNs)
            wants[id] = want
            wantTimers.push(want.deadline, id)
            requests[announcer, default: []].append(id.bytes)
            if meshes[want.topic]?.lazy.remove(announcer) != nil { meshes[want.topic]?.eager.insert(announcer) }
        }
        for peer in requests.keys.sorted() {
            let ids = requests[peer] ?? []
            for start in stride(from: 0, to: ids.count, by: GossipLimits.maxIDsPerControl) {
                actions.append(.send(peer, .iWant(IWant(ids: Array(ids[start..<min(ids.count, start + GossipLimits.maxIDsPerControl)])))))
                stats.iWantSent += 1
            }
        }
    }

    /// Heartbeat: one IHave per peer and topic (split at `GossipLimits.maxIDsPerControl`).
    private mutating func flushAnnouncements(into actions: inout [GossipAction]) {
        for peer in peers.keys.sorted() {
            guard let pending = peers[peer]?.pendingIHave, !pending.isEmpty else { continue }
            peers[peer]?.pendingIHave = [:]
            var byTopic: [String: [(order: UInt64, id: MessageID)]] = [:]
            for (id, announcement) in pending { byTopic[announcement.topic, default: []].append((announcement.order, id)) }
            for (topic, entries) in byTopic.sorted(by: { $0.key < $1.key }) {
                let ids = entries.sorted { $0.order < $1.order }.map(\.id.bytes)
                for start in stride(from: 0, to: ids.count, by: GossipLimits.maxIDsPerControl) {
                    let chunk = Array(ids[start..<min(ids.count, start + GossipLimits.maxIDsPerControl)])
                    actions.append(.send(peer, .iHave(IHave(topic: topic, ids: chunk))))
                    stats.iHaveSent += 1
                }
            }
        }
    }
}
