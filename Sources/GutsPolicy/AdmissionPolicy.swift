import GutsSupport

/// Decides whether a new inbound connection may start its handshake, keeping the pending
/// handshakes within a per-address-group cap and a global cap.
///
/// When a cap is reached the newcomer is still accepted, and a pending handshake is evicted
/// at random from the busiest address group: the newcomer's own group when that group is
/// at its cap, otherwise the group with the most pending handshakes (ties broken at random).
/// Refusing newcomers would let an attacker who holds every slot lock everyone out; silence
/// is no sign of an attacker either (one that trickles bytes is never silent), so the victim
/// is chosen at random, and an honest handshake survives each eviction with probability
/// 1 - 1/n among the n pending in its group.
///
/// Optionally each address group may also start only `groupRate` handshakes per second
/// (burst `groupBurst`), which bounds the handshake work one group can cause; beyond it
/// the newcomer is refused with the time to wait.
///
/// Pure: the caller says when a handshake ends (`pendingEnded`), passes the time, and seeds
/// the generator that picks victims.
public struct AdmissionPolicy<ID: Hashable & Sendable>: Sendable {
    public struct Limits: Equatable, Sendable {
        /// Pending handshakes from one address group.
        public var maxPendingPerGroup = 8
        /// Pending handshakes in all.
        public var maxPending = 64
        /// New handshakes per second from one address group; nil for no rate limit.
        public var groupRate: Double? = 10
        public var groupBurst = 20.0
        /// Address groups whose rate is tracked (see `KeyedLimiter`).
        public var maxTrackedGroups = 4_096

        public init() {}
    }

    public enum Refusal: Equatable, Sendable {
        /// The group started too many handshakes lately; it may try again after this many seconds.
        case rateLimited(retryAfter: Double)
        /// This ID is already pending.
        case duplicate
        /// A cap is 0: nothing may be admitted.
        case noCapacity
    }

    public enum Decision: Equatable, Sendable {
        case accept
        /// Accept, and close this pending handshake (already forgotten by the policy).
        case acceptEvicting(ID)
        case refuse(Refusal)
    }

    public let limits: Limits
    /// The seed of the victim generator, for reproducing a run.
    public let seed: UInt64
    private var random: PolicyRandom
    private var members: [AddressGroup: [ID]] = [:]
    private var slots: [ID: (group: AddressGroup, index: Int)] = [:]
    private var rate: KeyedLimiter<AddressGroup>?

    public init(limits: Limits = Limits(), seed: UInt64) {
        self.limits = limits
        self.seed = seed
        random = PolicyRandom(seed: seed)
        if let r = limits.groupRate {
            rate = KeyedLimiter(rate: r, burst: limits.groupBurst, maxKeys: limits.maxTrackedGroups)
        }
    }

    /// Pending handshakes in all.
    public var pendingCount: Int { slots.count }

    /// Pending handshakes from `group`.
    public func pending(in group: AddressGroup) -> Int { members[group]?.count ?? 0 }

    public func isPending(_ id: ID) -> Bool { slots[id] != nil }

    /// Decides on a new connection `id` from `group` at `now`. On `.accept` and
    /// `.acceptEvicting` the newcomer is pending until `pendingEnded(id)`.
    public mutating func admit(_ id: ID, group: AddressGroup, now: Instant) -> Decision {
        guard slots[id] == nil else { return .refuse(.duplicate) }
        guard limits.maxPending > 0, limits.maxPendingPerGroup > 0 else { return .refuse(.noCapacity) }
        if let passed = rate?.take(group, now: now), !passed {
            return .refuse(.rateLimited(retryAfter: rate?.retryAfter(group, now: now) ?? 0))
        }
        var victim: ID?
        if pending(in: group) >= limits.maxPendingPerGroup {
            victim = pickVictim(in: group)
        } else if slots.count >= limits.maxPending {
            victim = pickVictim(in: busiestGroup())
        }
        if let victim { remove(victim) }
        add(id, group)
        return victim.map { .acceptEvicting($0) } ?? .accept
    }

    /// The handshake of `id` finished, failed or was closed. Unknown IDs are ignored.
    public mutating func pendingEnded(_ id: ID) { remove(id) }

    /// The group with the most pending handshakes; ties broken at random.
    private mutating func busiestGroup() -> AddressGroup? {
        var best = [AddressGroup]()
        var most = 0
        for (group, ids) in members {
            if ids.count > most {
                most = ids.count
                best = [group]
            } else if ids.count == most {
                best.append(group)
            }
        }
        guard !best.isEmpty else { return nil }
        // Dictionary order varies between processes; sort so the seed alone decides.
        best.sort()
        return best[Int(random.next() % UInt64(best.count))]
    }

    private mutating func pickVictim(in group: AddressGroup?) -> ID? {
        guard let group, let ids = members[group], !ids.isEmpty else { return nil }
        return ids[Int(random.next() % UInt64(ids.count))]
    }

    private mutating func add(_ id: ID, _ group: AddressGroup) {
        members[group, default: []].append(id)
        slots[id] = (group, (members[group]?.count ?? 1) - 1)
    }

    private mutating func remove(_ id: ID) {
        // In place: copying the group's array out of the dictionary and back would copy
        // every element on each handshake's end.
        guard let (group, index) = slots.removeValue(forKey: id), let at = members.index(forKey: group),
              index < members.values[at].count else { return }
        let last = members.values[at].removeLast()
        if index < members.values[at].count {
            members.values[at][index] = last
            slots[last] = (group, index)
        }
        if members.values[at].isEmpty { members.remove(at: at) }
    }
}
