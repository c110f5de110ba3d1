#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// The first pass of indexing (locating every entry: header, inflated length, CRC-32,
/// and the trailer checksum), run on a thread of its own while the pack is still being
/// received, so that `PackIndexer.index` can start resolving as soon as the last byte
/// is in instead of reading the whole pack once more first. `git index-pack` works the
/// same way on the bytes as they arrive.
///
/// The receiver writes the pack to a file and calls `advance(to:)` with the bytes in it
/// so far, then `finish(total:)`; the scan reads the file behind it (what it reads is
/// in the page cache) and keeps only the bytes of the entry it is on. It never fails
/// the sync: on anything unexpected (bad data, a limit, an entry it cannot place) it
/// stops, `result()` is nil, and the indexer scans the file itself as it always did,
/// reporting the problem. Its inflation stays within the work budget of the bytes
/// received so far (`WorkBudget.allowance`), and the indexer charges what it did to the
/// sync's budget, so the total work allowed is what it was without it.
public final class PackPrescan: @unchecked Sendable {
    /// What the scan found, for `PackIndexer.index(prescan:)`.
    public struct Result: @unchecked Sendable {
        var entries: PackEntries
        var crcs: [UInt32]
        /// Objects the header declares.
        var declared: Int
        /// The size of the whole pack, trailer included.
        var packBytes: Int
        /// Bytes inflated to find the entries' ends.
        var inflated: Int
        /// The trailer matched the SHA-1 of everything before it.
        var trailerMatches: Bool
    }

    let path: String
    let limits: ObjectLimits
    /// Most bytes of the pack held at once.
    static let maxBuffer = 64 << 20
    private let mutex = HeapMutex()
    private let condition = HeapCondition()
    private var written = 0
    private var total: Int?
    private var stopped = false
    private var outcome: Result?
    private var thread: pthread_t?

    /// Starts scanning the file at `path` (which the receiver has created).
    public init(path: String, limits: ObjectLimits) {
        self.path = path
        self.limits = limits
        thread = Threads.start {
            let result = self.run()
            self.mutex.locked { self.outcome = result }
        }
    }

    /// The file now holds `bytes` bytes of the pack.
    public func advance(to bytes: Int) {
        mutex.locked { written = max(written, bytes) }
        condition.broadcast()
    }

    deinit {
        // Never joined (nobody asked for the result): let the thread's resources go.
        if let thread { pthread_detach(thread) }
    }

    /// The pack is complete, `bytes` long.
    public func finish(total bytes: Int) {
        mutex.locked {
            written = max(written, bytes)
            total = bytes
        }
        condition.broadcast()
    }

    /// Stops the scan (the transfer failed); `result()` is then nil.
    public func cancel() {
        mutex.locked { stopped = true }
        condition.broadcast()
        _ = result()
    }

    /// Waits for the scan to end; what it found, or nil when it gave up.
    public func result() -> Result? {
        let t = mutex.locked { () -> pthread_t? in
            let t = thread
            thread = nil
            return t
        }
        if let t { pthread_join(t, nil) }
        return mutex.locked { outcome }
    }

    /// Waits until the file holds more than `beyond` bytes or is complete; the bytes it
    /// holds and the total when known; nil when stopped.
    private func waitForBytes(beyond: Int) -> (written: Int, total: Int?)? {
        mutex.lock()
        defer { mutex.unlock() }
        while !stopped && total == nil && written <= beyond {
            condition.wait(mutex)
        }
        return stopped ? nil : (written, total)
    }

    private func run() -> Result? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // Bytes of the file from `bufferStart` on: the entry being scanned and what
        // follows it.
        var buffer: [UInt8] = []
        var bufferStart = 0
        var hasher = SHA1()
        var hashed = 0
        /// Reads what the file holds beyond the buffer, waiting for at least
        /// `needed` bytes in all (or the end); false when there is no more to come.
        func fill(atLeast needed: Int) -> Bool {
            while bufferStart + buffer.count < needed {
                guard let (now, total) = waitForBytes(beyond: bufferStart + buffer.count) else { return false }
                let have = bufferStart + buffer.count
                if now > have {
                    let n = min(now - have, 8 << 20)
                    var got = 0
                    let piece = [UInt8](unsafeUninitializedCapacity: n) { raw, count in
                        got = pread(fd, raw.baseAddress, n, off_t(have))
                        count = max(0, got)
                    }
                    guard got > 0 else { return false }
                    buffer.append(contentsOf: piece)
                } else if total != nil {
                    return false
                }
            }
            return true
        }
        guard fill(atLeast: 12) else { return nil }
        let declared = buffer.withUnsafeBytes { b -> Int in
            guard b[0] == 0x50, b[1] == 0x41, b[2] == 0x43, b[3] == 0x4B else { return -1 }
            let version = PackIndex.be32(b, 4)
            guard version == 2 || version == 3 else { return -1 }
            return Int(PackIndex.be32(b, 8))
        }
        guard declared >= 0, declared <= limits.maxPackObjects else { return nil }
        var entries = PackEntries()
        var crcs: [UInt32] = []
        var inflated = 0
        let z = Inflater()
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        var offset = 12
        while entries.count < declared {
            if mutex.locked({ stopped }) { return nil }
            // Bytes consumed are dropped from the front, a few MiB at a time.
            if offset - bufferStart > 4 << 20 {
                let drop = offset - bufferStart
                hasher.update(buffer[(hashed - bufferStart)..<drop])
                hashed = offset
                buffer.removeFirst(drop)
                bufferStart = offset
            }
            // An entry that does not parse with the bytes at hand is tried again with
            // at least twice as many, so a large entry costs a few attempts, not one
            // per chunk; with every byte in, it is given up on.
            var want = offset + 64
            var located: (end: Int, kind: UInt8, size: Int)?
            while located == nil {
                let complete = !fill(atLeast: want)
                let available = bufferStart + buffer.count
                var hopeless = false
                located = buffer.withUnsafeBytes { raw -> (Int, UInt8, Int)? in
                    guard let base = raw.baseAddress else { return nil }
                    // The buffer seen at the pack's own offsets (the header parser checks
                    // offsets against the pack's start); nothing before `bufferStart`
                    // is ever read, since every entry starts at or after `offset`.
                    let pack = UnsafeRawBufferPointer(start: base - bufferStart, count: available)
                    guard let h = try? PackEntryHeader.parse(pack, at: offset, end: available, limit: limits.maxObjectSize),
                          h.dataOffset < available else {
                        // A header is at most a few dozen bytes: with more at hand it is bad.
                        hopeless = available - offset >= 64
                        return nil
                    }
                    let data = UnsafeRawBufferPointer(rebasing: pack[h.dataOffset..<available])
                    do {
                        let used = try scratch.withUnsafeMutableBytes { try z.skip(data, expectedSize: h.size, scratch: $0) }
                        return (h.dataOffset + used, h.kind, h.size)
                    } catch {
                        // Only running out of input is worth waiting for.
                        hopeless = !"\(error)".contains("truncated")
                        return nil
                    }
                }
                if located == nil {
                    if complete || hopeless { return nil }
                    want = max(available + 1, offset + 2 * (available - offset))
                    // A very large entry is left to the indexer, which maps the file
                    // instead of holding the entry in memory.
                    if want - bufferStart > Self.maxBuffer { return nil }
                }
            }
            guard let (end, kind, size) = located else { return nil }
            inflated += size
            // Within the budget of what has arrived, as the indexer's own scan would be
            // within the budget of the whole.
            guard inflated <= WorkBudget.allowance(limits: limits, inputBytes: bufferStart + buffer.count) else { return nil }
            entries.append(offset: offset, end: end, kind: kind)
            crcs.append(buffer.withUnsafeBytes { Zlib.crc32(UnsafeRawBufferPointer(rebasing: $0[(offset - bufferStart)..<(end - bufferStart)])) })
            offset = end
        }
        // The trailer follows the last entry, and nothing after it.
        _ = fill(atLeast: offset + 20)
        guard let (_, total) = waitForBytes(beyond: Int.max - 1), let total, total == offset + 20,
              bufferStart + buffer.count == total else { return nil }
        hasher.update(buffer[(hashed - bufferStart)..<(offset - bufferStart)])
        let digest = hasher.finalize()
        let matches = digest.elementsEqual(buffer[(offset - bufferStart)...])
        return Result(entries: entries, crcs: crcs, declared: declared, packBytes: total, inflated: inflated, trailerMatches: matches)
    }
}
