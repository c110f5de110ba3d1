#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// The entries of a pack, located: where each starts and ends (one past its last
/// byte) and its kind, 17 bytes an entry (a whole parsed header per entry took 88; at
/// 300k objects that was 27 MB of an indexer's peak). The rest of a header is parsed again from the pack when needed, which costs
/// a few bytes' work against the inflation that always follows.
struct PackEntries {
    private(set) var offsets: [Int] = []
    private(set) var ends: [Int] = []
    private(set) var kinds: [UInt8] = []

    init() {}

    var count: Int { offsets.count }

    mutating func reserveCapacity(_ n: Int) {
        offsets.reserveCapacity(n)
        ends.reserveCapacity(n)
        kinds.reserveCapacity(n)
    }

    mutating func append(offset: Int, end: Int, kind: UInt8) {
        offsets.append(offset)
        ends.append(end)
        kinds.append(kind)
    }

    /// The header of entry `i`, parsed again from `pack` (it parsed when the entry was
    /// found; the mapping is private and read-only, so this fails only if the file
    /// changed underneath, and then as the first parse would have).
    func header(_ i: Int, in pack: UnsafeRawBufferPointer, limit: Int) throws -> PackEntryHeader {
        try PackEntryHeader.parse(pack, at: offsets[i], end: ends[i], limit: limit)
    }
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
/// handled by one thread. All of it is charged to a `WorkBudget`: every inflation and
/// every delta application, rebuilds included, before anything is allocated. When a
/// limit is crossed (budget, deadline, and with `stopOnLimit` also object size and
/// chain depth) every thread stops and `aborted` says why.
///
/// Order and memory: all children of a base are built before the walk descends into
/// any of them, so a child that has children of its own is entered only once its
/// siblings are done, and the base is released as the last such child is entered. A
/// chain whose links each also carry leaves therefore never needs a base twice. Built
/// children waiting to be entered, and the bases on the current path, are kept up to
/// `limits.deltaBaseBudget` (shared by the threads); beyond it the lowest bases are
/// dropped and rebuilt on demand (charged again).
final class DeltaResolver: @unchecked Sendable {
    let pack: UnsafeRawBufferPointer
    let entries: PackEntries
    let limits: ObjectLimits
    let name: String
    let budget: WorkBudget
    /// Stop everything at the first limit crossed (object size, depth), not only at
    /// budget and deadline failures. Indexing wants this; verification reports each.
    let stopOnLimit: Bool
    /// Supplies REF_DELTA bases that are not in the pack (thin packs).
    let external: ((ObjectID) -> GitObject?)?
    /// The mapping `pack` lies in, told about every entry read so that its pages are
    /// released as the resolution goes (`MappedFile.touched`).
    var map: MappedFile?

    /// Computed object name per entry (valid where state is .done), 20 raw bytes each
    /// (an `ObjectID` value takes 40; names computed here are always SHA-1).
    private let idBytes: UnsafeMutableRawBufferPointer
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
    private var abortError: GitError?
    private var abortEntry = -1

    /// A callback for each resolved object: entry index, type, body, name, worker.
    typealias Visit = (Int, ObjectType, UnsafeRawBufferPointer, ObjectID, Int) -> Void

    init(pack: UnsafeRawBufferPointer, entries: PackEntries, limits: ObjectLimits, name: String,
         budget: WorkBudget = WorkBudget(unlimitedUntil: nil), stopOnLimit: Bool = false,
         external: ((ObjectID) -> GitObject?)? = nil) {
        self.pack = pack
        self.entries = entries
        self.limits = limits
        self.name = name
        self.budget = budget
        self.stopOnLimit = stopOnLimit
        self.external = external
        let n = entries.count
        idBytes = .allocate(byteCount: max(1, n) * 20, alignment: 8)
        idBytes.initializeMemory(as: UInt8.self, repeating: 0)
        types = .allocate(capacity: n)
        types.initialize(repeating: 0)
        states = .allocate(capacity: n)
        states.initialize(repeating: 0)
    }

    deinit {
        idBytes.deallocate()
        types.deallocate()
        states.deallocate()
    }

    /// Bytes of built bases and waiting children kept, for all threads together: an
    /// eighth of the pack's size, at least 4 MiB, at most `limits.deltaBaseBudget`.
    /// Beyond it bodies are dropped and rebuilt on demand (one delta application each,
    /// from the base on top of the path, which is always kept). Measured on jq (22 MB
    /// pack), keeping 64 MiB instead raised the indexer's peak by about 10 MB and
    /// saved no measurable time.
    var baseBudget: Int {
        min(limits.deltaBaseBudget, max(4 << 20, pack.count / 8))
    }

    /// The name computed for entry `i` (valid where its state is .done).
    func id(_ i: Int) -> ObjectID { ObjectID(unsafeRaw: idBytes.baseAddress! + 20 * i, algorithm: .sha1) }

    var failures: [(Int, GitError)] { workerFailures.flatMap { $0.items }.sorted { $0.0 < $1.0 } }

    /// Why resolution stopped early (a limit crossed), and at which entry; nil when it
    /// ran to the end.
    var aborted: (entry: Int, error: GitError)? {
        lock.locked { abortError.map { (abortEntry, $0) } }
    }

    private var isAborted: Bool { lock.locked { abortError != nil } }

    /// Index of the entry starting at `offset`, by binary search.
    func entryIndex(at offset: Int) -> Int? {
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            let o = entries.offsets[mid]
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
            let kind = entries.kinds[i]
            guard kind == PackEntryKind.ofsDelta || kind == PackEntryKind.refDelta else {
                roots.append(Int32(i))
                continue
            }
            let h: PackEntryHeader
            do {
                h = try entries.header(i, in: pack, limit: limits.maxObjectSize)
                // Reading every delta's header makes a page of most of the pack
                // resident: counted, so they are released as the pass goes.
                map?.touched(h.dataOffset - entries.offsets[i])
            } catch {
                states[i] = EntryState.failed.rawValue
                workerFailures[0].items.append((i, error as? GitError ?? GitError(.corrupt, "\(error)")))
                continue
            }
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
        // Released before the bases are built: 12 bytes an entry.
        fill = []
        counts = []
        baseOf = []
        let keep = max(0, baseBudget / max(1, threads))
        parallel(threads) { worker in
            if worker == threads - 1, let extra { extra() }
            let z = Inflater()
            while !self.isAborted, let root = self.takeRoot() {
                self.resolveTree(root: Int(root), base: nil, z: z, worker: worker, keep: keep, visit: visit)
            }
        }
        // Thin-pack bases from outside.
        if let external, !isAborted {
            for (baseID, kids) in refChildren where kids.contains(where: { states[Int($0)] == EntryState.pending.rawValue }) {
                if isAborted { break }
                if let obj = external(baseID), obj.id == baseID {
                    // Which of our objects a thin pack makes us read (and keep) is the
                    // sender's choice: charged like inflating it.
                    do {
                        try budget.chargeInflate(obj.body.count)
                    } catch {
                        if let k = kids.first { fail(Int(k), error, 0) }
                        break
                    }
                    externalBasesUsed[baseID] = obj
                    let z = Inflater()
                    for k in kids where states[Int(k)] == EntryState.pending.rawValue && !isAborted {
                        resolveTree(root: Int(k), base: obj, z: z, worker: 0, keep: keep * max(1, threads), visit: visit)
                    }
                }
            }
        }
        if !isAborted { classifyUnresolved() }
    }

    private func takeRoot() -> Int32? {
        lock.locked {
            guard nextRoot < roots.count else { return nil }
            nextRoot += 1
            return roots[nextRoot - 1]
        }
    }

    /// A base on the current path.
    private struct Frame {
        var entry: Int
        /// Nil once dropped to save memory (rebuilt when needed).
        var body: [UInt8]?
        var type: ObjectType
        var bytes: Int
        /// Next OFS child (index into `children`) and next REF child to build.
        var nextChild: Int
        var refKids: [Int32]
        var nextRef: Int
        /// Built children that have children of their own, to be entered once every
        /// child is built (body kept when memory allowed).
        var waiting: [(entry: Int, body: [UInt8]?)] = []
    }

    /// Inflates entry data, checking the declared size and that the stream ends where
    /// the entry ends. The declared size is charged first.
    private func inflateEntry(_ i: Int, _ z: Inflater) throws -> [UInt8] {
        let h = try entries.header(i, in: pack, limit: limits.maxObjectSize)
        try budget.chargeInflate(h.size)
        let data = UnsafeRawBufferPointer(rebasing: pack[h.dataOffset..<entries.ends[i]])
        let (bytes, used) = try z.inflateExactly(data, size: h.size)
        map?.touched(used)
        if used != data.count {
            throw GitError(.corrupt, "\(data.count - used) stray bytes after the compressed data")
        }
        return bytes
    }

    /// Builds entry `i` (a delta) from its base body.
    private func applyDelta(_ i: Int, base: [UInt8], z: Inflater) throws -> [UInt8] {
        let delta = try inflateEntry(i, z)
        return try base.withUnsafeBytes { b in
            try delta.withUnsafeBytes { try Delta.apply(base: b, delta: $0, limit: limits.maxObjectSize, budget: budget) }
        }
    }

    private func fail(_ i: Int, _ e: any Error, _ worker: Int) {
        states[i] = EntryState.failed.rawValue
        let error = e as? GitError ?? GitError(.corrupt, String(describing: e))
        if budget.exceeded != nil || (stopOnLimit && error.limit != nil) {
            lock.locked {
                if abortError == nil {
                    abortError = budget.exceeded ?? error
                    abortEntry = i
                }
            }
            return
        }
        workerFailures[worker].items.append((i, error))
    }

    /// Whether entry `i` has delta children (OFS ones by position, REF ones by `id`).
    private func hasChildren(_ i: Int, id: ObjectID) -> Bool {
        childStart[i + 1] > childStart[i] || refChildren[id] != nil
    }

    /// Resolves `root` and all its descendants. With `base`, `root` is a REF_DELTA
    /// whose base came from outside the pack. `keep` bounds the bytes of bases held.
    private func resolveTree(root: Int, base: GitObject?, z: Inflater, worker: Int, keep: Int, visit: Visit) {
        var stack: [Frame] = []
        var retained = 0
        let extraDepth = base == nil ? 0 : 1

        /// Hashes and reports a built entry; returns its name.
        /// Throws (and the entry fails) when the object is part of a SHA-1 collision attack.
        func finishEntry(_ i: Int, _ type: ObjectType, _ body: [UInt8]) throws -> ObjectID {
            let id = try body.withUnsafeBytes { try ObjectID.checked(type: type, body: $0) }
            id.write(to: idBytes.baseAddress! + 20 * i)
            types[i] = type.rawValue
            states[i] = EntryState.done.rawValue
            body.withUnsafeBytes { visit(i, type, $0, id, worker) }
            return id
        }

        /// Makes `i` the top of the path.
        func push(_ i: Int, _ type: ObjectType, _ body: [UInt8]?, id: ObjectID) {
            let bytes = body?.count ?? 0
            stack.append(Frame(entry: i, body: body, type: type, bytes: bytes, nextChild: Int(childStart[i]),
                               refKids: refChildren[id] ?? [], nextRef: 0))
            retained += bytes
            trim()
        }

        /// Keeps memory bounded: drops the bodies of the lowest bases on the path
        /// (never the top one); they are rebuilt if needed again.
        func trim() {
            var k = 0
            while retained > keep && k < stack.count - 1 {
                if stack[k].body != nil {
                    stack[k].body = nil
                    retained -= stack[k].bytes
                }
                k += 1
            }
        }

        /// The body of frame `k`, rebuilt from the nearest lower frame that still has
        /// one (or from the pack, or `base`, for the root) when it was dropped.
        func bodyOf(_ k: Int) throws -> [UInt8] {
            if let b = stack[k].body { return b }
            var j = k - 1
            while j >= 0 && stack[j].body == nil { j -= 1 }
            var rebuilt: [UInt8]
            if j >= 0, let b = stack[j].body {
                rebuilt = b
            } else {
                j = 0
                if stack[0].entry == root, let base {
                    rebuilt = try applyDelta(stack[0].entry, base: base.body, z: z)
                } else {
                    rebuilt = try inflateEntry(stack[0].entry, z)
                }
            }
            var m = j + 1
            while m <= k {
                rebuilt = try applyDelta(stack[m].entry, base: rebuilt, z: z)
                m += 1
            }
            stack[k].body = rebuilt
            retained += stack[k].bytes
            return rebuilt
        }

        // The root.
        do {
            let type: ObjectType
            let body: [UInt8]
            if let base {
                guard states[root] == EntryState.pending.rawValue else { return }
                type = base.type
                body = try applyDelta(root, base: base.body, z: z)
            } else {
                guard let t = ObjectType(rawValue: entries.kinds[root]) else { return }
                type = t
                body = try inflateEntry(root, z)
            }
            let id = try finishEntry(root, type, body)
            guard hasChildren(root, id: id) else { return }
            push(root, type, body, id: id)
        } catch {
            fail(root, error, worker)
            return
        }

        while !stack.isEmpty {
            if isAborted { return }
            let top = stack.count - 1
            var child = -1
            if stack[top].nextChild < Int(childStart[stack[top].entry + 1]) {
                child = Int(children[stack[top].nextChild])
                stack[top].nextChild += 1
            } else if stack[top].nextRef < stack[top].refKids.count {
                child = Int(stack[top].refKids[stack[top].nextRef])
                stack[top].nextRef += 1
            }
            if child >= 0 {
                // Build the next child of the top base.
                guard states[child] == EntryState.pending.rawValue else { continue }
                guard stack.count + extraDepth <= limits.maxDeltaDepth else {
                    fail(child, GitError(.deltaCycle, "delta chain deeper than \(limits.maxDeltaDepth)", limit: .deltaDepth), worker)
                    continue
                }
                do {
                    let baseBody = try bodyOf(top)
                    let built = try applyDelta(child, base: baseBody, z: z)
                    let id = try finishEntry(child, stack[top].type, built)
                    if hasChildren(child, id: id) {
                        // Kept when there is room, or when it is the only child left to
                        // enter (entered next, as the base is released).
                        let last = stack[top].nextChild >= Int(childStart[stack[top].entry + 1])
                            && stack[top].nextRef >= stack[top].refKids.count && stack[top].waiting.isEmpty
                        if last || retained + built.count <= keep {
                            stack[top].waiting.append((child, built))
                            retained += built.count
                        } else {
                            stack[top].waiting.append((child, nil))
                        }
                    }
                } catch {
                    fail(child, error, worker)
                }
                continue
            }
            if !stack[top].waiting.isEmpty {
                // Every child is built: enter the waiting ones, the top base's body
                // released as the last one is entered.
                let (entry, kept) = stack[top].waiting.removeFirst()
                var body = kept
                if let kept { retained -= kept.count }
                do {
                    if body == nil {
                        body = try applyDelta(entry, base: try bodyOf(top), z: z)
                    }
                } catch {
                    // It was built once already; only a limit can fail it now.
                    fail(entry, error, worker)
                    continue
                }
                if stack[top].waiting.isEmpty, stack[top].body != nil {
                    stack[top].body = nil
                    retained -= stack[top].bytes
                }
                push(entry, stack[top].type, body, id: self.id(entry))
                continue
            }
            if stack[top].body != nil { retained -= stack[top].bytes }
            stack.removeLast()
        }

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
                    detail = "entry at \(entries.offsets[cur])"
                    break
                }
                if onPath.contains(cur) {
                    result = 2
                    break
                }
                path.append(cur)
                onPath.insert(cur)
                guard let h = try? entries.header(cur, in: pack, limit: limits.maxObjectSize) else {
                    result = 3
                    break
                }
                if h.kind == PackEntryKind.ofsDelta {
                    guard let b = entryIndex(at: h.baseOffset) else { result = 3; break }
                    cur = b
                } else if h.kind == PackEntryKind.refDelta, let baseID = h.baseID {
                    if idToEntry == nil {
                        var map: [ObjectID: Int] = [:]
                        for i in 0..<n where states[i] == EntryState.done.rawValue { map[id(i)] = i }
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
    var threads: [pthread_t] = []
    var inline: [Int] = []
    if count > 1 {
        for w in 1..<count {
            if let t = Threads.start({ body(w) }) {
                threads.append(t)
            } else {
                inline.append(w)
            }
        }
    }
    body(0)
    for w in inline { body(w) }
    for t in threads { pthread_join(t, nil) }
}
