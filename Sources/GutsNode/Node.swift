import GutsAddress
import GutsCrypto
import GutsDHT
import GutsGit
import GutsGossip
import GutsIdentity
import GutsPolicy
import GutsQUIC
import GutsSupport
import GutsSync
import GutsTransport
import GutsTrust
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where the node writes its log lines (stderr in the CLI, a buffer in tests).
public struct NodeLog: Sendable {
    public var info: @Sendable (String) -> Void
    public var debug: @Sendable (String) -> Void
    /// False when `info` discards its lines (--quiet): per-connection lines are skipped.
    public var infoEnabled: Bool
    public init(info: @escaping @Sendable (String) -> Void, debug: @escaping @Sendable (String) -> Void, infoEnabled: Bool = true) {
        self.info = info
        self.debug = debug
        self.infoEnabled = infoEnabled
    }
}

/// `REPO[@PEER]` from `guts listen --mirror`: follow a repository's announcements.
/// REPO is a name or a repository ID; PEER's peer ID (when given) is the peer the user
/// named: it may pin a first identity, and it is the only announcer an unsigned
/// repository is followed from.
public struct MirrorSpec: Sendable, Equatable, CustomStringConvertible {
    public var repository: RepositoryRef
    /// Where to sync from when the announcing node is not connected.
    public var peer: Endpoint?
    /// The peer the user named (`REPO@PEERID` or `REPO@PEERID@ADDR`).
    public var trusted: PeerID?

    public init(repository: RepositoryRef, peer: Endpoint?, trusted: PeerID? = nil) {
        self.repository = repository
        self.peer = peer
        self.trusted = trusted ?? peer?.peer
    }

    public init(repository: RepositoryName, peer: Endpoint?) {
        self.init(repository: .name(repository), peer: peer)
    }

    public var name: RepositoryName? { if case let .name(n) = repository { return n } else { return nil } }
    public var id: RepositoryID? { if case let .id(i) = repository { return i } else { return nil } }
    public var description: String { repository.description }
}

/// A running guts node: the NIO shell around `NodeService`. It accepts peers and dials
/// bootstrap peers, feeds the service their events on one event loop (the service and the
/// link table are bound to that loop), and carries out the service's actions: messages,
/// disconnects, sync requests handed to the sync server, scans and mirror syncs on
/// bounded executors of their own, announcements through gossip. Nothing blocks an event
/// loop and the service never waits.
public final class Node: Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var bootstrap: [Endpoint]
        public var maxConnections: Int
        public var connectTimeout: Double
        /// Also serve QUIC on the listen port number (UDP).
        public var quic = true
        /// How this node dials peers: QUIC raced with TCP, or one of them.
        public var transport = TransportChoice.auto
        public var session: SessionConfig
        /// Repositories to serve (nil: serve none). The first root is where mirrors go.
        public var repositories: RepositoryCatalog?
        /// Extra topics to subscribe to and relay (besides the well-known ones).
        public var topics: [String] = []
        /// Repositories to mirror on announcements.
        public var mirrors: [MirrorSpec] = []
        /// Object transfers served at once; more are answered busy.
        public var maxTransfers = 8
        /// Mirror syncs run at once (each repository at most once).
        public var maxMirrors = 2
        /// Seconds a transfer may go without the peer taking any bytes before it is cut off.
        public var stallTimeout: Double = 60
        /// Seconds between scans of served repositories for changes to announce.
        public var announceInterval: Double = 2
        /// Seconds after which this node signs its unchanged refs again, so followers
        /// see fresh signed state (guts-identity(5), FRESHNESS); 0 never.
        public var resignInterval: Double = 86_400
        /// Seconds between catch-up syncs of each followed repository (jittered); 0 for none.
        public var mirrorInterval: Double = 300
        /// Reconnect backoff bounds in seconds.
        public var minBackoff: Double = 1
        public var maxBackoff: Double = 60
        /// Where the peer book (`peers`) is kept; nil keeps it in memory only.
        public var stateDirectory: String?
        /// Peer scoring: weights, caps, half-lives, thresholds, ban durations.
        public var score = ScoreParameters()
        /// Caps on connections still in the handshake.
        public var admission = AdmissionPolicy<ObjectIdentifier>.Limits()
        /// Per-peer message and request budgets.
        public var rates = LinkGuard.Rates()
        /// Sessions one identity may hold at once.
        public var maxSessionsPerPeer = 2
        /// known_peers for the bootstrap peers (nil: off).
        public var knownPeers: KnownPeersHook?
        /// A mirror sync that leaves more packs than this consolidates them (0: never).
        public var maxPacks = PackMaintenance.defaultMaxPacks
        /// Take part in the DHT (capability `dht`): answer lookups, keep a routing table,
        /// provide the public repositories served.
        public var dht = true
        /// Addresses to advertise in the DHT; empty: the bound address unless it is
        /// unspecified (0.0.0.0, ::), in which case the node advertises none and takes
        /// part as a client only.
        public var announceAddresses: [DHTAddress] = []
        public var dhtConfig = DHTConfig()
        public var dhtLimits = DHTService.Limits()

        public init(host: String, port: Int, bootstrap: [Endpoint], maxConnections: Int, connectTimeout: Double, session: SessionConfig) {
            self.host = host
            self.port = port
            self.bootstrap = bootstrap
            self.maxConnections = maxConnections
            self.connectTimeout = connectTimeout
            self.session = session
        }
    }

    /// What lives on the service loop.
    struct Shell {
        var service: NodeService
        var links: [LinkID: any PeerLink] = [:]
        var nextLink: LinkID = 1
        var timer: Scheduled<Void>?
        var timerAt: Instant?
    }

    public let options: Options
    let log: NodeLog
    let group: MultiThreadedEventLoopGroup
    /// The loop the service runs on.
    let loop: EventLoop
    private let shell: NIOLoopBoundBox<Shell>
    private let session: SessionConfig
    private let listener = NIOLockedValueBox<Listener?>(nil)
    private let quicListener = NIOLockedValueBox<QUICListener?>(nil)
    private let sync: SyncServer?
    let gossip: GossipService
    /// Reads the refs of served repositories for the announcer (one scan at a time).
    private let scanner: BlockingExecutor
    /// Mirror syncs, apart from serving and announcing.
    private let mirrors: BlockingExecutor
    private let established = NIOLockedValueBox([ObjectIdentifier: any PeerLink]())
    public let startedAt = Instant.now()
    /// Scores, bans and admitted sessions.
    let reputation: Reputation
    /// Writes the peer book off the loops.
    let stateWriter: BlockingExecutor
    private let chores = NIOLockedValueBox<[RepeatedTask]>([])
    /// The DHT (nil with `dht` off).
    public let dht: DHTService?
    /// Repositories announced through gossip, by announcer (a second source of providers).
    let seenProviders = NIOLockedValueBox(SeenProviders())
    /// The UDP port this node serves QUIC on, advertised in its Hello and HelloAck and peer
    /// records; 0 until bound, and for good when the UDP side could not be bound.
    let quicPort: NIOLockedValueBox<UInt16>
    /// What peers this node dialed advertised for QUIC in their HelloAck, by the TCP
    /// address dialed (0: none), so its next dials there race QUIC on the right port or
    /// use only TCP.
    let learnedQUIC: NIOLockedValueBox<[String: UInt16]>
    static let maxLearnedQUIC = 1024
    /// The node, for the DHT's hooks (cleared at stop, so no cycle outlives the node).
    private let selfRef = NIOLockedValueBox<Node?>(nil)
    static let routingTableFile = "dht-routing"

    public init(options: Options, log: NodeLog, threads: Int = System.coreCount) {
        self.options = options
        self.log = log
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        loop = group.next()
        let stalls = NIOLockedValueBox<Reputation?>(nil)
        sync = options.repositories.map {
            SyncServer(catalog: $0, maxTransfers: options.maxTransfers, stallTimeout: options.stallTimeout,
                       onStall: { connection in stalls.withLockedValue { $0 }?.record(.stall, connection, reason: "stopped reading a transfer") },
                       log: log.info)
        }
        gossip = GossipService(loop: group.next(), identity: options.session.identity, topics: Set(options.topics), log: log)
        scanner = BlockingExecutor(name: "announce", threads: 1, limit: 1)
        mirrors = BlockingExecutor(name: "mirror", threads: max(1, options.maxMirrors), limit: max(1, options.mirrors.count))
        var session = options.session
        // Every node may mirror, so every node takes OFS_DELTA.
        let extra = (sync != nil ? SyncServer.capabilities : []) + [GossipService.capability] + SyncClient.capabilities
        let dhtExtra = options.dht ? [DHTProtocol.capability] : []
        session.capabilities += (extra + dhtExtra).filter { !session.capabilities.contains($0) }
        session.protocols = MessageRegistry([SyncProtocol(), GossipProtocol()] + (options.dht ? [DHTProtocol()] : []))
        let advertised = NIOLockedValueBox<UInt16>(0)
        quicPort = advertised
        session.quicPort = { advertised.withLockedValue { $0 } }
        self.session = session
        let learned = NIOLockedValueBox<[String: UInt16]>([:])
        learnedQUIC = learned
        var serviceOptions = NodeService.Options()
        serviceOptions.bootstrap = options.bootstrap
        serviceOptions.serving = options.repositories != nil
        serviceOptions.mirrors = options.mirrors
        serviceOptions.announceInterval = options.announceInterval
        serviceOptions.mirrorInterval = options.mirrorInterval
        serviceOptions.minBackoff = options.minBackoff
        serviceOptions.maxBackoff = options.maxBackoff
        serviceOptions.learnBootstrap = options.knownPeers?.learn ?? []
        serviceOptions.logsInfo = log.infoEnabled
        let local = Self.peerID(of: options.session)
        let service = NodeService(options: serviceOptions, localPeer: local, seed: Random.uint64())
        shell = NIOLoopBoundBox.makeBoxSendingValue(Shell(service: service), eventLoop: loop)
        let bookPath = options.stateDirectory.map { $0 + "/peers" }
        reputation = Reputation(book: Reputation.load(path: bookPath, parameters: options.score, log: log),
                                maxInbound: options.maxConnections, maxSessionsPerPeer: options.maxSessionsPerPeer, path: bookPath, log: log, seed: Random.uint64())
        stateWriter = BlockingExecutor(name: "state", threads: 1, limit: 1)
        stalls.withLockedValue { [reputation] in $0 = reputation }
        if options.dht {
            let ref = selfRef, sessionConfig = session, group = self.group, timeout = options.connectTimeout
            let probeConfig = Self.unfollowed(session)
            let transport = options.transport
            let state = options.stateDirectory
            let writer = stateWriter
            let dial: @Sendable (Endpoint, Bool) -> EventLoopFuture<any PeerLink> = { endpoint, keep in
                Node.dial(endpoint, learned: learned, choice: transport, config: keep ? sessionConfig : probeConfig, group: group, connectTimeout: timeout).map { (connection: any PeerLink) -> any PeerLink in
                    if keep { ref.withLockedValue { $0 }?.follow(connection, bootstrap: nil) }
                    return connection
                }
            }
            let penalize: @Sendable (any PeerLink, ScoreEvent, String) -> Void = { [reputation] link, event, reason in
                // Over-rate requests count at most once a second, as other budget overruns.
                if event == .rateLimitOverrun {
                    reputation.overrun(link, reason: reason)
                } else {
                    reputation.record(event, link, reason: reason)
                }
            }
            var save: (@Sendable (String) -> Void)?
            if let dir = state {
                save = { text in _ = writer.submit { Node.saveRoutingTable(dir, text, log: log) } }
            }
            let hooks = DHTService.Hooks(dial: dial, penalize: penalize, save: save, log: log)
            dht = DHTService(loop: group.next(), identity: options.session.identity, config: options.dhtConfig,
                             limits: options.dhtLimits, seed: Random.uint64(), hooks: hooks)
        } else {
            dht = nil
        }
        selfRef.withLockedValue { $0 = self }
        gossip.onDeliver = { [weak self] message, _, _ in self?.delivered(message) }
        gossip.onOffence = { [weak self] connection, reason, weight in
            self?.reputation.record(.invalidGossip, connection, count: weight, reason: "gossip: \(reason)")
        }
        gossip.onVerdict = { [weak self] connection in self?.reputation.verdict(on: connection) }
        gossip.onOverrun = { [weak self] connection, what in self?.reputation.overrun(connection, reason: "over its \(what) budget") }
        gossip.onFirstDelivery = { [weak self] connection in self?.reputation.record(.firstDelivery, connection, reason: "delivered first") }
    }

    /// The session config of a connection this node opens and does not follow as a node
    /// session (a DHT dial-back, a mirror sync's own dial): its Hello lists neither `gossip`
    /// nor `dht`, so the peer does not take it for a node session (no gossip or DHT traffic
    /// on it, and no simultaneous-dial tie-break against the session it opened itself).
    static func unfollowed(_ session: SessionConfig) -> SessionConfig {
        var c = session
        c.capabilities.removeAll { $0 == GossipService.capability || $0 == DHTProtocol.capability }
        return c
    }

    static func peerID(of session: SessionConfig) -> PeerID {
        // A 32-byte Ed25519 public key always makes a PeerID.
        guard let id = try? PeerID(publicKey: session.identity.publicKey) else { preconditionFailure("unreachable") }
        return id
    }

    public var peerID: PeerID { Self.peerID(of: options.session) }

    /// Binds the listener, then starts the service (bootstrap dials, announcements).
    /// Returns the bound address.
    public func start() throws -> SocketAddress {
        var listenerOptions = Listener.Options(maxConnections: options.maxConnections)
        listenerOptions.admission = options.admission
        // A peer over its byte budget is not read (and so slowed by TCP) rather than read
        // and dropped: flooding costs the node no decryption beyond the budget.
        listenerOptions.readRate = ReadRate(bytes: options.rates.bytes, byteBurst: options.rates.byteBurst,
                                            messages: options.rates.messages, messageBurst: options.rates.messageBurst)
        var hooks = Listener.Hooks()
        let reputation = self.reputation
        let log = self.log
        hooks.isBanned = { reputation.isBanned($0) }
        hooks.admit = { connection, peer, hello in reputation.admit(connection, peer, hello) }
        hooks.refused = { address, why in log.debug("connection from \(address) closed before the handshake: \(why)") }
        // TCP and QUIC on the same port number; with port 0, until a free pair is found.
        var attempt = 0
        var bound: (Listener, SocketAddress, QUICListener?)?
        while bound == nil {
            attempt += 1
            let listener = Listener(group: group, config: session, options: listenerOptions, hooks: hooks) { [weak self] connection in
                self?.follow(connection, bootstrap: nil)
            }
            let address = try listener.bind(host: options.host, port: options.port)
            guard options.quic else {
                bound = (listener, address, nil)
                break
            }
            let quic = QUICListener(group: group, config: session, options: listenerOptions, hooks: hooks) { [weak self] link in
                self?.follow(link, bootstrap: nil)
            }
            do {
                _ = try quic.bind(host: options.host, port: address.port ?? options.port)
                bound = (listener, address, quic)
            } catch {
                if options.port == 0 && attempt < 20 {
                    listener.shutdown()
                    continue
                }
                log.info("QUIC disabled: cannot bind UDP port \(address.port ?? options.port): \(error)")
                bound = (listener, address, nil)
            }
        }
        guard let (listener, address, quic) = bound else { throw TransportError.notEstablished }
        // Only a bound UDP side is advertised (Hello, HelloAck, peer and provider records).
        if quic != nil, let port = address.port.flatMap({ UInt16(exactly: $0) }) { quicPort.withLockedValue { $0 = port } }
        self.listener.withLockedValue { $0 = listener }
        quicListener.withLockedValue { $0 = quic }
        loop.execute { self.apply(.started) }
        // Chores: a minute of uptime earns connected peers a (capped) reward; the peer
        // book is written when it changed, at most every few seconds.
        let uptime = loop.scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { [weak self] _ in
            self?.reputation.creditUptime()
        }
        let save = loop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(2)) { [weak self] _ in
            guard let self else { return }
            self.stateWriter.submit { [weak self] in self?.reputation.save() }
        }
        chores.withLockedValue { $0 = [uptime, save] }
        if let dht { startDHT(dht, bound: address) }
        return address
    }

    /// The addresses to advertise and the saved routing table, then the DHT's start.
    private func startDHT(_ dht: DHTService, bound: SocketAddress) {
        var addresses = options.announceAddresses
        if addresses.isEmpty, let a = DHTAddress(PeerConnectionAddress.render(bound)) { addresses = [a] }
        let quic = quicPort.withLockedValue { $0 }
        if quic == 0 {
            // QUIC is off: no QUIC address is advertised, even one the operator gave.
            addresses.removeAll { $0.quic }
        } else if !addresses.contains(where: \.quic) {
            // QUIC on the same port number as each TCP address (announced or bound), unless
            // the operator gave QUIC addresses of its own.
            // A record holds at most 8: the given (TCP) addresses first, then as many QUIC
            // addresses as fit, in the order given, so no TCP address is dropped for one.
            let paired = addresses.compactMap { a in
                options.announceAddresses.isEmpty ? DHTAddress(ip: a.ip, port: quic, quic: true) : a.with(quic: true)
            }
            let room = max(0, DHTLimits.maxAddresses - addresses.count)
            if paired.count > room {
                log.info("dht: advertising QUIC for the first \(room) of \(addresses.count) addresses: a record holds at most \(DHTLimits.maxAddresses)")
            }
            addresses += paired.prefix(room)
        }
        var saved: [RoutingTableText.Saved] = []
        if let dir = options.stateDirectory {
            let path = dir + "/" + Self.routingTableFile
            if Files.exists(path) {
                do {
                    let bytes = try Files.read(path, limit: RoutingTableText.maxBytes)
                    let (contacts, skipped) = try RoutingTableText.parse(String(decoding: bytes, as: UTF8.self))
                    saved = contacts
                    log.debug("dht: \(contacts.count) saved contacts from \(path)" + (skipped > 0 ? ", \(skipped) lines skipped" : ""))
                } catch {
                    log.info("dht: ignoring \(path): \(error)")
                }
            }
        }
        var learnPort: UInt16?
        if addresses.isEmpty {
            learnPort = bound.port.flatMap { UInt16(exactly: $0) }
            log.info("dht: no address to advertise (listening on an unspecified address without --announce-address): a client only until peers in \(AddressVotes.defaultQuorum) prefixes agree on the address they see this node at")
        } else {
            log.debug("dht: advertising \(addresses.map(\.description).joined(separator: ", "))")
        }
        dht.start(addresses: addresses, learnPort: learnPort, quicPort: quic == 0 ? nil : quic, saved: saved)
    }

    static func saveRoutingTable(_ dir: String, _ text: String, log: NodeLog) {
        do {
            try Files.writeAtomically(dir + "/" + routingTableFile, string: text, mode: 0o600)
        } catch {
            log.info("dht: cannot save the routing table: \(error)")
        }
    }

    /// Says Goodbye to every peer, stops accepting and releases the threads.
    public func stop() {
        // Called from outside the loops (the CLI's main thread), so waiting here is fine.
        let outbound = try? loop.submit { () -> [any PeerLink] in
            let shell = self.shell.value
            shell.timer?.cancel()
            self.shell.value.service.stop()
            return shell.links.values.filter { !$0.inbound }
        }.wait()
        if let stats = try? gossip.stats().wait() {
            log.info("gossip: received \(stats.received) (\(stats.duplicates) duplicates), delivered \(stats.delivered), published \(stats.published), relayed \(stats.relayed)")
        }
        listener.withLockedValue { $0 }?.shutdown()
        quicListener.withLockedValue { $0 }?.shutdown()
        for c in outbound ?? [] { c.close(.shutdown, "node shutting down") }
        // Closing is bounded by the transport's flush limit, so this wait ends.
        for c in outbound ?? [] { _ = try? c.closeFuture.wait() }
        for task in chores.withLockedValue({ $0 }) { task.cancel() }
        if let dht, let text = try? dht.stop().wait(), let dir = options.stateDirectory {
            Self.saveRoutingTable(dir, text, log: log)
        }
        dht?.waitForDials()
        selfRef.withLockedValue { $0 = nil }
        sync?.shutdown()
        scanner.shutdown()
        mirrors.shutdown()
        stateWriter.shutdown()
        reputation.save()
        try? group.syncShutdownGracefully()
    }

    /// Number of open connections (inbound and outbound).
    public var connectionCount: Int {
        (listener.withLockedValue { $0 }?.connectionCount ?? 0) + (quicListener.withLockedValue { $0 }?.connectionCount ?? 0) + established.withLockedValue { $0.values.filter { !$0.inbound }.count }
    }

    /// Sessions established, inbound and outbound (gossip clients included).
    var establishedConnections: [any PeerLink] { established.withLockedValue { Array($0.values) } }

    /// The gossip service, for publishing and subscribing on behalf of local clients.
    var gossipService: GossipService { gossip }

    // MARK: - Feeding the service

    /// Hands one event to the service and carries out what it asks. On `loop` only.
    private func apply(_ event: NodeEvent) {
        loop.preconditionInEventLoop()
        let actions = shell.value.service.handle(event, now: .now())
        for action in actions { perform(action) }
        schedule()
    }

    private func schedule() {
        guard let deadline = shell.value.service.nextDeadline else { return }
        if let at = shell.value.timerAt, at <= deadline, shell.value.timer != nil { return }
        shell.value.timer?.cancel()
        shell.value.timerAt = deadline
        let now = Instant.now()
        let delay = deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0
        shell.value.timer = loop.scheduleTask(in: .nanoseconds(delay)) { [weak self] in
            guard let self else { return }
            self.shell.value.timer = nil
            self.shell.value.timerAt = nil
            self.apply(.tick)
        }
    }

    private func perform(_ action: NodeAction) {
        switch action {
        case let .dial(b, endpoint):
            Self.dial(endpoint, learned: learnedQUIC, choice: options.transport, config: session, group: group, connectTimeout: options.connectTimeout).whenComplete { [weak self] result in
                guard let self else { return }
                switch result {
                case let .success(connection):
                    self.follow(connection, bootstrap: b)
                case let .failure(error):
                    let reason = self.options.knownPeers.flatMap { $0.explain(error, bootstrap: b, address: endpoint.address) } ?? Dialer.reason(error)
                    self.loop.execute { self.apply(.dialFailed(bootstrap: b, reason: reason)) }
                }
            }
        case let .remember(b, address, peer):
            guard let hook = options.knownPeers else { return }
            hook.pinned(b)
            let log = self.log
            stateWriter.submit {
                do {
                    switch try KnownPeersFile.record(hook.path, address: address, peer: peer, now: KnownPeersFile.now()) {
                    case .added: log.info("learned \(peer) at \(address) (first use; kept in \(hook.path))")
                    case .known: break
                    case let .conflict(entry):
                        log.info("WARNING: \(hook.path):\(entry.line) records \(entry.peer) for \(address), but bootstrap peer \(address) presented \(peer); its next dials demand \(peer) (to record it: \(hook.forgetCommand(address)))")
                    case .full: log.info("cannot record \(peer) for \(address): \(hook.path) is full")
                    }
                } catch {
                    log.info("cannot record \(peer) for \(address): \(error)")
                }
            }
        case let .send(link, message):
            shell.value.links[link]?.send(message)
        case let .disconnect(link, code, reason):
            shell.value.links[link]?.close(code, reason)
        case let .serve(link, request):
            if let connection = shell.value.links[link] { _ = sync?.handle(.sync(request), from: connection) }
        case .scan:
            let submitted = scanner.submit { [weak self] in
                guard let self else { return }
                let current = self.options.repositories.map { RepositoryScanner.scan($0, key: self.options.session.identity,
                                                                                             refreshAfter: self.options.resignInterval > 0 ? Int64(self.options.resignInterval) : nil) } ?? [:]
                self.loop.execute { self.apply(.scanned(current)) }
                // Public repositories with an identity are provided by ID; restricted ones never.
                self.dht?.provide(Set(current.values.compactMap { r in
                    r.restricted ? nil : r.id.flatMap { NodeID(bytes: $0.bytes) }
                }))
            }
            if !submitted {
                // The previous scan posted its result but its thread has not returned yet:
                // the announcer counts this scan as running, so it must happen; retry shortly.
                loop.scheduleTask(in: .milliseconds(20)) { [weak self] in self?.perform(.scan) }
            }
        case let .publish(topic, announcement):
            guard let data = try? announcement.encoded() else { return }
            gossip.publish(topic: topic, data: data)
        case let .mirror(job):
            let links = job.links.compactMap { shell.value.links[$0] }
            let submitted = mirrors.submit { [weak self] in
                guard let self else { return }
                let outcome = self.runMirror(job, over: links)
                self.loop.execute { self.apply(.mirrored(spec: job.index, outcome)) }
            }
            if !submitted {
                // The mirrorer admits one job per followed repository; a refusal means the
                // previous job of this repository posted its outcome but its thread has not
                // returned yet. Retry shortly rather than drop the sync.
                loop.scheduleTask(in: .milliseconds(20)) { [weak self] in self?.perform(.mirror(job)) }
            }
        case let .log(level, text):
            switch level {
            case .info: log.info(text)
            case .debug: log.debug(text)
            }
        }
    }

    // MARK: - Connections

    /// Follows a connection from acceptance (or dial) to close, feeding the service.
    fileprivate func follow(_ connection: any PeerLink, bootstrap: Int?) {
        let guardian = LinkGuard(rates: options.rates)
        // A dialled link arrives established, and its first messages may be waiting
        // already (over QUIC the peer's Subscribe shares a packet with its HelloAck):
        // gossip and the DHT learn of the session before the handler replays them.
        let early = connection.peer
        if let info = early { announce(connection, info) }
        connection.setMessageHandler { [weak self] conn, message in
            guard let self else { return true }
            // Answers to this node's own requests are never rate-limited or graylisted.
            if conn.expectsAnswers, message.isAnswer { return false }
            switch guardian.admit(message, bytesReceived: conn.bytesReceived, now: .now()) {
            case .allow:
                break
            case let .busy(request, retryAfter):
                conn.send(.error(ErrorReply(requestID: request, code: .busy,
                                            message: "retry-after=\(Int(retryAfter.rounded(.up))); too many requests from this peer")))
                self.overrun(conn, guardian, "requests")
                return true
            case let .drop(what):
                self.overrun(conn, guardian, what)
                return true
            }
            // A graylisted node's gossip and requests are ignored (gossip clients have budgets
            // of their own, and their forgeries keep costing them).
            if let info = conn.peer, !info.capabilities.contains(GossipClient.capability),
               self.reputation.isGraylisted(info.peerID) {
                return true
            }
            if let dht = self.dht {
                if dht.handle(message, from: conn) { return true }
                // A peer too busy for this node's DHT requests: they fail at once.
                if case let .error(e) = message, e.code == .busy { dht.busy(from: conn) }
            }
            if self.gossip.handle(message, from: conn) { return true }
            // Answers to a request this node made on the link (a mirror sync) wait there.
            if conn.expectsAnswers, message.isAnswer { return false }
            self.loop.execute { self.deliver(message, from: conn) }
            return true
        }
        connection.establishedFuture.whenComplete { [weak self] result in
            guard let self else { return }
            switch result {
            case let .success(info):
                if early == nil { self.announce(connection, info) }
                self.onLoop { self.register(connection, info: info, bootstrap: bootstrap) }
            case let .failure(error):
                if let bootstrap {
                    self.loop.execute { self.apply(.dialFailed(bootstrap: bootstrap, reason: "\(error)")) }
                } else {
                    // Refusals and failed handshakes: the peer never became a session.
                    self.log.info("connection from \(connection.remoteAddress) rejected: \(error)")
                }
            }
        }
    }

    /// Gossip learns of the session first, from the connection's own loop, so the
    /// session's first messages (which take the same path) find it registered.
    private func announce(_ connection: any PeerLink, _ info: PeerInfo) {
        reputation.established(connection, peer: info.peerID)
        gossip.connected(connection)
        dht?.connected(connection)
    }

    private func register(_ connection: any PeerLink, info: PeerInfo, bootstrap: Int?) {
        let link = shell.value.nextLink
        shell.value.nextLink += 1
        shell.value.links[link] = connection
        let key = ObjectIdentifier(connection)
        established.withLockedValue { $0[key] = connection }
        apply(.established(link, info, address: connection.remoteAddress, inbound: connection.inbound, bootstrap: bootstrap))
        connection.closeFuture.whenComplete { [weak self] result in
            guard let self else { return }
            let close = try? result.get()
            let reason = close.map { "\($0)" } ?? "closed"
            self.established.withLockedValue { _ = $0.removeValue(forKey: key) }
            if case let .localGoodbye(goodbye)? = close,
               [ReasonCode.protocolViolation, .unknownMessageType, .messageTooLarge].contains(goodbye.code) {
                self.reputation.closedForViolation(connection, reason: goodbye.reason)
            }
            self.reputation.closed(connection)
            self.gossip.disconnected(connection)
            self.dht?.disconnected(connection)
            self.onLoop {
                self.shell.value.links[link] = nil
                self.apply(.closed(link, reason: reason))
            }
        }
    }

    /// Runs `body` on the node's loop: at once when called there (a connection served by
    /// that loop), else queued. Saves a cross-thread hop for those connections.
    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inEventLoop { body() } else { loop.execute(body) }
    }

    /// A peer went over one of its budgets: what it sent is dropped, and the overrun
    /// counts against its score (at most once a second, so the score, not the log, grows).
    private func overrun(_ connection: any PeerLink, _ guardian: LinkGuard, _ what: String) {
        reputation.overrun(connection, reason: "over its \(what) budget")
    }

    private func deliver(_ message: Message, from connection: any PeerLink) {
        guard let link = shell.value.links.first(where: { $0.value === connection })?.key else { return }
        apply(.message(link, message))
    }

    /// An announcement was delivered by gossip (on the gossip loop): its origin is recorded
    /// as a provider of the repository (SignedRefs names it by ID), and mirrors follow it.
    private func delivered(_ message: Gossip) {
        guard message.topic == Topic.commits, let announcement = Announcement.decode(message.data),
              let origin = try? PeerID(publicKey: message.origin), origin != peerID else { return }
        if case let .signedRefs(s) = announcement {
            let score = reputation.score(origin)
            seenProviders.withLockedValue { $0.record(s.repository, origin: origin, score: score, now: .now()) }
        }
        guard !options.mirrors.isEmpty else { return }
        loop.execute { self.apply(.announced(announcement, origin: origin)) }
    }

    /// Announcers of a repository seen through gossip, most recent first.
    func announcers(of repository: RepositoryID) -> [SeenProviders.Provider] {
        seenProviders.withLockedValue { $0.providers(of: repository, now: .now()) }
    }

    /// The node's standing of a peer (higher is better), for ordering providers.
    func score(_ peer: PeerID) -> Double { reputation.score(peer) }

    // MARK: - Blocking work (executor threads only)

    /// Runs a mirror sync (see `MirrorRunner`): over the announcer's link when connected,
    /// else the configured peer, else any connected peer that serves objects.
    private func runMirror(_ job: MirrorJob, over connected: [any PeerLink]) -> MirrorOutcome {
        guard let root = options.repositories?.roots.first else {
            return .failed(MirrorFailure(.local, peer: nil, "no repository root to mirror into"))
        }
        let session = Self.unfollowed(self.session), group = self.group, timeout = options.connectTimeout, transport = options.transport
        let learned = learnedQUIC
        // Best-scoring peers first (the announcer stays first when it is connected), banned
        // ones never; what each peer did is scored.
        let reputation = self.reputation
        let ordered = connected.enumerated().filter { item in
            guard let id = item.element.peer?.peerID else { return false }
            return !reputation.state.withLockedValue { $0.book.isBanned(id, now: .now()) }
        }.sorted { a, b in
            let first = a.element.peer?.peerID == job.origin, second = b.element.peer?.peerID == job.origin
            if first != second { return first }
            let sa = a.element.peer.map { reputation.score($0.peerID) } ?? 0
            let sb = b.element.peer.map { reputation.score($0.peerID) } ?? 0
            return sa != sb ? sa > sb : a.offset < b.offset
        }.map(\.element)
        let log = self.log
        return MirrorRunner.run(job, root: root, localPeer: peerID, connected: ordered, maxPacks: options.maxPacks,
                                log: { log.info($0) },
                                record: { event, connection, reason in reputation.record(event, connection, reason: reason) }) { endpoint in
            try? Node.dial(endpoint, learned: learned, choice: transport, config: session, group: group, connectTimeout: timeout).wait()
        }
    }

    /// Dials `endpoint`, racing QUIC where the peer advertised it (in the HelloAck of an
    /// earlier dial of the same address) or TCP only where it advertised none; what the
    /// peer advertises now is kept for the next dial.
    static func dial(_ endpoint: Endpoint, learned: NIOLockedValueBox<[String: UInt16]>, choice: TransportChoice,
                     config: SessionConfig, group: EventLoopGroup, connectTimeout: Double) -> EventLoopFuture<any PeerLink> {
        var target = endpoint
        let key = endpoint.address
        if target.transport == nil, target.quic == .unknown, let port = learned.withLockedValue({ $0[key] }) {
            target.quic = port == 0 ? .none : .port(Int(port))
        }
        return LinkDialer.dial(target, choice: choice, config: config, group: group, connectTimeout: connectTimeout)
            .map { link in
                if endpoint.transport == nil, let info = link.peer {
                    learned.withLockedValue { table in
                        if table[key] == nil, table.count >= maxLearnedQUIC, let any = table.keys.first { table[any] = nil }
                        table[key] = info.quicPort
                    }
                }
                return link
            }
    }
}

extension Message {
    /// Whether this answers a request (Refs, Objects, Error, Pong) rather than being one.
    var isAnswer: Bool {
        switch self {
        case .error, .pong: return true
        case .app: return syncMessage.map { !$0.isRequest } ?? false
        default: return false
        }
    }
}
