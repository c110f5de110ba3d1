import GutsGit
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Where the node writes its log lines (stderr in the CLI, a buffer in tests).
public struct NodeLog: Sendable {
    public var info: @Sendable (String) -> Void
    public var debug: @Sendable (String) -> Void
    public init(info: @escaping @Sendable (String) -> Void, debug: @escaping @Sendable (String) -> Void) {
        self.info = info
        self.debug = debug
    }
}

/// `REPO[@PEER]` from `guts listen --mirror`: follow a repository's announcements.
public struct MirrorSpec: Sendable, Equatable {
    public var repository: RepositoryName
    /// Where to sync from when the announcing node is not connected.
    public var peer: Endpoint?
    public init(repository: RepositoryName, peer: Endpoint?) {
        self.repository = repository
        self.peer = peer
    }
}

/// A running guts node: accepts peers, keeps its bootstrap peers connected, serves
/// repositories, gossips, announces what changes, and mirrors what it follows.
public final class Node: @unchecked Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var bootstrap: [Endpoint]
        public var maxConnections: Int
        public var connectTimeout: Double
        public var session: SessionConfig
        /// Repositories to serve (nil: serve none). The first root is where mirrors go.
        public var repositories: RepositoryCatalog?
        /// Extra topics to subscribe to and relay (besides the well-known ones).
        public var topics: [String] = []
        /// Repositories to mirror on announcements.
        public var mirrors: [MirrorSpec] = []
        /// Object transfers served at once; more are answered busy.
        public var maxTransfers = 8
        /// Seconds a transfer may go without the peer taking any bytes before it is cut off.
        public var stallTimeout: Double = 60
        /// Seconds between scans of served repositories for changes to announce.
        public var announceInterval: Double = 2
        /// Reconnect backoff bounds in seconds.
        public var minBackoff: Double = 1
        public var maxBackoff: Double = 60

        public init(host: String, port: Int, bootstrap: [Endpoint], maxConnections: Int, connectTimeout: Double, session: SessionConfig) {
            self.host = host
            self.port = port
            self.bootstrap = bootstrap
            self.maxConnections = maxConnections
            self.connectTimeout = connectTimeout
            self.session = session
        }
    }

    public let options: Options
    let log: NodeLog
    let group: MultiThreadedEventLoopGroup
    private var listener: Listener?
    private let sync: SyncServer?
    private let gossip: GossipService
    private let work: NIOThreadPool
    private let stopping = NIOLockedValueBox(false)
    private let outbound = NIOLockedValueBox([Int: PeerConnection]())
    private let established = NIOLockedValueBox([ObjectIdentifier: PeerConnection]())
    private let announced = NIOLockedValueBox([RepositoryName: [String: ObjectID]]())
    private let scanned = NIOLockedValueBox(false)
    private let mirroring = NIOLockedValueBox([RepositoryName: Bool]())

    public init(options: Options, log: NodeLog, threads: Int = System.coreCount) {
        self.options = options
        self.log = log
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.sync = options.repositories.map {
            SyncServer(catalog: $0, maxTransfers: options.maxTransfers, stallTimeout: options.stallTimeout, log: log.info)
        }
        self.gossip = GossipService(loop: group.next(), identity: options.session.identity,
                                    topics: Set(options.topics), log: log)
        self.work = NIOThreadPool(numberOfThreads: 1)
        work.start()
        gossip.onDeliver = { [weak self] message, id, from in self?.delivered(message, id: id, from: from) }
    }

    public var peerID: PeerID {
        // A 32-byte Ed25519 public key always makes a PeerID.
        guard let id = try? PeerID(publicKey: options.session.identity.publicKey) else { preconditionFailure("unreachable") }
        return id
    }

    /// Binds the listener, starts dialling bootstrap peers and announcing. Returns the bound address.
    public func start() throws -> SocketAddress {
        var session = options.session
        let extra = (sync != nil ? SyncServer.capabilities : []) + ["gossip"]
        session.capabilities += extra.filter { !session.capabilities.contains($0) }
        let listener = Listener(group: group, config: session, options: .init(maxConnections: options.maxConnections)) { [self] connection in
            follow(connection, label: "inbound", bootstrap: nil)
        }
        let address = try listener.bind(host: options.host, port: options.port)
        self.listener = listener
        for (index, endpoint) in options.bootstrap.enumerated() {
            connectBootstrap(index: index, endpoint: endpoint, session: session, backoff: options.minBackoff)
        }
        if options.repositories != nil { scheduleAnnouncements(first: true) }
        return address
    }

    /// Says Goodbye to every peer, stops accepting and releases the threads.
    public func stop() {
        stopping.withLockedValue { $0 = true }
        if let stats = try? gossip.stats().wait() {
            log.info("gossip: received \(stats.received) (\(stats.duplicates) duplicates), delivered \(stats.delivered), published \(stats.published), relayed \(stats.relayed)")
        }
        listener?.shutdown()
        let out = outbound.withLockedValue { Array($0.values) }
        for c in out { c.close(.shutdown, "node shutting down") }
        // Closing is bounded by the transport's flush limit, so this wait ends.
        for c in out { _ = try? c.closeFuture.wait() }
        sync?.shutdown()
        try? work.syncShutdownGracefully()
        try? group.syncShutdownGracefully()
    }

    /// Number of open connections (inbound and outbound).
    public var connectionCount: Int {
        (listener?.connectionCount ?? 0) + outbound.withLockedValue { $0.count }
    }

    // MARK: - Connections

    private func follow(_ connection: PeerConnection, label: String, bootstrap: Endpoint?) {
        connection.setMessageHandler { [self] conn, message in handle(message, from: conn) }
        connection.establishedFuture.whenSuccess { [self] info in
            let key = ObjectIdentifier(connection)
            established.withLockedValue { $0[key] = connection }
            gossip.connected(connection)
            let kind = info.capabilities.contains(GossipClient.capability) ? "\(label), gossip client" : label
            log.info("peer connected: \(info.peerID) \(connection.remoteAddress) (\(kind), \(info.agent), protocol \(info.version), handshake \(Self.ms(info.handshakeSeconds)) ms)")
            connection.closeFuture.whenSuccess { [self] reason in
                established.withLockedValue { _ = $0.removeValue(forKey: key) }
                gossip.disconnected(connection)
                log.info("peer disconnected: \(info.peerID) \(connection.remoteAddress) (\(reason))")
            }
        }
        if bootstrap == nil {
            connection.establishedFuture.whenFailure { [self] error in
                // Refusals and failed handshakes: the peer never became a session.
                log.info("connection from \(connection.remoteAddress) rejected: \(error)")
            }
        }
    }

    private func connectBootstrap(index: Int, endpoint: Endpoint, session: SessionConfig, backoff: Double) {
        if stopping.withLockedValue({ $0 }) { return }
        log.debug("dialling bootstrap peer \(endpoint)")
        Dialer.dial(endpoint, config: session, group: group, connectTimeout: options.connectTimeout).whenComplete { [self] result in
            switch result {
            case let .success(connection):
                outbound.withLockedValue { $0[index] = connection }
                follow(connection, label: "bootstrap", bootstrap: endpoint)
                connection.closeFuture.whenSuccess { [self] reason in
                    outbound.withLockedValue { _ = $0.removeValue(forKey: index) }
                    if stopping.withLockedValue({ $0 }) { return }
                    log.info("bootstrap peer \(endpoint) disconnected (\(reason)); reconnecting in \(Int(options.minBackoff)) s")
                    scheduleReconnect(index: index, endpoint: endpoint, session: session, after: options.minBackoff)
                }
            case let .failure(error):
                if stopping.withLockedValue({ $0 }) { return }
                let next = min(options.maxBackoff, backoff * 2)
                log.info("bootstrap peer \(endpoint) unreachable (\(error)); retrying in \(Int(backoff.rounded())) s")
                scheduleReconnect(index: index, endpoint: endpoint, session: session, after: backoff, nextBackoff: next)
            }
        }
    }

    private func scheduleReconnect(index: Int, endpoint: Endpoint, session: SessionConfig, after delay: Double, nextBackoff: Double? = nil) {
        // ±20% jitter so many nodes restarting together do not reconnect in lockstep.
        let jitter = Double(UInt32.random(in: 0...400)) / 1000 - 0.2
        let wait = max(0.05, delay * (1 + jitter))
        group.next().scheduleTask(in: .nanoseconds(Int64(wait * 1e9))) { [self] in
            connectBootstrap(index: index, endpoint: endpoint, session: session, backoff: nextBackoff ?? options.minBackoff)
        }
    }

    // MARK: - Requests

    /// Offers a message to the services; returns false for answers to requests this node
    /// made on the connection (a mirror sync), which the connection queues for it. Answers
    /// nobody asked for are dropped.
    private func handle(_ message: Message, from connection: PeerConnection) -> Bool {
        if gossip.handle(message, from: connection) { return true }
        if let sync, sync.handle(message, from: connection) { return true }
        switch message {
        case let .getRefs(r):
            connection.send(.error(ErrorReply(requestID: r.requestID, code: .badRequest,
                                              message: "this node does not offer the 'refs' capability")))
            return true
        case let .getObjects(r):
            connection.send(.error(ErrorReply(requestID: r.requestID, code: .badRequest,
                                              message: "this node does not offer the 'objects' capability")))
            return true
        case .refs, .objects, .error, .pong:
            if connection.expectsAnswers { return false }
            log.debug("dropping an unsolicited \(message.kind) from \(connection.peer.map { "\($0.peerID.short)" } ?? connection.remoteAddress)")
            return true
        default:
            log.debug("ignoring \(message.kind) from \(connection.peer.map { "\($0.peerID.short)" } ?? connection.remoteAddress)")
            return true
        }
    }

    // MARK: - Announcements

    private func scheduleAnnouncements(first: Bool) {
        if stopping.withLockedValue({ $0 }) { return }
        let delay = first ? min(1, options.announceInterval) : options.announceInterval
        group.next().scheduleTask(in: .nanoseconds(Int64(delay * 1e9))) { [self] in
            work.submit { [self] state in
                guard state == .active else { return }
                announceChanges()
                scheduleAnnouncements(first: false)
            }
        }
    }

    /// Compares each served repository's refs with what was last announced: a new
    /// repository gets NewRepository, each created or moved ref NewCommit. Repositories
    /// found by the first scan are only announced as repositories; one that appears later
    /// (pushed, or created by a sync) also gets NewCommit for each of its refs, so mirrors
    /// downstream can follow it.
    func announceChanges() {
        guard let catalog = options.repositories else { return }
        let initial = scanned.withLockedValue { done -> Bool in
            defer { done = true }
            return !done
        }
        for name in catalog.all() {
            guard let path = catalog.locate(name), let repo = try? Repository.open(path),
                  let refs = try? repo.listRefs().filter({ $0.symbolicTarget == nil }) else { continue }
            let current = Dictionary(refs.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
            let previous = announced.withLockedValue { map -> [String: ObjectID]? in
                defer { map[name] = current }
                return map[name]
            }
            if previous == nil {
                publish(Topic.repositories, .newRepository(NewRepository(repository: name.value)))
                if initial { continue }
            }
            let before = previous ?? [:]
            for (ref, id) in current.sorted(by: { $0.key < $1.key }) where before[ref] != id {
                guard let new = WireOID(id.bytes) else { continue }
                publish(Topic.commits, .newCommit(NewCommit(repository: name.value, ref: ref,
                                                            old: before[ref].flatMap { WireOID($0.bytes) }, new: new)))
            }
        }
    }

    private func publish(_ topic: String, _ message: Message) {
        guard let data = try? MessageCodec.encode(message) else { return }
        if case let .newCommit(c) = message {
            log.info("announcing \(c.repository) \(c.ref) \(c.new.description.prefix(12))")
        } else if case let .newRepository(r) = message {
            log.info("announcing repository \(r.repository)")
        }
        gossip.publish(topic: topic, data: data)
    }

    // MARK: - Mirroring

    /// An announcement arrived (on the gossip loop): mirror it when it is followed.
    private func delivered(_ message: Gossip, id: [UInt8], from: PeerConnection?) {
        guard message.topic == Topic.commits, !options.mirrors.isEmpty,
              let decoded = Self.decodeAnnouncement(message.data), case let .newCommit(commit) = decoded,
              let name = RepositoryName(commit.repository),
              let spec = options.mirrors.first(where: { $0.repository == name }),
              let origin = try? PeerID(publicKey: message.origin), origin != peerID else { return }
        log.info("announcement: \(origin.short) has \(name) \(commit.ref) at \(commit.new.description.prefix(12))")
        let start = mirroring.withLockedValue { map -> Bool in
            if map[name] != nil {
                map[name] = true  // run again when the current sync ends
                return false
            }
            map[name] = false
            return true
        }
        guard start else { return }
        work.submit { [self] state in
            guard state == .active else { return }
            mirror(spec, origin: origin)
        }
    }

    static func decodeAnnouncement(_ data: [UInt8]) -> Message? {
        guard data.count >= WireProtocol.headerLength, let kind = Message.Kind(rawValue: data[0]) else { return nil }
        return try? MessageCodec.decode(kind: kind, body: data[WireProtocol.headerLength...])
    }

    /// Syncs `spec` from the announcing node (over its connection when connected), else
    /// from the configured peer, else from any connected peer; repeats if more
    /// announcements came meanwhile.
    private func mirror(_ spec: MirrorSpec, origin: PeerID) {
        guard let root = options.repositories?.roots.first else { return }
        let path = spec.repository.path(in: root)
        while !stopping.withLockedValue({ $0 }) {
            var candidates: [PeerConnection] = established.withLockedValue { Array($0.values) }.filter { c in
                guard let p = c.peer else { return false }
                return !p.capabilities.contains(GossipClient.capability) && p.capabilities.contains("objects")
            }
            candidates.sort { a, _ in a.peer?.peerID == origin }
            var dialled: PeerConnection?
            if !(candidates.first?.peer?.peerID == origin), let endpoint = spec.peer {
                dialled = try? Dialer.dial(endpoint, config: options.session, group: group, connectTimeout: options.connectTimeout).wait()
                if let dialled { candidates.insert(dialled, at: 0) }
            }
            var done = false
            for connection in candidates where !done {
                let who = connection.peer.map { "\($0.peerID.short)@\(connection.remoteAddress)" } ?? connection.remoteAddress
                do {
                    let report = try SyncClient.run(repository: spec.repository, into: path, over: connection)
                    if report.upToDate {
                        log.info("mirror: \(spec.repository) is up to date with \(who)")
                    } else {
                        log.info("mirror: synced \(spec.repository) from \(who): \(report.changes.count) refs changed, \(report.objectsReceived) objects")
                    }
                    done = true
                } catch {
                    log.info("mirror: cannot sync \(spec.repository) from \(who): \(error)")
                }
            }
            dialled?.close(.shutdown, "mirror sync finished")
            let again = mirroring.withLockedValue { map -> Bool in
                if map[spec.repository] == true {
                    map[spec.repository] = false
                    return true
                }
                map[spec.repository] = nil
                return false
            }
            if !again { break }
        }
        // Re-announce promptly: the next scan sees the new refs.
        announceChanges()
    }

    static func ms(_ s: Double) -> String {
        let v = (s * 1000 * 1000).rounded() / 1000
        return "\(v)"
    }
}

// MARK: - Accessors for the control socket (NodeControl.swift)

extension Node {
    /// Sessions established, inbound and outbound (gossip clients included).
    var establishedConnections: [PeerConnection] { established.withLockedValue { Array($0.values) } }

    /// The gossip service, for publishing and subscribing on behalf of control clients.
    var gossipService: GossipService { gossip }
}
