import GutsSupport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// What every link keeps for its callers, whatever the transport: answers queued for
/// `nextMessage` and the callers waiting for them, the round-trip probe (a Ping waiting
/// for its Pong), and why the link ended. Thread-safe; its futures live on `loop`.
public final class LinkInbox: Sendable {
    /// Most messages kept for `nextMessage` before the peer is considered abusive.
    public static let maxQueuedMessages = 256

    private let loop: EventLoop
    private let state = NIOLockedValueBox(State())

    private struct State {
        var queue: [Message] = []
        var waiters: [EventLoopPromise<Message>] = []
        var closeReason: SessionClose?
        var probe: Probe?
        var roundTrip: Double?
    }

    /// A Ping sent by `measureRoundTrip`, waiting for its Pong.
    private struct Probe {
        let nonce: UInt64
        let sentAt: Instant
        var waiters: [EventLoopPromise<Double?>]
    }

    public init(loop: EventLoop) {
        self.loop = loop
    }

    /// Why the link ended; nil while it is open.
    public var closeReason: SessionClose? { state.withLockedValue { $0.closeReason } }

    /// Round-trip time in seconds of the latest probe that was answered.
    public var lastRoundTrip: Double? { state.withLockedValue { $0.roundTrip } }

    /// Takes what was queued (for a message handler set after messages arrived).
    public func takeQueued() -> [Message] {
        state.withLockedValue { s in
            defer { s.queue = [] }
            return s.queue
        }
    }

    /// Hands `message` to the oldest waiter, or queues it. Returns false when the queue
    /// is past `maxQueuedMessages` (the caller closes the link).
    public func deliver(_ message: Message) -> Bool {
        let (waiter, overflow): (EventLoopPromise<Message>?, Bool) = state.withLockedValue { s in
            if !s.waiters.isEmpty { return (s.waiters.removeFirst(), false) }
            s.queue.append(message)
            return (nil, s.queue.count > Self.maxQueuedMessages)
        }
        waiter?.succeed(message)
        return !overflow
    }

    /// The next queued message, waiting up to `timeout` seconds.
    public func next(timeout: Double) -> EventLoopFuture<Message> {
        let loop = self.loop
        let promise = loop.makePromise(of: Message.self)
        loop.execute {
            let (ready, reason): (Message?, SessionClose?) = self.state.withLockedValue { s in
                if !s.queue.isEmpty { return (s.queue.removeFirst(), nil) }
                if let r = s.closeReason { return (nil, r) }
                s.waiters.append(promise)
                return (nil, nil)
            }
            if let ready { return promise.succeed(ready) }
            if let reason { return promise.fail(TransportError.closed(reason)) }
            let timer = loop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) {
                let removed = self.state.withLockedValue { s -> Bool in
                    guard let i = s.waiters.firstIndex(where: { $0.futureResult === promise.futureResult }) else { return false }
                    s.waiters.remove(at: i)
                    return true
                }
                if removed { promise.fail(TransportError.timeout("waiting for a message")) }
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        return promise.futureResult
    }

    /// Sends a Ping through `ping` (on the loop) and completes with the round-trip time
    /// when its Pong arrives, or nil after `timeout` seconds or when the link ends. Joins
    /// a probe already waiting (sent less than `timeout` ago) instead of sending another.
    /// A late Pong still updates `lastRoundTrip`.
    public func measureRoundTrip(timeout: Double, ping: @escaping @Sendable (UInt64) -> Void) -> EventLoopFuture<Double?> {
        let loop = self.loop
        let promise = loop.makePromise(of: Double?.self)
        loop.execute {
            let now = Instant.now()
            // nil: closed; 0: joined the probe in flight; else the nonce of a new one.
            let nonce: UInt64? = self.state.withLockedValue { s in
                if s.closeReason != nil { return nil }
                if var p = s.probe, now.seconds(since: p.sentAt) < timeout {
                    p.waiters.append(promise)
                    s.probe = p
                    return 0
                }
                let nonce = UInt64.random(in: 1...UInt64.max)
                s.probe = Probe(nonce: nonce, sentAt: now, waiters: (s.probe?.waiters ?? []) + [promise])
                return nonce
            }
            guard let nonce else { return promise.succeed(nil) }
            if nonce != 0 { ping(nonce) }
            let timer = loop.scheduleTask(in: .nanoseconds(Int64(timeout * 1e9))) {
                let removed = self.state.withLockedValue { s -> Bool in
                    guard let i = s.probe?.waiters.firstIndex(where: { $0.futureResult === promise.futureResult }) else { return false }
                    s.probe?.waiters.remove(at: i)
                    return true
                }
                if removed { promise.succeed(nil) }
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        return promise.futureResult
    }

    /// A Pong: when it answers the probe, records the round trip, completes the probe's
    /// waiters and returns true (the Pong is consumed).
    public func answersProbe(_ nonce: UInt64) -> Bool {
        let now = Instant.now()
        let answered: (Double, [EventLoopPromise<Double?>])? = state.withLockedValue { s in
            guard let p = s.probe, p.nonce == nonce else { return nil }
            let rtt = now.seconds(since: p.sentAt)
            s.roundTrip = rtt
            s.probe = nil
            return (rtt, p.waiters)
        }
        guard let (rtt, waiters) = answered else { return false }
        for w in waiters { w.succeed(rtt) }
        return true
    }

    /// The link ended (the first reason sticks): waiters for messages fail, probes get nil.
    public func close(_ reason: SessionClose) {
        let (waiters, probe): ([EventLoopPromise<Message>], Probe?) = state.withLockedValue { s in
            if s.closeReason == nil { s.closeReason = reason }
            defer {
                s.waiters = []
                s.probe = nil
            }
            return (s.waiters, s.probe)
        }
        for w in waiters { w.fail(TransportError.closed(reason)) }
        for w in probe?.waiters ?? [] { w.succeed(nil) }
    }
}
