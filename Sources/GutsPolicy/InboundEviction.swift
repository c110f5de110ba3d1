import GutsSupport

/// An inbound connection that could be evicted to make room for a new one.
public struct EvictionCandidate<ID: Hashable & Sendable>: Sendable {
    public var id: ID
    public var group: AddressGroup
    /// When the connection was accepted.
    public var connectedSince: Instant
    /// Lowest ping round trip seen, in seconds; nil before the first answered ping.
    public var minPing: Double?
    /// When it last sent something useful (a first delivery of gossip, verified objects); nil
    /// if never.
    public var lastUseful: Instant?
    /// Its peer score now.
    public var score: Double
    /// Still in the handshake: nothing is known about it yet.
    public var inHandshake: Bool

    public init(id: ID, group: AddressGroup, connectedSince: Instant, minPing: Double? = nil, lastUseful: Instant? = nil,
                score: Double = 0, inHandshake: Bool = false) {
        self.id = id
        self.group = group
        self.connectedSince = connectedSince
        self.minPing = minPing
        self.lastUseful = lastUseful
        self.score = score
        self.inHandshake = inHandshake
    }
}

/// Chooses which inbound connection to drop when the node is full, after Bitcoin Core's
/// eviction logic: protect the peers an attacker finds hardest to imitate, then evict the
/// youngest connection of the address group with the most connections.
///
/// Protected, in this order (a peer protected once is out of the running):
/// 1. one peer from each of `protectGroups` distinct address groups, the groups ordered by a
///    keyed hash an outsider cannot predict (the longest-connected peer of each group);
/// 2. the `protectFastest` peers with the lowest minimum ping (moving closer is physical);
/// 3. the `protectUseful` peers that most recently did something useful (that takes work);
/// 4. the `protectBestScore` peers with the highest positive score;
/// 5. `protectLongestFraction` of those left, longest connected first (attacks that start
///    later cannot displace peers that were already there).
///
/// Peers still in their handshake, and peers scored below `preferEvictBelowScore`, are never
/// protected, and when there are any, only they are considered for eviction. Then
/// the address group with the most candidates is chosen (ties: the group whose newest
/// connection is newest) and its newest connection is evicted. Nil when every peer is
/// protected. Ties in every ordering fall back to the order of the input.
public struct InboundEviction: Sendable {
    public struct Parameters: Equatable, Sendable {
        public var protectGroups = 4
        public var protectFastest = 8
        public var protectUseful = 4
        public var protectBestScore = 4
        public var protectLongestFraction = 0.5
        public var preferEvictBelowScore = 0.0

        public init() {}
    }

    public var parameters: Parameters
    /// The secret that orders address groups for protection; draw it at random per node.
    public let key: UInt64

    public init(parameters: Parameters = Parameters(), key: UInt64) {
        self.parameters = parameters
        self.key = key
    }

    /// The connection to evict, or nil when every candidate is protected.
    public func select<ID>(_ candidates: [EvictionCandidate<ID>]) -> ID? {
        var pool = Array(candidates.enumerated())
        let preferEvict = { (c: EvictionCandidate<ID>) in c.inHandshake || c.score < self.parameters.preferEvictBelowScore }
        var eligible = pool.filter { !preferEvict($0.element) }
        let unprotectable = pool.filter { preferEvict($0.element) }

        // 1. One peer from each of a few distinct groups, in keyed-hash order.
        if parameters.protectGroups > 0 {
            var longest = [AddressGroup: (offset: Int, element: EvictionCandidate<ID>)]()
            for c in eligible {
                if let best = longest[c.element.group], !Self.longerConnected(c, best) { continue }
                longest[c.element.group] = c
            }
            let groups = longest.keys.sorted { a, b in
                let (ha, hb) = (rank(a), rank(b))
                return ha != hb ? ha > hb : a < b
            }
            let protected = Set(groups.prefix(parameters.protectGroups).compactMap { longest[$0]?.offset })
            eligible.removeAll { protected.contains($0.offset) }
        }
        // 2. Lowest ping.
        Self.protect(&eligible, count: parameters.protectFastest, where: { $0.minPing != nil }) { a, b in
            a.minPing ?? .infinity < b.minPing ?? .infinity
        }
        // 3. Most recently useful.
        Self.protect(&eligible, count: parameters.protectUseful, where: { $0.lastUseful != nil }) { a, b in
            a.lastUseful ?? Instant(nanoseconds: 0) > b.lastUseful ?? Instant(nanoseconds: 0)
        }
        // 4. Best positive score.
        Self.protect(&eligible, count: parameters.protectBestScore, where: { $0.score > 0 }) { a, b in a.score > b.score }
        // 5. A fraction of the rest, longest connected first.
        let fraction = parameters.protectLongestFraction.isFinite ? min(max(parameters.protectLongestFraction, 0), 1) : 0
        Self.protect(&eligible, count: Int(Double(eligible.count) * fraction), where: { _ in true }) { a, b in
            a.connectedSince < b.connectedSince
        }

        pool = unprotectable.isEmpty ? eligible : unprotectable
        guard !pool.isEmpty else { return nil }

        var byGroup = [AddressGroup: [(offset: Int, element: EvictionCandidate<ID>)]]()
        for c in pool { byGroup[c.element.group, default: []].append(c) }
        func newest(_ members: [(offset: Int, element: EvictionCandidate<ID>)]) -> (offset: Int, element: EvictionCandidate<ID>)? {
            members.min { Self.longerConnected($1, $0) }
        }
        let busiest = byGroup.values.max { a, b in
            if a.count != b.count { return a.count < b.count }
            guard let na = newest(a), let nb = newest(b) else { return false }
            return Self.longerConnected(na, nb)  // a is "less" when its newest is older
        }
        return busiest.flatMap(newest)?.element.id
    }

    /// The keyed rank of a group for protection.
    private func rank(_ group: AddressGroup) -> UInt64 {
        let (a, b) = group.words
        return keyedHash(key, a, b)
    }

    /// Whether `a` has been connected longer than `b` (ties: earlier in the input).
    private static func longerConnected<ID>(_ a: (offset: Int, element: EvictionCandidate<ID>),
                                            _ b: (offset: Int, element: EvictionCandidate<ID>)) -> Bool {
        a.element.connectedSince != b.element.connectedSince ? a.element.connectedSince < b.element.connectedSince : a.offset < b.offset
    }

    /// Removes from `pool` the first `count` members satisfying `qualifies`, ordered by `better`
    /// (ties: input order).
    private static func protect<ID>(_ pool: inout [(offset: Int, element: EvictionCandidate<ID>)], count: Int,
                                    where qualifies: (EvictionCandidate<ID>) -> Bool,
                                    by better: (EvictionCandidate<ID>, EvictionCandidate<ID>) -> Bool) {
        guard count > 0 else { return }
        let ranked = pool.filter { qualifies($0.element) }.sorted { a, b in
            if better(a.element, b.element) { return true }
            if better(b.element, a.element) { return false }
            return a.offset < b.offset
        }
        let protected = Set(ranked.prefix(count).map(\.offset))
        pool.removeAll { protected.contains($0.offset) }
    }
}
