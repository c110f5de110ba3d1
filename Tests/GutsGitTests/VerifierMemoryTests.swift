import Foundation
import XCTest
@testable import GutsGit

/// The verifier keeps tree links only up to `linkMemoryBudget` and reads trees again
/// past it (as git fsck always does): the verdict must not depend on the budget.
final class VerifierMemoryTests: XCTestCase {
    func testTreesReadAgainPastTheLinkBudgetGiveTheSameVerdict() throws {
        let dir = try makeHistoryRepository(self, commits: 12)
        try git(["repack", "-adq"], in: dir)
        var tight = VerifyOptions()
        tight.linkMemoryBudget = 0
        let (keptProblems, kept) = try verify(dir)
        let (droppedProblems, dropped) = try verify(dir, options: tight)
        XCTAssertTrue(kept.isClean, "\(keptProblems)")
        XCTAssertTrue(dropped.isClean, "\(droppedProblems)")
        XCTAssertEqual(dropped.objects, kept.objects)
        XCTAssertEqual(dropped.reachable, kept.reachable)
        XCTAssertGreaterThan(dropped.reachable, 3 * 12, "commits, trees and blobs were all reached")
    }

    func testMissingBlobFoundThroughATreeReadAgain() throws {
        let dir = try makeHistoryRepository(self, commits: 6)
        // Loose objects: remove the file of one blob the head tree names.
        let listing = String(decoding: try git(["ls-tree", "-r", "HEAD"], in: dir).stdout, as: UTF8.self)
        guard let line = listing.split(separator: "\n").first(where: { $0.contains(" blob ") }),
              let hex = line.split(separator: " ").dropFirst(2).first?.split(separator: "\t").first,
              let blob = ObjectID(hex: hex) else {
            return XCTFail("no blob in \(listing)")
        }
        let repo = try Repository.open(dir)
        try FileManager.default.removeItem(atPath: repo.loosePath(blob))
        var tight = VerifyOptions()
        tight.linkMemoryBudget = 0
        let (problems, summary) = try verify(dir, options: tight)
        XCTAssertFalse(summary.isClean)
        XCTAssertTrue(problems.contains { $0.kind == .missingObject && $0.subject == blob.hex }, "\(problems)")
    }
}
