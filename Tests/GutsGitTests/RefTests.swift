import Foundation
import XCTest
@testable import GutsGit

final class RefTests: XCTestCase {
    /// Names and whether `git check-ref-format` accepts them (without --allow-onelevel).
    static let table: [(String, Bool)] = [
        ("refs/heads/main", true),
        ("refs/heads/feature/x-1.2_y", true),
        ("refs/tags/v1.0", true),
        ("refs/heads/ünïcode", true),
        ("refs/heads/@", true),
        ("refs/heads/a@b", true),
        ("refs/heads/-dash", true),
        ("heads/main", true),
        ("main", false),
        ("HEAD", false),
        ("", false),
        ("@", false),
        ("refs/heads/", false),
        ("/refs/heads/x", false),
        ("refs//heads", false),
        ("refs/heads/.hidden", false),
        ("refs/heads/x.lock", false),
        ("refs/heads/x.lock/y", false),
        ("refs/heads/a..b", false),
        ("refs/heads/a.", false),
        ("refs/heads/a b", false),
        ("refs/heads/a~b", false),
        ("refs/heads/a^b", false),
        ("refs/heads/a:b", false),
        ("refs/heads/a?b", false),
        ("refs/heads/a*b", false),
        ("refs/heads/a[b", false),
        ("refs/heads/a\\b", false),
        ("refs/heads/a@{b", false),
        ("refs/heads/a\u{7F}b", false),
        ("refs/heads/a\tb", false),
        ("refs/heads/a/./b", false),
        ("refs/heads/.", false),
        ("refs/heads/a.lock.b", true),
        ("refs/heads/a.b", true),
        ("refs/heads/{}", true),
    ]

    func testCheckRefFormatMatchesGit() throws {
        let dir = try makeTempDirectory(self)
        for (name, expected) in RefTests.table {
            XCTAssertEqual(Refs.checkRefFormat(name), expected, "'\(name)'")
            let r = try git(["check-ref-format", name], in: dir, check: false)
            XCTAssertEqual(r.status == 0, expected, "git disagrees on '\(name)'")
        }
        XCTAssertTrue(Refs.checkRefFormat("main", allowOneLevel: true))
        XCTAssertFalse(Refs.checkRefFormat("ma..in", allowOneLevel: true))
    }

    func testManyRefsLooseAndPackedAgreeWithGit() throws {
        let dir = try makeHistoryRepository(self, commits: 3)
        var commands = ""
        for i in 0..<300 {
            commands += "update refs/heads/branch/\(i) HEAD~\(i % 3)\n"
        }
        try git(["update-ref", "--stdin"], in: dir, input: Data(commands.utf8))
        func gitRefs() throws -> [String] {
            try git(["for-each-ref", "--format=%(objectname) %(refname)"], in: dir).text.split(separator: "\n").map(String.init)
        }
        let repo = try Repository.open(dir)
        var mine = try repo.listRefs().map { "\($0.id.hex) \($0.name)" }
        XCTAssertEqual(mine, try gitRefs())
        XCTAssertEqual(mine.count, 300 + 4)
        try git(["pack-refs", "--all"], in: dir)
        mine = try repo.listRefs().map { "\($0.id.hex) \($0.name)" }
        XCTAssertEqual(mine, try gitRefs())
        // Peeled entries for annotated tags.
        let tag = try XCTUnwrap(try repo.listRefs().first { $0.name == "refs/tags/v1.0" })
        XCTAssertEqual(tag.peeled?.hex, try git(["rev-parse", "v1.0^{}"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines))
        // A loose ref wins over a packed one.
        try git(["update-ref", "refs/heads/branch/7", "HEAD~2"], in: dir)
        XCTAssertEqual(try repo.resolveRef("refs/heads/branch/7")?.hex,
                       try git(["rev-parse", "HEAD~2"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines))
        mine = try repo.listRefs().map { "\($0.id.hex) \($0.name)" }
        XCTAssertEqual(mine, try gitRefs())
        let (problems, summary) = try verify(dir)
        XCTAssertEqual(problems, [])
        XCTAssertEqual(summary.refs, 304)
    }

    /// packed-refs with no loose refs is returned as it stands only when strictly in
    /// order: a name written twice (a damaged or hostile file) is listed once, and an
    /// unsorted file comes back sorted.
    func testPackedRefsAloneAreListedOncePerNameAndSorted() throws {
        let dir = try makeHistoryRepository(self, commits: 2)
        try git(["pack-refs", "--all"], in: dir)
        let head = try git(["rev-parse", "HEAD"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let parent = try git(["rev-parse", "HEAD~1"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let lines = ["\(head) refs/heads/b", "\(parent) refs/heads/a", "\(head) refs/heads/b"]
        try ("# pack-refs with: peeled \n" + lines.joined(separator: "\n") + "\n").write(toFile: try Repository.open(dir).commonDirectory + "/packed-refs", atomically: true, encoding: .utf8)
        let names = try Repository.open(dir).listRefs().map(\.name)
        XCTAssertEqual(names.filter { $0.hasPrefix("refs/heads/") }, ["refs/heads/a", "refs/heads/b"])
    }

    func testUpdateAndDeleteRefs() throws {
        let dir = try makeHistoryRepository(self, commits: 3)
        let repo = try Repository.open(dir)
        let head = try XCTUnwrap(try repo.resolveRef("HEAD"))
        let parent = try XCTUnwrap(ObjectID(hex: try git(["rev-parse", "HEAD~1"], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)))

        try repo.updateRef("refs/heads/new", to: head, expectedOld: .absent)
        XCTAssertThrowsError(try repo.updateRef("refs/heads/new", to: parent, expectedOld: .absent)) {
            XCTAssertEqual(($0 as? GitError)?.kind, .refConflict)
        }
        XCTAssertThrowsError(try repo.updateRef("refs/heads/new", to: parent, expectedOld: .value(parent)))
        try repo.updateRef("refs/heads/new", to: parent, expectedOld: .value(head))
        XCTAssertEqual(try git(["rev-parse", "refs/heads/new"], in: dir).text, parent.hex + "\n")
        // Directory/file conflicts.
        XCTAssertThrowsError(try repo.updateRef("refs/heads/new/sub", to: head))
        XCTAssertThrowsError(try repo.updateRef("refs/heads", to: head))
        // Invalid names.
        XCTAssertThrowsError(try repo.updateRef("refs/heads/bad..name", to: head)) {
            XCTAssertEqual(($0 as? GitError)?.kind, .invalidRefName)
        }
        XCTAssertThrowsError(try repo.updateRef("HEAD", to: head))
        // A held lock blocks updates.
        try writeFile(dir + "/.git/refs/heads/new.lock", "")
        XCTAssertThrowsError(try repo.updateRef("refs/heads/new", to: head)) {
            XCTAssertEqual(($0 as? GitError)?.kind, .refConflict)
        }
        try FileManager.default.removeItem(atPath: dir + "/.git/refs/heads/new.lock")

        // Delete a ref that is both packed and loose.
        try git(["pack-refs", "--all"], in: dir)
        try repo.updateRef("refs/heads/new", to: head)
        XCTAssertThrowsError(try repo.deleteRef("refs/heads/new", expectedOld: .value(parent)))
        XCTAssertTrue(try repo.deleteRef("refs/heads/new", expectedOld: .value(head)))
        XCTAssertNil(try repo.resolveRef("refs/heads/new"))
        XCTAssertNotEqual(try git(["show-ref", "--verify", "refs/heads/new"], in: dir, check: false).status, 0)
        XCTAssertFalse(try repo.deleteRef("refs/heads/new"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.git/packed-refs.lock"))
        // Packed-only delete keeps the other packed refs and peeled lines.
        XCTAssertTrue(try repo.deleteRef("refs/heads/side"))
        XCTAssertEqual(try git(["for-each-ref", "--format=%(refname)"], in: dir).text, "refs/heads/main\nrefs/tags/light\nrefs/tags/v1.0\n")
        XCTAssertEqual(try repo.listRefs().first { $0.name == "refs/tags/v1.0" }?.peeled, head)

        // HEAD.
        try repo.updateRef("refs/heads/other", to: parent)
        try repo.setHead(symbolic: "refs/heads/other")
        XCTAssertEqual(try repo.head(), .symbolic("refs/heads/other", id: parent))
        XCTAssertEqual(try git(["symbolic-ref", "HEAD"], in: dir).text, "refs/heads/other\n")
        try repo.setHead(symbolic: "refs/heads/unborn")
        XCTAssertEqual(try repo.head(), .symbolic("refs/heads/unborn", id: nil))
        XCTAssertThrowsError(try repo.setHead(symbolic: "nope"))
        let fsck = try git(["fsck", "--full"], in: dir, check: false)
        XCTAssertEqual(fsck.status, 0, fsck.stderr)
    }
}
