import GutsGit
import GutsIdentity

/// The repository's canonical branches and tags, decided from the delegates' signed
/// states (guts-identity(5), CANONICAL REFS). Pure apart from reading commits.
///
/// For each branch or tag some delegate signs: every distinct value a delegate signs is
/// a candidate; a candidate's votes are the delegates whose value is the candidate or,
/// for commits, descends from it. Candidates with at least `threshold` votes qualify.
/// The canonical value is the qualified candidate that every other qualified candidate
/// is an ancestor of. When nothing qualifies, or qualified candidates diverge, the
/// current value stays. A canonical ref disappears only when at least `threshold`
/// delegates have signed states and none of them signs it.
public enum Canonical {
    public struct Decision: Sendable, Equatable {
        /// The new canonical branches and tags.
        public var refs: [String: ObjectID]
        /// Refs whose qualified candidates diverge (left as they were).
        public var diverged: [String]
    }

    public static func compute(states: [PeerID: SignedRefs], threshold: Int, current: [String: ObjectID],
                               store: any ObjectStore) -> Decision {
        var names = Set<String>()
        for s in states.values { for r in s.refs where TrustLayout.isCanonicalKind(r.name) { names.insert(r.name) } }
        var result: [String: ObjectID] = [:]
        var diverged: [String] = []
        let maps = states.mapValues(\.refMap)
        let ancestry = Ancestry(store: store)
        for name in names.union(current.keys.filter(TrustLayout.isCanonicalKind)).sorted() {
            let tips = maps.values.compactMap { $0[name] }
            let candidates = Array(Set(tips)).sorted()
            var qualified: [ObjectID] = []
            for c in candidates {
                let votes = tips.filter { $0 == c || (candidates.count > 1 && ancestry.isAncestor(c, of: $0)) }.count
                if votes >= threshold { qualified.append(c) }
            }
            if qualified.isEmpty {
                let lacking = maps.values.filter { $0[name] == nil }.count
                if let now = current[name], !(tips.isEmpty && lacking >= threshold) { result[name] = now }
                continue
            }
            if let best = qualified.first(where: { q in qualified.allSatisfy { $0 == q || ancestry.isAncestor($0, of: q) } }) {
                result[name] = best
            } else {
                diverged.append(name)
                if let now = current[name] { result[name] = now }
            }
        }
        return Decision(refs: result, diverged: diverged)
    }
}

/// "Is a an ancestor of b?" over commit parents, bounded.
final class Ancestry {
    let store: any ObjectStore
    private var parents: [ObjectID: [ObjectID]] = [:]

    init(store: any ObjectStore) { self.store = store }

    func parentsOf(_ id: ObjectID) -> [ObjectID]? {
        if let p = parents[id] { return p }
        guard let obj = try? store.read(id), obj.type == .commit, let c = try? Commit(parsing: obj.body) else { return nil }
        parents[id] = c.parents
        return c.parents
    }

    func isAncestor(_ a: ObjectID, of b: ObjectID) -> Bool {
        if a == b { return true }
        guard parentsOf(a) != nil else { return false }
        var queue = [b]
        var seen: Set<ObjectID> = [b]
        var i = 0
        while i < queue.count, seen.count < TrustLimits.maxAncestryWalk {
            let id = queue[i]
            i += 1
            for p in parentsOf(id) ?? [] where seen.insert(p).inserted {
                if p == a { return true }
                queue.append(p)
            }
        }
        return false
    }
}
