/// A pack index, version 2: magic `\377tOc`, version, 256-entry fan-out, sorted object
/// names, CRC-32s, 31-bit offsets (high bit selects the 64-bit offset table), 64-bit
/// offsets, then the pack's checksum and the index's own checksum.
///
/// Opening checks the structure (sizes, fan-out, table bounds) so that every accessor
/// is safe; checksums and the order of names are checked by `Verifier`.
struct PackIndex: @unchecked Sendable {
    let file: MappedFile
    let count: Int
    let namesStart: Int
    let crcStart: Int
    let offsetsStart: Int
    let largeStart: Int
    let largeCount: Int

    static let magic: [UInt8] = [0xFF, 0x74, 0x4F, 0x63]

    init(file: MappedFile, limits: ObjectLimits) throws {
        self.file = file
        let b = file.buffer
        let header = 8 + 256 * 4
        guard b.count >= header + 40 else { throw GitError(.corrupt, "index too short (\(b.count) bytes)") }
        guard b[0] == 0xFF, b[1] == 0x74, b[2] == 0x4F, b[3] == 0x63 else {
            throw GitError(.corrupt, "index has no v2 signature (version 1 indexes are not supported)")
        }
        let version = PackIndex.be32(b, 4)
        guard version == 2 else { throw GitError(.corrupt, "unsupported index version \(version)") }
        var previous: UInt32 = 0
        for i in 0..<256 {
            let v = PackIndex.be32(b, 8 + 4 * i)
            guard v >= previous else { throw GitError(.corrupt, "index fan-out is not monotonic at \(i)") }
            previous = v
        }
        let n = Int(previous)
        guard n <= limits.maxPackObjects else { throw GitError(.tooLarge, "index lists \(n) objects (limit \(limits.maxPackObjects))", limit: .packObjects) }
        count = n
        namesStart = header
        crcStart = namesStart + 20 * n
        offsetsStart = crcStart + 4 * n
        largeStart = offsetsStart + 4 * n
        guard b.count >= largeStart + 40 else { throw GitError(.corrupt, "index truncated: \(n) objects need \(largeStart + 40) bytes, have \(b.count)") }
        let rest = b.count - 40 - largeStart
        guard rest % 8 == 0 else { throw GitError(.corrupt, "index has a malformed 64-bit offset table") }
        largeCount = rest / 8
    }

    @inline(__always)
    static func be32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(bigEndian: b.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }

    /// Number of objects whose first byte is < `byte` (fan-out of byte-1).
    @inline(__always)
    func fanoutStart(_ byte: Int) -> Int {
        byte == 0 ? 0 : Int(PackIndex.be32(file.buffer, 8 + 4 * (byte - 1)))
    }

    @inline(__always)
    func id(at i: Int) -> ObjectID {
        ObjectID(unsafeRaw: file.buffer.baseAddress! + namesStart + 20 * i, algorithm: .sha1)
    }

    @inline(__always)
    func crc(at i: Int) -> UInt32 {
        PackIndex.be32(file.buffer, crcStart + 4 * i)
    }

    /// The pack offset of entry `i`; nil when it points outside the 64-bit table.
    func offset(at i: Int) -> Int? {
        let v = PackIndex.be32(file.buffer, offsetsStart + 4 * i)
        if v & 0x8000_0000 == 0 { return Int(v) }
        let j = Int(v & 0x7FFF_FFFF)
        guard j < largeCount else { return nil }
        let big = UInt64(bigEndian: file.buffer.loadUnaligned(fromByteOffset: largeStart + 8 * j, as: UInt64.self))
        guard big <= UInt64(Int.max) else { return nil }
        return Int(big)
    }

    /// Whether entry `i` uses the 64-bit table.
    func usesLargeOffset(_ i: Int) -> Bool {
        PackIndex.be32(file.buffer, offsetsStart + 4 * i) & 0x8000_0000 != 0
    }

    /// Position of `id`, by binary search within its fan-out bucket.
    func find(_ id: ObjectID) -> Int? {
        let first = Int(id.firstByte)
        var lo = fanoutStart(first)
        var hi = Int(PackIndex.be32(file.buffer, 8 + 4 * first))
        guard hi <= count, lo <= hi else { return nil }
        while lo < hi {
            let mid = (lo + hi) >> 1
            let m = self.id(at: mid)
            if m == id { return mid }
            if m < id { lo = mid + 1 } else { hi = mid }
        }
        return nil
    }

    /// The pack checksum recorded in the index.
    var packChecksum: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.buffer[(file.count - 40)..<(file.count - 20)])
    }

    /// The index's own trailing checksum.
    var indexChecksum: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.buffer[(file.count - 20)...])
    }
}
