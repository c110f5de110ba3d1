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

/// A running guts node: accepts peers, keeps its bootstrap peers connected, answers requests.
public final class Node: @unchecked Sendable {
    public struct Options: Sendable {
        public var host: String
        public var port: Int
        public var bootstrap: [Endpoint]
        public var maxConnections: Int
        public var connectTimeout: Double
        public var session: SessionConfig
        /// Repositories to serve (nil: serve none).
        public var repositories: RepositoryCatalog?
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
    private let stopping = NIOLockedValueBox(false)
    private let outbound = NIOLockedValueBox([Int: PeerConnection]())

    public init(options: Options, log: NodeLog, threads: Int = System.coreCount) {
        self.options = options
        self.log = log
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
        self.sync = options.repositories.map { SyncServer(catalog: $0, log: log.info) }
    }

    public var peerID: PeerID {
        // A 32-byte Ed25519 public key always makes a PeerID.
        guard let id = try? PeerID(publicKey: options.session.identity.publicKey) else { preconditionFailure("unreachable") }
        return id
    }

    /// Binds the listener and starts dialling bootstrap peers. Returns the bound address.
    public func start() throws -> SocketAddress {
        var session = options.session
        if sync != nil { session.capabilities += SyncServer.capabilities.filter { !session.capabilities.contains($0) } }
        let listener = Listener(group: group, config: session, options: .init(maxConnections: options.maxConnections)) { [self] connection in
            follow(connection, label: "inbound")
        }
        let address = try listener.bind(host: options.host, port: options.port)
        self.listener = listener
        for (index, endpoint) in options.bootstrap.enumerated() {
            connectBootstrap(index: index, endpoint: endpoint, backoff: options.minBackoff)
        }
        return address
    }

    /// Says Goodbye to every peer, stops accepting and releases the threads.
    public func stop() {
        stopping.withLockedValue { $0 = true }
        listener?.shutdown()
        let out = outbound.withLockedValue { Array($0.values) }
        for c in out { c.close(.shutdown, "node shutting down") }
        for c in out { _ = try? c.closeFuture.wait() }
        sync?.shutdown()
        try? group.syncShutdownGracefully()
    }

    /// Number of established or pending connections (inbound and outbound).
    public var connectionCount: Int {
        (listener?.connectionCount ?? 0) + outbound.withLockedValue { $0.count }
    }

    // MARK: - Connections

    private func follow(_ connection: PeerConnection, label: String) {
        connection.setMessageHandler { [self] conn, message in handle(message, from: conn) }
        connection.establishedFuture.whenSuccess { [self] info in
            log.info("peer connected: \(info.peerID) \(connection.remoteAddress) (\(label), \(info.agent), protocol \(info.version), handshake \(Self.ms(info.handshakeSeconds)) ms)")
            connection.closeFuture.whenSuccess { [self] reason in
                log.info("peer disconnected: \(info.peerID) \(connection.remoteAddress) (\(reason))")
            }
        }
        connection.establishedFuture.whenFailure { [self] error in
            // Refusals and failed handshakes: the peer never became a session.
            log.info("connection from \(connection.remoteAddress) rejected: \(error)")
        }
    }

    private func connectBootstrap(index: Int, endpoint: Endpoint, backoff: Double) {
        if stopping.withLockedValue({ $0 }) { return }
        log.debug("dialling bootstrap peer \(endpoint)")
        Dialer.dial(endpoint, config: options.session, group: group, connectTimeout: options.connectTimeout).whenComplete { [self] result in
            switch result {
            case let .success(connection):
                outbound.withLockedValue { $0[index] = connection }
                let info = connection.peer
                connection.setMessageHandler { [self] conn, message in handle(message, from: conn) }
                log.info("peer connected: \(info.map { "\($0.peerID)" } ?? "?") \(connection.remoteAddress) (bootstrap, \(info?.agent ?? "?"))")
                connection.closeFuture.whenSuccess { [self] reason in
                    outbound.withLockedValue { _ = $0.removeValue(forKey: index) }
                    if stopping.withLockedValue({ $0 }) { return }
                    log.info("bootstrap peer \(endpoint) disconnected (\(reason)); reconnecting in \(Int(options.minBackoff)) s")
                    scheduleReconnect(index: index, endpoint: endpoint, after: options.minBackoff)
                }
            case let .failure(error):
                if stopping.withLockedValue({ $0 }) { return }
                let next = min(options.maxBackoff, backoff * 2)
                log.info("bootstrap peer \(endpoint) unreachable (\(error)); retrying in \(Int(backoff.rounded())) s")
                scheduleReconnect(index: index, endpoint: endpoint, after: backoff, nextBackoff: next)
            }
        }
    }

    private func scheduleReconnect(index: Int, endpoint: Endpoint, after delay: Double, nextBackoff: Double? = nil) {
        // ±20% jitter so many nodes restarting together do not reconnect in lockstep.
        let jitter = Double(UInt32.random(in: 0...400)) / 1000 - 0.2
        let wait = max(0.05, delay * (1 + jitter))
        group.next().scheduleTask(in: .nanoseconds(Int64(wait * 1e9))) { [self] in
            connectBootstrap(index: index, endpoint: endpoint, backoff: nextBackoff ?? options.minBackoff)
        }
    }

    // MARK: - Requests

    private func handle(_ message: Message, from connection: PeerConnection) {
        if let sync, sync.handle(message, from: connection) { return }
        switch message {
        case let .getRefs(r):
            connection.send(.error(ErrorReply(requestID: r.requestID, code: .badRequest,
                                              message: "this node does not offer the 'refs' capability")))
        case let .getObjects(r):
            connection.send(.error(ErrorReply(requestID: r.requestID, code: .badRequest,
                                              message: "this node does not offer the 'objects' capability")))
        default:
            log.debug("ignoring \(message.kind) from \(connection.peer.map { "\($0.peerID.short)" } ?? connection.remoteAddress)")
        }
    }

    static func ms(_ s: Double) -> String {
        let v = (s * 1000 * 1000).rounded() / 1000
        return "\(v)"
    }
}
