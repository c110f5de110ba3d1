/// The records a node holds for others, bounded in count and bytes in total and per
/// publisher, with a cap on providers per repository. Expiry follows the wall clock inside
/// the records (`expires`); `expire` drops what has run out.
struct RecordStore: Sendable {
    private struct Usage: Sendable {
        var count = 0
        var bytes = 0
    }

    private(set) var providers: [NodeID: [NodeID: ProviderRecord]] = [:]
    private(set) var peers: [NodeID: PeerRecord] = [:]
    private var usage: [NodeID: Usage] = [:]
    private(set) var count = 0
    private(set) var bytes = 0
    let config: DHTConfig

    init(config: DHTConfig) { self.config = config }

    private mutating func account(_ publisher: NodeID, count dc: Int, bytes db: Int) {
        var u = usage[publisher, default: Usage()]
        u.count += dc
        u.bytes += db
        usage[publisher] = u.count > 0 ? u : nil
        count += dc
        bytes += db
    }

    private func admits(_ publisher: NodeID, addingBytes size: Int, replacingBytes old: Int?) -> Bool {
        let u = usage[publisher, default: Usage()]
        let dc = old == nil ? 1 : 0
        let db = size - (old ?? 0)
        return count + dc <= config.maxStoredRecords && bytes + db <= config.maxStoredBytes
            && u.count + dc <= config.maxRecordsPerPublisher && u.bytes + db <= config.maxBytesPerPublisher
    }

    /// Stores a validated provider record; a publisher's newer record for the same
    /// repository (later expiry) replaces its older one.
    mutating func put(_ r: ProviderRecord) throws(RecordRejection) {
        let publisher = r.publisherID
        let old = providers[r.repository]?[publisher]
        if let old, old.expires >= r.expires { return }
        if old == nil, providers[r.repository, default: [:]].count >= config.maxProvidersPerKey { throw .storeFull }
        guard admits(publisher, addingBytes: r.size, replacingBytes: old?.size) else { throw .storeFull }
        providers[r.repository, default: [:]][publisher] = r
        account(publisher, count: old == nil ? 1 : 0, bytes: r.size - (old?.size ?? 0))
    }

    /// Stores a validated peer record if its sequence number is above the stored one's.
    mutating func put(_ r: PeerRecord) throws(RecordRejection) {
        let publisher = r.publisherID
        let old = peers[publisher]
        if let old, old.sequence >= r.sequence {
            if old.sequence == r.sequence, old.signature == r.signature { return }
            throw .staleSequence
        }
        guard admits(publisher, addingBytes: r.size, replacingBytes: old?.size) else { throw .storeFull }
        peers[publisher] = r
        account(publisher, count: old == nil ? 1 : 0, bytes: r.size - (old?.size ?? 0))
    }

    /// Unexpired providers of `repository`, soonest-expiring last, at most `limit`.
    func providers(of repository: NodeID, unixNow: UInt64, limit: Int) -> [ProviderRecord] {
        guard let all = providers[repository] else { return [] }
        let live = all.values.filter { $0.expires > unixNow }
            .sorted { $0.expires != $1.expires ? $0.expires > $1.expires : $0.publisher.lexicographicallyPrecedes($1.publisher) }
        return Array(live.prefix(limit))
    }

    func peer(_ id: NodeID, unixNow: UInt64) -> PeerRecord? {
        guard let r = peers[id], r.expires > unixNow else { return nil }
        return r
    }

    /// Bytes and records held for one publisher.
    func usage(of publisher: NodeID) -> (count: Int, bytes: Int) {
        let u = usage[publisher] ?? Usage()
        return (u.count, u.bytes)
    }

    /// Drops every record whose `expires` is not after `unixNow`.
    mutating func expire(unixNow: UInt64) {
        for (repo, byPublisher) in providers {
            for (publisher, r) in byPublisher where r.expires <= unixNow {
                providers[repo]?[publisher] = nil
                account(publisher, count: -1, bytes: -r.size)
            }
            if providers[repo]?.isEmpty ?? false { providers[repo] = nil }
        }
        for (publisher, r) in peers where r.expires <= unixNow {
            peers[publisher] = nil
            account(publisher, count: -1, bytes: -r.size)
        }
    }
}
