import Glibc
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Accepts inbound connections and runs a session on each, enforcing the connection
/// limit with an explained refusal (Goodbye too-many-connections after the handshake).
public final class Listener: Sendable {
    public struct Options: Sendable {
        /// Sessions at once when no `admit` hook decides (the hook takes over the limit).
        public var maxConnections: Int
        /// Caps on connections still in the handshake, per address group and in all.
        public var admission = AdmissionPolicy<ObjectIdentifier>.Limits()
        /// Bytes per second (and burst) read from each peer; beyond that the peer waits
        /// (TCP backpressure). Nil reads as fast as peers send.
        public var readRate: ReadRate?
        public init(maxConnections: Int) { self.maxConnections = maxConnections }
    }

    /// The node's say over inbound connections.
    public struct Hooks: Sendable {
        /// Asked at accept, before any cryptography: true closes the socket at once.
        public var isBanned: @Sendable (IPAddress) -> Bool = { _ in false }
        /// Asked when the peer's Hello arrives (identity proven): a Goodbye refuses it.
        public var admit: (@Sendable (any PeerLink, PeerID, Hello) -> Goodbye?)?
        /// Told about sockets closed before the handshake (bans, admission), for logs.
        public var refused: @Sendable (String, String) -> Void = { _, _ in }
        public init() {}
    }

    let group: EventLoopGroup
    let config: SessionConfig
    let options: Options
    let onConnection: @Sendable (PeerConnection) -> Void
    let hooks: Hooks
    /// Connections in the handshake (admission control before any cryptography).
    private let pending: NIOLockedValueBox<Pending>

    struct Pending {
        var policy: AdmissionPolicy<ObjectIdentifier>
        var connections: [ObjectIdentifier: PeerConnection] = [:]
    }
    private let channels = NIOLockedValueBox<[Channel]>([])
    private let connections = NIOLockedValueBox([ObjectIdentifier: PeerConnection]())

    /// `onConnection` runs on the connection's event loop as soon as it is accepted
    /// (before the handshake); use its futures to follow it.
    public init(group: EventLoopGroup, config: SessionConfig, options: Options, hooks: Hooks = Hooks(),
                onConnection: @escaping @Sendable (PeerConnection) -> Void) {
        self.group = group
        self.config = config
        self.options = options
        self.hooks = hooks
        self.onConnection = onConnection
        pending = NIOLockedValueBox(Pending(policy: AdmissionPolicy(limits: options.admission, seed: UInt64.random(in: 0...UInt64.max))))
    }

    /// Connections still in the handshake.
    public var pendingCount: Int { pending.withLockedValue { $0.connections.count } }

    /// Admission before any cryptography: banned addresses are closed; the handshake caps
    /// per address group and in all make room by evicting a random pending handshake of
    /// the busiest group (a trickling attacker is never silent, so silence is no signal).
    /// Returns false when the socket was closed.
    private func admitSocket(_ channel: Channel, _ connection: PeerConnection) -> Bool {
        func reject(_ address: String, _ why: String) -> Bool {
            hooks.refused(address, why)
            channel.close(promise: nil)
            // No session ever ran: complete the connection's promises here.
            connection.didClose(.connectionLost("refused before the handshake: \(why)"))
            return false
        }
        guard let text = channel.remoteAddress?.ipAddress, let ip = IPAddress(text) else {
            return reject("?", "no remote address")
        }
        if hooks.isBanned(ip) { return reject(text, "banned address") }
        let id = ObjectIdentifier(connection)
        let (decision, victim) = pending.withLockedValue { p -> (AdmissionPolicy<ObjectIdentifier>.Decision, PeerConnection?) in
            let d = p.policy.admit(id, group: ip.group, now: .now())
            switch d {
            case .accept:
                p.connections[id] = connection
                return (d, nil)
            case let .acceptEvicting(victim):
                p.connections[id] = connection
                return (d, p.connections.removeValue(forKey: victim))
            case .refuse:
                return (d, nil)
            }
        }
        switch decision {
        case .accept:
            break
        case .acceptEvicting:
            if let victim {
                hooks.refused(victim.remoteAddress, "handshake evicted to make room")
                victim.abort()
            }
        case let .refuse(why):
            return reject(text, "\(why)")
        }
        connection.establishedFuture.whenComplete { [pending] _ in
            pending.withLockedValue {
                $0.connections[id] = nil
                $0.policy.pendingEnded(id)
            }
        }
        return true
    }

    public var connectionCount: Int { connections.withLockedValue { $0.count } }

    /// All connections currently open.
    public var activeConnections: [PeerConnection] { connections.withLockedValue { Array($0.values) } }

    /// Binds and starts accepting. Returns the bound address (useful with port 0).
    ///
    /// One listening socket per event loop, all on the same address (SO_REUSEPORT): the
    /// kernel spreads connections over them, and each loop accepts and serves its own, so
    /// no connection is handed from the accepting thread to another (NIO's single-socket
    /// server hops three times per connection for that). The first socket is bound
    /// without SO_REUSEPORT, so a port another program or node holds is refused as before
    /// ("address already in use"); it joins the group once it listens. Should the kernel
    /// refuse that, one socket serves all loops, as NIO does by default.
    public func bind(host: String, port: Int) throws -> SocketAddress {
        let loops = Array(group.makeIterator())
        let shared = loops.count > 1
        let first = try serverBootstrap(loop: loops[0], children: loops[0]).bind(host: host, port: port).wait()
        guard let address = first.localAddress else {
            first.close(promise: nil)
            throw TransportError.notEstablished
        }
        var bound = [first]
        if shared {
            do {
                try first.setOption(Self.reusePort, value: 1).wait()
                for loop in loops.dropFirst() {
                    bound.append(try serverBootstrap(loop: loop, children: loop, reusePort: true).bind(to: address).wait())
                }
            } catch {
                for ch in bound { try? ch.close().wait() }
                bound = [try serverBootstrap(loop: loops[0], children: group).bind(to: address).wait()]
            }
        }
        channels.withLockedValue { $0 = bound }
        return address
    }

    static let reusePort = ChannelOptions.Types.SocketOption(level: .socket, name: NIOBSDSocket.Option(rawValue: SO_REUSEPORT))

    /// Level IPPROTO_TCP; options NIO has no name for.
    static func tcpOption(_ name: Int32) -> ChannelOptions.Types.SocketOption {
        ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))
    }

    /// Seconds a connection may stay silent before it is accepted anyway (TCP_DEFER_ACCEPT).
    static let deferAcceptSeconds = 1

    private func serverBootstrap(loop: EventLoop, children: EventLoopGroup, reusePort: Bool = false) -> ServerBootstrap {
        let template = config
        let limit = options.maxConnections
        let readRate = options.readRate
        var bootstrap = ServerBootstrap(group: loop, childGroup: children)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Accepted sockets inherit TCP_NODELAY from the listening socket (Linux), which
            // saves a getsockname and a setsockopt per connection. It is a TCP-level option:
            // `.socketOption(.tcp_nodelay)` would set SOL_SOCKET option 1, SO_DEBUG.
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            // The dialling side speaks first (Noise message 1): accept when its bytes are
            // there, so accepting and reading them take one wake-up. A silent socket is
            // accepted after a second and then meets the handshake timeout as before.
            .serverChannelOption(Self.tcpOption(TCP_DEFER_ACCEPT), value: Self.deferAcceptSeconds)
        if reusePort { bootstrap = bootstrap.serverChannelOption(Self.reusePort, value: 1) }
        return bootstrap
            // Out of file descriptors (EMFILE/ENFILE): stop accepting for a moment instead of
            // spinning on a listening socket that stays readable.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler())
                }
            }
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // Set here rather than as child options: those are applied one future each.
                    if let options = channel.syncOptions {
                        try options.setOption(.recvAllocator, value: Tuning.receiveAllocator)
                        try options.setOption(.writeBufferWaterMark, value: Tuning.writeWatermark)
                    }
                    let connection = PeerConnection(channel: channel, inbound: true)
                    guard self.admitSocket(channel, connection) else { return }
                    var sessionConfig = template
                    let count = self.connections.withLockedValue { map -> Int in
                        map[ObjectIdentifier(connection)] = connection
                        return map.count
                    }
                    if let admit = self.hooks.admit {
                        sessionConfig.admit = { [weak connection] id, hello in
                            guard let connection else { return Goodbye(code: .shutdown, reason: "connection closed") }
                            return admit(connection, id, hello)
                        }
                    } else if count > limit {
                        sessionConfig.refusal = Goodbye(code: .tooManyConnections,
                                                        reason: "this node accepts at most \(limit) connections")
                    }
                    let session = Session(role: .responder, config: sessionConfig, now: .now())
                    try channel.pipeline.syncOperations.addHandler(SessionHandler(session: session, connection: connection,
                                                                                   readRate: readRate))
                    connection.closeFuture.whenComplete { _ in
                        _ = self.connections.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(connection)) }
                    }
                    self.onConnection(connection)
                }
            }
    }

    /// Stops accepting, says Goodbye(shutdown) to every peer, and waits (bounded) for them to close.
    public func shutdown(reason: String = "node shutting down", timeout: Double = 3) {
        for channel in channels.withLockedValue({ $0 }) { try? channel.close().wait() }
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
