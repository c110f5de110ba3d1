import Foundation
import XCTest
@testable import GutsGit

/// Consolidating packs (`PackMaintenance`): the union of objects in one pack, deltas
/// kept, readable by us and by git, and safe against crashes and damaged input.
final class PackMaintenanceTests: XCTestCase {
    /// A repository whose history lies in `batches` packs (each from `git repack -d`,
    /// deltas within it), plus a few loose objects. Returns the git directory.
    func makePackedRepository(batches: Int, loose: Int = 3) throws -> String {
        let work = try makeHistoryRepository(self, commits: 4)
        try git(["repack", "-q", "-a", "-d"], in: work)
        var lines: [String] = []
        for b in 0..<batches - 1 {
            for c in 0..<4 {
                for k in 0..<30 { lines.append("batch \(b) commit \(c) line \(k) " + String(repeating: "xyz", count: (b + c + k) % 9)) }
                try writeFile(work + "/grow.txt", lines.joined(separator: "\n") + "\n")
                try writeFile(work + "/b\(b).txt", "batch \(b) \(c)\n")
                try git(["add", "-A"], in: work)
                try git(["commit", "-q", "-m", "batch \(b) commit \(c)"], in: work, date: 1_650_000_000 + b * 1000 + c)
            }
            try git(["repack", "-q", "-d"], in: work)
        }
        for i in 0..<loose {
            try writeFile(work + "/loose\(i).txt", "loose \(i)\n")
        }
        if loose > 0 {
            try git(["add", "-A"], in: work)
            try git(["commit", "-q", "-m", "loose"], in: work, date: 1_660_000_000)
        }
        return work + "/.git"
    }

    func packFiles(_ gitDir: String, _ ext: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects/pack")) ?? []).filter { $0.hasSuffix(ext) }.sorted()
    }

    func allObjectNames(_ gitDir: String) throws -> Set<String> {
        let r = try git(["--git-dir", gitDir, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"], in: gitDir)
        return Set(r.text.split(separator: "\n").map(String.init))
    }

    func assertGitAccepts(_ gitDir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fsck = try git(["--git-dir", gitDir, "fsck", "--full", "--strict", "--no-dangling"], in: gitDir, check: false)
        XCTAssertEqual(fsck.status, 0, fsck.stderr, file: file, line: line)
        for idx in packFiles(gitDir, ".idx") {
            let v = try git(["verify-pack", gitDir + "/objects/pack/" + idx], in: gitDir, check: false)
            XCTAssertEqual(v.status, 0, v.stderr, file: file, line: line)
        }
    }

    func testConsolidatingPacksKeepsTheUnionAndTheDeltas() throws {
        let gitDir = try makePackedRepository(batches: 6)
        let before = try allObjectNames(gitDir)
        let oldPacks = packFiles(gitDir, ".pack")
        XCTAssertEqual(oldPacks.count, 6)
        let contents = try catFileAll(gitDir)
        let packBytes = oldPacks.map { FileManager.default.size(gitDir + "/objects/pack/" + $0) }.reduce(0, +)
        let repo = try Repository.open(gitDir)
        // A reader that opened the old packs before, and keeps them open throughout.
        let early = try Repository.open(gitDir)
        XCTAssertEqual(early.packs.count, 6)
        XCTAssertTrue(PackMaintenance.needed(repo, maxPacks: 5))
        XCTAssertFalse(PackMaintenance.needed(repo, maxPacks: 6))
        XCTAssertFalse(PackMaintenance.needed(repo, maxPacks: 0), "0: never")

        let result = try PackMaintenance.consolidate(repo)
        XCTAssertEqual(result.packsRemoved, 6)
        XCTAssertGreaterThan(result.looseRemoved, 3, "the loose commit, trees and blobs")
        XCTAssertEqual(result.objects, before.count)
        XCTAssertGreaterThan(result.deltas, 20, "stored deltas stay deltas")
        XCTAssertEqual(packFiles(gitDir, ".pack").count, 1)
        XCTAssertEqual(packFiles(gitDir, ".idx").count, 1)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects/pack").contains { $0.hasPrefix("tmp") })
        let loose = try FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects").filter { $0.count == 2 }
        XCTAssertEqual(loose, [], "the loose objects were folded in")
        // Exactly the union, each object as git reads it, through our reader too.
        XCTAssertEqual(try allObjectNames(gitDir), before)
        let fresh = try Repository.open(gitDir)
        XCTAssertEqual(fresh.packs.count, 1)
        XCTAssertEqual(fresh.packs[0].count, before.count)
        for (id, object) in contents {
            let ours = try XCTUnwrap(fresh.read(id))
            XCTAssertEqual(ours.type, object.type)
            XCTAssertEqual(ours.body, object.body)
        }
        try assertGitAccepts(gitDir)
        let (problems, summary) = try verify(gitDir)
        XCTAssertEqual(problems.filter { $0.severity == .error }.map(\.line), [])
        XCTAssertEqual(summary.packs, 1)
        // Deltas kept: no larger than the packs it replaces (plus the loose objects).
        let newBytes = FileManager.default.size(try XCTUnwrap(result.packPath))
        XCTAssertEqual(newBytes, result.bytesAfter)
        XCTAssertLessThan(newBytes, packBytes + packBytes / 50 + 4096, "\(newBytes) against \(packBytes) in \(oldPacks.count) packs")
        // The new pack stores deltas as OFS_DELTA.
        let pack = try readBytes(try XCTUnwrap(result.packPath))
        let kinds = TransferTests.entryKinds(pack: pack, index: fresh.packs[0].index)
        XCTAssertEqual(kinds.filter { $0 == PackEntryKind.ofsDelta }.count, result.deltas)
        // The early reader still reads every object from the packs it had open.
        for id in contents.keys.prefix(200) { XCTAssertNotNil(try early.read(id)) }

        // Nothing more to do.
        let again = try PackMaintenance.consolidate(try Repository.open(gitDir))
        XCTAssertNil(again.packPath)
        XCTAssertEqual(packFiles(gitDir, ".pack").count, 1)
    }

    /// Kills midway, simulated: every state a crash can leave reads correctly, passes
    /// git fsck, and the next consolidation finishes the job.
    func testCrashLeftoversLeaveAValidRepository() throws {
        let gitDir = try makePackedRepository(batches: 4, loose: 0)
        let before = try allObjectNames(gitDir)
        let packDir = gitDir + "/objects/pack"
        let old = packFiles(gitDir, ".pack")

        // Consolidate a copy, to have the new pack at hand.
        let copy = try makeTempDirectory(self, "copy") + "/repo.git"
        try git(["clone", "-q", "--bare", "--no-local", gitDir, copy], in: gitDir)
        try FileManager.default.removeItem(atPath: copy + "/objects/pack")
        try FileManager.default.copyItem(atPath: packDir, toPath: copy + "/objects/pack")
        let done = try PackMaintenance.consolidate(try Repository.open(copy))
        let newPack = try XCTUnwrap(done.packPath)
        let newName = (newPack as NSString).lastPathComponent

        // 1. Killed while writing: a half-written temporary pack.
        let half = try readBytes(newPack)
        try writeFile(packDir + "/tmp_pack_AbC123", bytes: Array(half.prefix(half.count / 2)))
        try assertGitAccepts(gitDir)
        // 2. Killed after the new pack and index were in place, before the old ones went.
        try FileManager.default.copyItem(atPath: newPack, toPath: packDir + "/" + newName)
        try FileManager.default.copyItem(atPath: String(newPack.dropLast(5)) + ".idx", toPath: packDir + "/" + String(newName.dropLast(5)) + ".idx")
        try assertGitAccepts(gitDir)
        // 3. Killed between removing an old .idx and its .pack.
        try FileManager.default.removeItem(atPath: packDir + "/" + String(old[0].dropLast(5)) + ".idx")
        try assertGitAccepts(gitDir)
        XCTAssertEqual(try allObjectNames(gitDir), before)
        let repo = try Repository.open(gitDir)
        for name in before { XCTAssertNotNil(try repo.read(try XCTUnwrap(ObjectID(hex: name)))) }
        let (problems, _) = try verify(gitDir)
        XCTAssertEqual(problems.filter { $0.severity == .error }.map(\.line), [])

        // Young leftovers may belong to a running process: kept.
        _ = try PackMaintenance.consolidate(try Repository.open(gitDir))
        XCTAssertTrue(FileManager.default.fileExists(atPath: packDir + "/tmp_pack_AbC123"))
        // Old ones are removed, and the job finishes: one pack, the same objects.
        let result = try PackMaintenance.consolidate(try Repository.open(gitDir), leftoverAge: 0)
        XCTAssertEqual(result.leftoversRemoved, 2, "the temporary pack and the pack without index")
        let listing = try FileManager.default.contentsOfDirectory(atPath: packDir).sorted()
        XCTAssertEqual(listing.count, 2, "\(listing)")
        XCTAssertEqual(listing.map { String($0.split(separator: ".")[0]) }.count, 2)
        XCTAssertEqual(Set(listing.map { String($0.split(separator: ".")[0]) }).count, 1, "one pack and its index: \(listing)")
        XCTAssertEqual(try allObjectNames(gitDir), before)
        try assertGitAccepts(gitDir)
    }

    /// A stored entry damaged on disk (its CRC-32 no longer matches its index) stops
    /// the consolidation before anything is replaced: the damage is not copied into a
    /// new pack with a fresh checksum, and no old pack is lost.
    func testDamagedStoredEntryStopsConsolidationAndChangesNothing() throws {
        let gitDir = try makePackedRepository(batches: 3, loose: 0)
        let packDir = gitDir + "/objects/pack"
        let repo = try Repository.open(gitDir)
        let victim = try XCTUnwrap(repo.packs.max { $0.count < $1.count })
        // Flip one byte in the middle of some entry's data.
        let offsets = (0..<victim.count).compactMap { victim.index.offset(at: $0) }.sorted()
        let target = offsets[offsets.count / 2] + 6
        var bytes = try readBytes(victim.packPath)
        bytes[target] ^= 0x40
        chmod(victim.packPath, 0o644)
        try writeFile(victim.packPath, bytes: bytes)
        let listing = try FileManager.default.contentsOfDirectory(atPath: packDir).sorted()

        XCTAssertThrowsError(try PackMaintenance.consolidate(try Repository.open(gitDir))) { error in
            XCTAssertEqual((error as? GitError)?.kind, .corrupt, "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: packDir).sorted(), listing,
                       "no pack removed, no temporary file left")
    }
}

extension FileManager {
    func size(_ path: String) -> Int {
        ((try? attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }
}
