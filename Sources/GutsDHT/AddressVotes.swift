import GutsPolicy
import GutsSupport

/// What peers report seeing this node's sessions come from (ObservedAddress), and the IP
/// addresses this node adopts from those reports (guts-protocol(7), DHT, Observed addresses).
/// Pure: reports and the time go in, the adopted addresses come out.
///
/// - Each report is one vote for an IP address, cast by the reporter's prefix: its address
///   group (IPv4 /24, IPv6 /56, as the routing table's group limits). A reporter in loopback
///   scope votes as itself (its node ID): processes on one host all connect from 127.0.0.1,
///   and only processes on this host can report a loopback address.
/// - A prefix has one vote, its latest; a vote lasts `lifetime` seconds; at most
///   `maxVoters` prefixes are tracked (the oldest vote makes way).
/// - A report is ignored when the address's scope is narrower than the reporter's (a peer
///   on the Internet cannot make this node advertise a loopback or private address).
/// - Per family, the IP address with votes from at least `quorum` distinct prefixes is
///   adopted, the one with the most votes when several qualify. An adopted address stays
///   (its votes may expire) until another one gathers more votes than it has.
public struct AddressVotes: Sendable {
    /// Who a vote belongs to.
    public enum Voter: Hashable, Sendable {
        case group(AddressGroup)
        case peer(NodeID)
    }

    struct Vote: Sendable {
        var ip: IPAddress
        var at: Instant
    }

    public static let defaultQuorum = 3
    public let quorum: Int
    public let lifetime: Double
    public let maxVoters: Int
    private var votes: [Voter: Vote] = [:]
    /// The adopted IP addresses: at most one IPv4 and one IPv6, IPv4 first.
    public private(set) var adopted: [IPAddress] = []

    public init(quorum: Int = AddressVotes.defaultQuorum, lifetime: Double = 3600, maxVoters: Int = 64) {
        self.quorum = max(1, quorum)
        self.lifetime = lifetime
        self.maxVoters = max(1, maxVoters)
    }

    /// The prefix a reporter votes as.
    public static func voter(_ reporter: DHTContact) -> Voter {
        reporter.address.scope == .loopback ? .peer(reporter.id) : .group(reporter.address.group)
    }

    public var voterCount: Int { votes.count }

    /// Distinct prefixes whose live vote is `ip`.
    public func votes(for ip: IPAddress) -> Int { votes.values.filter { $0.ip == ip }.count }

    /// Counts `reporter`'s report that it sees this node at `observed`; returns true when
    /// the adopted addresses changed.
    @discardableResult
    public mutating func record(_ observed: IPAddress, by reporter: DHTContact, now: Instant) -> Bool {
        guard observed.scope >= reporter.address.scope else { return false }
        expire(now: now)
        let key = Self.voter(reporter)
        if votes[key] == nil, votes.count >= maxVoters,
           let oldest = votes.min(by: { $0.value.at < $1.value.at })?.key {
            votes[oldest] = nil
        }
        votes[key] = Vote(ip: observed, at: now)
        return recompute()
    }

    /// Drops votes older than `lifetime` (adopted addresses stay).
    public mutating func expire(now: Instant) {
        votes = votes.filter { now.seconds(since: $0.value.at) <= lifetime }
    }

    private static func isV4(_ ip: IPAddress) -> Bool {
        if case .v4 = ip { return true }
        return false
    }

    private mutating func recompute() -> Bool {
        var counts: [IPAddress: Int] = [:]
        for v in votes.values { counts[v.ip, default: 0] += 1 }
        var next: [IPAddress] = []
        for v4 in [true, false] {
            let current = adopted.first { Self.isV4($0) == v4 }
            let qualified = counts.filter { Self.isV4($0.key) == v4 && $0.value >= quorum }
            // Most votes; equal counts: the lower address, so the choice is deterministic.
            let best = qualified.max { a, b in a.value != b.value ? a.value < b.value : a.key > b.key }
            if let best, best.value > (current.flatMap { counts[$0] } ?? 0) || current == nil {
                next.append(best.key)
            } else if let current {
                next.append(current)
            }
        }
        guard next != adopted else { return false }
        adopted = next
        return true
    }
}
