import GutsGossip
import GutsPolicy
import GutsSupport
import GutsSync
import GutsWire
import NIOConcurrencyHelpers

/// One connection's budgets (token buckets from GutsPolicy): messages, bytes, and
/// requests that cost the node work (GetRefs, GetObjects, IWant, Subscribe). Checked on
/// the connection's loop before a message reaches any protocol; what is over budget is
/// dropped (requests answered busy with a retry-after), never queued.
public final class LinkGuard: Sendable {
    /// Per-connection rates (per second) and bursts; settable in the config file.
    public typealias Rates = LinkRates

    enum Verdict: Equatable {
        case allow
        /// A request over budget: answer busy (request ID, seconds to wait).
        case busy(UInt32, Double)
        /// Dropped; names the budget.
        case drop(String)
    }

    struct Buckets {
        var messages: TokenBucket
        var bytes: TokenBucket
        var requests: TokenBucket
        var bytesSeen: UInt64 = 0
    }

    private let buckets: NIOLockedValueBox<Buckets>

    init(rates: Rates, now: Instant = .now()) {
        buckets = NIOLockedValueBox(Buckets(messages: TokenBucket(rate: rates.messages, burst: rates.messageBurst, now: now),
                                            bytes: TokenBucket(rate: rates.bytes, burst: rates.byteBurst, now: now),
                                            requests: TokenBucket(rate: rates.requests, burst: rates.requestBurst, now: now)))
    }

    /// Charges one message (and the bytes received since the last one).
    func admit(_ message: Message, bytesReceived: UInt64, now: Instant) -> Verdict {
        buckets.withLockedValue { b in
            let delta = bytesReceived > b.bytesSeen ? Double(bytesReceived - b.bytesSeen) : 0
            b.bytesSeen = max(b.bytesSeen, bytesReceived)
            let bytesOK = b.bytes.take(min(delta, b.bytes.burst), now: now)
            guard b.messages.take(1, now: now) else { return .drop("message") }
            guard bytesOK else { return .drop("byte") }
            if let sync = message.syncMessage, sync.isRequest {
                guard b.requests.take(1, now: now) else { return .busy(sync.requestID, b.requests.retryAfter(1, now: now)) }
            } else if let gossip = message.gossipMessage {
                switch gossip {
                case .iWant, .subscribe:
                    guard b.requests.take(1, now: now) else { return .drop("request") }
                default: break
                }
            }
            return .allow
        }
    }
}
