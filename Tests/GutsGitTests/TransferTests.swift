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
        XCTAssertEqual(Set(try result.objects.map(\.id)), Set(objects))
        XCTAssertEqual(result.appendedBases, 0, "the stream is self-contained")
    }

    /// Entry types by offset, read from the pack at each offset its index lists.
    static func entryKinds(pack: [UInt8], index: PackIndex) -> [UInt8] {
        (0..<index.count).compactMap { index.offset(at: $0) }.map { (pack[$0] >> 4) & 7 }
    }

    /// Streams `objects` of `repo` in small chunks and returns the pack.
    static func stream(_ repo: Repository, _ objects: [ObjectID], offsetDeltas: Bool) throws -> (PackStream, [UInt8]) {
        let stream = PackStream(repository: repo, objects: objects, offsetDeltas: offsetDeltas)
        var pack: [UInt8] = []
        while let chunk = try stream.nextChunk(maxBytes: 1000) { pack += chunk }
        return (stream, pack)
    }

    /// To a receiver that takes them, every reused delta goes as an OFS_DELTA, its base
    /// moved ahead of it when the walk listed it later; git and our indexer accept the
    /// pack, keep the OFS_DELTA entries, and it is as small as the stored pack. To
    /// anyone else the same objects go as REF_DELTA, as before.
    func testPackStreamSendsOffsetDeltasOnlyWhenAsked() throws {
        let work = try makeHistoryRepository(self, commits: 40)
        try git(["repack", "-adf", "--depth=50", "-q"], in: work)
        let repo = try Repository.open(work)
        let stored = try XCTUnwrap(repo.packs.first)
        let tips = try repo.listRefs().map(\.id)
        // Reversed: most deltas now come before their bases in the list.
        let objects = try ObjectWalk(store: repo).objects(reachableFrom: tips).objects.reversed().map { $0 }

        let (ofs, ofsPack) = try Self.stream(repo, objects, offsetDeltas: true)
        XCTAssertGreaterThan(ofs.reusedDeltas, 10)
        XCTAssertEqual(ofs.offsetDeltaCount, ofs.reusedDeltas, "every reused delta is an OFS_DELTA")
        XCTAssertEqual(ofs.reusedObjects, objects.count, "everything was reused")
        let (ref, refPack) = try Self.stream(repo, objects, offsetDeltas: false)
        XCTAssertEqual(ref.offsetDeltaCount, 0)
        XCTAssertEqual(ref.reusedDeltas, ofs.reusedDeltas)
        XCTAssertLessThan(ofsPack.count, refPack.count - 15 * ofs.reusedDeltas, "about 18 bytes saved per delta")
        // The same entries as the stored pack: the size differs by the offsets' lengths only.
        let storedSize = stored.pack.count
        XCTAssertLessThan(abs(ofsPack.count - storedSize), storedSize / 100, "\(ofsPack.count) against \(storedSize) stored")

        for (pack, kind, other) in [(ofsPack, PackEntryKind.ofsDelta, PackEntryKind.refDelta),
                                    (refPack, PackEntryKind.refDelta, PackEntryKind.ofsDelta)] {
            let dir = try makeTempDirectory(self, "stream")
            try writeFile(dir + "/incoming.pack", bytes: pack)
            let indexed = try git(["index-pack", "--strict", dir + "/incoming.pack"], in: dir)
            XCTAssertEqual(indexed.status, 0, indexed.stderr)
            let verified = try git(["verify-pack", dir + "/incoming.idx"], in: dir)
            XCTAssertEqual(verified.status, 0, verified.stderr)
            // Our indexer keeps the pack as it came.
            let result = try PackIndexer.index(packPath: dir + "/incoming.pack", outputDirectory: dir + "/ours")
            XCTAssertEqual(Set(try result.objects.map(\.id)), Set(objects))
            XCTAssertEqual(try readBytes(result.packPath), pack)
            let reader = try PackReader(packPath: result.packPath, indexPath: result.indexPath)
            let kinds = Self.entryKinds(pack: pack, index: reader.index)
            XCTAssertEqual(kinds.filter { $0 == kind }.count, ofs.reusedDeltas)
            XCTAssertFalse(kinds.contains(other))
            let ours = try git(["verify-pack", result.indexPath], in: dir)
            XCTAssertEqual(ours.status, 0, ours.stderr)
        }
    }

    /// An increment: stored deltas whose base the receiver has (below its haves) go as
    /// thin REF_DELTA entries instead of whole objects; our indexer completes the pack
    /// from the receiver's objects and git accepts it with --fix-thin. The server here
    /// stores a push as git does between two gcs: new objects as deltas on old ones.
    func testPackStreamSendsThinDeltasAgainstWhatTheReceiverHas() throws {
        let work = try makeHistoryRepository(self, commits: 40)
        let oldHex = try git(["rev-parse", "main~6"], in: work).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let root = try makeTempDirectory(self, "thin")
        let server = root + "/server.git", receiver = root + "/receiver.git"
        for bare in [server, receiver] {
            try git(["init", "-q", "--bare", bare], in: root)
            try git(["push", "-q", bare, "\(oldHex):refs/heads/main"], in: work)
        }
        try git(["--git-dir", server, "repack", "-q", "-adf"], in: root)
        try git(["--git-dir", server, "config", "receive.unpackLimit", "1"], in: root)
        try git(["push", "-q", server, "main:refs/heads/main"], in: work)
        let repo = try Repository.open(server)
        XCTAssertEqual(repo.packs.count, 2, "the old history and the push")
        let new = try XCTUnwrap(repo.resolveRef("refs/heads/main"))
        let old = try XCTUnwrap(ObjectID(hex: oldHex))
        let walk = try ObjectWalk(store: repo).objects(reachableFrom: [new], excluding: [old])
        XCTAssertFalse(walk.excluded.isEmpty)
        let thin = PackStream(repository: repo, objects: walk.objects, offsetDeltas: true, thinBases: walk.excluded)
        var thinPack: [UInt8] = []
        while let chunk = try thin.nextChunk(maxBytes: 1000) { thinPack += chunk }
        let (whole, wholePack) = try Self.stream(repo, walk.objects, offsetDeltas: true)
        XCTAssertGreaterThan(thin.thinDeltaCount, 0, "big.txt grows by deltas against what the receiver has")
        XCTAssertEqual(whole.thinDeltaCount, 0)
        XCTAssertLessThan(thinPack.count, wholePack.count)

        let dir = try makeTempDirectory(self, "thin-in")
        try writeFile(dir + "/incoming.pack", bytes: thinPack)
        let result = try PackIndexer.index(packPath: dir + "/incoming.pack", outputDirectory: dir + "/out",
                                           baseStore: try Repository.open(receiver))
        XCTAssertGreaterThan(result.appendedBases, 0)
        XCTAssertTrue(Set(try result.objects.map(\.id)).isSuperset(of: walk.objects))
        let verified = try git(["verify-pack", result.indexPath], in: dir)
        XCTAssertEqual(verified.status, 0, verified.stderr)
        let fixed = try git(["--git-dir", receiver, "index-pack", "--strict", "--fix-thin", "--stdin"], in: dir,
                            input: Data(thinPack))
        XCTAssertEqual(fixed.status, 0, fixed.stderr)
    }

    /// The bytes of an OFS_DELTA's header and distance, as guts-protocol(7) shows them.
    func testOffsetDeltaEncodingGolden() {
        XCTAssertEqual(PackWriter.entryHeader(kind: PackEntryKind.ofsDelta, size: 12) + PackWriter.offsetEncoding(300),
                       [0x6C, 0x81, 0x2C])
        XCTAssertEqual(PackWriter.entryHeader(kind: PackEntryKind.refDelta, size: 12), [0x7C])
        XCTAssertEqual(PackWriter.offsetEncoding(1), [0x01])
        XCTAssertEqual(PackWriter.offsetEncoding(127), [0x7F])
        XCTAssertEqual(PackWriter.offsetEncoding(128), [0x80, 0x00])
        XCTAssertEqual(PackWriter.offsetEncoding(16511), [0xFF, 0x7F])
        XCTAssertEqual(PackWriter.offsetEncoding(16512), [0x80, 0x80, 0x00])
        // Each decodes back with the pack reader's rule.
        for distance in [1, 127, 128, 300, 16511, 16512, 1 << 20, (1 << 31) + 5] {
            let bytes = PackWriter.offsetEncoding(distance)
            var value = Int(bytes[0] & 0x7F)
            for b in bytes.dropFirst() { value = ((value + 1) << 7) | Int(b & 0x7F) }
            XCTAssertEqual(value, distance)
        }
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
