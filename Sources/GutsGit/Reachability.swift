/// Walks the object graph (tags → targets, commits → parents and trees, trees →
/// subtrees and blobs) iteratively with explicit stacks, so histories of any length
/// are fine. This is the engine behind "what does the other side lack" and
/// "is everything we received connected".
public struct ObjectWalk: Sendable {
    public let store: any ObjectStore
    public let limits: ObjectLimits
    /// Commits whose parents are not followed (a shallow clone's boundary, see
    /// `Repository.shallowCommits()`).
    public let shallow: Set<ObjectID>
    /// Whether every object read is hashed again. A walk over objects that were hashed
    /// as they entered the store (a server's own repository, a received pack just
    /// indexed) turns it off: on a 300k-object history the hashing was a third of the
    /// walk. Structure is still checked.
    public let verifyReads: Bool
    /// Objects known to be stored with everything they reach (`ClosedObjects`): the
    /// walk treats them as reachable from the haves and stops there, without reading
    /// them (a commit or tree named by a link must still be one). For a server they must be objects
    /// the receiver has; for a receiver's check, objects it already has.
    public let closed: ClosedObjects

    public init(store: any ObjectStore, limits: ObjectLimits = .default, shallow: Set<ObjectID> = [], verifyReads: Bool = true,
                closed: ClosedObjects = ClosedObjects()) {
        self.store = store
        self.limits = limits
        self.shallow = shallow
        self.verifyReads = verifyReads
        self.closed = closed
    }

    /// Whether `id` is a closed object; throws when it is one of another type than a
    /// link to it says.
    private func isClosed(_ id: ObjectID, as expected: ObjectType) throws -> Bool {
        guard !closed.isEmpty, let type = closed.type(of: id) else { return false }
        guard type == expected else {
            throw GitError(.invalidObject, "object \(id) is a \(type.name), expected a \(expected.name)")
        }
        return true
    }

    /// Reads through the store, hashing or not as `verifyReads` says.
    private func load(_ id: ObjectID) throws -> GitObject? {
        verifyReads ? try store.read(id) : try store.readTrusted(id)
    }

    /// The result of a walk.
    public struct Result: Sendable {
        /// Objects to send, ordered commits, then tags, then trees, then blobs.
        public var objects: [ObjectID] = []
        public var commits = 0
        public var tags = 0
        public var trees = 0
        public var blobs = 0
        /// Objects that were needed but absent (only filled by `missingObjects`).
        public var missing: [ObjectID] = []
        /// With `checkReceived`: which objects of the received pack (by index position)
        /// the walk reached; `objects` is then left empty (only the counts are kept).
        public var reachedInPack: PositionSet?
        /// Objects left out because the haves make them reachable (commits, and the
        /// trees and blobs of the boundary): a receiver that has its haves' history
        /// has these, so a delta against one of them may be sent as a thin REF_DELTA.
        public var excluded: Set<ObjectID> = []
    }

    /// Every object reachable from `tips` that is not reachable from `haves`, in an
    /// order suitable for writing a pack. Commits reachable from `haves` are excluded
    /// exactly; trees and blobs are excluded when reachable from the trees of the
    /// `haves` themselves or of boundary commits (haves whose child is being sent),
    /// as git does, so an old blob that comes back may be sent again. `haves` the
    /// store does not have are ignored. Throws `.notFound` if something needed is
    /// missing.
    public func objects(reachableFrom tips: [ObjectID], excluding haves: [ObjectID] = []) throws -> Result {
        try walk(tips: tips, haves: haves, collectMissing: false)
    }

    /// Objects reachable from `tips` (stopping at what is reachable from `haves`) that
    /// the store lacks. Empty means connected. Use with a store that combines the
    /// repository and a quarantine to check a received pack before accepting refs.
    public func missingObjects(reachableFrom tips: [ObjectID], excluding haves: [ObjectID] = []) throws -> [ObjectID] {
        try walk(tips: tips, haves: haves, collectMissing: true).missing
    }

    /// One walk for a receiver: the objects (as `objects(reachableFrom:excluding:)`)
    /// and, in `missing`, those the store lacks, instead of throwing at the first.
    public func objectsCollectingMissing(reachableFrom tips: [ObjectID], excluding haves: [ObjectID] = []) throws -> Result {
        try walk(tips: tips, haves: haves, collectMissing: true)
    }

    /// One walk for a receiver that checks a received `pack`: as
    /// `objectsCollectingMissing`, but objects are counted, not listed, and those of
    /// `pack` are marked by index position in `reachedInPack` (a bit each) instead of a
    /// set of names. At 300k objects the list and the set were 33 MB of a sync's peak.
    public func checkReceived(_ pack: PackReader, reachableFrom tips: [ObjectID], excluding haves: [ObjectID] = []) throws -> Result {
        try walk(tips: tips, haves: haves, collectMissing: true, marking: pack)
    }

    /// Tree, then parents, of a commit body.
    private func commitLinks(_ obj: GitObject, _ id: ObjectID) throws -> (tree: ObjectID, parents: [ObjectID]) {
        var tree: ObjectID?
        var parents: [ObjectID] = []
        let issues = obj.body.withUnsafeBytes { body in
            ObjectChecker.checkCommit(body) { link, type in
                if type == .tree { tree = link } else { parents.append(link) }
            }
        }
        guard let tree else {
            throw GitError(.invalidObject, "commit \(id): \(issues.first?.description ?? "no tree")")
        }
        return (tree, parents)
    }

    private func tagTarget(_ obj: GitObject, _ id: ObjectID) throws -> ObjectID {
        var target: ObjectID?
        let issues = obj.body.withUnsafeBytes { body in
            ObjectChecker.checkTag(body) { link, _ in target = link }
        }
        guard let target else { throw GitError(.invalidObject, "tag \(id): \(issues.first?.description ?? "no object")") }
        return target
    }

    private func treeEntries(_ obj: GitObject, _ id: ObjectID, _ body: (ObjectID, Bool) -> Void) throws {
        if !verifyReads {
            // Trees hashed as they came in were checked then too: only parsed here
            // (the rules were a sixth of a serving walk's time).
            let parsed = obj.body.withUnsafeBytes { raw in
                ObjectChecker.treeEntries(raw, limits: limits) { mode, entry in
                    if mode == 0o40000 { body(entry, true) } else if mode != 0o160000 { body(entry, false) }
                }
            }
            guard parsed else { throw GitError(.invalidObject, "tree \(id): cannot be parsed") }
            return
        }
        let issues = obj.body.withUnsafeBytes { raw in
            ObjectChecker.checkTree(raw, limits: limits) { mode, _, entry in
                if mode == 0o40000 { body(entry, true) } else if mode != 0o160000 { body(entry, false) }
            }
        }
        if let e = issues.first(where: { $0.severity == .error && $0.code == "badTree" }) {
            throw GitError(.invalidObject, "tree \(id): \(e)")
        }
    }

    private func walk(tips: [ObjectID], haves: [ObjectID], collectMissing: Bool, marking pack: PackReader? = nil) throws -> Result {
        var result = Result()
        var missing = Set<ObjectID>()
        // Without a pack to mark, every object reached is listed.
        let list = pack == nil
        var counts = (commits: 0, tags: 0, trees: 0, blobs: 0)
        /// A blob reached: listed, or (when not listing) checked for presence now.
        func reachedBlob(_ id: ObjectID) {
            counts.blobs += 1
            if list {
                blobs.append(id)
            } else if collectMissing && !store.contains(id) && missing.insert(id).inserted {
                result.missing.append(id)
            }
        }
        func read(_ id: ObjectID) throws -> GitObject? {
            if let obj = try load(id) { return obj }
            if collectMissing {
                if missing.insert(id).inserted { result.missing.append(id) }
                return nil
            }
            throw GitError(.notFound, "object \(id) is missing")
        }

        // 1. Peel the tips. Haves: tags are excluded, their commits start uninteresting;
        //    wants: tags are sent, their commits start interesting.
        var excluded = Set<ObjectID>()
        var excludedTreeRoots: [ObjectID] = []
        var seen = VisitedSet(pack: pack)
        var wantTrees: [ObjectID] = []
        var blobs: [ObjectID] = []
        var commits: [ObjectID] = []
        var tags: [ObjectID] = []
        var walk = CommitQueue()

        for have in haves {
            if !closed.isEmpty && closed.contains(have) {
                // Everything it reaches is closed: nothing to walk.
                excluded.insert(have)
                continue
            }
            var id = have
            for _ in 0..<32 {
                guard excluded.insert(id).inserted, let obj = try? load(id) else { break }
                if obj.type == .tag {
                    id = try tagTarget(obj, id)
                    continue
                }
                switch obj.type {
                case .commit:
                    // Its tree is excluded only if the commit turns out to be on the
                    // boundary (step 2), as git's edge marking does: walking the trees of
                    // every have (a mirror has one per ref) cost time and memory in
                    // proportion to the whole history, for every incremental fetch.
                    excluded.remove(id)  // the walk marks it
                    _ = try commitLinks(obj, id)
                    walk.push(id, date: Self.commitDate(obj), interesting: false)
                case .tree: excludedTreeRoots.append(id)
                default: break
                }
                break
            }
        }
        var pendingTips = tips
        while let id = pendingTips.popLast() {
            guard !excluded.contains(id), closed.isEmpty || !closed.contains(id), seen.insert(id) else { continue }
            guard let obj = try read(id) else { continue }
            switch obj.type {
            case .tag:
                counts.tags += 1
                if list { tags.append(id) }
                pendingTips.append(try tagTarget(obj, id))
            case .commit:
                seen.remove(id)  // the walk records it
                walk.push(id, date: Self.commitDate(obj), interesting: true)
            case .tree:
                seen.remove(id)  // step 4 records it and walks its entries
                wantTrees.append(id)
            case .blob: reachedBlob(id)
            }
        }

        // 2. Commits, newest first, as git's revision walk does: parents of uninteresting
        //    commits become uninteresting, and the walk stops once only uninteresting
        //    commits are queued. The cost is the new history, not the whole history.
        //    Interesting commits whose parent is uninteresting form the boundary, whose
        //    trees the receiver is known to have.
        while walk.hasInteresting, let (id, interesting) = walk.pop() {
            if !interesting {
                excluded.insert(id)
                guard !shallow.contains(id), let obj = try? load(id), obj.type == .commit else { continue }
                for p in try commitLinks(obj, id).parents {
                    if try isClosed(p, as: .commit) { continue }
                    if walk.markUninteresting(p) { continue }
                    if let parent = try? load(p), parent.type == .commit {
                        walk.push(p, date: Self.commitDate(parent), interesting: false)
                    }
                }
                continue
            }
            guard seen.insert(id) else { continue }
            guard let obj = try read(id) else { continue }
            guard obj.type == .commit else {
                throw GitError(.invalidObject, "object \(id) is a \(obj.type.name), expected a commit")
            }
            counts.commits += 1
            if list { commits.append(id) }
            let (tree, allParents) = try commitLinks(obj, id)
            wantTrees.append(tree)
            for p in shallow.contains(id) ? [] : allParents {
                if try isClosed(p, as: .commit) {
                    // A boundary parent: its tree is excluded (a base for thin deltas),
                    // and step 3 stops there since it is closed too.
                    excluded.insert(p)
                    if let parent = try? load(p), parent.type == .commit {
                        excludedTreeRoots.append(try commitLinks(parent, p).tree)
                    }
                    continue
                }
                if walk.isUninteresting(p) {
                    if let parent = try? load(p), parent.type == .commit {
                        excludedTreeRoots.append(try commitLinks(parent, p).tree)
                    }
                    continue
                }
                if walk.isQueued(p) || seen.contains(p) { continue }
                guard let parent = try read(p) else { continue }
                walk.push(p, date: Self.commitDate(parent), interesting: true)
            }
        }
        // Boundary parents met before they were known to be uninteresting.
        for id in walk.uninterestingSeen where !excluded.contains(id) {
            excluded.insert(id)
        }

        // 3. Trees and blobs of the excluded side's edge.
        var treeStack = excludedTreeRoots
        var walked = Set<ObjectID>()
        while let id = treeStack.popLast() {
            guard walked.insert(id).inserted else { continue }
            excluded.insert(id)
            // Below a closed tree everything is closed: step 4 stops at it.
            if !closed.isEmpty && closed.contains(id) { continue }
            guard let obj = try? load(id), obj.type == .tree else { continue }
            try treeEntries(obj, id) { entry, isTree in
                if isTree {
                    if !walked.contains(entry) { treeStack.append(entry) }
                } else {
                    excluded.insert(entry)
                }
            }
        }

        // 4. Trees and blobs to send.
        var trees: [ObjectID] = []
        treeStack = wantTrees.reversed()
        while let id = treeStack.popLast() {
            guard !excluded.contains(id), try !isClosed(id, as: .tree), seen.insert(id) else { continue }
            guard let obj = try read(id) else { continue }
            guard obj.type == .tree else {
                throw GitError(.invalidObject, "object \(id) is a \(obj.type.name), expected a tree")
            }
            counts.trees += 1
            if list { trees.append(id) }
            var subtrees: [ObjectID] = []
            try treeEntries(obj, id) { entry, isTree in
                if isTree {
                    subtrees.append(entry)
                } else if !excluded.contains(entry), closed.isEmpty || !closed.contains(entry), seen.insert(entry) {
                    // Blobs are not read, so their type is not checked (as for those
                    // reached otherwise): a closed one is only looked up in the index,
                    // not in the pack, whose pages would add to the walk's memory.
                    reachedBlob(entry)
                }
            }
            treeStack.append(contentsOf: subtrees.reversed())
        }
        if collectMissing {
            for b in blobs where !store.contains(b) {
                if missing.insert(b).inserted { result.missing.append(b) }
            }
        }
        result.commits = counts.commits
        result.tags = counts.tags
        result.trees = counts.trees
        result.blobs = counts.blobs
        if pack != nil { result.reachedInPack = seen.positions }
        // The visited set is the walk's largest table (a 40-byte name per object, at a
        // load of at most 3/4): freed before the list is assembled.
        seen = VisitedSet(pack: nil)
        walked = []
        result.objects.reserveCapacity(commits.count + tags.count + trees.count + blobs.count)
        result.objects += commits
        commits = []
        result.objects += tags
        result.objects += trees
        trees = []
        result.objects += blobs
        result.excluded = excluded
        return result
    }
}

extension ObjectWalk {
    /// The committer time of a commit body (0 when unparsable: such a commit sorts last).
    static func commitDate(_ obj: GitObject) -> Int64 {
        obj.body.withUnsafeBytes { b -> Int64 in
            // Find "\ncommitter " in the header, then the timestamp after the last '>'.
            let needle = Array("\ncommitter ".utf8)
            var i = 0
            let n = b.count
            while i + needle.count < n {
                if b[i] == 0x0A && b[i + 1] == 0x0A { return 0 }  // end of header
                if b[i] == 0x0A {
                    var match = true
                    for k in 0..<needle.count where b[i + k] != needle[k] {
                        match = false
                        break
                    }
                    if match {
                        var end = i + needle.count
                        while end < n && b[end] != 0x0A { end += 1 }
                        var gt = end - 1
                        while gt > i && b[gt] != UInt8(ascii: ">") { gt -= 1 }
                        var p = gt + 1
                        while p < end && b[p] == UInt8(ascii: " ") { p += 1 }
                        var value: Int64 = 0
                        var digits = 0
                        while p < end, b[p] >= 0x30, b[p] <= 0x39, digits < 18 {
                            value = value * 10 + Int64(b[p] - 0x30)
                            p += 1
                            digits += 1
                        }
                        return value
                    }
                }
                i += 1
            }
            return 0
        }
    }
}

/// The commit queue of a revision walk: newest commit first (insertion order breaks
/// ties), each commit marked interesting (to send) or uninteresting (the receiver has it).
/// A queued commit can turn uninteresting; `hasInteresting` says whether the walk must go on.
struct CommitQueue {
    private var heap: [(date: Int64, order: Int, id: ObjectID)] = []
    private var order = 0
    private var marks: [ObjectID: Bool] = [:]  // true = interesting
    private var dates: [ObjectID: Int64] = [:]
    private var queued = Set<ObjectID>()
    private var interestingQueued = 0
    private(set) var uninterestingSeen: [ObjectID] = []

    var hasInteresting: Bool { interestingQueued > 0 }

    func isQueued(_ id: ObjectID) -> Bool { queued.contains(id) }
    func isUninteresting(_ id: ObjectID) -> Bool { marks[id] == false }

    /// Queues `id` unless it is queued already (then an uninteresting mark wins).
    mutating func push(_ id: ObjectID, date: Int64, interesting: Bool) {
        if queued.contains(id) {
            if !interesting { _ = markUninteresting(id) }
            return
        }
        if let mark = marks[id], mark == false || !interesting { return }  // already walked
        marks[id] = interesting
        dates[id] = date
        if !interesting { uninterestingSeen.append(id) }
        enqueue(id, date: date, interesting: interesting)
    }

    private mutating func enqueue(_ id: ObjectID, date: Int64, interesting: Bool) {
        queued.insert(id)
        if interesting { interestingQueued += 1 }
        order += 1
        heap.append((date, -order, id))
        var c = heap.count - 1
        while c > 0 {
            let parent = (c - 1) / 2
            guard Self.before(heap[c], heap[parent]) else { break }
            heap.swapAt(c, parent)
            c = parent
        }
    }

    /// Marks a known commit uninteresting; returns false when the commit was never seen
    /// (the caller then queues it). A commit already walked as interesting (its date said
    /// it was newer than it is) is queued again as uninteresting, so its parents are
    /// marked too and the surplus stays a few commits, not a whole history.
    mutating func markUninteresting(_ id: ObjectID) -> Bool {
        guard let mark = marks[id] else { return false }
        if mark {
            marks[id] = false
            uninterestingSeen.append(id)
            if queued.contains(id) {
                interestingQueued -= 1
            } else {
                enqueue(id, date: dates[id] ?? 0, interesting: false)
            }
        }
        return true
    }

    mutating func pop() -> (ObjectID, Bool)? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var best = p
                if l < heap.count && Self.before(heap[l], heap[best]) { best = l }
                if r < heap.count && Self.before(heap[r], heap[best]) { best = r }
                if best == p { break }
                heap.swapAt(p, best)
                p = best
            }
        }
        queued.remove(top.id)
        let interesting = marks[top.id] ?? false
        if interesting { interestingQueued -= 1 }
        return (top.id, interesting)
    }

    private static func before(_ a: (date: Int64, order: Int, id: ObjectID), _ b: (date: Int64, order: Int, id: ObjectID)) -> Bool {
        a.date != b.date ? a.date > b.date : a.order > b.order
    }
}

/// A set of positions 0..<count, a bit each.
public struct PositionSet: Sendable, Equatable {
    private(set) var words: [UInt64]

    public init(count: Int) { words = [UInt64](repeating: 0, count: (max(0, count) + 63) / 64) }

    init(words: [UInt64]) { self.words = words }

    /// How many positions are in the set.
    public var cardinality: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// The positions in the set, in increasing order.
    public var members: [Int] {
        var out: [Int] = []
        out.reserveCapacity(cardinality)
        for (k, word) in words.enumerated() {
            var w = word
            while w != 0 {
                out.append(k << 6 | w.trailingZeroBitCount)
                w &= w - 1
            }
        }
        return out
    }

    public func contains(_ i: Int) -> Bool { i >= 0 && i >> 6 < words.count && words[i >> 6] & (1 << UInt64(i & 63)) != 0 }

    /// Adds `i` (which must be below the count); whether it was absent.
    public mutating func insert(_ i: Int) -> Bool {
        let bit: UInt64 = 1 << UInt64(i & 63)
        if words[i >> 6] & bit != 0 { return false }
        words[i >> 6] |= bit
        return true
    }

    mutating func remove(_ i: Int) { words[i >> 6] &= ~(1 << UInt64(i & 63)) }
}

/// The objects a walk has visited: those of `pack` as bits by index position, any
/// others by name.
struct VisitedSet {
    let pack: PackReader?
    private(set) var positions: PositionSet
    private var others = Set<ObjectID>()

    init(pack: PackReader?) {
        self.pack = pack
        positions = PositionSet(count: pack?.count ?? 0)
    }

    /// Adds `id`; whether it was absent.
    mutating func insert(_ id: ObjectID) -> Bool {
        if let pack, let i = pack.position(of: id) { return positions.insert(i) }
        return others.insert(id).inserted
    }

    func contains(_ id: ObjectID) -> Bool {
        if let pack, let i = pack.position(of: id) { return positions.contains(i) }
        return others.contains(id)
    }

    mutating func remove(_ id: ObjectID) {
        if let pack, let i = pack.position(of: id) {
            positions.remove(i)
        } else {
            others.remove(id)
        }
    }
}

/// A repository seen together with extra objects (e.g. a quarantine where a received
/// pack was indexed), for connectivity checks before accepting refs.
public struct CombinedStore: ObjectStore {
    public let stores: [any ObjectStore]

    public init(_ stores: [any ObjectStore]) { self.stores = stores }

    public func contains(_ id: ObjectID) -> Bool { stores.contains { $0.contains(id) } }

    public func read(_ id: ObjectID) throws -> GitObject? {
        for s in stores {
            if let obj = try s.read(id) { return obj }
        }
        return nil
    }

    public func readTrusted(_ id: ObjectID) throws -> GitObject? {
        for s in stores {
            if let obj = try s.readTrusted(id) { return obj }
        }
        return nil
    }
}
