#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Pack entry type numbers (the four object types plus the two delta kinds).
enum PackEntryKind {
    static let ofsDelta: UInt8 = 6
    static let refDelta: UInt8 = 7
}

/// The header of one pack entry.
struct PackEntryHeader {
    /// 1-4 (object types), 6 (OFS_DELTA) or 7 (REF_DELTA).
    var kind: UInt8
    /// Inflated size of the entry's data (object body, or delta instructions).
    var size: Int
    /// Where the zlib stream starts.
    var dataOffset: Int
    /// For OFS_DELTA: the base entry's offset.
    var baseOffset: Int
    /// For REF_DELTA: the base object's name.
    var baseID: ObjectID?

    var isDelta: Bool { kind >= 6 }

    /// Parses the entry header at `offset`; `end` is where entry data must stop (the
    /// start of the pack trailer). Rejects bad types, overlong varints, sizes over
    /// `limit` and OFS_DELTA bases outside `12..<offset`.
    static func parse(_ pack: UnsafeRawBufferPointer, at offset: Int, end: Int, limit: Int) throws -> PackEntryHeader {
        guard offset >= 12, offset < end else { throw GitError(.corrupt, "entry offset \(offset) outside the pack") }
        var p = offset
        var c = pack[p]
        p += 1
        let kind = (c >> 4) & 7
        var size = Int(c & 15)
        var shift = 4
        while c & 0x80 != 0 {
            guard p < end else { throw GitError(.corrupt, "entry header at \(offset) truncated") }
            guard shift <= 56 else { throw GitError(.corrupt, "entry size at \(offset) overflows") }
            c = pack[p]
            p += 1
            size |= Int(c & 0x7F) << shift
            shift += 7
        }
        guard kind != 0 && kind != 5 else { throw GitError(.corrupt, "entry at \(offset) has invalid type \(kind)") }
        guard size <= limit else {
            throw GitError(.tooLarge, "entry at \(offset) declares \(size) bytes (limit \(limit))", limit: .objectSize)
        }
        var header = PackEntryHeader(kind: kind, size: size, dataOffset: 0, baseOffset: -1, baseID: nil)
        if kind == PackEntryKind.ofsDelta {
            guard p < end else { throw GitError(.corrupt, "entry header at \(offset) truncated") }
            c = pack[p]
            p += 1
            var rel = Int(c & 0x7F)
            while c & 0x80 != 0 {
                guard p < end else { throw GitError(.corrupt, "entry header at \(offset) truncated") }
                guard rel < (1 << 55) else { throw GitError(.corrupt, "delta base offset at \(offset) overflows") }
                c = pack[p]
                p += 1
                rel = ((rel + 1) << 7) | Int(c & 0x7F)
            }
            guard rel > 0, rel <= offset - 12 else {
                throw GitError(.corrupt, "entry at \(offset) has delta base offset \(offset - rel) outside the pack")
            }
            header.baseOffset = offset - rel
        } else if kind == PackEntryKind.refDelta {
            guard end - p >= 20 else { throw GitError(.corrupt, "entry header at \(offset) truncated") }
            header.baseID = ObjectID(unsafeRaw: pack.baseAddress! + p, algorithm: .sha1)
            p += 20
        }
        guard p < end else { throw GitError(.corrupt, "entry at \(offset) has no data") }
        header.dataOffset = p
        return header
    }
}

/// Random access to the objects of one pack through its v2 index, both memory-mapped.
/// Resolves OFS_DELTA and REF_DELTA chains iteratively (no recursion), with depth and
/// cycle checks, and keeps recently built delta bases in a small cache.
/// Safe to share between threads (reads are serialised by an internal lock).
///
/// Conforms to `ObjectStore`, so a pack indexed into a quarantine directory can be
/// combined with a repository (`CombinedStore`) for connectivity checks.
public final class PackReader: ObjectStore, @unchecked Sendable {
    public let packPath: String
    public let indexPath: String
    let pack: MappedFile
    let index: PackIndex
    let limits: ObjectLimits
    /// Charged with every inflation and delta application (for packs from peers).
    let budget: WorkBudget?
    private let lock = Mutex()
    private var inflater: Inflater?
    private var cache: BaseCache

    /// Opens a pack and its index, checking their structure (not yet their checksums).
    /// With a `budget`, every object read is charged to it (see `WorkBudget`).
    public init(packPath: String, indexPath: String, limits: ObjectLimits = .localStore, budget: WorkBudget? = nil) throws {
        self.packPath = packPath
        self.indexPath = indexPath
        self.limits = limits
        self.budget = budget
        pack = try MappedFile(path: packPath)
        // Reads are random and a walk may touch most of a pack: its pages are released
        // every few MiB read instead of accumulating (they stay in the page cache).
        pack.releaseInterval = MappedFile.defaultReleaseInterval
        index = try PackIndex(file: try MappedFile(path: indexPath), limits: limits)
        // Sized from the pack: an eighth of it, between 2 and 32 MiB.
        cache = BaseCache(budget: min(32 << 20, max(2 << 20, pack.count / 8)))
        let b = pack.buffer
        guard b.count >= 32 else { throw GitError(.corrupt, "\(packPath): pack too short") }
        guard b[0] == 0x50, b[1] == 0x41, b[2] == 0x43, b[3] == 0x4B else { throw GitError(.corrupt, "\(packPath): not a pack file") }
        let version = PackIndex.be32(b, 4)
        guard version == 2 || version == 3 else { throw GitError(.corrupt, "\(packPath): unsupported pack version \(version)") }
        let n = Int(PackIndex.be32(b, 8))
        guard n == index.count else {
            throw GitError(.corrupt, "\(packPath): pack has \(n) objects, its index \(index.count)")
        }
    }

    /// Number of objects in the pack.
    public var count: Int { index.count }

    /// The object name at sorted position `i` (0..<count).
    public func id(at i: Int) -> ObjectID { index.id(at: i) }

    /// Whether the pack holds `id`.
    public func contains(_ id: ObjectID) -> Bool { index.find(id) != nil }

    /// The sorted position of `id` in the index (0..<count), if present.
    public func position(of id: ObjectID) -> Int? { index.find(id) }

    /// The entry offset of `id`, if present.
    public func offset(of id: ObjectID) -> Int? {
        guard let i = index.find(id) else { return nil }
        return index.offset(at: i)
    }

    /// The entry offset of the object at sorted position `i` (nil when the index is bad there).
    public func offset(at i: Int) -> Int? { index.offset(at: i) }

    /// The type of the object at sorted position `i`, from entry headers alone (a
    /// delta has its base's type), without inflating anything; nil when the entry or
    /// its chain of bases is bad, too deep or outside the pack.
    public func type(at i: Int) -> ObjectType? {
        guard var cur = index.offset(at: i) else { return nil }
        let b = pack.buffer
        let end = pack.count - 20
        for _ in 0...max(1, limits.maxDeltaDepth) {
            guard let h = try? PackEntryHeader.parse(b, at: cur, end: end, limit: limits.maxObjectSize) else { return nil }
            if !h.isDelta { return ObjectType(rawValue: h.kind) }
            if h.kind == PackEntryKind.ofsDelta {
                cur = h.baseOffset
            } else if let base = h.baseID, let j = index.find(base), let off = index.offset(at: j) {
                cur = off
            } else {
                return nil
            }
        }
        return nil
    }

    /// The pack's trailer checksum.
    public var checksumBytes: [UInt8] { Array(pack.buffer[(pack.count - 20)...]) }

    /// The pack's trailer checksum (hex).
    public var checksum: String { Hex.encode(UnsafeRawBufferPointer(rebasing: pack.buffer[(pack.count - 20)...])) }

    /// Reads `id` from this pack, or nil when the pack does not have it. The content
    /// is hashed and must match `id` (`.hashMismatch` otherwise; `.collisionAttack`
    /// when it is part of a SHA-1 collision attack).
    public func read(_ id: ObjectID) throws -> GitObject? {
        guard let i = index.find(id) else { return nil }
        guard let off = index.offset(at: i) else { throw GitError(.corrupt, "\(indexPath): bad offset for \(id)") }
        let obj = try read(at: off)
        let actual = try obj.checkedID()
        guard actual == id else { throw GitError(.hashMismatch, "\(packPath): object \(id) hashes to \(actual)") }
        return obj
    }

    /// Reads `id` without hashing it again (see `ObjectStore.readTrusted`).
    public func readTrusted(_ id: ObjectID) throws -> GitObject? {
        guard let i = index.find(id) else { return nil }
        guard let off = index.offset(at: i) else { throw GitError(.corrupt, "\(indexPath): bad offset for \(id)") }
        return try read(at: off)
    }

    /// Reads and fully resolves the entry at `offset`. `external` supplies REF_DELTA
    /// bases that are not in this pack (thin packs); stored packs must not need it.
    func read(at offset: Int, external: ((ObjectID) throws -> GitObject?)? = nil) throws -> GitObject {
        try lock.locked {
            if inflater == nil { inflater = Inflater() }
            guard let z = inflater else { throw GitError(.io, "zlib unavailable") }
            return try resolve(offset, z, external)
        }
    }

    private func resolve(_ offset: Int, _ z: Inflater, _ external: ((ObjectID) throws -> GitObject?)?) throws -> GitObject {
        let b = pack.buffer
        let end = pack.count - 20
        var chain: [PackEntryHeader] = []
        var chainOffsets: [Int] = []
        var visited = Set<Int>()
        var cur = offset
        var base: GitObject
        while true {
            if let hit = cache.get(cur) {
                base = hit
                break
            }
            let h = try PackEntryHeader.parse(b, at: cur, end: end, limit: limits.maxObjectSize)
            if !h.isDelta {
                guard let type = ObjectType(rawValue: h.kind) else { throw GitError(.corrupt, "bad entry type") }
                let data = UnsafeRawBufferPointer(rebasing: b[h.dataOffset..<end])
                let body: [UInt8]
                do {
                    try budget?.chargeInflate(h.size)
                    let (bytes, used) = try z.inflateExactly(data, size: h.size)
                    pack.touched(used)
                    body = bytes
                } catch let e as GitError {
                    throw e.prefixed("\(packPath) entry at \(cur): ")
                }
                base = GitObject(type: type, body: body)
                if !chain.isEmpty { cache.put(cur, base) }
                break
            }
            chain.append(h)
            chainOffsets.append(cur)
            if chain.count > limits.maxDeltaDepth {
                throw GitError(.deltaCycle, "\(packPath): delta chain from \(offset) deeper than \(limits.maxDeltaDepth)",
                               limit: .deltaDepth)
            }
            if chain.count > 32 {
                if visited.isEmpty { visited = Set(chainOffsets) } else { visited.insert(cur) }
            }
            if h.kind == PackEntryKind.ofsDelta {
                cur = h.baseOffset
            } else if let baseID = h.baseID {
                if let i = index.find(baseID), let off = index.offset(at: i) {
                    cur = off
                } else if let external, let obj = try external(baseID) {
                    base = obj
                    break
                } else {
                    throw GitError(.missingBase, "\(packPath): delta at \(cur) needs missing base \(baseID)")
                }
            }
            if visited.contains(cur) {
                throw GitError(.deltaCycle, "\(packPath): delta chain from \(offset) loops back to \(cur)")
            }
        }
        var i = chain.count - 1
        while i >= 0 {
            let h = chain[i]
            let data = UnsafeRawBufferPointer(rebasing: b[h.dataOffset..<end])
            let delta: [UInt8]
            do {
                try budget?.chargeInflate(h.size)
                let (bytes, used) = try z.inflateExactly(data, size: h.size)
                pack.touched(used)
                delta = bytes
            } catch let e as GitError {
                throw e.prefixed("\(packPath) entry at \(chainOffsets[i]): ")
            }
            let result: [UInt8]
            do {
                result = try base.body.withUnsafeBytes { bb in
                    try delta.withUnsafeBytes { try Delta.apply(base: bb, delta: $0, limit: limits.maxObjectSize, budget: budget) }
                }
            } catch let e as GitError {
                throw e.prefixed("\(packPath) entry at \(chainOffsets[i]): ")
            }
            base = GitObject(type: base.type, body: result)
            if i > 0 { cache.put(chainOffsets[i], base) }
            i -= 1
        }
        return base
    }
}

/// Two-generation approximation of an LRU cache of resolved delta bases, by offset.
struct BaseCache {
    private var young: [Int: GitObject] = [:]
    private var old: [Int: GitObject] = [:]
    private var youngBytes = 0
    let budget: Int

    init(budget: Int) { self.budget = budget }

    mutating func get(_ key: Int) -> GitObject? {
        if let v = young[key] { return v }
        if let v = old.removeValue(forKey: key) {
            put(key, v)
            return v
        }
        return nil
    }

    mutating func put(_ key: Int, _ value: GitObject) {
        guard value.body.count <= budget / 4 else { return }
        if young[key] == nil { youngBytes += value.body.count }
        young[key] = value
        if youngBytes > budget / 2 {
            old = young
            young = [:]
            youngBytes = 0
        }
    }
}

/// The heap-allocated pthread mutex from GutsSupport, by its short local name.
public typealias Mutex = HeapMutex
