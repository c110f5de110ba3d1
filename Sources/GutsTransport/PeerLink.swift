import GutsWire
import NIOCore

/// One authenticated connection to a peer, whatever carries it (TCP today; QUIC later).
/// The node, the sync client and server and gossip reach connections only through this
/// interface, so a second transport plugs in without touching them.
public protocol PeerLink: AnyObject, Sendable {
    /// The remote `ip:port`, still known after the link closed.
    var remoteAddress: String { get }
    /// Whether the remote side dialled this node.
    var inbound: Bool { get }
    /// The remote identity and what it announced, once the session is established.
    var peer: PeerInfo? { get }
    /// Completes when the session is established; fails with the close reason otherwise.
    var establishedFuture: EventLoopFuture<PeerInfo> { get }
    /// Completes with the reason when the link ends.
    var closeFuture: EventLoopFuture<SessionClose> { get }
    /// Whether the link has ended (work queued for it can be dropped).
    var isClosed: Bool { get }

    /// Queues one message; the future completes when it was handed to the transport.
    @discardableResult func send(_ message: Message) -> EventLoopFuture<Void>
    /// Says Goodbye and closes once what was queued before it is flushed (bounded).
    func close(_ code: ReasonCode, _ reason: String)
    /// Closes at once without a Goodbye (for a peer that does not read).
    func abort()
    /// Bytes queued for the peer that the transport has not written yet.
    func pendingOutboundBytes() -> EventLoopFuture<Int>
    /// False while more is queued for the peer than it has taken (above the high
    /// watermark); best-effort traffic (gossip pushes) is dropped meanwhile.
    var isWritable: Bool { get }

    /// Offers every application message to `handler` first; what it declines (returns
    /// false for) is queued for `nextMessage`, as answers to this side's requests are.
    func setMessageHandler(_ handler: @escaping @Sendable (any PeerLink, Message) -> Bool)
    /// The next queued message (see `setMessageHandler`), waiting up to `timeout` seconds.
    func nextMessage(timeout: Double) -> EventLoopFuture<Message>
    /// Brackets requests whose answers a caller reads with `nextMessage`.
    func beginRequests()
    func endRequests()
    /// Whether a caller waits for answers on this link.
    var expectsAnswers: Bool { get }

    /// When the link was set up (Unix time), and its traffic so far.
    var openedAt: Double { get }
    var bytesReceived: UInt64 { get }
    var bytesSent: UInt64 { get }
    /// The last measured round trip in seconds, when one was measured.
    var lastRoundTrip: Double? { get }
    /// Sends a Ping and completes with the round trip (nil when no Pong came in time).
    func measureRoundTrip(timeout: Double) -> EventLoopFuture<Double?>
    /// Large answers that arrived while no request was outstanding and were skipped.
    var discardedAnswers: Int { get }
    /// What carries the link: "tcp" or "quic".
    var transportName: String { get }
}

extension PeerConnection: PeerLink {
    public var transportName: String { "tcp" }

    public func setMessageHandler(_ handler: @escaping @Sendable (any PeerLink, Message) -> Bool) {
        setConnectionHandler { connection, message in handler(connection, message) }
    }

    public func abort() { channel.close(promise: nil) }

    public var isWritable: Bool { channel.isWritable }

    public func pendingOutboundBytes() -> EventLoopFuture<Int> {
        channel.getOption(.bufferedWritableBytes)
    }
}
