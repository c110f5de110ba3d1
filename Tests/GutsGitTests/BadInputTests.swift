import Foundation
import GutsSupport
import XCTest
@testable import GutsGit

/// Builds packs entry by entry, including malformed ones.
struct PackCrafter {
    var bytes: [UInt8] = Array("PACK".utf8) + [0, 0, 0, 2, 0, 0, 0, 0]
    var entries: [(id: ObjectID, offset: Int, crc: UInt32)] = []

    /// Appends an entry: header declaring `size` (defaults to the payload length),
    /// base bytes, then zlib of `payload` (or `compressed` verbatim).
    @discardableResult
    mutating func add(kind: UInt8, payload: [UInt8], declaredSize: Int? = nil, base: [UInt8] = [],
                      compressed: [UInt8]? = nil, name: ObjectID) throws -> Int {
        let offset = bytes.count
        var entry = PackWriter.entryHeader(kind: kind, size: declaredSize ?? payload.count)
        entry += base
        entry += try compressed ?? Zlib.deflate(payload, level: 6)
        bytes += entry
        entries.append((name, offset, entry.withUnsafeBytes { Zlib.crc32($0) }))
        return offset
    }

    mutating func addObject(_ type: ObjectType, _ body: [UInt8]) throws -> ObjectID {
        let id = ObjectID.compute(type: type, body: body)
        try add(kind: type.rawValue, payload: body, name: id)
        return id
    }

    /// The finished pack (count and trailer filled in) and its index.
    func finish() -> (pack: [UInt8], index: [UInt8]) {
        var pack = bytes
        let n = UInt32(entries.count).bigEndian
        withUnsafeBytes(of: n) { for k in 0..<4 { pack[8 + k] = $0[k] } }
        let digest = SHA1.hash(pack)
        pack += digest
        return (pack, PackIndexWriter.build(entries: entries, packChecksum: digest))
    }

    /// Writes pack and index into `repo`'s pack directory.
    func install(in gitDir: String, name: String = "pack-crafted") throws {
        let (pack, index) = finish()
        try writeFile(gitDir + "/objects/pack/\(name).pack", bytes: pack)
        try writeFile(gitDir + "/objects/pack/\(name).idx", bytes: index)
    }
}

/// Size varint as in delta headers.
func deltaVarint(_ v: Int) -> [UInt8] {
    var out: [UInt8] = []
    var v = v
    repeat {
        var c = UInt8(v & 0x7F)
        v >>= 7
        if v > 0 { c |= 0x80 }
        out.append(c)
    } while v > 0
    return out
}

/// A delta that replaces the base with `literal` (insert instructions only).
func insertDelta(baseSize: Int, literal: [UInt8], claimedResult: Int? = nil) -> [UInt8] {
    var d = deltaVarint(baseSize) + deltaVarint(claimedResult ?? literal.count)
    var i = 0
    while i < literal.count {
        let n = min(127, literal.count - i)
        d.append(UInt8(n))
        d += literal[i..<(i + n)]
        i += n
    }
    return d
}

final class BadInputTests: XCTestCase {
    /// A bare repository with a main branch, all loose.
    func makeBare() throws -> (String, Repository, ObjectID) {
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/r.git")
        let blob = try repo.writeLoose(type: .blob, body: Array("hello\n".utf8))
        let tree = try repo.writeLoose(type: .tree, body: Tree(entries: [TreeEntry(mode: 0o100644, name: Array("f".utf8), id: blob)]).serialized())
        let sig = Signature(name: "T", email: "t@e", time: 1_700_000_000, timezone: "+0000")
        let commit = try repo.writeLoose(type: .commit, body: Commit(tree: tree, parents: [], author: sig, committer: sig, message: Array("m\n".utf8)).serialized())
        try repo.updateRef("refs/heads/main", to: commit)
        return (base + "/r.git", repo, commit)
    }

    func kinds(_ problems: [Problem]) -> Set<ProblemKind> {
        Set(problems.filter { $0.severity == .error }.map(\.kind))
    }

    func gitFsckFails(_ gitDir: String) throws -> Bool {
        let r = try runProcess("/usr/bin/git", ["--git-dir", gitDir, "fsck", "--full"])
        return r.status != 0
    }

    func testBitFlipInLooseObject() throws {
        let (dir, repo, commit) = try makeBare()
        let path = repo.loosePath(commit)
        var bytes = try readBytes(path)
        chmod(path, 0o644)
        bytes[bytes.count / 2] ^= 0x04
        try writeFile(path, bytes: bytes)
        let (problems, summary) = try verify(dir)
        XCTAssertFalse(summary.isClean)
        XCTAssertFalse(kinds(problems).isDisjoint(with: [.corruptObject, .hashMismatch]), "\(problems)")
        XCTAssertTrue(try gitFsckFails(dir))
        XCTAssertThrowsError(try repo.read(commit))
    }

    func testLooseObjectWithWrongContentForName() throws {
        let (dir, repo, _) = try makeBare()
        let other = ObjectID.compute(type: .blob, body: Array("other".utf8))
        try LooseObject.write(type: .blob, body: Array("not other".utf8), path: repo.loosePath(other))
        let (problems, _) = try verify(dir)
        XCTAssertEqual(problems.filter { $0.kind == .hashMismatch }.map(\.subject), [other.hex])
        XCTAssertThrowsError(try repo.read(other)) { XCTAssertEqual(($0 as? GitError)?.kind, .hashMismatch) }
    }

    func testTruncatedPackAndWrongIndex() throws {
        let dir = try makeHistoryRepository(self, commits: 10)
        try git(["gc", "-q"], in: dir)
        let packDir = dir + "/.git/objects/pack"
        let stem = packDir + "/" + (try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") }!.dropLast(5))
        let base = (dir as NSString).deletingLastPathComponent
        let pristine = base + "/pristine"
        try FileManager.default.copyItem(atPath: dir, toPath: pristine)
        XCTAssertEqual(try verify(pristine).0, [])

        // Truncated pack.
        let pack = try readBytes(stem + ".pack")
        chmod(stem + ".pack", 0o644)
        try writeFile(stem + ".pack", bytes: Array(pack[0..<(pack.count - 300)]))
        var (problems, summary) = try verify(dir)
        XCTAssertFalse(summary.isClean)
        XCTAssertTrue(kinds(problems).contains(.packChecksum) || kinds(problems).contains(.badIndex), "\(problems)")
        XCTAssertTrue(try gitFsckFails(dir + "/.git"))
        // Cut to almost nothing.
        try writeFile(stem + ".pack", bytes: Array(pack[0..<10]))
        (problems, summary) = try verify(dir)
        XCTAssertTrue(kinds(problems).contains(.badPack))
        try writeFile(stem + ".pack", bytes: pack)

        // Index checksum broken.
        let idx = try readBytes(stem + ".idx")
        chmod(stem + ".idx", 0o644)
        var bad = idx
        bad[bad.count - 1] ^= 1
        try writeFile(stem + ".idx", bytes: bad)
        (problems, _) = try verify(dir)
        XCTAssertEqual(kinds(problems), [.indexChecksum])
        XCTAssertTrue(try gitFsckFails(dir + "/.git"))

        // Wrong offset (index checksum recomputed so only the offset is wrong).
        bad = idx
        let n = Int(PackIndex.be32(idx.withUnsafeBytes { $0 }, 8 + 255 * 4))
        let offsetsStart = 8 + 1024 + 24 * n
        bad[offsetsStart + 3] &+= 1
        bad.replaceSubrange((bad.count - 20)..., with: SHA1.hash(Array(bad[0..<(bad.count - 20)])))
        try writeFile(stem + ".idx", bytes: bad)
        (problems, summary) = try verify(dir)
        XCTAssertFalse(summary.isClean)
        XCTAssertFalse(problems.isEmpty)
        XCTAssertTrue(try gitFsckFails(dir + "/.git"))

        // CRC wrong.
        bad = idx
        bad[8 + 1024 + 20 * n] ^= 0xFF
        bad.replaceSubrange((bad.count - 20)..., with: SHA1.hash(Array(bad[0..<(bad.count - 20)])))
        try writeFile(stem + ".idx", bytes: bad)
        (problems, _) = try verify(dir)
        XCTAssertEqual(kinds(problems), [.crcMismatch])

        // Index missing entirely: pack ignored with a warning; objects then missing.
        try FileManager.default.removeItem(atPath: stem + ".idx")
        (problems, _) = try verify(dir)
        XCTAssertTrue(problems.contains { $0.kind == .garbage && $0.severity == .warning })
        XCTAssertTrue(kinds(problems).contains(.missingObject))
    }

    func testDeltaWithMissingBase() throws {
        let (dir, repo, _) = try makeBare()
        var c = PackCrafter()
        let missing = ObjectID.compute(type: .blob, body: Array("absent".utf8))
        let result = Array("new content".utf8)
        try c.add(kind: PackEntryKind.refDelta, payload: insertDelta(baseSize: 6, literal: result), base: missing.bytes,
                  name: ObjectID.compute(type: .blob, body: result))
        try c.install(in: dir)
        let (problems, _) = try verify(dir)
        XCTAssertEqual(kinds(problems), [.missingBase], "\(problems)")
        XCTAssertTrue(try gitFsckFails(dir))
        repo.reloadPacks()
        XCTAssertThrowsError(try repo.read(ObjectID.compute(type: .blob, body: result))) {
            XCTAssertEqual(($0 as? GitError)?.kind, .missingBase)
        }
        try writeFile(dir + "/in.pack", bytes: c.finish().pack)
        XCTAssertThrowsError(try PackIndexer.index(packPath: dir + "/in.pack")) {
            XCTAssertEqual(($0 as? GitError)?.kind, .missingBase)
        }
    }

    func testDeltaCycle() throws {
        let (dir, repo, _) = try makeBare()
        var c = PackCrafter()
        let a = ObjectID.compute(type: .blob, body: Array("aaaa".utf8))
        let b = ObjectID.compute(type: .blob, body: Array("bbbb".utf8))
        try c.add(kind: PackEntryKind.refDelta, payload: insertDelta(baseSize: 4, literal: Array("aaaa".utf8)), base: b.bytes, name: a)
        try c.add(kind: PackEntryKind.refDelta, payload: insertDelta(baseSize: 4, literal: Array("bbbb".utf8)), base: a.bytes, name: b)
        try c.install(in: dir)
        let (problems, _) = try verify(dir)
        XCTAssertEqual(kinds(problems), [.deltaCycle], "\(problems)")
        // Not compared with git fsck here: git 2.39 spends over a minute on this pack.
        repo.reloadPacks()
        XCTAssertThrowsError(try repo.read(a)) { XCTAssertEqual(($0 as? GitError)?.kind, .deltaCycle) }
        try writeFile(dir + "/in.pack", bytes: c.finish().pack)
        XCTAssertThrowsError(try PackIndexer.index(packPath: dir + "/in.pack"))
    }

    func testDeltaClaimingHugeResult() throws {
        let (dir, repo, _) = try makeBare()
        var c = PackCrafter()
        let baseBody = Array("base".utf8)
        let baseID = try c.addObject(.blob, baseBody)
        let baseOffset = c.entries[0].offset
        let huge = insertDelta(baseSize: 4, literal: Array("x".utf8), claimedResult: 1 << 40)
        let name = ObjectID.compute(type: .blob, body: Array("x".utf8))
        let offset = c.bytes.count
        // OFS_DELTA: relative offset encoding of (offset - baseOffset).
        var rel = offset - baseOffset
        var enc = [UInt8(rel & 0x7F)]
        rel >>= 7
        while rel > 0 {
            rel -= 1
            enc.insert(0x80 | UInt8(rel & 0x7F), at: 0)
            rel >>= 7
        }
        try c.add(kind: PackEntryKind.ofsDelta, payload: huge, base: enc, name: name)
        try c.install(in: dir)
        let (problems, _) = try verify(dir)
        XCTAssertEqual(kinds(problems), [.tooLarge], "\(problems)")
        repo.reloadPacks()
        XCTAssertEqual(try repo.read(baseID)?.body, baseBody)
        XCTAssertThrowsError(try repo.read(name)) { XCTAssertEqual(($0 as? GitError)?.kind, .tooLarge) }
        XCTAssertThrowsError(try Delta.apply(base: UnsafeRawBufferPointer(start: nil, count: 0), delta: UnsafeRawBufferPointer(start: nil, count: 0), limit: 10))
    }

    func testZlibBombAndLyingSizes() throws {
        let (dir, repo, _) = try makeBare()
        // 64 MiB of zeros compresses to ~64 KiB; the header claims 100 bytes.
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        let bomb = try Zlib.deflate(zeros, level: 9)
        XCTAssertLessThan(bomb.count, 200_000)
        var c = PackCrafter()
        let fake1 = ObjectID.compute(type: .blob, body: Array("1".utf8))
        let fake2 = ObjectID.compute(type: .blob, body: Array("2".utf8))
        let fake3 = ObjectID.compute(type: .blob, body: Array("3".utf8))
        try c.add(kind: ObjectType.blob.rawValue, payload: [], declaredSize: 100, compressed: bomb, name: fake1)
        // Declared size larger than the data.
        try c.add(kind: ObjectType.blob.rawValue, payload: Array("short".utf8), declaredSize: 1000, name: fake2)
        // Declared size over the limit.
        try c.add(kind: ObjectType.blob.rawValue, payload: Array("x".utf8), declaredSize: 1 << 40, name: fake3)
        try c.install(in: dir)
        // Loose: header says 10 bytes, stream has 64 MiB.
        let looseBomb = try Zlib.deflate(Array("blob 10\0".utf8) + zeros, level: 9)
        let fake4 = ObjectID.compute(type: .blob, body: Array("4".utf8))
        try writeFile(repo.loosePath(fake4), bytes: looseBomb)
        // Loose: header says 1000 bytes, stream has 5.
        let fake5 = ObjectID.compute(type: .blob, body: Array("5".utf8))
        try writeFile(repo.loosePath(fake5), bytes: try Zlib.deflate(Array("blob 1000\0short".utf8)))
        // Loose: size over the limit.
        let fake6 = ObjectID.compute(type: .blob, body: Array("6".utf8))
        try writeFile(repo.loosePath(fake6), bytes: try Zlib.deflate(Array("blob 99999999999\0x".utf8)))

        var limits = ObjectLimits()
        limits.maxObjectSize = 16 << 20
        let start = Instant.now()
        let (problems, _) = try verify(dir, options: VerifyOptions(limits: limits))
        XCTAssertLessThan(Instant.now().seconds(since: start), 5)
        let bySubject = Dictionary(grouping: problems, by: \.subject)
        for fake in [fake1, fake2, fake4, fake5] {
            XCTAssertEqual(bySubject[fake.hex]?.first?.kind, .corruptObject, "\(fake): \(problems)")
        }
        for fake in [fake3, fake6] {
            XCTAssertEqual(bySubject[fake.hex]?.first?.kind, .tooLarge, "\(fake): \(problems)")
        }
        XCTAssertTrue(try gitFsckFails(dir))
        let limited = try Repository.open(dir, limits: limits)
        for fake in [fake1, fake2, fake3, fake4, fake5, fake6] {
            XCTAssertThrowsError(try limited.read(fake), "\(fake)")
        }
    }

    func writeRawLoose(_ repo: Repository, _ type: ObjectType, _ body: [UInt8]) throws -> ObjectID {
        let id = ObjectID.compute(type: type, body: body)
        try LooseObject.write(type: type, body: body, path: repo.loosePath(id))
        return id
    }

    func treeEntry(_ mode: String, _ name: String, _ id: ObjectID) -> [UInt8] {
        Array(mode.utf8) + [0x20] + Array(name.utf8) + [0] + id.bytes
    }

    func testInvalidTreesAndCommitsAreReported() throws {
        let (dir, repo, commit) = try makeBare()
        let blob = ObjectID.compute(type: .blob, body: Array("hello\n".utf8))
        let cases: [(String, [UInt8])] = [
            ("badFilemode", treeEntry("100645", "a", blob)),
            ("treeNotSorted", treeEntry("100644", "b", blob) + treeEntry("100644", "a", blob)),
            ("hasDotdot", treeEntry("100644", "..", blob)),
            ("hasDotgit", treeEntry("40000", ".GIT", blob)),
            ("duplicateEntries", treeEntry("100644", "a", blob) + treeEntry("100644", "a", blob)),
            ("duplicateEntries", treeEntry("100644", "a", blob) + treeEntry("100644", "a-b", blob) + treeEntry("40000", "a", blob)),
            ("emptyName", treeEntry("100644", "", blob)),
            ("fullPathname", treeEntry("100644", "a/b", blob)),
            ("badTree", Array("100644 a".utf8)),
        ]
        var ids: [String: String] = [:]
        for (code, body) in cases {
            ids[try writeRawLoose(repo, .tree, body).hex] = code
            let issues = body.withUnsafeBytes { ObjectChecker.checkTree($0) { _, _, _ in } }
            XCTAssertTrue(issues.contains { $0.code == code && $0.severity == .error }, "\(code): \(issues)")
            XCTAssertThrowsError(try Tree(parsing: body))
        }
        let tree = ObjectID.compute(type: .tree, body: treeEntry("100644", "f", blob))
        let commits: [(String, String)] = [
            ("badDate", "tree \(tree)\nauthor A <a@b> notanumber +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("badTimezone", "tree \(tree)\nauthor A <a@b> 1 +00\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("zeroPaddedDate", "tree \(tree)\nauthor A <a@b> 0123 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("badDateOverflow", "tree \(tree)\nauthor A <a@b> 99999999999999999999999 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("missingEmail", "tree \(tree)\nauthor A a@b 1 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("missingCommitter", "tree \(tree)\nauthor A <a@b> 1 +0000\n\nm\n"),
            ("badTreeSha1", "tree 123\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("badParentSha1", "tree \(tree)\nparent zz\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("multipleAuthors", "tree \(tree)\nauthor A <a@b> 1 +0000\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\n\nm\n"),
            ("unterminatedHeader", "tree \(tree)\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000"),
            ("nulInHeader", "tree \(tree)\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\0\n\nm\n"),
        ]
        for (code, text) in commits {
            ids[try writeRawLoose(repo, .commit, Array(text.utf8)).hex] = code
            let issues = Array(text.utf8).withUnsafeBytes { ObjectChecker.checkCommit($0) { _, _ in } }
            XCTAssertEqual(issues.first?.code, code, text)
            XCTAssertThrowsError(try Commit(parsing: Array(text.utf8)))
        }
        let tags: [(String, String)] = [
            ("missingObject", "type commit\ntag v\ntagger T <t@t> 1 +0000\n\n"),
            ("badType", "object \(commit)\ntype thing\ntag v\ntagger T <t@t> 1 +0000\n\n"),
            ("missingTagEntry", "object \(commit)\ntype commit\ntagger T <t@t> 1 +0000\n\n"),
            ("badEmail", "object \(commit)\ntype commit\ntag v\ntagger T <t@t 1 +0000\n\n"),
        ]
        for (code, text) in tags {
            ids[try writeRawLoose(repo, .tag, Array(text.utf8)).hex] = code
            let issues = Array(text.utf8).withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }
            XCTAssertEqual(issues.first?.code, code, text)
        }
        // Accepted variants: tag without tagger (warning only), commit with extra headers.
        let oldTag = "object \(commit)\ntype commit\ntag v0\n\nold\n"
        XCTAssertEqual(Array(oldTag.utf8).withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }.map(\.severity), [.warning])
        let signed = "tree \(tree)\nparent \(commit)\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 -0130\nencoding UTF-8\ngpgsig -----BEGIN-----\n abc\n -----END-----\n\nmsg\n"
        XCTAssertEqual(Array(signed.utf8).withUnsafeBytes { ObjectChecker.checkCommit($0) { _, _ in } }, [])
        XCTAssertEqual(try Commit(parsing: Array(signed.utf8)).serialized(), Array(signed.utf8))

        let (problems, _) = try verify(dir)
        for (hex, code) in ids {
            XCTAssertTrue(problems.contains { $0.subject == hex && $0.kind == .invalidObject && $0.message.contains(code) },
                          "\(code) not reported: \(problems.filter { $0.subject == hex })")
        }
        XCTAssertTrue(try gitFsckFails(dir))
    }

    func testRefToMissingObjectAndWrongTypes() throws {
        let (dir, repo, commit) = try makeBare()
        XCTAssertEqual(try verify(dir).0, [])
        let ghost = ObjectID.compute(type: .commit, body: Array("ghost".utf8))
        try repo.updateRef("refs/heads/ghost", to: ghost)
        var (problems, _) = try verify(dir)
        XCTAssertEqual(problems.map(\.kind), [.missingObject])
        XCTAssertEqual(problems.first?.location, "refs/heads/ghost")
        XCTAssertTrue(try gitFsckFails(dir))
        try repo.deleteRef("refs/heads/ghost")

        // A commit whose tree is a blob, and a tree naming a missing blob.
        let blob = ObjectID.compute(type: .blob, body: Array("hello\n".utf8))
        let lost = ObjectID.compute(type: .blob, body: Array("lost".utf8))
        let tree = try repo.writeLoose(type: .tree, body: treeEntry("100644", "lost", lost))
        let sig = "A <a@b> 1 +0000"
        let c1 = try repo.writeLoose(type: .commit, body: Array("tree \(blob)\nparent \(commit)\nauthor \(sig)\ncommitter \(sig)\n\nx\n".utf8))
        let c2 = try repo.writeLoose(type: .commit, body: Array("tree \(tree)\nparent \(c1)\nauthor \(sig)\ncommitter \(sig)\n\ny\n".utf8))
        try repo.updateRef("refs/heads/main", to: c2)
        (problems, _) = try verify(dir)
        XCTAssertEqual(Set(problems.map(\.kind)), [.wrongType, .missingObject], "\(problems)")
        XCTAssertEqual(problems.first { $0.kind == .missingObject }?.subject, lost.hex)
        XCTAssertTrue(try gitFsckFails(dir))
    }

    func testMalformedRefsAreReported() throws {
        let (dir, _, _) = try makeBare()
        try writeFile(dir + "/refs/heads/garbage", "not a hash\n")
        var (problems, _) = try verify(dir)
        XCTAssertEqual(problems.map(\.kind), [.badRef])
        try FileManager.default.removeItem(atPath: dir + "/refs/heads/garbage")
        try writeFile(dir + "/packed-refs", "# pack-refs with: peeled\nnonsense line\n")
        (problems, _) = try verify(dir)
        XCTAssertEqual(problems.map(\.kind), [.badRef])
    }

    func testDeltaApplyBounds() throws {
        let base = Array("0123456789".utf8)
        func apply(_ d: [UInt8]) throws -> [UInt8] {
            try base.withUnsafeBytes { b in try d.withUnsafeBytes { try Delta.apply(base: b, delta: $0, limit: 1000) } }
        }
        // Copy 4 bytes from offset 2, insert "xy".
        XCTAssertEqual(try apply([10, 6, 0x91, 2, 4, 2, 0x78, 0x79]), Array("2345xy".utf8))
        XCTAssertThrowsError(try apply([9, 6, 0x91, 2, 4, 2, 0x78, 0x79]))  // wrong base size
        XCTAssertThrowsError(try apply([10, 6, 0x91, 8, 4]))  // copy past base end
        XCTAssertThrowsError(try apply([10, 2, 0x91, 2, 4]))  // writes past result
        XCTAssertThrowsError(try apply([10, 6, 0x91, 2, 4]))  // result short
        XCTAssertThrowsError(try apply([10, 6, 0]))  // reserved opcode
        XCTAssertThrowsError(try apply([10, 6, 5, 0x78]))  // truncated insert
        XCTAssertThrowsError(try apply([10]))  // truncated header
        XCTAssertThrowsError(try apply([10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]))  // too large
    }

    func testPackIndexerRejectsMalformedPacks() throws {
        let base = try makeTempDirectory(self)
        func index(_ bytes: [UInt8]) -> GitError? {
            let path = base + "/p\(bytes.count).pack"
            try? writeFile(path, bytes: bytes)
            do {
                _ = try PackIndexer.index(packPath: path)
                return nil
            } catch {
                return error as? GitError
            }
        }
        var c = PackCrafter()
        _ = try c.addObject(.blob, Array("hello".utf8))
        var (pack, _) = c.finish()
        XCTAssertNotNil(index(Array(pack[0..<(pack.count - 1)])))  // truncated
        XCTAssertNotNil(index(Array("PACK".utf8)))  // tiny
        pack[pack.count - 1] ^= 1
        XCTAssertEqual(index(pack)?.kind, .hashMismatch)  // trailer
        // Header claims 4 billion objects.
        var lying = c.finish().pack
        lying[8] = 0xFF
        XCTAssertNotNil(index(lying))
        // An invalid tree is refused.
        var t = PackCrafter()
        _ = try t.addObject(.tree, treeEntry("100644", "..", ObjectID.zero))
        XCTAssertEqual(index(t.finish().pack)?.kind, .invalidObject)
    }

    /// Continuation lines extend only extra headers (gpgsig, mergetag): git reads a tag's
    /// name, a tagger, an author or a committer from its own line, and fsck checks only
    /// that line. Found by the object-checker fuzz target: a tag name swallowed the next
    /// line, so the tag came out of serialization as another tag.
    func testContinuationLinesDoNotExtendStandardHeaders() throws {
        let object = String(repeating: "a", count: 40)
        let tagText = Array("object \(object)\ntype commit\ntag v1\n 2\ntagger T <t@t> 1 +0000\n\nmsg\n".utf8)
        XCTAssertFalse(tagText.withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }.contains { $0.severity == .error })
        let tag = try Tag(parsing: tagText)
        XCTAssertEqual(tag.name, "v1")
        XCTAssertNil(tag.tagger, "git reads a tagger only right after the tag line")
        XCTAssertEqual(try Tag(parsing: tag.serialized()), tag)

        let tree = String(repeating: "b", count: 40)
        let commitText = Array("tree \(tree)\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 2 +0000\n x\n\nm\n".utf8)
        XCTAssertEqual(commitText.withUnsafeBytes { ObjectChecker.checkCommit($0) { _, _ in } }, [])
        let commit = try Commit(parsing: commitText)
        XCTAssertEqual(commit.committer, Signature(name: "C", email: "c@d", time: 2, timezone: "+0000"))
        XCTAssertEqual(try Commit(parsing: commit.serialized()), commit)
    }

    /// A tagger is only the line right after the tag line, as git reads it: fsck does not
    /// check a later one. Found by the object-checker fuzz target: a tagger with a broken
    /// time zone after a stray line was taken, and the tag then failed fsck once serialized.
    func testTaggerIsOnlyTheLineAfterTheTagLine() throws {
        let object = String(repeating: "a", count: 40)
        let text = Array("object \(object)\ntype commit\ntag v1\nv1\ntagger T <t@t> 1 +00\n\nmsg\n".utf8)
        XCTAssertEqual(text.withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }.map(\.severity), [.warning])
        let tag = try Tag(parsing: text)
        XCTAssertNil(tag.tagger)
        XCTAssertEqual(try Tag(parsing: tag.serialized()), tag)
        // The same after a continuation line of the tag line.
        let continued = Array("object \(object)\ntype commit\ntag v1\n x\ntagger T <t@t> 1 +00\n\nmsg\n".utf8)
        XCTAssertEqual(continued.withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }.map(\.severity), [.warning])
        XCTAssertNil(try Tag(parsing: continued).tagger)
    }
}
