import GutsIdentity
import GutsSupport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Errors of the transport shell (the session's own reasons are `SessionClose`).
public enum TransportError: Error, CustomStringConvertible, Sendable {
    case timeout(String)
    case closed(SessionClose)
    case notEstablished

    public var description: String {
        switch self {
        case let .timeout(what): return "timed out \(what)"
        case let .closed(why): return why.description
        case .notEstablished: return "connection is not established"
        }
    }
}

/// One live connection to a peer. Thread-safe: every method may be called from any
/// thread; state lives on the channel's event loop.
public final class PeerConnection: Sendable {
    public let channel: Channel
    private let initialAddress: String?
    public let inbound: Bool
    let established: EventLoopPromise<PeerInfo>
    let closedPromise: EventLoopPromise<SessionClose>
    /// Established session details (set on the event loop once known).
    fileprivate let state = NIOLockedValueBox(State())
    /// Unix time the connection was set up (accepted, or connected when dialled).
    public let openedAt = unixTime()
    fileprivate let traffic = TrafficCounters()
    /// Answers queued for `nextMessage`, the round-trip probe and the close reason.
    let inbox: LinkInbox
    /// The session's handler, on the channel's loop only (weak: the pipeline owns it).
    fileprivate let handlerBox: NIOLoopBoundBox<WeakHandler>
    fileprivate var handler: SessionHandler? { handlerBox.value.handler }

    fileprivate struct WeakHandler {
        weak var handler: SessionHandler?
    }

    struct State {
        var peer: PeerInfo?
        var onMessage: (@Sendable (PeerConnection, Message) -> Bool)?
        var address: String?
        var outstanding = 0
        var discarded = 0
    }

    init(channel: Channel, inbound: Bool) {
        self.channel = channel
        self.inbound = inbound
        self.initialAddress = channel.remoteAddress.map(Self.render)
        self.established = channel.eventLoop.makePromise(of: PeerInfo.self)
        self.closedPromise = channel.eventLoop.makePromise(of: SessionClose.self)
        self.inbox = LinkInbox(loop: channel.eventLoop)
        self.handlerBox = NIOLoopBoundBox.makeBoxSendingValue(WeakHandler(), eventLoop: channel.eventLoop)
    }

    static func render(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        if case .v6 = address { return "[\(ip)]:\(port)" }
        return "\(ip):\(port)"
    }

    /// The remote `ip:port` (known once connected).
    public var remoteAddress: String {
        initialAddress ?? state.withLockedValue { $0.address } ?? channel.remoteAddress.map(Self.render) ?? "?"
    }

    /// Remembers the remote address while the channel is connected, so it can still be
    /// reported after the connection closes.
    func cacheAddress() {
        let rendered = channel.remoteAddress.map(Self.render)
        state.withLockedValue { $0.address = rendered }
    }

    /// The peer, once the session is established.
    public var peer: PeerInfo? { state.withLockedValue { $0.peer } }

    /// Completes when Hello/HelloAck are exchanged; fails with the close reason otherwise.
    public var establishedFuture: EventLoopFuture<PeerInfo> { established.futureResult }

    /// Completes with the reason when the connection ends.
    public var closeFuture: EventLoopFuture<SessionClose> { closedPromise.futureResult }

    /// Marks the start of requests made on this connection whose answers a caller will
    /// read with `nextMessage`; call `endRequests()` when done. While none are
    /// outstanding, a message handler can tell answers nobody asked for (and drop them).
    public func beginRequests() {
        state.withLockedValue { $0.outstanding += 1 }
        updateExpectation()
    }

    public func endRequests() {
        state.withLockedValue { $0.outstanding = max(0, $0.outstanding - 1) }
        updateExpectation()
    }

    /// Tells the session whether answers are expected (queued on the loop, so it takes
    /// effect before any request sent after this call).
    private func updateExpectation() {
        channel.eventLoop.execute {
            let expecting = self.state.withLockedValue { $0.outstanding > 0 }
            self.handler?.setAnswersExpected(expecting)
        }
    }

    /// Whether the connection has ended.
    public var isClosed: Bool { inbox.closeReason != nil }

    /// Large answers that arrived while no request was outstanding and were skipped unread.
    public var discardedAnswers: Int { state.withLockedValue { $0.discarded } }
    /// Whether a caller is waiting for answers to its requests on this connection.
    public var expectsAnswers: Bool { state.withLockedValue { $0.outstanding > 0 } }

    /// Most messages kept for `nextMessage` before the peer is considered abusive.
    public static let maxQueuedMessages = LinkInbox.maxQueuedMessages

    /// Offers every application message to `handler` (on the event loop) first; what it
    /// does not consume (returns false for) is queued for `nextMessage`, as responses to
    /// requests made on this connection are.
    public func setConnectionHandler(_ handler: @escaping @Sendable (PeerConnection, Message) -> Bool) {
        state.withLockedValue { $0.onMessage = handler }
        for m in inbox.takeQueued() where !handler(self, m) { enqueue(m) }
    }

    /// Sends one message. The future fails when the session is not (or no longer) established.
    @discardableResult
    public func send(_ message: Message) -> EventLoopFuture<Void> {
        let loop = channel.eventLoop
        return loop.flatSubmit {
            guard let handler = self.handler else {
                // After the close the handler is gone; report why the connection ended.
                let reason = self.inbox.closeReason
                return loop.makeFailedFuture(reason.map { TransportError.closed($0) } ?? TransportError.notEstablished)
            }
            return handler.send(message)
        }
    }

    /// Sends Goodbye and closes.
    public func close(_ code: ReasonCode = .shutdown, _ reason: String = "closing") {
        channel.eventLoop.execute {
            self.handler?.closeWithGoodbye(code, reason)
        }
    }

    /// The next queued application message, waiting up to `timeout` seconds.
    public func nextMessage(timeout: Double) -> EventLoopFuture<Message> {
        inbox.next(timeout: timeout)
    }

    // Called on the event loop by the handler.
    func didEstablish(_ info: PeerInfo) {
        state.withLockedValue { $0.peer = info }
        established.succeed(info)
    }

    func didReceive(_ message: Message) {
        if case let .pong(nonce) = message, inbox.answersProbe(nonce) { return }
        let handler = state.withLockedValue { $0.onMessage }
        if let handler, handler(self, message) { return }
        enqueue(message)
    }

    private func enqueue(_ message: Message) {
        if !inbox.deliver(message) { close(.protocolViolation, "more than \(Self.maxQueuedMessages) unsolicited messages") }
    }

    func didClose(_ reason: SessionClose) {
        inbox.close(reason)
        established.fail(TransportError.closed(reason))
        closedPromise.succeed(reason)
    }
}

// MARK: - Traffic and round trips (reported by `guts peers`)

extension PeerConnection {
    /// Bytes received from the peer on this connection (handshake and framing included).
    public var bytesReceived: UInt64 { traffic.received.load(ordering: .relaxed) }
    /// Bytes written to the peer on this connection (handshake and framing included).
    public var bytesSent: UInt64 { traffic.sent.load(ordering: .relaxed) }

    /// Round-trip time in seconds of the latest Ping sent by `measureRoundTrip` that was
    /// answered; nil when none was.
    public var lastRoundTrip: Double? { inbox.lastRoundTrip }

    /// Sends a Ping and completes with the round-trip time when its Pong arrives, or nil
    /// after `timeout` seconds or when the connection ends. Joins a probe already waiting
    /// (sent less than `timeout` ago) instead of sending another. A late Pong still
    /// updates `lastRoundTrip`.
    public func measureRoundTrip(timeout: Double) -> EventLoopFuture<Double?> {
        inbox.measureRoundTrip(timeout: timeout) { nonce in self.send(.ping(nonce: nonce)) }
    }
}

/// Byte counters, updated on the event loop and read from anywhere.
fileprivate final class TrafficCounters: Sendable {
    let received = Atomic<UInt64>(0)
    let sent = Atomic<UInt64>(0)
}

/// What one inbound connection may make the node read and process per second.
public struct ReadRate: Sendable, Equatable {
    public var bytes: Double
    public var byteBurst: Double
    public var messages: Double
    public var messageBurst: Double
    public init(bytes: Double, byteBurst: Double, messages: Double, messageBurst: Double) {
        self.bytes = bytes
        self.byteBurst = byteBurst
        self.messages = messages
        self.messageBurst = messageBurst
    }
}

/// Drives one `Session` from a NIO channel: bytes in, events out, timers at the
/// session's deadlines. All work happens on the channel's event loop.
final class SessionHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Outbound bytes queued beyond which the peer's input is no longer read (its
    /// requests, pings and gossip wait in the kernel, then in its own socket) until
    /// the queue drains below `lowWatermark`.
    static let highWatermark = 1 << 20
    static let lowWatermark = 256 << 10
    /// A read NIO asked for while paused for backpressure.
    private var readPending = false

    private var session: Session
    let connection: PeerConnection
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    private var timerDeadline: Instant?
    private var finished = false
    private var finishReason: SessionClose?

    /// Bytes per second read from the peer (nil: as fast as it sends). Over budget, the
    /// next read waits until the bucket has refilled: the peer is slowed down by TCP
    /// itself instead of being read and dropped.
    private var readBudget: ReadBudget?
    private var delayedRead: Scheduled<Void>?

    /// A byte allowance that may go into debt: what was read beyond it delays the next
    /// read by debt / rate.
    struct ReadBudget {
        let rate: Double
        let burst: Double
        var allowance: Double
        /// Messages, counted the same way (Pings included, which the session answers
        /// itself before any other budget sees them).
        let messageRate: Double
        let messageBurst: Double
        var messages: Double
        var refilled: Instant

        mutating func refill(_ now: Instant) {
            let dt = max(0, now.seconds(since: refilled))
            allowance = min(burst, allowance + rate * dt)
            messages = min(messageBurst, messages + messageRate * dt)
            refilled = now
        }

        /// Seconds until both debts are paid off (0 when there is none).
        var wait: Double { max(0, -allowance / rate, -messages / messageRate) }
    }

    init(session: Session, connection: PeerConnection, readRate: ReadRate? = nil) {
        self.session = session
        self.connection = connection
        readBudget = readRate.map {
            ReadBudget(rate: max(1, $0.bytes), burst: max(1, $0.byteBurst), allowance: $0.byteBurst,
                       messageRate: max(1, $0.messages), messageBurst: max(1, $0.messageBurst), messages: $0.messageBurst, refilled: .now())
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        connection.handlerBox.value.handler = self
    }

    /// The context holds this handler strongly, so holding the context here makes a cycle
    /// (handler, context, pipeline, channel) that outlives the connection: drop it when the
    /// pipeline lets go of the handler.
    func setAnswersExpected(_ expected: Bool) { session.answersExpected = expected }

    func handlerRemoved(context: ChannelHandlerContext) {
        delayedRead?.cancel()
        delayedRead = nil
        // Whatever removed the handler, the connection is over: complete its promises.
        finish(.connectionLost("connection closed"))
        timer?.cancel()
        timer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        connection.cacheAddress()
        perform(session.start(now: .now()))
        scheduleTick()
        context.fireChannelActive()
    }

    /// Backpressure: while the peer does not take what this node queued for it, do not
    /// read more of its input, so nothing it sends can make the queue grow further.
    func read(context: ChannelHandlerContext) {
        guard context.channel.isWritable else {
            readPending = true
            return
        }
        readBudget?.refill(.now())
        // Answers to this node's own requests (a pack it asked for) are never throttled.
        if !session.answersExpected, let budget = readBudget, budget.wait > 0 {
            // Over the read budget: read again once the debt is paid off.
            guard delayedRead == nil else { return }
            let wait = max(0.001, min(5, budget.wait))
            delayedRead = context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(wait * 1e9))) { [self] in
                delayedRead = nil
                if let context = self.context { self.read(context: context) }
            }
            return
        }
        context.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, readPending {
            readPending = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        // Charged after the fact (the bytes are already here); a debt delays the next read.
        if !session.answersExpected { readBudget?.allowance -= Double(buffer.readableBytes) }
        connection.traffic.received.add(UInt64(buffer.readableBytes), ordering: .relaxed)
        let events = buffer.withUnsafeReadableBytes { session.receive($0, now: .now()) }
        if readBudget != nil, !session.answersExpected {
            let count = events.reduce(0) { n, e in
                switch e {
                case .message, .send: return n + 1
                default: return n
                }
            }
            readBudget?.messages -= Double(count)
        }
        perform(events)
        scheduleTick()
    }

    func channelInactive(context: ChannelHandlerContext) {
        perform(session.receiveEOF())
        timer?.cancel()
        finish(.connectionLost("connection closed"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        perform(session.receiveEOF())
        finish(.connectionLost("\(error)"))
        context.close(promise: nil)
    }

    func send(_ message: Message) -> EventLoopFuture<Void> {
        if let finishReason, context == nil { return connection.channel.eventLoop.makeFailedFuture(TransportError.closed(finishReason)) }
        guard let context else { return connection.channel.eventLoop.makeFailedFuture(TransportError.notEstablished) }
        if let finishReason { return context.eventLoop.makeFailedFuture(TransportError.closed(finishReason)) }
        do {
            // Encrypt straight into the socket buffer.
            let prepared = try session.prepare(message)
            var buffer = context.channel.allocator.buffer(capacity: prepared.sealedLength)
            _ = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: prepared.sealedLength) { raw in
                try session.seal(prepared, into: raw)
            }
            connection.traffic.sent.add(UInt64(buffer.readableBytes), ordering: .relaxed)
            let promise = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: promise)
            // A peer that takes our bytes is alive even while its input is not read.
            promise.futureResult.whenSuccess { [self] in session.noteProgress(now: .now()) }
            return promise.futureResult
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
    }

    func closeWithGoodbye(_ code: ReasonCode, _ reason: String) {
        guard let context, !finished else { return }
        let bytes = session.goodbye(code, reason)
        if !bytes.isEmpty {
            connection.traffic.sent.add(UInt64(bytes.count), ordering: .relaxed)
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        }
        finish(.localGoodbye(Goodbye(code: code, reason: reason)))
        flushAndClose(context)
    }

    /// Seconds a closing connection may take to flush what was written (a Goodbye
    /// included) before it is cut, so a peer that stops reading cannot hold it open.
    static let closeFlushLimit: Int64 = 5

    /// Closes after everything written so far has reached the socket, so a Goodbye is not
    /// lost; a peer that does not read it within `closeFlushLimit` is cut off anyway.
    private func flushAndClose(_ context: ChannelHandlerContext) {
        let channel = context.channel
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)), promise: promise)
        let cutoff = context.eventLoop.scheduleTask(in: .seconds(Self.closeFlushLimit)) { channel.close(promise: nil) }
        promise.futureResult.whenComplete { _ in
            cutoff.cancel()
            channel.close(promise: nil)
        }
    }

    private func finish(_ reason: SessionClose) {
        guard !finished else { return }
        finished = true
        finishReason = reason
        timer?.cancel()
        connection.didClose(reason)
    }

    private func perform(_ events: [SessionEvent]) {
        guard let context else { return }
        var wrote = false
        for event in events {
            switch event {
            case let .send(bytes):
                connection.traffic.sent.add(UInt64(bytes.count), ordering: .relaxed)
                context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
                wrote = true
            case let .established(info):
                connection.didEstablish(info)
            case let .message(message):
                connection.didReceive(message)
            case .discarded:
                connection.state.withLockedValue { $0.discarded += 1 }
            case let .closed(reason):
                finish(reason)
                // Once the socket is closed (the peer's EOF) there is nothing to flush: no
                // empty write, cutoff timer and close that would all fail.
                if context.channel.isActive { flushAndClose(context) }
                return
            }
        }
        if wrote { context.flush() }
    }

    private func scheduleTick() {
        guard let context, let deadline = session.nextDeadline, !finished else { return }
        if let current = timerDeadline, current <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        let now = Instant.now()
        let delay = deadline > now ? Int64(deadline.nanoseconds - now.nanoseconds) : 0
        timer = context.eventLoop.scheduleTask(in: .nanoseconds(delay)) { [self] in
            timer = nil
            timerDeadline = nil
            perform(session.tick(now: .now()))
            scheduleTick()
        }
    }
}
