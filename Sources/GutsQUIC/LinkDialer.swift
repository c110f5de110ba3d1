import GutsAddress
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// Which transport a dial uses.
public enum TransportChoice: String, Sendable {
    /// QUIC first, TCP 250 ms later; whichever completes first is kept.
    case auto
    case tcp
    case quic

    /// Parses `--transport` (tcp, quic); nil for anything else.
    public init?(option: String) {
        switch option {
        case "tcp": self = .tcp
        case "quic": self = .quic
        case "auto": self = .auto
        default: return nil
        }
    }
}

/// Dials a peer over TCP, QUIC, or both in a race.
public enum LinkDialer {
    /// Delay before the TCP attempt of a race starts.
    public static let tcpDelay: TimeAmount = .milliseconds(250)

    /// The transport to use for `endpoint`: an address naming one forces it, then `choice`.
    public static func effective(_ endpoint: Endpoint, _ choice: TransportChoice) -> TransportChoice {
        switch endpoint.transport {
        case .quic?: return .quic
        case .tcp?: return .tcp
        case nil: return choice
        }
    }

    public static func dial(_ endpoint: Endpoint, choice: TransportChoice, config: SessionConfig, group: EventLoopGroup,
                            connectTimeout: Double, source: String? = nil) -> EventLoopFuture<any PeerLink> {
        switch effective(endpoint, choice) {
        case .tcp:
            return Dialer.dial(endpoint, config: config, group: group, connectTimeout: connectTimeout, source: source)
                .map { $0 as any PeerLink }
        case .quic:
            return QUICDialer.dial(quicLeg(endpoint), config: config, group: group, connectTimeout: connectTimeout, source: source)
                .map { $0 as any PeerLink }
        case .auto:
            guard endpoint.quicPort != nil else {
                // The peer advertised no QUIC: TCP at once, without waiting for a QUIC timeout.
                return Dialer.dial(endpoint, config: config, group: group, connectTimeout: connectTimeout, source: source)
                    .map { $0 as any PeerLink }
            }
            return race(endpoint, config: config, group: group, connectTimeout: connectTimeout, source: source)
        }
    }

    /// The QUIC address of `endpoint`: the port it advertised (the same number when it is
    /// unknown, or when QUIC is forced on a peer that advertised none).
    static func quicLeg(_ endpoint: Endpoint) -> Endpoint {
        var e = endpoint
        if e.transport == nil { e.port = e.quicPort ?? e.port }
        e.transport = .quic
        e.quic = .unknown
        return e
    }

    /// QUIC at once, TCP after `tcpDelay`; the first established link wins and the other
    /// is closed when it completes. When both fail, the more telling error is reported
    /// (an authentication failure before an unreachable port).
    static func race(_ endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup,
                     connectTimeout: Double, source: String?) -> EventLoopFuture<any PeerLink> {
        let loop = group.next()
        let promise = loop.makePromise(of: (any PeerLink).self)
        struct State {
            var done = false
            var failures: [Error] = []
            var tcpStarted = false
        }
        let state = NIOLockedValueBox(State())
        let quicAttempt = NIOLockedValueBox<QUICLink?>(nil)
        @Sendable func settle(_ result: Result<any PeerLink, Error>, attempts: Int) {
            switch result {
            case let .success(link):
                let won = state.withLockedValue { s -> Bool in
                    defer { s.done = true }
                    return !s.done
                }
                if won {
                    promise.succeed(link)
                    // TCP won: a QUIC handshake still in progress is abandoned rather than
                    // left retransmitting until its timeout.
                    if let q = quicAttempt.withLockedValue({ $0 }), q !== link, q.peer == nil { q.abort() }
                } else {
                    link.close(.shutdown, "another transport connected first")
                }
            case let .failure(error):
                let finished: [Error]? = state.withLockedValue { s in
                    guard !s.done else { return nil }
                    s.failures.append(error)
                    if s.failures.count == attempts {
                        s.done = true
                        return s.failures
                    }
                    return nil
                }
                if let finished { promise.fail(preferred(finished)) }
            }
        }
        @Sendable func startTCP() {
            let start = state.withLockedValue { s -> Bool in
                defer { s.tcpStarted = true }
                return !s.tcpStarted
            }
            guard start else { return }
            guard !state.withLockedValue({ $0.done }) else {
                // QUIC already won; the TCP attempt never starts.
                settle(.failure(TransportError.notEstablished), attempts: 2)
                return
            }
            Dialer.dial(endpoint, config: config, group: group, connectTimeout: connectTimeout, source: source)
                .whenComplete { result in settle(result.map { $0 as any PeerLink }, attempts: 2) }
        }
        QUICDialer.dial(quicLeg(endpoint), config: config, group: group, connectTimeout: connectTimeout, source: source,
                        created: { link in quicAttempt.withLockedValue { $0 = link } })
            .whenComplete { result in
                // A QUIC failure (nothing on the UDP port) starts TCP at once.
                if case .failure = result { startTCP() }
                settle(result.map { $0 as any PeerLink }, attempts: 2)
            }
        loop.scheduleTask(in: tcpDelay) { startTCP() }
        return promise.futureResult
    }

    /// Among failures of both transports, the one to report: what says most about the
    /// peer (a wrong identity, a refusal, a failed or slow handshake: something listens)
    /// before "nothing there"; on a tie, the TCP attempt's (the later one).
    static func preferred(_ errors: [Error]) -> Error {
        func rank(_ e: Error) -> Int {
            var close = e as? SessionClose
            if case let .closed(reason)? = e as? TransportError { close = reason }
            if case .timeout? = e as? TransportError { return 3 }
            if let c = e as? ChannelError, case .connectTimeout = c { return 3 }
            switch close {
            case .identityMismatch?, .selfConnection?: return 0
            case .remoteGoodbye?, .localGoodbye?: return 1
            case .handshakeFailed?: return 2
            case .timeout?: return 3
            default: return 4
            }
        }
        var best: Error = TransportError.notEstablished
        var bestRank = Int.max
        for e in errors where rank(e) <= bestRank {
            best = e
            bestRank = rank(e)
        }
        return best
    }
}
