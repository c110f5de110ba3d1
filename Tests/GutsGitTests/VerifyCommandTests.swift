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
}
