import GutsAddress
import GutsIdentity
import GutsSupport

/// How a peer stands in the book at some instant, from best to worst.
public enum PeerStanding: Equatable, Sendable {
    case good
    /// Ignore its gossip and requests.
    case graylisted
    /// Close the connection (the score is below the disconnect threshold).
    case disconnect
    /// Refuse it until `until`; nil means permanently (manual bans only).
    case banned(until: Instant?)
}

/// What to ban or unban: a peer ID or an address / network (`ADDR[/PREFIX]`).
public enum BanTarget: Equatable, Sendable, CustomStringConvertible {
    case peer(PeerID)
    case prefix(AddressPrefix)

    /// Parses a peer ID (`gt...`) or `ADDR[/PREFIX]`, as given on the command line.
    public static func parse(_ text: some StringProtocol) throws(AddressParseError) -> BanTarget {
        if let peer = PeerID(text) { return .peer(peer) }
        if text.hasPrefix(PeerID.prefix), !text.contains(":"), !text.contains(".") {
            throw AddressParseError(text: String(text.prefix(80)), reason: "not a valid peer ID (bad length or checksum)")
        }
        return .prefix(try AddressPrefix.parse(text))
    }

    public var description: String {
        switch self {
        case let .peer(id): return id.description
        case let .prefix(p): return p.description
        }
    }
}

/// A ban: automatic (imposed by the score, always with an end) or manual (by the operator,
/// possibly permanent).
public enum Ban: Equatable, Sendable {
    case automatic(until: Instant)
    /// nil `until` is permanent.
    case manual(until: Instant?)

    /// When the ban ends; nil for a permanent ban.
    public var until: Instant? {
        switch self {
        case let .automatic(until): return until
        case let .manual(until): return until
        }
    }

    public var isManual: Bool {
        if case .manual = self { return true }
        return false
    }

    /// Whether the ban is in force at `now`.
    public func isActive(now: Instant) -> Bool { until.map { now < $0 } ?? true }
}

/// Everything the node remembers about other peers, and its address bans.
///
/// Peers are keyed by peer ID and carry: the endpoints they were seen at (most recent
/// first), when they were last seen, their score counters, their ban and how many times the
/// score has banned them (each repeat doubles the ban, see `ScoreParameters.banDuration`).
/// Address bans cover one address or a network; automatic ones last at most
/// `ScoreParameters.addressBanMax` because NATs put many honest users behind one address.
///
/// Pure: every operation takes `now` on the monotonic clock. Times that must outlive the
/// process (last seen, ban ends) are written to the peers file as Unix seconds through
/// `epoch`, the Unix time at `Instant(nanoseconds: 0)`, which the node computes once at start
/// as `unixTime() - Instant.now().seconds(since: Instant(nanoseconds: 0))`.
///
/// Bounded: at most `limits.maxPeers` peers and `limits.maxAddressBans` address bans. When a
/// new peer would exceed the cap, the book drops down to 7/8 of it, least valuable first:
/// neutral peers, then peers with a bad record (identities are cheap, so their entries matter
/// least), then peers with a good score, then manual bans; least recently seen first within
/// each. A flood of fresh identities therefore never pushes out good peers.
public struct PeerBook: Sendable {
    /// Size limits, for the book and for parsing the peers file.
    public struct Limits: Equatable, Sendable {
        public var maxPeers = 10_000
        public var maxAddressBans = 4_096
        public var maxAddressesPerPeer = 8
        /// Longest line in the peers file, newline excluded.
        public var maxLineBytes = 2_048
        /// Highest offence count kept (the ban duration has long reached its cap by then).
        public var maxOffences = 1_000

        public init() {}

        /// The largest peers file accepted: every line at its longest.
        public var maxFileBytes: Int { (maxLineBytes + 1) * (maxPeers + maxAddressBans + 1) }
    }

    /// One known peer.
    public struct Entry: Equatable, Sendable {
        public let peer: PeerID
        /// Endpoints it was seen at, most recent first (at most `Limits.maxAddressesPerPeer`).
        public internal(set) var addresses: [Endpoint]
        /// Unix seconds when it was last seen.
        public internal(set) var lastSeen: Double
        public internal(set) var score: PeerScore
        public internal(set) var ban: Ban?
        /// Automatic bans so far.
        public internal(set) var offences: Int
    }

    /// A peer worth dialing, from `candidates`.
    public struct Candidate: Equatable, Sendable {
        public let peer: PeerID
        /// Its endpoints, most recent first, without banned addresses.
        public let addresses: [Endpoint]
        public let score: Double
    }

    public let epoch: Double
    public let limits: Limits
    let box: ParametersBox
    var entries: [PeerID: Entry] = [:]
    var bans: [AddressPrefix: Ban] = [:]
    /// How many address bans there are of each (family bits, prefix length), for lookups.
    private var banLengths: [Int: Int] = [:]

    public var parameters: ScoreParameters { box.value }

    /// An empty book. `epoch` is the Unix time at `Instant(nanoseconds: 0)`.
    public init(epoch: Double, parameters: ScoreParameters = ScoreParameters(), limits: Limits = Limits()) {
        self.epoch = epoch.isFinite ? epoch : 0
        self.limits = limits
        box = ParametersBox(parameters)
    }

    /// The number of peers known.
    public var count: Int { entries.count }

    /// Every peer, in peer ID order.
    public var peers: [Entry] { entries.values.sorted { $0.peer < $1.peer } }

    public func entry(_ peer: PeerID) -> Entry? { entries[peer] }

    /// Unix seconds at `now`.
    public func unixTime(_ now: Instant) -> Double { epoch + Double(now.nanoseconds) / 1e9 }

    // MARK: Observations

    /// Notes that `peer` was seen at `now`, reachable at `address` when given.
    public mutating func seen(_ peer: PeerID, at address: Endpoint? = nil, now: Instant) {
        var (entry, isNew) = fetch(peer, now: now)
        if let address { remember(address, in: &entry) }
        store(entry, isNew: isNew, now: now)
    }

    /// Records an event against `peer`'s score and says how the peer stands afterwards.
    ///
    /// When the score falls below the ban threshold the peer ID is banned for
    /// `parameters.banDuration(offence:)` of its new offence count, and its score restarts at
    /// neutral (the ban is the sentence; the next one will be longer). When `address` is
    /// given, that one address is banned too, for at most `parameters.addressBanMax`.
    @discardableResult
    public mutating func record(_ event: ScoreEvent, count: Double = 1, peer: PeerID, address: IPAddress? = nil,
                                now: Instant) -> PeerStanding {
        var (entry, isNew) = fetch(peer, now: now)
        entry.score.record(event, count: count, now: now)
        var standing = PeerStanding.good
        if let ban = entry.ban, ban.isActive(now: now) {
            standing = .banned(until: ban.until)
        } else {
            switch entry.score.verdict(now: now) {
            case .good: standing = .good
            case .graylist: standing = .graylisted
            case .disconnect: standing = .disconnect
            case .ban:
                entry.offences = min(entry.offences + 1, limits.maxOffences)
                let duration = parameters.banDuration(offence: entry.offences)
                let until = later(now, duration)
                entry.ban = .automatic(until: until)
                entry.score.reset(now: now)
                standing = .banned(until: until)
                if let address { penalize(address, for: duration, now: now) }
            }
        }
        store(entry, isNew: isNew, now: now)
        return standing
    }

    /// How `peer` stands at `now` (an unknown peer is good).
    public func standing(_ peer: PeerID, now: Instant) -> PeerStanding {
        guard let entry = entries[peer] else { return .good }
        if let ban = entry.ban, ban.isActive(now: now) { return .banned(until: ban.until) }
        switch entry.score.verdict(now: now) {
        case .good: return .good
        case .graylist: return .graylisted
        case .disconnect, .ban: return .disconnect
        }
    }

    /// `peer`'s score at `now` (0 for an unknown peer).
    public func score(_ peer: PeerID, now: Instant) -> Double { entries[peer]?.score.value(now: now) ?? 0 }

    /// `peer`'s score components at `now`, for display (all 0 for an unknown peer).
    public func components(_ peer: PeerID, now: Instant) -> [(name: String, value: Double)] {
        (entries[peer]?.score ?? PeerScore(box: box, now: now)).components(now: now)
    }

    // MARK: Bans

    /// Bans a peer ID or an address / network by hand, for `seconds` or permanently (nil).
    /// Replaces any ban of the same target. Returns false when the address-ban table is full
    /// of manual bans (nothing changed).
    @discardableResult
    public mutating func ban(_ target: BanTarget, for seconds: Double?, now: Instant) -> Bool {
        let ban = Ban.manual(until: seconds.map { later(now, max(0, $0.isNaN ? 0 : $0)) })
        switch target {
        case let .peer(peer):
            var (entry, isNew) = fetch(peer, now: now, markSeen: false)
            entry.ban = ban
            store(entry, isNew: isNew, now: now)
            return true
        case let .prefix(prefix):
            return insertBan(prefix, ban, now: now)
        }
    }

    /// Bans one address automatically for `seconds`, at most `parameters.addressBanMax`.
    /// Never shortens a longer ban and never replaces a manual one.
    @discardableResult
    public mutating func penalize(_ address: IPAddress, for seconds: Double, now: Instant) -> Bool {
        let duration = min(max(0, seconds.isNaN ? 0 : seconds), parameters.addressBanMax)
        guard duration > 0 else { return false }
        let prefix = AddressPrefix(address)
        let until = later(now, duration)
        if let existing = bans[prefix], existing.isActive(now: now) {
            if existing.isManual { return false }
            if let end = existing.until, end >= until { return false }
        }
        return insertBan(prefix, .automatic(until: until), now: now)
    }

    /// Lifts a ban. For a peer this also forgives it: offences and score return to neutral.
    /// For an address it removes the ban of exactly that prefix. Says whether anything changed.
    @discardableResult
    public mutating func unban(_ target: BanTarget, now: Instant) -> Bool {
        switch target {
        case let .peer(peer):
            guard var entry = entries[peer], entry.ban != nil || entry.offences > 0 || !entry.score.isNeutral(now: now)
            else { return false }
            entry.ban = nil
            entry.offences = 0
            entry.score.reset(now: now)
            entries[peer] = entry
            return true
        case let .prefix(prefix):
            return removeBan(prefix)
        }
    }

    public func isBanned(_ peer: PeerID, now: Instant) -> Bool {
        entries[peer]?.ban?.isActive(now: now) ?? false
    }

    /// Whether an address ban covers `address` at `now`.
    public func isBanned(_ address: IPAddress, now: Instant) -> Bool { addressBan(covering: address, now: now) != nil }

    /// Whether an address ban covers the address in `text`; false for text that is not an
    /// IP address (a host name cannot be checked before it is resolved).
    public func isBanned(address text: some StringProtocol, now: Instant) -> Bool {
        IPAddress(text).map { isBanned($0, now: now) } ?? false
    }

    /// The active ban covering `address` with the latest end, and its prefix.
    public func addressBan(covering address: IPAddress, now: Instant) -> (prefix: AddressPrefix, ban: Ban)? {
        let family = address.bitLength
        var best: (prefix: AddressPrefix, ban: Ban)?
        for (key, n) in banLengths where n > 0 && key >> 8 == family {
            let prefix = AddressPrefix(containing: address, length: key & 0xFF)
            guard let ban = bans[prefix], ban.isActive(now: now) else { continue }
            if let current = best, let end = current.ban.until, let newEnd = ban.until, newEnd <= end { continue }
            if let current = best, current.ban.until == nil { continue }
            best = (prefix, ban)
        }
        return best
    }

    /// Address bans in force at `now`, in prefix order (IPv4 first, then by address).
    public func addressBans(now: Instant) -> [(prefix: AddressPrefix, ban: Ban)] {
        bans.filter { $0.value.isActive(now: now) }.map { ($0.key, $0.value) }.sorted { $0.prefix < $1.prefix }
    }

    // MARK: Choosing and pruning

    /// Peers worth dialing at `now`, best first: not banned, not below the disconnect
    /// threshold, with at least one endpoint not covered by an address ban. Ordered by score
    /// (highest first), then most recently seen, then peer ID.
    public func candidates(now: Instant, limit: Int = .max) -> [Candidate] {
        var out = [(candidate: Candidate, seen: Double)]()
        for entry in entries.values {
            if let ban = entry.ban, ban.isActive(now: now) { continue }
            let score = entry.score.value(now: now)
            guard score >= parameters.disconnectThreshold else { continue }
            let addresses = entry.addresses.filter { !isBanned(address: $0.host, now: now) }
            guard !addresses.isEmpty else { continue }
            out.append((Candidate(peer: entry.peer, addresses: addresses, score: score), entry.lastSeen))
        }
        out.sort { a, b in
            if a.candidate.score != b.candidate.score { return a.candidate.score > b.candidate.score }
            if a.seen != b.seen { return a.seen > b.seen }
            return a.candidate.peer < b.candidate.peer
        }
        return out.prefix(max(0, limit)).map(\.candidate)
    }

    /// Forgets what has run out: expired bans (a peer keeps its offence count), expired address
    /// bans, and neutral peers with no endpoint; then trims to `limits.maxPeers`.
    public mutating func prune(now: Instant) {
        for (peer, var entry) in entries {
            var changed = false
            if let ban = entry.ban, !ban.isActive(now: now) {
                entry.ban = nil
                changed = true
            }
            if entry.ban == nil, entry.offences == 0, entry.addresses.isEmpty, entry.score.isNeutral(now: now) {
                entries[peer] = nil
            } else if changed {
                entries[peer] = entry
            }
        }
        for (prefix, ban) in bans where !ban.isActive(now: now) { removeBan(prefix) }
        trim(to: limits.maxPeers, now: now)
    }

    // MARK: Internals

    /// `peer`'s entry (a new neutral one when unknown), marked seen at `now` unless told not to.
    private func fetch(_ peer: PeerID, now: Instant, markSeen: Bool = true) -> (entry: Entry, isNew: Bool) {
        var entry: Entry
        let isNew: Bool
        if let known = entries[peer] {
            entry = known
            isNew = false
        } else {
            entry = Entry(peer: peer, addresses: [], lastSeen: unixTime(now), score: PeerScore(box: box, now: now), ban: nil, offences: 0)
            isNew = true
        }
        if markSeen { entry.lastSeen = max(entry.lastSeen, unixTime(now)) }
        return (entry, isNew)
    }

    /// Stores an entry from `fetch`, then keeps the book within its cap.
    private mutating func store(_ entry: Entry, isNew: Bool, now: Instant) {
        entries[entry.peer] = entry
        if isNew, entries.count > limits.maxPeers {
            trim(to: max(1, limits.maxPeers - limits.maxPeers / 8), now: now, keep: entry.peer)
        }
    }

    private func remember(_ address: Endpoint, in entry: inout Entry) {
        guard address.host.utf8.count <= Self.maxHostBytes, (0...65535).contains(address.port) else { return }
        var plain = address
        plain.peer = nil
        entry.addresses.removeAll { $0 == plain }
        entry.addresses.insert(plain, at: 0)
        if entry.addresses.count > limits.maxAddressesPerPeer {
            entry.addresses.removeLast(entry.addresses.count - max(0, limits.maxAddressesPerPeer))
        }
    }

    /// The longest host name kept (DNS names are at most 253 bytes).
    static let maxHostBytes = 253

    /// Drops entries, least valuable first, until at most `target` remain (`keep` stays).
    private mutating func trim(to target: Int, now: Instant, keep: PeerID? = nil) {
        guard entries.count > target else { return }
        func tier(_ e: Entry) -> Int {
            if let ban = e.ban, ban.isManual, ban.isActive(now: now) { return 3 }
            let score = e.score.value(now: now)
            if score >= 1 { return 2 }
            if e.offences > 0 || score <= -1 || (e.ban?.isActive(now: now) ?? false) { return 1 }
            return 0
        }
        let ranked = entries.values.filter { $0.peer != keep }.map { (tier: tier($0), seen: $0.lastSeen, peer: $0.peer) }
            .sorted { a, b in
                if a.tier != b.tier { return a.tier < b.tier }
                if a.seen != b.seen { return a.seen < b.seen }
                return a.peer < b.peer
            }
        for victim in ranked.prefix(entries.count - target) { entries[victim.peer] = nil }
    }

    private static func lengthKey(_ prefix: AddressPrefix) -> Int { prefix.address.bitLength << 8 | prefix.length }

    /// Inserts or replaces a ban, making room by dropping expired bans, then the automatic
    /// ban ending soonest. False when only manual bans would have to go for an automatic one,
    /// or the table is full of manual bans.
    @discardableResult
    mutating func insertBan(_ prefix: AddressPrefix, _ ban: Ban, now: Instant) -> Bool {
        if bans[prefix] == nil, bans.count >= limits.maxAddressBans {
            for (p, b) in bans where !b.isActive(now: now) { removeBan(p) }
            if bans.count >= limits.maxAddressBans {
                let soonest = bans.filter { !$0.value.isManual }
                    .min { ($0.value.until ?? Instant(nanoseconds: .max), $0.key) < ($1.value.until ?? Instant(nanoseconds: .max), $1.key) }
                guard let victim = soonest else { return false }
                if !ban.isManual, let end = victim.value.until, let newEnd = ban.until, newEnd < end { return false }
                removeBan(victim.key)
            }
            guard bans.count < limits.maxAddressBans else { return false }
        }
        if bans.updateValue(ban, forKey: prefix) == nil { banLengths[Self.lengthKey(prefix), default: 0] += 1 }
        return true
    }

    @discardableResult
    mutating func removeBan(_ prefix: AddressPrefix) -> Bool {
        guard bans.removeValue(forKey: prefix) != nil else { return false }
        let key = Self.lengthKey(prefix)
        banLengths[key, default: 1] -= 1
        if banLengths[key] == 0 { banLengths[key] = nil }
        return true
    }
}

extension PeerBook: Equatable {
    /// Same epoch, parameters, limits, peers and address bans.
    public static func == (a: PeerBook, b: PeerBook) -> Bool {
        a.epoch == b.epoch && a.limits == b.limits && a.parameters == b.parameters && a.entries == b.entries && a.bans == b.bans
    }
}
