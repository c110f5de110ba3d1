import GutsIdentity
import GutsSupport
import GutsTrust

/// Who announced which repository through gossip (SignedRefs carries the repository ID and
/// the origin holds that state): a second source of providers besides the DHT, for `find`
/// and `guts sync REPO-ID` through a running node (guts-find(1)). Pure and bounded:
///
/// - an entry lives `lifetime` seconds after the latest announcement that refreshed it;
/// - at most `maxPerRepository` announcers per repository: the one with the lowest score
///   (the node's standing of it when it last announced), the least recently seen among
///   equals, makes way, so fresh identities flooding a repository push out each other
///   rather than a well-scored announcer; `maxPerOrigin` repositories per announcer (its own
///   oldest entry makes way, so one origin announcing many repositories cannot crowd out
///   others), and `maxEntries` entries in all (the oldest entry anywhere makes way).
public struct SeenProviders: Sendable {
    public struct Limits: Sendable, Equatable {
        public var lifetime = 3600.0
        public var maxPerRepository = 16
        public var maxPerOrigin = 64
        public var maxEntries = 8192
        public init() {}
    }

    public struct Provider: Sendable, Equatable {
        public var peer: PeerID
        public var seen: Instant
    }

    struct Entry: Sendable {
        var seen: Instant
        var score: Double
    }

    public let limits: Limits
    private var byRepository: [RepositoryID: [PeerID: Entry]] = [:]
    private var perOrigin: [PeerID: Int] = [:]
    public private(set) var count = 0

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// `origin` (whose score this node holds at `score`) announced a state of `repository`
    /// at `now`.
    public mutating func record(_ repository: RepositoryID, origin: PeerID, score: Double = 0, now: Instant) {
        expire(now: now)
        let entry = Entry(seen: now, score: score)
        if byRepository[repository]?[origin] != nil {
            byRepository[repository]?[origin] = entry
            return
        }
        if let list = byRepository[repository], list.count >= limits.maxPerRepository {
            // The lowest score makes way, the least recently seen among equals; a newcomer
            // scored below every entry is not kept.
            guard let worst = list.min(by: { a, b in
                a.value.score != b.value.score ? a.value.score < b.value.score : a.value.seen < b.value.seen
            }), worst.value.score <= score else { return }
            remove(repository, worst.key)
        }
        if perOrigin[origin, default: 0] >= limits.maxPerOrigin,
           let oldest = byRepository.compactMap({ r, list in list[origin].map { (r, $0.seen) } }).min(by: { $0.1 < $1.1 })?.0 {
            remove(oldest, origin)
        }
        if count >= limits.maxEntries, let oldest = oldestEntry() { remove(oldest.0, oldest.1) }
        byRepository[repository, default: [:]][origin] = entry
        perOrigin[origin, default: 0] += 1
        count += 1
    }

    /// The live announcers of `repository`, most recently seen first.
    public func providers(of repository: RepositoryID, now: Instant) -> [Provider] {
        (byRepository[repository] ?? [:])
            .filter { now.seconds(since: $0.value.seen) <= limits.lifetime }
            .map { Provider(peer: $0.key, seen: $0.value.seen) }
            .sorted { $0.seen != $1.seen ? $0.seen > $1.seen : $0.peer < $1.peer }
    }

    /// Drops entries older than `lifetime`.
    public mutating func expire(now: Instant) {
        for (repo, list) in byRepository {
            for (origin, e) in list where now.seconds(since: e.seen) > limits.lifetime { remove(repo, origin) }
        }
    }

    private func oldestEntry() -> (RepositoryID, PeerID)? {
        var best: (RepositoryID, PeerID, Instant)?
        for (repo, list) in byRepository {
            for (origin, e) in list where best.map({ e.seen < $0.2 }) ?? true { best = (repo, origin, e.seen) }
        }
        return best.map { ($0.0, $0.1) }
    }

    private mutating func remove(_ repository: RepositoryID, _ origin: PeerID) {
        guard byRepository[repository]?.removeValue(forKey: origin) != nil else { return }
        if byRepository[repository]?.isEmpty ?? false { byRepository[repository] = nil }
        let n = perOrigin[origin, default: 1] - 1
        perOrigin[origin] = n > 0 ? n : nil
        count -= 1
    }
}
