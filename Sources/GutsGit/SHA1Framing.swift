/// 64 bytes: a partial block awaiting more input.
typealias SHA1Block = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

/// The Merkle-Damgard framing that SHA-1 and SHA-1 with collision detection share
/// (FIPS 180-4, 5.1.1 and 6.1.2): input is cut into 64-byte blocks, and the end is padded
/// with 0x80, zeros and the bit length. Conformers supply the compression function; the
/// framing never allocates.
protocol SHA1Framing {
    var h0: UInt32 { get }
    var h1: UInt32 { get }
    var h2: UInt32 { get }
    var h3: UInt32 { get }
    var h4: UInt32 { get }
    /// Bytes fed so far.
    var length: UInt64 { get set }
    var pending: SHA1Block { get set }
    var pendingCount: Int { get set }
    /// Runs the compression function over `blocks` consecutive 64-byte blocks at `base`.
    mutating func compress(_ base: UnsafeRawPointer, blocks: Int)
}

extension SHA1Framing {
    /// Feeds raw memory: completes a pending block first, compresses whole blocks straight
    /// from `buffer`, and keeps the rest.
    @inline(__always)
    mutating func absorb(_ buffer: UnsafeRawBufferPointer) {
        guard var p = buffer.baseAddress, buffer.count > 0 else { return }
        var n = buffer.count
        length &+= UInt64(n)
        if pendingCount > 0 {
            let take = min(64 - pendingCount, n)
            let filled = pendingCount
            withUnsafeMutableBytes(of: &pending) { dst in
                dst.baseAddress.map { ($0 + filled).copyMemory(from: p, byteCount: take) }
            }
            pendingCount += take
            p += take
            n -= take
            if pendingCount < 64 { return }
            let block = pending
            withUnsafeBytes(of: block) { b in b.baseAddress.map { compress($0, blocks: 1) } }
            pendingCount = 0
        }
        let whole = n / 64
        if whole > 0 {
            compress(p, blocks: whole)
            p += whole * 64
            n -= whole * 64
        }
        if n > 0 {
            withUnsafeMutableBytes(of: &pending) { dst in
                dst.baseAddress.map { $0.copyMemory(from: p, byteCount: n) }
            }
            pendingCount = n
        }
    }

    /// Compresses the padding and writes the 20-byte digest to `out`. The hasher must not
    /// be fed afterwards (callers reset it).
    @inline(__always)
    mutating func padAndWriteDigest(into out: UnsafeMutableRawPointer) {
        let bitLength = length &* 8
        var tail: (SHA1Block, SHA1Block) = ((0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0))
        let count = pendingCount
        let block = pending
        let total = count + 9 <= 64 ? 64 : 128
        withUnsafeMutableBytes(of: &tail) { t in
            withUnsafeBytes(of: block) { b in
                if let src = b.baseAddress, let dst = t.baseAddress { dst.copyMemory(from: src, byteCount: count) }
            }
            t[count] = 0x80
            t.storeBytes(of: bitLength.bigEndian, toByteOffset: total - 8, as: UInt64.self)
        }
        withUnsafeBytes(of: tail) { t in t.baseAddress.map { compress($0, blocks: total / 64) } }
        out.storeBytes(of: h0.bigEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: h1.bigEndian, toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: h2.bigEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: h3.bigEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: h4.bigEndian, toByteOffset: 16, as: UInt32.self)
    }
}
