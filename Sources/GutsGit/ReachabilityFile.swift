import GutsSupport

/// What a full walk from a set of ref tips found in one pack, saved next to the pack
/// (`pack-<sha>.reach`), so a first mirror is served without walking the history again:
/// a serving walk over a 300k-object history takes seconds before the first pack byte,
/// reading this file takes a millisecond. The equivalent of git's reachability bitmap,
/// in a simpler format of our own (git ignores unknown files in `objects/pack`).
///
/// Layout (all integers big-endian):
///
///     "GUTSRCH1"                  8 bytes
///     pack checksum               20 bytes, the trailer of the pack it describes
///     object count                4 bytes, the pack's
///     tip count                   4 bytes
///     tips                        20 bytes each, strictly increasing
///     bitmap                      ceil(object count / 64) 64-bit words: bit i of word
///                                 i / 64 (least significant first) is set when the
///                                 object at sorted index position i is reachable
///     checksum                    20 bytes, SHA-1 of everything before it
///
/// The file is only a cache. A server answers a first mirror from it when the request
/// asks for exactly `tips` with no haves, and every want was checked to be a current
/// ref tip before, so the objects
/// it names are reachable from current refs whatever happened to the refs since it was
/// written (a deleted or rewound ref changes the tips a mirror asks for, and the file
/// stops matching). Anything wrong with it (size, magic, another pack, unsorted tips,
/// bits past the end, a tip not marked, checksum) makes `load` return nil, and the
/// server walks instead. Walks for incremental requests and checks stop at the objects
/// it marks (`ClosedObjects`).
public struct ReachabilityFile: Sendable, Equatable {
    public static let suffix = ".reach"
    static let magic = Array("GUTSRCH1".utf8)
    static let headerSize = 8 + 20 + 4 + 4
    /// More tips than any repository serves (`SyncLimits.maxRefs` is far below).
    public static let maxTips = 1 << 20

    /// The trailer checksum of the pack described.
    public let packChecksum: [UInt8]
    public let objectCount: Int
    /// The ref tips the walk started from, sorted, without duplicates.
    public let tips: [ObjectID]
    /// Index positions of the objects reachable from `tips`.
    public let reachable: PositionSet

    public init(packChecksum: [UInt8], objectCount: Int, tips: [ObjectID], reachable: PositionSet) {
        self.packChecksum = packChecksum
        self.objectCount = objectCount
        self.tips = Self.normalize(tips)
        self.reachable = reachable
    }

    /// Sorted, without duplicates: the form tips are recorded and compared in.
    public static func normalize(_ tips: [ObjectID]) -> [ObjectID] {
        Array(Set(tips)).sorted()
    }

    /// `pack-<sha>.reach` beside `pack-<sha>.pack`.
    public static func path(forPack packPath: String) -> String {
        (packPath.hasSuffix(".pack") ? String(packPath.dropLast(5)) : packPath) + suffix
    }

    public func encode() -> [UInt8] {
        let words = reachable.words
        var out: [UInt8] = []
        out.reserveCapacity(Self.headerSize + 20 * tips.count + 8 * words.count + 20)
        out += Self.magic
        out += packChecksum
        Self.append32(&out, UInt32(truncatingIfNeeded: objectCount))
        Self.append32(&out, UInt32(truncatingIfNeeded: tips.count))
        for t in tips { out += t.bytes }
        for w in words {
            withUnsafeBytes(of: w.bigEndian) { out.append(contentsOf: $0) }
        }
        out += SHA1.hash(out)
        return out
    }

    /// Parses `bytes` as the file of a pack with trailer `packChecksum` and
    /// `objectCount` objects; throws `.corrupt` saying what is wrong.
    public static func decode(_ bytes: [UInt8], packChecksum: [UInt8], objectCount: Int) throws -> ReachabilityFile {
        func bad(_ why: String) -> GitError { GitError(.corrupt, "reachability file: \(why)") }
        guard bytes.count >= headerSize + 20 else { throw bad("too short") }
        guard Array(bytes[0..<8]) == magic else { throw bad("bad magic") }
        guard packChecksum.count == 20, Array(bytes[8..<28]) == packChecksum else { throw bad("written for another pack") }
        let count = Int(be32(bytes, 28))
        guard count == objectCount else { throw bad("for \(count) objects, the pack has \(objectCount)") }
        let tipCount = Int(be32(bytes, 32))
        guard tipCount >= 1, tipCount <= maxTips else { throw bad("\(tipCount) tips") }
        let wordCount = (count + 63) / 64
        let expected = headerSize + 20 * tipCount + 8 * wordCount + 20
        guard bytes.count == expected else { throw bad("\(bytes.count) bytes, expected \(expected)") }
        let body = bytes.count - 20
        guard bytes.withUnsafeBytes({ SHA1.hash(UnsafeRawBufferPointer(rebasing: $0[0..<body])) }) == Array(bytes[body...]) else {
            throw bad("checksum mismatch")
        }
        var tips: [ObjectID] = []
        tips.reserveCapacity(tipCount)
        var at = headerSize
        for _ in 0..<tipCount {
            guard let id = ObjectID(bytes: Array(bytes[at..<(at + 20)])) else { throw bad("bad tip") }
            if let last = tips.last, !(last < id) { throw bad("tips not sorted") }
            tips.append(id)
            at += 20
        }
        var words = [UInt64](repeating: 0, count: wordCount)
        for k in 0..<wordCount {
            var w: UInt64 = 0
            for b in 0..<8 { w = w << 8 | UInt64(bytes[at + b]) }
            words[k] = w
            at += 8
        }
        if count % 64 != 0, let last = words.last, last >> UInt64(count % 64) != 0 { throw bad("bits past the last object") }
        return ReachabilityFile(packChecksum: packChecksum, objectCount: count, tips: tips,
                                reachable: PositionSet(words: words))
    }

    /// The file of `pack`, when it exists and is sound for it: its tips are in the pack
    /// and marked. Nil (with the reason in `problem`) otherwise.
    public static func load(for pack: PackReader, problem: ((String) -> Void)? = nil) -> ReachabilityFile? {
        let path = path(forPack: pack.packPath)
        guard Files.exists(path) else { return nil }
        let limit = headerSize + 20 * maxTips + 8 * ((pack.count + 63) / 64) + 20
        do {
            let file = try decode(try Files.read(path, limit: limit), packChecksum: pack.checksumBytes, objectCount: pack.count)
            for t in file.tips {
                guard let i = pack.position(of: t), file.reachable.contains(i) else {
                    throw GitError(.corrupt, "reachability file: tip \(t) is not marked in the pack")
                }
            }
            return file
        } catch {
            problem?("\(path): \(error)")
            return nil
        }
    }

    /// Writes the file of `pack` atomically (temporary file, fsync, rename).
    public func write(for pack: PackReader) throws {
        try Files.writeAtomically(Self.path(forPack: pack.packPath), encode())
    }

    /// The file for `pack` from the objects a full walk from `tips` reached, or nil
    /// when one of them is not in `pack` (then the walk cannot be recorded).
    public static func from(walked objects: [ObjectID], tips: [ObjectID], pack: PackReader) -> ReachabilityFile? {
        var set = PositionSet(count: pack.count)
        for id in objects {
            guard let i = pack.position(of: id) else { return nil }
            _ = set.insert(i)
        }
        for t in tips {
            guard let i = pack.position(of: t), set.contains(i) else { return nil }
        }
        return ReachabilityFile(packChecksum: pack.checksumBytes, objectCount: pack.count, tips: tips, reachable: set)
    }

    /// The reachable objects in pack order (by offset), as a serving stream wants them:
    /// stored deltas then follow their bases, and the pack is read front to back.
    public func objects(in pack: PackReader) throws -> [ObjectID] {
        var entries: [(offset: Int, position: Int32)] = []
        entries.reserveCapacity(objectCount)
        for i in reachable.members {
            guard let off = pack.offset(at: i) else { throw GitError(.corrupt, "\(pack.indexPath): bad offset at \(i)") }
            entries.append((off, Int32(i)))
        }
        entries.sort { $0.offset < $1.offset }
        return entries.map { pack.id(at: Int($0.position)) }
    }

    static func be32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }

    static func append32(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
    }
}

/// Objects stored with everything they reach: those marked in the sound reachability
/// files of a repository's packs. A walk that meets one stops there (`ObjectWalk`'s
/// `closed`), as git's revision walk stops at what a bitmap marks, instead of reading
/// the history and trees below it again.
///
/// Why a mark can be trusted: a file is written by this node only, from a walk that
/// found every object reachable from its tips in its pack (a server's full walk, or a
/// client's check of its first sync), and is loaded only when it is sound for the pack
/// it names (`ReachabilityFile.load`). Packs are never changed in place, so the marked
/// objects and everything they reach stay in that pack for as long as the file matches
/// it, whatever happens to the refs.
public struct ClosedObjects: Sendable {
    let marked: [(pack: PackReader, reachable: PositionSet)]

    /// No object.
    public init() { marked = [] }

    init(marked: [(pack: PackReader, reachable: PositionSet)]) { self.marked = marked }

    public var isEmpty: Bool { marked.isEmpty }

    /// Whether `id` is marked (from the pack index and the marks alone: no pack entry
    /// is read).
    public func contains(_ id: ObjectID) -> Bool {
        for m in marked {
            if let i = m.pack.position(of: id), m.reachable.contains(i) { return true }
        }
        return false
    }

    /// The type of `id` when it is marked, nil when it is not (or its pack entry is bad).
    public func type(of id: ObjectID) -> ObjectType? {
        for m in marked {
            if let i = m.pack.position(of: id), m.reachable.contains(i) { return m.pack.type(at: i) }
        }
        return nil
    }

    /// The marks of every sound reachability file among `packs`. With `coveredBy`, only
    /// files whose tips are all in that set (a server asked with those haves: the
    /// client holds everything they reach, hence everything such a file marks).
    public static func load(_ packs: [PackReader], coveredBy haves: Set<ObjectID>? = nil,
                            problem: ((String) -> Void)? = nil) -> ClosedObjects {
        var marked: [(pack: PackReader, reachable: PositionSet)] = []
        for pack in packs {
            guard let file = ReachabilityFile.load(for: pack, problem: problem) else { continue }
            if let haves, !file.tips.allSatisfy(haves.contains) { continue }
            marked.append((pack, file.reachable))
        }
        return ClosedObjects(marked: marked)
    }
}
