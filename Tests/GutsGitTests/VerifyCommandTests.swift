import Foundation
import XCTest
@testable import GutsGit

/// Runs the built `guts` binary and compares `guts objects verify` with `git fsck`.
final class VerifyCommandTests: XCTestCase {
    /// `<.build>/debug/guts`, next to the test bundle.
    func gutsBinary() throws -> String {
        var candidates: [String] = []
        let bundle = Bundle.main.bundlePath
        candidates.append((bundle as NSString).deletingLastPathComponent + "/guts")
        candidates.append(((bundle as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent + "/guts")
        if let arg0 = CommandLine.arguments.first {
            var dir = (arg0 as NSString).deletingLastPathComponent
            for _ in 0..<4 {
                candidates.append(dir + "/guts")
                dir = (dir as NSString).deletingLastPathComponent
            }
        }
        for c in candidates where FileManager.default.isExecutableFile(atPath: c) { return c }
        throw XCTSkip("guts binary not found near \(bundle)")
    }

    func guts(_ args: [String], home: String) throws -> ProcessResult {
        try runProcess(try gutsBinary(), args, environment: ["GUTS_HOME": home])
    }

    func fsck(_ path: String) throws -> Int32 {
        try runProcess("/usr/bin/git", ["fsck", "--full"], cwd: path).status
    }

    func testAgreesWithGitFsckOnCleanAndCorruptedCopies() throws {
        let dir = try makeHistoryRepository(self, commits: 12)
        let base = (dir as NSString).deletingLastPathComponent
        let home = base + "/home"
        // Loose, then packed with deltas.
        let r = try guts(["objects", "verify", dir], home: home)
        XCTAssertEqual(r.status, 0, r.text + r.stderr)
        XCTAssertEqual(r.text, "")
        XCTAssertTrue(r.stderr.hasPrefix("ok: 0 errors"), r.stderr)
        XCTAssertEqual(try fsck(dir), 0)
        try git(["repack", "-adfq", "--depth=50"], in: dir)
        XCTAssertEqual(try guts(["objects", "verify", dir], home: home).status, 0)

        // Corrupted copies: each must make both tools fail.
        func corruptCopy(_ name: String, _ damage: (String) throws -> Void) throws {
            let copy = base + "/" + name
            try FileManager.default.copyItem(atPath: dir, toPath: copy)
            try damage(copy + "/.git")
            let mine = try guts(["objects", "verify", copy], home: home)
            XCTAssertEqual(mine.status, 6, "\(name): \(mine.text)\(mine.stderr)")
            XCTAssertFalse(mine.text.isEmpty, name)
            XCTAssertNotEqual(try fsck(copy), 0, "\(name): git fsck passed")
        }
        let packDir = dir + "/.git/objects/pack"
        let stem = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") }).dropLast(5)
        try corruptCopy("flip-pack") { g in
            let p = g + "/objects/pack/" + stem + ".pack"
            var b = try readBytes(p)
            b[b.count / 2] ^= 0x10
            chmod(p, 0o644)
            try writeFile(p, bytes: b)
        }
        try corruptCopy("truncate-pack") { g in
            let p = g + "/objects/pack/" + stem + ".pack"
            let b = try readBytes(p)
            chmod(p, 0o644)
            try writeFile(p, bytes: Array(b[0..<(b.count * 2 / 3)]))
        }
        try corruptCopy("missing-ref-target") { g in
            try writeFile(g + "/refs/heads/broken", String(repeating: "ab", count: 20) + "\n")
        }
        try corruptCopy("bad-idx") { g in
            let p = g + "/objects/pack/" + stem + ".idx"
            var b = try readBytes(p)
            b[8 + 1024 + 5] ^= 0x01
            chmod(p, 0o644)
            try writeFile(p, bytes: b)
        }
    }

    func testJSONOutputNamesAndExitCodes() throws {
        let base = try makeTempDirectory(self)
        let home = base + "/home"
        let repo = try Repository.create(bare: home + "/repos/alice/proj.git")
        let blob = try repo.writeLoose(type: .blob, body: Array("x".utf8))
        try repo.updateRef("refs/heads/main", to: ObjectID.compute(type: .commit, body: Array("missing".utf8)))
        _ = blob
        // By name, from the state directory.
        let r = try guts(["objects", "verify", "--json", "alice/proj"], home: home)
        XCTAssertEqual(r.status, 6, r.stderr)
        let lines = r.text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        let problem = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(problem["type"] as? String, "problem")
        XCTAssertEqual(problem["kind"] as? String, "missing-object")
        XCTAssertEqual(problem["location"] as? String, "refs/heads/main")
        XCTAssertEqual(problem["severity"] as? String, "error")
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any])
        XCTAssertEqual(summary["type"] as? String, "summary")
        XCTAssertEqual(summary["clean"] as? Bool, false)
        XCTAssertEqual(summary["errors"] as? Int, 1)
        XCTAssertEqual(summary["objects"] as? Int, 1)
        // Text form.
        let t = try guts(["objects", "verify", home + "/repos/alice/proj.git"], home: home)
        XCTAssertEqual(t.status, 6)
        XCTAssertTrue(t.text.hasSuffix(" missing-object refs/heads/main: refs/heads/main points to a missing object\n"), t.text)
        // Not a repository; unknown names; bad names; usage.
        XCTAssertEqual(try guts(["objects", "verify", base], home: home).status, 3)
        XCTAssertEqual(try guts(["objects", "verify", "bob/none"], home: home).status, 3)
        XCTAssertEqual(try guts(["objects", "verify", "a/b/c"], home: home).status, 3)
        XCTAssertEqual(try guts(["objects", "verify", "a", "b"], home: home).status, 2)
        XCTAssertEqual(try guts(["objects", "verify", "--threads", "0", base], home: home).status, 2)
        XCTAssertEqual(try guts(["objects", "verfy"], home: home).status, 2)
        let help = try guts(["help", "objects", "verify"], home: home)
        XCTAssertTrue(help.text.contains("--no-connectivity"))
    }

    /// `guts objects verify` flags an object whose hashing detects a collision attack,
    /// with the integrity code. No colliding git object is public (the SHAttered PDFs
    /// collide as files, not as blobs), so the debug build's stand-in
    /// `GUTS_DEBUG_SHA1_COLLISIONS` marks a reachable blob as one.
    func testFlagsObjectThatIsHalfOfACollision() throws {
        guard SHA1DCTests.debugBuild else { throw XCTSkip("the collision stand-in is honoured by debug builds only") }
        let dir = try makeHistoryRepository(self, commits: 2)
        let base = (dir as NSString).deletingLastPathComponent
        let home = base + "/home"
        let pdf = try readBytes(SHA1DCTests.fixtures + "/shattered-1.pdf")
        let repo = try Repository.open(dir)
        let id = try repo.writeLoose(type: .blob, body: pdf)
        XCTAssertEqual(id.hex, "ba9aaa145ccd24ef760cf31c74d8f7ca1a2e47b0")
        let tree = try repo.writeLoose(type: .tree, body: Tree(entries: [TreeEntry(mode: 0o100644, name: Array("shattered.pdf".utf8), id: id)]).serialized())
        let sig = Signature(name: "M", email: "m@example.com", time: 1_700_000_000, timezone: "+0000")
        let commit = try repo.writeLoose(type: .commit, body: Commit(tree: tree, parents: [], author: sig, committer: sig, message: Array("pdf\n".utf8)).serialized())
        try repo.updateRef("refs/heads/pdf", to: commit)
        XCTAssertEqual(try guts(["objects", "verify", dir], home: home).status, 0)

        func verify(_ extra: [String]) throws -> ProcessResult {
            try runProcess(try gutsBinary(), ["objects", "verify"] + extra + [dir],
                           environment: ["GUTS_HOME": home, "GUTS_DEBUG_SHA1_COLLISIONS": id.hex])
        }
        let r = try verify(["--json"])
        XCTAssertEqual(r.status, 6, r.text + r.stderr)
        let problems = r.text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["type"] as? String == "problem" }
        XCTAssertEqual(problems.count, 1, r.text)
        XCTAssertEqual(problems.first?["kind"] as? String, "sha1-collision", r.text)
        XCTAssertEqual(problems.first?["subject"] as? String, id.hex, r.text)
        let t = try verify([])
        XCTAssertEqual(t.status, 6)
        XCTAssertTrue(t.text.contains("sha1-collision"), t.text)
        XCTAssertTrue(t.text.contains("SHA-1 collision attack"), t.text)
    }
}
