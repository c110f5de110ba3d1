#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Builds pack index v2 files.
public enum PackIndexWriter {
    /// The index for a pack whose entries are `(name, offset, CRC-32)`, ending with
    /// `packChecksum` and the index's own SHA-1. Offsets at or above
    /// `largeOffsetThreshold` (normally 2^31) go to the 64-bit table.
    public static func build(entries: [(id: ObjectID, offset: Int, crc: UInt32)], packChecksum: [UInt8],
                             largeOffsetThreshold: Int = 1 << 31) -> [UInt8] {
        let order = sortedOrder(count: entries.count) { entries[$0].id }
        return build(order: order, id: { entries[$0].id }, offset: { entries[$0].offset }, crc: { entries[$0].crc },
                     packChecksum: packChecksum, largeOffsetThreshold: largeOffsetThreshold)
    }

    /// Entry numbers 0..<count ordered by name: 4 bytes an entry, where sorting the
    /// entries themselves took a copy of 56 bytes each.
    static func sortedOrder(count: Int, id: (Int) -> ObjectID) -> [Int32] {
        var order = [Int32](repeating: 0, count: count)
        for k in 0..<count { order[k] = Int32(truncatingIfNeeded: k) }
        order.sort { id(Int($0)) < id(Int($1)) }
        return order
    }

    /// The index for entries given by accessors, `order` listing entry numbers by name
    /// (see `sortedOrder`), so that no per-entry table is built to write it.
    static func build(order: [Int32], id: (Int) -> ObjectID, offset: (Int) -> Int, crc: (Int) -> UInt32,
                      packChecksum: [UInt8], largeOffsetThreshold: Int = 1 << 31) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(8 + 1024 + order.count * 28 + 40)
        func be32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) } }
        out += PackIndex.magic
        be32(2)
        var fan = [UInt32](repeating: 0, count: 256)
        for k in order { fan[Int(id(Int(k)).firstByte)] += 1 }
        var acc: UInt32 = 0
        for i in 0..<256 {
            acc += fan[i]
            be32(acc)
        }
        for k in order { out += id(Int(k)).bytes }
        for k in order { be32(crc(Int(k))) }
        var large: [UInt64] = []
        let threshold = min(largeOffsetThreshold, 1 << 31)
        for k in order {
            let o = offset(Int(k))
            if o >= threshold {
                be32(0x8000_0000 | UInt32(large.count))
                large.append(UInt64(o))
            } else {
                be32(UInt32(o))
            }
        }
        for v in large { withUnsafeBytes(of: v.bigEndian) { out.append(contentsOf: $0) } }
        out += packChecksum
        out += SHA1.hash(out)
        return out
    }
}

/// Writes a pack (version 2) and its index, one object at a time, straight to a
/// temporary file in the target directory; `finish()` adds the trailer, writes the
/// index and renames both to `pack-<checksum>.{pack,idx}` (fsynced, index last).
///
/// `add` stores whole objects; `addDelta` stores a delta the caller computed (no delta
/// search is done here yet). Both go through one entry writer, so a delta search can be
/// added later without touching the file handling.
public final class PackWriter {
    public let directory: String
    private let tempPath: String
    private var fd: Int32
    private var hasher = SHA1()
    private var buffer: [UInt8] = []
    private var written = 0
    private var entries: [(id: ObjectID, offset: Int, crc: UInt32)] = []
    /// Offsets of the entries written so far, by object name.
    private var offsets: [ObjectID: Int] = [:]
    private var finished = false
    private let expectedCount: Int?
    private let level: Int32
    /// Offsets at or above this go to the index's 64-bit table (tests lower it).
    public var largeOffsetThreshold = 1 << 31

    /// Starts a pack in `directory`. When `expectedCount` is given the header is
    /// written with it and checked at the end; otherwise the header is patched and the
    /// file hashed again in `finish()`.
    public init(directory: String, expectedCount: Int? = nil, compressionLevel: Int32 = 6) throws {
        self.directory = directory
        self.expectedCount = expectedCount
        self.level = compressionLevel
        do {
            try Files.makeDirectories(directory)
        } catch { throw GitError.io(error) }
        var template = Array("\(directory)/tmp_pack_XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw GitError(.io, FileError(path: directory, operation: "create temporary pack in", code: errno).description) }
        tempPath = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var header: [UInt8] = Array("PACK".utf8) + [0, 0, 0, 2]
        let n = UInt32(clamping: expectedCount ?? 0)
        withUnsafeBytes(of: n.bigEndian) { header.append(contentsOf: $0) }
        try emit(header)
    }

    deinit {
        if !finished {
            if fd >= 0 { close(fd) }
            unlink(tempPath)
        }
    }

    /// Number of objects added.
    public var count: Int { entries.count }

    private func emit(_ bytes: [UInt8]) throws {
        hasher.update(bytes)
        buffer.append(contentsOf: bytes)
        written += bytes.count
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        let code = Files.writeAll(fd, buffer)
        guard code == 0 else { throw GitError(.io, FileError(path: tempPath, operation: "write", code: code).description) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Encodes an entry header: type in bits 4-6 of the first byte, size as a varint.
    static func entryHeader(kind: UInt8, size: Int) -> [UInt8] {
        var out: [UInt8] = []
        var s = size >> 4
        var c = UInt8(kind << 4) | UInt8(size & 15)
        while s > 0 {
            out.append(c | 0x80)
            c = UInt8(s & 0x7F)
            s >>= 7
        }
        out.append(c)
        return out
    }

    /// Encodes an OFS_DELTA's distance back to its base (`distance` > 0): big-endian
    /// groups of 7 bits, high bit set on all but the last, each group but the last
    /// stored minus one (gitformat-pack(5)).
    static func offsetEncoding(_ distance: Int) -> [UInt8] {
        var rel = distance
        var enc = [UInt8(rel & 0x7F)]
        rel >>= 7
        while rel > 0 {
            rel -= 1
            enc.append(0x80 | UInt8(rel & 0x7F))
            rel >>= 7
        }
        return enc.reversed()
    }

    /// Appends one entry: header, optional base reference bytes, zlib of `data`.
    private func writeEntry(id: ObjectID, kind: UInt8, baseBytes: [UInt8], data: [UInt8]) throws {
        let offset = written
        var entry = PackWriter.entryHeader(kind: kind, size: data.count)
        entry += baseBytes
        entry += try Zlib.deflate(data, level: level)
        let crc = entry.withUnsafeBytes { Zlib.crc32($0) }
        try emit(entry)
        entries.append((id, offset, crc))
    }

    /// Adds a whole object; returns its name. Adding the same object twice is a no-op.
    @discardableResult
    public func add(type: ObjectType, body: [UInt8]) throws -> ObjectID {
        let id = try ObjectID.checked(type: type, body: body)
        try add(type: type, body: body, id: id)
        return id
    }

    /// Adds a whole object whose name the caller already knows (and vouches for).
    public func add(type: ObjectType, body: [UInt8], id: ObjectID) throws {
        precondition(!finished, "PackWriter used after finish()")
        guard offsets[id] == nil else { return }
        offsets[id] = written
        try writeEntry(id: id, kind: type.rawValue, baseBytes: [], data: body)
    }

    /// Adds object `id` as a delta (git delta format, see `Delta`) against `base`:
    /// an OFS_DELTA when `base` is already in this pack, otherwise a REF_DELTA (which
    /// makes the pack thin: the receiver must have `base`). The caller vouches that
    /// applying `delta` to `base` yields the object named `id`.
    public func addDelta(id: ObjectID, base: ObjectID, delta: [UInt8]) throws {
        precondition(!finished, "PackWriter used after finish()")
        guard offsets[id] == nil else { return }
        let offset = written
        offsets[id] = offset
        if let baseOffset = offsets[base] {
            try writeEntry(id: id, kind: PackEntryKind.ofsDelta, baseBytes: PackWriter.offsetEncoding(offset - baseOffset), data: delta)
        } else {
            try writeEntry(id: id, kind: PackEntryKind.refDelta, baseBytes: base.bytes, data: delta)
        }
    }

    /// The finished pack's paths and checksum.
    public struct Result: Sendable {
        public let packPath: String
        public let indexPath: String
        /// Hex SHA-1 trailer of the pack (also in the file names).
        public let checksum: String
        public let objectCount: Int
    }

    /// Writes the trailer and the index, fsyncs, renames into place.
    public func finish() throws -> Result {
        precondition(!finished, "PackWriter.finish() called twice")
        try flush()
        var digest: [UInt8]
        if let expectedCount, expectedCount == entries.count {
            digest = hasher.finalize()
        } else {
            if let expectedCount {
                throw GitError(.corrupt, "pack declared \(expectedCount) objects but \(entries.count) were added")
            }
            var n = UInt32(clamping: entries.count).bigEndian
            guard pwrite(fd, &n, 4, 8) == 4 else { throw GitError(.io, FileError(path: tempPath, operation: "write", code: errno).description) }
            let map = try MappedFile(path: tempPath)
            digest = SHA1.hash(map.buffer)
        }
        try emit(digest)
        try flush()
        guard fsync(fd) == 0 else { throw GitError(.io, FileError(path: tempPath, operation: "fsync", code: errno).description) }
        close(fd)
        fd = -1
        let hex = Hex.encode(digest)
        let packPath = "\(directory)/pack-\(hex).pack"
        let indexPath = "\(directory)/pack-\(hex).idx"
        _ = chmod(tempPath, 0o444)
        guard rename(tempPath, packPath) == 0 else {
            throw GitError(.io, FileError(path: packPath, operation: "rename", code: errno).description)
        }
        finished = true
        let idx = PackIndexWriter.build(entries: entries, packChecksum: digest, largeOffsetThreshold: largeOffsetThreshold)
        do {
            try Files.writeAtomically(indexPath, idx, mode: 0o444)
        } catch { throw GitError.io(error) }
        return Result(packPath: packPath, indexPath: indexPath, checksum: hex, objectCount: entries.count)
    }
}
