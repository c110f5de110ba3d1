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

    public init(store: any ObjectStore, limits: ObjectLimits = .default, shallow: Set<ObjectID> = []) {
        self.store = store
        self.limits = limits
        self.shallow = shallow
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
        let issues = obj.body.withUnsafeBytes { raw in
            ObjectChecker.checkTree(raw, limits: limits) { mode, _, entry in
                if mode == 0o40000 { body(entry, true) } else if mode != 0o160000 { body(entry, false) }
            }
        }
        if let e = issues.first(where: { $0.severity == .error && $0.code == "badTree" }) {
            throw GitError(.invalidObject, "tree \(id): \(e)")
        }
    }

    private func walk(tips: [ObjectID], haves: [ObjectID], collectMissing: Bool) throws -> Result {
        var result = Result()
        var missing = Set<ObjectID>()
        func read(_ id: ObjectID) throws -> GitObject? {
            if let obj = try store.read(id) { return obj }
            if collectMissing {
                if missing.insert(id).inserted { result.missing.append(id) }
                return nil
            }
            throw GitError(.notFound, "object \(id) is missing")
        }

        // 1. Everything reachable from haves through commits and tags.
        var excluded = Set<ObjectID>()
        var excludedTreeRoots: [ObjectID] = []
        var stack: [(ObjectID, Bool)] = haves.map { ($0, true) }
        while let (id, isTip) = stack.popLast() {
            guard excluded.insert(id).inserted else { continue }
            guard let obj = try? store.read(id) else { continue }
            switch obj.type {
            case .tag: stack.append((try tagTarget(obj, id), isTip))
            case .commit:
                let (tree, parents) = try commitLinks(obj, id)
                if isTip { excludedTreeRoots.append(tree) }
                if !shallow.contains(id) { for p in parents { stack.append((p, false)) } }
            case .tree: excludedTreeRoots.append(id)
            case .blob: break
            }
        }

        // 2. Commits and tags to send; note boundary commits.
        var seen = Set<ObjectID>()
        var wantTrees: [ObjectID] = []
        var blobs: [ObjectID] = []
        var commits: [ObjectID] = []
        var tags: [ObjectID] = []
        var pending = tips
        while let id = pending.popLast() {
            guard !excluded.contains(id), seen.insert(id).inserted else { continue }
            guard let obj = try read(id) else { continue }
            switch obj.type {
            case .tag:
                tags.append(id)
                pending.append(try tagTarget(obj, id))
            case .commit:
                commits.append(id)
                let (tree, allParents) = try commitLinks(obj, id)
                wantTrees.append(tree)
                let parents = shallow.contains(id) ? [] : allParents
                for p in parents {
                    if excluded.contains(p) {
                        if let parent = try? store.read(p), parent.type == .commit {
                            excludedTreeRoots.append(try commitLinks(parent, p).tree)
                        }
                    } else {
                        pending.append(p)
                    }
                }
            case .tree: wantTrees.append(id)
            case .blob: blobs.append(id)
            }
        }

        // 3. Trees and blobs of the excluded side's edge.
        var treeStack = excludedTreeRoots
        var walked = Set<ObjectID>()
        while let id = treeStack.popLast() {
            guard walked.insert(id).inserted else { continue }
            excluded.insert(id)
            guard let obj = try? store.read(id), obj.type == .tree else { continue }
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
            guard !excluded.contains(id), seen.insert(id).inserted else { continue }
            guard let obj = try read(id) else { continue }
            guard obj.type == .tree else {
                throw GitError(.invalidObject, "object \(id) is a \(obj.type.name), expected a tree")
            }
            trees.append(id)
            var subtrees: [ObjectID] = []
            try treeEntries(obj, id) { entry, isTree in
                if isTree {
                    subtrees.append(entry)
                } else if !excluded.contains(entry), seen.insert(entry).inserted {
                    blobs.append(entry)
                }
            }
            treeStack.append(contentsOf: subtrees.reversed())
        }
        if collectMissing {
            for b in blobs where !store.contains(b) {
                if missing.insert(b).inserted { result.missing.append(b) }
            }
        }
        result.commits = commits.count
        result.tags = tags.count
        result.trees = trees.count
        result.blobs = blobs.count
        result.objects = commits + tags + trees + blobs
        return result
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
}
