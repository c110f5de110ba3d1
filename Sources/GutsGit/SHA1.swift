import CSHA1

/// SHA-1 (FIPS 180-4), used for git object IDs and pack/index trailers.
///
/// The compression function is fully unrolled and reads blocks straight from raw
/// memory, so hashing never allocates. Use `SHA1.hash(_:)` for one-shot hashing or
/// create a value, call `update` any number of times and then `finalize()`.
public struct SHA1: Sendable, SHA1Framing {
    /// Length of a digest in bytes.
    public static let digestLength = 20

    var h0: UInt32 = 0x6745_2301
    var h1: UInt32 = 0xEFCD_AB89
    var h2: UInt32 = 0x98BA_DCFE
    var h3: UInt32 = 0x1032_5476
    var h4: UInt32 = 0xC3D2_E1F0
    /// Bytes fed so far.
    var length: UInt64 = 0
    /// A partial block (64 bytes) awaiting more input.
    var pending: SHA1Block = (0, 0, 0, 0, 0, 0, 0, 0)
    var pendingCount = 0
    /// Whether blocks are compressed with the CPU's SHA instructions; tests turn it off
    /// to compare with the Swift compression function.
    var hardware = SHA1.hardwareAvailable

    /// A fresh hasher.
    public init() {}

    /// Hashes `bytes` in one call.
    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        var h = SHA1()
        h.update(bytes)
        return h.finalize()
    }

    /// Hashes raw memory in one call.
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> [UInt8] {
        var h = SHA1()
        h.update(buffer)
        return h.finalize()
    }

    /// Feeds the bytes of an array.
    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds the bytes of an array slice.
    public mutating func update(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds raw memory.
    public mutating func update(_ buffer: UnsafeRawBufferPointer) { absorb(buffer) }

    /// Pads, finishes and returns the 20-byte digest.
    public mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        out.withUnsafeMutableBytes { finalize(into: $0.baseAddress!) }
        return out
    }

    /// Pads, finishes and writes the 20-byte digest to `out`.
    public mutating func finalize(into out: UnsafeMutableRawPointer) {
        padAndWriteDigest(into: out)
        self = SHA1()
    }

    @inline(__always)
    private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 {
        (x << n) | (x >> (32 &- n))
    }

    /// Whether the CPU has the SHA instructions (x86-64 SHA extensions), which
    /// `guts_sha1_hardware_compress` uses.
    static let hardwareAvailable = guts_sha1_hardware_available() != 0

    /// Runs the compression function over `blocks` consecutive 64-byte blocks at `base`:
    /// on the CPU's SHA instructions when it has them, else in Swift.
    mutating func compress(_ base: UnsafeRawPointer, blocks: Int) {
        if hardware {
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 5) { buffer in
                guard let state = buffer.baseAddress else { return }
                state[0] = h0
                state[1] = h1
                state[2] = h2
                state[3] = h3
                state[4] = h4
                guts_sha1_hardware_compress(state, base, blocks, nil)
                h0 = state[0]
                h1 = state[1]
                h2 = state[2]
                h3 = state[3]
                h4 = state[4]
            }
        } else {
            compressSoftware(base, blocks: blocks)
        }
    }

    /// The compression function in Swift.
    mutating func compressSoftware(_ base: UnsafeRawPointer, blocks: Int) {
        var a = h0, b = h1, c = h2, d = h3, e = h4
        var p = base
        var w0: UInt32 = 0, w1: UInt32 = 0, w2: UInt32 = 0, w3: UInt32 = 0
        var w4: UInt32 = 0, w5: UInt32 = 0, w6: UInt32 = 0, w7: UInt32 = 0
        var w8: UInt32 = 0, w9: UInt32 = 0, w10: UInt32 = 0, w11: UInt32 = 0
        var w12: UInt32 = 0, w13: UInt32 = 0, w14: UInt32 = 0, w15: UInt32 = 0
        for _ in 0..<blocks {
            let sa = a, sb = b, sc = c, sd = d, se = e
            w0 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            e = e &+ SHA1.rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w0
            b = SHA1.rotl(b, 30)
            w1 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            d = d &+ SHA1.rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w1
            a = SHA1.rotl(a, 30)
            w2 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            c = c &+ SHA1.rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w2
            e = SHA1.rotl(e, 30)
            w3 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            b = b &+ SHA1.rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w3
            d = SHA1.rotl(d, 30)
            w4 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            a = a &+ SHA1.rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w4
            c = SHA1.rotl(c, 30)
            w5 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
            e = e &+ SHA1.rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w5
            b = SHA1.rotl(b, 30)
            w6 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
            d = d &+ SHA1.rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w6
            a = SHA1.rotl(a, 30)
            w7 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
            c = c &+ SHA1.rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w7
            e = SHA1.rotl(e, 30)
            w8 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
            b = b &+ SHA1.rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w8
            d = SHA1.rotl(d, 30)
            w9 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
            a = a &+ SHA1.rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w9
            c = SHA1.rotl(c, 30)
            w10 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
            e = e &+ SHA1.rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w10
            b = SHA1.rotl(b, 30)
            w11 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
            d = d &+ SHA1.rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w11
            a = SHA1.rotl(a, 30)
            w12 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
            c = c &+ SHA1.rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w12
            e = SHA1.rotl(e, 30)
            w13 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 52, as: UInt32.self))
            b = b &+ SHA1.rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w13
            d = SHA1.rotl(d, 30)
            w14 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 56, as: UInt32.self))
            a = a &+ SHA1.rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w14
            c = SHA1.rotl(c, 30)
            w15 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
            e = e &+ SHA1.rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w15
            b = SHA1.rotl(b, 30)
            w0 = SHA1.rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w0
            a = SHA1.rotl(a, 30)
            w1 = SHA1.rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w1
            e = SHA1.rotl(e, 30)
            w2 = SHA1.rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w2
            d = SHA1.rotl(d, 30)
            w3 = SHA1.rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w3
            c = SHA1.rotl(c, 30)
            w4 = SHA1.rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w4
            b = SHA1.rotl(b, 30)
            w5 = SHA1.rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w5
            a = SHA1.rotl(a, 30)
            w6 = SHA1.rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w6
            e = SHA1.rotl(e, 30)
            w7 = SHA1.rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w7
            d = SHA1.rotl(d, 30)
            w8 = SHA1.rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w8
            c = SHA1.rotl(c, 30)
            w9 = SHA1.rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w9
            b = SHA1.rotl(b, 30)
            w10 = SHA1.rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w10
            a = SHA1.rotl(a, 30)
            w11 = SHA1.rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w11
            e = SHA1.rotl(e, 30)
            w12 = SHA1.rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w12
            d = SHA1.rotl(d, 30)
            w13 = SHA1.rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w13
            c = SHA1.rotl(c, 30)
            w14 = SHA1.rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w14
            b = SHA1.rotl(b, 30)
            w15 = SHA1.rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w15
            a = SHA1.rotl(a, 30)
            w0 = SHA1.rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w0
            e = SHA1.rotl(e, 30)
            w1 = SHA1.rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w1
            d = SHA1.rotl(d, 30)
            w2 = SHA1.rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w2
            c = SHA1.rotl(c, 30)
            w3 = SHA1.rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w3
            b = SHA1.rotl(b, 30)
            w4 = SHA1.rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w4
            a = SHA1.rotl(a, 30)
            w5 = SHA1.rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w5
            e = SHA1.rotl(e, 30)
            w6 = SHA1.rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w6
            d = SHA1.rotl(d, 30)
            w7 = SHA1.rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w7
            c = SHA1.rotl(c, 30)
            w8 = SHA1.rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            e = e &+ SHA1.rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w8
            b = SHA1.rotl(b, 30)
            w9 = SHA1.rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            d = d &+ SHA1.rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w9
            a = SHA1.rotl(a, 30)
            w10 = SHA1.rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            c = c &+ SHA1.rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w10
            e = SHA1.rotl(e, 30)
            w11 = SHA1.rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            b = b &+ SHA1.rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w11
            d = SHA1.rotl(d, 30)
            w12 = SHA1.rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            a = a &+ SHA1.rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w12
            c = SHA1.rotl(c, 30)
            w13 = SHA1.rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            e = e &+ SHA1.rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w13
            b = SHA1.rotl(b, 30)
            w14 = SHA1.rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            d = d &+ SHA1.rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w14
            a = SHA1.rotl(a, 30)
            w15 = SHA1.rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            c = c &+ SHA1.rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w15
            e = SHA1.rotl(e, 30)
            w0 = SHA1.rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            b = b &+ SHA1.rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w0
            d = SHA1.rotl(d, 30)
            w1 = SHA1.rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            a = a &+ SHA1.rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w1
            c = SHA1.rotl(c, 30)
            w2 = SHA1.rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            e = e &+ SHA1.rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w2
            b = SHA1.rotl(b, 30)
            w3 = SHA1.rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            d = d &+ SHA1.rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w3
            a = SHA1.rotl(a, 30)
            w4 = SHA1.rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            c = c &+ SHA1.rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w4
            e = SHA1.rotl(e, 30)
            w5 = SHA1.rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            b = b &+ SHA1.rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w5
            d = SHA1.rotl(d, 30)
            w6 = SHA1.rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            a = a &+ SHA1.rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w6
            c = SHA1.rotl(c, 30)
            w7 = SHA1.rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            e = e &+ SHA1.rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w7
            b = SHA1.rotl(b, 30)
            w8 = SHA1.rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            d = d &+ SHA1.rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w8
            a = SHA1.rotl(a, 30)
            w9 = SHA1.rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            c = c &+ SHA1.rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w9
            e = SHA1.rotl(e, 30)
            w10 = SHA1.rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            b = b &+ SHA1.rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w10
            d = SHA1.rotl(d, 30)
            w11 = SHA1.rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            a = a &+ SHA1.rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w11
            c = SHA1.rotl(c, 30)
            w12 = SHA1.rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w12
            b = SHA1.rotl(b, 30)
            w13 = SHA1.rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w13
            a = SHA1.rotl(a, 30)
            w14 = SHA1.rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w14
            e = SHA1.rotl(e, 30)
            w15 = SHA1.rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w15
            d = SHA1.rotl(d, 30)
            w0 = SHA1.rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w0
            c = SHA1.rotl(c, 30)
            w1 = SHA1.rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w1
            b = SHA1.rotl(b, 30)
            w2 = SHA1.rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w2
            a = SHA1.rotl(a, 30)
            w3 = SHA1.rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w3
            e = SHA1.rotl(e, 30)
            w4 = SHA1.rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w4
            d = SHA1.rotl(d, 30)
            w5 = SHA1.rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w5
            c = SHA1.rotl(c, 30)
            w6 = SHA1.rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w6
            b = SHA1.rotl(b, 30)
            w7 = SHA1.rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w7
            a = SHA1.rotl(a, 30)
            w8 = SHA1.rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w8
            e = SHA1.rotl(e, 30)
            w9 = SHA1.rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w9
            d = SHA1.rotl(d, 30)
            w10 = SHA1.rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w10
            c = SHA1.rotl(c, 30)
            w11 = SHA1.rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            e = e &+ SHA1.rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w11
            b = SHA1.rotl(b, 30)
            w12 = SHA1.rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            d = d &+ SHA1.rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w12
            a = SHA1.rotl(a, 30)
            w13 = SHA1.rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            c = c &+ SHA1.rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w13
            e = SHA1.rotl(e, 30)
            w14 = SHA1.rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            b = b &+ SHA1.rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w14
            d = SHA1.rotl(d, 30)
            w15 = SHA1.rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            a = a &+ SHA1.rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w15
            c = SHA1.rotl(c, 30)

            a = a &+ sa
            b = b &+ sb
            c = c &+ sc
            d = d &+ sd
            e = e &+ se
            p += 64
        }
        h0 = a
        h1 = b
        h2 = c
        h3 = d
        h4 = e
    }
}
