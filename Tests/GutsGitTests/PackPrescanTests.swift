import Foundation
import XCTest
@testable import GutsGit
import GutsSupport

/// Locating a pack's entries while it arrives (`PackPrescan`): the same entries and
/// CRCs as the indexer's own scan, whatever the pieces the pack comes in; and on bad
/// data it gives up, so the indexer reports the problem as before.
final class PackPrescanTests: XCTestCase {
    func packBytes() throws -> [UInt8] {
        let work = try makeHistoryRepository(self, commits: 12)
        try git(["repack", "-q", "-a", "-d", "--depth=20", "--window=20"], in: work)
        let dir = work + "/.git/objects/pack"
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".pack") })
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
    }

    /// Writes `bytes` to a new file in pieces cut by `rng`, telling `scan` after each.
    func feed(_ bytes: [UInt8], to path: String, rng: inout SplitMix64, final: Bool = true) -> PackPrescan {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        defer { close(fd) }
        let scan = PackPrescan(path: path, limits: .default)
        var at = 0
        while at < bytes.count {
            let n = min(bytes.count - at, 1 + Int(rng.next() % 3000))
            _ = bytes[at..<(at + n)].withUnsafeBytes { Files.writeAll(fd, $0) }
            at += n
            scan.advance(to: at)
        }
        if final { scan.finish(total: bytes.count) }
        return scan
    }

    func testSameEntriesAsTheIndexerInAnyPieces() throws {
        let bytes = try packBytes()
        let dir = NSTemporaryDirectory() + "prescan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let seed: UInt64 = 0x5CA2_0001
        var rng = SplitMix64(seed: seed)
        let plainPath = dir + "/plain.pack"
        try Data(bytes).write(to: URL(fileURLWithPath: plainPath))
        let plain = try PackIndexer.index(packPath: plainPath, outputDirectory: dir + "/plain")
        let plainIndex = try Data(contentsOf: URL(fileURLWithPath: plain.indexPath))
        for round in 0..<5 {
            let path = dir + "/in-\(round).pack"
            let scan = feed(bytes, to: path, rng: &rng)
            let result = try XCTUnwrap(scan.result(), "round \(round), seed \(seed)")
            XCTAssertTrue(result.trailerMatches)
            XCTAssertEqual(result.entries.count, result.declared)
            XCTAssertEqual(result.packBytes, bytes.count)
            let indexed = try PackIndexer.index(packPath: path, outputDirectory: dir + "/out-\(round)", prescan: result)
            XCTAssertEqual(indexed.checksum, plain.checksum)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: indexed.indexPath)), plainIndex, "round \(round), seed \(seed)")
        }
    }

    func testBadDataGivesUpAndTheIndexerReportsIt() throws {
        let good = try packBytes()
        let dir = NSTemporaryDirectory() + "prescan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 0x5CA2_0002)
        // A flipped byte in an entry, in the trailer; garbage after the trailer; a
        // truncated pack.
        var flipped = good
        flipped[good.count / 2] ^= 0x55
        var trailer = good
        trailer[good.count - 1] ^= 1
        let cases: [(String, [UInt8])] = [("flipped", flipped), ("trailer", trailer), ("garbage", good + [1, 2, 3]),
                                          ("truncated", Array(good.prefix(good.count - 100)))]
        for (name, bytes) in cases {
            let path = dir + "/\(name).pack"
            let scan = feed(bytes, to: path, rng: &rng)
            let result = scan.result()
            if let result {
                XCTAssertFalse(result.trailerMatches && result.packBytes == bytes.count && result.entries.count == result.declared,
                               "\(name): accepted")
            }
            XCTAssertThrowsError(try PackIndexer.index(packPath: path, outputDirectory: dir + "/out-\(name)", prescan: result), name)
        }
        // Cancelled half way: no result, and nothing hangs.
        let path = dir + "/cancelled.pack"
        let scan = feed(Array(good.prefix(good.count / 2)), to: path, rng: &rng, final: false)
        scan.cancel()
        XCTAssertNil(scan.result())
    }

    /// The scan's inflation stays within the budget of the bytes in so far, and the
    /// indexer charges it: a budget too small for the pack still fails.
    func testPrescanIsChargedToTheBudget() throws {
        let bytes = try packBytes()
        let dir = NSTemporaryDirectory() + "prescan-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = SplitMix64(seed: 0x5CA2_0003)
        let path = dir + "/in.pack"
        let result = try XCTUnwrap(feed(bytes, to: path, rng: &rng).result())
        XCTAssertGreaterThan(result.inflated, 0)
        var limits = ObjectLimits.default
        limits.workFactor = 1
        limits.workAllowance = 0
        let budget = WorkBudget(limits: limits, inputBytes: result.inflated / 2)
        XCTAssertThrowsError(try PackIndexer.index(packPath: path, outputDirectory: dir + "/out", limits: limits, budget: budget,
                                                   prescan: result)) { error in
            XCTAssertEqual((error as? GitError)?.limit, .inflatedBytes, "\(error)")
        }
    }
}
