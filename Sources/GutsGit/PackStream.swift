import GutsSupport

/// Produces a pack holding a given list of objects, piece by piece, for sending over
/// a connection: memory stays bounded by one chunk plus one object, however large the
/// pack.
///
/// Stored entries are reused as they are: a whole object stored in a pack is copied
/// without inflating or recompressing it, and a stored delta is copied when its base is
/// in the same stored pack and also being sent (so the result never needs a base the
/// receiver lacks, and never forms a cycle). Everything else (loose objects, deltas on
/// bases not sent) is written whole, compressed afresh.
///
/// A reused delta travels as a REF_DELTA (its base named by ID), or, with
/// `offsetDeltas` (the receiver announced `ofs-delta`), as an OFS_DELTA: its base is
/// then written first if it was not yet (as `git pack-objects` does), and named by its
/// distance back in the stream, which saves about 18 bytes per delta. The entries come
/// in the order of `objects` except that bases move ahead of their deltas. With
/// `offsetDeltas` the base may be stored in any pack (a loop among stored deltas is
/// detected and broken by sending the object whole).
///
/// `thinBases`: objects the receiver is known to have (`ObjectWalk.Result.excluded`).
/// A stored delta whose base is one of them and not sent goes as a REF_DELTA naming
/// it (a thin pack, which the receiver completes), instead of whole.
public final class PackStream {
    private let repository: Repository
    private let ids: [ObjectID]
    /// Position in `ids` of every object sent.
    private let position: [ObjectID: Int32]
    /// Offset in the stream of each position's entry; `PackStream.unwritten` before it
    /// is written, `PackStream.visiting` while its base is being written first.
    private var offsets: [Int]
    private static let unwritten = -1
    private static let visiting = -2
    /// Positions waiting for their base to be written (OFS_DELTA mode).
    private var stack: [Int] = []
    private var next = 0
    /// Bytes queued so far, header included: the offset of the next entry.
    private var queued = 0
    private let offsetDeltas: Bool
    private var hasher = SHA1()
    /// Bytes produced but not yet returned: `pending[pendingStart...]`.
    private var pending: [UInt8] = []
    private var pendingStart = 0
    /// Stored compressed data still to copy; points into a mapping kept alive by `sources`.
    private var raw: UnsafeRawBufferPointer?
    /// The mapping `raw` lies in, told what is copied (so its pages are released).
    private var rawSource: MappedFile?
    private var trailerWritten = false
    /// Packs used so far, kept alive while their mapped bytes may be referenced.
    private var sources: [ObjectIdentifier: (PackReader, PackLayout)] = [:]
    private let level: Int32

    /// Entries copied from stored packs without recompression.
    public private(set) var reusedObjects = 0
    /// Of those, deltas reused (as REF_DELTA or OFS_DELTA).
    public private(set) var reusedDeltas = 0
    /// Of those, deltas sent as OFS_DELTA.
    public private(set) var offsetDeltaCount = 0
    /// Of those, deltas sent against a base the receiver has (`thinBases`).
    public private(set) var thinDeltaCount = 0
    private let thinBases: Set<ObjectID>
    /// Objects compressed afresh.
    public private(set) var compressedObjects = 0
    /// Bytes produced so far.
    public private(set) var bytesProduced = 0

    public var objectCount: Int { ids.count }

    /// With `indexing`: each entry's name, offset and CRC-32, in stream order, for an
    /// index of the pack.
    public private(set) var entries: [(id: ObjectID, offset: Int, crc: UInt32)] = []
    private let indexing: Bool
    /// The pack's SHA-1 trailer, once produced.
    public private(set) var checksum: [UInt8]?

    /// `indexing`: keep what an index of the pack needs (`entries`), and check every
    /// stored entry against the CRC-32 its own index records before copying it, so a
    /// damaged stored entry stops the stream instead of being copied on.
    public init(repository: Repository, objects: [ObjectID], offsetDeltas: Bool = false, thinBases: Set<ObjectID> = [],
                indexing: Bool = false, compressionLevel: Int32 = 6) {
        self.thinBases = thinBases
        self.repository = repository
        self.ids = objects
        var position: [ObjectID: Int32] = [:]
        position.reserveCapacity(objects.count)
        for (i, id) in objects.enumerated() { position[id] = Int32(i) }
        self.position = position
        self.offsets = [Int](repeating: PackStream.unwritten, count: objects.count)
        self.offsetDeltas = offsetDeltas
        self.indexing = indexing
        if indexing { entries.reserveCapacity(objects.count) }
        self.level = compressionLevel
        var header: [UInt8] = Array("PACK".utf8) + [0, 0, 0, 2]
        withUnsafeBytes(of: UInt32(clamping: objects.count).bigEndian) { header.append(contentsOf: $0) }
        pending = header
        queued = header.count
    }

    /// The next piece of the pack, at most `maxBytes` long; nil once everything, the
    /// trailer included, was returned.
    public func nextChunk(maxBytes: Int) throws -> [UInt8]? {
        precondition(maxBytes > 20, "nextChunk needs room for the trailer")
        while pending.count - pendingStart < maxBytes {
            if let r = raw, r.count > 0 {
                // Copy stored compressed data in slices, so a huge entry never sits whole in memory.
                let n = min(r.count, maxBytes - (pending.count - pendingStart))
                pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: r[r.startIndex..<(r.startIndex + n)]))
                raw = UnsafeRawBufferPointer(rebasing: r[(r.startIndex + n)...])
                rawSource?.touched(n)
                continue
            }
            raw = nil
            if try appendNextEntry() { continue }
            if !trailerWritten {
                // Everything before the trailer is hashed as it leaves; hash the rest now.
                hasher.update(pending[pendingStart...])
                let digest = hasher.finalize()
                checksum = digest
                trailerWritten = true
                if pending.count - pendingStart + digest.count <= maxBytes {
                    let out = Array(pending[pendingStart...]) + digest
                    pending = []
                    pendingStart = 0
                    bytesProduced += out.count
                    return out
                }
                // Not enough room: the remainder goes now, the trailer next time.
                let out = Array(pending[pendingStart...])
                pending = digest
                pendingStart = 0
                bytesProduced += out.count
                return out
            }
            break
        }
        if pending.count == pendingStart { return nil }
        let n = min(maxBytes, pending.count - pendingStart)
        let out = Array(pending[pendingStart..<(pendingStart + n)])
        if !trailerWritten { hasher.update(out) }
        pendingStart += n
        if pendingStart == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingStart = 0
        } else if pendingStart > 4 << 20 {
            pending.removeFirst(pendingStart)
            pendingStart = 0
        }
        bytesProduced += out.count
        return out
    }

    /// Queues the next entry; false once every object was queued.
    private func appendNextEntry() throws -> Bool {
        while true {
            if stack.isEmpty {
                while next < ids.count && offsets[next] >= 0 { next += 1 }
                guard next < ids.count else { return false }
                stack.append(next)
                next += 1
            }
            let p = stack[stack.count - 1]
            if offsets[p] >= 0 {
                stack.removeLast()
                continue
            }
            if try appendEntry(at: p) {
                stack.removeLast()
                return true
            }
            // Its base goes first; this entry comes back once the base is written.
        }
    }

    /// Queues the entry of position `p`, or pushes its base onto `stack` and returns
    /// false when an OFS_DELTA needs the base written first.
    private func appendEntry(at p: Int) throws -> Bool {
        let id = ids[p]
        let offset = queued
        if let (reader, layout) = source(of: id), let entry = try layout.entry(for: id, in: reader) {
            if !entry.header.isDelta {
                try queueStored(p, PackWriter.entryHeader(kind: entry.header.kind, size: entry.header.size), entry, reader)
                reusedObjects += 1
                return true
            }
            if let base = entry.baseID, position[base] == nil, thinBases.contains(base) {
                try queueStored(p, PackWriter.entryHeader(kind: PackEntryKind.refDelta, size: entry.header.size) + base.bytes,
                                entry, reader)
                reusedObjects += 1
                reusedDeltas += 1
                thinDeltaCount += 1
                return true
            }
            // For a REF_DELTA stream the base must come from the same stored pack, so no
            // loop can form; an OFS_DELTA stream takes it from wherever it is stored and
            // detects loops itself.
            if let base = entry.baseID, let b = position[base].map(Int.init), offsetDeltas || source(of: base)?.0 === reader {
                if !offsetDeltas {
                    try queueStored(p, PackWriter.entryHeader(kind: PackEntryKind.refDelta, size: entry.header.size) + base.bytes,
                                    entry, reader)
                    reusedObjects += 1
                    reusedDeltas += 1
                    return true
                }
                if offsets[b] >= 0 {
                    try queueStored(p, PackWriter.entryHeader(kind: PackEntryKind.ofsDelta, size: entry.header.size)
                                    + PackWriter.offsetEncoding(offset - offsets[b]), entry, reader)
                    reusedObjects += 1
                    reusedDeltas += 1
                    offsetDeltaCount += 1
                    return true
                }
                if offsets[b] == PackStream.unwritten && offsets[p] == PackStream.unwritten {
                    offsets[p] = PackStream.visiting
                    stack.append(b)
                    return false
                }
                // A loop among stored deltas (a corrupt store): sent whole below.
            }
        }
        guard let object = try repository.read(id) else {
            throw GitError(.notFound, "object \(id) is missing")
        }
        let entry = PackWriter.entryHeader(kind: object.type.rawValue, size: object.body.count) + (try Zlib.deflate(object.body, level: level))
        if indexing { entries.append((id, offset, entry.withUnsafeBytes { Zlib.crc32($0) })) }
        queue(entry)
        offsets[p] = offset
        compressedObjects += 1
        return true
    }

    /// Queues a stored entry's data behind a new `header` as position `p`'s entry.
    private func queueStored(_ p: Int, _ header: [UInt8], _ entry: PackLayout.Entry, _ reader: PackReader) throws {
        if indexing {
            guard Zlib.crc32(entry.stored) == reader.index.crc(at: entry.indexPosition) else {
                throw GitError(.corrupt, "\(reader.packPath): entry of \(ids[p]) does not match the CRC-32 in its index")
            }
            let crc = header.withUnsafeBytes { Zlib.crc32($0) }
            entries.append((ids[p], queued, Zlib.crc32(entry.data, seed: crc)))
        }
        offsets[p] = queued
        queue(header)
        queueRaw(entry.data, from: reader.pack)
    }

    private func queue(_ bytes: [UInt8]) {
        pending += bytes
        queued += bytes.count
    }

    private func queueRaw(_ bytes: UnsafeRawBufferPointer, from source: MappedFile) {
        raw = bytes
        rawSource = source
        queued += bytes.count
    }

    /// The first pack holding `id`, with its layout.
    private func source(of id: ObjectID) -> (PackReader, PackLayout)? {
        for reader in repository.packs where reader.contains(id) {
            let key = ObjectIdentifier(reader)
            if let known = sources[key] { return known }
            let layout = PackLayout(reader)
            sources[key] = (reader, layout)
            return (reader, layout)
        }
        return nil
    }
}

/// Where each entry of a pack starts and ends, from its index: entry boundaries for
/// raw copies, and offset-to-name for OFS_DELTA bases.
final class PackLayout {
    /// Entry offsets in ascending order, and the index position of each.
    private let offsets: [Int]
    private let positions: [Int]
    private let end: Int

    struct Entry {
        let header: PackEntryHeader
        let baseID: ObjectID?
        /// The entry's zlib data.
        let data: UnsafeRawBufferPointer
        /// The whole stored entry (header, base, data), and its position in the index.
        let stored: UnsafeRawBufferPointer
        let indexPosition: Int
    }

    init(_ reader: PackReader) {
        var pairs: [(Int, Int)] = []
        pairs.reserveCapacity(reader.index.count)
        for i in 0..<reader.index.count {
            if let off = reader.index.offset(at: i) { pairs.append((off, i)) }
        }
        pairs.sort { $0.0 < $1.0 }
        offsets = pairs.map(\.0)
        positions = pairs.map(\.1)
        end = reader.pack.count - 20
    }

    /// Index of the first offset greater than `offset`.
    private func upperBound(_ offset: Int) -> Int {
        var lo = 0, hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) >> 1
            if offsets[mid] <= offset { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func entry(for id: ObjectID, in reader: PackReader) throws -> Entry? {
        guard let i = reader.index.find(id), let offset = reader.index.offset(at: i) else { return nil }
        let b = reader.pack.buffer
        let h = try PackEntryHeader.parse(b, at: offset, end: end, limit: reader.limits.maxObjectSize)
        let u = upperBound(offset)
        let entryEnd = u < offsets.count ? offsets[u] : end
        guard h.dataOffset <= entryEnd, entryEnd <= end else {
            throw GitError(.corrupt, "\(reader.packPath): entry at \(offset) overlaps the next one")
        }
        var baseID = h.baseID
        if h.kind == PackEntryKind.ofsDelta {
            let j = upperBound(h.baseOffset) - 1
            guard j >= 0, offsets[j] == h.baseOffset else {
                throw GitError(.corrupt, "\(reader.packPath): delta at \(offset) names no entry at \(h.baseOffset)")
            }
            baseID = reader.index.id(at: positions[j])
        }
        return Entry(header: h, baseID: baseID, data: UnsafeRawBufferPointer(rebasing: b[h.dataOffset..<entryEnd]),
                     stored: UnsafeRawBufferPointer(rebasing: b[offset..<entryEnd]), indexPosition: i)
    }
}
