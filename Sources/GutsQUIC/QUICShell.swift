import Glibc
import GutsAddress
import GutsCrypto
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

extension QUICSocketAddress {
    init?(_ address: SocketAddress) {
        let bytes: [UInt8] = address.withSockAddr { pointer, size in
            Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: size))
        }
        switch address {
        case .v4: self.init(sockaddrBytes: Array(bytes.prefix(MemoryLayout<sockaddr_in>.size)))
        case .v6: self.init(sockaddrBytes: Array(bytes.prefix(MemoryLayout<sockaddr_in6>.size)))
        default: return nil
        }
    }

    var nio: SocketAddress? { try? SocketAddress(ipAddress: ip, port: port) }
}

/// The per-node TLS certificate: made once per identity and network in this process.
enum CertificateCache {
    private static let cache = NIOLockedValueBox([String: (made: Int64, certificate: QUICCertificate)]())
    /// A certificate is replaced after 30 days (it is valid for a year).
    static let renewAfter: Int64 = 30 * 86400

    static func certificate(for identity: Ed25519KeyPair, networkID: String) -> QUICCertificate {
        let key = Hex.encode(identity.publicKey) + "/" + networkID
        let now = Int64(unixTime())
        return cache.withLockedValue { c in
            if let entry = c[key], now - entry.made < renewAfter { return entry.certificate }
            let cert = QUICCertificate.make(identity: identity, networkID: networkID, now: now)
            c[key] = (now, cert)
            return cert
        }
    }
}

extension QUICConfig {
    /// The QUIC settings matching a session's (timeouts, identity, network, pinning).
    init(session: SessionConfig, maxStreams: UInt64 = QUICTuning.maxStreams) {
        self.init(identity: session.identity,
                  certificate: CertificateCache.certificate(for: session.identity, networkID: session.networkID),
                  networkID: session.networkID, expectedPeer: session.expectedPeer,
                  idleTimeout: session.idleTimeout, keepaliveInterval: session.keepaliveInterval,
                  handshakeTimeout: session.handshakeTimeout, maxStreams: maxStreams)
    }
}

public enum QUICTuning {
    /// Bidirectional streams a peer may have open at once: the control stream and 15 requests.
    public static let maxStreams: UInt64 = 16
    /// Connections still in the handshake beyond which new clients must first prove their
    /// address with a Retry token.
    public static let retryThreshold = 16
    /// Connections still in the handshake at once, in all.
    public static let maxPending = 256
    static let receiveAllocator = FixedSizeRecvByteBufferAllocator(capacity: 2048)
    static let offloadReceiveAllocator = FixedSizeRecvByteBufferAllocator(capacity: 65536)
    /// Socket buffers (the kernel caps them at net.core.rmem_max / wmem_max): a burst the
    /// loop has not read yet is not dropped.
    static let socketBuffer: SocketOptionValue = 4 << 20
    /// Datagrams read per wake-up.
    static let messagesPerRead: UInt = 64
}

/// Forwards a datagram socket's input to closures on its loop: each packet (a read with
/// receive offload holds several of one size back to back), then the end of a wake-up's
/// reads, so the connections answer everything they got with one flush.
final class DatagramInbound: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let onDatagram: (UnsafeRawBufferPointer, SocketAddress, QUICSocketAddress) -> Void
    let onReadComplete: () -> Void
    let onError: ((Error) -> Void)?
    /// The last source seen and its sockaddr form (loop only): a busy connection sends
    /// from one address, so it is converted once rather than per packet.
    private var lastSource: (nio: SocketAddress, quic: QUICSocketAddress)?

    init(onError: ((Error) -> Void)? = nil, onReadComplete: @escaping () -> Void,
         _ onDatagram: @escaping (UnsafeRawBufferPointer, SocketAddress, QUICSocketAddress) -> Void) {
        self.onDatagram = onDatagram
        self.onReadComplete = onReadComplete
        self.onError = onError
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let from = envelope.remoteAddress
        let source: QUICSocketAddress
        if let last = lastSource, last.nio == from {
            source = last.quic
        } else {
            guard let converted = QUICSocketAddress(from) else { return }
            source = converted
            lastSource = (from, converted)
        }
        let segment = envelope.metadata?.segmentSize ?? 0
        envelope.data.withUnsafeReadableBytes { all in
            guard segment > 0, segment < all.count else {
                onDatagram(all, from, source)
                return
            }
            var offset = 0
            while offset < all.count {
                let end = min(all.count, offset + segment)
                onDatagram(UnsafeRawBufferPointer(rebasing: all[offset..<end]), from, source)
                offset = end
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        onReadComplete()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // On a connected socket, ICMP port unreachable surfaces here as ECONNREFUSED.
        onError?(error)
    }
}

/// Datagram socket settings shared by dialled and listening sockets.
enum DatagramSetup {
    /// Whether packets are handed to the kernel back to back for it to cut (GSO).
    static let segmentationOffload = System.supportsUDPSegmentationOffload
    static let receiveOffload = System.supportsUDPReceiveOffload

    /// Whether packets to `address` may go back to back in one send. The kernel refuses
    /// such a send when a segment does not fit the route's MTU (a tunnel, say), and NIO
    /// then closes the whole socket; so the route's MTU is asked once per connection, on
    /// a throwaway socket, and a route too narrow for a full packet gets one send per packet.
    static func segmentationFits(to address: SocketAddress) -> Bool {
        guard segmentationOffload else { return false }
        let v6 = address.protocol == .inet6
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard address.withSockAddr({ connect(fd, $0, socklen_t($1)) }) == 0 else { return false }
        var mtu: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        // IP_MTU (14) and IPV6_MTU (24): the MTU of the connected socket's route.
        let asked = v6 ? getsockopt(fd, Int32(IPPROTO_IPV6), 24, &mtu, &length) : getsockopt(fd, Int32(IPPROTO_IP), 14, &mtu, &length)
        guard asked == 0 else { return false }
        return Int(mtu) - (v6 ? 48 : 28) >= QUICEngine.maxUDPPayload
    }

    static func configure(_ bootstrap: DatagramBootstrap) -> DatagramBootstrap {
        var b = bootstrap
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.socketOption(.so_rcvbuf), value: QUICTuning.socketBuffer)
            .channelOption(.socketOption(.so_sndbuf), value: QUICTuning.socketBuffer)
            .channelOption(.maxMessagesPerRead, value: QUICTuning.messagesPerRead)
        if receiveOffload {
            // The kernel hands over runs of packets of one flow as one read (with their
            // segment size), so a read takes a buffer as large as a UDP payload can be.
            b = b.channelOption(.recvAllocator, value: QUICTuning.offloadReceiveAllocator)
                .channelOption(.datagramReceiveOffload, value: true)
                .channelOption(.datagramReceiveSegmentSize, value: true)
        } else {
            b = b.channelOption(.recvAllocator, value: QUICTuning.receiveAllocator)
        }
        return b
    }

    /// The envelope for a datagram (several packets, with segmentation offload).
    static func envelope(_ d: QUICDatagram, to: SocketAddress, allocator: ByteBufferAllocator) -> AddressedEnvelope<ByteBuffer> {
        let metadata = d.segmentSize.map {
            AddressedEnvelope<ByteBuffer>.Metadata(ecnState: .transportNotCapable, packetInfo: nil, segmentSize: $0)
        }
        return AddressedEnvelope(remoteAddress: to, data: allocator.buffer(bytes: d.bytes), metadata: metadata)
    }
}

/// Outbound QUIC connections, each on a UDP socket of its own.
public enum QUICDialer {
    /// Connects to `endpoint` over QUIC and completes when Hello/HelloAck are exchanged.
    /// `created` is handed the link as soon as it exists (so a race can abandon it).
    public static func dial(_ endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup,
                            connectTimeout: Double, source: String? = nil,
                            created: (@Sendable (QUICLink) -> Void)? = nil) -> EventLoopFuture<QUICLink> {
        let loop = group.next()
        var config = config
        if let peer = endpoint.peer { config.expectedPeer = peer }
        let session = config
        let remoteNIO: SocketAddress
        do {
            remoteNIO = try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port)
        } catch {
            return loop.makeFailedFuture(error)
        }
        guard let remote = QUICSocketAddress(remoteNIO) else {
            return loop.makeFailedFuture(TransportError.closed(.connectionLost("unsupported address \(remoteNIO)")))
        }
        let linkBox = NIOLockedValueBox<QUICLink?>(nil)
        let bootstrap = DatagramSetup.configure(DatagramBootstrap(group: loop))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The link, once made (loop only: looked up once, not per packet).
                    var current: QUICLink?
                    var fed = false
                    try channel.pipeline.syncOperations.addHandler(DatagramInbound(onError: { error in
                        if let io = error as? IOError, io.errnoCode == ECONNREFUSED {
                            linkBox.withLockedValue { $0 }?.refused()
                        }
                    }, onReadComplete: {
                        if fed, let current { current.pumpIngested() }
                        fed = false
                    }) { bytes, _, from in
                        if current == nil { current = linkBox.withLockedValue { $0 } }
                        guard let current else { return }
                        current.ingest(bytes, from: from)
                        fed = true
                    })
                }
            }
        // A connected socket (so ICMP "port unreachable" fails the dial at once), or one
        // bound to `source` (tests appear as other hosts that way).
        let opened = source.map { bootstrap.bind(host: $0, port: 0) } ?? bootstrap.connect(to: remoteNIO)
        return opened.flatMap { channel -> EventLoopFuture<QUICLink> in
            guard let localNIO = channel.localAddress, let local = QUICSocketAddress(localNIO) else {
                channel.close(promise: nil)
                return loop.makeFailedFuture(TransportError.notEstablished)
            }
            let engine: QUICEngine
            do {
                engine = try QUICEngine.client(config: QUICConfig(session: session), local: local, remote: remote, now: .now())
            } catch {
                channel.close(promise: nil)
                return loop.makeFailedFuture(error)
            }
            let link = QUICLink(engine: engine, config: session, inbound: false, loop: loop,
                                coalesce: DatagramSetup.segmentationFits(to: remoteNIO), output: { d in
                let to = d.to == remote ? remoteNIO : (d.to.nio ?? remoteNIO)
                channel.write(DatagramSetup.envelope(d, to: to, allocator: channel.allocator), promise: nil)
            }, flush: { channel.flush() })
            link.onFinished = {
                // Keep the socket a moment so the CONNECTION_CLOSE leaves, then release it.
                loop.scheduleTask(in: .milliseconds(50)) { channel.close(promise: nil) }
            }
            linkBox.withLockedValue { $0 = link }
            created?(link)
            link.start()
            let timeout = loop.scheduleTask(in: .nanoseconds(Int64(max(0.001, connectTimeout + session.handshakeTimeout) * 1e9))) {
                link.abort()
            }
            return link.establishedFuture.map { _ in
                timeout.cancel()
                return link
            }.flatMapErrorThrowing { error in
                timeout.cancel()
                throw error
            }
        }
    }
}

/// Accepts QUIC connections on one UDP socket and routes datagrams to them by
/// destination connection ID.
public final class QUICListener: @unchecked Sendable {
    let group: EventLoopGroup
    let config: SessionConfig
    let options: Listener.Options
    let hooks: Listener.Hooks
    let onConnection: @Sendable (QUICLink) -> Void
    private let channelBox = NIOLockedValueBox<Channel?>(nil)
    private let linksBox = NIOLockedValueBox([ObjectIdentifier: QUICLink]())
    /// Loop-only: routing table and handshakes in progress.
    private var routes: [[UInt8]: QUICLink] = [:]
    private var pending = 0
    /// Handshakes in progress from validated addresses (Retry token echoed), per address
    /// group: only these count against the group's cap, since UDP sources can be spoofed.
    private var validatedPending: [AddressGroup: Int] = [:]
    private let tokenSecret = Random.bytes(32)
    private let resetSecret = Random.bytes(32)
    private var local: QUICSocketAddress?

    public init(group: EventLoopGroup, config: SessionConfig, options: Listener.Options, hooks: Listener.Hooks = Listener.Hooks(),
                onConnection: @escaping @Sendable (QUICLink) -> Void) {
        self.group = group
        self.config = config
        self.options = options
        self.hooks = hooks
        self.onConnection = onConnection
    }

    public var connectionCount: Int { linksBox.withLockedValue { $0.count } }
    public var activeConnections: [QUICLink] { linksBox.withLockedValue { Array($0.values) } }

    /// Binds the UDP socket (port 0 picks one) and returns the bound address.
    public func bind(host: String, port: Int) throws -> SocketAddress {
        let bootstrap = DatagramSetup.configure(DatagramBootstrap(group: group.next()))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramInbound(onReadComplete: { [weak self] in
                        self?.readComplete()
                    }) { [weak self] bytes, from, source in
                        self?.datagram(bytes, from: from, source: source, channel: channel)
                    })
                }
            }
        let channel = try bootstrap.bind(host: host, port: port).wait()
        channelBox.withLockedValue { $0 = channel }
        guard let address = channel.localAddress else { throw TransportError.notEstablished }
        local = QUICSocketAddress(address)
        return address
    }

    /// Links fed packets during this wake-up's reads, to answer once at its end (loop only).
    private var fed: [QUICLink] = []

    private func readComplete() {
        let links = fed
        fed = []
        for link in links { link.pumpIngested() }
    }

    private func datagram(_ raw: UnsafeRawBufferPointer, from: SocketAddress, source: QUICSocketAddress, channel: Channel) {
        if let dcid = QUICEngine.destinationID(of: raw), let link = routes[dcid] {
            link.ingest(raw, from: source)
            if fed.last !== link, !fed.contains(where: { $0 === link }) { fed.append(link) }
            return
        }
        let bytes = Array(raw)
        guard QUICEngine.isLongHeader(bytes) else {
            // A packet of a connection this node forgot: a stateless reset ends it for the peer.
            if let reset = QUICEngine.statelessReset(for: bytes, secret: resetSecret) {
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: from, data: channel.allocator.buffer(bytes: reset)), promise: nil)
            }
            return
        }
        guard bytes.count >= 1200 else { return }  // a client's Initial is padded to 1200 bytes
        guard let ip = IPAddress(source.ip), !hooks.isBanned(ip) else {
            hooks.refused(source.description, "banned address")
            return
        }
        guard pending < QUICTuning.maxPending else {
            hooks.refused(source.description, "too many QUIC handshakes in progress")
            return
        }
        guard let local else { return }
        let group = ip.group
        // A group at its cap of validated handshakes: its newcomers must prove their address
        // (Retry), and a proven one is refused. Unproven packets never count against it.
        let groupFull = validatedPending[group, default: 0] >= options.admission.maxPendingPerGroup
        var session = config
        let count = linksBox.withLockedValue { $0.count }
        var quicConfig = QUICConfig(session: config)
        quicConfig.statelessResetSecret = resetSecret
        switch QUICEngine.accept(bytes, config: quicConfig, local: local, remote: source, now: .now(),
                                 requireRetry: pending >= QUICTuning.retryThreshold || groupFull, tokenSecret: tokenSecret) {
        case .drop:
            return
        case let .retry(packet):
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: from, data: channel.allocator.buffer(bytes: packet)), promise: nil)
            return
        case let .accepted(engine, validated):
            if validated && groupFull {
                hooks.refused(source.description, "too many handshakes in progress from its address group")
                return
            }
            if hooks.admit == nil, count >= options.maxConnections {
                session.refusal = Goodbye(code: .tooManyConnections, reason: "this node accepts at most \(options.maxConnections) connections")
            }
            let link = QUICLink(engine: engine, config: session, inbound: true, loop: channel.eventLoop,
                                coalesce: DatagramSetup.segmentationFits(to: from), output: { d in
                let to = d.to == source ? from : (d.to.nio ?? from)
                channel.write(DatagramSetup.envelope(d, to: to, allocator: channel.allocator), promise: nil)
            }, flush: { channel.flush() })
            if let admit = hooks.admit {
                link.setAdmit { [weak link] id, hello in
                    guard let link else { return Goodbye(code: .shutdown, reason: "connection closed") }
                    return admit(link, id, hello)
                }
            }
            link.onConnectionID = { [weak self, weak link] id, added in
                guard let self, let link else { return }
                if added {
                    self.routes[id] = link
                } else if self.routes[id] === link {
                    self.routes[id] = nil
                }
            }
            pending += 1
            if validated { validatedPending[group, default: 0] += 1 }
            link.establishedFuture.whenComplete { [weak self] _ in
                guard let self else { return }
                self.pending -= 1
                if validated {
                    self.validatedPending[group, default: 1] -= 1
                    if self.validatedPending[group] == 0 { self.validatedPending[group] = nil }
                }
            }
            link.onMigrated = { [weak self, weak link] to in
                guard let self, let link else { return }
                self.recheck(link, at: to)
            }
            link.onFinished = { [weak self, weak link] in
                guard let self, let link else { return }
                _ = self.linksBox.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(link)) }
                // Keep routing for a moment so retransmitted packets meet the close, not a reset.
                channel.eventLoop.scheduleTask(in: .seconds(2)) {
                    for id in link.connectionIDs where self.routes[id] === link { self.routes[id] = nil }
                    for (id, l) in self.routes where l === link { self.routes[id] = nil }
                }
            }
            linksBox.withLockedValue { $0[ObjectIdentifier(link)] = link }
            onConnection(link)
            link.receive(bytes, from: source)
        }
    }

    /// A connection moved to `address` (validated by ngtcp2): the checks a new connection
    /// from there would meet, after validation (the ban list, the cap of validated handshakes
    /// in progress of its address group); one it would fail closes the connection with the
    /// reason as Goodbye would give it (guts-protocol(7), QUIC, Connection migration).
    func recheck(_ link: QUICLink, at address: QUICSocketAddress) {
        guard let ip = IPAddress(address.ip) else {
            link.close(.protocolViolation, "migrated to an address that is not an IP address")
            return
        }
        if hooks.isBanned(ip) {
            hooks.refused(address.description, "banned address (connection migrated there)")
            link.close(.identityRejected, "this address is banned on this node")
        } else if validatedPending[ip.group, default: 0] >= options.admission.maxPendingPerGroup {
            hooks.refused(address.description, "too many handshakes in progress from its address group (connection migrated there)")
            link.close(.tooManyConnections, "too many connections in progress from this address group")
        }
    }

    /// For tests: counts `count` validated handshakes in progress for `group` (on the
    /// listener's loop), as if clients there had echoed Retry tokens and stalled.
    func holdValidatedHandshakes(_ group: AddressGroup, _ count: Int) throws {
        guard let channel = channelBox.withLockedValue({ $0 }) else { return }
        try channel.eventLoop.submit { self.validatedPending[group] = count }.wait()
    }

    /// Stops accepting, closes every connection with Goodbye(shutdown), waits (bounded).
    public func shutdown(reason: String = "node shutting down", timeout: Double = 3) {
        let all = activeConnections
        for c in all { c.close(.shutdown, reason) }
        let futures = all.map { $0.closeFuture.map { _ in () } }
        if !futures.isEmpty {
            let loop = group.next()
            let done = EventLoopFuture.andAllComplete(futures, on: loop)
            let deadline = loop.makePromise(of: Void.self)
            let task = loop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) { deadline.succeed(()) }
            done.whenComplete { _ in deadline.succeed(()) }
            try? deadline.futureResult.wait()
            task.cancel()
        }
        if let channel = channelBox.withLockedValue({ $0 }) {
            // Let the CONNECTION_CLOSE packets leave first.
            try? channel.eventLoop.scheduleTask(in: .milliseconds(50)) {}.futureResult.wait()
            try? channel.close().wait()
        }
    }
}
