import Foundation
import XCTest
@testable import GutsGit

/// Packs streamed for transfer, and the all-refs transaction a mirror uses.
final class TransferTests: XCTestCase {
    /// Streams every object of a delta-heavy repository in small chunks; stock git and our
    /// indexer both accept the result, and stored entries and deltas are reused.
    func testPackStreamIsAcceptedByGitAndReusesDeltas() throws {
        let work = try makeHistoryRepository(self, commits: 40)
        try git(["repack", "-adf", "--depth=50", "-q"], in: work)
        try writeFile(work + "/loose.txt", "a loose object\n")
        try git(["add", "loose.txt"], in: work)
        try git(["commit", "-q", "-m", "loose"], in: work)
        let repo = try Repository.open(work)
        let tips = try repo.listRefs().map(\.id)
        let objects = try ObjectWalk(store: repo).objects(reachableFrom: tips).objects
        let stream = PackStream(repository: repo, objects: objects)
        var pack: [UInt8] = []
        while let chunk = try stream.nextChunk(maxBytes: 777) {
            XCTAssertLessThanOrEqual(chunk.count, 777)
            pack += chunk
        }
        XCTAssertNil(try stream.nextChunk(maxBytes: 777))
        XCTAssertGreaterThan(stream.reusedDeltas, 10, "stored deltas are reused")
        XCTAssertGreaterThan(stream.compressedObjects, 0, "loose objects are compressed afresh")
        XCTAssertEqual(stream.reusedObjects + stream.compressedObjects, objects.count)

        let dir = try makeTempDirectory(self, "stream")
        let path = dir + "/incoming.pack"
        try writeFile(path, bytes: pack)
        let indexed = try git(["index-pack", "--strict", path], in: dir)
        XCTAssertEqual(indexed.status, 0, indexed.stderr)
        let verified = try git(["verify-pack", dir + "/incoming.idx"], in: dir)
        XCTAssertEqual(verified.status, 0, verified.stderr)

        let ours = try makeTempDirectory(self, "ours")
        try writeFile(ours + "/incoming.pack", bytes: pack)
        let result = try PackIndexer.index(packPath: ours + "/incoming.pack")
        XCTAssertEqual(Set(result.objects.map(\.id)), Set(objects))
        XCTAssertEqual(result.appendedBases, 0, "the stream is self-contained")
    }

    func testEmptyPackStream() throws {
        let work = try makeHistoryRepository(self, commits: 1)
        let stream = PackStream(repository: try Repository.open(work), objects: [])
        var pack: [UInt8] = []
        while let chunk = try stream.nextChunk(maxBytes: 64) { pack += chunk }
        XCTAssertEqual(pack.count, 32, "header and trailer only")
        XCTAssertEqual(Array(pack[0..<12]), Array("PACK".utf8) + [0, 0, 0, 2, 0, 0, 0, 0])
    }

    func testReplaceRefsSwitchesTheWholeSetAndDetectsConcurrentChanges() throws {
        let work = try makeHistoryRepository(self, commits: 3)
        let repo = try Repository.open(work)
        let before = try repo.listRefs()
        let main = try XCTUnwrap(before.first { $0.name == "refs/heads/main" })
        let tag = try XCTUnwrap(before.first { $0.name == "refs/tags/v1.0" })
        try repo.replaceRefs(with: [("refs/heads/mirror", main.id), ("refs/tags/v1.0", tag.id)], expected: before)
        let after = try repo.listRefs()
        XCTAssertEqual(after.map(\.name), ["refs/heads/mirror", "refs/tags/v1.0"])
        let fsck = try git(["fsck", "--full", "--no-dangling"], in: work)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        // The packed-refs file git reads agrees, peeled tag included.
        let shown = try git(["show-ref", "-d"], in: work).text
        XCTAssertTrue(shown.contains("refs/tags/v1.0^{}"), shown)
        XCTAssertTrue(shown.contains("\(main.id.hex) refs/heads/mirror"), shown)

        // A writer that changed refs since `expected` was read makes the transaction refuse.
        XCTAssertThrowsError(try repo.replaceRefs(with: [("refs/heads/x", main.id)], expected: before))
        XCTAssertEqual(try repo.listRefs().map(\.name), ["refs/heads/mirror", "refs/tags/v1.0"])
        // Conflicting names are refused.
        XCTAssertThrowsError(try repo.replaceRefs(with: [("refs/heads/a", main.id), ("refs/heads/a/b", main.id)], expected: after))
    }

    /// An incremental walk reads the new history, not the whole history.
    func testIncrementalWalkCostDoesNotGrowWithHistory() throws {
        let work = try makeHistoryRepository(self, commits: 60)
        let repo = try Repository.open(work)
        let old = try XCTUnwrap(repo.resolveRef("refs/heads/main"))
        try writeFile(work + "/new.txt", "new\n")
        try git(["add", "new.txt"], in: work)
        try git(["commit", "-q", "-m", "new"], in: work, date: 1_700_000_000)
        let new = try XCTUnwrap(repo.resolveRef("refs/heads/main"))
        final class Counting: ObjectStore, @unchecked Sendable {
            let inner: Repository
            var reads = 0
            init(_ inner: Repository) { self.inner = inner }
            func contains(_ id: ObjectID) -> Bool { inner.contains(id) }
            func read(_ id: ObjectID) throws -> GitObject? {
                reads += 1
                return try inner.read(id)
            }
        }
        let store = Counting(repo)
        let result = try ObjectWalk(store: store).objects(reachableFrom: [new], excluding: [old])
        XCTAssertEqual(result.commits, 1)
        XCTAssertEqual(result.blobs, 1)
        let trees = try git(["ls-tree", "-r", "-t", "HEAD"], in: work).text.split(separator: "\n").filter { $0.contains(" tree ") }.count
        // The two commits, their root trees and the trees below them; no history.
        XCTAssertLessThan(store.reads, 2 * (trees + 1) + 10, "read \(store.reads) objects for a one-commit increment")
        let all = try git(["rev-list", "--objects", "\(new.hex)", "^\(old.hex)"], in: work).text.split(separator: "\n").count
        XCTAssertEqual(result.objects.count, all, "same objects as git rev-list --objects")
    }
}
