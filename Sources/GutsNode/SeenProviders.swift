import GutsIdentity
import GutsSupport
import GutsTrust

/// Who announced which repository through gossip (SignedRefs carries the repository ID and
/// the origin holds that state): a second source of providers besides the DHT, for `find`
/// and `guts sync REPO-ID` through a running node (guts-find(1)). Pure and bounded:
///
/// - an entry lives `lifetime` seconds after the latest announcement that refreshed it;
/// - at most `maxPerRepository` announcers per repository (the least recently seen makes
///   way), `maxPerOrigin` repositories per announcer (its own oldest entry makes way, so one
///   origin announcing many repositories cannot crowd out others), and `maxEntries` entries
///   in all (the oldest entry anywhere makes way).
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

    public let limits: Limits
    private var byRepository: [RepositoryID: [PeerID: Instant]] = [:]
    private var perOrigin: [PeerID: Int] = [:]
    public private(set) var count = 0

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// `origin` announced a state of `repository` at `now`.
    public mutating func record(_ repository: RepositoryID, origin: PeerID, now: Instant) {
        expire(now: now)
        if byRepository[repository]?[origin] != nil {
            byRepository[repository]?[origin] = now
            return
        }
        if let list = byRepository[repository], list.count >= limits.maxPerRepository,
           let oldest = list.min(by: { $0.value < $1.value })?.key {
            remove(repository, oldest)
        }
        if perOrigin[origin, default: 0] >= limits.maxPerOrigin,
           let oldest = byRepository.compactMap({ r, list in list[origin].map { (r, $0) } }).min(by: { $0.1 < $1.1 })?.0 {
            remove(oldest, origin)
        }
        if count >= limits.maxEntries, let oldest = oldestEntry() { remove(oldest.0, oldest.1) }
        byRepository[repository, default: [:]][origin] = now
        perOrigin[origin, default: 0] += 1
        count += 1
    }

    /// The live announcers of `repository`, most recently seen first.
    public func providers(of repository: RepositoryID, now: Instant) -> [Provider] {
        (byRepository[repository] ?? [:])
            .filter { now.seconds(since: $0.value) <= limits.lifetime }
            .map { Provider(peer: $0.key, seen: $0.value) }
            .sorted { $0.seen != $1.seen ? $0.seen > $1.seen : $0.peer < $1.peer }
    }

    /// Drops entries older than `lifetime`.
    public mutating func expire(now: Instant) {
        for (repo, list) in byRepository {
            for (origin, seen) in list where now.seconds(since: seen) > limits.lifetime { remove(repo, origin) }
        }
    }

    private func oldestEntry() -> (RepositoryID, PeerID)? {
        var best: (RepositoryID, PeerID, Instant)?
        for (repo, list) in byRepository {
            for (origin, seen) in list where best.map({ seen < $0.2 }) ?? true { best = (repo, origin, seen) }
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
