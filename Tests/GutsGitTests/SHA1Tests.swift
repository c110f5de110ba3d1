import Foundation
import GutsSupport
import XCTest
@testable import GutsGit

final class SHA1Tests: XCTestCase {
    func hex(_ s: String) -> String { Hex.encode(SHA1.hash(Array(s.utf8))) }

    func testFIPSVectors() {
        XCTAssertEqual(hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
                       "a49b2446a02c645bf419f995b67091253a04a259")
        let million = [UInt8](repeating: 0x61, count: 1_000_000)
        XCTAssertEqual(Hex.encode(SHA1.hash(million)), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    func testStreamingMatchesOneShotForEverySplit() {
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let expected = SHA1.hash(data)
        for split in [0, 1, 55, 56, 63, 64, 65, 127, 128, 200, 300] {
            var h = SHA1()
            h.update(Array(data[0..<split]))
            h.update(Array(data[split...]))
            XCTAssertEqual(h.finalize(), expected, "split \(split)")
        }
        var h = SHA1()
        for b in data { h.update([b]) }
        XCTAssertEqual(h.finalize(), expected)
    }

    func testBlobIDsMatchGitHashObject() throws {
        let dir = try makeTempDirectory(self)
        for size in [0, 1, 55, 56, 63, 64, 65, 1 << 20] {
            let body = (0..<size).map { UInt8(truncatingIfNeeded: ($0 * 7919) >> 3) }
            let path = dir + "/blob\(size)"
            try writeFile(path, bytes: body)
            let r = try git(["hash-object", path], in: dir)
            let expected = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertEqual(ObjectID.compute(type: .blob, body: body).hex, expected, "size \(size)")
        }
    }

    func testObjectIDParsingAndOrder() {
        let a = ObjectID(hex: "00000000000000000000000000000000000000ff")!
        let b = ObjectID(hex: "0000000000000000000000000000000000000100")!
        XCTAssertLessThan(a, b)
        XCTAssertEqual(a.hex, "00000000000000000000000000000000000000ff")
        XCTAssertEqual(ObjectID(hex: "ABCDEF0123456789ABCDEF0123456789ABCDEF01")?.hex, "abcdef0123456789abcdef0123456789abcdef01")
        XCTAssertNil(ObjectID(hex: "xyz"))
        XCTAssertNil(ObjectID(hex: String(repeating: "g", count: 40)))
        XCTAssertNil(ObjectID(hex: String(repeating: "a", count: 41)))
        let long = ObjectID(hex: String(repeating: "ab", count: 32))
        XCTAssertEqual(long?.algorithm, .sha256)
        XCTAssertEqual(long?.bytes.count, 32)
        XCTAssertNotEqual(long, ObjectID(hex: String(repeating: "ab", count: 20)))
        XCTAssertEqual(ObjectID(bytes: a.bytes), a)
        XCTAssertEqual(a.firstByte, 0)
        XCTAssertTrue(ObjectID.zero.isZero)
    }
}
