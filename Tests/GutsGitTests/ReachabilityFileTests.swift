import Foundation
import XCTest
@testable import GutsGit
import GutsSupport

/// The reachability file (`ReachabilityFile`, `pack-<sha>.reach`): what a full walk
/// found, read back only when every byte is right for the pack it sits beside.
final class ReachabilityFileTests: XCTestCase {
    /// A repository in one pack, its pack, the walk from all its ref tips.
    func makePacked() throws -> (gitDir: String, repo: Repository, pack: PackReader, tips: [ObjectID], walked: [ObjectID]) {
        let work = try makeHistoryRepository(self, commits: 6)
        try git(["tag", "-a", "-m", "a tag", "v1", "HEAD~2"], in: work)
        try git(["repack", "-q", "-a", "-d"], in: work)
        let gitDir = work + "/.git"
        let repo = try Repository.open(gitDir)
        XCTAssertEqual(repo.packs.count, 1)
        let pack = try XCTUnwrap(repo.packs.first)
        let tips = try repo.listRefs().filter { $0.symbolicTarget == nil }.map(\.id)
        let walked = try ObjectWalk(store: repo).objects(reachableFrom: tips).objects
        return (gitDir, repo, pack, tips, walked)
    }

    func testRoundTripAndPackOrder() throws {
        let r = try makePacked()
        let file = try XCTUnwrap(ReachabilityFile.from(walked: r.walked, tips: r.tips, pack: r.pack))
        XCTAssertEqual(file.tips, ReachabilityFile.normalize(r.tips))
        XCTAssertEqual(file.reachable.cardinality, Set(r.walked).count)
        try file.write(for: r.pack)
        let loaded = try XCTUnwrap(ReachabilityFile.load(for: r.pack))
        XCTAssertEqual(loaded, file)
        let objects = try loaded.objects(in: r.pack)
        XCTAssertEqual(Set(objects), Set(r.walked))
        let offsets = objects.map { r.pack.offset(of: $0) ?? -1 }
        XCTAssertEqual(offsets, offsets.sorted(), "objects come in pack order")
        // Tips given in another order, or twice, are the same tips.
        XCTAssertEqual(ReachabilityFile.normalize(r.tips.reversed() + r.tips), file.tips)
    }

    func testEveryDamageIsRejected() throws {
        let r = try makePacked()
        let file = try XCTUnwrap(ReachabilityFile.from(walked: r.walked, tips: r.tips, pack: r.pack))
        let good = file.encode()
        let checksum = r.pack.checksumBytes
        XCTAssertNoThrow(try ReachabilityFile.decode(good, packChecksum: checksum, objectCount: r.pack.count))
        // Seeded random single-byte damage and truncations: always refused.
        var rng = SplitMix64(seed: 0x5EED_0013)
        for _ in 0..<300 {
            var bad = good
            let at = Int(rng.next() % UInt64(bad.count))
            bad[at] ^= UInt8(1 + rng.next() % 255)
            XCTAssertThrowsError(try ReachabilityFile.decode(bad, packChecksum: checksum, objectCount: r.pack.count), "byte \(at) (seed 0x5EED0013)")
        }
        for cut in [0, 1, 35, good.count / 2, good.count - 1] {
            XCTAssertThrowsError(try ReachabilityFile.decode(Array(good.prefix(cut)), packChecksum: checksum, objectCount: r.pack.count))
        }
        XCTAssertThrowsError(try ReachabilityFile.decode(good + [0], packChecksum: checksum, objectCount: r.pack.count))
        // Another pack, another count.
        var other = checksum
        other[0] ^= 1
        XCTAssertThrowsError(try ReachabilityFile.decode(good, packChecksum: other, objectCount: r.pack.count))
        XCTAssertThrowsError(try ReachabilityFile.decode(good, packChecksum: checksum, objectCount: r.pack.count + 1))
    }

    /// Well-formed files (checksum recomputed) that still say something impossible.
    func testConsistentButWrongFilesAreRejected() throws {
        let r = try makePacked()
        let path = ReachabilityFile.path(forPack: r.pack.packPath)
        XCTAssertTrue(path.hasSuffix(".reach"))
        // A tip that is not marked reachable.
        let tip = ReachabilityFile.normalize(r.tips)[0]
        var set = PositionSet(count: r.pack.count)
        for id in r.walked where id != tip { _ = set.insert(try XCTUnwrap(r.pack.position(of: id))) }
        try ReachabilityFile(packChecksum: r.pack.checksumBytes, objectCount: r.pack.count, tips: r.tips, reachable: set).write(for: r.pack)
        var problems: [String] = []
        XCTAssertNil(ReachabilityFile.load(for: r.pack) { problems.append($0) })
        XCTAssertTrue(problems.first?.contains("not marked") ?? false, "\(problems)")
        // A tip the pack does not hold.
        let stranger = try XCTUnwrap(ObjectID(hex: String(repeating: "ab", count: 20)))
        let full = try XCTUnwrap(ReachabilityFile.from(walked: r.walked, tips: r.tips, pack: r.pack))
        try ReachabilityFile(packChecksum: full.packChecksum, objectCount: full.objectCount, tips: r.tips + [stranger],
                             reachable: full.reachable).write(for: r.pack)
        XCTAssertNil(ReachabilityFile.load(for: r.pack))
        // Bits past the last object.
        var words = full.reachable.words
        let count = r.pack.count
        if count % 64 != 0 {
            words[words.count - 1] |= 1 << 63
            let bad = ReachabilityFile(packChecksum: full.packChecksum, objectCount: count, tips: r.tips, reachable: PositionSet(words: words))
            XCTAssertThrowsError(try ReachabilityFile.decode(bad.encode(), packChecksum: full.packChecksum, objectCount: count))
        }
        // Unsorted tips (written by hand: the initializer sorts).
        if full.tips.count >= 2 {
            var bytes = full.encode()
            let first = ReachabilityFile.headerSize
            let a = Array(bytes[first..<(first + 20)]), b = Array(bytes[(first + 20)..<(first + 40)])
            bytes.replaceSubrange(first..<(first + 40), with: b + a)
            bytes.removeLast(20)
            bytes += SHA1.hash(bytes)
            XCTAssertThrowsError(try ReachabilityFile.decode(bytes, packChecksum: full.packChecksum, objectCount: count))
        }
        // Nothing at all, or garbage: nil, never a crash.
        Files.remove(path)
        XCTAssertNil(ReachabilityFile.load(for: r.pack))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        XCTAssertNil(ReachabilityFile.load(for: r.pack))
    }

    /// A walk that reaches an object outside the pack cannot be recorded.
    func testWalkOutsideThePackIsNotRecorded() throws {
        let r = try makePacked()
        let loose = try r.repo.writeLoose(type: .blob, body: Array("not in the pack\n".utf8))
        XCTAssertNil(ReachabilityFile.from(walked: r.walked + [loose], tips: r.tips, pack: r.pack))
    }

    /// Consolidation removes the replaced packs' files, and orphans are leftovers.
    func testMaintenanceRemovesReachabilityFiles() throws {
        let r = try makePacked()
        try XCTUnwrap(ReachabilityFile.from(walked: r.walked, tips: r.tips, pack: r.pack)).write(for: r.pack)
        let path = ReachabilityFile.path(forPack: r.pack.packPath)
        XCTAssertTrue(Files.exists(path))
        _ = try r.repo.writeLoose(type: .blob, body: Array("loose\n".utf8))
        _ = try PackMaintenance.consolidate(r.repo)
        XCTAssertFalse(Files.exists(path), "the replaced pack's reachability file is removed with it")
        let orphan = r.repo.objectsDirectory + "/pack/pack-" + String(repeating: "0", count: 40) + ReachabilityFile.suffix
        try Data([0]).write(to: URL(fileURLWithPath: orphan))
        XCTAssertEqual(PackMaintenance.removeLeftovers(r.repo, olderThan: 0), 1)
        XCTAssertFalse(Files.exists(orphan))
    }

    /// Objects as `git rev-list --objects` lists them for `args`.
    func revListObjects(_ args: [String], in work: String) throws -> Set<ObjectID> {
        let out = try git(["rev-list", "--objects"] + args, in: work).text
        return Set(out.split(separator: "\n").compactMap { ObjectID(hex: String($0.prefix(40))) })
    }

    /// Walks stop at what a reachability file marks (`ClosedObjects`): the same objects
    /// as without the marks for new history on top of the recorded tips, a missing new
    /// object is still found, a server only uses a file whose tips the haves cover, and
    /// a link into a marked object must still name its type.
    func testClosedObjectsStopTheWalkAndKeepTypes() throws {
        let r = try makePacked()
        let work = (r.gitDir as NSString).deletingLastPathComponent
        try XCTUnwrap(ReachabilityFile.from(walked: r.walked, tips: r.tips, pack: r.pack)).write(for: r.pack)
        let closed = ClosedObjects.load(r.repo.packs)
        XCTAssertFalse(closed.isEmpty)
        for t in r.tips { XCTAssertTrue(closed.contains(t)) }
        let unique = ReachabilityFile.normalize(r.tips)
        XCTAssertGreaterThan(unique.count, 1)
        XCTAssertFalse(ClosedObjects.load(r.repo.packs, coveredBy: Set(unique)).isEmpty)
        XCTAssertTrue(ClosedObjects.load(r.repo.packs, coveredBy: Set(unique.dropFirst())).isEmpty,
                      "a file with a tip the receiver did not name is not used by a server")

        // New history on top, loose: a changed file deep down, a new directory, a merge.
        try writeFile(work + "/dir1/sub/file0.txt", "changed\n")
        try writeFile(work + "/new/dir/new.txt", "new\n")
        try git(["add", "-A"], in: work)
        try git(["commit", "-q", "-m", "on top"], in: work, date: 1_700_000_000)
        try git(["checkout", "-q", "-b", "other", "HEAD~1"], in: work)
        try writeFile(work + "/other.txt", "other\n")
        try git(["add", "-A"], in: work)
        try git(["commit", "-q", "-m", "other"], in: work, date: 1_700_000_060)
        try git(["checkout", "-q", "main"], in: work)
        try git(["merge", "-q", "--no-ff", "-m", "merge other", "other"], in: work, date: 1_700_000_120)
        let repo = try Repository.open(r.gitDir)
        let tip = try XCTUnwrap(try repo.resolveRef("refs/heads/main"))
        let marked = ClosedObjects.load(repo.packs)
        let expected = try revListObjects([tip.hex, "--not"] + r.tips.map(\.hex), in: work)
        let plain = try ObjectWalk(store: repo).objects(reachableFrom: [tip], excluding: r.tips)
        let stopping = try ObjectWalk(store: repo, closed: marked).objects(reachableFrom: [tip], excluding: r.tips)
        XCTAssertEqual(Set(plain.objects), expected)
        XCTAssertEqual(Set(stopping.objects), expected)
        for id in stopping.objects { XCTAssertFalse(marked.contains(id)) }
        // Without haves at all, the marks alone stop it.
        XCTAssertEqual(Set(try ObjectWalk(store: repo, closed: marked).objects(reachableFrom: [tip]).objects), expected)
        XCTAssertEqual(try ObjectWalk(store: repo, closed: marked).missingObjects(reachableFrom: [tip], excluding: r.tips), [])

        // A new object gone missing is still found.
        let newBlob = try XCTUnwrap(ObjectID(hex: try git(["rev-parse", "HEAD:new/dir/new.txt"], in: work).text
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let loose = r.gitDir + "/objects/" + newBlob.hex.prefix(2) + "/" + newBlob.hex.dropFirst(2)
        try FileManager.default.removeItem(atPath: loose)
        XCTAssertEqual(try ObjectWalk(store: try Repository.open(r.gitDir), closed: marked)
            .missingObjects(reachableFrom: [tip], excluding: r.tips), [newBlob])

        // A tree naming a marked blob as a subtree, in a commit on a marked parent.
        let blob = try XCTUnwrap(ObjectID(hex: try git(["rev-parse", "\(r.tips[0].hex)^{commit}:big.txt"], in: work).text
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertTrue(marked.contains(blob))
        let tree = Data("40000 evil\0".utf8) + Data(blob.bytes)
        let evilTree = try git(["hash-object", "--literally", "-t", "tree", "-w", "--stdin"], in: work, input: tree).text
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let parent = try git(["rev-parse", "\(r.tips[0].hex)^{commit}"], in: work).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let evil = try XCTUnwrap(ObjectID(hex: try git(["commit-tree", evilTree, "-p", parent, "-m", "evil"], in: work).text
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let again = try Repository.open(r.gitDir)
        XCTAssertThrowsError(try ObjectWalk(store: again, closed: marked).missingObjects(reachableFrom: [evil], excluding: r.tips)) { error in
            XCTAssertTrue("\(error)".contains("expected a tree"), "\(error)")
        }
        // And a commit naming a marked tree as its parent.
        let markedTree = try XCTUnwrap(ObjectID(hex: try git(["rev-parse", "\(parent)^{tree}"], in: work).text
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let body = "tree \(markedTree.hex)\nparent \(markedTree.hex)\nauthor A <a@b> 1700000000 +0000\ncommitter A <a@b> 1700000000 +0000\n\nbad parent\n"
        let badParent = try XCTUnwrap(ObjectID(hex: try git(["hash-object", "--literally", "-t", "commit", "-w", "--stdin"], in: work,
                                                             input: Data(body.utf8)).text.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertThrowsError(try ObjectWalk(store: try Repository.open(r.gitDir), closed: marked)
            .missingObjects(reachableFrom: [badParent], excluding: r.tips)) { error in
            XCTAssertTrue("\(error)".contains("expected a commit"), "\(error)")
        }
    }
}
