import Foundation
import XCTest

/// `guts sync` refuses a pack holding an object whose SHA-1 computation shows a
/// collision attack (guts-protocol(7), GetObjects and Objects), with the integrity code.
///
/// No colliding pair of git objects is public: the SHAttered PDFs collide as files, but
/// as blobs (behind `"blob 422435\0"`) they have distinct names and nothing to detect.
/// So the upstream commits shattered-1.pdf as an ordinary blob, and the client, a debug
/// build, is told by `GUTS_DEBUG_SHA1_COLLISIONS` to treat that blob as half of a
/// collision (release builds ignore the variable). The detection itself is tested on
/// the real collisions in GutsGitTests.SHA1DCTests.
final class CollisionSyncTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testSyncRefusesPackWithCollidingObject() throws {
        let pdfPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("GutsGitTests/Fixtures/shattered-1.pdf").path
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 4)
        try FileManager.default.copyItem(atPath: pdfPath, toPath: f.work + "/shattered.pdf")
        try f.commit("add a pdf")
        try f.push()
        try f.startServer()
        let blob = "ba9aaa145ccd24ef760cf31c74d8f7ca1a2e47b0"

        let refused = try h.run(["--home", f.clientHome, "sync", f.repoName, "--peer", f.peer],
                                environment: ["GUTS_DEBUG_SHA1_COLLISIONS": blob], timeout: 90)
        XCTAssertEqual(refused.status, 6, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("SHA-1 collision attack"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains(blob), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: f.mirror + "/HEAD"), "nothing was created")

        // The same blob, not marked, is an ordinary object: the sync completes.
        let honest = try f.sync()
        XCTAssertEqual(honest.status, 0, honest.stderr)
        try f.assertMirrorsUpstream()
    }
}
