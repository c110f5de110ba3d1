import Foundation
import XCTest

/// A sync replaces every ref of its target, so it refuses repositories guts did not create.
final class SyncSafetyTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testSyncIntoSomeoneElsesRepositoryNeedsForce() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 6)
        try f.startServer()
        // A user's own repository with its own branch.
        let own = h.home("own.git")
        try SyncGit.git(["init", "-q", "--bare", own], in: h.root.path)
        try SyncGit.git(["push", "-q", own, "HEAD:refs/heads/my-work"], in: f.work)
        let before = try SyncGit.refs(own)

        let refused = try f.sync(extra: ["--into", own])
        XCTAssertEqual(refused.status, 3, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("was not created by guts sync"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("--force"), refused.stderr)
        XCTAssertEqual(try SyncGit.refs(own), before, "nothing changed")

        let forced = try f.sync(extra: ["--into", own, "--force"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        try f.assertMirrorsUpstream(own)
        XCTAssertTrue(FileManager.default.fileExists(atPath: own + "/guts-mirror"), "adopted: now a mirror")
        // From then on it syncs without --force.
        XCTAssertEqual(try f.sync(extra: ["--into", own, "--exit-code"]).status, 1)
    }

    func testRepositoriesCreatedBySyncAreMarked() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 6)
        try f.startServer()
        XCTAssertEqual(try f.sync().status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: f.mirror + "/guts-mirror"))
    }
}
