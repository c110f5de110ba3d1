#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// `git index-pack` for packs from untrusted peers.
///
/// Given a pack file (for example received into a quarantine directory), it parses
/// every entry with bounds checks, verifies the trailer checksum, resolves all deltas
/// (OFS and REF, any order, with cycle and missing-base detection), hashes every
/// object, validates every object with git fsck's rules, and writes a v2 index.
///
/// Thin packs (REF_DELTA bases that are not in the pack) are completed as
/// `git index-pack --fix-thin` does: the bases, read from `baseStore`, are appended to
/// the pack as whole objects, the object count in the header is raised and the
/// trailer recomputed. The result is always a self-contained pack that stock git
/// accepts. The input file is replaced by `pack-<checksum>.pack` next to it (or in
/// `outputDirectory`), with `pack-<checksum>.idx`.
public enum PackIndexer {
    /// What indexing produced.
    public struct Result: Sendable {
        public let packPath: String
        public let indexPath: String
        /// Hex SHA-1 trailer of the final pack.
        public let checksum: String
        /// Number of objects in the final pack (appended bases included).
        public let count: Int
        /// Object types in the order of the index (by name).
        let typesByName: [UInt8]
        /// Bases appended to complete a thin pack, by name.
        public let appendedBaseIDs: [ObjectID]
        /// Non-fatal rule violations (warnings) found in objects.
        public let warnings: [(id: ObjectID, issue: ObjectIssue)]
        /// With `collectLinks`: every object the pack's objects name, with the type it
        /// must have (a tag's target: the type the tag declares), as the fsck rules read them.
        public var links: PackLinks? = nil

        /// Bases appended to complete a thin pack.
        public var appendedBases: Int { appendedBaseIDs.count }

        /// The type of the object at index position `j` (by name).
        public func type(atIndexPosition j: Int) -> ObjectType? {
            j >= 0 && j < typesByName.count ? ObjectType(rawValue: typesByName[j]) : nil
        }

        /// Every object in the final pack with its type, by name, read back from the
        /// index written. Not kept by the indexer (40 bytes an object): large callers
        /// read the index through a `PackReader` instead.
        public var objects: [(id: ObjectID, type: ObjectType)] {
            get throws {
                let index = try PackIndex(file: try MappedFile(path: indexPath), limits: .localStore)
                guard index.count == typesByName.count else { throw GitError(.corrupt, "\(indexPath) changed since it was written") }
                return (0..<index.count).compactMap { j in ObjectType(rawValue: typesByName[j]).map { (index.id(at: j), $0) } }
            }
        }
    }

    /// Indexes the pack at `packPath`. Throws on the first fatal problem: malformed
    /// structure, checksum mismatch, unresolvable deltas, or an object breaking an
    /// error-level fsck rule. On failure no output files are left behind (the input is
    /// left in place for the caller to delete).
    ///
    /// All work is charged to `budget` (by default one computed from the pack's size
    /// and `limits`, see `WorkBudget`): the first limit crossed (work, deadline, object
    /// size, chain depth) stops every thread and is thrown, its `limit` set.
    public static func index(packPath: String, outputDirectory: String? = nil, baseStore: (any ObjectStore)? = nil,
                             limits: ObjectLimits = .default, budget: WorkBudget? = nil, threads: Int = 2,
                             prescan: PackPrescan.Result? = nil, collectLinks: Bool = false) throws -> Result {
        let map = try MappedFile(path: packPath)
        let pack = map.buffer
        let budget = budget ?? WorkBudget(limits: limits, inputBytes: pack.count)
        map.adviseSequential()
        // Only offsets and CRCs are kept per entry; the pack's pages are released as
        // they are read, so a large pack is never resident whole.
        map.releaseInterval = MappedFile.defaultReleaseInterval
        guard pack.count >= 32 else { throw GitError(.corrupt, "pack too short (\(pack.count) bytes)") }
        guard pack[0] == 0x50, pack[1] == 0x41, pack[2] == 0x43, pack[3] == 0x4B else { throw GitError(.corrupt, "not a pack file") }
        let version = PackIndex.be32(pack, 4)
        guard version == 2 || version == 3 else { throw GitError(.corrupt, "unsupported pack version \(version)") }
        let declared = Int(PackIndex.be32(pack, 8))
        guard declared <= limits.maxPackObjects else { throw GitError(.tooLarge, "pack declares \(declared) objects (limit \(limits.maxPackObjects))", limit: .packObjects) }
        // Each entry takes at least 2 bytes (header + minimal zlib is more), so a
        // count beyond that is a lie; refuse before allocating per-entry tables.
        guard declared <= (pack.count - 32) / 2 + 1 else { throw GitError(.corrupt, "pack declares \(declared) objects but is only \(pack.count) bytes") }
        let end = pack.count - 20

        var entries = PackEntries()
        var crcs: [UInt32] = []
        if let pre = prescan, pre.packBytes == pack.count, pre.declared == declared, pre.entries.count == declared,
           pre.trailerMatches, pre.entries.ends.last ?? 12 == end {
            // Scanned while it arrived (`PackPrescan`): its inflation counts against
            // this budget as the scan below would.
            try budget.chargeInflate(pre.inflated)
            entries = pre.entries
            crcs = pre.crcs
            MemoryTrace.mark("index: prescanned \(entries.count) entries")
        } else {
            try scan(pack: pack, map: map, declared: declared, end: end, limits: limits, budget: budget, entries: &entries, crcs: &crcs)
        }

        let store = baseStore
        let resolver = DeltaResolver(pack: pack, entries: entries, limits: limits, name: packPath, budget: budget,
                                     stopOnLimit: true, external: store.map { s in
            { id in (try? s.read(id)) ?? nil }
        })
        resolver.map = map
        let workers = max(1, threads)
        let issues = (0..<workers).map { _ in IssueList() }
        let links = collectLinks ? PackLinks() : nil
        resolver.run(threads: workers) { _, type, body, id, worker in
            var named: [(ObjectID, ObjectType)] = []
            let found = ObjectChecker.check(type: type, body: body, limits: limits) { link, linkType in
                if links != nil { named.append((link, linkType)) }
            }
            for issue in found { issues[worker].items.append((id, issue)) }
            if let links, !named.isEmpty { links.add(named) }
        }
        if let (i, e) = resolver.aborted ?? resolver.failures.first {
            throw e.prefixed("entry at \(entries.offsets[i]): ")
        }
        MemoryTrace.mark("index: resolved")
        let allIssues = issues.flatMap { $0.items }
        if let (id, e) = allIssues.first(where: { $0.1.severity == .error }) {
            throw GitError(.invalidObject, "object \(id): \(e)")
        }

        for i in 0..<entries.count where ObjectType(rawValue: resolver.types[i]) == nil {
            throw GitError(.corrupt, "entry at \(entries.offsets[i]) unresolved")
        }

        let outDir = outputDirectory ?? Files.directoryName(packPath)
        do {
            try Files.makeDirectories(outDir)
        } catch { throw GitError.io(error) }
        let digest: [UInt8]
        let bases = resolver.externalBasesUsed.sorted { $0.key < $1.key }
        // Index entries past the pack's own: the appended bases.
        var appended: [(id: ObjectID, offset: Int, crc: UInt32, type: ObjectType)] = []
        var completed: StreamingFile?
        if bases.isEmpty {
            digest = Array(UnsafeRawBufferPointer(rebasing: pack[end...]))
        } else {
            // Complete the thin pack, streamed to a temporary file: the same entries
            // (so offsets and CRCs stay valid) with the count raised, then the bases.
            let out = try StreamingFile(directory: outDir)
            var header = Array(UnsafeRawBufferPointer(rebasing: pack[0..<12]))
            let total = UInt32(clamping: declared + bases.count)
            withUnsafeBytes(of: total.bigEndian) { raw in for k in 0..<4 { header[8 + k] = raw[k] } }
            try out.write(header)
            var at = 12
            while at < end {
                let n = min(end - at, 1 << 20)
                try out.write(UnsafeRawBufferPointer(rebasing: pack[at..<(at + n)]))
                map.touched(n)
                at += n
            }
            for (id, obj) in bases {
                var entry = PackWriter.entryHeader(kind: obj.type.rawValue, size: obj.body.count)
                entry += try Zlib.deflate(obj.body, level: 6)
                appended.append((id, out.written, entry.withUnsafeBytes { Zlib.crc32($0) }, obj.type))
                try out.write(entry)
            }
            digest = out.finishHash()
            try out.write(digest)
            completed = out
        }
        let hex = Hex.encode(digest)
        let outPack = "\(outDir)/pack-\(hex).pack"
        let outIndex = "\(outDir)/pack-\(hex).idx"
        do {
            if let completed {
                try completed.commit(to: outPack)
                if outPack != packPath { unlink(packPath) }
            } else if outPack != packPath {
                guard rename(packPath, outPack) == 0 else {
                    throw GitError(.io, FileError(path: outPack, operation: "rename", code: errno).description)
                }
            }
        } catch {
            throw GitError.io(error)
        }
        // The index, written from the resolver's tables through a sorted order of entry
        // numbers: no per-object table is built for it.
        let n = entries.count
        let offsets = entries.offsets
        func id(_ k: Int) -> ObjectID { k < n ? resolver.id(k) : appended[k - n].id }
        let order = PackIndexWriter.sortedOrder(count: n + appended.count, id: id)
        var typesByName = [UInt8](repeating: 0, count: order.count)
        for (j, k) in order.enumerated() {
            typesByName[j] = Int(k) < n ? resolver.types[Int(k)] : appended[Int(k) - n].type.rawValue
        }
        do {
            let idx = PackIndexWriter.build(order: order, id: id,
                                            offset: { $0 < n ? offsets[$0] : appended[$0 - n].offset },
                                            crc: { $0 < n ? crcs[$0] : appended[$0 - n].crc },
                                            packChecksum: digest)
            try Files.writeAtomically(outIndex, idx, mode: 0o444)
        } catch {
            throw GitError.io(error)
        }
        var result = Result(packPath: outPack, indexPath: outIndex, checksum: hex, count: order.count, typesByName: typesByName,
                            appendedBaseIDs: appended.map(\.id), warnings: allIssues)
        result.links = links
        return result
    }

    /// The first pass: every entry located (inflated to find its end, its CRC-32
    /// taken) while a second thread checks the trailer checksum.
    static func scan(pack: UnsafeRawBufferPointer, map: MappedFile, declared: Int, end: Int, limits: ObjectLimits,
                     budget: WorkBudget, entries: inout PackEntries, crcs: inout [UInt32]) throws {
        // The trailer checksum, hashed on a second thread while entries are scanned.
        let checksumOK = ChecksumTask(pack: pack, end: end, map: map)
        var found = PackEntries()
        found.reserveCapacity(declared)
        var sums: [UInt32] = []
        sums.reserveCapacity(declared)
        var scanError: GitError?
        var scanFailed = false
        let scanLock = Mutex()
        parallel(2) { worker in
            if worker == 1 {
                // Stops early once the scan failed (no point finishing the hash).
                checksumOK.run { scanLock.locked { scanFailed } }
                return
            }
            let z = Inflater()
            var scratch = [UInt8](repeating: 0, count: 1 << 16)
            var offset = 12
            do {
                for _ in 0..<declared {
                    let h = try PackEntryHeader.parse(pack, at: offset, end: end, limit: limits.maxObjectSize)
                    let data = UnsafeRawBufferPointer(rebasing: pack[h.dataOffset..<end])
                    let used: Int
                    do {
                        try budget.chargeInflate(h.size)
                        used = try scratch.withUnsafeMutableBytes { try z.skip(data, expectedSize: h.size, scratch: $0) }
                    } catch let e as GitError {
                        throw e.prefixed("entry at \(offset): ")
                    }
                    let next = h.dataOffset + used
                    found.append(offset: offset, end: next, kind: h.kind)
                    sums.append(Zlib.crc32(UnsafeRawBufferPointer(rebasing: pack[offset..<next])))
                    map.touched(next - offset)
                    offset = next
                }
                if offset != end {
                    throw GitError(.corrupt, "\(end - offset) bytes of garbage after the last entry")
                }
            } catch {
                scanError = GitError.io(error)
                scanLock.locked { scanFailed = true }
            }
        }
        if let scanError { throw scanError }
        MemoryTrace.mark("index: scanned \(found.count) entries")
        guard checksumOK.matches else { throw GitError(.hashMismatch, "pack trailer checksum does not match its content") }
        entries = found
        crcs = sums
    }

    final class IssueList {
        var items: [(ObjectID, ObjectIssue)] = []
    }
}

/// A temporary file in a directory, written through a buffer while being hashed, then
/// fsynced and renamed into place (or removed if never committed).
final class StreamingFile {
    let path: String
    private var fd: Int32
    private var hasher = SHA1()
    private var buffer: [UInt8] = []
    private(set) var written = 0
    private var committed = false

    init(directory: String) throws {
        var template = Array("\(directory)/tmp_pack_XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw GitError(.io, FileError(path: directory, operation: "create temporary file in", code: errno).description) }
        path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(path) }
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        hasher.update(bytes)
        buffer.append(contentsOf: bytes)
        written += bytes.count
        if buffer.count >= 1 << 20 { try flush() }
    }

    /// The SHA-1 of everything written so far (further writes are not hashed).
    func finishHash() -> [UInt8] { hasher.finalize() }

    private func flush() throws {
        let code = Files.writeAll(fd, buffer)
        guard code == 0 else { throw GitError(.io, FileError(path: path, operation: "write", code: code).description) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, fsyncs, makes read-only and renames to `target`.
    func commit(to target: String) throws {
        try flush()
        guard fsync(fd) == 0 else { throw GitError(.io, FileError(path: path, operation: "fsync", code: errno).description) }
        close(fd)
        fd = -1
        _ = chmod(path, 0o444)
        guard rename(path, target) == 0 else { throw GitError(.io, FileError(path: target, operation: "rename", code: errno).description) }
        committed = true
        Files.syncDirectory(Files.directoryName(target))
    }
}

/// Hashes `pack[0..<end]` and compares with the 20 bytes at `end`.
final class ChecksumTask: @unchecked Sendable {
    let pack: UnsafeRawBufferPointer
    let end: Int
    /// The mapping `pack` lies in, told what is read (so its pages are released).
    let map: MappedFile?
    private(set) var matches = false
    private(set) var computed: [UInt8] = []

    init(pack: UnsafeRawBufferPointer, end: Int, map: MappedFile? = nil) {
        self.pack = pack
        self.end = end
        self.map = map
    }

    /// Hashes in 1 MiB steps; gives up (leaving `matches` false) as soon as `stop`
    /// says the result is no longer wanted.
    func run(stop: () -> Bool = { false }) {
        var hasher = SHA1()
        var at = 0
        while at < end {
            if stop() { return }
            let n = min(end - at, 1 << 20)
            hasher.update(UnsafeRawBufferPointer(rebasing: pack[at..<(at + n)]))
            map?.touched(n)
            at += n
        }
        computed = hasher.finalize()
        matches = computed.elementsEqual(pack[end..<(end + 20)])
    }
}

/// The objects a pack's objects name (commit trees and parents, tree entries other
/// than submodules, tag targets), each with the type it must have, collected while the
/// pack is indexed: a receiver checks a self-contained pack's completeness and extras
/// from these instead of walking the history again.
public final class PackLinks: @unchecked Sendable {
    /// The table is in stripes, by the first bits of the name, each with its own lock:
    /// the workers add links at the same time (trees name millions of them; one table
    /// under one lock serialised them), and each name is stored once. Plain memory
    /// rather than an array of objects, so that adding a link costs no reference
    /// counting.
    static let stripeBits = 6
    static let stripeCount = 1 << stripeBits
    private let tables: UnsafeMutablePointer<[ObjectID: ObjectType]>
    private let locks: UnsafeMutablePointer<pthread_mutex_t>
    private let conflictLock = Mutex()
    private var firstConflict: ObjectID?

    init() {
        tables = .allocate(capacity: PackLinks.stripeCount)
        tables.initialize(repeating: [:], count: PackLinks.stripeCount)
        locks = .allocate(capacity: PackLinks.stripeCount)
        for k in 0..<PackLinks.stripeCount { pthread_mutex_init(locks + k, nil) }
    }

    deinit {
        for k in 0..<PackLinks.stripeCount { pthread_mutex_destroy(locks + k) }
        locks.deallocate()
        tables.deinitialize(count: PackLinks.stripeCount)
        tables.deallocate()
    }

    /// Adds the links one object names (any thread).
    func add(_ named: [(ObjectID, ObjectType)]) {
        for (id, type) in named {
            let k = Int(truncatingIfNeeded: id.w0 >> UInt64(64 - PackLinks.stripeBits))
            pthread_mutex_lock(locks + k)
            // One lookup: a conflict abandons the check, so which type stays is moot.
            let old = tables[k].updateValue(type, forKey: id)
            pthread_mutex_unlock(locks + k)
            if let old, old != type {
                conflictLock.locked { if firstConflict == nil { firstConflict = id } }
            }
        }
    }

    /// An object named as two different types (one of them is wrong), if any.
    public var conflict: ObjectID? { conflictLock.locked { firstConflict } }

    public var count: Int {
        var n = 0
        for k in 0..<PackLinks.stripeCount {
            pthread_mutex_lock(locks + k)
            n += tables[k].count
            pthread_mutex_unlock(locks + k)
        }
        return n
    }

    /// Each named object with its required type.
    public func forEach(_ body: (ObjectID, ObjectType) throws -> Void) rethrows {
        for k in 0..<PackLinks.stripeCount {
            pthread_mutex_lock(locks + k)
            defer { pthread_mutex_unlock(locks + k) }
            for (id, t) in tables[k] { try body(id, t) }
        }
    }
}
