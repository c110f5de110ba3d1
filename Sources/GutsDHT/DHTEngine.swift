import GutsCrypto
import GutsPolicy
import GutsSupport
import GutsWire

/// A lookup's handle, unique within one engine.
public typealias LookupID = UInt64

/// What a lookup looks for.
public enum LookupKind: Hashable, Sendable {
    /// The k closest nodes to a key (and the node with that ID, if it exists).
    case node(NodeID)
    /// Provider records of a repository ID.
    case providers(NodeID)
    /// The peer record of a node.
    case peer(NodeID)

    public var target: NodeID {
        switch self {
        case let .node(t), let .providers(t), let .peer(t): return t
        }
    }
}

/// The outcome of a lookup started by `findNode`, `findProviders` or `findPeer`.
public struct LookupResult: Equatable, Sendable {
    public var kind: LookupKind
    /// Up to k nodes that answered, closest to the target first.
    public var closest: [DHTContact]
    /// Valid provider records found (FindProviders), one per publisher.
    public var providers: [ProviderRecord]
    /// The newest valid peer record found (FindPeer).
    public var peerRecord: PeerRecord?
    /// Node: the target answered. Providers: at least one record. Peer: a record.
    public var found: Bool
    /// Hops to the result: the position in the chain of referrals of the node that gave
    /// it (1 = a node from this node's own table); for a failed lookup, the deepest hop.
    public var hops: Int
    /// Requests sent.
    public var messages: Int
    /// Seconds from start to finish.
    public var duration: Double

    public init(kind: LookupKind, closest: [DHTContact], providers: [ProviderRecord], peerRecord: PeerRecord?,
                found: Bool, hops: Int, messages: Int, duration: Double) {
        self.kind = kind
        self.closest = closest
        self.providers = providers
        self.peerRecord = peerRecord
        self.found = found
        self.hops = hops
        self.messages = messages
        self.duration = duration
    }
}

/// Misbehaviour the engine reports so the node's peer policy can score the peer.
public enum DHTOffence: Hashable, Sendable, CustomStringConvertible {
    /// Over its request rate; the request was dropped unanswered.
    case rateLimited
    /// Sent a record that failed validation.
    case invalidRecord(RecordRejection)
    /// Answered a request of a different kind.
    case wrongAnswer

    public var description: String {
        switch self {
        case .rateLimited: return "DHT requests over the rate limit"
        case let .invalidRecord(why): return "invalid DHT record: \(why)"
        case .wrongAnswer: return "DHT answer of the wrong type"
        }
    }
}

/// What the engine asks its driver (the node shell or the simulation) to do, in order.
public enum DHTAction: Equatable, Sendable {
    /// Send a request to a contact, dialing its address (and proving its key) when no
    /// session is open. If that fails, report `unreachable(contact.id)`.
    case send(DHTContact, DHTMessage)
    /// Answer a peer on the session the request came in on.
    case reply(NodeID, DHTMessage)
    /// Ping this contact (wire Ping/Pong) and report with `pingAnswered`.
    case ping(DHTContact)
    /// A lookup started with `findNode`, `findProviders` or `findPeer` ended.
    case lookupFinished(LookupID, LookupResult)
    /// The peer misbehaved (the node's policy scores it).
    case penalize(NodeID, DHTOffence)
}

/// Counters of one engine.
public struct DHTStats: Equatable, Sendable {
    public var requestsReceived = 0
    public var requestsRateLimited = 0
    public var requestsSent = 0
    public var answersReceived = 0
    public var answersIgnored = 0
    public var timeouts = 0
    public var recordsStored = 0
    public var recordsRejected: [RecordRejection: Int] = [:]
    public var lookupsStarted = 0
    public var lookupsFinished = 0
    public init() {}
}

/// The Kademlia DHT of one node as a pure state machine: verified contacts, messages from
/// peers, local requests and the time go in; `DHTAction`s come out. No I/O, no clock, no
/// global state; random choices come from the seed.
///
/// The node shell:
/// - calls `peerVerified` after a handshake with a peer that lists the `dht` capability and
///   whose listening address passed a dial-back check (a node that dials out verifies the
///   address it dialed); nothing else adds contacts;
/// - passes every decoded DHT message to `receive` with the peer's proven key and observed
///   address; carries out the returned actions;
/// - reports `pingAnswered` for `.ping` actions and `unreachable` when a dial or a session fails;
/// - calls `tick` at `nextDeadline`.
public struct DHTEngine: Sendable {
    struct Candidate: Sendable {
        var contact: DHTContact
        var distance: NodeID
        var depth: Int
        var state: State
        enum State: Sendable { case waiting, inflight, answered, failed }
    }

    struct Path: Sendable {
        var candidates: [Candidate] = []
        var inflight = 0
    }

    enum Purpose: Sendable {
        case query
        case refresh
        case announceProvider(ProviderRecord)
        case announcePeer(PeerRecord)
    }

    struct Lookup: Sendable {
        var kind: LookupKind
        var purpose: Purpose
        var paths: [Path]
        /// The path each contact belongs to: a contact is queried on one path only.
        var owner: [NodeID: Int] = [:]
        var messages = 0
        var started: Instant
        var providers: [NodeID: ProviderRecord] = [:]
        var peerRecord: PeerRecord?
        var resultDepth: Int?
        var deepest = 0
    }

    struct Pending: Sendable {
        var lookup: LookupID
        var path: Int
        var node: NodeID
        var kind: DHTMessage.Kind
    }

    public let config: DHTConfig
    private let identity: Ed25519KeyPair
    public let localID: NodeID
    public private(set) var table: RoutingTable
    private var store: RecordStore
    private var rng: DHTRandom
    private var lookups: [LookupID: Lookup] = [:]
    private var nextLookup: LookupID = 1
    private var pending: [UInt32: Pending] = [:]
    private var timeouts = MinHeap<UInt32>()
    private var nextRequest: UInt32 = 1
    private var peerLimiter: KeyedLimiter<NodeID>
    private var groupLimiter: KeyedLimiter<AddressGroup>
    /// Addresses this node advertises in its records.
    public private(set) var addresses: [DHTAddress] = []
    private var ownPeerRecord: PeerRecord?
    private var peerSequence: UInt64 = 0
    private var nextPeerRepublish: Instant?
    /// The port this node listens on when it learns its address from what peers observe
    /// (nil: it advertises what it was told, or nothing).
    public private(set) var learningPort: UInt16?
    /// The UDP port advertised for QUIC beside each learned address (nil: none).
    public private(set) var learningQUICPort: UInt16?
    /// Peers' reports of the IP address they see this node at.
    public private(set) var observed = AddressVotes()
    /// Repositories this node provides, with the next republish time.
    private var provided: [NodeID: Instant] = [:]
    private var nextSweep: Instant?
    public private(set) var stats = DHTStats()

    public init(config: DHTConfig, identity: Ed25519KeyPair, seed: UInt64, now: Instant) {
        self.config = config
        self.identity = identity
        localID = NodeID(publicKey: identity.publicKey)
        table = RoutingTable(localID: localID, config: config, now: now)
        store = RecordStore(config: config)
        rng = DHTRandom(seed: seed)
        peerLimiter = KeyedLimiter(rate: config.peerRequestRate, burst: config.peerRequestBurst,
                                   maxKeys: config.maxTrackedRequesters)
        groupLimiter = KeyedLimiter(rate: config.groupRequestRate, burst: config.groupRequestBurst,
                                    maxKeys: config.maxTrackedRequesters)
    }

    // MARK: Introspection

    public var publicKey: [UInt8] { identity.publicKey }
    public var activeLookups: Int { lookups.count }
    public var pendingRequests: Int { pending.count }
    public var storedRecords: Int { store.count }
    public var storedBytes: Int { store.bytes }
    public func storedProviders(of repository: NodeID, unixNow: UInt64) -> [ProviderRecord] {
        store.providers(of: repository, unixNow: unixNow, limit: config.maxProvidersPerKey)
    }
    public func storedPeerRecord(of id: NodeID, unixNow: UInt64) -> PeerRecord? { store.peer(id, unixNow: unixNow) }
    public func storedUsage(of publisher: NodeID) -> (count: Int, bytes: Int) { store.usage(of: publisher) }
    /// Seconds until a request from `peer` would pass the request limits (0: it would pass
    /// now), for an Error `busy` with a retry-after or for the peer policy's scoring.
    public func requestRetryAfter(_ peer: DHTContact, now: DHTTime) -> Double {
        max(peerLimiter.retryAfter(peer.id, now: now.monotonic), groupLimiter.retryAfter(peer.address.group, now: now.monotonic))
    }

    /// The saved form of the routing table (see `RoutingTableText`).
    public func routingTableText(now: Instant) -> String { RoutingTableText.serialize(table, now: now) }

    /// When `tick` must be called next.
    public var nextDeadline: Instant? {
        var best = timeouts.minKey.map { Instant(nanoseconds: $0) }
        func consider(_ t: Instant?) {
            if let t, best.map({ t < $0 }) ?? true { best = t }
        }
        consider(table.nextPingDeadline)
        consider(table.nextRefresh)
        consider(provided.values.min())
        consider(nextPeerRepublish)
        if store.count > 0 { consider(nextSweep) }
        return best
    }

    // MARK: Events from the shell

    /// A peer completed the handshake and its listening address passed a dial-back check:
    /// the only way a contact enters the routing table. `knownFor` restores the age of a
    /// contact from a saved table.
    public mutating func peerVerified(_ contact: DHTContact, now: DHTTime, knownFor: Double = 0) -> [DHTAction] {
        switch table.insert(contact, now: now.monotonic, knownFor: knownFor) {
        case let .pingOldest(old): return [.ping(old)]
        default: return []
        }
    }

    /// The result of a `.ping`.
    public mutating func pingAnswered(_ id: NodeID, alive: Bool, now: DHTTime) {
        table.pingAnswered(id, alive: alive, now: now.monotonic)
    }

    /// A contact could not be reached or its session failed: its requests fail now.
    public mutating func unreachable(_ id: NodeID, now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        let failed = pending.filter { $0.value.node == id }.map(\.key).sorted()
        for rid in failed { fail(rid, now: now, into: &actions) }
        if failed.isEmpty { table.failed(id) }
        return actions
    }

    /// A contact answered Error `busy` (over its request limits): its requests in flight
    /// fail now, so lookups move on, without counting against it in the table (it is
    /// alive, only loaded).
    public mutating func busy(_ id: NodeID, now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        let failed = pending.filter { $0.value.node == id }.map(\.key).sorted()
        for rid in failed { fail(rid, now: now, countAgainst: false, into: &actions) }
        return actions
    }

    /// A DHT message from a peer whose key the session proved; `from.address` is the
    /// address it connected from (its scope decides which addresses travel, see `ScopeRule`).
    public mutating func receive(_ message: DHTMessage, from: DHTContact, now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        if message.kind.isAnswer {
            onAnswer(message, from: from, now: now, into: &actions)
            return actions
        }
        stats.requestsReceived += 1
        let t = now.monotonic
        let peerOK = peerLimiter.take(from.id, now: t)
        let groupOK = peerOK && groupLimiter.take(from.address.group, now: t)
        guard peerOK && groupOK else {
            stats.requestsRateLimited += 1
            return [.penalize(from.id, .rateLimited)]
        }
        let scope = from.address.scope
        switch message {
        case let .findNode(m):
            let closer = closestForAnswer(m.target, excluding: from.id, scope: scope)
            actions.append(.reply(from.id, .nodes(Nodes(requestID: m.requestID, contacts: closer))))
        case let .getProviders(m):
            let records = store.providers(of: m.repository, unixNow: now.unixSeconds, limit: config.maxProvidersPerKey)
                .filter { ScopeRule.allows($0.addresses, peerScope: scope) }
            let closer = closestForAnswer(m.repository, excluding: from.id, scope: scope)
            actions.append(.reply(from.id, .providers(Providers(requestID: m.requestID,
                                                                records: Array(records.prefix(DHTLimits.maxProviders)),
                                                                closer: closer))))
        case let .getPeer(m):
            var record = m.target == localID ? ownRecord(now: now) : store.peer(m.target, unixNow: now.unixSeconds)
            if let r = record, !ScopeRule.allows(r.addresses, peerScope: scope) { record = nil }
            let closer = closestForAnswer(m.target, excluding: from.id, scope: scope)
            actions.append(.reply(from.id, .peerRecord(PeerRecordAnswer(requestID: m.requestID, record: record, closer: closer))))
        case let .addProvider(m):
            accept(.provider(m.record), from: from, now: now, into: &actions)
        case let .putPeer(m):
            accept(.peer(m.record), from: from, now: now, into: &actions)
        case let .observedAddress(m):
            learn(m.address.ip, from: from, now: now, into: &actions)
        case .nodes, .providers, .peerRecord:
            break
        }
        return actions
    }

    /// Learns this node's address from what peers observe (ObservedAddress) instead of being
    /// told one: `port` is the port it listens on, combined with the IP address adopted from
    /// the reports (the port a peer sees is a session's source port, which nobody can dial).
    /// nil stops learning. Call only when no address was configured. With `quicPort`, each
    /// adopted IP address is advertised with QUIC on that UDP port as well.
    public mutating func learnAddresses(port: UInt16?, quicPort: UInt16? = nil) {
        learningPort = port
        learningQUICPort = quicPort
    }

    private mutating func learn(_ ip: IPAddress, from: DHTContact, now: DHTTime, into actions: inout [DHTAction]) {
        guard let port = learningPort, observed.record(ip, by: from, now: now.monotonic) else { return }
        var list = observed.adopted.compactMap { DHTAddress(ip: $0, port: port) }
        if let q = learningQUICPort { list += observed.adopted.compactMap { DHTAddress(ip: $0, port: q, quic: true) } }
        actions += setAddresses(list, now: now)
        // Records made while this node had no address were never announced.
        for repo in provided.keys.sorted() { announceProvider(repo, now: now, into: &actions) }
    }

    /// This node's current signed peer record (nil without addresses).
    public mutating func currentPeerRecord(now: DHTTime) -> PeerRecord? { ownRecord(now: now) }

    /// Timers: request timeouts, unanswered pings, bucket refreshes, republishing and
    /// record expiry.
    public mutating func tick(now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        let t = now.monotonic
        while let key = timeouts.minKey, key <= t.nanoseconds, let (_, rid) = timeouts.popMin() {
            if pending[rid] != nil {
                stats.timeouts += 1
                fail(rid, now: now, into: &actions)
            }
        }
        _ = table.expirePings(now: t)
        for b in table.bucketsDueForRefresh(now: t) {
            let target = localID.randomInBucket(b, using: &rng)
            table.touch(target, now: t)
            _ = startLookup(.node(target), purpose: .refresh, now: now, paths: config.disjointPaths, into: &actions)
        }
        for (repo, due) in provided.sorted(by: { $0.key < $1.key }) where due <= t {
            announceProvider(repo, now: now, into: &actions)
        }
        if let due = nextPeerRepublish, due <= t { announcePeer(now: now, into: &actions) }
        if let sweep = nextSweep, sweep <= t {
            store.expire(unixNow: now.unixSeconds)
            nextSweep = t.after(config.expirySweepInterval)
        } else if nextSweep == nil {
            nextSweep = t.after(config.expirySweepInterval)
        }
        return actions
    }

    // MARK: Local requests

    /// Starts a lookup of the k closest nodes to `target`. `disjointPaths` overrides the
    /// configured number of paths.
    public mutating func findNode(_ target: NodeID, now: DHTTime, disjointPaths: Int? = nil) -> (LookupID, [DHTAction]) {
        var actions: [DHTAction] = []
        let id = startLookup(.node(target), purpose: .query, now: now, paths: disjointPaths ?? config.disjointPaths, into: &actions)
        return (id, actions)
    }

    /// Starts a lookup of the providers of a repository.
    public mutating func findProviders(_ repository: NodeID, now: DHTTime, disjointPaths: Int? = nil) -> (LookupID, [DHTAction]) {
        var actions: [DHTAction] = []
        let id = startLookup(.providers(repository), purpose: .query, now: now,
                             paths: disjointPaths ?? config.disjointPaths, into: &actions)
        return (id, actions)
    }

    /// Starts a lookup of a node's peer record.
    public mutating func findPeer(_ target: NodeID, now: DHTTime, disjointPaths: Int? = nil) -> (LookupID, [DHTAction]) {
        var actions: [DHTAction] = []
        let id = startLookup(.peer(target), purpose: .query, now: now, paths: disjointPaths ?? config.disjointPaths, into: &actions)
        return (id, actions)
    }

    /// Sets the addresses this node advertises (its peer record and provider records).
    /// Announces a new peer record when the set changed and is not empty.
    public mutating func setAddresses(_ list: [DHTAddress], now: DHTTime) -> [DHTAction] {
        let unique = Array(Set(list)).sorted().prefix(DHTLimits.maxAddresses)
        guard Array(unique) != addresses else { return [] }
        addresses = Array(unique)
        ownPeerRecord = nil
        var actions: [DHTAction] = []
        if !addresses.isEmpty { announcePeer(now: now, into: &actions) }
        return actions
    }

    /// Joins the network: a lookup of this node's own ID (which fills the table with its
    /// neighbours and tells them about this node), publishing the peer record if this node
    /// has addresses.
    public mutating func bootstrap(now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        if addresses.isEmpty {
            _ = startLookup(.node(localID), purpose: .refresh, now: now, paths: config.disjointPaths, into: &actions)
        } else {
            announcePeer(now: now, into: &actions)
        }
        return actions
    }

    /// Starts providing a repository (a public one: restricted repositories are never
    /// provided): stores the record locally, announces it to the k closest nodes and
    /// republishes it every `republishInterval`. Needs addresses (`setAddresses`).
    public mutating func provide(_ repository: NodeID, now: DHTTime) -> [DHTAction] {
        var actions: [DHTAction] = []
        provided[repository] = now.monotonic
        announceProvider(repository, now: now, into: &actions)
        return actions
    }

    /// Stops republishing a repository (records already stored expire by themselves).
    public mutating func stopProviding(_ repository: NodeID) { provided[repository] = nil }

    public var providedRepositories: [NodeID] { provided.keys.sorted() }

    // MARK: Records

    /// Seconds this node's records live: `recordTTL` within 1 s and the 48-hour maximum.
    private var recordLifetime: UInt64 {
        let ttl = config.recordTTL
        guard ttl.isFinite else { return DHTLimits.maxRecordLifetime }
        return UInt64(min(max(ttl, 1), Double(DHTLimits.maxRecordLifetime)))
    }

    private mutating func ownRecord(now: DHTTime) -> PeerRecord? {
        guard !addresses.isEmpty else { return nil }
        if let r = ownPeerRecord, r.expires > now.unixSeconds + recordLifetime / 2 { return r }
        peerSequence = max(peerSequence + 1, now.unixSeconds)
        let r = PeerRecord.signed(sequence: peerSequence, addresses: addresses,
                                  expires: now.unixSeconds + recordLifetime,
                                  key: identity)
        ownPeerRecord = r
        return r
    }

    private mutating func announcePeer(now: DHTTime, into actions: inout [DHTAction]) {
        nextPeerRepublish = now.monotonic.after(config.peerRepublishInterval)
        ownPeerRecord = nil
        guard let r = ownRecord(now: now) else {
            _ = startLookup(.node(localID), purpose: .refresh, now: now, paths: config.disjointPaths, into: &actions)
            return
        }
        _ = startLookup(.node(localID), purpose: .announcePeer(r), now: now, paths: config.disjointPaths, into: &actions)
    }

    private mutating func announceProvider(_ repo: NodeID, now: DHTTime, into actions: inout [DHTAction]) {
        provided[repo] = now.monotonic.after(config.republishInterval)
        guard !addresses.isEmpty else { return }
        let r = ProviderRecord.signed(repository: repo, addresses: addresses,
                                      expires: now.unixSeconds + recordLifetime,
                                      key: identity)
        try? store.put(r)
        _ = startLookup(.node(repo), purpose: .announceProvider(r), now: now, paths: config.disjointPaths, into: &actions)
    }

    /// Checks and stores a record a peer sent (AddProvider, PutPeer): only its publisher may
    /// send it, its addresses must pass the scope rule, this node must be among the closest
    /// to its key, then sizes, lifetime and signature are validated and the store's bounds
    /// applied.
    enum IncomingRecord {
        case provider(ProviderRecord)
        case peer(PeerRecord)
    }

    private mutating func accept(_ record: IncomingRecord, from: DHTContact, now: DHTTime, into actions: inout [DHTAction]) {
        do throws(RecordRejection) {
            let key: NodeID, publisher: [UInt8], addresses: [DHTAddress]
            switch record {
            case let .provider(r): (key, publisher, addresses) = (r.repository, r.publisher, r.addresses)
            case let .peer(r): (key, publisher, addresses) = (r.publisherID, r.publisher, r.addresses)
            }
            guard publisher == from.publicKey else { throw .notPublisher }
            guard ScopeRule.allows(addresses, peerScope: from.address.scope) else { throw .addressScope }
            if config.storeRadius > 0, table.closerThanSelf(to: key, limit: config.storeRadius) >= config.storeRadius {
                throw .notClose
            }
            switch record {
            case let .provider(r):
                try r.validate(unixNow: now.unixSeconds)
                try store.put(r)
            case let .peer(r):
                try r.validate(unixNow: now.unixSeconds)
                try store.put(r)
            }
            stats.recordsStored += 1
        } catch {
            stats.recordsRejected[error, default: 0] += 1
            switch error {
            case .notClose, .storeFull, .staleSequence: break
            default: actions.append(.penalize(from.id, .invalidRecord(error)))
            }
        }
    }

    private func closestForAnswer(_ target: NodeID, excluding: NodeID, scope: AddressScope) -> [DHTContact] {
        var list = table.closest(to: target, count: config.k + 1, scopeAtLeast: scope)
        list.removeAll { $0.id == excluding }
        return Array(list.prefix(config.k))
    }

    // MARK: Lookups

    private mutating func startLookup(_ kind: LookupKind, purpose: Purpose, now: DHTTime, paths: Int,
                                      into actions: inout [DHTAction]) -> LookupID {
        let id = nextLookup
        nextLookup += 1
        stats.lookupsStarted += 1
        let target = kind.target
        table.touch(target, now: now.monotonic)
        let seeds = table.closest(to: target, count: config.k)
        let d = max(1, min(paths, max(1, seeds.count)))
        var lookup = Lookup(kind: kind, purpose: purpose, paths: Array(repeating: Path(), count: d), started: now.monotonic)
        for (i, c) in seeds.enumerated() {
            let p = i % d
            lookup.paths[p].candidates.append(Candidate(contact: c, distance: c.id.distance(to: target), depth: 1, state: .waiting))
            lookup.owner[c.id] = p
        }
        lookups[id] = lookup
        advance(id, now: now, into: &actions)
        return id
    }

    private mutating func onAnswer(_ message: DHTMessage, from: DHTContact, now: DHTTime, into actions: inout [DHTAction]) {
        guard let rid = message.requestID, let p = pending[rid], p.node == from.id else {
            stats.answersIgnored += 1
            return
        }
        let expected: DHTMessage.Kind
        switch p.kind {
        case .findNode: expected = .nodes
        case .getProviders: expected = .providers
        default: expected = .peerRecord
        }
        guard message.kind == expected else {
            actions.append(.penalize(from.id, .wrongAnswer))
            fail(rid, now: now, into: &actions)
            return
        }
        pending[rid] = nil
        stats.answersReceived += 1
        table.succeeded(from.id, now: now.monotonic)
        guard var lookup = lookups.removeValue(forKey: p.lookup) else { return }
        guard let ci = lookup.paths[p.path].candidates.firstIndex(where: { $0.contact.id == from.id }) else {
            lookups[p.lookup] = lookup
            return
        }
        let depth = lookup.paths[p.path].candidates[ci].depth
        lookup.paths[p.path].candidates[ci].state = .answered
        lookup.paths[p.path].inflight -= 1
        let scope = from.address.scope
        var closer: [DHTContact]
        switch message {
        case let .nodes(m):
            closer = m.contacts
            if case let .node(target) = lookup.kind, lookup.resultDepth == nil, closer.contains(where: { $0.id == target }) {
                lookup.resultDepth = depth
            }
        case let .providers(m):
            closer = m.closer
            for r in m.records {
                guard r.repository == lookup.kind.target else {
                    actions.append(.penalize(from.id, .wrongAnswer))
                    continue
                }
                guard lookup.providers[r.publisherID].map({ $0.expires < r.expires }) ?? true else { continue }
                do throws(RecordRejection) {
                    guard ScopeRule.allows(r.addresses, peerScope: scope) else { throw .addressScope }
                    try r.validate(unixNow: now.unixSeconds)
                    lookup.providers[r.publisherID] = r
                    if lookup.resultDepth == nil { lookup.resultDepth = depth }
                } catch {
                    if error != .addressScope { actions.append(.penalize(from.id, .invalidRecord(error))) }
                }
            }
        case let .peerRecord(m):
            closer = m.closer
            if let r = m.record {
                do throws(RecordRejection) {
                    guard r.publisherID == lookup.kind.target else { throw .notPublisher }
                    guard ScopeRule.allows(r.addresses, peerScope: scope) else { throw .addressScope }
                    try r.validate(unixNow: now.unixSeconds)
                    if lookup.peerRecord.map({ $0.sequence < r.sequence }) ?? true {
                        lookup.peerRecord = r
                        if lookup.resultDepth == nil { lookup.resultDepth = depth }
                    }
                } catch {
                    if error != .addressScope { actions.append(.penalize(from.id, .invalidRecord(error))) }
                }
            }
        default:
            closer = []
        }
        // Contacts from an answer feed this lookup's path only, and only those whose address
        // is no narrower than the answering peer's scope.
        let target = lookup.kind.target
        var path = lookup.paths[p.path]
        lookup.paths[p.path] = Path()
        for c in closer where c.id != localID && lookup.owner[c.id] == nil && ScopeRule.allows(c.address, peerScope: scope) {
            let cand = Candidate(contact: c, distance: c.id.distance(to: target), depth: depth + 1, state: .waiting)
            if path.candidates.count >= config.maxCandidatesPerPath, let last = path.candidates.last,
               !(cand.distance < last.distance) { continue }
            var i = path.candidates.count
            while i > 0, cand.distance < path.candidates[i - 1].distance { i -= 1 }
            path.candidates.insert(cand, at: i)
            lookup.owner[c.id] = p.path
            lookup.deepest = max(lookup.deepest, depth + 1)
            if path.candidates.count > config.maxCandidatesPerPath,
               let dropIndex = path.candidates.lastIndex(where: { $0.state == .waiting }) {
                path.candidates.remove(at: dropIndex)
            }
        }
        lookup.paths[p.path] = path
        lookups[p.lookup] = lookup
        advance(p.lookup, now: now, into: &actions)
    }

    private mutating func fail(_ rid: UInt32, now: DHTTime, countAgainst: Bool = true, into actions: inout [DHTAction]) {
        guard let p = pending.removeValue(forKey: rid) else { return }
        if countAgainst { table.failed(p.node) }
        guard var lookup = lookups.removeValue(forKey: p.lookup) else { return }
        if let ci = lookup.paths[p.path].candidates.firstIndex(where: { $0.contact.id == p.node }) {
            lookup.paths[p.path].candidates[ci].state = .failed
            lookup.paths[p.path].inflight -= 1
        }
        lookups[p.lookup] = lookup
        advance(p.lookup, now: now, into: &actions)
    }

    /// Sends what each path may send; finishes the lookup when every path is done or the
    /// result is complete early.
    private mutating func advance(_ id: LookupID, now: DHTTime, into actions: inout [DHTAction]) {
        guard var lookup = lookups.removeValue(forKey: id) else { return }
        var complete = false
        switch lookup.kind {
        case .providers: complete = lookup.providers.count >= config.providersWanted
        case .peer: complete = lookup.peerRecord != nil
        case .node: break
        }
        var allDone = true
        if !complete {
            for p in lookup.paths.indices {
                var path = lookup.paths[p]
                lookup.paths[p] = Path()
                var live = 0
                var i = 0
                while i < path.candidates.count, live < config.k {
                    let c = path.candidates[i]
                    if c.state != .failed {
                        live += 1
                        if c.state == .waiting, path.inflight < config.alpha {
                            path.candidates[i].state = .inflight
                            path.inflight += 1
                            send(to: c.contact, lookup: id, path: p, kind: lookup.kind, now: now, into: &actions)
                            lookup.messages += 1
                        }
                    }
                    i += 1
                }
                let waiting = path.candidates.prefix(i).contains { $0.state == .waiting }
                if path.inflight > 0 || waiting { allDone = false }
                lookup.paths[p] = path
            }
        }
        lookups[id] = lookup
        if complete || allDone { finish(id, now: now, into: &actions) }
    }

    private mutating func send(to contact: DHTContact, lookup: LookupID, path: Int, kind: LookupKind, now: DHTTime,
                               into actions: inout [DHTAction]) {
        let rid = nextRequest
        nextRequest = nextRequest == UInt32.max ? 1 : nextRequest + 1
        let message: DHTMessage
        switch kind {
        case let .node(t): message = .findNode(FindNode(requestID: rid, target: t))
        case let .providers(t): message = .getProviders(GetProviders(requestID: rid, repository: t))
        case let .peer(t): message = .getPeer(GetPeer(requestID: rid, target: t))
        }
        pending[rid] = Pending(lookup: lookup, path: path, node: contact.id, kind: message.kind)
        timeouts.push(now.monotonic.after(config.requestTimeout).nanoseconds, rid)
        stats.requestsSent += 1
        actions.append(.send(contact, message))
    }

    private mutating func finish(_ id: LookupID, now: DHTTime, into actions: inout [DHTAction]) {
        guard let lookup = lookups.removeValue(forKey: id) else { return }
        stats.lookupsFinished += 1
        // Requests still in flight are forgotten: their answers are ignored.
        for (rid, p) in pending where p.lookup == id { pending[rid] = nil }
        var answered: [Candidate] = lookup.paths.flatMap { $0.candidates.filter { $0.state == .answered } }
        answered.sort { $0.distance < $1.distance }
        let closest = answered.prefix(config.k).map(\.contact)
        let target = lookup.kind.target
        var found: Bool
        switch lookup.kind {
        case .node: found = answered.contains { $0.contact.id == target }
        case .providers: found = !lookup.providers.isEmpty
        case .peer: found = lookup.peerRecord != nil
        }
        var hops = lookup.resultDepth ?? lookup.deepest
        if case .node = lookup.kind, found, lookup.resultDepth == nil { hops = 0 }
        if case .node = lookup.kind, !found { hops = lookup.deepest }
        let providers = lookup.providers.values.sorted { $0.publisher.lexicographicallyPrecedes($1.publisher) }
        let result = LookupResult(kind: lookup.kind, closest: Array(closest), providers: providers, peerRecord: lookup.peerRecord,
                                  found: found, hops: hops, messages: lookup.messages,
                                  duration: now.monotonic.seconds(since: lookup.started))
        switch lookup.purpose {
        case .query:
            actions.append(.lookupFinished(id, result))
        case .refresh:
            break
        case let .announceProvider(r):
            for c in closest { actions.append(.send(c, .addProvider(AddProvider(record: r)))) }
        case let .announcePeer(r):
            for c in closest { actions.append(.send(c, .putPeer(PutPeer(record: r)))) }
        }
    }
}
