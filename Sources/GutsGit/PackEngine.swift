#if canImport(Glibc)
import Glibc
#endif

/// One entry of a pack, located and header-parsed, with its extent known.
struct PackEntry {
    var offset: Int
    /// One past the last byte of the entry (next entry's offset, or the trailer).
    var end: Int
    var header: PackEntryHeader
}

/// What happened to one entry during resolution.
enum EntryState: UInt8 {
    case pending = 0
    case done = 1
    case failed = 2
}

/// Resolves every entry of a pack the way `git index-pack` does: each non-delta entry
/// is inflated once and its delta descendants (OFS_DELTA by offset, REF_DELTA by the
/// name of the object as computed) are built depth-first from it with an explicit
/// stack, so each base is inflated once and nothing recurses. Entries never reached
/// are classified afterwards as missing-base, cycle or corrupt-base.
///
/// Work is split between threads by root entry; a root and its delta subtree are
/// handled by one thread. Memory: the stack holds only the current chain's objects,
/// and above `limits.deltaBaseBudget` the lower ones are dropped and rebuilt on demand.
final class DeltaResolver: @unchecked Sendable {
    let pack: UnsafeRawBufferPointer
    let entries: [PackEntry]
    let limits: ObjectLimits
    let name: String
    /// Supplies REF_DELTA bases that are not in the pack (thin packs).
    let external: ((ObjectID) -> GitObject?)?

    /// Computed object name per entry (valid where state is .done).
    private(set) var ids: UnsafeMutableBufferPointer<ObjectID>
    private(set) var types: UnsafeMutableBufferPointer<UInt8>
    private(set) var states: UnsafeMutableBufferPointer<UInt8>
    /// Failures by entry index (per worker, merged in `failures`).
    private var workerFailures: [FailureList] = [FailureList()]

    final class FailureList {
        var items: [(Int, GitError)] = []
    }
    /// OFS_DELTA children in CSR form.
    private var childStart: [Int32] = []
    private var children: [Int32] = []
    /// REF_DELTA children by base name.
    private var refChildren: [ObjectID: [Int32]] = [:]
    /// REF_DELTA bases resolved from `external` (thin pack), by name.
    private(set) var externalBasesUsed: [ObjectID: GitObject] = [:]
    private let lock = Mutex()
    private var nextRoot = 0
    private var roots: [Int32] = []

    /// A callback for each resolved object: entry index, type, body, name, worker.
    typealias Visit = (Int, ObjectType, UnsafeRawBufferPointer, ObjectID, Int) -> Void

    init(pack: UnsafeRawBufferPointer, entries: [PackEntry], limits: ObjectLimits, name: String,
         external: ((ObjectID) -> GitObject?)? = nil) {
        self.pack = pack
        self.entries = entries
        self.limits = limits
        self.name = name
        self.external = external
        let n = entries.count
        ids = .allocate(capacity: n)
        ids.initialize(repeating: ObjectID.zero)
        types = .allocate(capacity: n)
        types.initialize(repeating: 0)
        states = .allocate(capacity: n)
        states.initialize(repeating: 0)
    }

    deinit {
        ids.deallocate()
        types.deallocate()
        states.deallocate()
    }

    var failures: [(Int, GitError)] { workerFailures.flatMap { $0.items }.sorted { $0.0 < $1.0 } }

    /// Index of the entry starting at `offset`, by binary search.
    func entryIndex(at offset: Int) -> Int? {
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let o = entries[mid].offset
            if o == offset { return mid }
            if o < offset { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// Resolves everything. `visit` runs on worker threads, never twice at once with
    /// the same worker number.
    func run(threads: Int, extra: (() -> Void)? = nil, visit: @escaping Visit) {
        let n = entries.count
        workerFailures = (0..<max(1, threads)).map { _ in FailureList() }
        // Link OFS children to their bases.
        var counts = [Int32](repeating: 0, count: n + 1)
        var baseOf = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            let h = entries[i].header
            if h.kind == PackEntryKind.ofsDelta {
                if let b = entryIndex(at: h.baseOffset) {
                    baseOf[i] = Int32(b)
                    counts[b] += 1
                } else {
                    states[i] = EntryState.failed.rawValue
                    workerFailures[0].items.append((i, GitError(.corrupt, "delta base offset \(h.baseOffset) is not the start of an entry")))
                }
            } else if h.kind == PackEntryKind.refDelta, let b = h.baseID {
                refChildren[b, default: []].append(Int32(i))
            } else {
                roots.append(Int32(i))
            }
        }
        childStart = [Int32](repeating: 0, count: n + 1)
        var acc: Int32 = 0
        for i in 0..<n {
            childStart[i] = acc
            acc += counts[i]
        }
        childStart[n] = acc
        children = [Int32](repeating: 0, count: Int(acc))
        var fill = childStart
        for i in 0..<n where baseOf[i] >= 0 {
            let b = Int(baseOf[i])
            children[Int(fill[b])] = Int32(i)
            fill[b] += 1
        }
        parallel(threads) { worker in
            if worker == threads - 1, let extra { extra() }
            let z = Inflater()
            while let root = self.takeRoot() {
                self.resolveTree(root: Int(root), base: nil, z: z, worker: worker, visit: visit)
            }
        }
        // Thin-pack bases from outside.
        if let external {
            for (baseID, kids) in refChildren where kids.contains(where: { states[Int($0)] == EntryState.pending.rawValue }) {
                if let obj = external(baseID), obj.id == baseID {
                    externalBasesUsed[baseID] = obj
                    let z = Inflater()
                    for k in kids where states[Int(k)] == EntryState.pending.rawValue {
                        resolveTree(root: Int(k), base: obj, z: z, worker: 0, visit: visit)
                    }
                }
            }
        }
        classifyUnresolved()
    }

    private func takeRoot() -> Int32? {
        lock.locked {
            guard nextRoot < roots.count else { return nil }
            nextRoot += 1
            return roots[nextRoot - 1]
        }
    }

    private struct Frame {
        var entry: Int
        var body: [UInt8]?
        var type: ObjectType
        var nextChild: Int
        var refKids: [Int32]
        var nextRef: Int
        var bytes: Int
    }

    /// Inflates entry data, checking the declared size and that the stream ends where
    /// the entry ends.
    private func inflateEntry(_ i: Int, _ z: Inflater) throws -> [UInt8] {
        let e = entries[i]
        let data = UnsafeRawBufferPointer(rebasing: pack[e.header.dataOffset..<e.end])
        let (bytes, used) = try z.inflateExactly(data, size: e.header.size)
        if used != data.count {
            throw GitError(.corrupt, "\(data.count - used) stray bytes after the compressed data")
        }
        return bytes
    }

    /// Builds entry `i` (a delta) from its base body.
    private func applyDelta(_ i: Int, base: [UInt8], z: Inflater) throws -> [UInt8] {
        let delta = try inflateEntry(i, z)
        return try base.withUnsafeBytes { b in
            try delta.withUnsafeBytes { try Delta.apply(base: b, delta: $0, limit: limits.maxObjectSize) }
        }
    }

    private func fail(_ i: Int, _ e: any Error, _ worker: Int) {
        states[i] = EntryState.failed.rawValue
        workerFailures[worker].items.append((i, e as? GitError ?? GitError(.corrupt, String(describing: e))))
    }

    /// Resolves `root` and all its descendants. With `base`, `root` is a REF_DELTA
    /// whose base came from outside the pack.
    private func resolveTree(root: Int, base: GitObject?, z: Inflater, worker: Int, visit: Visit) {
        var stack: [Frame] = []
        var retained = 0

        func finishEntry(_ i: Int, _ type: ObjectType, _ body: [UInt8]) {
            let id = body.withUnsafeBytes { ObjectID.compute(type: type, body: $0) }
            ids[i] = id
            types[i] = type.rawValue
            states[i] = EntryState.done.rawValue
            body.withUnsafeBytes { visit(i, type, $0, id, worker) }
            let kids = refChildren[id] ?? []
            let ofs = Int(childStart[i + 1] - childStart[i])
            if ofs > 0 || !kids.isEmpty {
                stack.append(Frame(entry: i, body: body, type: type, nextChild: Int(childStart[i]), refKids: kids, nextRef: 0, bytes: body.count))
                retained += body.count
                // Keep memory bounded: drop the bodies of lower frames; rebuilt on demand.
                var k = 0
                while retained > limits.deltaBaseBudget && k < stack.count - 1 {
                    if stack[k].body != nil {
                        stack[k].body = nil
                        retained -= stack[k].bytes
                    }
                    k += 1
                }
            }
        }

        if let base {
            guard states[root] == EntryState.pending.rawValue else { return }
            do {
                finishEntry(root, base.type, try applyDelta(root, base: base.body, z: z))
            } catch {
                fail(root, error, worker)
                return
            }
        } else {
            guard let type = ObjectType(rawValue: entries[root].header.kind) else { return }
            do {
                finishEntry(root, type, try inflateEntry(root, z))
            } catch {
                fail(root, error, worker)
                return
            }
        }

        while !stack.isEmpty {
            let top = stack.count - 1
            var child = -1
            if stack[top].nextChild < Int(childStart[stack[top].entry + 1]) {
                child = Int(children[stack[top].nextChild])
                stack[top].nextChild += 1
            } else if stack[top].nextRef < stack[top].refKids.count {
                child = Int(stack[top].refKids[stack[top].nextRef])
                stack[top].nextRef += 1
            } else {
                if stack[top].body != nil { retained -= stack[top].bytes }
                stack.removeLast()
                continue
            }
            guard states[child] == EntryState.pending.rawValue else { continue }
            if stack[top].body == nil {
                do {
                    stack[top].body = try rebuild(stack, top, base: base, z: z)
                    retained += stack[top].bytes
                } catch {
                    fail(child, error, worker)
                    continue
                }
            }
            guard stack.count <= limits.maxDeltaDepth else {
                fail(child, GitError(.deltaCycle, "delta chain deeper than \(limits.maxDeltaDepth)"), worker)
                continue
            }
            let type = stack[top].type
            do {
                let body = try applyDelta(child, base: stack[top].body!, z: z)
                finishEntry(child, type, body)
            } catch {
                fail(child, error, worker)
            }
        }
    }

    /// Rebuilds the body of frame `k` from the nearest lower frame that still has one
    /// (or from the pack for the root).
    private func rebuild(_ stack: [Frame], _ k: Int, base: GitObject?, z: Inflater) throws -> [UInt8] {
        var j = k - 1
        while j >= 0 && stack[j].body == nil { j -= 1 }
        var body: [UInt8]
        if j >= 0 {
            body = stack[j].body!
        } else {
            j = 0
            if let base {
                body = try applyDelta(stack[0].entry, base: base.body, z: z)
            } else {
                body = try inflateEntry(stack[0].entry, z)
            }
        }
        var m = j + 1
        while m <= k {
            body = try applyDelta(stack[m].entry, base: body, z: z)
            m += 1
        }
        return body
    }

    /// Explains every entry left pending: its chain ends at a missing base, loops, or
    /// reaches a corrupt entry.
    private func classifyUnresolved() {
        let n = entries.count
        var idToEntry: [ObjectID: Int]?
        // 0 unknown, 1 missing base, 2 cycle, 3 corrupt base
        var verdict = [UInt8](repeating: 0, count: n)
        for start in 0..<n where states[start] == EntryState.pending.rawValue && verdict[start] == 0 {
            var path: [Int] = []
            var onPath = Set<Int>()
            var cur = start
            var result: UInt8 = 0
            var detail = ""
            while true {
                if verdict[cur] != 0 {
                    result = verdict[cur]
                    break
                }
                if states[cur] == EntryState.failed.rawValue {
                    result = 3
                    detail = "entry at \(entries[cur].offset)"
                    break
                }
                if onPath.contains(cur) {
                    result = 2
                    break
                }
                path.append(cur)
                onPath.insert(cur)
                let h = entries[cur].header
                if h.kind == PackEntryKind.ofsDelta {
                    guard let b = entryIndex(at: h.baseOffset) else { result = 3; break }
                    cur = b
                } else if h.kind == PackEntryKind.refDelta, let baseID = h.baseID {
                    if idToEntry == nil {
                        var map: [ObjectID: Int] = [:]
                        for i in 0..<n where states[i] == EntryState.done.rawValue { map[ids[i]] = i }
                        idToEntry = map
                    }
                    if let b = idToEntry?[baseID] {
                        cur = b
                    } else if let b = indexedNames?[baseID] {
                        cur = b
                    } else {
                        result = 1
                        detail = baseID.hex
                        break
                    }
                } else {
                    result = 3
                    break
                }
            }
            for p in path { verdict[p] = result }
            for p in path {
                states[p] = EntryState.failed.rawValue
                switch result {
                case 1:
                    let message = p == path.last ? "delta base \(detail) is missing" : "delta chain ends at missing base \(detail)"
                    workerFailures[0].items.append((p, GitError(.missingBase, message)))
                case 2:
                    workerFailures[0].items.append((p, GitError(.deltaCycle, "delta chain loops (entries depend on each other)")))
                default:
                    workerFailures[0].items.append((p, GitError(.corrupt, "delta base is corrupt\(detail.isEmpty ? "" : " (\(detail))")")))
                }
            }
        }
    }

    /// Names the index claims for entries (verifier only): lets a REF_DELTA whose base
    /// is an unresolved entry of the same pack be followed, to tell cycles apart from
    /// missing bases.
    var indexedNames: [ObjectID: Int]?
}

/// Runs `body(0..<count)` on `count` threads (the caller's thread is worker 0).
func parallel(_ count: Int, _ body: @escaping (Int) -> Void) {
    final class Box: @unchecked Sendable {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
    var threads: [pthread_t] = []
    var inline: [Int] = []
    if count > 1 {
        for w in 1..<count {
            let box = Unmanaged.passRetained(Box { body(w) }).toOpaque()
            var t = pthread_t()
            let rc = pthread_create(&t, nil, { raw in
                guard let raw else { return nil }
                Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().run()
                return nil
            }, box)
            if rc == 0 {
                threads.append(t)
            } else {
                Unmanaged<Box>.fromOpaque(box).release()
                inline.append(w)
            }
        }
    }
    body(0)
    for w in inline { body(w) }
    for t in threads { pthread_join(t, nil) }
}
