import GutsIdentity
import GutsPolicy
import GutsSupport

/// The Kademlia routing table of one node: 256 k-buckets, bucket `i` holding contacts whose
/// ID shares exactly `i` leading bits with the local ID.
///
/// Rules (guts-protocol(7), DHT):
/// - A contact enters only through `insert`, which the node calls after a completed handshake
///   and a successful dial-back to the contact's address; contacts learned from answers feed
///   lookups only.
/// - A full bucket keeps its contacts: the newcomer waits in the bucket's replacement cache
///   and the least-recently-seen contact is pinged first (`.pingOldest`); only if it does
///   not answer is it replaced. Long-lived contacts therefore stay (they are the likeliest
///   to stay up, and an attacker cannot flush them by announcing fresh identities).
/// - A contact that failed a request is replaced without a ping when a newcomer waits.
/// - At most `maxPerGroupPerBucket` contacts per address group in a bucket and
///   `maxPerGroupTotal` in the table, so one network cannot fill a bucket or the table.
///
/// Buckets are allocated lazily up to the deepest one used, so an idle table is small.
public struct RoutingTable: Sendable {
    public struct Entry: Sendable, Equatable {
        public var contact: DHTContact
        /// When the contact was first verified (earlier for a contact restored from disk).
        public var firstSeen: Instant
        /// Last verification or answer.
        public var lastSeen: Instant
        /// Consecutive failed requests.
        public var failures: Int
        /// The address group of `contact.address` (kept to make the group limits cheap).
        var group: AddressGroup

        init(contact: DHTContact, firstSeen: Instant, lastSeen: Instant, failures: Int) {
            self.contact = contact
            self.firstSeen = firstSeen
            self.lastSeen = lastSeen
            self.failures = failures
            group = contact.address.group
        }
    }

    struct Bucket: Sendable {
        /// Least recently seen first.
        var entries: [Entry] = []
        /// Most recently verified last.
        var replacements: [Entry] = []
        /// The contact being pinged because a newcomer wants its place, and the ping's deadline.
        var pinging: (id: NodeID, deadline: Instant)?
        var lastRefresh: Instant
    }

    public enum InsertResult: Equatable, Sendable {
        /// Now in the table.
        case added
        /// Was already there; moved to most recently seen (and its address updated).
        case updated
        /// The bucket is full: ping this contact and report with `pingAnswered`; the
        /// newcomer waits in the replacement cache meanwhile.
        case pingOldest(DHTContact)
        /// The bucket is full and a ping is already running: the newcomer waits in the
        /// replacement cache.
        case cached
        case rejected(Rejection)
    }

    public enum Rejection: Equatable, Sendable {
        case isSelf
        case groupLimitInBucket
        case groupLimitInTable
    }

    public let localID: NodeID
    public let config: DHTConfig
    private(set) var buckets: [Bucket] = []
    /// Bucket index of every contact in the table.
    private var where_: [NodeID: Int] = [:]
    private var groupTotals: [AddressGroup: Int] = [:]
    private let created: Instant

    public init(localID: NodeID, config: DHTConfig, now: Instant) {
        self.localID = localID
        self.config = config
        self.created = now
    }

    /// Contacts in the table.
    public var count: Int { where_.count }
    public func contains(_ id: NodeID) -> Bool { where_[id] != nil }

    /// The bucket a contact belongs in (nil for the local ID).
    public func bucketIndex(_ id: NodeID) -> Int? {
        let cpl = localID.commonPrefixLength(with: id)
        return cpl < 256 ? cpl : nil
    }

    /// Every entry, bucket by bucket, least recently seen first within a bucket.
    public var entries: [Entry] { buckets.flatMap(\.entries) }

    /// The entry for `id`, if in the table.
    public func entry(_ id: NodeID) -> Entry? {
        guard let b = where_[id] else { return nil }
        return buckets[b].entries.first { $0.contact.id == id }
    }

    /// Contacts per bucket index (for tests and statistics).
    public func bucketSizes() -> [Int] { buckets.map(\.entries.count) }
    public func replacementCount(bucket: Int) -> Int { bucket < buckets.count ? buckets[bucket].replacements.count : 0 }

    private mutating func ensureBucket(_ i: Int) {
        while buckets.count <= i { buckets.append(Bucket(lastRefresh: created)) }
    }

    private func groupCount(_ g: AddressGroup, in bucket: Int, excluding id: NodeID? = nil) -> Int {
        guard bucket < buckets.count else { return 0 }
        var n = 0
        for e in buckets[bucket].entries where e.group == g && e.contact.id != id { n += 1 }
        return n
    }

    private func groupAllows(_ c: DHTContact, bucket: Int, replacing id: NodeID? = nil) -> Rejection? {
        let g = c.address.group
        let inBucket = groupCount(g, in: bucket, excluding: c.id)
        let replacedSame = id.flatMap { entry($0) }.map { $0.group == g } ?? false
        if inBucket - (replacedSame ? 1 : 0) >= config.maxPerGroupPerBucket { return .groupLimitInBucket }
        if groupTotals[g, default: 0] - (replacedSame ? 1 : 0) >= config.maxPerGroupTotal { return .groupLimitInTable }
        return nil
    }

    /// A verified contact (handshake completed and dial-back succeeded). `knownFor` carries
    /// the age of a contact restored from a saved table, so long-lived contacts keep their
    /// precedence across restarts.
    public mutating func insert(_ c: DHTContact, now: Instant, knownFor: Double = 0) -> InsertResult {
        guard let b = bucketIndex(c.id) else { return .rejected(.isSelf) }
        ensureBucket(b)
        if let i = buckets[b].entries.firstIndex(where: { $0.contact.id == c.id }) {
            var e = buckets[b].entries.remove(at: i)
            if e.contact.address != c.address, groupAllows(c, bucket: b) == nil {
                adjustGroup(e.group, -1)
                adjustGroup(c.address.group, 1)
                e.contact = c
                e.group = c.address.group
            }
            e.lastSeen = now
            e.failures = 0
            buckets[b].entries.append(e)
            return .updated
        }
        if let rejection = groupAllows(c, bucket: b) { return .rejected(rejection) }
        let first = Instant(nanoseconds: now.nanoseconds &- min(now.nanoseconds, nanoseconds(knownFor)))
        let fresh = Entry(contact: c, firstSeen: first, lastSeen: now, failures: 0)
        if buckets[b].entries.count < config.k {
            add(fresh, bucket: b)
            buckets[b].lastRefresh = now
            return .added
        }
        // Full: a contact that failed requests makes way at once.
        if let i = buckets[b].entries.firstIndex(where: { $0.failures > 0 }) {
            removeAt(bucket: b, index: i)
            add(fresh, bucket: b)
            return .added
        }
        cacheReplacement(fresh, bucket: b)
        if buckets[b].pinging != nil { return .cached }
        guard let oldest = buckets[b].entries.first else { return .cached }
        buckets[b].pinging = (oldest.contact.id, now.after(config.pingTimeout))
        return .pingOldest(oldest.contact)
    }

    private mutating func adjustGroup(_ g: AddressGroup, _ delta: Int) {
        let n = groupTotals[g, default: 0] + delta
        groupTotals[g] = n > 0 ? n : nil
    }

    private mutating func add(_ e: Entry, bucket b: Int) {
        buckets[b].entries.append(e)
        where_[e.contact.id] = b
        adjustGroup(e.group, 1)
        buckets[b].replacements.removeAll { $0.contact.id == e.contact.id }
    }

    private mutating func removeAt(bucket b: Int, index i: Int) {
        let e = buckets[b].entries.remove(at: i)
        where_[e.contact.id] = nil
        adjustGroup(e.group, -1)
        if buckets[b].pinging?.id == e.contact.id { buckets[b].pinging = nil }
    }

    private mutating func cacheReplacement(_ e: Entry, bucket b: Int) {
        buckets[b].replacements.removeAll { $0.contact.id == e.contact.id }
        buckets[b].replacements.append(e)
        if buckets[b].replacements.count > config.replacementCacheSize { buckets[b].replacements.removeFirst() }
    }

    /// Moves the most recently verified replacement that fits the group limits into bucket
    /// `b`; returns it.
    private mutating func promote(bucket b: Int) -> DHTContact? {
        while let candidate = buckets[b].replacements.popLast() {
            guard buckets[b].entries.count < config.k else {
                buckets[b].replacements.append(candidate)
                return nil
            }
            if groupAllows(candidate.contact, bucket: b) == nil {
                add(candidate, bucket: b)
                return candidate.contact
            }
        }
        return nil
    }

    /// The answer to a `.pingOldest`: alive, the old contact stays and becomes most recently
    /// seen; dead, it is removed and the newest waiting replacement takes its place (returned).
    @discardableResult
    public mutating func pingAnswered(_ id: NodeID, alive: Bool, now: Instant) -> DHTContact? {
        guard let b = bucketIndex(id), b < buckets.count else { return nil }
        if buckets[b].pinging?.id == id { buckets[b].pinging = nil }
        guard let i = buckets[b].entries.firstIndex(where: { $0.contact.id == id }) else { return promote(bucket: b) }
        if alive {
            var e = buckets[b].entries.remove(at: i)
            e.lastSeen = now
            e.failures = 0
            buckets[b].entries.append(e)
            return nil
        }
        removeAt(bucket: b, index: i)
        return promote(bucket: b)
    }

    /// Pings that were not answered in time count as dead; returns the promoted replacements.
    mutating func expirePings(now: Instant) -> [DHTContact] {
        var promoted: [DHTContact] = []
        for b in buckets.indices {
            if let p = buckets[b].pinging, p.deadline <= now, let c = pingAnswered(p.id, alive: false, now: now) {
                promoted.append(c)
            }
        }
        return promoted
    }

    /// The earliest ping deadline.
    var nextPingDeadline: Instant? { buckets.compactMap { $0.pinging?.deadline }.min() }

    /// A request to `id` was answered: it becomes most recently seen.
    public mutating func succeeded(_ id: NodeID, now: Instant) {
        guard let b = where_[id], let i = buckets[b].entries.firstIndex(where: { $0.contact.id == id }) else { return }
        var e = buckets[b].entries.remove(at: i)
        e.lastSeen = now
        e.failures = 0
        buckets[b].entries.append(e)
    }

    /// A request to `id` failed. After `maxFailures` in a row the contact is removed (and a
    /// replacement promoted, returned); before that it only makes way for a newcomer.
    @discardableResult
    public mutating func failed(_ id: NodeID) -> DHTContact? {
        guard let b = where_[id], let i = buckets[b].entries.firstIndex(where: { $0.contact.id == id }) else { return nil }
        buckets[b].entries[i].failures += 1
        if buckets[b].entries[i].failures >= config.maxFailures || !buckets[b].replacements.isEmpty {
            removeAt(bucket: b, index: i)
            return promote(bucket: b)
        }
        return nil
    }

    /// Removes a contact (the node learned it is not a DHT node any more, or banned it).
    public mutating func remove(_ id: NodeID) {
        guard let b = where_[id], let i = buckets[b].entries.firstIndex(where: { $0.contact.id == id }) else { return }
        removeAt(bucket: b, index: i)
        _ = promote(bucket: b)
    }

    /// Up to `count` contacts closest to `target`, closest first; contacts with failed
    /// requests come only when there are not enough others.
    ///
    /// Visits buckets in distance order instead of sorting the table: with `c` the prefix
    /// length the target shares with the local ID, bucket `c` holds the closest contacts,
    /// then every deeper bucket (all at a distance with bit `c` set), then buckets `c - 1`
    /// down to 0, each farther than the one before.
    public func closest(to target: NodeID, count: Int, scopeAtLeast: AddressScope? = nil) -> [DHTContact] {
        guard count > 0, !buckets.isEmpty else { return [] }
        let cpl = localID.commonPrefixLength(with: target)
        var groups: [[Int]] = []
        if cpl < buckets.count {
            groups.append([cpl])
            if cpl + 1 < buckets.count { groups.append(Array((cpl + 1)..<buckets.count)) }
        }
        for j in stride(from: min(cpl, buckets.count) - 1, through: 0, by: -1) { groups.append([j]) }
        var out: [DHTContact] = []
        out.reserveCapacity(count)
        var skippedFailed: [(NodeID, DHTContact)] = []
        for group in groups {
            var found: [(NodeID, Int, Int)] = []
            for b in group {
                for (i, e) in buckets[b].entries.enumerated() {
                    if let s = scopeAtLeast, e.contact.address.scope < s { continue }
                    found.append((e.contact.id.distance(to: target), b, i))
                }
            }
            if found.isEmpty { continue }
            found.sort { $0.0 < $1.0 }
            for (d, b, i) in found {
                let e = buckets[b].entries[i]
                if e.failures > 0 {
                    skippedFailed.append((d, e.contact))
                } else {
                    out.append(e.contact)
                    if out.count == count { return out }
                }
            }
        }
        skippedFailed.sort { $0.0 < $1.0 }
        for (_, c) in skippedFailed where out.count < count { out.append(c) }
        return out
    }

    /// How many contacts in the table are closer to `key` than the local node (counting
    /// stops at `limit`).
    public func closerThanSelf(to key: NodeID, limit: Int) -> Int {
        let own = localID.distance(to: key)
        var n = 0
        for bucket in buckets {
            for e in bucket.entries where e.contact.id.distance(to: key) < own {
                n += 1
                if n >= limit { return n }
            }
        }
        return n
    }

    /// A lookup for `target` ran: its bucket counts as refreshed.
    public mutating func touch(_ target: NodeID, now: Instant) {
        guard let b = bucketIndex(target) else { return }
        ensureBucket(b)
        buckets[b].lastRefresh = now
    }

    /// Buckets due for a refresh at `now`: every bucket up to one past the deepest non-empty
    /// one that saw no lookup or new contact for `refreshInterval`.
    public func bucketsDueForRefresh(now: Instant) -> [Int] {
        let deepest = buckets.lastIndex { !$0.entries.isEmpty } ?? -1
        let limit = min(255, deepest + 1)
        guard limit >= 0 else { return [] }
        let interval = config.refreshInterval
        var due: [Int] = []
        for i in 0...limit {
            let last = i < buckets.count ? buckets[i].lastRefresh : created
            if now.seconds(since: last) >= interval, now > last { due.append(i) }
        }
        return due
    }

    /// The earliest time a bucket becomes due for a refresh.
    var nextRefresh: Instant? {
        guard config.refreshInterval.isFinite, !buckets.isEmpty else { return nil }
        let deepest = buckets.lastIndex { !$0.entries.isEmpty } ?? 0
        var earliest: Instant?
        for i in 0...min(255, deepest + 1) {
            let last = i < buckets.count ? buckets[i].lastRefresh : created
            let t = last.after(config.refreshInterval)
            if earliest.map({ t < $0 }) ?? true { earliest = t }
        }
        return earliest
    }
}

// MARK: - Text form

/// The routing table on disk (`dht-routing-table` in the state directory), written
/// atomically by the node and read back at start:
///
///     # guts dht routing table v1
///     gt<56 base32 characters> 192.0.2.7:9000 86400
///     gt<56 base32 characters> [2001:db8::1]:9000 120
///
/// The first line is the header exactly. Every other line is a comment (`#`), empty, or one
/// contact: its peer ID, a listening address (IP literal and port, IPv6 in brackets) and the
/// whole seconds it has been known, separated by single spaces. Longest-known contacts come
/// first. The file is hostile on reading: it is refused above `maxBytes`; a line that is too
/// long, malformed, duplicate or beyond `maxContacts` is skipped and counted. Restored
/// contacts are candidates only: the node dials them and inserts those that verify.
public enum RoutingTableText {
    public static let header = "# guts dht routing table v1"
    public static let maxBytes = 1 << 20
    public static let maxLineLength = 200
    public static let maxContacts = 256 * 20

    public struct Saved: Equatable, Sendable {
        public var contact: DHTContact
        public var knownFor: UInt64
        public init(contact: DHTContact, knownFor: UInt64) {
            self.contact = contact
            self.knownFor = knownFor
        }
    }

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case tooLarge(Int)
        case badHeader
        public var description: String {
            switch self {
            case let .tooLarge(n): return "routing table file is \(n) bytes, limit \(maxBytes)"
            case .badHeader: return "routing table file does not start with '\(header)'"
            }
        }
    }

    /// The table as text, longest-known contacts first.
    public static func serialize(_ table: RoutingTable, now: Instant) -> String {
        var saved = table.entries.map { e in
            Saved(contact: e.contact, knownFor: UInt64(now.seconds(since: e.firstSeen)))
        }
        saved.sort { $0.knownFor != $1.knownFor ? $0.knownFor > $1.knownFor : $0.contact.id < $1.contact.id }
        return serialize(saved)
    }

    public static func serialize(_ saved: [Saved]) -> String {
        var out = header + "\n"
        for s in saved.prefix(maxContacts) {
            // A 32-byte key always makes a peer ID.
            guard let peer = try? PeerID(publicKey: s.contact.publicKey) else { continue }
            out += "\(peer) \(s.contact.address) \(s.knownFor)\n"
        }
        return out
    }

    /// Parses a saved table; returns the contacts (longest-known first) and how many lines
    /// were skipped.
    public static func parse(_ text: String) throws(ParseError) -> (contacts: [Saved], skipped: Int) {
        let size = text.utf8.count
        guard size <= maxBytes else { throw .tooLarge(size) }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let first = lines.first, first == header else { throw .badHeader }
        lines.removeFirst()
        var out: [Saved] = []
        var seen = Set<NodeID>()
        var skipped = 0
        for line in lines {
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard out.count < maxContacts, line.utf8.count <= maxLineLength else {
                skipped += 1
                continue
            }
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, let peer = PeerID(fields[0]), let address = DHTAddress(fields[1]), !address.quic,
                  let known = parseSeconds(fields[2]),
                  let contact = DHTContact(publicKey: peer.publicKey, address: address),
                  seen.insert(contact.id).inserted
            else {
                skipped += 1
                continue
            }
            out.append(Saved(contact: contact, knownFor: known))
        }
        out.sort { $0.knownFor > $1.knownFor }
        return (out, skipped)
    }

    /// Decimal, no sign or leading zeros, at most 12 digits.
    static func parseSeconds(_ s: Substring) -> UInt64? {
        guard !s.isEmpty, s.utf8.count <= 12, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              s == "0" || !s.hasPrefix("0") else { return nil }
        return UInt64(s)
    }
}
