import Foundation
import GutsSupport
import XCTest
@testable import GutsGit

/// SHA-1 with collision detection (`SHA1DC`) and its use for object names.
///
/// Fixtures/ holds the public collisions: the SHAttered PDFs (Stevens, Bursztein,
/// Karpman, Albertini, Markov, 2017; identical-prefix, two near-collision blocks at
/// bytes 192...319) and the SHA-mbles messages (Leurent and Peyrin, 2020;
/// chosen-prefix).
final class SHA1DCTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    /// Whether `GUTS_DEBUG_SHA1_COLLISIONS` is honoured (debug builds).
    static let debugBuild: Bool = {
        #if DEBUG
        return true
        #else
        return false
        #endif
    }()

    func fixture(_ name: String) throws -> [UInt8] {
        try readBytes(SHA1DCTests.fixtures + "/" + name)
    }

    /// SplitMix64, so failures are reproducible from the printed seed.
    struct SeededRandom: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }

        mutating func bytes(_ n: Int) -> [UInt8] {
            var out = [UInt8](repeating: 0, count: n)
            var i = 0
            while i < n {
                let v = next()
                for k in 0..<min(8, n - i) { out[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
                i += 8
            }
            return out
        }
    }

    func seed() -> UInt64 {
        let s = UInt64.random(in: 1...UInt64.max)
        print("SHA1DCTests seed: \(s)")
        return s
    }

    // MARK: - The public collisions

    func testShatteredPDFsCollideAndAreBothDetected() throws {
        let one = try fixture("shattered-1.pdf"), two = try fixture("shattered-2.pdf")
        XCTAssertEqual(one.count, 422_435)
        XCTAssertNotEqual(one, two)
        XCTAssertEqual(Hex.encode(SHA1.hash(one)), "38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
        XCTAssertEqual(Hex.encode(SHA1.hash(two)), "38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
        for (name, data) in [("shattered-1", one), ("shattered-2", two)] {
            let r = SHA1DC.hash(data)
            XCTAssertTrue(r.collisionDetected, name)
            XCTAssertEqual(Hex.encode(r.digest), "38762cf7f55934b34d179ae6a4c80cadccbb7f0a", "\(name): the digest stays plain SHA-1")
            // The attack lies in the first 320 bytes: those prefixes collide and are detected too.
            let prefix = Array(data[0..<320])
            XCTAssertTrue(SHA1DC.hash(prefix).collisionDetected, "\(name) prefix")
            // Only the second near-collision block (bytes 256..<320) completes the attack.
            XCTAssertFalse(SHA1DC.hash(Array(data[0..<256])).collisionDetected, "\(name) without its last block")
            // Fed in odd pieces, the verdict is the same.
            var h = SHA1DC()
            forEachPiece(of: data, factor: 3, modulus: 1000) { h.update($0) }
            XCTAssertTrue(h.collisionDetected, name)
            let streamed = h.finalize()
            XCTAssertTrue(streamed.collisionDetected)
            XCTAssertEqual(streamed.digest, r.digest)
        }
        XCTAssertEqual(Array(one[0..<192]), Array(two[0..<192]))
        XCTAssertEqual(Array(one[320...]), Array(two[320...]))
        XCTAssertEqual(SHA1.hash(Array(one[0..<320])), SHA1.hash(Array(two[0..<320])))
    }

    func testShamblesChosenPrefixCollisionIsDetected() throws {
        let one = try fixture("sha-mbles-1.bin"), two = try fixture("sha-mbles-2.bin")
        XCTAssertNotEqual(one, two)
        XCTAssertEqual(Hex.encode(SHA1.hash(one)), "8ac60ba76f1999a1ab70223f225aefdc78d4ddc0")
        XCTAssertEqual(Hex.encode(SHA1.hash(two)), "8ac60ba76f1999a1ab70223f225aefdc78d4ddc0")
        XCTAssertTrue(SHA1DC.hash(one).collisionDetected)
        XCTAssertTrue(SHA1DC.hash(two).collisionDetected)
    }

    // MARK: - The SHA instructions (hardware) against the Swift compression

    func hashDC(_ data: [UInt8], hardware: Bool, pieces: Bool = false) -> (digest: [UInt8], collisionDetected: Bool) {
        var h = SHA1DC()
        h.hardware = hardware
        if pieces {
            forEachPiece(of: data, factor: 7, modulus: 997) { h.update($0) }
        } else {
            h.update(data)
        }
        return h.finalize()
    }

    func hashPlain(_ data: [UInt8], hardware: Bool) -> [UInt8] {
        var h = SHA1()
        h.hardware = hardware
        h.update(data)
        return h.finalize()
    }

    /// Where the CPU has the SHA instructions, both compressions give the same digests
    /// and verdicts: on random data of every length around the block boundaries, fed
    /// whole and in odd pieces, and on the public collisions (each detected either way,
    /// including their colliding prefixes, and not without the last near-collision
    /// block). The expanded words handed to the conditions are the message expansion's.
    func testHardwareCompressionAgreesWithSwift() throws {
        try XCTSkipUnless(SHA1.hardwareAvailable, "this CPU has no SHA instructions; only the Swift compression runs")
        let s = seed()
        var rng = SeededRandom(state: s)
        var lengths = Array(0...200)
        for _ in 0..<40 { lengths.append(Int.random(in: 201...100_000, using: &rng)) }
        for n in lengths {
            let data = rng.bytes(n)
            let hw = hashDC(data, hardware: true), sw = hashDC(data, hardware: false)
            XCTAssertEqual(hw.digest, sw.digest, "length \(n), seed \(s)")
            XCTAssertFalse(hw.collisionDetected || sw.collisionDetected, "length \(n), seed \(s)")
            XCTAssertEqual(hashDC(data, hardware: true, pieces: true).digest, sw.digest, "length \(n), seed \(s)")
            XCTAssertEqual(hashPlain(data, hardware: true), hashPlain(data, hardware: false), "length \(n), seed \(s)")
            XCTAssertEqual(hashPlain(data, hardware: true), sw.digest, "length \(n), seed \(s)")
        }
        var w = [UInt32](repeating: 0, count: 80)
        for _ in 0..<2000 {
            let block = rng.bytes(64)
            let words = try XCTUnwrap(SHA1DC.hardwareWords(block))
            block.withUnsafeBytes { b in w.withUnsafeMutableBufferPointer { SHA1DC.expand(b.baseAddress!, into: $0.baseAddress!) } }
            XCTAssertEqual(words, Array(w[32..<68]), "seed \(s)")
        }
        for name in ["shattered-1.pdf", "shattered-2.pdf", "sha-mbles-1.bin", "sha-mbles-2.bin"] {
            let data = try fixture(name)
            for hardware in [true, false] {
                for pieces in [false, true] {
                    let r = hashDC(data, hardware: hardware, pieces: pieces)
                    XCTAssertTrue(r.collisionDetected, "\(name) hardware \(hardware) pieces \(pieces)")
                    XCTAssertEqual(r.digest, hashPlain(data, hardware: false), name)
                }
            }
            if name.hasPrefix("shattered") {
                XCTAssertTrue(hashDC(Array(data[0..<320]), hardware: true).collisionDetected, name)
                XCTAssertFalse(hashDC(Array(data[0..<256]), hardware: true).collisionDetected, name)
            }
        }
    }

    // MARK: - Honest data

    func testRandomDataHashesLikeSHA1AndIsNotFlagged() {
        let s = seed()
        var rng = SeededRandom(state: s)
        var lengths = Array(0...300)
        for _ in 0..<60 { lengths.append(Int.random(in: 301...70_000, using: &rng)) }
        for n in lengths {
            let data = rng.bytes(n)
            let r = SHA1DC.hash(data)
            XCTAssertEqual(r.digest, SHA1.hash(data), "length \(n), seed \(s)")
            XCTAssertFalse(r.collisionDetected, "length \(n), seed \(s)")
            // Streaming in two random pieces gives the same answer.
            let split = n == 0 ? 0 : Int.random(in: 0...n, using: &rng)
            var h = SHA1DC()
            h.update(data[0..<split])
            h.update(data[split...])
            let streamed = h.finalize()
            XCTAssertEqual(streamed.digest, r.digest, "length \(n), split \(split), seed \(s)")
            XCTAssertFalse(streamed.collisionDetected)
        }
        // A hasher is reusable after finalize.
        var h = SHA1DC()
        h.update(Array("abc".utf8))
        XCTAssertEqual(Hex.encode(h.finalize().digest), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(Hex.encode(h.finalize().digest), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        let million = [UInt8](repeating: 0x61, count: 1_000_000)
        XCTAssertEqual(Hex.encode(SHA1DC.hash(million).digest), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// The conditions rule out almost every DV for random blocks (that is the speed of
    /// the method): fewer than 1 block in 10 needs a recompression. The unrolled
    /// evaluation agrees with the table.
    func testConditionsRuleOutMostBlocks() {
        let s = seed()
        var rng = SeededRandom(state: s)
        var w = [UInt32](repeating: 0, count: 80)
        var survivors = 0
        let blocks = 20_000
        for n in 0..<blocks {
            for t in 0..<16 { w[t] = UInt32(truncatingIfNeeded: rng.next()) }
            for t in 16..<80 {
                let x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
                w[t] = (x << 1) | (x >> 31)
            }
            let (fast, table) = w.withUnsafeBufferPointer { (SHA1DC.candidates($0.baseAddress!), SHA1DC.candidatesFromTable($0.baseAddress!)) }
            if fast != table {
                XCTFail("block \(n): unrolled \(fast) != table \(table), seed \(s)")
                return
            }
            if fast != 0 { survivors += 1 }
        }
        XCTAssertLessThan(survivors, blocks / 10, "seed \(s)")
        // Unexpanded random words too: every condition gets exercised both ways.
        for n in 0..<blocks {
            for t in 0..<80 { w[t] = UInt32(truncatingIfNeeded: rng.next()) }
            let (fast, table) = w.withUnsafeBufferPointer { (SHA1DC.candidates($0.baseAddress!), SHA1DC.candidatesFromTable($0.baseAddress!)) }
            if fast != table {
                XCTFail("words \(n): unrolled \(fast) != table \(table), seed \(s)")
                return
            }
        }
    }

    // MARK: - The tables

    func testDisturbanceVectorsFollowTheirDefinitions() {
        func rotl(_ x: UInt32, _ n: UInt32) -> UInt32 { (x << n) | (x >> (32 - n)) }
        XCTAssertEqual(SHA1DC.vectors.count, 32)
        XCTAssertEqual(SHA1DC.differences.count, 32 * 80)
        for (k, v) in SHA1DC.vectors.enumerated() {
            let name = "\(v.type == 1 ? "I" : "II")(\(v.k),\(v.b))"
            let dv = SHA1DC.disturbanceVector(type: v.type, k: v.k, b: v.b)
            // DV[-5...79] obeys the message expansion everywhere.
            for t in 16..<85 {
                XCTAssertEqual(dv[t], rotl(dv[t - 3] ^ dv[t - 8] ^ dv[t - 14] ^ dv[t - 16], 1), "\(name) DV[\(t - 5)]")
            }
            // So does the message difference: a valid difference of expanded messages.
            let dm = Array(SHA1DC.differences[(80 * k)..<(80 * k + 80)])
            for t in 16..<80 {
                XCTAssertEqual(dm[t], rotl(dm[t - 3] ^ dm[t - 8] ^ dm[t - 14] ^ dm[t - 16], 1), "\(name) dm[\(t)]")
            }
            // No disturbance in the five steps before the test step: both blocks of an
            // attack share the state there, so recompression may start from it.
            let step = SHA1DC.testStep(k: v.k)
            for t in (step - 5)..<step { XCTAssertEqual(dv[t + 5], 0, "\(name): disturbance at step \(t)") }
            // And the last disturbance is the one that defines the DV.
            XCTAssertEqual(dv[v.k + 15 + 5], UInt32(1) << UInt32(v.b), name)
        }
        // Spot checks against the published tables (sha1collisiondetection, lib/ubc_check.c).
        func dm(_ k: Int, _ t: Int) -> UInt32 { SHA1DC.differences[80 * k + t] }
        XCTAssertEqual(dm(0, 0), 0x0800_0000)  // I(43,0)
        XCTAssertEqual(dm(0, 79), 0x8000_0599)
        XCTAssertEqual(dm(4, 0), 0xB000_0040)  // I(46,2)
        XCTAssertEqual(dm(15, 0), 0x0400_0010)  // I(52,0)
        XCTAssertEqual(dm(16, 0), 0xEC00_0014)  // II(45,0)
        XCTAssertEqual(dm(18, 0), 0x9000_0070)  // II(46,2)
        XCTAssertEqual(dm(27, 0), 0x0C00_0002)  // II(52,0)
        XCTAssertEqual(dm(31, 0), 0x2600_001A)  // II(56,0)
    }

    /// Each unavoidable condition is a sign relation between two message bits that
    /// both carry a difference in every DV it applies to.
    func testConditionsRelateBitsThatCarryTheDVsDifferences() {
        XCTAssertEqual(SHA1DC.conditionRows.count, 156)
        var covered: UInt32 = 0
        for (i, x, j, y, v, mask) in SHA1DC.conditionRows {
            // compress stores only W[35...64] for the conditions.
            XCTAssertTrue((35...64).contains(i) && (35...64).contains(j) && (0..<32).contains(x) && (0..<32).contains(y) && v <= 1)
            XCTAssertNotEqual(mask, 0)
            covered |= mask
            for k in 0..<32 where mask >> UInt32(k) & 1 == 1 {
                let dm = SHA1DC.differences[(80 * k)..<(80 * k + 80)]
                XCTAssertEqual(dm[80 * k + i] >> UInt32(x) & 1, 1, "W[\(i)] bit \(x) has no difference in DV \(k)")
                XCTAssertEqual(dm[80 * k + j] >> UInt32(y) & 1, 1, "W[\(j)] bit \(y) has no difference in DV \(k)")
            }
        }
        XCTAssertEqual(covered, UInt32.max, "every DV has conditions")
    }

    // MARK: - Objects

    /// Wrapped as git blobs the PDFs do not collide: the `"blob 422435\0"` header moves
    /// the near-collision blocks off the chaining value the attack was computed for.
    /// They get git's two distinct names and are not flagged (no false positive).
    func testShatteredPDFsAsBlobsHaveDistinctNamesAndAreAccepted() throws {
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/r.git")
        let one = try repo.writeLoose(type: .blob, body: try fixture("shattered-1.pdf"))
        let two = try repo.writeLoose(type: .blob, body: try fixture("shattered-2.pdf"))
        XCTAssertEqual(one.hex, "ba9aaa145ccd24ef760cf31c74d8f7ca1a2e47b0")
        XCTAssertEqual(two.hex, "b621eeccd5c7edac9b7dcba35a8d5afd075e24f2")
        XCTAssertEqual(try repo.read(one)?.body, try fixture("shattered-1.pdf"))
        let honest = Array("hello\n".utf8)
        XCTAssertEqual(try ObjectID.checked(type: .blob, body: honest).hex, "ce013625030ba8dba906f756967f9e9ca394464a")
        let (problems, summary) = try verify(base + "/r.git")
        XCTAssertTrue(summary.isClean, "\(problems)")
    }

    /// Runs `body` with `ids` treated as colliding objects (`GUTS_DEBUG_SHA1_COLLISIONS`,
    /// honoured by debug builds only), since no real colliding git object exists.
    func withCollidingObjects(_ ids: [ObjectID], _ body: () throws -> Void) rethrows {
        setenv("GUTS_DEBUG_SHA1_COLLISIONS", ids.map(\.hex).joined(separator: ","), 1)
        defer { unsetenv("GUTS_DEBUG_SHA1_COLLISIONS") }
        try body()
    }

    func testObjectStoreRefusesToStoreOrReadCollidingObject() throws {
        guard SHA1DCTests.debugBuild else { throw XCTSkip("the collision stand-in is honoured by debug builds only") }
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/r.git")
        let pdf = try fixture("shattered-2.pdf")
        let id = ObjectID.compute(type: .blob, body: pdf)
        try withCollidingObjects([id]) {
            XCTAssertThrowsError(try ObjectID.checked(type: .blob, body: pdf)) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack)
                XCTAssertTrue("\($0)".contains("SHA-1 collision attack"), "\($0)")
            }
            XCTAssertThrowsError(try repo.writeLoose(type: .blob, body: pdf)) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack)
            }
            XCTAssertFalse(repo.contains(id))
            XCTAssertThrowsError(try PackWriter(directory: base).add(type: .blob, body: pdf)) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack)
            }
            // Written behind its back (as another tool might), it is refused on read
            // and reported by verify.
            try LooseObject.write(type: .blob, body: pdf, path: repo.loosePath(id))
            XCTAssertThrowsError(try repo.read(id)) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack)
            }
            let (problems, summary) = try verify(base + "/r.git")
            XCTAssertFalse(summary.isClean)
            XCTAssertTrue(problems.contains { $0.kind == .sha1Collision && $0.severity == .error && $0.subject == id.hex }, "\(problems)")
        }
        // Without the stand-in the same object is an ordinary blob.
        XCTAssertEqual(try repo.read(id)?.body, pdf)
    }

    func testPackIndexerAndVerifierRejectPackWithCollidingObject() throws {
        guard SHA1DCTests.debugBuild else { throw XCTSkip("the collision stand-in is honoured by debug builds only") }
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/r.git")
        var crafter = PackCrafter()
        let honest = try crafter.addObject(.blob, Array("an honest blob\n".utf8))
        let colliding = try crafter.addObject(.blob, try fixture("shattered-1.pdf"))
        try writeFile(base + "/in.pack", bytes: crafter.finish().pack)
        try crafter.install(in: base + "/r.git")
        repo.reloadPacks()
        try withCollidingObjects([colliding]) {
            // As a peer would send it: the indexer refuses the pack.
            XCTAssertThrowsError(try PackIndexer.index(packPath: base + "/in.pack")) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack, "\($0)")
            }
            // Installed in a repository: reads refuse it, the honest blob reads, verify reports it.
            XCTAssertThrowsError(try repo.read(colliding)) {
                XCTAssertEqual(($0 as? GitError)?.kind, .collisionAttack)
            }
            XCTAssertEqual(try repo.read(honest)?.body, Array("an honest blob\n".utf8))
            let (problems, _) = try verify(base + "/r.git")
            XCTAssertEqual(problems.filter { $0.severity == .error }.map(\.kind), [.sha1Collision], "\(problems)")
        }
        XCTAssertNoThrow(try PackIndexer.index(packPath: base + "/in.pack"))
    }
}

/// Hands `data` to `body` in pieces of uneven sizes (1, then each next size
/// `size * factor % modulus + 1`), as a stream would arrive.
private func forEachPiece(of data: [UInt8], factor: Int, modulus: Int, _ body: (ArraySlice<UInt8>) -> Void) {
    var at = 0
    var step = 1
    while at < data.count {
        let n = min(step, data.count - at)
        body(data[at..<(at + n)])
        at += n
        step = step * factor % modulus + 1
    }
}
