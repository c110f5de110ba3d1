import Foundation
import XCTest

/// The reachability file with real processes: a first mirror of the same refs is served
/// from it without walking, git accepts what it gives, and once a ref is deleted or
/// rewound the stale file is not used (nothing only the old refs reached leaks).
final class ReachabilityFileSyncTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func reachFiles(_ gitDir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects/pack")) ?? []).filter { $0.hasSuffix(".reach") }
    }

    func servedLines(_ f: SyncFixture) -> [String] {
        f.listener?.stderr.split(separator: "\n").filter { $0.contains("served 'alice/proj'") }.map(String.init) ?? []
    }

    /// Waits for the `count`-th transfer's log line and returns it.
    func served(_ f: SyncFixture, _ count: Int, file: StaticString = #filePath, line: UInt = #line) -> String {
        _ = f.listener?.waitFor("transfer \(count)", timeout: 30, file: file, line: line) { _, err in
            err.components(separatedBy: "served 'alice/proj'").count == count + 1
        }
        return servedLines(f).last ?? ""
    }

    func hasObject(_ gitDir: String, _ id: String) throws -> Bool {
        try SyncGit.bare(gitDir, ["cat-file", "-e", id], check: false).status == 0
    }

    func testFirstMirrorServedFromTheFileAndStaleFilesIgnored() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 10)
        // A branch whose commit and blob nothing else reaches, and a main tip that a
        // rewind will leave behind: all in the upstream's one pack.
        try f.gitWork(["checkout", "-q", "-b", "secret"])
        let secret = try f.commit("secret", files: ["secret.txt": "only the secret branch has this\n"])
        let secretBlob = try SyncGit.git(["rev-parse", "HEAD:secret.txt"], in: f.work).text.trimmingCharacters(in: .whitespacesAndNewlines)
        try f.gitWork(["checkout", "-q", "main"])
        let tip = try f.commit("main tip", files: ["tip.txt": "only the main tip has this\n"])
        try f.push()
        try SyncGit.bare(f.upstream, ["repack", "-q", "-a", "-d"])
        try f.startServer()

        // 1. The first mirror walks; the server records the walk and so does the client.
        let first = try f.sync()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(served(f, 1).contains("(walk "), servedLines(f).description)
        try f.assertMirrorsUpstream()
        XCTAssertEqual(reachFiles(f.mirror).count, 1, "the client records its check's walk")
        eventually(timeout: 30) { !reachFiles(f.upstream).isEmpty }
        XCTAssertEqual(reachFiles(f.upstream).count, 1, "the server records its walk")

        // 2. The next first mirror of the same refs is served from the file; git
        //    accepts the pack, guts verifies it.
        let b = h.home("b")
        _ = try h.keygen("b")
        let second = try f.sync(home: b)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(served(f, 2).contains("(reachability file "), servedLines(f).description)
        let mirrorB = b + "/repos/alice/proj.git"
        try f.assertMirrorsUpstream(mirrorB)
        try f.assertVerifies(mirrorB)
        XCTAssertTrue(try hasObject(mirrorB, secretBlob))

        // 3. git does not mind the file beside the client's pack.
        try SyncGit.bare(f.mirror, ["fsck", "--full", "--strict"])

        // 4. A ref deleted and another rewound, the pack (and its now stale file)
        //    untouched: the file no longer matches, the server walks, and nothing only
        //    the old refs reached is sent.
        try SyncGit.bare(f.upstream, ["update-ref", "-d", "refs/heads/secret"])
        try SyncGit.bare(f.upstream, ["update-ref", "refs/heads/main", "main~1"])
        XCTAssertEqual(reachFiles(f.upstream).count, 1, "the stale file is still there")
        let c = h.home("c")
        _ = try h.keygen("c")
        let third = try f.sync(home: c)
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertTrue(served(f, 3).contains("(walk "), servedLines(f).description)
        let mirrorC = c + "/repos/alice/proj.git"
        try f.assertMirrorsUpstream(mirrorC)
        for id in [secret, secretBlob, tip] {
            XCTAssertFalse(try hasObject(mirrorC, id), "\(id) is reachable only from the old refs, yet was sent")
        }
        // The walk for the new refs replaced the stale file: the next first mirror is
        // served from it, and still gets none of them.
        let d = h.home("d")
        _ = try h.keygen("d")
        let fourth = try f.sync(home: d)
        XCTAssertEqual(fourth.status, 0, fourth.stderr)
        XCTAssertTrue(served(f, 4).contains("(reachability file "), "the walk for the new refs was recorded: \(servedLines(f))")
        let mirrorD = d + "/repos/alice/proj.git"
        try f.assertMirrorsUpstream(mirrorD)
        for id in [secret, secretBlob, tip] {
            XCTAssertFalse(try hasObject(mirrorD, id), "\(id) leaked from a reachability file")
        }
    }

    /// Incremental syncs: the server's walk stops at what its file marks when the
    /// client's haves include every tip of the file, and the client's check stops at
    /// what its own file marks. New history of every kind (a change deep in the tree, a
    /// new directory, a merge, new tags), then deletions and a rewind (the server's file
    /// no longer covered by the haves), and a repack upstream that removes the file:
    /// each time the mirror equals upstream and passes git fsck and guts verify.
    func testIncrementalSyncsStopAtMarkedObjects() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 10)
        try f.startServer()
        let first = try f.sync()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(reachFiles(f.mirror).count, 1, "the client records its first check")
        let deadline = Date().addingTimeInterval(30)
        while reachFiles(f.upstream).isEmpty && Date() < deadline { usleep(20_000) }
        XCTAssertEqual(reachFiles(f.upstream).count, 1, "the server records its walk")

        // 1. New history on top of the recorded tips.
        try f.commit("deep change", files: ["dir1/sub/file0.txt": "changed\n", "new/dir/new.txt": "new\n"])
        try f.gitWork(["checkout", "-q", "side"])
        try f.commit("side moves", files: ["side.txt": "side 2\n", "dir2/sub/other.txt": "other\n"])
        try f.gitWork(["checkout", "-q", "main"])
        try f.gitWork(["merge", "-q", "--no-ff", "-m", "merge side again", "side"])
        try f.gitWork(["tag", "-a", "v2.0", "-m", "release 2.0"])
        try f.push()
        let second = try f.sync()
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(served(f, 2).contains("(walk to the reachability file "), servedLines(f).description)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        try SyncGit.bare(f.mirror, ["fsck", "--full", "--strict"])

        // 2. A tag and a branch deleted, main rewound and moved on: the client's haves
        //    no longer include every tip of the server's file, so the server walks as
        //    before; the client's check still stops at its own file's marks.
        try f.gitWork(["tag", "-d", "light"])
        try f.gitWork(["branch", "-D", "side"])
        try f.gitWork(["reset", "-q", "--hard", "HEAD~2"])
        try f.commit("after the rewind", files: ["dir0/sub/file1.txt": "rewound\n"])
        try f.push()
        let third = try f.sync()
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertTrue(served(f, 3).contains("(walk "), servedLines(f).description)
        XCTAssertFalse(servedLines(f).last?.contains("reachability file") ?? true, servedLines(f).description)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        try SyncGit.bare(f.mirror, ["fsck", "--full", "--strict"])

        // 3. Upstream repacked (its file goes with the old pack), then more history.
        try SyncGit.bare(f.upstream, ["repack", "-q", "-a", "-d"])
        try f.commit("after the repack", files: ["big.txt": "replaced\n"])
        try f.push()
        let fourth = try f.sync()
        XCTAssertEqual(fourth.status, 0, fourth.stderr)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        try SyncGit.bare(f.mirror, ["fsck", "--full", "--strict"])
    }
}
