import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// One QUIC connection to a peer, as a `PeerLink`: the node cannot tell it from TCP.
/// Thread-safe like `PeerConnection`: public methods may be called from any thread; the
/// engine, streams and timers live on `loop` only.
public final class QUICLink: PeerLink, @unchecked Sendable {
    public let inbound: Bool
    let loop: EventLoop
    private let established: EventLoopPromise<PeerInfo>
    private let closedPromise: EventLoopPromise<SessionClose>
    public let openedAt = unixTime()
    private let received = Atomic<UInt64>(0)
    private let sent = Atomic<UInt64>(0)
    private let writable = Atomic<Bool>(true)
    private let shared = NIOLockedValueBox(Shared())
    /// Answers queued for `nextMessage`, the round-trip probe and the close reason.
    private let inbox: LinkInbox

    struct Shared {
        var peer: PeerInfo?
        var onMessage: (@Sendable (any PeerLink, Message) -> Bool)?
        var outstanding = 0
        var unsent = 0
        var discarded = 0
    }

    // MARK: Loop-only state

    private let engine: QUICEngine
    private var config: SessionConfig
    private let output: (QUICDatagram) -> Void
    private let flushOutput: () -> Void
    /// Whether `output` takes packets laid back to back for one send (segmentation offload).
    private let coalesce: Bool
    /// Told about connection IDs (the listener routes datagrams by them) and the end.
    var onConnectionID: ((_ id: [UInt8], _ added: Bool) -> Void)?
    var onFinished: (() -> Void)?
    /// Told when the peer moved to a new, validated address (the listener rechecks bans
    /// and limits for it).
    var onMigrated: ((QUICSocketAddress) -> Void)?
    private var timer: Scheduled<Void>?
    private var timerAt: Instant?
    private let startedAt: Instant
    private var phase = Phase.handshake
    private var controlStream: Int64?
    private var decoders: [Int64: StreamDecoder] = [:]
    /// Request streams the peer opened, by the request ID they carry.
    private var inboundRequests: [UInt32: Int64] = [:]
    /// Streams of requests this side sent (answers come back on them).
    private var outboundStreams: Set<Int64> = []
    /// Whether a request stream of the peer already carried its request.
    private var requestSeen: Set<Int64> = []
    /// Promises of messages written, completed when the peer acknowledged their last byte.
    private var pendingWrites: [Int64: [(end: UInt64, promise: EventLoopPromise<Void>)]] = [:]
    private var keepaliveNonce: UInt64 = 0
    /// The connection IDs that name this connection now (loop only).
    private(set) var connectionIDs: Set<[UInt8]> = []
    /// The identity the peer's certificate proved (known before Hello).
    private var remotePeerID: PeerID?

    enum Phase { case handshake, awaitingHello, awaitingHelloAck, established, closed }

    /// Bytes queued but not acknowledged beyond which best-effort traffic is dropped.
    static let highWatermark = 1 << 20

    init(engine: QUICEngine, config: SessionConfig, inbound: Bool, loop: EventLoop,
         coalesce: Bool = false, output: @escaping (QUICDatagram) -> Void, flush: @escaping () -> Void) {
        self.engine = engine
        self.coalesce = coalesce
        self.remoteText = NIOLockedValueBox(engine.remote.description)
        self.config = config
        self.inbound = inbound
        self.loop = loop
        self.output = output
        self.flushOutput = flush
        established = loop.makePromise(of: PeerInfo.self)
        closedPromise = loop.makePromise(of: SessionClose.self)
        inbox = LinkInbox(loop: loop)
        startedAt = .now()
    }

    // MARK: PeerLink

    public var remoteAddress: String { remoteText.withLockedValue { $0 } }
    /// The peer's address, rendered; it follows a validated migration (callers on any
    /// thread read `remoteAddress`).
    private let remoteText: NIOLockedValueBox<String>
    public var peer: PeerInfo? { shared.withLockedValue { $0.peer } }
    public var establishedFuture: EventLoopFuture<PeerInfo> { established.futureResult }
    public var closeFuture: EventLoopFuture<SessionClose> { closedPromise.futureResult }
    public var isClosed: Bool { inbox.closeReason != nil }
    public var isWritable: Bool { writable.load(ordering: .relaxed) }
    public var bytesReceived: UInt64 { received.load(ordering: .relaxed) }
    public var bytesSent: UInt64 { sent.load(ordering: .relaxed) }
    public var lastRoundTrip: Double? { inbox.lastRoundTrip }
    public var discardedAnswers: Int { shared.withLockedValue { $0.discarded } }
    public var transportName: String { "quic" }
    /// ngtcp2's congestion and RTT figures (for diagnostics and benchmarks).
    public func transportStatistics() -> EventLoopFuture<String> { loop.submit { self.engine.statistics } }
    public var expectsAnswers: Bool { shared.withLockedValue { $0.outstanding > 0 } }
    public func beginRequests() {
        shared.withLockedValue { $0.outstanding += 1 }
        updateProbing()
    }

    public func endRequests() {
        shared.withLockedValue { $0.outstanding = max(0, $0.outstanding - 1) }
        updateProbing()
    }

    /// Seconds of quiet after which the path is probed while answers are awaited: a peer
    /// whose node stopped then shows at once ("port unreachable" on the probe), as a TCP
    /// reset would, instead of after the idle timeout.
    static let probeWhileWaiting = 1.0

    private func updateProbing() {
        loop.execute {
            let waiting = self.shared.withLockedValue { $0.outstanding > 0 }
            self.engine.setKeepalive(seconds: waiting ? Self.probeWhileWaiting : self.config.keepaliveInterval)
            self.schedule()
        }
    }

    public func pendingOutboundBytes() -> EventLoopFuture<Int> {
        loop.submit { self.engine.unacknowledgedBytes }
    }

    public func setMessageHandler(_ handler: @escaping @Sendable (any PeerLink, Message) -> Bool) {
        shared.withLockedValue { $0.onMessage = handler }
        for m in inbox.takeQueued() where !handler(self, m) { enqueue(m) }
    }

    @discardableResult
    public func send(_ message: Message) -> EventLoopFuture<Void> {
        loop.flatSubmit { self.sendOnLoop(message) }
    }

    public func close(_ code: ReasonCode, _ reason: String) {
        loop.execute { self.closeGracefully(code, reason) }
    }

    public func abort() {
        loop.execute { self.closeNow(code: UInt64(ReasonCode.shutdown.rawValue), reason: "aborted", why: .localGoodbye(Goodbye(code: .shutdown, reason: "aborted"))) }
    }

    public func nextMessage(timeout: Double) -> EventLoopFuture<Message> {
        inbox.next(timeout: timeout)
    }

    public func measureRoundTrip(timeout: Double) -> EventLoopFuture<Double?> {
        inbox.measureRoundTrip(timeout: timeout) { nonce in _ = self.sendOnLoop(.ping(nonce: nonce)) }
    }

    /// The node's say when the peer's Hello arrives (before `start`, on the loop).
    func setAdmit(_ admit: @escaping @Sendable (PeerID, Hello) -> Goodbye?) {
        config.admit = admit
    }

    // MARK: Input (loop only)

    /// Starts the connection (client: its first flight).
    func start() {
        pump([])
    }

    /// The peer's host answered "port unreachable" (dialled links only, whose socket is
    /// connected): nothing listens for QUIC there, or the node stopped.
    func refused() {
        switch phase {
        case .handshake:
            closeNow(code: 0, reason: "", why: .connectionLost("cannot connect: Connection refused"))
        case .closed:
            break
        default:
            closeNow(code: 0, reason: "", why: .connectionLost("the peer's port is unreachable (its node stopped)"))
        }
    }

    func receive(_ datagram: [UInt8], from: QUICSocketAddress) {
        datagram.withUnsafeBytes { ingest($0, from: from) }
        pumpIngested()
    }

    /// Feeds one datagram to the engine without answering yet: the shell feeds what one
    /// read returned (several packets with receive offload), then calls `pumpIngested`
    /// once, so one flush answers them all.
    func ingest(_ datagram: UnsafeRawBufferPointer, from: QUICSocketAddress) {
        received.add(UInt64(datagram.count), ordering: .relaxed)
        engine.ingest(datagram, from: from, now: .now())
    }

    func pumpIngested() {
        pump(engine.takePendingEvents())
    }

    private func pump(_ events: [QUICEvent]) {
        for event in events { handle(event) }
        flush()
        // Writing can raise events too (connection IDs issued): handle them now, before
        // the peer uses them, and send what handling them queued.
        for _ in 0..<4 {
            let more = engine.takePendingEvents()
            if more.isEmpty { break }
            for event in more { handle(event) }
            flush()
        }
        schedule()
    }

    private func flush() {
        let datagrams = engine.flush(now: .now(), coalesce: coalesce)
        guard !datagrams.isEmpty else { return }
        var total = 0
        for d in datagrams {
            total += d.bytes.count
            output(d)
        }
        sent.add(UInt64(total), ordering: .relaxed)
        flushOutput()
        writable.store(engine.unacknowledgedBytes < Self.highWatermark, ordering: .relaxed)
        if engine.mayWriteMore && !flushQueued {
            // More fits in the congestion window: write it on the next turn of the loop,
            // after what else is waiting there.
            flushQueued = true
            loop.execute { [self] in
                flushQueued = false
                pump([])
            }
        }
    }

    /// A flush is queued on the loop (see `flush`).
    private var flushQueued = false

    private func schedule() {
        guard phase != .closed else { return }
        var deadline = engine.nextDeadline
        if phase != .established {
            let hello = startedAt.adding(seconds: config.handshakeTimeout)
            deadline = min(deadline ?? hello, hello)
        }
        guard let deadline else { return }
        // A timer due no later is kept (it re-reads the deadline when it fires): moving a
        // timer on every datagram would cost more than a spurious wake-up.
        if let at = timerAt, at <= deadline, timer != nil { return }
        timer?.cancel()
        timerAt = deadline
        let now = Instant.now()
        let delay = deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0
        timer = loop.scheduleTask(in: .nanoseconds(delay)) { [self] in
            timer = nil
            timerAt = nil
            let now = Instant.now()
            if phase != .established && phase != .closed && now.seconds(since: startedAt) >= config.handshakeTimeout {
                closeNow(code: UInt64(ReasonCode.timeout.rawValue), reason: "handshake not completed",
                         why: .timeout("handshake not completed within \(Int(config.handshakeTimeout)) s"))
                return
            }
            pump(engine.handleTimeout(now: now))
            // A peer that acknowledged nothing through this many probes in a row is gone (a
            // killed process sends no close, as a TCP peer's kernel would): its transfers and
            // slots are released now rather than at the idle timeout.
            if phase != .closed, engine.probeTimeouts >= Self.maxProbeTimeouts {
                closeNow(code: UInt64(ReasonCode.timeout.rawValue), reason: "no acknowledgement",
                         why: .connectionLost("the peer acknowledged nothing through \(Self.maxProbeTimeouts) probe timeouts"))
            }
        }
    }

    /// Probe timeouts in a row after which the peer is considered gone (with backoff, about
    /// 63 probe timeouts' worth of silence: under a second on a LAN, seconds on the Internet).
    static let maxProbeTimeouts = 6

    private func handle(_ event: QUICEvent) {
        switch event {
        case let .established(id):
            guard phase == .handshake else { return }
            if inbound {
                phase = .awaitingHello
            } else {
                guard let stream = engine.openStream() else {
                    return closeNow(code: UInt64(ReasonCode.protocolViolation.rawValue), reason: "no stream for control",
                                    why: .handshakeFailed("peer allows no streams"))
                }
                controlStream = stream
                engine.priorityStream = stream
                phase = .awaitingHelloAck
                write(.hello(Hello(capabilities: config.capabilities, agent: config.agent, quicPort: config.quicPort?() ?? 0)), on: stream, fin: false, promise: nil)
            }
            remotePeerID = id
        case let .streamOpened(stream):
            // The control stream is the client's first bidirectional stream, ID 0: Hello on
            // any other stream is refused as arriving off the control stream.
            if inbound && controlStream == nil && stream == 0 {
                controlStream = stream
                engine.priorityStream = stream
            }
        case let .streamData(stream, bytes, fin):
            receiveStream(stream, bytes, fin: fin)
        case let .streamClosed(stream, reset):
            decoders[stream] = nil
            outboundStreams.remove(stream)
            requestSeen.remove(stream)
            inboundRequests = inboundRequests.filter { $0.value != stream }
            for w in pendingWrites.removeValue(forKey: stream) ?? [] {
                if reset { w.promise.fail(TransportError.closed(.connectionLost("stream reset"))) } else { w.promise.succeed(()) }
            }
            if stream == controlStream, phase != .closed {
                closeNow(code: UInt64(ReasonCode.protocolViolation.rawValue), reason: "control stream closed",
                         why: .connectionLost("control stream closed"))
            }
        case let .acknowledged(stream, offset):
            guard var list = pendingWrites[stream] else { return }
            var done = 0
            while done < list.count, list[done].end <= offset { done += 1 }
            let finished = list.prefix(done)
            list.removeFirst(done)
            pendingWrites[stream] = list.isEmpty ? nil : list
            for w in finished { w.promise.succeed(()) }
        case .writable:
            break
        case let .newConnectionID(id):
            connectionIDs.insert(id)
            onConnectionID?(id, true)
        case let .retiredConnectionID(id):
            connectionIDs.remove(id)
            onConnectionID?(id, false)
        case let .migrated(to):
            remoteText.withLockedValue { $0 = to.description }
            onMigrated?(to)
        case let .closed(why):
            finish(Self.translate(why))
        }
    }

    static func translate(_ why: QUICClose) -> SessionClose {
        switch why {
        case let .handshakeFailed(text): return .handshakeFailed(text)
        case let .identityMismatch(expected, actual): return .identityMismatch(expected: expected, actual: actual)
        case .selfConnection: return .selfConnection
        case let .remoteClose(code, reason):
            return .remoteGoodbye(Goodbye(code: ReasonCode(rawValue: UInt16(truncatingIfNeeded: code)), reason: reason))
        case let .localClose(code, reason):
            return .localGoodbye(Goodbye(code: ReasonCode(rawValue: UInt16(truncatingIfNeeded: code)), reason: reason))
        case let .transportError(text): return .connectionLost(text)
        case .idleTimeout: return .timeout("nothing received within the idle timeout")
        case .handshakeTimeout: return .timeout("QUIC handshake not completed")
        }
    }

    private func receiveStream(_ stream: Int64, _ bytes: [UInt8], fin: Bool) {
        guard phase != .closed else { return }
        // Taken out of the table while it grows, so appending never copies the buffer.
        var decoder = decoders.removeValue(forKey: stream) ?? StreamDecoder()
        decoder.append(bytes)
        while phase != .closed {
            let item: StreamDecoder.Item?
            do {
                item = try decoder.next(config.protocols, skipLargeAnswers: !expectsAnswers)
            } catch {
                switch error {
                case let .unknownType(t):
                    return fail(.unknownMessageType, "unknown message type \(DecodeError.hex(t))")
                case let .tooLarge(t, n, limit):
                    return fail(.messageTooLarge, "message type \(DecodeError.hex(t)) of \(n) bytes exceeds the limit of \(limit)")
                case let .malformed(t, why):
                    return fail(.protocolViolation, "malformed message \(DecodeError.hex(t)): \(why)")
                }
            }
            guard let item else { break }
            switch item {
            case let .message(message):
                handleMessage(message, stream: stream)
            case .skipped:
                shared.withLockedValue { $0.discarded += 1 }
            }
        }
        guard phase != .closed else { return }
        decoders[stream] = decoder
        if fin && !decoder.isEmpty { fail(.protocolViolation, "stream \(stream) ended inside a message") }
    }

    private func handleMessage(_ message: Message, stream: Int64) {
        if case let .goodbye(g) = message {
            return closeNow(code: UInt64(g.code.rawValue), reason: g.reason, why: .remoteGoodbye(g))
        }
        switch phase {
        case .awaitingHello:
            guard stream == controlStream, case let .hello(hello) = message else {
                return fail(.protocolViolation, "expected Hello on the control stream, got \(message.typeName)")
            }
            guard let id = remotePeerID else { return fail(.internalError, "no peer identity") }
            if let refusal = config.refusal { return fail(refusal.code, refusal.reason) }
            if let admit = config.admit, let refusal = admit(id, hello) { return fail(refusal.code, refusal.reason) }
            let version = min(hello.maxVersion, WireProtocol.maxVersion)
            guard version >= hello.minVersion, version >= WireProtocol.minVersion else {
                return fail(.unsupportedVersion, "peer speaks protocol versions \(hello.minVersion)-\(hello.maxVersion), this node \(WireProtocol.minVersion)-\(WireProtocol.maxVersion)")
            }
            write(.helloAck(HelloAck(version: version, capabilities: config.capabilities, agent: config.agent, quicPort: config.quicPort?() ?? 0)), on: stream, fin: false, promise: nil)
            didEstablish(PeerInfo(peerID: id, version: version, capabilities: hello.capabilities, agent: hello.agent,
                                  handshakeSeconds: Instant.now().seconds(since: startedAt), quicPort: hello.quicPort))
        case .awaitingHelloAck:
            guard stream == controlStream, case let .helloAck(ack) = message else {
                return fail(.protocolViolation, "expected HelloAck on the control stream, got \(message.typeName)")
            }
            guard ack.version >= WireProtocol.minVersion, ack.version <= WireProtocol.maxVersion, let id = remotePeerID else {
                return fail(.unsupportedVersion, "peer chose protocol version \(ack.version), this node speaks \(WireProtocol.minVersion)-\(WireProtocol.maxVersion)")
            }
            didEstablish(PeerInfo(peerID: id, version: ack.version, capabilities: ack.capabilities, agent: ack.agent,
                                  handshakeSeconds: Instant.now().seconds(since: startedAt), quicPort: ack.quicPort))
        case .established:
            if stream != controlStream {
                // A request stream: the peer's carries exactly one request; ours carry answers.
                if outboundStreams.contains(stream) {
                    guard case .answer = message.streamRoute else {
                        return fail(.protocolViolation, "\(message.typeName) on a request stream")
                    }
                } else {
                    guard case let .request(id) = message.streamRoute, !requestSeen.contains(stream) else {
                        return fail(.protocolViolation, "\(message.typeName) on a request stream")
                    }
                    requestSeen.insert(stream)
                    inboundRequests[id] = stream
                }
            }
            switch message {
            case .hello, .helloAck:
                return fail(.protocolViolation, "unexpected \(message.typeName) after the session was established")
            case let .ping(nonce):
                write(.pong(nonce: nonce), on: controlStream ?? stream, fin: false, promise: nil)
            case let .pong(nonce) where nonce == keepaliveNonce && keepaliveNonce != 0:
                keepaliveNonce = 0
            default:
                didReceive(message)
            }
        case .handshake, .closed:
            return
        }
    }

    // MARK: Output (loop only)

    private func sendOnLoop(_ message: Message) -> EventLoopFuture<Void> {
        guard phase == .established, let control = controlStream else {
            let reason = inbox.closeReason
            return loop.makeFailedFuture(reason.map { TransportError.closed($0) } ?? TransportError.notEstablished)
        }
        let promise = loop.makePromise(of: Void.self)
        switch message.streamRoute {
        case .control:
            write(message, on: control, fin: false, promise: promise)
        case .request:
            if let stream = engine.openStream() {
                outboundStreams.insert(stream)
                write(message, on: stream, fin: true, promise: promise)
            } else {
                // Every stream the peer allows is busy: the request (and so its answers)
                // takes the control stream.
                write(message, on: control, fin: false, promise: promise)
            }
        case let .answer(id, final):
            if let stream = inboundRequests[id] {
                if final { inboundRequests[id] = nil }
                write(message, on: stream, fin: final, promise: promise)
            } else {
                write(message, on: control, fin: false, promise: promise)
            }
        }
        pump([])
        return promise.futureResult
    }

    private func write(_ message: Message, on stream: Int64, fin: Bool, promise: EventLoopPromise<Void>?) {
        let bytes: [UInt8]
        do {
            bytes = try MessageCodec.encode(message)
        } catch {
            promise?.fail(error)
            return
        }
        guard let end = engine.write(bytes, stream: stream, fin: fin) else {
            promise?.fail(TransportError.closed(.connectionLost("stream \(stream) is closed")))
            return
        }
        if let promise { pendingWrites[stream, default: []].append((end, promise)) }
        writable.store(engine.unacknowledgedBytes < Self.highWatermark, ordering: .relaxed)
    }

    /// Closes the session with a reason code (sent as the application error code of
    /// CONNECTION_CLOSE) after what is queued was acknowledged, within 5 seconds.
    private func closeGracefully(_ code: ReasonCode, _ reason: String) {
        guard phase != .closed else { return }
        closeWhenFlushed(code, reason, deadline: Instant.now().adding(seconds: 5))
    }

    private func closeWhenFlushed(_ code: ReasonCode, _ reason: String, deadline: Instant) {
        guard phase != .closed else { return }
        if engine.unacknowledgedBytes == 0 || Instant.now() >= deadline {
            closeNow(code: UInt64(code.rawValue), reason: reason, why: .localGoodbye(Goodbye(code: code, reason: reason)))
        } else {
            loop.scheduleTask(in: .milliseconds(2)) { self.closeWhenFlushed(code, reason, deadline: deadline) }
        }
    }

    private func fail(_ code: ReasonCode, _ reason: String) {
        closeNow(code: UInt64(code.rawValue), reason: reason,
                 why: code == .timeout ? .timeout(reason) : .localGoodbye(Goodbye(code: code, reason: reason)))
    }

    private func closeNow(code: UInt64, reason: String, why: SessionClose) {
        guard phase != .closed else { return }
        engine.close(code: code, reason: reason, now: .now())
        for d in engine.flush(now: .now()) { output(d) }
        flushOutput()
        _ = engine.handleTimeout(now: .now())
        finish(why)
    }

    private func finish(_ why: SessionClose) {
        guard phase != .closed else { return }
        phase = .closed
        timer?.cancel()
        timer = nil
        for list in pendingWrites.values {
            for w in list { w.promise.fail(TransportError.closed(why)) }
        }
        pendingWrites = [:]
        inbox.close(why)
        established.fail(TransportError.closed(why))
        closedPromise.succeed(why)
        onFinished?()
    }

    private func didEstablish(_ info: PeerInfo) {
        phase = .established
        shared.withLockedValue { $0.peer = info }
        established.succeed(info)
    }

    private func didReceive(_ message: Message) {
        if case let .pong(nonce) = message, inbox.answersProbe(nonce) { return }
        let handler = shared.withLockedValue { $0.onMessage }
        if let handler, handler(self, message) { return }
        enqueue(message)
    }

    private func enqueue(_ message: Message) {
        if !inbox.deliver(message) { close(.protocolViolation, "more than \(LinkInbox.maxQueuedMessages) unsolicited messages") }
    }
}
