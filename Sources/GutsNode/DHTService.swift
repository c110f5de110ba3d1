import GutsAddress
import GutsCrypto
import GutsDHT
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsTrust
import GutsControl
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// Drives the pure `DHTEngine` for a node (or a one-shot CLI client): every engine call
/// runs on one event loop, actions are carried out in order, and the engine's deadline is
/// honoured.
///
/// - Sessions with peers that list `dht` are tracked by node ID. An outbound session has
///   verified the address it dialed, so its peer enters the routing table at once. An
///   inbound peer is asked for its own peer record (GetPeer of its own ID) and one of the
///   record's addresses on the IP it connected from is dialed back, expecting the same
///   key: only that dial makes it a contact (guts-protocol(7), DHT, Dial-back).
/// - Requests are answered from any peer (clients without `dht` too); answers and records
///   are checked by the engine; what it penalises is scored through the node's hooks, and a
///   request over the rate limits is answered busy with a retry-after.
/// - `.send` to a contact without a session dials it (bounded: `maxDials` at once); the
///   sessions it opened are closed after `idleClose` seconds without DHT traffic.
public final class DHTService: Sendable {
    public struct Limits: Sendable {
        /// Outbound dials in progress at once; more sends fail as unreachable.
        public var maxDials = 24
        /// Messages queued per contact while its dial is in progress.
        public var maxQueued = 16
        /// Seconds of DHT silence after which a session this service dialed is closed.
        public var idleClose = 60.0
        /// Sessions this service dialed kept open at once; over it, the least recently used
        /// one without requests in flight is closed.
        public var maxDialedSessions = 64
        /// Saved contacts dialed at start.
        public var maxSavedDials = 20
        public init() {}
    }

    /// What the service needs from its host (set once, before `start`).
    public struct Hooks: Sendable {
        /// Dials an endpoint (expecting its peer ID); completes when the session is
        /// established. With `keep` the host follows the session as any other (and reports
        /// it with `connected`); without, the session only proves the address (a dial-back)
        /// and this service closes it at once.
        public var dial: @Sendable (Endpoint, _ keep: Bool) -> EventLoopFuture<any PeerLink>
        /// A peer misbehaved: score it.
        public var penalize: @Sendable (any PeerLink, ScoreEvent, String) -> Void
        /// Writes the routing table's text (off the loop); nil: not saved.
        public var save: (@Sendable (String) -> Void)?
        public var log: NodeLog
        public init(dial: @escaping @Sendable (Endpoint, _ keep: Bool) -> EventLoopFuture<any PeerLink>,
                    penalize: @escaping @Sendable (any PeerLink, ScoreEvent, String) -> Void,
                    save: (@Sendable (String) -> Void)?, log: NodeLog) {
            self.dial = dial
            self.penalize = penalize
            self.save = save
            self.log = log
        }
    }

    struct Session {
        let link: any PeerLink
        let contact: DHTContact
        var lastUsed: Instant
        /// Opened by this service (closed when idle).
        var dialed: Bool
    }

    struct State {
        var engine: DHTEngine
        /// Open sessions by peer node ID (the latest one): inbound sessions that list `dht`
        /// and every session this node dialed (`tracks`).
        var sessions: [NodeID: Session] = [:]
        /// Contacts being dialed, with the messages waiting for the session.
        var dialing: [NodeID: [DHTMessage]] = [:]
        /// Contacts waiting for a `.ping` verdict.
        var pinging: Set<NodeID> = []
        /// Peers being dialed back (their inbound session carries the traffic).
        var dialBacks: Set<NodeID> = []
        /// What peers advertised for QUIC (Hello, their own peer record): the UDP port at
        /// their contact's IP address, 0 for none. Bounded (`maxQUICPorts`).
        var quicPorts: [NodeID: UInt16] = [:]
        /// The TCP address of each dial in progress (a dial won by QUIC reaches the peer's
        /// UDP port; the contact is its TCP address).
        var dialAddresses: [NodeID: DHTAddress] = [:]
        /// Every open session per peer (at most a few: the host caps sessions per peer); when
        /// the one in `sessions` closes, another takes its place (two nodes that dialed each
        /// other keep one session of the two, guts-protocol(7), SESSION).
        var links: [NodeID: [any PeerLink]] = [:]
        /// Peers dialed back after a PutPeer on their session (once per session).
        var redialed: Set<NodeID> = []
        /// Dial-back probes: GetPeer request IDs sent to inbound peers, by peer.
        var probes: [UInt32: NodeID] = [:]
        var nextProbe: UInt32 = 0x8000_0000
        /// Requests sent and not yet answered, per peer (a session that closes with some
        /// outstanding fails them at once rather than at the timeout).
        var outstanding: [NodeID: Int] = [:]
        var waiters: [LookupID: @Sendable (LookupResult) -> Void] = [:]
        /// Repositories this node should provide, and those the engine provides now.
        var wanted: Set<NodeID> = []
        var joined = false
        /// Table size at which providers and the peer record are announced again (the
        /// table doubled: announcements made with few contacts reached few nodes).
        var nextAnnounceAt = 1
        /// Ages of contacts from the saved table, restored when they are verified again.
        var savedAge: [NodeID: Double] = [:]
        var timer: Scheduled<Void>?
        var timerAt: Instant?
        var stopped = false
    }

    public let loop: EventLoop
    public let limits: Limits
    private let hooks: Hooks
    private let state: NIOLoopBoundBox<State>
    private let chores = NIOLockedValueBox<[RepeatedTask]>([])
    /// Set by `stop`: later events are dropped rather than scheduled on a loop that may
    /// be shutting down.
    private let halted = NIOLockedValueBox(false)
    /// Dials in progress (a host shutting down waits for them).
    private let inflight = NIOLockedValueBox<[ObjectIdentifier: EventLoopFuture<Void>]>([:])
    public let localID: NodeID

    public init(loop: EventLoop, identity: Ed25519KeyPair, config: DHTConfig = DHTConfig(), limits: Limits = Limits(),
                seed: UInt64, hooks: Hooks) {
        self.loop = loop
        self.limits = limits
        self.hooks = hooks
        let engine = DHTEngine(config: config, identity: identity, seed: seed, now: .now())
        localID = engine.localID
        state = NIOLoopBoundBox.makeBoxSendingValue(State(engine: engine), eventLoop: loop)
    }

    /// Runs `body` on the loop unless the service stopped.
    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        guard !halted.withLockedValue({ $0 }) else { return }
        loop.execute(body)
    }

    static func now() -> DHTTime { DHTTime(monotonic: .now(), unixSeconds: UInt64(max(0, unixTime()))) }

    static func nodeID(_ link: any PeerLink) -> NodeID? { link.peer.map { NodeID(publicKey: $0.peerID.publicKey) } }

    static func listsDHT(_ link: any PeerLink) -> Bool { link.peer?.capabilities.contains(DHTProtocol.capability) ?? false }

    // MARK: Lifecycle

    /// Sets the advertised addresses, dials saved contacts (`saved`, from
    /// `RoutingTableText`), and starts the idle sweep and the periodic save. With no
    /// addresses and a `learnPort`, the node adopts the IP address peers observe it at
    /// (with that port) once enough of them agree (`DHTEngine.learnAddresses`).
    public func start(addresses: [DHTAddress], learnPort: UInt16? = nil, quicPort: UInt16? = nil, saved: [RoutingTableText.Saved]) {
        loop.execute { [self] in
            let now = Self.now()
            if addresses.isEmpty { state.value.engine.learnAddresses(port: learnPort, quicPort: quicPort) }
            perform(state.value.engine.setAddresses(addresses, now: now))
            let ordered = saved.sorted { $0.knownFor > $1.knownFor }.prefix(limits.maxSavedDials)
            for s in ordered where s.contact.id != localID {
                state.value.savedAge[s.contact.id] = Double(s.knownFor)
                dial(s.contact)
            }
        }
        let sweep = loop.scheduleRepeatedTask(initialDelay: .seconds(5), delay: .seconds(5)) { [weak self] _ in self?.sweepIdle() }
        var tasks = [sweep]
        if hooks.save != nil {
            tasks.append(loop.scheduleRepeatedTask(initialDelay: .seconds(30), delay: .seconds(30)) { [weak self] _ in self?.save() })
        }
        chores.withLockedValue { $0 = tasks }
    }

    /// Stops timers and returns the routing table's text (for a final save).
    public func stop() -> EventLoopFuture<String> {
        for t in chores.withLockedValue({ $0 }) { t.cancel() }
        halted.withLockedValue { $0 = true }
        return loop.submit { [self] in
            state.value.stopped = true
            state.value.timer?.cancel()
            state.value.timer = nil
            return state.value.engine.routingTableText(now: .now())
        }
    }

    /// Waits for the dials in progress to end (each is bounded by the connect and
    /// handshake timeouts). Not on an event loop.
    public func waitForDials() {
        while let (key, next) = inflight.withLockedValue({ $0.first.map { ($0.key, $0.value) } }) {
            _ = try? next.wait()
            inflight.withLockedValue { _ = $0.removeValue(forKey: key) }
        }
    }

    private func save() {
        guard let save = hooks.save, !state.value.stopped else { return }
        let text = state.value.engine.routingTableText(now: .now())
        save(text)
    }

    // MARK: Sessions

    /// A session was established (either direction).
    public func connected(_ link: any PeerLink) {
        // An inbound session that did not announce `dht` (a command, a client, a peer's
        // dial-back probe) is never tracked: its requests are answered on the link they
        // came on, and this node sends it none of its own. So no hop to the DHT loop for
        // it, here or when it closes.
        guard Self.tracks(link) else { return }
        onLoop { [self] in register(link) }
    }

    /// Sessions this service registers: every outbound one, and inbound ones that list `dht`.
    static func tracks(_ link: any PeerLink) -> Bool { !link.inbound || listsDHT(link) }

    private func register(_ link: any PeerLink) {
        guard !state.value.stopped, !link.isClosed, let info = link.peer, let remote = DHTAddress(link.remoteAddress) else { return }
        let peerID = NodeID(publicKey: info.peerID.publicKey)
        // A link this node dialed reaches the peer at the TCP address dialed, whichever
        // transport won; the address a session comes from is what the peer observes.
        var address = remote
        if !link.inbound, let dialed = state.value.dialAddresses[peerID], dialed.ip == remote.ip { address = dialed }
        guard let contact = DHTContact(publicKey: info.peerID.publicKey, address: address) else { return }
        let id = contact.id
        // What a node session (or a peer this node dialed) advertised; a command run with a
        // node's key serves nothing.
        if Self.listsDHT(link) || !link.inbound { rememberQUIC(id, info.quicPort) }
        guard id != localID, !(state.value.sessions[id].map { $0.link === link } ?? false) else { return }
        let dialed = state.value.dialing[id] != nil || state.value.pinging.contains(id)
        var all = (state.value.links[id] ?? []).filter { !$0.isClosed && $0 !== link }
        all.append(link)
        state.value.links[id] = Array(all.suffix(4))
        // A session without `dht` (the peer's dial-back of this node, a command run with its
        // identity) does not displace an open DHT session.
        let keepCurrent = state.value.sessions[id].map { !$0.link.isClosed && Self.listsDHT($0.link) && !Self.listsDHT(link) } ?? false
        if !keepCurrent {
            state.value.sessions[id] = Session(link: link, contact: contact, lastUsed: .now(), dialed: dialed && !link.inbound)
        }
        if dialed && !link.inbound { trimDialedSessions() }
        // Tells the peer the address its session comes from (it may learn its own address).
        if Self.listsDHT(link) { link.send(.app(DHTMessage.observedAddress(ObservedAddress(address: remote)))) }
        if !link.inbound, Self.listsDHT(link) {
            // This node dialed the address: it is verified.
            verified(contact)
        } else if link.inbound, Self.listsDHT(link), !state.value.engine.table.contains(id) {
            // Dial-back: ask the peer for its own record, then dial one of its addresses.
            let rid = state.value.nextProbe
            state.value.nextProbe = rid == UInt32.max ? 0x8000_0000 : rid + 1
            state.value.probes[rid] = id
            if state.value.probes.count > 256, let oldest = state.value.probes.keys.min() { state.value.probes[oldest] = nil }
            link.send(.app(DHTMessage.getPeer(GetPeer(requestID: rid, target: id))))
        }
        if let queued = state.value.dialing.removeValue(forKey: id) {
            for m in queued { sendNow(m, to: id) }
        }
        if state.value.pinging.remove(id) != nil {
            state.value.engine.pingAnswered(id, alive: true, now: Self.now())
        }
        schedule()
    }

    /// A session ended.
    public func disconnected(_ link: any PeerLink) {
        guard Self.tracks(link) else { return }
        onLoop { [self] in
            guard let id = Self.nodeID(link) else { return }
            let rest = (state.value.links[id] ?? []).filter { !$0.isClosed && $0 !== link }
            state.value.links[id] = rest.isEmpty ? nil : rest
            guard let s = state.value.sessions[id], s.link === link else { return }
            if let next = rest.last(where: { Self.listsDHT($0) }), let address = DHTAddress(next.remoteAddress),
               let contact = DHTContact(publicKey: s.contact.publicKey, address: address) {
                // Another session with the peer is still open: traffic moves to it; requests
                // sent on the closed one fail now, without counting against the peer.
                state.value.sessions[id] = Session(link: next, contact: contact, lastUsed: s.lastUsed, dialed: false)
                if state.value.outstanding.removeValue(forKey: id) != nil {
                    perform(state.value.engine.busy(id, now: Self.now()))
                }
                return
            }
            state.value.sessions[id] = nil
            state.value.redialed.remove(id)
            if state.value.outstanding.removeValue(forKey: id) != nil {
                perform(state.value.engine.unreachable(id, now: Self.now()))
            }
        }
    }

    private func verified(_ contact: DHTContact) {
        let age = state.value.savedAge.removeValue(forKey: contact.id) ?? 0
        perform(state.value.engine.peerVerified(contact, now: Self.now(), knownFor: age))
        let count = state.value.engine.table.count
        if !state.value.joined {
            state.value.joined = true
            perform(state.value.engine.bootstrap(now: Self.now()))
        }
        if count >= state.value.nextAnnounceAt {
            state.value.nextAnnounceAt = max(count, 1) * 2
            announceAll()
        }
    }

    private func announceAll() {
        let now = Self.now()
        if state.value.nextAnnounceAt > 2 { perform(state.value.engine.bootstrap(now: now)) }
        for repo in state.value.wanted.sorted() { perform(state.value.engine.provide(repo, now: now)) }
    }

    /// Handles DHT traffic; returns false for other messages. On any loop.
    public func handle(_ message: Message, from link: any PeerLink) -> Bool {
        guard case let .app(m) = message, let dht = m as? DHTMessage else { return false }
        onLoop { [self] in self.receive(dht, from: link) }
        return true
    }

    /// An Error `busy` from a peer (on any loop): its DHT requests in flight fail at once,
    /// so lookups move on rather than wait for the timeout.
    public func busy(from link: any PeerLink) {
        onLoop { [self] in
            guard let id = Self.nodeID(link), state.value.outstanding.removeValue(forKey: id) != nil else { return }
            perform(state.value.engine.busy(id, now: Self.now()))
        }
    }

    private func receive(_ message: DHTMessage, from link: any PeerLink) {
        guard !state.value.stopped, let info = link.peer, let address = DHTAddress(link.remoteAddress),
              let from = DHTContact(publicKey: info.peerID.publicKey, address: address) else { return }
        let id = from.id
        // Sessions are registered by `connected` only; traffic keeps a session busy.
        if var s = state.value.sessions[id], s.link === link {
            s.lastUsed = .now()
            state.value.sessions[id] = s
        }
        if case let .peerRecord(answer) = message, let probed = state.value.probes[answer.requestID] {
            state.value.probes[answer.requestID] = nil
            guard probed == id else { return }
            dialBack(answer.record, peer: from, link: link)
            return
        }
        if message.kind.isAnswer, let n = state.value.outstanding[id] {
            state.value.outstanding[id] = n > 1 ? n - 1 : nil
        }
        switch message {
        case .observedAddress:
            // Only DHT nodes vote on this node's address (not one-shot clients).
            guard Self.listsDHT(link) else { return }
            let before = state.value.engine.addresses
            perform(state.value.engine.receive(message, from: from, now: Self.now()), via: link)
            if state.value.engine.addresses != before { adopted() }
            return
        case let .putPeer(m) where link.inbound && Self.listsDHT(link) && m.record.publisherID == id
            && !state.value.engine.table.contains(id) && !state.value.dialBacks.contains(id)
            && (try? m.record.validate(unixNow: Self.now().unixSeconds)) != nil  // the engine scores an invalid one
            && state.value.redialed.insert(id).inserted:
            // A client that connected here announces a record (it has learned an address
            // since its session began): dial it back now, once per session.
            if state.value.redialed.count > 1024, let any = state.value.redialed.first(where: { $0 != id }) {
                state.value.redialed.remove(any)
            }
            dialBack(m.record, peer: from, link: link)
        default:
            break
        }
        perform(state.value.engine.receive(message, from: from, now: Self.now()), via: link, request: message.requestID)
    }

    /// The engine adopted an address peers observe: peers connected now hear of the new
    /// peer record at once (PutPeer on their sessions), so those this node is a client of
    /// dial it back (guts-protocol(7), DHT, Observed addresses).
    private func adopted() {
        let now = Self.now()
        let list = state.value.engine.addresses
        hooks.log.info("dht: peers in \(AddressVotes.defaultQuorum) or more prefixes see this node at the same address: advertising \(list.map(\.description).joined(separator: ", "))")
        guard let record = state.value.engine.currentPeerRecord(now: now) else { return }
        for (_, s) in state.value.sessions.sorted(by: { $0.key < $1.key })
        where !s.link.isClosed && Self.listsDHT(s.link) && ScopeRule.allows(record.addresses, peerScope: s.contact.address.scope) {
            s.link.send(.app(DHTMessage.putPeer(PutPeer(record: record))))
        }
    }

    /// Checks a peer's own record and dials it back at an address on the IP it connected
    /// from (never a third party's address); success makes it a contact (`connected`).
    private func dialBack(_ record: PeerRecord?, peer: DHTContact, link: any PeerLink) {
        let unix = Self.now().unixSeconds
        guard let record else {
            hooks.log.debug("dht: \(peer.id.short) \(link.remoteAddress) has no peer record: client only")
            return
        }
        guard record.publisherID == peer.id, (try? record.validate(unixNow: unix)) != nil else {
            hooks.penalize(link, .protocolViolation, "dht: invalid own peer record")
            return
        }
        guard let target = record.addresses.first(where: { !$0.quic && $0.ip == peer.address.ip }),
              let contact = DHTContact(publicKey: peer.publicKey, address: target) else {
            hooks.log.debug("dht: \(peer.id.short) advertises no address on \(peer.address.ip): client only")
            return
        }
        // The record says whether (and where) the peer serves QUIC on that IP address.
        rememberQUIC(peer.id, record.addresses.first(where: { $0.quic && $0.ip == target.ip })?.port ?? 0)
        guard state.value.dialing[peer.id] == nil else { return }
        state.value.dialBacks.insert(peer.id)
        if state.value.dialBacks.count > 1024, let any = state.value.dialBacks.first { state.value.dialBacks.remove(any) }
        dial(contact, keep: false)
    }

    // MARK: Local requests

    public enum Query: Sendable, Equatable {
        case peer(NodeID)
        case providers(NodeID)
        case node(NodeID)
    }

    /// Dialable endpoints of `peer` from the addresses of its signed record: each TCP
    /// address with the QUIC address the record names on the same IP address (none when
    /// it names none, so only TCP is tried), then QUIC addresses without a TCP one.
    public static func endpoints(_ addresses: [DHTAddress], peer: PeerID?) -> [Endpoint] {
        var out: [Endpoint] = []
        for a in addresses where !a.quic {
            let q = addresses.first { $0.quic && $0.ip == a.ip }
            out.append(Endpoint(host: a.ip.description, port: Int(a.port), peer: peer, quic: q.map { .port(Int($0.port)) } ?? .none))
        }
        for a in addresses where a.quic && !addresses.contains(where: { !$0.quic && $0.ip == a.ip }) {
            out.append(Endpoint(host: a.ip.description, port: Int(a.port), peer: peer, transport: .quic))
        }
        return out
    }

    /// Runs a lookup; `done` is called on the loop with the result.
    public func lookup(_ query: Query, disjointPaths: Int? = nil, done: @escaping @Sendable (LookupResult) -> Void) {
        onLoop { [self] in
            let now = Self.now()
            let (id, actions): (LookupID, [DHTAction])
            switch query {
            case let .peer(t): (id, actions) = state.value.engine.findPeer(t, now: now, disjointPaths: disjointPaths)
            case let .providers(t): (id, actions) = state.value.engine.findProviders(t, now: now, disjointPaths: disjointPaths)
            case let .node(t): (id, actions) = state.value.engine.findNode(t, now: now, disjointPaths: disjointPaths)
            }
            state.value.waiters[id] = done
            perform(actions)
        }
    }

    /// The repositories this node provides (public ones with an identity): new ones are
    /// announced, dropped ones no longer republished.
    public func provide(_ repositories: Set<NodeID>) {
        onLoop { [self] in
            guard !state.value.stopped, repositories != state.value.wanted else { return }
            let old = state.value.wanted
            state.value.wanted = repositories
            for gone in old.subtracting(repositories) { state.value.engine.stopProviding(gone) }
            // Before the first contact an announcement reaches nobody; `verified` announces.
            guard state.value.joined else { return }
            let now = Self.now()
            for repo in repositories.subtracting(old).sorted() { perform(state.value.engine.provide(repo, now: now)) }
        }
    }

    /// Bootstraps: dials `contacts` (endpoints with known peer IDs come in via `connected`).
    public func seed(_ contacts: [DHTContact]) {
        onLoop { [self] in for c in contacts where c.id != localID { dial(c) } }
    }

    public struct Status: Sendable {
        public var contacts: Int
        public var records: Int
        public var provided: Int
        public var stats: DHTStats
        public var addresses: [DHTAddress]
    }

    public func status() -> EventLoopFuture<Status> {
        loop.submit { [self] in
            let e = state.value.engine
            return Status(contacts: e.table.count, records: e.storedRecords, provided: e.providedRepositories.count,
                          stats: e.stats, addresses: e.addresses)
        }
    }

    /// Addresses this node knows for peers without a lookup: a routing-table contact's, a
    /// stored peer record's, or the address of a session this node dialed. Peers it knows
    /// none of are left out.
    public func knownAddresses(_ ids: [NodeID]) -> EventLoopFuture<[NodeID: [DHTAddress]]> {
        loop.submit { [self] in
            let unix = Self.now().unixSeconds
            var out: [NodeID: [DHTAddress]] = [:]
            for id in ids {
                var list: [DHTAddress] = []
                if let e = state.value.engine.table.entry(id) {
                    list.append(e.contact.address)
                    if let q = state.value.quicPorts[id], q != 0, let a = DHTAddress(ip: e.contact.address.ip, port: q, quic: true) {
                        list.append(a)
                    }
                }
                if let r = state.value.engine.storedPeerRecord(of: id, unixNow: unix) { list += r.addresses }
                for link in state.value.links[id] ?? [] where !link.inbound && !link.isClosed {
                    guard let a = DHTAddress(link.remoteAddress) else { continue }
                    if link.transportName == "quic" {
                        // Dialed at a TCP address whose QUIC port has the same number (what
                        // the peer advertised confirms it); the session reached QUIC.
                        if link.peer?.quicPort == a.port { list.append(a) }
                        list.append(a.with(quic: true))
                    } else {
                        list.append(a)
                        if let q = link.peer?.quicPort, q != 0, let b = DHTAddress(ip: a.ip, port: q, quic: true) { list.append(b) }
                    }
                }
                var seen = Set<DHTAddress>()
                list = list.filter { seen.insert($0).inserted }
                if !list.isEmpty { out[id] = Array(list.prefix(DHTLimits.maxAddresses)) }
            }
            return out
        }
    }

    /// Provider records this node holds itself for a repository.
    public func localProviders(_ repo: NodeID) -> EventLoopFuture<[ProviderRecord]> {
        loop.submit { [self] in state.value.engine.storedProviders(of: repo, unixNow: Self.now().unixSeconds) }
    }

    // MARK: Actions

    private func perform(_ actions: [DHTAction], via requestLink: (any PeerLink)? = nil, request: UInt32? = nil) {
        for action in actions {
            switch action {
            case let .send(contact, message):
                if !message.kind.isAnswer, message.requestID != nil {
                    state.value.outstanding[contact.id, default: 0] += 1
                }
                if state.value.sessions[contact.id].map({ !$0.link.isClosed }) ?? false {
                    sendNow(message, to: contact.id)
                } else if state.value.dialing[contact.id] != nil {
                    if state.value.dialing[contact.id, default: []].count < limits.maxQueued {
                        state.value.dialing[contact.id, default: []].append(message)
                    }
                } else {
                    dial(contact, queue: [message])
                }
            case let .reply(id, message):
                if let link = requestLink, Self.nodeID(link) == id {
                    link.send(.app(message))
                } else {
                    sendNow(message, to: id)
                }
            case let .ping(contact):
                if state.value.sessions[contact.id].map({ !$0.link.isClosed }) ?? false {
                    // An open session is kept alive by the transport's keepalive.
                    state.value.engine.pingAnswered(contact.id, alive: true, now: Self.now())
                } else {
                    state.value.pinging.insert(contact.id)
                    dial(contact)
                }
            case let .lookupFinished(id, result):
                state.value.waiters.removeValue(forKey: id)?(result)
            case let .penalize(id, offence):
                guard let link = state.value.sessions[id]?.link ?? requestLink else { break }
                switch offence {
                case .rateLimited:
                    if let s = state.value.sessions[id] {
                        let wait = state.value.engine.requestRetryAfter(s.contact, now: Self.now())
                        link.send(.error(ErrorReply(requestID: request ?? 0, code: .busy,
                                                    message: "retry-after=\(Int(wait.rounded(.up))); too many DHT requests from this peer")))
                    }
                    hooks.penalize(link, .rateLimitOverrun, "dht: \(offence)")
                case .invalidRecord(.expired), .invalidRecord(.lifetimeTooLong):
                    // Clocks differ: an honest peer may pass on a record about to expire.
                    hooks.log.debug("dht: \(id.short) sent a record outside its lifetime")
                default:
                    hooks.penalize(link, .protocolViolation, "dht: \(offence)")
                }
            }
        }
        schedule()
    }

    private func sendNow(_ message: DHTMessage, to id: NodeID) {
        guard var s = state.value.sessions[id], !s.link.isClosed else { return }
        s.lastUsed = .now()
        state.value.sessions[id] = s
        s.link.send(.app(message))
    }

    /// Peers' advertised QUIC ports kept at most.
    static let maxQUICPorts = 4096

    private func rememberQUIC(_ id: NodeID, _ port: UInt16) {
        if state.value.quicPorts[id] == nil, state.value.quicPorts.count >= Self.maxQUICPorts,
           let any = state.value.quicPorts.keys.first {
            state.value.quicPorts[any] = nil
        }
        state.value.quicPorts[id] = port
    }

    /// What this node knows of a contact's QUIC address: what it advertised, else nothing
    /// (a contact in a Nodes answer names only its TCP address).
    private func quicAdvertisement(_ id: NodeID) -> QUICAdvertisement {
        guard let port = state.value.quicPorts[id] else { return .unknown }
        return port == 0 ? .none : .port(Int(port))
    }

    private func dial(_ contact: DHTContact, queue: [DHTMessage] = [], keep: Bool = true) {
        guard state.value.dialing[contact.id] == nil else { return }
        guard state.value.dialing.count < limits.maxDials, let peer = try? PeerID(publicKey: contact.publicKey) else {
            failed(contact.id)
            return
        }
        guard !state.value.stopped else { return }
        state.value.dialing[contact.id] = queue
        state.value.dialAddresses[contact.id] = contact.address
        let endpoint = Endpoint(host: contact.address.ip.description, port: Int(contact.address.port), peer: peer,
                                quic: quicAdvertisement(contact.id))
        let future = hooks.dial(endpoint, keep)
        let settled = future.map { _ in () }.recover { _ in () }
        let key = ObjectIdentifier(settled)
        inflight.withLockedValue { $0[key] = settled }
        settled.whenComplete { [inflight] _ in inflight.withLockedValue { _ = $0.removeValue(forKey: key) } }
        future.whenComplete { [self] result in
            onLoop { [self] in
                defer { state.value.dialAddresses[contact.id] = nil }
                switch result {
                case let .success(link) where !keep:
                    // A dial-back: the address is verified; traffic stays on the peer's own
                    // session, so this one is closed at once (sessions per peer are capped).
                    state.value.dialing[contact.id] = nil
                    state.value.dialBacks.remove(contact.id)
                    if !state.value.stopped, Self.listsDHT(link), Self.nodeID(link) == contact.id { verified(contact) }
                    link.close(.shutdown, "dial-back done")
                    schedule()
                case let .success(link):
                    // Registers the session (the host reports it too; the second report is
                    // ignored) and flushes what waited.
                    register(link)
                    if state.value.dialing.removeValue(forKey: contact.id) != nil { failed(contact.id) }
                case let .failure(error):
                    hooks.log.debug("dht: cannot reach \(contact): \(Dialer.reason(error))")
                    if state.value.dialBacks.remove(contact.id) != nil {
                        hooks.log.debug("dht: dial-back of \(contact) failed: client only")
                    }
                    state.value.dialing[contact.id] = nil
                    failed(contact.id)
                }
            }
        }
    }

    private func failed(_ id: NodeID) {
        let now = Self.now()
        if state.value.pinging.remove(id) != nil { state.value.engine.pingAnswered(id, alive: false, now: now) }
        state.value.outstanding[id] = nil
        perform(state.value.engine.unreachable(id, now: now))
    }

    /// Keeps the sessions this service dialed within `maxDialedSessions`.
    private func trimDialedSessions() {
        let dialed = state.value.sessions.filter { $0.value.dialed && !$0.value.link.isClosed }
        guard dialed.count > limits.maxDialedSessions else { return }
        let idle = dialed.filter { state.value.outstanding[$0.key] == nil }.sorted { $0.value.lastUsed < $1.value.lastUsed }
        for (id, s) in idle.prefix(dialed.count - limits.maxDialedSessions) {
            s.link.close(.shutdown, "too many DHT sessions")
            state.value.sessions[id] = nil
        }
    }

    private func sweepIdle() {
        let now = Instant.now()
        for (id, s) in state.value.sessions {
            if s.link.isClosed {
                state.value.sessions[id] = nil
            } else if s.dialed, now.seconds(since: s.lastUsed) > limits.idleClose, state.value.outstanding[id] == nil {
                s.link.close(.timeout, "DHT session idle")
                state.value.sessions[id] = nil
            }
        }
    }

    private func schedule() {
        guard !state.value.stopped, let deadline = state.value.engine.nextDeadline else { return }
        if let at = state.value.timerAt, at <= deadline, state.value.timer != nil { return }
        state.value.timer?.cancel()
        state.value.timerAt = deadline
        let now = Instant.now()
        let delay = deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0
        state.value.timer = loop.scheduleTask(in: .nanoseconds(delay)) { [self] in
            state.value.timer = nil
            state.value.timerAt = nil
            perform(state.value.engine.tick(now: Self.now()))
        }
    }
}

// MARK: - Keys and results as text

extension DHTService {
    /// The lookup `key` names: a peer ID (its peer record) or a repository ID (its providers).
    public static func query(_ key: String) -> Query? {
        if let peer = PeerID(key) { return .peer(NodeID(publicKey: peer.publicKey)) }
        if let repo = RepositoryID(key), let id = NodeID(bytes: repo.bytes) { return .providers(id) }
        return nil
    }

    /// A repository's providers from the DHT merged with `announcers` (nodes whose gossip
    /// announcements of it were seen): those the DHT named are not repeated, then all are
    /// ordered by `score`, best first (equal scores keep their order: DHT providers first).
    public static func merge(_ found: FindResult, announcers: [FoundProvider], score: (PeerID) -> Double) -> FindResult {
        var result = found
        let named = Set(found.providers.map(\.peerID))
        var added = Set<String>()
        for a in announcers where !named.contains(a.peerID) && !a.addresses.isEmpty && added.insert(a.peerID).inserted {
            result.providers.append(a)
        }
        let scores = result.providers.map { p in PeerID(p.peerID).map(score) ?? 0 }
        result.providers = result.providers.enumerated().sorted { a, b in
            scores[a.offset] != scores[b.offset] ? scores[a.offset] > scores[b.offset] : a.offset < b.offset
        }.map(\.element)
        result.found = !result.providers.isEmpty
        return result
    }

    /// A lookup's result for the control socket and `guts find`; `local` adds the provider
    /// records this node holds itself (a node is not asked about its own store).
    public static func findResult(_ result: LookupResult, key: String, local: [ProviderRecord]) -> FindResult {
        var kind = "node"
        switch result.kind {
        case .peer: kind = "peer"
        case .providers: kind = "repository"
        case .node: break
        }
        var seen = Set<NodeID>()
        var providers: [FoundProvider] = []
        for r in result.providers + local where seen.insert(r.publisherID).inserted {
            guard let peer = try? PeerID(publicKey: r.publisher) else { continue }
            providers.append(FoundProvider(peerID: peer.description, addresses: r.addresses.map(\.description), expires: r.expires))
        }
        let addresses = result.peerRecord?.addresses.map(\.description) ?? []
        let found = kind == "repository" ? !providers.isEmpty : result.found
        return FindResult(kind: kind, key: key, found: found, addresses: addresses, providers: providers,
                          hops: result.hops, messages: result.messages, seconds: result.duration)
    }
}
