import Foundation
import XCTest
@testable import GutsGit

final class InteropTests: XCTestCase {
    /// Every object git knows is read identically by guts, in each storage form.
    func checkAllObjectsMatchGit(_ dir: String, expectPacked: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let repo = try Repository.open(dir)
        let expected = try catFileAll(repo.gitDirectory)
        XCTAssertGreaterThan(expected.count, 50, file: file, line: line)
        for (id, obj) in expected {
            XCTAssertTrue(repo.contains(id), "\(id) missing", file: file, line: line)
            let mine = try repo.read(id)
            XCTAssertEqual(mine, obj, "\(id) differs", file: file, line: line)
            switch obj.type {
            case .tree: XCTAssertNoThrow(try Tree(parsing: obj.body), file: file, line: line)
            case .commit: XCTAssertNoThrow(try Commit(parsing: obj.body), file: file, line: line)
            case .tag: XCTAssertNoThrow(try Tag(parsing: obj.body), file: file, line: line)
            case .blob: break
            }
        }
        if expectPacked { XCTAssertFalse(repo.packs.isEmpty, file: file, line: line) }
        let (problems, summary) = try verify(dir)
        XCTAssertEqual(problems, [], file: file, line: line)
        XCTAssertEqual(summary.objects, expected.count, file: file, line: line)
    }

    func testLooseGcAndDeepDeltaRepositories() throws {
        let dir = try makeHistoryRepository(self, commits: 40)
        try checkAllObjectsMatchGit(dir, expectPacked: false)
        try git(["gc", "-q"], in: dir)
        try checkAllObjectsMatchGit(dir, expectPacked: true)
        try git(["repack", "-adfq", "--depth=50", "--window=50"], in: dir)
        let vp = try git(["verify-pack", "-v"] + (try FileManager.default.contentsOfDirectory(atPath: dir + "/.git/objects/pack")
            .filter { $0.hasSuffix(".idx") }.map { dir + "/.git/objects/pack/" + $0 }), in: dir)
        XCTAssertTrue(vp.text.contains("chain length = 2"), "expected delta chains")
        try checkAllObjectsMatchGit(dir, expectPacked: true)
    }

    func testParsedObjectsRoundTrip() throws {
        let dir = try makeHistoryRepository(self, commits: 5)
        let repo = try Repository.open(dir)
        for (id, obj) in try catFileAll(repo.gitDirectory) {
            switch obj.type {
            case .tree:
                let t = try Tree(parsing: obj.body)
                XCTAssertEqual(t.serialized(), obj.body, "tree \(id)")
            case .commit:
                let c = try Commit(parsing: obj.body)
                XCTAssertEqual(c.serialized(), obj.body, "commit \(id)")
                XCTAssertEqual(c.author.email, "author@example.com")
            case .tag:
                let t = try Tag(parsing: obj.body)
                XCTAssertEqual(t.serialized(), obj.body)
                XCTAssertEqual(t.name, "v1.0")
                XCTAssertEqual(t.type, .commit)
            case .blob: break
            }
        }
    }

    func testLooseObjectsWrittenByGutsPassGitFsck() throws {
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/new.git")
        let blob = try repo.writeLoose(type: .blob, body: Array("hello\n".utf8))
        XCTAssertEqual(blob.hex, "ce013625030ba8dba906f756967f9e9ca394464a")
        let big = try repo.writeLoose(type: .blob, body: (0..<200_000).map { UInt8(truncatingIfNeeded: $0 * 13) })
        let tree = try repo.writeLoose(type: .tree, body: Tree(entries: [
            TreeEntry(mode: 0o100644, name: Array("hello.txt".utf8), id: blob),
            TreeEntry(mode: 0o100755, name: Array("big".utf8), id: big),
        ]).serialized())
        let sig = Signature(name: "G Uts", email: "g@example.com", time: 1_700_000_000, timezone: "-0130")
        let commit = try repo.writeLoose(type: .commit, body: Commit(tree: tree, parents: [], author: sig, committer: sig,
                                                                    message: Array("first\n".utf8)).serialized())
        // Writing again is a no-op.
        XCTAssertEqual(try repo.writeLoose(type: .blob, body: Array("hello\n".utf8)), blob)
        try repo.updateRef("refs/heads/main", to: commit, expectedOld: .absent)
        let tag = try repo.writeLoose(type: .tag, body: Tag(object: commit, type: .commit, name: "v1", tagger: sig,
                                                            message: Array("tag\n".utf8)).serialized())
        try repo.updateRef("refs/tags/v1", to: tag)
        let fsck = try git(["--git-dir", base + "/new.git", "fsck", "--full", "--strict"], in: base)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        XCTAssertEqual(try git(["--git-dir", base + "/new.git", "rev-parse", "HEAD"], in: base).text, commit.hex + "\n")
        XCTAssertEqual(try git(["--git-dir", base + "/new.git", "cat-file", "-p", "HEAD:hello.txt"], in: base).text, "hello\n")
        let (problems, _) = try verify(base + "/new.git")
        XCTAssertEqual(problems, [])
    }

    func testPacksWrittenByGutsPassGitVerifyPack() throws {
        let dir = try makeHistoryRepository(self, commits: 10)
        let source = try Repository.open(dir)
        let all = try catFileAll(source.gitDirectory)
        let base = try makeTempDirectory(self)
        let target = try Repository.create(bare: base + "/packed.git")
        for threshold in [100, 1 << 31] {
            let writer = try PackWriter(directory: target.objectsDirectory + "/pack", expectedCount: threshold == 100 ? nil : all.count)
            writer.largeOffsetThreshold = threshold
            for (id, obj) in all.sorted(by: { $0.key < $1.key }) {
                try writer.add(type: obj.type, body: obj.body, id: id)
            }
            let result = try writer.finish()
            let vp = try git(["verify-pack", "-v", result.indexPath], in: base)
            XCTAssertEqual(vp.status, 0, vp.stderr)
            // The reader handles the 64-bit offset table too.
            let reader = try PackReader(packPath: result.packPath, indexPath: result.indexPath)
            XCTAssertEqual(reader.index.largeCount > 0, threshold == 100)
            for (id, obj) in all { XCTAssertEqual(try reader.read(id), obj) }
            if threshold == 100 { try FileManager.default.removeItem(atPath: result.indexPath); try FileManager.default.removeItem(atPath: result.packPath) }
        }
        let head = try XCTUnwrap(try source.resolveRef("refs/heads/main"))
        try target.updateRef("refs/heads/main", to: head)
        target.reloadPacks()
        let fsck = try git(["--git-dir", base + "/packed.git", "fsck", "--full"], in: base)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        XCTAssertEqual(try verify(base + "/packed.git").0, [])
    }

    func testPackWriterDeltas() throws {
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/d.git")
        let v1 = Array(String(repeating: "line of text\n", count: 200).utf8)
        let v2 = v1 + Array("one more line\n".utf8)
        let v3 = Array("prefix\n".utf8) + v2
        // v2 = copy all of v1 + insert; v3 = insert + copy all of v2.
        func copy(_ off: Int, _ size: Int) -> [UInt8] {
            [0x80 | 0x01 | 0x02 | 0x10 | 0x20, UInt8(off & 0xFF), UInt8(off >> 8), UInt8(size & 0xFF), UInt8(size >> 8)]
        }
        let extra = Array("one more line\n".utf8)
        let d2 = deltaVarint(v1.count) + deltaVarint(v2.count) + copy(0, v1.count) + [UInt8(extra.count)] + extra
        let pre = Array("prefix\n".utf8)
        let d3 = deltaVarint(v2.count) + deltaVarint(v3.count) + [UInt8(pre.count)] + pre + copy(0, v2.count)
        let id1 = ObjectID.compute(type: .blob, body: v1)
        let id2 = ObjectID.compute(type: .blob, body: v2)
        let id3 = ObjectID.compute(type: .blob, body: v3)
        let tree = Tree(entries: [TreeEntry(mode: 0o100644, name: Array("a".utf8), id: id1),
                                  TreeEntry(mode: 0o100644, name: Array("b".utf8), id: id2),
                                  TreeEntry(mode: 0o100644, name: Array("c".utf8), id: id3)]).serialized()
        let sig = Signature(name: "T", email: "t@e", time: 1, timezone: "+0000")
        let commitBody = Commit(tree: ObjectID.compute(type: .tree, body: tree), parents: [], author: sig, committer: sig,
                                message: Array("d\n".utf8)).serialized()
        let writer = try PackWriter(directory: repo.objectsDirectory + "/pack")
        let commit = try writer.add(type: .commit, body: commitBody)
        try writer.add(type: .tree, body: tree)
        try writer.add(type: .blob, body: v1)
        try writer.addDelta(id: id2, base: id1, delta: d2)
        try writer.addDelta(id: id3, base: id2, delta: d3)
        let result = try writer.finish()
        let vp = try git(["verify-pack", "-v", result.indexPath], in: base)
        XCTAssertEqual(vp.status, 0, vp.stderr)
        XCTAssertTrue(vp.text.contains("chain length = 2: 1 object"), vp.text)
        try repo.updateRef("refs/heads/main", to: commit)
        repo.reloadPacks()
        XCTAssertEqual(try repo.read(id3)?.body, v3)
        XCTAssertEqual(try verify(base + "/d.git").0, [])
        let fsck = try git(["--git-dir", base + "/d.git", "fsck", "--full"], in: base, check: false)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        // A REF_DELTA against an object outside the pack makes a thin pack.
        let thin = try PackWriter(directory: base + "/thin")
        try thin.addDelta(id: id2, base: id1, delta: d2)
        let thinResult = try thin.finish()
        XCTAssertThrowsError(try PackIndexer.index(packPath: thinResult.packPath, outputDirectory: base + "/q"))
        let fixed = try PackIndexer.index(packPath: thinResult.packPath, outputDirectory: base + "/q", baseStore: repo)
        XCTAssertEqual(fixed.appendedBases, 1)
        XCTAssertEqual(Set(try fixed.objects.map(\.id)), [id1, id2])
    }

    func testReadsIndexWithLargeOffsetsMadeByGit() throws {
        let dir = try makeHistoryRepository(self, commits: 8)
        try git(["repack", "-adq"], in: dir)
        let packDir = dir + "/.git/objects/pack"
        let pack = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") })
        let idx = packDir + "/" + pack.dropLast(5) + ".idx"
        try FileManager.default.removeItem(atPath: idx)
        // Every offset above 32 goes to the 64-bit table.
        try git(["index-pack", "--index-version=2,32", packDir + "/" + pack], in: dir)
        let repo = try Repository.open(dir)
        XCTAssertGreaterThan(try XCTUnwrap(repo.packs.first).index.largeCount, 10)
        for (id, obj) in try catFileAll(repo.gitDirectory) { XCTAssertEqual(try repo.read(id), obj) }
        XCTAssertEqual(try verify(dir).0, [])
    }

    func testNonBareWorktreeGitFileAndBareClone() throws {
        let dir = try makeHistoryRepository(self, commits: 3)
        let base = (dir as NSString).deletingLastPathComponent
        try git(["clone", "-q", "--bare", dir, base + "/bare.git"], in: base)
        XCTAssertEqual(try Repository.open(base + "/bare.git").gitDirectory, base + "/bare.git")
        try git(["worktree", "add", "-q", base + "/linked", "side"], in: dir)
        let linked = try Repository.open(base + "/linked")
        XCTAssertEqual(linked.commonDirectory, dir + "/.git/worktrees/linked/../..")
        XCTAssertEqual(try linked.head(), .symbolic("refs/heads/side", id: try linked.resolveRef("refs/heads/side")))
        XCTAssertEqual(try verify(base + "/linked").0, [])
        XCTAssertThrowsError(try Repository.open(base)) { XCTAssertEqual(($0 as? GitError)?.kind, .notARepository) }
    }

    func testShallowClone() throws {
        let dir = try makeHistoryRepository(self, commits: 10)
        let base = (dir as NSString).deletingLastPathComponent
        try git(["clone", "-q", "--bare", "--depth", "3", "file://" + dir, base + "/shallow.git"], in: base)
        let repo = try Repository.open(base + "/shallow.git")
        XCTAssertFalse(repo.shallowCommits().isEmpty)
        XCTAssertEqual(try verify(base + "/shallow.git").0, [])
        let head = try XCTUnwrap(try repo.resolveRef("HEAD"))
        let walk = ObjectWalk(store: repo, shallow: repo.shallowCommits())
        XCTAssertEqual(try walk.missingObjects(reachableFrom: [head]), [])
        XCTAssertEqual(Set(try walk.objects(reachableFrom: [head]).objects),
                       Set(try git(["--git-dir", base + "/shallow.git", "rev-list", "--objects", "HEAD"], in: base).text
                            .split(separator: "\n").compactMap { ObjectID(hex: $0.prefix(40)) }))
    }

    func testCreatedBareRepositoryIsAcceptedByGit() throws {
        let base = try makeTempDirectory(self)
        try Repository.create(bare: base + "/r.git")
        XCTAssertEqual(try git(["--git-dir", base + "/r.git", "rev-parse", "--is-bare-repository"], in: base).text, "true\n")
        XCTAssertEqual(try git(["--git-dir", base + "/r.git", "symbolic-ref", "HEAD"], in: base).text, "refs/heads/main\n")
        let fsck = try git(["--git-dir", base + "/r.git", "fsck", "--full"], in: base, check: false)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        // Pushing into it works.
        let dir = try makeHistoryRepository(self, commits: 2, in: base)
        try git(["push", "-q", base + "/r.git", "main"], in: dir)
        XCTAssertEqual(try verify(base + "/r.git").0, [])
    }

    func testPackIndexerIndexesGitPacksAndCompletesThinPacks() throws {
        let dir = try makeHistoryRepository(self, commits: 12)
        let base = (dir as NSString).deletingLastPathComponent
        // A full pack of everything.
        let revs = try git(["rev-list", "--objects", "--all"], in: dir).stdout
        let full = try git(["pack-objects", "--stdout", "-q"], in: dir, input: revs).stdout
        try FileManager.default.createDirectory(atPath: base + "/q", withIntermediateDirectories: true)
        try full.write(to: URL(fileURLWithPath: base + "/q/in.pack"))
        let result = try PackIndexer.index(packPath: base + "/q/in.pack")
        XCTAssertEqual(result.appendedBases, 0)
        let vp = try git(["verify-pack", result.indexPath], in: base)
        XCTAssertEqual(vp.status, 0, vp.stderr)
        // git's own index of the same pack is byte-identical.
        try git(["index-pack", "-o", base + "/q/git.idx", result.packPath], in: base)
        XCTAssertEqual(try readBytes(base + "/q/git.idx"), try readBytes(result.indexPath))

        // A thin pack: HEAD~5..HEAD against a repository that has only HEAD~5.
        let thin2 = try git(["pack-objects", "--revs", "--stdout", "--thin", "-q"], in: dir, input: Data("HEAD\n^HEAD~5\n".utf8)).stdout
        try git(["clone", "-q", "--bare", "--no-local", dir, base + "/old.git"], in: base)
        let oldHead = try git(["rev-parse", "HEAD~5"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)
        try git(["--git-dir", base + "/old.git", "update-ref", "refs/heads/main", oldHead], in: base)
        try git(["--git-dir", base + "/old.git", "reflog", "expire", "--expire=now", "--all"], in: base)
        try git(["--git-dir", base + "/old.git", "gc", "-q", "--prune=now"], in: base)
        try git(["--git-dir", base + "/old.git", "tag", "-d", "v1.0", "light"], in: base, check: false)
        try git(["--git-dir", base + "/old.git", "update-ref", "-d", "refs/heads/side"], in: base, check: false)
        try git(["--git-dir", base + "/old.git", "gc", "-q", "--prune=now"], in: base)
        let old = try Repository.open(base + "/old.git")
        try FileManager.default.createDirectory(atPath: base + "/q2", withIntermediateDirectories: true)
        try thin2.write(to: URL(fileURLWithPath: base + "/q2/thin.pack"))
        // Without the bases it fails cleanly.
        XCTAssertThrowsError(try PackIndexer.index(packPath: base + "/q2/thin.pack")) {
            XCTAssertEqual(($0 as? GitError)?.kind, .missingBase)
        }
        let completed = try PackIndexer.index(packPath: base + "/q2/thin.pack", baseStore: old)
        XCTAssertGreaterThan(completed.appendedBases, 0)
        let vp2 = try git(["verify-pack", completed.indexPath], in: base)
        XCTAssertEqual(vp2.status, 0, vp2.stderr)
        // Connectivity from the new tip is satisfied by old repository + quarantine.
        let quarantine = try PackReader(packPath: completed.packPath, indexPath: completed.indexPath)
        let head = try XCTUnwrap(ObjectID(hex: try git(["rev-parse", "HEAD"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)))
        let walk = ObjectWalk(store: CombinedStore([old, quarantine]))
        XCTAssertEqual(try walk.missingObjects(reachableFrom: [head], excluding: [ObjectID(hex: oldHead)!]), [])
        XCTAssertFalse(try ObjectWalk(store: old).missingObjects(reachableFrom: [head]).isEmpty)
        // Install and verify the result with git.
        try old.installPack(packPath: completed.packPath, indexPath: completed.indexPath)
        try old.updateRef("refs/heads/main", to: head, expectedOld: .value(ObjectID(hex: oldHead)!))
        let fsck = try git(["--git-dir", base + "/old.git", "fsck", "--full"], in: base, check: false)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
        XCTAssertEqual(try verify(base + "/old.git").0.filter { $0.severity == .error }, [])
    }
}
