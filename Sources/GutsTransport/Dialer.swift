import GutsAddress
import GutsIdentity
import GutsSupport
import GutsWire
import NIOCore
import NIOPosix

/// Socket settings shared by both directions.
enum Tuning {
    /// Reads grow up to 1 MiB when a peer streams (bulk transfers take fewer syscalls
    /// and wake-ups) and shrink back for idle chatty connections.
    static let receiveAllocator = AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 16384, maximum: 1 << 20)
    /// Above the high mark a channel is unwritable and its peer's input is not read
    /// (see SessionHandler); below the low mark reading resumes.
    static let writeWatermark = ChannelOptions.Types.WriteBufferWaterMark(low: SessionHandler.lowWatermark,
                                                                           high: SessionHandler.highWatermark)
}

/// Outbound connections.
public enum Dialer {
    /// Connects to `endpoint`, runs the handshake and Hello exchange, and completes with
    /// the established connection. `timeout` bounds the TCP connect and, separately,
    /// the session's handshake timeout in `config` bounds the rest.
    /// `source` binds the local end to that IP address first (tests use other loopback
    /// addresses to appear as other hosts).
    public static func dial(_ endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup,
                            connectTimeout: Double, source: String? = nil) -> EventLoopFuture<PeerConnection> {
        var config = config
        if let peer = endpoint.peer { config.expectedPeer = peer }
        let sessionConfig = config
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(Int64(max(0.001, connectTimeout) * 1e9)))
            // NIO's client bootstrap sets TCP_NODELAY itself (`.socketOption(.tcp_nodelay)`,
            // set here before, was SOL_SOCKET option 1: SO_DEBUG).
            .channelOption(.recvAllocator, value: Tuning.receiveAllocator)
            .channelOption(.writeBufferWaterMark, value: Tuning.writeWatermark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = PeerConnection(channel: channel, inbound: false)
                    let session = Session(role: .initiator, config: sessionConfig, now: .now())
                    try channel.pipeline.syncOperations.addHandler(SessionHandler(session: session, connection: connection))
                }
            }
        var configured = bootstrap
        if let source {
            do {
                configured = configured.bind(to: try SocketAddress(ipAddress: source, port: 0))
            } catch {
                return group.next().makeFailedFuture(error)
            }
        }
        return configured.connect(host: endpoint.host, port: endpoint.port).flatMap { channel in
            channel.pipeline.handler(type: SessionHandler.self).flatMap { handler in
                handler.connection.establishedFuture.map { _ in handler.connection }
            }
        }
    }
}

extension Dialer {
    /// Why a dial failed, in user terms ("cannot connect: Connection refused"), never
    /// the library's error structure: for logs of dials nobody waits on.
    public static func reason(_ error: Error) -> String {
        if let c = error as? NIOConnectionError {
            if let first = c.connectionErrors.first {
                return "cannot connect: " + systemText(first.error)
            }
            return "cannot resolve host '\(c.host)'"
        }
        if let c = error as? ChannelError, case .connectTimeout = c { return "connection timed out" }
        if error is IOError { return systemText(error) }
        return "\(error)"
    }

    static func systemText(_ error: Error) -> String {
        if let io = error as? IOError, let text = strerror(io.errnoCode) { return String(cString: text) }
        return "\(error)"
    }
}
