import GutsIdentity
import GutsSupport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Accepts inbound connections and runs a session on each, enforcing the connection
/// limit with an explained refusal (Goodbye too-many-connections after the handshake).
public final class Listener: Sendable {
    public struct Options: Sendable {
        public var maxConnections: Int
        public init(maxConnections: Int) { self.maxConnections = maxConnections }
    }

    let group: EventLoopGroup
    let config: SessionConfig
    let options: Options
    let onConnection: @Sendable (PeerConnection) -> Void
    private let channel = NIOLockedValueBox<Channel?>(nil)
    private let connections = NIOLockedValueBox([ObjectIdentifier: PeerConnection]())

    /// `onConnection` runs on the connection's event loop as soon as it is accepted
    /// (before the handshake); use its futures to follow it.
    public init(group: EventLoopGroup, config: SessionConfig, options: Options,
                onConnection: @escaping @Sendable (PeerConnection) -> Void) {
        self.group = group
        self.config = config
        self.options = options
        self.onConnection = onConnection
    }

    public var connectionCount: Int { connections.withLockedValue { $0.count } }

    /// All connections currently open.
    public var activeConnections: [PeerConnection] { connections.withLockedValue { Array($0.values) } }

    /// Binds and starts accepting. Returns the bound address (useful with port 0).
    public func bind(host: String, port: Int) throws -> SocketAddress {
        let template = config
        let limit = options.maxConnections
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: Tuning.receiveAllocator)
            .childChannelOption(.writeBufferWaterMark, value: Tuning.writeWatermark)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = PeerConnection(channel: channel, inbound: true)
                    var sessionConfig = template
                    let count = self.connections.withLockedValue { map -> Int in
                        map[ObjectIdentifier(connection)] = connection
                        return map.count
                    }
                    if count > limit {
                        sessionConfig.refusal = Goodbye(code: .tooManyConnections,
                                                        reason: "this node accepts at most \(limit) connections")
                    }
                    let session = Session(role: .responder, config: sessionConfig, now: .now())
                    try channel.pipeline.syncOperations.addHandler(SessionHandler(session: session, connection: connection))
                    connection.closeFuture.whenComplete { _ in
                        _ = self.connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) }
                    }
                    self.onConnection(connection)
                }
            }
        let ch = try bootstrap.bind(host: host, port: port).wait()
        channel.withLockedValue { $0 = ch }
        guard let address = ch.localAddress else { throw TransportError.notEstablished }
        return address
    }

    /// Stops accepting, says Goodbye(shutdown) to every peer, and waits (bounded) for them to close.
    public func shutdown(reason: String = "node shutting down", timeout: Double = 3) {
        if let channel = channel.withLockedValue({ $0 }) { try? channel.close().wait() }
        let all = activeConnections
        for c in all { c.close(.shutdown, reason) }
        let futures = all.map { $0.closeFuture.map { _ in () } }
        guard !futures.isEmpty else { return }
        let loop = group.next()
        let done = loop.makePromise(of: Void.self)
        let completed = NIOLockedValueBox(false)
        let finish: @Sendable () -> Void = {
            if completed.withLockedValue({ c in defer { c = true }; return !c }) { done.succeed(()) }
        }
        EventLoopFuture.andAllComplete(futures, on: loop).whenComplete { _ in finish() }
        let deadline = loop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { finish() }
        try? done.futureResult.wait()
        deadline.cancel()
        for c in activeConnections { c.channel.close(promise: nil) }
    }
}
