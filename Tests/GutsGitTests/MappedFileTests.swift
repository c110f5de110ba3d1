import Foundation
import GutsSupport
import XCTest
@testable import GutsGit

/// Releasing a mapping's resident pages (the indexer, verifier and pack readers do it
/// as they go, to keep large packs from staying resident) never changes what is read.
final class MappedFileTests: XCTestCase {
    func testReleasedPagesReadBackUnchanged() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SeededGenerator(seed: seed)
        let dir = NSTemporaryDirectory() + "guts-mapped-\(getpid())-\(seed)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = (0..<(3 << 20) + 123).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let path = dir + "/data"
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let map = try MappedFile(path: path)
        map.releaseInterval = 64 << 10
        let buffer = map.buffer
        // Forward in uneven slices, then at random, releasing all along.
        var at = 0
        while at < bytes.count {
            let n = min(bytes.count - at, Int.random(in: 1...40_000, using: &rng))
            XCTAssertTrue(buffer[at..<(at + n)].elementsEqual(bytes[at..<(at + n)]), "seed \(seed), offset \(at)")
            map.touched(n)
            at += n
        }
        for _ in 0..<2000 {
            let start = Int.random(in: 0..<bytes.count, using: &rng)
            let n = min(bytes.count - start, Int.random(in: 1...5000, using: &rng))
            XCTAssertEqual(buffer[start], bytes[start], "seed \(seed)")
            XCTAssertTrue(buffer[start..<(start + n)].elementsEqual(bytes[start..<(start + n)]), "seed \(seed), offset \(start)")
            map.touched(n)
        }
        XCTAssertGreaterThan(map.releases, 40, "seed \(seed)")
        map.releaseResidentPages()
        XCTAssertTrue(buffer.elementsEqual(bytes), "seed \(seed)")
    }
}

/// SplitMix64, so a failing case is reproducible from the printed seed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
