import CNgtcp2
import Glibc
import GutsCrypto
import GutsIdentity
import GutsSupport
import Synchronization

/// Settings of one QUIC connection.
public struct QUICConfig: Sendable {
    public var identity: Ed25519KeyPair
    public var certificate: QUICCertificate
    public var networkID: String
    /// Client only: refuse any other remote identity.
    public var expectedPeer: PeerID?
    /// Seconds without packets from the peer after which the connection ends (both sides
    /// announce it; the smaller wins).
    public var idleTimeout: Double
    /// Seconds of quiet after which a PING frame keeps the path alive (0: none).
    public var keepaliveInterval: Double
    /// Seconds the handshake may take.
    public var handshakeTimeout: Double
    /// Bidirectional streams the peer may have open at once (the control stream included).
    public var maxStreams: UInt64
    /// Flow-control windows: bytes in flight per stream and per connection.
    public var streamWindow: UInt64
    public var connectionWindow: UInt64
    /// Unix time used to check certificate validity.
    public var unixNow: @Sendable () -> Int64
    /// Secret for stateless reset tokens (the same for every connection of a listener).
    public var statelessResetSecret: [UInt8]
    /// The one ALPN protocol offered and accepted; another value only to test refusals.
    public var alpn: String = QUICCertificate.alpn

    public init(identity: Ed25519KeyPair, certificate: QUICCertificate, networkID: String, expectedPeer: PeerID? = nil,
                idleTimeout: Double = 90, keepaliveInterval: Double = 30, handshakeTimeout: Double = 10,
                maxStreams: UInt64 = 16, streamWindow: UInt64 = 4 << 20, connectionWindow: UInt64 = 16 << 20,
                unixNow: @escaping @Sendable () -> Int64 = { Int64(unixTime()) },
                statelessResetSecret: [UInt8] = Random.bytes(32)) {
        self.identity = identity
        self.certificate = certificate
        self.networkID = networkID
        self.expectedPeer = expectedPeer
        self.idleTimeout = idleTimeout
        self.keepaliveInterval = keepaliveInterval
        self.handshakeTimeout = handshakeTimeout
        self.maxStreams = maxStreams
        self.streamWindow = streamWindow
        self.connectionWindow = connectionWindow
        self.unixNow = unixNow
        self.statelessResetSecret = statelessResetSecret
    }
}

/// Why a QUIC connection ended.
public enum QUICClose: Error, Equatable, Sendable, CustomStringConvertible {
    /// TLS or certificate verification failed (no identity established).
    case handshakeFailed(String)
    /// The peer proved another identity than the one asked for.
    case identityMismatch(expected: PeerID, actual: PeerID)
    case selfConnection
    /// The peer closed with an application error code (a guts reason code) and reason.
    case remoteClose(code: UInt64, reason: String)
    /// This side closed.
    case localClose(code: UInt64, reason: String)
    /// A transport error (from either side).
    case transportError(String)
    case idleTimeout
    case handshakeTimeout

    public var description: String {
        switch self {
        case let .handshakeFailed(why): return "handshake failed: \(why)"
        case let .identityMismatch(expected, actual): return "remote identity is \(actual), expected \(expected)"
        case .selfConnection: return "connected to itself (same peer ID)"
        case let .remoteClose(code, reason): return "peer closed the connection (\(code)): \(reason)"
        case let .localClose(code, reason): return "closed (\(code)): \(reason)"
        case let .transportError(why): return "QUIC error: \(why)"
        case .idleTimeout: return "timeout: nothing received within the idle timeout"
        case .handshakeTimeout: return "timeout: QUIC handshake not completed"
        }
    }
}

/// What the engine reports to its shell.
public enum QUICEvent: Equatable, Sendable {
    /// TLS done, both certificates verified: the peer's identity.
    case established(PeerID)
    /// The peer opened a stream.
    case streamOpened(Int64)
    /// Bytes of a stream, in order; `fin` when the peer ended its side.
    case streamData(Int64, [UInt8], fin: Bool)
    /// A stream is gone (both directions ended, or reset).
    case streamClosed(Int64, reset: Bool)
    /// A stream that was blocked by flow control may take more bytes.
    case writable(Int64)
    /// The peer acknowledged a stream's bytes up to this offset (they left the send buffer).
    case acknowledged(Int64, UInt64)
    /// A connection ID now names this connection (server: for the datagram demultiplexer).
    case newConnectionID([UInt8])
    case retiredConnectionID([UInt8])
    /// The peer moved to this address (connection migration or NAT rebinding) and the new
    /// path passed validation (PATH_CHALLENGE answered from there): it is `remote` now.
    case migrated(QUICSocketAddress)
    /// The connection is over; send nothing more except what `flush` still returns.
    case closed(QUICClose)
}

/// A datagram to send, or with `segmentSize` several packets of that size back to back
/// (the last may be shorter), for one send with UDP segmentation offload (GSO).
public struct QUICDatagram: Equatable, Sendable {
    public var bytes: [UInt8]
    public var to: QUICSocketAddress
    /// Set when `bytes` holds more than one packet: each is this long but the last.
    public var segmentSize: Int?

    public init(bytes: [UInt8], to: QUICSocketAddress, segmentSize: Int? = nil) {
        self.bytes = bytes
        self.to = to
        self.segmentSize = segmentSize
    }
}

/// One QUIC connection around ngtcp2 and GnuTLS, sans-I/O: datagrams and time in,
/// datagrams, stream events and the next deadline out. Not thread-safe: the shell calls
/// it from one event loop. No C callback or pointer escapes this type.
public final class QUICEngine {
    public enum Role: Sendable { case client, server }

    public let role: Role
    let config: QUICConfig
    private(set) var conn: OpaquePointer?
    private var session: gnutls_session_t?
    /// The node's certificate and key for GnuTLS, shared by its connections.
    private var tls: TLSCredentials?
    private let connRef: UnsafeMutablePointer<ngtcp2_crypto_conn_ref>
    private let pathStorage: UnsafeMutablePointer<ngtcp2_path_storage>
    private let packetBuffer: UnsafeMutableRawBufferPointer
    /// Packets of one flush laid back to back (for segmentation offload), made on first use.
    private var batchBuffer: UnsafeMutableRawBufferPointer?
    /// Vectors over a stream's unsent bytes, handed to ngtcp2 (reused).
    private let vecs: UnsafeMutableBufferPointer<ngtcp2_vec>
    public private(set) var local: QUICSocketAddress
    public private(set) var remote: QUICSocketAddress

    /// Events produced by callbacks during the current call.
    private var events: [QUICEvent] = []
    public private(set) var peerID: PeerID?
    private var failure: QUICClose?
    public private(set) var isEstablished = false
    public private(set) var closeReason: QUICClose?
    private var closingPacket: [UInt8]?
    private let startedAt: Instant
    private var sendStreams: [Int64: SendStream] = [:]
    /// Streams with bytes or a FIN to send, in round-robin order.
    private var sendOrder: [Int64] = []
    public private(set) var bytesSent: UInt64 = 0
    public private(set) var bytesReceived: UInt64 = 0

    static let maxPacket = 1500
    static let maxVecs = 16
    /// The largest UDP payload ngtcp2 sends (its default maximum, which this engine keeps).
    static let maxUDPPayload = 1452
    /// A UDP payload with segmentation offload stays under 64 KiB, and the kernel takes at
    /// most 64 segments per send.
    static let maxBatchBytes = 65_000
    static let maxSegments = 64
    static let cidLength = 18

    private init(role: Role, config: QUICConfig, local: QUICSocketAddress, remote: QUICSocketAddress, now: Instant) {
        self.role = role
        self.config = config
        self.local = local
        self.remote = remote
        self.startedAt = now
        connRef = .allocate(capacity: 1)
        pathStorage = .allocate(capacity: 1)
        pathStorage.initialize(to: ngtcp2_path_storage())
        ngtcp2_path_storage_zero(pathStorage)
        packetBuffer = .allocate(byteCount: Self.maxPacket, alignment: 8)
        vecs = .allocate(capacity: Self.maxVecs)
        vecs.initialize(repeating: ngtcp2_vec())
        connRef.initialize(to: ngtcp2_crypto_conn_ref(get_conn: { ref in
            guard let ref, let user = ref.pointee.user_data else { return nil }
            return Unmanaged<QUICEngine>.fromOpaque(user).takeUnretainedValue().conn
        }, user_data: nil))
        connRef.pointee.user_data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        if let conn { ngtcp2_conn_del(conn) }
        if let session { gnutls_deinit(session) }
        for s in sendStreams.values { s.freeAll() }
        connRef.deallocate()
        pathStorage.deallocate()
        packetBuffer.deallocate()
        batchBuffer?.deallocate()
        vecs.deallocate()
    }

    /// A client connection to `remote`; `flush` yields its first datagram.
    public static func client(config: QUICConfig, local: QUICSocketAddress, remote: QUICSocketAddress, now: Instant) throws -> QUICEngine {
        let engine = QUICEngine(role: .client, config: config, local: local, remote: remote, now: now)
        var dcid = ngtcp2_cid()
        var scid = ngtcp2_cid()
        fillCID(&dcid)
        fillCID(&scid)
        var settings = engine.makeSettings(now: now)
        var params = engine.makeParams()
        var callbacks = engine.makeCallbacks()
        var c: OpaquePointer?
        let rv = engine.withPath(local: local, remote: remote) { path in
            guts_ngtcp2_conn_client_new(&c, &dcid, &scid, path, NGTCP2_PROTO_VER_V1, &callbacks, &settings, &params,
                                        Unmanaged.passUnretained(engine).toOpaque())
        }
        guard rv == 0, let c else { throw QUICClose.transportError("cannot create connection: \(errorText(rv))") }
        engine.conn = c
        try engine.setUpTLS()
        return engine
    }

    /// What to do with a datagram that names no known connection.
    public enum Admission {
        /// A new connection (its first connection IDs are reported as events by `flush`);
        /// `validated` when the client echoed a Retry token, which proves its address.
        case accepted(QUICEngine, validated: Bool)
        /// Send this Retry packet (address validation before any state).
        case retry([UInt8])
        /// Ignore it.
        case drop
    }

    /// Handles a client's first Initial packet. `requireRetry` makes clients prove their
    /// address with a Retry token first (under load); a valid token is accepted always.
    public static func accept(_ datagram: [UInt8], config: QUICConfig, local: QUICSocketAddress, remote: QUICSocketAddress,
                              now: Instant, requireRetry: Bool, tokenSecret: [UInt8]) -> Admission {
        var hd = ngtcp2_pkt_hd()
        let rv = datagram.withUnsafeBufferPointer { ngtcp2_accept(&hd, $0.baseAddress, $0.count) }
        guard rv == 0 else { return .drop }
        var originalDCID = hd.dcid
        var retrySCID: ngtcp2_cid?
        var token: [UInt8] = []
        if hd.token.len > 0, let base = hd.token.base {
            token = Array(UnsafeBufferPointer(start: base, count: hd.token.len))
            var odcid = ngtcp2_cid()
            let ok = token.withUnsafeBufferPointer { t in
                tokenSecret.withUnsafeBufferPointer { s in
                    remote.bytes.withUnsafeBytes { a in
                        ngtcp2_crypto_verify_retry_token(&odcid, t.baseAddress, t.count, s.baseAddress, s.count, hd.version,
                                                         a.baseAddress?.assumingMemoryBound(to: ngtcp2_sockaddr.self),
                                                         ngtcp2_socklen(a.count), &hd.dcid, 10 * 1_000_000_000, now.nanoseconds)
                    }
                }
            }
            guard ok == 0 else { return .drop }
            originalDCID = odcid
            retrySCID = hd.dcid
        } else if requireRetry {
            var newSCID = ngtcp2_cid()
            fillCID(&newSCID)
            var tokenBuffer = [UInt8](repeating: 0, count: 256)
            let n = tokenBuffer.withUnsafeMutableBufferPointer { t in
                tokenSecret.withUnsafeBufferPointer { s in
                    remote.bytes.withUnsafeBytes { a in
                        ngtcp2_crypto_generate_retry_token(t.baseAddress, s.baseAddress, s.count, hd.version,
                                                           a.baseAddress?.assumingMemoryBound(to: ngtcp2_sockaddr.self),
                                                           ngtcp2_socklen(a.count), &newSCID, &hd.dcid, now.nanoseconds)
                    }
                }
            }
            guard n > 0 else { return .drop }
            var packet = [UInt8](repeating: 0, count: 1500)
            let m = packet.withUnsafeMutableBufferPointer { p in
                tokenBuffer.withUnsafeBufferPointer { t in
                    ngtcp2_crypto_write_retry(p.baseAddress, p.count, hd.version, &hd.scid, &newSCID, &hd.dcid, t.baseAddress, Int(n))
                }
            }
            guard m > 0 else { return .drop }
            return .retry(Array(packet.prefix(Int(m))))
        }

        let engine = QUICEngine(role: .server, config: config, local: local, remote: remote, now: now)
        var scid = ngtcp2_cid()
        fillCID(&scid)
        var settings = engine.makeSettings(now: now)
        var params = engine.makeParams()
        params.original_dcid = originalDCID
        if let retrySCID {
            params.retry_scid = retrySCID
            params.retry_scid_present = 1
        }
        let resetToken = engine.resetToken(for: scid)
        withUnsafeMutableBytes(of: &params.stateless_reset_token) { raw in
            for (i, b) in resetToken.prefix(raw.count).enumerated() { raw[i] = b }
        }
        params.stateless_reset_token_present = 1
        var callbacks = engine.makeCallbacks()
        var c: OpaquePointer?
        let created: Int32 = token.withUnsafeBufferPointer { t in
            if !token.isEmpty {
                settings.token = ngtcp2_vec(base: UnsafeMutablePointer(mutating: t.baseAddress), len: t.count)
            }
            return engine.withPath(local: local, remote: remote) { path in
                guts_ngtcp2_conn_server_new(&c, &hd.scid, &scid, path, hd.version, &callbacks, &settings, &params,
                                            Unmanaged.passUnretained(engine).toOpaque())
            }
        }
        guard created == 0, let c else { return .drop }
        engine.conn = c
        do {
            try engine.setUpTLS()
        } catch {
            return .drop
        }
        engine.events.append(.newConnectionID(cidBytes(scid)))
        // The client's original destination ID also reaches this connection until it learns ours.
        engine.events.append(.newConnectionID(cidBytes(hd.dcid)))
        return .accepted(engine, validated: retrySCID != nil)
    }

    /// The destination connection ID of a datagram (for demultiplexing), if it parses.
    public static func destinationID(of datagram: [UInt8]) -> [UInt8]? {
        datagram.withUnsafeBytes { destinationID(of: $0) }
    }

    public static func destinationID(of datagram: UnsafeRawBufferPointer) -> [UInt8]? {
        guard let base = datagram.baseAddress else { return nil }
        var vc = ngtcp2_version_cid()
        let rv = ngtcp2_pkt_decode_version_cid(&vc, base.assumingMemoryBound(to: UInt8.self), datagram.count, cidLength)
        guard rv == 0 || rv == NGTCP2_ERR_VERSION_NEGOTIATION, let d = vc.dcid else { return nil }
        return Array(UnsafeBufferPointer(start: d, count: vc.dcidlen))
    }

    /// Whether a datagram is a long-header packet (a new connection may start with it).
    public static func isLongHeader(_ datagram: [UInt8]) -> Bool { (datagram.first ?? 0) & 0x80 != 0 }

    /// A stateless reset for a short-header packet naming a connection this node does not
    /// know (its peer learns at once that the connection is gone), or nil.
    public static func statelessReset(for datagram: [UInt8], secret: [UInt8]) -> [UInt8]? {
        guard !isLongHeader(datagram), datagram.count > 41, let dcid = destinationID(of: datagram), dcid.count == cidLength else { return nil }
        var cid = ngtcp2_cid()
        cid.datalen = dcid.count
        withUnsafeMutableBytes(of: &cid.data) { raw in for (i, b) in dcid.enumerated() { raw[i] = b } }
        var token = [UInt8](repeating: 0, count: Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        let ok = token.withUnsafeMutableBufferPointer { t in
            secret.withUnsafeBufferPointer { s in ngtcp2_crypto_generate_stateless_reset_token(t.baseAddress, s.baseAddress, s.count, &cid) }
        }
        guard ok == 0 else { return nil }
        // Shorter than the packet that caused it, so resets cannot loop.
        let length = min(datagram.count - 1, 43)
        let random = Random.bytes(length)
        var out = [UInt8](repeating: 0, count: length)
        let n = out.withUnsafeMutableBufferPointer { o in
            token.withUnsafeBufferPointer { t in
                random.withUnsafeBufferPointer { r in
                    ngtcp2_pkt_write_stateless_reset(o.baseAddress, o.count, t.baseAddress, r.baseAddress, length - Int(NGTCP2_STATELESS_RESET_TOKENLEN) - 1)
                }
            }
        }
        guard n > 0 else { return nil }
        return Array(out.prefix(Int(n)))
    }

    // MARK: - Input

    /// Feeds one received datagram.
    public func receive(_ datagram: [UInt8], from: QUICSocketAddress, to: QUICSocketAddress? = nil, now: Instant) -> [QUICEvent] {
        datagram.withUnsafeBytes { ingest($0, from: from, to: to, now: now) }
        return takeEvents()
    }

    /// Feeds one received datagram without taking the events yet (the shell feeds several
    /// then takes them all with `takePendingEvents`).
    public func ingest(_ datagram: UnsafeRawBufferPointer, from: QUICSocketAddress, to: QUICSocketAddress? = nil, now: Instant) {
        guard let conn, closeReason == nil, let base = datagram.baseAddress else { return }
        bytesReceived += UInt64(datagram.count)
        let rv = withPath(local: to ?? local, remote: from) { path in
            guts_ngtcp2_conn_read_pkt(conn, path, base.assumingMemoryBound(to: UInt8.self), datagram.count, now.nanoseconds)
        }
        if rv != 0 { handleError(rv, now: now) }
    }

    /// Events raised while writing (new connection IDs are issued then, for one), to be
    /// handled like those `receive` returns.
    public func takePendingEvents() -> [QUICEvent] { takeEvents() }

    /// The moment `handleTimeout` must run next.
    public var nextDeadline: Instant? {
        guard let conn, closeReason == nil else { return nil }
        let expiry = ngtcp2_conn_get_expiry(conn)
        let handshakeDeadline = isEstablished ? UInt64.max : startedAt.adding(seconds: config.handshakeTimeout).nanoseconds
        let t = min(expiry, handshakeDeadline)
        return t == UInt64.max ? nil : Instant(nanoseconds: t)
    }

    /// Runs ngtcp2's timers (loss detection, ACK delay, idle timeout, keepalive).
    public func handleTimeout(now: Instant) -> [QUICEvent] {
        guard let conn, closeReason == nil else { return takeEvents() }
        if !isEstablished, now.seconds(since: startedAt) >= config.handshakeTimeout {
            finish(.handshakeTimeout)
            return takeEvents()
        }
        let rv = ngtcp2_conn_handle_expiry(conn, now.nanoseconds)
        if rv != 0 { handleError(rv, now: now) }
        return takeEvents()
    }

    // MARK: - Streams

    /// Opens a bidirectional stream; nil when the peer's stream limit is reached.
    public func openStream() -> Int64? {
        guard let conn, closeReason == nil else { return nil }
        var id: Int64 = -1
        guard ngtcp2_conn_open_bidi_stream(conn, &id, nil) == 0 else { return nil }
        sendStreams[id] = SendStream()
        return id
    }

    /// Bidirectional streams this side may still open.
    public var streamsLeft: UInt64 {
        guard let conn else { return 0 }
        return ngtcp2_conn_get_streams_bidi_left(conn)
    }

    /// Queues bytes (and optionally the end) on a stream. Returns the stream offset just
    /// past them (reported by `.acknowledged` once the peer has them), nil when the stream
    /// is already finished or the connection closed.
    @discardableResult
    public func write(_ bytes: [UInt8], stream: Int64, fin: Bool = false) -> UInt64? {
        guard closeReason == nil else { return nil }
        let s: SendStream
        if let existing = sendStreams[stream] {
            s = existing
        } else {
            // A stream the peer opened: this side answers on it.
            s = SendStream()
            sendStreams[stream] = s
        }
        guard !s.finQueued else { return nil }
        s.append(bytes)
        if fin { s.finQueued = true }
        if !sendOrder.contains(stream) { sendOrder.append(stream) }
        return s.queuedEnd
    }

    /// Bytes queued on a stream that the peer has not acknowledged yet.
    public func unacknowledgedBytes(stream: Int64) -> Int {
        sendStreams[stream].map { Int($0.queuedEnd - $0.ackedOffset) } ?? 0
    }

    /// Bytes queued on all streams that the peer has not acknowledged yet.
    public var unacknowledgedBytes: Int {
        sendStreams.values.reduce(0) { $0 + Int($1.queuedEnd - $1.ackedOffset) }
    }

    /// Bytes queued on all streams and not yet handed to ngtcp2.
    public var unsentBytes: Int {
        sendStreams.values.reduce(0) { $0 + Int($1.queuedEnd - $1.sentOffset) }
    }

    /// Abandons a stream in both directions with an application error code.
    public func resetStream(_ stream: Int64, code: UInt64) {
        guard let conn, closeReason == nil else { return }
        _ = ngtcp2_conn_shutdown_stream(conn, stream, code)
        sendStreams[stream]?.freeAll()
        sendStreams[stream] = nil
        sendOrder.removeAll { $0 == stream }
    }

    // MARK: - Output

    /// Packets to send now (handshake, stream data, ACKs, close). Call after every input,
    /// timeout and write. With `coalesce`, packets of equal size to the same address come
    /// back to back in one `QUICDatagram` with its `segmentSize` set, for one send with
    /// segmentation offload instead of one system call and one buffer per packet.
    public func flush(now: Instant, coalesce: Bool = false) -> [QUICDatagram] {
        if let closingPacket {
            self.closingPacket = nil
            return [QUICDatagram(bytes: closingPacket, to: remote)]
        }
        guard let conn, closeReason == nil else { return [] }
        var out: [QUICDatagram] = []
        let maxUDP = min(Self.maxPacket, ngtcp2_conn_get_max_tx_udp_payload_size(conn))
        let quantum = ngtcp2_conn_get_send_quantum(conn)
        let maxPackets = max(1, min(64, quantum / max(1, maxUDP)))
        var stat = ngtcp2_conn_stat()
        guts_ngtcp2_conn_get_conn_stat(conn, &stat)
        let cap = delay.cap(minRTT: stat.min_rtt, now: now)
        var inFlight = stat.bytes_in_flight
        var capped = false
        let buffer: UnsafeMutableRawBufferPointer
        if coalesce {
            if batchBuffer == nil { batchBuffer = .allocate(byteCount: Self.maxBatchBytes + Self.maxPacket, alignment: 8) }
            buffer = batchBuffer ?? packetBuffer
        } else {
            buffer = packetBuffer
        }
        guard let base = buffer.baseAddress else { return [] }
        // The batch being laid out in `buffer`: its bytes, packets, segment size and address.
        var used = 0
        var count = 0
        var segment = 0
        var batchTo = remote
        func closeBatch() {
            guard count > 0 else { return }
            out.append(QUICDatagram(bytes: Array(UnsafeRawBufferPointer(start: base, count: used)), to: batchTo,
                                    segmentSize: count > 1 ? segment : nil))
            used = 0
            count = 0
        }
        var packets = 0
        var cursor = 0
        while packets < maxPackets {
            var stream: SendStream?
            var streamID: Int64 = -1
            // The priority stream (control messages) first, then the others round robin.
            if let p = priorityStream, let s = sendStreams[p], !s.blocked, s.hasPending {
                stream = s
                streamID = p
            } else if inFlight >= cap {
                // Enough in flight to keep the path busy: more would only wait in a queue
                // on the way (ACKs and control messages still go).
                capped = capped || !sendOrder.isEmpty
            } else {
                var tries = 0
                while tries < sendOrder.count {
                    let i = (cursor + tries) % sendOrder.count
                    let id = sendOrder[i]
                    if let s = sendStreams[id], !s.blocked, s.hasPending {
                        stream = s
                        streamID = id
                        cursor = i
                        break
                    }
                    tries += 1
                }
            }
            var vecCount = 0
            var flags = UInt32(NGTCP2_WRITE_STREAM_FLAG_MORE)
            if let stream {
                vecCount = stream.fillVecs(vecs)
                if stream.finQueued && stream.allBytesInVecs(vecCount) { flags |= UInt32(NGTCP2_WRITE_STREAM_FLAG_FIN) }
            }
            var accepted: ngtcp2_ssize = -1
            let n = guts_ngtcp2_conn_writev_stream(conn, &pathStorage.pointee.path, (base + used).assumingMemoryBound(to: UInt8.self),
                                                   maxUDP, &accepted, flags, streamID, vecCount > 0 ? UnsafePointer(vecs.baseAddress) : nil,
                                                   vecCount, now.nanoseconds)
            if n < 0 {
                switch Int32(n) {
                case NGTCP2_ERR_STREAM_DATA_BLOCKED:
                    stream?.blocked = true
                    continue
                case NGTCP2_ERR_STREAM_SHUT_WR, NGTCP2_ERR_STREAM_NOT_FOUND:
                    if streamID >= 0 {
                        sendStreams[streamID]?.freeAll()
                        sendStreams[streamID] = nil
                        sendOrder.removeAll { $0 == streamID }
                    }
                    continue
                case NGTCP2_ERR_WRITE_MORE:
                    if let stream, accepted >= 0 { advance(stream, streamID, by: Int(accepted), flags: flags) }
                    continue
                default:
                    closeBatch()
                    handleError(Int32(n), now: now)
                    if let closingPacket {
                        self.closingPacket = nil
                        out.append(QUICDatagram(bytes: closingPacket, to: remote))
                    }
                    return out
                }
            }
            if let stream, accepted >= 0 { advance(stream, streamID, by: Int(accepted), flags: flags) }
            if n == 0 { break }
            let size = Int(n)
            packets += 1
            bytesSent += UInt64(n)
            inFlight += UInt64(n)
            if stream != nil && priorityStream != streamID { cursor += 1 }
            let samePath = count > 0 && Self.sameAddress(pathStorage.pointee.path.remote, batchTo)
            if count > 0 && samePath && size <= segment {
                used += size
                count += 1
            } else {
                if count > 0 {
                    // Another size or address: the batch so far leaves, this packet starts the next.
                    let packet = base + used
                    closeBatch()
                    base.copyMemory(from: packet, byteCount: size)
                }
                batchTo = Self.address(pathStorage.pointee.path.remote) ?? remote
                segment = size
                used = size
                count = 1
            }
            // A shorter packet ends a batch (only the last segment may be short), and so
            // does a full one.
            if !coalesce || size < segment || count >= Self.maxSegments || used + maxUDP > Self.maxBatchBytes { closeBatch() }
        }
        closeBatch()
        // Stopped at the batch limit rather than by ngtcp2: the shell calls again soon, so
        // the congestion window is kept full (ngtcp2 does not grow an underused one).
        mayWriteMore = packets >= maxPackets && !capped
        ngtcp2_conn_update_pkt_tx_time(conn, now.nanoseconds)
        return out
    }

    /// A stream whose bytes go before any other's (the control stream: pings and gossip
    /// are not queued behind bulk transfers).
    public var priorityStream: Int64?

    /// Limits stream data in flight to what keeps the path busy plus a few milliseconds.
    var delay = DelayGuard()

    /// Caps the bytes in flight at the delivery rate times (minimum RTT + a small queue
    /// allowance), on top of ngtcp2's congestion window. A loss-based window grows until
    /// the bottleneck's buffer overflows, so everything else on the connection (pings,
    /// gossip) waits behind a full buffer; with this cap a bulk transfer still fills the
    /// path, but keeps only about `allowance` of queue in front of it. The rate is the
    /// highest acknowledged-bytes rate of the last five sampling windows (two minimum RTTs
    /// each), so a window limited by the cap itself still lets it grow by a quarter or
    /// more per round trip. A window of one RTT caught acknowledgements that a stall had
    /// held back and released together, as a rate spike that let a burst overflow the
    /// bottleneck's buffer (106 drops in one of five runs of `guts-bench quic`; none in
    /// six runs with two-RTT windows). The price: against a loss-based flow on the same bottleneck
    /// this connection yields, as delay-based senders do.
    struct DelayGuard {
        /// Stream bytes acknowledged so far (ngtcp2 reports each range once).
        var acked: UInt64 = 0
        private var sampleStart: Instant?
        private var sampleAcked: UInt64 = 0
        private var samples = [Double](repeating: 0, count: 5)
        private var next = 0
        /// Never below this (bytes): a new or idle connection starts like a standard one.
        static let floor: Double = 64 * 1024
        /// Queueing allowed beyond the minimum RTT: at least 2 ms, a quarter of the RTT on
        /// longer paths.
        static func allowance(minRTT: Double) -> Double { max(0.002, minRTT / 4) }

        mutating func cap(minRTT nanoseconds: UInt64, now: Instant) -> UInt64 {
            guard nanoseconds > 0, nanoseconds < UInt64.max / 2 else { return UInt64.max }
            let minRTT = Double(nanoseconds) / 1e9
            if let start = sampleStart {
                let elapsed = now.seconds(since: start)
                if elapsed >= max(2 * minRTT, 0.0005) {
                    samples[next] = Double(acked - sampleAcked) / elapsed
                    next = (next + 1) % samples.count
                    sampleStart = now
                    sampleAcked = acked
                }
            } else {
                sampleStart = now
                sampleAcked = acked
            }
            let rate = samples.max() ?? 0
            return UInt64(max(Self.floor, rate * (minRTT + Self.allowance(minRTT: minRTT))))
        }
    }

    static func sameAddress(_ a: ngtcp2_addr, _ b: QUICSocketAddress) -> Bool {
        guard let p = a.addr, Int(a.addrlen) == b.bytes.count else { return false }
        return b.bytes.withUnsafeBytes { r in r.baseAddress.map { memcmp(UnsafeRawPointer(p), $0, r.count) == 0 } ?? false }
    }

    /// Whether the last `flush` stopped at its batch limit with more it could send.
    public private(set) var mayWriteMore = false

    private func advance(_ stream: SendStream, _ id: Int64, by n: Int, flags: UInt32) {
        stream.sentOffset += UInt64(n)
        if flags & UInt32(NGTCP2_WRITE_STREAM_FLAG_FIN) != 0, stream.sentOffset == stream.queuedEnd { stream.finSent = true }
        if !stream.hasPending { sendOrder.removeAll { $0 == id } }
    }

    /// Closes the connection with an application error code (a guts reason code) and a
    /// reason; `flush` returns the CONNECTION_CLOSE packet.
    public func close(code: UInt64, reason: String, now: Instant) {
        guard let conn, closeReason == nil else { return }
        var ccerr = ngtcp2_connection_close_error()
        let bytes = Self.reasonPhrase(reason)
        let n = bytes.withUnsafeBufferPointer { r in
            ngtcp2_connection_close_error_set_application_error(&ccerr, code, r.baseAddress, r.count)
            return guts_ngtcp2_conn_write_connection_close(conn, &pathStorage.pointee.path, packetBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                           Self.maxPacket, &ccerr, now.nanoseconds)
        }
        if n > 0 { closingPacket = Array(UnsafeRawBufferPointer(start: packetBuffer.baseAddress, count: Int(n))) }
        finish(.localClose(code: code, reason: reason))
    }

    /// Longest reason phrase sent in CONNECTION_CLOSE (guts-protocol(7), QUIC, Closing):
    /// the frame stays small enough for any packet, an Initial one included.
    public static let maxReasonPhrase = 200

    /// The reason phrase of a close: the reason's UTF-8, cut back to a character boundary
    /// when it is longer than `maxReasonPhrase` bytes, so the phrase stays valid UTF-8.
    public static func reasonPhrase(_ reason: String) -> [UInt8] {
        let bytes = Array(reason.utf8)
        guard bytes.count > maxReasonPhrase else { return bytes }
        var end = maxReasonPhrase
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }
        return Array(bytes[..<end])
    }

    /// Seconds of quiet after which a PING probes the path (0: never). Only once established.
    public func setKeepalive(seconds: Double) {
        guard let conn, isEstablished, closeReason == nil else { return }
        ngtcp2_conn_set_keep_alive_timeout(conn, seconds > 0 ? UInt64(seconds * 1e9) : UInt64.max)
    }

    /// Probe timeouts in a row without an acknowledgement from the peer.
    public var probeTimeouts: Int {
        guard let conn else { return 0 }
        var st = ngtcp2_conn_stat()
        guts_ngtcp2_conn_get_conn_stat(conn, &st)
        return Int(st.pto_count)
    }

    /// Congestion and RTT state, for diagnostics.
    public var statistics: String {
        guard let conn else { return "closed" }
        var st = ngtcp2_conn_stat()
        guts_ngtcp2_conn_get_conn_stat(conn, &st)
        return "srtt \(Double(st.smoothed_rtt) / 1e6) ms, min rtt \(Double(st.min_rtt) / 1e6) ms, cwnd \(st.cwnd), ssthresh \(st.ssthresh), in flight \(st.bytes_in_flight), pto count \(st.pto_count), pacing \(st.pacing_rate), quantum \(st.send_quantum), sent \(bytesSent), received \(bytesReceived)"
    }

    /// The smoothed round-trip time ngtcp2 measured, in seconds.
    public var smoothedRTT: Double? {
        guard let conn else { return nil }
        var stat = ngtcp2_conn_stat()
        guts_ngtcp2_conn_get_conn_stat(conn, &stat)
        return stat.smoothed_rtt == 0 ? nil : Double(stat.smoothed_rtt) / 1e9
    }

    // MARK: - Internals

    private func takeEvents() -> [QUICEvent] {
        defer { events = [] }
        return events
    }

    private func finish(_ reason: QUICClose) {
        guard closeReason == nil else { return }
        closeReason = reason
        events.append(.closed(reason))
        for s in sendStreams.values { s.freeAll() }
        sendStreams = [:]
        sendOrder = []
    }

    /// An ngtcp2 error from reading or writing: work out why and end the connection.
    private func handleError(_ rv: Int32, now: Instant) {
        guard let conn else { return }
        if let failure {
            // Our certificate check refused the peer: tell it (TLS alert) and stop.
            sendTransportClose(liberr: rv, now: now)
            finish(failure)
            return
        }
        switch rv {
        case NGTCP2_ERR_DRAINING, NGTCP2_ERR_CLOSING:
            var ccerr = ngtcp2_connection_close_error()
            ngtcp2_conn_get_connection_close_error(conn, &ccerr)
            let reason = ccerr.reason.map { String(decoding: UnsafeBufferPointer(start: $0, count: ccerr.reasonlen), as: UTF8.self) } ?? ""
            if ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION {
                finish(.remoteClose(code: ccerr.error_code, reason: reason))
            } else if !isEstablished {
                finish(.handshakeFailed(Self.transportText(ccerr.error_code, reason)))
            } else {
                finish(.transportError(Self.transportText(ccerr.error_code, reason)))
            }
        case NGTCP2_ERR_IDLE_CLOSE:
            finish(.idleTimeout)
        case NGTCP2_ERR_DROP_CONN, NGTCP2_ERR_RETRY:
            finish(.transportError(Self.errorText(rv)))
        case NGTCP2_ERR_CRYPTO where !isEstablished:
            sendTransportClose(liberr: rv, now: now)
            finish(.handshakeFailed("TLS: \(Self.alertText(ngtcp2_conn_get_tls_alert(conn)))"))
        default:
            sendTransportClose(liberr: rv, now: now)
            finish(isEstablished ? .transportError(Self.errorText(rv)) : .handshakeFailed(Self.errorText(rv)))
        }
    }

    private func sendTransportClose(liberr: Int32, now: Instant) {
        guard let conn else { return }
        var ccerr = ngtcp2_connection_close_error()
        if liberr == NGTCP2_ERR_CRYPTO {
            ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, ngtcp2_conn_get_tls_alert(conn), nil, 0)
        } else {
            ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, liberr, nil, 0)
        }
        let n = guts_ngtcp2_conn_write_connection_close(conn, &pathStorage.pointee.path, packetBuffer.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                        Self.maxPacket, &ccerr, now.nanoseconds)
        if n > 0 { closingPacket = Array(UnsafeRawBufferPointer(start: packetBuffer.baseAddress, count: Int(n))) }
    }

    static func transportText(_ code: UInt64, _ reason: String) -> String {
        if code & 0xff00 == 0x0100 { return "TLS alert \(alertText(UInt8(code & 0xff)))" + (reason.isEmpty ? "" : ": \(reason)") }
        return "transport error 0x\(String(code, radix: 16))" + (reason.isEmpty ? "" : ": \(reason)")
    }

    static func alertText(_ alert: UInt8) -> String {
        switch alert {
        case 42: return "bad_certificate"
        case 46: return "certificate_unknown"
        case 48: return "unknown_ca"
        case 40: return "handshake_failure"
        case 80: return "internal_error"
        case 116: return "certificate_required"
        case 120: return "no_application_protocol"
        default: return "\(alert)"
        }
    }

    static func errorText(_ rv: Int32) -> String {
        guard let s = ngtcp2_strerror(rv) else { return "error \(rv)" }
        return String(cString: s)
    }

    static func fillCID(_ cid: inout ngtcp2_cid) {
        let bytes = Random.bytes(cidLength)
        cid.datalen = cidLength
        withUnsafeMutableBytes(of: &cid.data) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
    }

    static func cidBytes(_ cid: ngtcp2_cid) -> [UInt8] {
        withUnsafeBytes(of: cid.data) { Array($0.prefix(min(cid.datalen, Int(NGTCP2_MAX_CIDLEN)))) }
    }

    static func address(_ a: ngtcp2_addr) -> QUICSocketAddress? {
        guard let p = a.addr else { return nil }
        return QUICSocketAddress(sockaddrBytes: Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: Int(a.addrlen))))
    }

    func resetToken(for cid: ngtcp2_cid) -> [UInt8] {
        var c = cid
        var token = [UInt8](repeating: 0, count: Int(NGTCP2_STATELESS_RESET_TOKENLEN))
        let ok = token.withUnsafeMutableBufferPointer { t in
            config.statelessResetSecret.withUnsafeBufferPointer { s in
                ngtcp2_crypto_generate_stateless_reset_token(t.baseAddress, s.baseAddress, s.count, &c)
            }
        }
        return ok == 0 ? token : Random.bytes(Int(NGTCP2_STATELESS_RESET_TOKENLEN))
    }

    /// Runs `body` with an ngtcp2_path naming the two addresses (ngtcp2 copies them).
    private func withPath<R>(local: QUICSocketAddress, remote: QUICSocketAddress, _ body: (UnsafePointer<ngtcp2_path>) -> R) -> R {
        local.bytes.withUnsafeBytes { l in
            remote.bytes.withUnsafeBytes { r in
                var path = ngtcp2_path(
                    local: ngtcp2_addr(addr: UnsafeMutablePointer(mutating: l.baseAddress?.assumingMemoryBound(to: ngtcp2_sockaddr.self)), addrlen: ngtcp2_socklen(l.count)),
                    remote: ngtcp2_addr(addr: UnsafeMutablePointer(mutating: r.baseAddress?.assumingMemoryBound(to: ngtcp2_sockaddr.self)), addrlen: ngtcp2_socklen(r.count)),
                    user_data: nil)
                return body(&path)
            }
        }
    }

    private func makeSettings(now: Instant) -> ngtcp2_settings {
        var s = ngtcp2_settings()
        guts_ngtcp2_settings_default(&s)
        s.initial_ts = now.nanoseconds
        s.handshake_timeout = UInt64(config.handshakeTimeout * 1e9)
        s.max_window = config.connectionWindow
        s.max_stream_window = config.streamWindow
        s.max_tx_udp_payload_size = Self.maxUDPPayload
        s.rand_ctx = ngtcp2_rand_ctx(native_handle: nil)
        return s
    }

    private func makeParams() -> ngtcp2_transport_params {
        var p = ngtcp2_transport_params()
        guts_ngtcp2_transport_params_default(&p)
        p.initial_max_streams_bidi = config.maxStreams
        p.initial_max_streams_uni = 0
        p.initial_max_stream_data_bidi_local = config.streamWindow
        p.initial_max_stream_data_bidi_remote = config.streamWindow
        p.initial_max_stream_data_uni = 0
        p.initial_max_data = config.connectionWindow
        p.max_idle_timeout = UInt64(config.idleTimeout * 1e9)
        p.active_connection_id_limit = 4
        // Acknowledge within 2 ms (ngtcp2 acknowledges every second packet anyway): a
        // closing side waits for its last bytes to be acknowledged.
        p.max_ack_delay = 2_000_000
        return p
    }

    private func makeCallbacks() -> ngtcp2_callbacks {
        var cb = ngtcp2_callbacks()
        if role == .client {
            cb.client_initial = ngtcp2_crypto_client_initial_cb
            cb.recv_retry = ngtcp2_crypto_recv_retry_cb
        } else {
            cb.recv_client_initial = ngtcp2_crypto_recv_client_initial_cb
        }
        cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb
        cb.encrypt = ngtcp2_crypto_encrypt_cb
        cb.decrypt = ngtcp2_crypto_decrypt_cb
        cb.hp_mask = ngtcp2_crypto_hp_mask_cb
        cb.update_key = ngtcp2_crypto_update_key_cb
        cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb
        cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb
        cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb
        cb.path_validation = { _, _, path, result, user in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            // Only a validated path counts; on failure ngtcp2 falls back to the old one.
            guard result == NGTCP2_PATH_VALIDATION_RESULT_SUCCESS, let path,
                  let to = QUICEngine.address(path.pointee.remote), to != engine.remote else { return 0 }
            engine.remote = to
            engine.events.append(.migrated(to))
            return 0
        }
        cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb
        cb.rand = { dest, length, _ in
            guard let dest else { return }
            let bytes = Random.bytes(length)
            for i in 0..<length { dest[i] = bytes[i] }
        }
        cb.get_new_connection_id = { _, cid, token, length, user in
            guard let cid, let token, let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            let bytes = Random.bytes(length)
            cid.pointee.datalen = length
            withUnsafeMutableBytes(of: &cid.pointee.data) { raw in for (i, b) in bytes.enumerated() where i < raw.count { raw[i] = b } }
            let t = engine.resetToken(for: cid.pointee)
            for (i, b) in t.enumerated() { token[i] = b }
            engine.events.append(.newConnectionID(bytes))
            return 0
        }
        cb.remove_connection_id = { _, cid, user in
            guard let cid, let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            engine.events.append(.retiredConnectionID(QUICEngine.cidBytes(cid.pointee)))
            return 0
        }
        cb.handshake_completed = { _, user in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            return engine.handshakeCompleted() ? 0 : NGTCP2_ERR_CALLBACK_FAILURE
        }
        cb.recv_stream_data = { conn, flags, stream, _, data, length, user, _ in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            let fin = flags & UInt32(NGTCP2_STREAM_DATA_FLAG_FIN) != 0
            let chunk = data.map { UnsafeBufferPointer(start: $0, count: length) } ?? UnsafeBufferPointer(start: nil, count: 0)
            // Consecutive bytes of one stream (a read's worth of packets) make one event:
            // the shell decodes one run instead of one piece per packet.
            if case .streamData(stream, var bytes, false)? = engine.events.last {
                engine.events.removeLast()
                bytes.append(contentsOf: chunk)
                engine.events.append(.streamData(stream, bytes, fin: fin))
            } else {
                var bytes: [UInt8] = []
                // A full packet of a bulk transfer: room for the rest of a read (up to
                // 64 KiB with receive offload), so appending does not reallocate.
                bytes.reserveCapacity(length >= 1024 ? 65536 : length)
                bytes.append(contentsOf: chunk)
                engine.events.append(.streamData(stream, bytes, fin: fin))
            }
            // The shell consumes what it is given at once (its own queues are bounded by the
            // session's limits), so the window reopens as data is delivered.
            if let conn, length > 0 {
                _ = ngtcp2_conn_extend_max_stream_offset(conn, stream, UInt64(length))
                ngtcp2_conn_extend_max_offset(conn, UInt64(length))
            }
            return 0
        }
        cb.acked_stream_data_offset = { _, stream, offset, length, user, _ in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            engine.sendStreams[stream]?.acknowledge(upTo: offset + length)
            engine.events.append(.acknowledged(stream, offset + length))
            engine.delay.acked += length
            return 0
        }
        cb.stream_open = { _, stream, user in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            engine.events.append(.streamOpened(stream))
            return 0
        }
        cb.stream_close = { conn, flags, stream, _, user, _ in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            engine.sendStreams[stream]?.freeAll()
            engine.sendStreams[stream] = nil
            engine.sendOrder.removeAll { $0 == stream }
            engine.events.append(.streamClosed(stream, reset: flags & UInt32(NGTCP2_STREAM_CLOSE_FLAG_APP_ERROR_CODE_SET) != 0))
            // A stream the peer opened is done: it may open another (the cap is on streams at once).
            let peerInitiated = (stream & 1 == 0) == (engine.role == .server)
            if peerInitiated, let conn { ngtcp2_conn_extend_max_streams_bidi(conn, 1) }
            return 0
        }
        cb.stream_reset = { _, stream, _, _, user, _ in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            engine.sendStreams[stream]?.freeAll()
            return 0
        }
        cb.extend_max_stream_data = { _, stream, _, user, _ in
            guard let engine = QUICEngine.from(user) else { return NGTCP2_ERR_CALLBACK_FAILURE }
            if let s = engine.sendStreams[stream], s.blocked {
                s.blocked = false
                engine.events.append(.writable(stream))
            }
            return 0
        }
        return cb
    }

    static func from(_ user: UnsafeMutableRawPointer?) -> QUICEngine? {
        guard let user else { return nil }
        return Unmanaged<QUICEngine>.fromOpaque(user).takeUnretainedValue()
    }

    // MARK: - TLS

    static let priority = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:-SIGN-ALL:+SIGN-EDDSA-ED25519:%DISABLE_TLS13_COMPAT_MODE"

    private func setUpTLS() throws {
        let shared = try TLSCredentials.shared(for: config.certificate)
        tls = shared
        let cred = shared.credentials

        var s: gnutls_session_t?
        let flags = (role == .client ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NO_TICKETS
        guard gnutls_init(&s, UInt32(flags)) == 0, let s else { throw QUICClose.transportError("GnuTLS session") }
        session = s
        let configured = role == .client ? ngtcp2_crypto_gnutls_configure_client_session(s) : ngtcp2_crypto_gnutls_configure_server_session(s)
        guard configured == 0 else { throw QUICClose.transportError("ngtcp2 cannot configure the TLS session") }
        guard let priority = TLSCredentials.priority, gnutls_priority_set(s, priority) == 0 else {
            throw QUICClose.transportError("GnuTLS priority")
        }
        guard gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(cred)) == 0 else {
            throw QUICClose.transportError("GnuTLS credentials")
        }
        if role == .server { gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE) }
        let alpn = Array(config.alpn.utf8)
        let set = alpn.withUnsafeBufferPointer { a in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: a.baseAddress), size: UInt32(a.count))
            return gnutls_alpn_set_protocols(s, &datum, 1, UInt32(GNUTLS_ALPN_MANDATORY.rawValue))
        }
        guard set == 0 else { throw QUICClose.transportError("GnuTLS ALPN") }
        gnutls_session_set_ptr(s, UnsafeMutableRawPointer(connRef))
        if let conn { ngtcp2_conn_set_tls_native_handle(conn, UnsafeMutableRawPointer(s)) }
    }

    static func gnutlsText(_ rv: Int32) -> String {
        guard let s = gnutls_strerror(rv) else { return "error \(rv)" }
        return String(cString: s)
    }

    /// GnuTLS asks during the handshake: the peer's single certificate must carry a valid
    /// identity for this network (and the expected one, when pinned).
    fileprivate func verifyPeer(_ session: gnutls_session_t) -> Bool {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count), count == 1, let data = list.pointee.data else {
            failure = .handshakeFailed("peer presented \(count) certificates, expected exactly one")
            return false
        }
        let size = Int(list.pointee.size)
        guard size <= QUICCertificate.maxSize else {
            failure = .handshakeFailed("peer certificate larger than \(QUICCertificate.maxSize) bytes")
            return false
        }
        let der = Array(UnsafeBufferPointer(start: data, count: size))
        let id: PeerID
        do {
            id = try QUICCertificate.verify(der, networkID: config.networkID, now: config.unixNow())
        } catch {
            failure = .handshakeFailed("\(error)")
            return false
        }
        if id.publicKey == config.identity.publicKey {
            failure = .selfConnection
            return false
        }
        if let expected = config.expectedPeer, expected != id {
            failure = .identityMismatch(expected: expected, actual: id)
            return false
        }
        peerID = id
        return true
    }

    private func handshakeCompleted() -> Bool {
        guard let session, let id = peerID else {
            failure = failure ?? .handshakeFailed("peer presented no certificate")
            return false
        }
        var selected = gnutls_datum_t()
        guard gnutls_alpn_get_selected_protocol(session, &selected) == 0, let p = selected.data,
              String(decoding: UnsafeBufferPointer(start: p, count: Int(selected.size)), as: UTF8.self) == config.alpn else {
            failure = .handshakeFailed("peer did not select ALPN \(config.alpn)")
            return false
        }
        isEstablished = true
        if let conn, config.keepaliveInterval > 0 {
            ngtcp2_conn_set_keep_alive_timeout(conn, UInt64(config.keepaliveInterval * 1e9))
        }
        events.append(.established(id))
        return true
    }
}

/// Bytes queued on one stream, kept at stable addresses until the peer acknowledges
/// them (ngtcp2 retransmits from them without copying).
final class SendStream {
    struct Chunk {
        let base: UnsafeMutableRawBufferPointer
        let offset: UInt64
        var end: UInt64 { offset + UInt64(base.count) }
    }

    var chunks: [Chunk] = []
    var queuedEnd: UInt64 = 0
    var sentOffset: UInt64 = 0
    var ackedOffset: UInt64 = 0
    var finQueued = false
    var finSent = false
    var blocked = false

    var hasPending: Bool { sentOffset < queuedEnd || (finQueued && !finSent) }

    func append(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let base = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        base.copyBytes(from: bytes)
        chunks.append(Chunk(base: base, offset: queuedEnd))
        queuedEnd += UInt64(bytes.count)
    }

    /// Vectors over the unsent bytes; returns how many were filled.
    func fillVecs(_ vecs: UnsafeMutableBufferPointer<ngtcp2_vec>) -> Int {
        var n = 0
        for c in chunks where c.end > sentOffset {
            guard n < vecs.count else { break }
            let skip = Int(sentOffset > c.offset ? sentOffset - c.offset : 0)
            vecs[n] = ngtcp2_vec(base: c.base.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + skip }, len: c.base.count - skip)
            n += 1
        }
        return n
    }

    /// Whether `count` vectors from `fillVecs` reach the end of what is queued.
    func allBytesInVecs(_ count: Int) -> Bool {
        var unsent = 0
        for c in chunks.reversed() {
            guard c.end > sentOffset else { break }
            unsent += 1
            if unsent > count { return false }
        }
        return true
    }

    func acknowledge(upTo offset: UInt64) {
        guard offset > ackedOffset else { return }
        ackedOffset = offset
        while let first = chunks.first, first.end <= ackedOffset {
            first.base.deallocate()
            chunks.removeFirst()
        }
    }

    func freeAll() {
        for c in chunks { c.base.deallocate() }
        chunks = []
        ackedOffset = queuedEnd
        sentOffset = queuedEnd
        finSent = finQueued
    }
}

/// GnuTLS credentials for one certificate (key, certificate, verify hook), made once
/// and shared by every connection that presents it. GnuTLS only reads them.
final class TLSCredentials: @unchecked Sendable {
    let credentials: gnutls_certificate_credentials_t

    private init(_ credentials: gnutls_certificate_credentials_t) { self.credentials = credentials }

    deinit { gnutls_certificate_free_credentials(credentials) }

    private static let cache = Mutex<[[UInt8]: TLSCredentials]>([:])

    /// The priority string parsed once.
    nonisolated(unsafe) static let priority: gnutls_priority_t? = {
        var p: gnutls_priority_t?
        return gnutls_priority_init(&p, QUICEngine.priority, nil) == 0 ? p : nil
    }()

    static func shared(for certificate: QUICCertificate) throws -> TLSCredentials {
        try cache.withLock { cache in
            if let c = cache[certificate.der] { return c }
            let made = try make(certificate)
            // Certificates are renewed rarely; keep the last few.
            if cache.count >= 8 { cache.removeAll() }
            cache[certificate.der] = made
            return made
        }
    }

    private static func make(_ certificate: QUICCertificate) throws -> TLSCredentials {
        var cred: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&cred) == 0, let cred else { throw QUICClose.transportError("GnuTLS credentials") }
        let result = TLSCredentials(cred)
        var key: gnutls_privkey_t?
        guard gnutls_privkey_init(&key) == 0, let key else { throw QUICClose.transportError("GnuTLS key") }
        var imported = certificate.tlsKey.publicKey.withUnsafeBufferPointer { x in
            certificate.tlsKey.seed.withUnsafeBufferPointer { k in
                var xd = gnutls_datum_t(data: UnsafeMutablePointer(mutating: x.baseAddress), size: UInt32(x.count))
                var kd = gnutls_datum_t(data: UnsafeMutablePointer(mutating: k.baseAddress), size: UInt32(k.count))
                return gnutls_privkey_import_ecc_raw(key, GNUTLS_ECC_CURVE_ED25519, &xd, nil, &kd)
            }
        }
        guard imported == 0 else {
            gnutls_privkey_deinit(key)
            throw QUICClose.transportError("GnuTLS cannot import the TLS key: \(QUICEngine.gnutlsText(imported))")
        }
        let pcert = UnsafeMutablePointer<gnutls_pcert_st>.allocate(capacity: 1)
        defer { pcert.deallocate() }
        imported = certificate.der.withUnsafeBufferPointer { d in
            var datum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: d.baseAddress), size: UInt32(d.count))
            return gnutls_pcert_import_x509_raw(pcert, &datum, GNUTLS_X509_FMT_DER, 0)
        }
        guard imported == 0 else {
            gnutls_privkey_deinit(key)
            throw QUICClose.transportError("GnuTLS cannot import the certificate: \(QUICEngine.gnutlsText(imported))")
        }
        // The credentials take ownership of the key and the certificate.
        guard gnutls_certificate_set_key(cred, nil, 0, pcert, 1, key) >= 0 else {
            gnutls_pcert_deinit(pcert)
            gnutls_privkey_deinit(key)
            throw QUICClose.transportError("GnuTLS cannot use the certificate")
        }
        gnutls_certificate_set_verify_function(cred) { session in
            guard let session, let ref = gnutls_session_get_ptr(session)?.assumingMemoryBound(to: ngtcp2_crypto_conn_ref.self),
                  let engine = QUICEngine.from(ref.pointee.user_data) else { return -1 }
            return engine.verifyPeer(session) ? 0 : -1
        }
        return result
    }
}
