import CSHA1

/// SHA-1 with detection of cryptanalytic collision attacks ("sha1dc"), used for git
/// object IDs.
///
/// Method: Marc Stevens and Daniel Shumow, "Speeding up detection of SHA-1 collision
/// attacks using unavoidable attack conditions", USENIX Security 2017; building on
/// Marc Stevens, "Counter-cryptanalysis", CRYPTO 2013. Written here from the paper.
///
/// Every practical SHA-1 collision attack (SHAttered 2017, the chosen-prefix attack
/// of 2020) is a pair of near-collision blocks whose message words differ by the
/// XOR difference of a *disturbance vector* (DV): a sequence DV[-5...79] that obeys
/// the SHA-1 message expansion and marks where local collisions start. A local
/// collision that starts with bit j in step t is corrected in steps t+1...t+5 at bits
/// j+5, j, j+30, j+30, j+30, so the message difference is
///
///     dm[t] = DV[t] ^ rotl(DV[t-1], 5) ^ DV[t-2] ^ rotl(DV[t-3], 30)
///             ^ rotl(DV[t-4], 30) ^ rotl(DV[t-5], 30)
///
/// A DV is fixed by any 16 consecutive words. The attack classes checked are the 32
/// best ones of Manuel's classification, as in the paper: type I(K,b) has
/// DV[K...K+14] = 0 and DV[K+15] = 2^b; type II(K,b) has DV[K+1] = DV[K+3] = 2^(b+31
/// mod 32), DV[K+15] = 2^b and the other words of K...K+15 zero. `messageDifference`
/// derives dm for each from these definitions (the tests compare a few words with the
/// published tables).
///
/// For each compressed block we keep the words of the expanded message the conditions
/// below read (W[35...64]) and the states before steps 58 and 65; the whole of
/// W[0...79] is rebuilt only for the rare block that needs a recompression. Where a
/// DV has no active disturbance in the five steps before step T (`testStep`: 58 for
/// K < 50, else 65), the two blocks of an attack have the same state there. For each DV that may apply we therefore take
/// W' = W ^ dm, run the compression backwards from the saved state to step 0 (giving
/// the other block's chaining input) and forwards to step 80; if the other block's
/// chaining output equals this block's, this block is one half of a near-collision
/// pair following that DV, and a collision attack is detected. Honest inputs never
/// produce this by chance (about 2^-160 per check).
///
/// What makes it fast: an attack following a DV must satisfy *unavoidable bit
/// conditions*, linear relations W[i] bit x XOR W[j] bit y = v between message bits
/// that carry the DV's differences (the signs of those differences must agree for the
/// local collisions of the last rounds to cancel). A random block fails each with
/// probability 1/2, so checking them first rules out almost every DV without any
/// recompression: about 1 block in 20 needs one. The conditions are results of the
/// paper's analysis, not derived here: `conditionRows` carries them as data,
/// transcribed from the authors' reference implementation (sha1collisiondetection,
/// lib/ubc_check.c, Copyright 2017 Marc Stevens and Dan Shumow, MIT License) by
/// reading each of its 156 checks as one relation between two message bits, and
/// compared with it on random inputs when transcribed. They are ordered greedily so
/// that a random block rules out every DV after about 55 of them. Tests check that
/// every condition relates two bits that carry a difference in every DV it applies
/// to, that the unrolled check agrees with the table, and that the SHAttered and
/// SHA-mbles collisions are detected.
///
/// Like git we reject rather than return a "safe" hash: callers see
/// `collisionDetected` and refuse the object. The digest is plain SHA-1 either way.
public struct SHA1DC: Sendable, SHA1Framing {
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
    /// Whether a block hashed so far is half of a near-collision pair of a known attack.
    public private(set) var collisionDetected = false
    /// Whether blocks are compressed with the CPU's SHA instructions (see `compress`);
    /// tests turn it off to compare with the Swift compression function.
    var hardware = SHA1.hardwareAvailable

    /// A fresh hasher.
    public init() {}

    /// Hashes `bytes` in one call.
    public static func hash(_ bytes: [UInt8]) -> (digest: [UInt8], collisionDetected: Bool) {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// Hashes raw memory in one call.
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> (digest: [UInt8], collisionDetected: Bool) {
        var h = SHA1DC()
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

    /// Pads, finishes and returns the 20-byte digest with the verdict.
    public mutating func finalize() -> (digest: [UInt8], collisionDetected: Bool) {
        var out = [UInt8](repeating: 0, count: 20)
        let detected = out.withUnsafeMutableBytes { finalize(into: $0.baseAddress!) }
        return (out, detected)
    }

    /// Pads, finishes, writes the 20-byte digest to `out` and returns whether a
    /// collision attack was detected in any block (the padding blocks included).
    @discardableResult
    public mutating func finalize(into out: UnsafeMutableRawPointer) -> Bool {
        padAndWriteDigest(into: out)
        let detected = collisionDetected
        self = SHA1DC()
        return detected
    }

    // MARK: - Disturbance vectors

    /// The 32 DVs checked, in the bit order of the masks `conditions` uses: type I
    /// then type II, (type, K, b).
    static let vectors: [(type: Int, k: Int, b: Int)] = [
        (1, 43, 0), (1, 44, 0), (1, 45, 0), (1, 46, 0), (1, 46, 2), (1, 47, 0), (1, 47, 2), (1, 48, 0),
        (1, 48, 2), (1, 49, 0), (1, 49, 2), (1, 50, 0), (1, 50, 2), (1, 51, 0), (1, 51, 2), (1, 52, 0),
        (2, 45, 0), (2, 46, 0), (2, 46, 2), (2, 47, 0), (2, 48, 0), (2, 49, 0), (2, 49, 2), (2, 50, 0),
        (2, 50, 2), (2, 51, 0), (2, 51, 2), (2, 52, 0), (2, 53, 0), (2, 54, 0), (2, 55, 0), (2, 56, 0),
    ]

    /// The step whose saved state a DV's recompression starts from: the DV has no
    /// disturbance in the five steps before it, so both blocks agree on that state.
    static func testStep(k: Int) -> Int { k >= 50 ? 65 : 58 }

    /// The disturbance vector DV[-5...79] of type I(K,b) or II(K,b), at index t+5.
    static func disturbanceVector(type: Int, k: Int, b: Int) -> [UInt32] {
        var dv = [UInt32](repeating: 0, count: 85)
        let bit = UInt32(1) << UInt32(b)
        dv[k + 15 + 5] = bit
        if type == 2 {
            dv[k + 1 + 5] = rotl(bit, 31)
            dv[k + 3 + 5] = rotl(bit, 31)
        }
        // Forwards with the message expansion, backwards with its inverse.
        for t in (k + 16)..<80 {
            dv[t + 5] = rotl(dv[t - 3 + 5] ^ dv[t - 8 + 5] ^ dv[t - 14 + 5] ^ dv[t - 16 + 5], 1)
        }
        for t in stride(from: k - 1, through: -5, by: -1) {
            dv[t + 5] = rotl(dv[t + 16 + 5], 31) ^ dv[t + 13 + 5] ^ dv[t + 8 + 5] ^ dv[t + 2 + 5]
        }
        return dv
    }

    /// The message XOR difference dm[0...79] of a DV: each disturbance plus its five corrections.
    static func messageDifference(type: Int, k: Int, b: Int) -> [UInt32] {
        let dv = disturbanceVector(type: type, k: k, b: b)
        return (0..<80).map { t in
            let i = t + 5
            return dv[i] ^ rotl(dv[i - 1], 5) ^ dv[i - 2] ^ rotl(dv[i - 3], 30) ^ rotl(dv[i - 4], 30) ^ rotl(dv[i - 5], 30)
        }
    }

    /// dm of every DV, 80 words each, in `vectors` order.
    static let differences: [UInt32] = vectors.flatMap { messageDifference(type: $0.type, k: $0.k, b: $0.b) }

    /// The unavoidable bit conditions: (i, x, j, y, v, DVs): for every DV whose bit is
    /// set in the mask, an attack following it has W[i] bit x XOR W[j] bit y == v.
    /// Ordered greedily so that a random block rules out all DVs early.
    static let conditionRows: [(Int, Int, Int, Int, Int, UInt32)] = [
        (44, 29, 45, 29, 0, 0x0283A080),
        (46, 29, 47, 29, 0, 0x18180801),
        (45, 4, 48, 29, 0, 0x20202224),
        (49, 29, 50, 29, 0, 0xC2810008),
        (44, 4, 47, 29, 0, 0x1010088A),
        (43, 4, 46, 29, 0, 0x08080225),
        (45, 6, 47, 6, 0, 0x00004440),
        (44, 6, 46, 6, 0, 0x00001110),
        (48, 29, 49, 29, 0, 0x60A08004),
        (41, 1, 42, 6, 1, 0x04040100),
        (40, 29, 41, 29, 0, 0x800A00A2),
        (40, 1, 41, 6, 1, 0x01004040),
        (39, 1, 40, 6, 1, 0x00401010),
        (47, 29, 48, 29, 0, 0x30302002),
        (45, 29, 46, 29, 0, 0x0A0A8200),
        (46, 4, 49, 29, 0, 0x40808888),
        (47, 4, 50, 29, 0, 0x82012220),
        (36, 1, 37, 6, 1, 0x00041040),
        (47, 6, 49, 6, 0, 0x00004400),
        (46, 6, 47, 1, 0, 0x01000010),
        (42, 6, 43, 1, 0, 0x04040000),
        (41, 4, 44, 29, 0, 0x00812025),
        (53, 29, 54, 29, 0, 0x60220800),
        (44, 1, 45, 6, 1, 0x00404000),
        (42, 4, 45, 29, 0, 0x0202808A),
        (52, 29, 53, 29, 0, 0x30110200),
        (40, 4, 43, 29, 0, 0x8020080A),
        (47, 6, 48, 1, 0, 0x04000040),
        (46, 6, 48, 6, 0, 0x00001100),
        (35, 1, 36, 6, 1, 0x00000410),
        (39, 4, 42, 29, 0, 0x40100205),
        (41, 6, 42, 1, 0, 0x01004000),
        (40, 6, 41, 1, 0, 0x00401000),
        (50, 29, 51, 29, 0, 0x8A020020),
        (51, 29, 52, 29, 0, 0x18080080),
        (61, 2, 62, 7, 1, 0x00040010),
        (43, 6, 45, 6, 0, 0x00000440),
        (43, 29, 44, 29, 0, 0x00A12820),
        (42, 6, 44, 6, 0, 0x00000110),
        (37, 4, 40, 29, 0, 0x50020021),
        (38, 4, 41, 29, 0, 0xA0080082),
        (53, 6, 54, 1, 0, 0x00400000),
        (54, 6, 55, 1, 0, 0x01000000),
        (55, 6, 56, 1, 0, 0x04000000),
        (42, 29, 43, 29, 0, 0x00300A08),
        (50, 6, 51, 1, 0, 0x00041000),
        (37, 1, 38, 6, 1, 0x00004100),
        (48, 4, 51, 29, 0, 0x08028880),
        (54, 29, 55, 29, 0, 0xC0882000),
        (39, 4, 41, 4, 1, 0x40000005),
        (49, 6, 50, 1, 0, 0x00000400),
        (51, 6, 53, 6, 0, 0x00400000),
        (52, 6, 54, 6, 0, 0x01000000),
        (53, 6, 55, 6, 0, 0x04000000),
        (50, 4, 53, 29, 0, 0x20128800),
        (49, 4, 52, 29, 0, 0x10092200),
        (48, 6, 50, 6, 0, 0x00041000),
        (55, 29, 56, 29, 0, 0x82108000),
        (45, 29, 47, 29, 1, 0x0000008A),
        (44, 29, 46, 29, 1, 0x00000025),
        (62, 2, 63, 7, 1, 0x00000040),
        (63, 2, 64, 7, 1, 0x00000100),
        (42, 1, 50, 1, 1, 0x00000400),
        (50, 1, 54, 1, 1, 0x00400000),
        (51, 1, 55, 1, 1, 0x01000000),
        (52, 1, 56, 1, 1, 0x04000000),
        (36, 4, 40, 29, 0, 0x00110208),
        (56, 4, 59, 29, 0, 0x28000000),
        (51, 4, 54, 29, 0, 0x40282000),
        (52, 4, 55, 29, 0, 0x80908000),
        (37, 4, 39, 4, 1, 0x50000001),
        (56, 29, 59, 29, 1, 0x0A000000),
        (40, 6, 42, 6, 0, 0x00000010),
        (47, 1, 51, 1, 1, 0x00040000),
        (41, 6, 43, 6, 0, 0x00000040),
        (48, 6, 49, 1, 0, 0x00000100),
        (39, 6, 40, 1, 0, 0x00000400),
        (51, 6, 52, 1, 0, 0x00004000),
        (45, 6, 46, 1, 0, 0x00400000),
        (45, 1, 47, 1, 1, 0x01000000),
        (46, 1, 48, 1, 1, 0x04000000),
        (41, 29, 42, 29, 0, 0x00180284),
        (40, 4, 42, 4, 1, 0x8000000A),
        (38, 4, 40, 4, 1, 0xA0000002),
        (63, 1, 64, 6, 1, 0x00010004),
        (57, 29, 58, 29, 0, 0x10800000),
        (56, 29, 57, 29, 0, 0x08200000),
        (43, 1, 51, 1, 1, 0x00001000),
        (38, 1, 40, 1, 1, 0x00000400),
        (49, 6, 51, 6, 0, 0x00004000),
        (37, 5, 41, 30, 0, 0x00400000),
        (38, 5, 42, 30, 0, 0x01000000),
        (39, 5, 43, 30, 0, 0x04000000),
        (58, 29, 59, 29, 0, 0x22000000),
        (51, 29, 54, 29, 1, 0x000A0800),
        (50, 29, 52, 29, 1, 0x00012200),
        (53, 29, 56, 29, 1, 0x00308000),
        (46, 29, 48, 29, 1, 0x00000224),
        (47, 29, 49, 29, 1, 0x00000888),
        (55, 4, 58, 29, 0, 0x12000000),
        (54, 4, 57, 29, 0, 0x08800000),
        (61, 1, 62, 6, 1, 0x00000001),
        (37, 1, 37, 6, 0, 0x00004000),
        (36, 0, 41, 30, 1, 0x00400000),
        (37, 0, 42, 30, 1, 0x01000000),
        (38, 0, 43, 30, 1, 0x04000000),
        (48, 29, 50, 29, 1, 0x00002220),
        (49, 29, 51, 29, 1, 0x00008880),
        (61, 0, 62, 5, 1, 0x00020008),
        (60, 0, 61, 5, 1, 0x00010004),
        (53, 4, 56, 29, 0, 0x02200000),
        (36, 4, 38, 4, 1, 0x28000000),
        (59, 5, 63, 30, 0, 0x00000001),
        (62, 1, 63, 6, 1, 0x00000002),
        (35, 5, 39, 30, 0, 0x00004000),
        (38, 4, 42, 29, 0, 0x00802000),
        (35, 4, 39, 29, 0, 0x00080084),
        (39, 4, 43, 29, 0, 0x02008000),
        (58, 0, 63, 30, 1, 0x00000001),
        (60, 5, 64, 30, 0, 0x00000002),
        (58, 29, 61, 29, 1, 0x10000000),
        (59, 4, 63, 29, 0, 0x40000000),
        (62, 0, 63, 5, 1, 0x00080020),
        (37, 4, 41, 29, 0, 0x00200800),
        (48, 29, 55, 29, 1, 0x0000A000),
        (59, 0, 64, 30, 1, 0x00000002),
        (55, 29, 58, 29, 1, 0x00800000),
        (59, 29, 60, 29, 0, 0x08000000),
        (57, 4, 61, 29, 0, 0x10000000),
        (58, 4, 62, 29, 0, 0x20000000),
        (57, 4, 59, 29, 0, 0x40000000),
        (60, 4, 64, 29, 0, 0x80000000),
        (63, 0, 64, 5, 1, 0x00100080),
        (35, 3, 39, 28, 0, 0x00082000),
        (37, 3, 41, 28, 0, 0x00200000),
        (38, 3, 42, 28, 0, 0x00800000),
        (39, 3, 43, 28, 0, 0x02000000),
        (40, 3, 44, 28, 0, 0x08000000),
        (41, 3, 45, 28, 0, 0x10000000),
        (42, 3, 46, 28, 0, 0x20000000),
        (43, 3, 47, 28, 0, 0x40000000),
        (44, 3, 48, 28, 0, 0x80000000),
        (36, 4, 37, 4, 1, 0x00000800),
        (38, 4, 39, 4, 1, 0x00008000),
        (36, 3, 40, 28, 0, 0x00100000),
        (36, 30, 41, 28, 1, 0x00200000),
        (37, 30, 42, 28, 1, 0x00800000),
        (38, 30, 43, 28, 1, 0x02000000),
        (40, 4, 44, 29, 0, 0x08000000),
        (41, 4, 45, 29, 0, 0x10000000),
        (42, 4, 46, 29, 0, 0x20000000),
        (43, 4, 47, 29, 0, 0x40000000),
        (44, 4, 48, 29, 0, 0x80000000),
        (37, 4, 38, 4, 1, 0x00002000),
        (35, 30, 40, 28, 1, 0x00100000),
        (39, 30, 44, 28, 1, 0x08000000),
    ]

    /// `conditionRows` packed: i | x << 8 | j << 16 | y << 24 | v << 31 | mask << 32.
    static let conditions: [UInt64] = conditionRows.map { row in
        UInt64(row.0) | UInt64(row.1) << 8 | UInt64(row.2) << 16 | UInt64(row.3) << 24 | UInt64(row.4) << 31 | UInt64(row.5) << 32
    }

    /// The DVs (bit k for `vectors[k]`) whose unavoidable conditions the expanded
    /// message `w` all meets, read straight from the table. `candidates` is the fast
    /// form; the tests check that both agree.
    static func candidatesFromTable(_ w: UnsafePointer<UInt32>) -> UInt32 {
        var mask = UInt32.max
        for e in conditions {
            let wi = w[Int(truncatingIfNeeded: e & 0x7F)]
            let wj = w[Int(truncatingIfNeeded: (e >> 16) & 0x7F)]
            let broken = ((wi >> UInt32(truncatingIfNeeded: (e >> 8) & 31))
                ^ (wj >> UInt32(truncatingIfNeeded: (e >> 24) & 31))
                ^ UInt32(truncatingIfNeeded: e >> 31)) & 1
            mask &= ~(UInt32(truncatingIfNeeded: e >> 32) & (0 &- broken))
        }
        return mask
    }

    /// All ones when bit `n` of `x` is set, else zero.
    @inline(__always)
    private static func lane(_ x: UInt32, _ n: UInt32) -> UInt32 {
        UInt32(bitPattern: Int32(bitPattern: x << (31 &- n)) >> 31)
    }

    /// `candidatesFromTable`, unrolled: row n of `conditionRows` is line n below (W[j]
    /// rotated so that bit y lines up with bit x; a broken condition clears its DVs),
    /// with a return as soon as no DV is left. Mechanically written from the table.
    /// Not inlined: inlined, the optimiser reads the words from registers instead of
    /// the buffer and keeps 30 of them alive through the compression (spilling).
    @inline(never)
    static func candidates(_ w: UnsafePointer<UInt32>) -> UInt32 {
        var m = UInt32.max
        m &= ~(lane(w[44] ^ w[45], 29) & 0x0283A080)
        m &= ~(lane(w[46] ^ w[47], 29) & 0x18180801)
        m &= ~(lane(w[45] ^ rotl(w[48], 7), 4) & 0x20202224)
        m &= ~(lane(w[49] ^ w[50], 29) & 0xC2810008)
        m &= ~(lane(w[44] ^ rotl(w[47], 7), 4) & 0x1010088A)
        m &= ~(lane(w[43] ^ rotl(w[46], 7), 4) & 0x08080225)
        m &= ~(lane(w[45] ^ w[47], 6) & 0x00004440)
        m &= ~(lane(w[44] ^ w[46], 6) & 0x00001110)
        if m == 0 { return 0 }
        m &= ~(lane(w[48] ^ w[49], 29) & 0x60A08004)
        m &= lane(w[41] ^ rotl(w[42], 27), 1) | 0xFBFBFEFF
        m &= ~(lane(w[40] ^ w[41], 29) & 0x800A00A2)
        m &= lane(w[40] ^ rotl(w[41], 27), 1) | 0xFEFFBFBF
        m &= lane(w[39] ^ rotl(w[40], 27), 1) | 0xFFBFEFEF
        m &= ~(lane(w[47] ^ w[48], 29) & 0x30302002)
        m &= ~(lane(w[45] ^ w[46], 29) & 0x0A0A8200)
        m &= ~(lane(w[46] ^ rotl(w[49], 7), 4) & 0x40808888)
        if m == 0 { return 0 }
        m &= ~(lane(w[47] ^ rotl(w[50], 7), 4) & 0x82012220)
        m &= lane(w[36] ^ rotl(w[37], 27), 1) | 0xFFFBEFBF
        m &= ~(lane(w[47] ^ w[49], 6) & 0x00004400)
        m &= ~(lane(w[46] ^ rotl(w[47], 5), 6) & 0x01000010)
        m &= ~(lane(w[42] ^ rotl(w[43], 5), 6) & 0x04040000)
        m &= ~(lane(w[41] ^ rotl(w[44], 7), 4) & 0x00812025)
        m &= ~(lane(w[53] ^ w[54], 29) & 0x60220800)
        m &= lane(w[44] ^ rotl(w[45], 27), 1) | 0xFFBFBFFF
        if m == 0 { return 0 }
        m &= ~(lane(w[42] ^ rotl(w[45], 7), 4) & 0x0202808A)
        m &= ~(lane(w[52] ^ w[53], 29) & 0x30110200)
        m &= ~(lane(w[40] ^ rotl(w[43], 7), 4) & 0x8020080A)
        m &= ~(lane(w[47] ^ rotl(w[48], 5), 6) & 0x04000040)
        m &= ~(lane(w[46] ^ w[48], 6) & 0x00001100)
        m &= lane(w[35] ^ rotl(w[36], 27), 1) | 0xFFFFFBEF
        m &= ~(lane(w[39] ^ rotl(w[42], 7), 4) & 0x40100205)
        m &= ~(lane(w[41] ^ rotl(w[42], 5), 6) & 0x01004000)
        if m == 0 { return 0 }
        m &= ~(lane(w[40] ^ rotl(w[41], 5), 6) & 0x00401000)
        m &= ~(lane(w[50] ^ w[51], 29) & 0x8A020020)
        m &= ~(lane(w[51] ^ w[52], 29) & 0x18080080)
        m &= lane(w[61] ^ rotl(w[62], 27), 2) | 0xFFFBFFEF
        m &= ~(lane(w[43] ^ w[45], 6) & 0x00000440)
        m &= ~(lane(w[43] ^ w[44], 29) & 0x00A12820)
        m &= ~(lane(w[42] ^ w[44], 6) & 0x00000110)
        m &= ~(lane(w[37] ^ rotl(w[40], 7), 4) & 0x50020021)
        if m == 0 { return 0 }
        m &= ~(lane(w[38] ^ rotl(w[41], 7), 4) & 0xA0080082)
        m &= ~(lane(w[53] ^ rotl(w[54], 5), 6) & 0x00400000)
        m &= ~(lane(w[54] ^ rotl(w[55], 5), 6) & 0x01000000)
        m &= ~(lane(w[55] ^ rotl(w[56], 5), 6) & 0x04000000)
        m &= ~(lane(w[42] ^ w[43], 29) & 0x00300A08)
        m &= ~(lane(w[50] ^ rotl(w[51], 5), 6) & 0x00041000)
        m &= lane(w[37] ^ rotl(w[38], 27), 1) | 0xFFFFBEFF
        m &= ~(lane(w[48] ^ rotl(w[51], 7), 4) & 0x08028880)
        if m == 0 { return 0 }
        m &= ~(lane(w[54] ^ w[55], 29) & 0xC0882000)
        m &= lane(w[39] ^ w[41], 4) | 0xBFFFFFFA
        m &= ~(lane(w[49] ^ rotl(w[50], 5), 6) & 0x00000400)
        m &= ~(lane(w[51] ^ w[53], 6) & 0x00400000)
        m &= ~(lane(w[52] ^ w[54], 6) & 0x01000000)
        m &= ~(lane(w[53] ^ w[55], 6) & 0x04000000)
        m &= ~(lane(w[50] ^ rotl(w[53], 7), 4) & 0x20128800)
        m &= ~(lane(w[49] ^ rotl(w[52], 7), 4) & 0x10092200)
        if m == 0 { return 0 }
        m &= ~(lane(w[48] ^ w[50], 6) & 0x00041000)
        m &= ~(lane(w[55] ^ w[56], 29) & 0x82108000)
        m &= lane(w[45] ^ w[47], 29) | 0xFFFFFF75
        m &= lane(w[44] ^ w[46], 29) | 0xFFFFFFDA
        m &= lane(w[62] ^ rotl(w[63], 27), 2) | 0xFFFFFFBF
        m &= lane(w[63] ^ rotl(w[64], 27), 2) | 0xFFFFFEFF
        m &= lane(w[42] ^ w[50], 1) | 0xFFFFFBFF
        m &= lane(w[50] ^ w[54], 1) | 0xFFBFFFFF
        if m == 0 { return 0 }
        m &= lane(w[51] ^ w[55], 1) | 0xFEFFFFFF
        m &= lane(w[52] ^ w[56], 1) | 0xFBFFFFFF
        m &= ~(lane(w[36] ^ rotl(w[40], 7), 4) & 0x00110208)
        m &= ~(lane(w[56] ^ rotl(w[59], 7), 4) & 0x28000000)
        m &= ~(lane(w[51] ^ rotl(w[54], 7), 4) & 0x40282000)
        m &= ~(lane(w[52] ^ rotl(w[55], 7), 4) & 0x80908000)
        m &= lane(w[37] ^ w[39], 4) | 0xAFFFFFFE
        m &= lane(w[56] ^ w[59], 29) | 0xF5FFFFFF
        if m == 0 { return 0 }
        m &= ~(lane(w[40] ^ w[42], 6) & 0x00000010)
        m &= lane(w[47] ^ w[51], 1) | 0xFFFBFFFF
        m &= ~(lane(w[41] ^ w[43], 6) & 0x00000040)
        m &= ~(lane(w[48] ^ rotl(w[49], 5), 6) & 0x00000100)
        m &= ~(lane(w[39] ^ rotl(w[40], 5), 6) & 0x00000400)
        m &= ~(lane(w[51] ^ rotl(w[52], 5), 6) & 0x00004000)
        m &= ~(lane(w[45] ^ rotl(w[46], 5), 6) & 0x00400000)
        m &= lane(w[45] ^ w[47], 1) | 0xFEFFFFFF
        if m == 0 { return 0 }
        m &= lane(w[46] ^ w[48], 1) | 0xFBFFFFFF
        m &= ~(lane(w[41] ^ w[42], 29) & 0x00180284)
        m &= lane(w[40] ^ w[42], 4) | 0x7FFFFFF5
        m &= lane(w[38] ^ w[40], 4) | 0x5FFFFFFD
        m &= lane(w[63] ^ rotl(w[64], 27), 1) | 0xFFFEFFFB
        m &= ~(lane(w[57] ^ w[58], 29) & 0x10800000)
        m &= ~(lane(w[56] ^ w[57], 29) & 0x08200000)
        m &= lane(w[43] ^ w[51], 1) | 0xFFFFEFFF
        if m == 0 { return 0 }
        m &= lane(w[38] ^ w[40], 1) | 0xFFFFFBFF
        m &= ~(lane(w[49] ^ w[51], 6) & 0x00004000)
        m &= ~(lane(w[37] ^ rotl(w[41], 7), 5) & 0x00400000)
        m &= ~(lane(w[38] ^ rotl(w[42], 7), 5) & 0x01000000)
        m &= ~(lane(w[39] ^ rotl(w[43], 7), 5) & 0x04000000)
        m &= ~(lane(w[58] ^ w[59], 29) & 0x22000000)
        m &= lane(w[51] ^ w[54], 29) | 0xFFF5F7FF
        m &= lane(w[50] ^ w[52], 29) | 0xFFFEDDFF
        if m == 0 { return 0 }
        m &= lane(w[53] ^ w[56], 29) | 0xFFCF7FFF
        m &= lane(w[46] ^ w[48], 29) | 0xFFFFFDDB
        m &= lane(w[47] ^ w[49], 29) | 0xFFFFF777
        m &= ~(lane(w[55] ^ rotl(w[58], 7), 4) & 0x12000000)
        m &= ~(lane(w[54] ^ rotl(w[57], 7), 4) & 0x08800000)
        m &= lane(w[61] ^ rotl(w[62], 27), 1) | 0xFFFFFFFE
        m &= ~(lane(w[37] ^ rotl(w[37], 27), 1) & 0x00004000)
        m &= lane(w[36] ^ rotl(w[41], 2), 0) | 0xFFBFFFFF
        if m == 0 { return 0 }
        m &= lane(w[37] ^ rotl(w[42], 2), 0) | 0xFEFFFFFF
        m &= lane(w[38] ^ rotl(w[43], 2), 0) | 0xFBFFFFFF
        m &= lane(w[48] ^ w[50], 29) | 0xFFFFDDDF
        m &= lane(w[49] ^ w[51], 29) | 0xFFFF777F
        m &= lane(w[61] ^ rotl(w[62], 27), 0) | 0xFFFDFFF7
        m &= lane(w[60] ^ rotl(w[61], 27), 0) | 0xFFFEFFFB
        m &= ~(lane(w[53] ^ rotl(w[56], 7), 4) & 0x02200000)
        m &= lane(w[36] ^ w[38], 4) | 0xD7FFFFFF
        if m == 0 { return 0 }
        m &= ~(lane(w[59] ^ rotl(w[63], 7), 5) & 0x00000001)
        m &= lane(w[62] ^ rotl(w[63], 27), 1) | 0xFFFFFFFD
        m &= ~(lane(w[35] ^ rotl(w[39], 7), 5) & 0x00004000)
        m &= ~(lane(w[38] ^ rotl(w[42], 7), 4) & 0x00802000)
        m &= ~(lane(w[35] ^ rotl(w[39], 7), 4) & 0x00080084)
        m &= ~(lane(w[39] ^ rotl(w[43], 7), 4) & 0x02008000)
        m &= lane(w[58] ^ rotl(w[63], 2), 0) | 0xFFFFFFFE
        m &= ~(lane(w[60] ^ rotl(w[64], 7), 5) & 0x00000002)
        if m == 0 { return 0 }
        m &= lane(w[58] ^ w[61], 29) | 0xEFFFFFFF
        m &= ~(lane(w[59] ^ rotl(w[63], 7), 4) & 0x40000000)
        m &= lane(w[62] ^ rotl(w[63], 27), 0) | 0xFFF7FFDF
        m &= ~(lane(w[37] ^ rotl(w[41], 7), 4) & 0x00200800)
        m &= lane(w[48] ^ w[55], 29) | 0xFFFF5FFF
        m &= lane(w[59] ^ rotl(w[64], 2), 0) | 0xFFFFFFFD
        m &= lane(w[55] ^ w[58], 29) | 0xFF7FFFFF
        m &= ~(lane(w[59] ^ w[60], 29) & 0x08000000)
        if m == 0 { return 0 }
        m &= ~(lane(w[57] ^ rotl(w[61], 7), 4) & 0x10000000)
        m &= ~(lane(w[58] ^ rotl(w[62], 7), 4) & 0x20000000)
        m &= ~(lane(w[57] ^ rotl(w[59], 7), 4) & 0x40000000)
        m &= ~(lane(w[60] ^ rotl(w[64], 7), 4) & 0x80000000)
        m &= lane(w[63] ^ rotl(w[64], 27), 0) | 0xFFEFFF7F
        m &= ~(lane(w[35] ^ rotl(w[39], 7), 3) & 0x00082000)
        m &= ~(lane(w[37] ^ rotl(w[41], 7), 3) & 0x00200000)
        m &= ~(lane(w[38] ^ rotl(w[42], 7), 3) & 0x00800000)
        if m == 0 { return 0 }
        m &= ~(lane(w[39] ^ rotl(w[43], 7), 3) & 0x02000000)
        m &= ~(lane(w[40] ^ rotl(w[44], 7), 3) & 0x08000000)
        m &= ~(lane(w[41] ^ rotl(w[45], 7), 3) & 0x10000000)
        m &= ~(lane(w[42] ^ rotl(w[46], 7), 3) & 0x20000000)
        m &= ~(lane(w[43] ^ rotl(w[47], 7), 3) & 0x40000000)
        m &= ~(lane(w[44] ^ rotl(w[48], 7), 3) & 0x80000000)
        m &= lane(w[36] ^ w[37], 4) | 0xFFFFF7FF
        m &= lane(w[38] ^ w[39], 4) | 0xFFFF7FFF
        if m == 0 { return 0 }
        m &= ~(lane(w[36] ^ rotl(w[40], 7), 3) & 0x00100000)
        m &= lane(w[36] ^ rotl(w[41], 2), 30) | 0xFFDFFFFF
        m &= lane(w[37] ^ rotl(w[42], 2), 30) | 0xFF7FFFFF
        m &= lane(w[38] ^ rotl(w[43], 2), 30) | 0xFDFFFFFF
        m &= ~(lane(w[40] ^ rotl(w[44], 7), 4) & 0x08000000)
        m &= ~(lane(w[41] ^ rotl(w[45], 7), 4) & 0x10000000)
        m &= ~(lane(w[42] ^ rotl(w[46], 7), 4) & 0x20000000)
        m &= ~(lane(w[43] ^ rotl(w[47], 7), 4) & 0x40000000)
        if m == 0 { return 0 }
        m &= ~(lane(w[44] ^ rotl(w[48], 7), 4) & 0x80000000)
        m &= lane(w[37] ^ w[38], 4) | 0xFFFFDFFF
        m &= lane(w[35] ^ rotl(w[40], 2), 30) | 0xFFEFFFFF
        m &= lane(w[39] ^ rotl(w[44], 2), 30) | 0xF7FFFFFF
        return m
    }

    // MARK: - Compression

    @inline(__always)
    private static func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 {
        (x << n) | (x >> (32 &- n))
    }

    @inline(__always)
    private func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { SHA1DC.rotl(x, n) }

    typealias State = (UInt32, UInt32, UInt32, UInt32, UInt32)

    @inline(__always)
    private static func f1(_ b: UInt32, _ c: UInt32, _ d: UInt32) -> UInt32 { (d ^ (b & (c ^ d))) &+ 0x5A82_7999 }
    @inline(__always)
    private static func f2(_ b: UInt32, _ c: UInt32, _ d: UInt32) -> UInt32 { (b ^ c ^ d) &+ 0x6ED9_EBA1 }
    @inline(__always)
    private static func f3(_ b: UInt32, _ c: UInt32, _ d: UInt32) -> UInt32 { ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC }
    @inline(__always)
    private static func f4(_ b: UInt32, _ c: UInt32, _ d: UInt32) -> UInt32 { (b ^ c ^ d) &+ 0xCA62_C1D6 }

    /// Whether the block with expanded message `w`, state `state` before step `step`
    /// and chaining output `output` has a partner block with message w ^ dm (dm at
    /// `dm`) and the same output: the recompression of the method.
    static func partnerCollides(_ w: UnsafePointer<UInt32>, _ dm: UnsafePointer<UInt32>, step: Int,
                                state: State, output: State) -> Bool {
        // Backwards from the saved state to the partner's chaining input. Step t turned
        // (a0, b0, c0, d0, e0) into (T, a0, rotl(b0, 30), c0, d0).
        var (a, b, c, d, e) = state
        @inline(__always)
        func back(_ t: Int, _ f: (UInt32, UInt32, UInt32) -> UInt32) {
            let a0 = b, b0 = rotl(c, 2), c0 = d, d0 = e
            let e0 = a &- rotl(a0, 5) &- f(b0, c0, d0) &- (w[t] ^ dm[t])
            (a, b, c, d, e) = (a0, b0, c0, d0, e0)
        }
        var t = step - 1
        while t >= 60 { back(t, f4); t -= 1 }
        while t >= 40 { back(t, f3); t -= 1 }
        while t >= 20 { back(t, f2); t -= 1 }
        while t >= 0 { back(t, f1); t -= 1 }
        let input = (a, b, c, d, e)
        // Forwards from the saved state to the end.
        (a, b, c, d, e) = state
        @inline(__always)
        func forward(_ t: Int, _ f: (UInt32, UInt32, UInt32) -> UInt32) {
            let x = rotl(a, 5) &+ f(b, c, d) &+ e &+ (w[t] ^ dm[t])
            (a, b, c, d, e) = (x, a, rotl(b, 30), c, d)
        }
        t = step
        while t < 60 { forward(t, f3); t += 1 }
        while t < 80 { forward(t, f4); t += 1 }
        return input.0 &+ a == output.0 && input.1 &+ b == output.1 && input.2 &+ c == output.2
            && input.3 &+ d == output.3 && input.4 &+ e == output.4
    }

    /// Writes the expanded message W[0...79] of the block at `block` to `w`.
    static func expand(_ block: UnsafeRawPointer, into w: UnsafeMutablePointer<UInt32>) {
        for t in 0..<16 { w[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: 4 * t, as: UInt32.self)) }
        for t in 16..<80 { w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1) }
    }

    /// Runs the compression function over `blocks` consecutive 64-byte blocks at
    /// `base`, checking each block for the DVs of known attacks.
    mutating func compress(_ base: UnsafeRawPointer, blocks: Int) {
        let dms = SHA1DC.differences
        // W[0...79], then the chaining state for the hardware path.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 88) { buffer in
            dms.withUnsafeBufferPointer { dms in
                guard let ex = buffer.baseAddress, let dms = dms.baseAddress else { return }
                if hardware {
                    compressHardware(base, blocks: blocks, ex: ex, dms: dms)
                } else {
                    compress(base, blocks: blocks, ex: ex, dms: dms)
                }
            }
        }
    }

    /// W[32...67] of the 64-byte `block` as the SHA instructions compute them, for the
    /// tests (nil without them).
    static func hardwareWords(_ block: [UInt8]) -> [UInt32]? {
        guard SHA1.hardwareAvailable, block.count == 64 else { return nil }
        var words = [UInt32](repeating: 0, count: 88)
        words.withUnsafeMutableBufferPointer { w in
            block.withUnsafeBytes { b in
                guard let ex = w.baseAddress, let p = b.baseAddress else { return }
                let state = ex + 80
                (state[0], state[1], state[2], state[3], state[4]) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
                guts_sha1_hardware_compress(state, p, 1, ex)
            }
        }
        return Array(words[32..<68])
    }

    /// `compress` on the CPU's SHA instructions (`guts_sha1_hardware_compress`, about
    /// three times the Swift function's speed), which also hand back the expanded
    /// words the unavoidable conditions read. The conditions rule out every DV for
    /// most blocks; a block they do not (about 1 in 20) is compressed again by the
    /// Swift function from the same chaining input, which keeps the intermediate
    /// states the recompression starts from and runs it. Both give the same output.
    private mutating func compressHardware(_ base: UnsafeRawPointer, blocks: Int, ex: UnsafeMutablePointer<UInt32>,
                                           dms: UnsafePointer<UInt32>) {
        let state = ex + 80
        state[0] = h0
        state[1] = h1
        state[2] = h2
        state[3] = h3
        state[4] = h4
        var p = base
        for _ in 0..<blocks {
            let input = (state[0], state[1], state[2], state[3], state[4])
            guts_sha1_hardware_compress(state, p, 1, ex)
            if SHA1DC.candidates(UnsafePointer(ex)) != 0 {
                var again = SHA1DC()
                (again.h0, again.h1, again.h2, again.h3, again.h4) = input
                again.compress(p, blocks: 1, ex: ex, dms: dms)
                if again.collisionDetected { collisionDetected = true }
            }
            p += 64
        }
        h0 = state[0]
        h1 = state[1]
        h2 = state[2]
        h3 = state[3]
        h4 = state[4]
    }

    private mutating func compress(_ base: UnsafeRawPointer, blocks: Int, ex: UnsafeMutablePointer<UInt32>,
                                   dms: UnsafePointer<UInt32>) {
        var a = h0, b = h1, c = h2, d = h3, e = h4
        var p = base
        var w0: UInt32 = 0, w1: UInt32 = 0, w2: UInt32 = 0, w3: UInt32 = 0
        var w4: UInt32 = 0, w5: UInt32 = 0, w6: UInt32 = 0, w7: UInt32 = 0
        var w8: UInt32 = 0, w9: UInt32 = 0, w10: UInt32 = 0, w11: UInt32 = 0
        var w12: UInt32 = 0, w13: UInt32 = 0, w14: UInt32 = 0, w15: UInt32 = 0
        var s58: State = (0, 0, 0, 0, 0)
        var s65: State = (0, 0, 0, 0, 0)
        for _ in 0..<blocks {
            let sa = a, sb = b, sc = c, sd = d, se = e
            w0 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            e = e &+ rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w0
            b = rotl(b, 30)
            w1 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            d = d &+ rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w1
            a = rotl(a, 30)
            w2 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            c = c &+ rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w2
            e = rotl(e, 30)
            w3 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
            b = b &+ rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w3
            d = rotl(d, 30)
            w4 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
            a = a &+ rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w4
            c = rotl(c, 30)
            w5 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
            e = e &+ rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w5
            b = rotl(b, 30)
            w6 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt32.self))
            d = d &+ rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w6
            a = rotl(a, 30)
            w7 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
            c = c &+ rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w7
            e = rotl(e, 30)
            w8 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
            b = b &+ rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w8
            d = rotl(d, 30)
            w9 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 36, as: UInt32.self))
            a = a &+ rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w9
            c = rotl(c, 30)
            w10 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 40, as: UInt32.self))
            e = e &+ rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w10
            b = rotl(b, 30)
            w11 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 44, as: UInt32.self))
            d = d &+ rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w11
            a = rotl(a, 30)
            w12 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt32.self))
            c = c &+ rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w12
            e = rotl(e, 30)
            w13 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 52, as: UInt32.self))
            b = b &+ rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w13
            d = rotl(d, 30)
            w14 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 56, as: UInt32.self))
            a = a &+ rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w14
            c = rotl(c, 30)
            w15 = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 60, as: UInt32.self))
            e = e &+ rotl(a, 5) &+ (d ^ (b & (c ^ d))) &+ 0x5A82_7999 &+ w15
            b = rotl(b, 30)
            w0 = rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            d = d &+ rotl(e, 5) &+ (c ^ (a & (b ^ c))) &+ 0x5A82_7999 &+ w0
            a = rotl(a, 30)
            w1 = rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            c = c &+ rotl(d, 5) &+ (b ^ (e & (a ^ b))) &+ 0x5A82_7999 &+ w1
            e = rotl(e, 30)
            w2 = rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            b = b &+ rotl(c, 5) &+ (a ^ (d & (e ^ a))) &+ 0x5A82_7999 &+ w2
            d = rotl(d, 30)
            w3 = rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            a = a &+ rotl(b, 5) &+ (e ^ (c & (d ^ e))) &+ 0x5A82_7999 &+ w3
            c = rotl(c, 30)
            w4 = rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w4
            b = rotl(b, 30)
            w5 = rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w5
            a = rotl(a, 30)
            w6 = rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w6
            e = rotl(e, 30)
            w7 = rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w7
            d = rotl(d, 30)
            w8 = rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w8
            c = rotl(c, 30)
            w9 = rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w9
            b = rotl(b, 30)
            w10 = rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w10
            a = rotl(a, 30)
            w11 = rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w11
            e = rotl(e, 30)
            w12 = rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w12
            d = rotl(d, 30)
            w13 = rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w13
            c = rotl(c, 30)
            w14 = rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w14
            b = rotl(b, 30)
            w15 = rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w15
            a = rotl(a, 30)
            w0 = rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w0
            e = rotl(e, 30)
            w1 = rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w1
            d = rotl(d, 30)
            w2 = rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w2
            c = rotl(c, 30)
            w3 = rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            ex[35] = w3
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0x6ED9_EBA1 &+ w3
            b = rotl(b, 30)
            w4 = rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            ex[36] = w4
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0x6ED9_EBA1 &+ w4
            a = rotl(a, 30)
            w5 = rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            ex[37] = w5
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0x6ED9_EBA1 &+ w5
            e = rotl(e, 30)
            w6 = rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            ex[38] = w6
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0x6ED9_EBA1 &+ w6
            d = rotl(d, 30)
            w7 = rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            ex[39] = w7
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0x6ED9_EBA1 &+ w7
            c = rotl(c, 30)
            w8 = rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            ex[40] = w8
            e = e &+ rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w8
            b = rotl(b, 30)
            w9 = rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            ex[41] = w9
            d = d &+ rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w9
            a = rotl(a, 30)
            w10 = rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            ex[42] = w10
            c = c &+ rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w10
            e = rotl(e, 30)
            w11 = rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            ex[43] = w11
            b = b &+ rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w11
            d = rotl(d, 30)
            w12 = rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            ex[44] = w12
            a = a &+ rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w12
            c = rotl(c, 30)
            w13 = rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            ex[45] = w13
            e = e &+ rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w13
            b = rotl(b, 30)
            w14 = rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            ex[46] = w14
            d = d &+ rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w14
            a = rotl(a, 30)
            w15 = rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            ex[47] = w15
            c = c &+ rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w15
            e = rotl(e, 30)
            w0 = rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            ex[48] = w0
            b = b &+ rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w0
            d = rotl(d, 30)
            w1 = rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            ex[49] = w1
            a = a &+ rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w1
            c = rotl(c, 30)
            w2 = rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            ex[50] = w2
            e = e &+ rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w2
            b = rotl(b, 30)
            w3 = rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            ex[51] = w3
            d = d &+ rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w3
            a = rotl(a, 30)
            w4 = rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            ex[52] = w4
            c = c &+ rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w4
            e = rotl(e, 30)
            w5 = rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            ex[53] = w5
            b = b &+ rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w5
            d = rotl(d, 30)
            w6 = rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            ex[54] = w6
            a = a &+ rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w6
            c = rotl(c, 30)
            w7 = rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            ex[55] = w7
            e = e &+ rotl(a, 5) &+ ((b & c) | (d & (b | c))) &+ 0x8F1B_BCDC &+ w7
            b = rotl(b, 30)
            w8 = rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            ex[56] = w8
            d = d &+ rotl(e, 5) &+ ((a & b) | (c & (a | b))) &+ 0x8F1B_BCDC &+ w8
            a = rotl(a, 30)
            w9 = rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            ex[57] = w9
            c = c &+ rotl(d, 5) &+ ((e & a) | (b & (e | a))) &+ 0x8F1B_BCDC &+ w9
            e = rotl(e, 30)
            // The state before step 58, kept for recompression from this step.
            s58 = (c, d, e, a, b)
            w10 = rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            ex[58] = w10
            b = b &+ rotl(c, 5) &+ ((d & e) | (a & (d | e))) &+ 0x8F1B_BCDC &+ w10
            d = rotl(d, 30)
            w11 = rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            ex[59] = w11
            a = a &+ rotl(b, 5) &+ ((c & d) | (e & (c | d))) &+ 0x8F1B_BCDC &+ w11
            c = rotl(c, 30)
            w12 = rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            ex[60] = w12
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w12
            b = rotl(b, 30)
            w13 = rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            ex[61] = w13
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w13
            a = rotl(a, 30)
            w14 = rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            ex[62] = w14
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w14
            e = rotl(e, 30)
            w15 = rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            ex[63] = w15
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w15
            d = rotl(d, 30)
            w0 = rotl(w13 ^ w8 ^ w2 ^ w0, 1)
            ex[64] = w0
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w0
            c = rotl(c, 30)
            // The state before step 65, kept for recompression from this step.
            s65 = (a, b, c, d, e)
            w1 = rotl(w14 ^ w9 ^ w3 ^ w1, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w1
            b = rotl(b, 30)
            w2 = rotl(w15 ^ w10 ^ w4 ^ w2, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w2
            a = rotl(a, 30)
            w3 = rotl(w0 ^ w11 ^ w5 ^ w3, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w3
            e = rotl(e, 30)
            w4 = rotl(w1 ^ w12 ^ w6 ^ w4, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w4
            d = rotl(d, 30)
            w5 = rotl(w2 ^ w13 ^ w7 ^ w5, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w5
            c = rotl(c, 30)
            w6 = rotl(w3 ^ w14 ^ w8 ^ w6, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w6
            b = rotl(b, 30)
            w7 = rotl(w4 ^ w15 ^ w9 ^ w7, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w7
            a = rotl(a, 30)
            w8 = rotl(w5 ^ w0 ^ w10 ^ w8, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w8
            e = rotl(e, 30)
            w9 = rotl(w6 ^ w1 ^ w11 ^ w9, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w9
            d = rotl(d, 30)
            w10 = rotl(w7 ^ w2 ^ w12 ^ w10, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w10
            c = rotl(c, 30)
            w11 = rotl(w8 ^ w3 ^ w13 ^ w11, 1)
            e = e &+ rotl(a, 5) &+ (b ^ c ^ d) &+ 0xCA62_C1D6 &+ w11
            b = rotl(b, 30)
            w12 = rotl(w9 ^ w4 ^ w14 ^ w12, 1)
            d = d &+ rotl(e, 5) &+ (a ^ b ^ c) &+ 0xCA62_C1D6 &+ w12
            a = rotl(a, 30)
            w13 = rotl(w10 ^ w5 ^ w15 ^ w13, 1)
            c = c &+ rotl(d, 5) &+ (e ^ a ^ b) &+ 0xCA62_C1D6 &+ w13
            e = rotl(e, 30)
            w14 = rotl(w11 ^ w6 ^ w0 ^ w14, 1)
            b = b &+ rotl(c, 5) &+ (d ^ e ^ a) &+ 0xCA62_C1D6 &+ w14
            d = rotl(d, 30)
            w15 = rotl(w12 ^ w7 ^ w1 ^ w15, 1)
            a = a &+ rotl(b, 5) &+ (c ^ d ^ e) &+ 0xCA62_C1D6 &+ w15
            c = rotl(c, 30)

            a = a &+ sa
            b = b &+ sb
            c = c &+ sc
            d = d &+ sd
            e = e &+ se
            p += 64

            var mask = SHA1DC.candidates(UnsafePointer(ex))
            if mask != 0 {
                // Rare (about 1 block in 20): the whole expanded message is needed.
                SHA1DC.expand(p - 64, into: ex)
            }
            while mask != 0 {
                let k = mask.trailingZeroBitCount
                mask &= mask &- 1
                let step = SHA1DC.testStep(k: SHA1DC.vectors[k].k)
                if SHA1DC.partnerCollides(UnsafePointer(ex), dms + 80 * k, step: step,
                                          state: step == 58 ? s58 : s65, output: (a, b, c, d, e)) {
                    collisionDetected = true
                }
            }
        }
        h0 = a
        h1 = b
        h2 = c
        h3 = d
        h4 = e
    }
}
