import Foundation
import GutsGit
import XCTest

/// Pack maintenance with real processes: a mirror fed by many syncs keeps few packs,
/// stays valid for guts and git, and `guts objects repack` takes turns with syncs.
final class RepackTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func packs(_ gitDir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects/pack")) ?? []).filter { $0.hasSuffix(".pack") }
    }

    /// Ten syncs of a growing repository, one pack each: the sync that leaves more than
    /// 8 consolidates them, deltas kept, and the mirror verifies and clones throughout.
    func testRepeatedSyncsKeepAtMostMaxPacks() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 6)
        try f.startServer()
        let first = try f.sync()
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(packs(f.mirror).count, 1)
        var repacks = 0
        var most = 0
        var lines: [String] = []
        for i in 0..<10 {
            for k in 0..<20 { lines.append("round \(i) line \(k) " + String(repeating: "pq", count: (i + k) % 11)) }
            try f.commit("round \(i)", files: ["grow.txt": lines.joined(separator: "\n") + "\n", "r\(i % 3).txt": "round \(i)\n"])
            try f.push()
            let r = try f.sync()
            XCTAssertEqual(r.status, 0, r.stderr)
            let count = packs(f.mirror).count
            most = max(most, count)
            XCTAssertLessThanOrEqual(count, PackMaintenance.defaultMaxPacks, "after sync \(i + 2): \(packs(f.mirror))")
            if r.stderr.contains("repacked ") {
                repacks += 1
                XCTAssertEqual(count, 1, r.stderr)
                XCTAssertTrue(r.stderr.contains("repacked 9 packs and 0 loose objects into pack-"), r.stderr)
            }
        }
        XCTAssertEqual(repacks, 1, "the ninth pack triggered one consolidation")
        XCTAssertEqual(most, PackMaintenance.defaultMaxPacks)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        let clone = h.home("clone")
        try SyncGit.git(["clone", "-q", f.mirror, clone], in: h.root.path)
        XCTAssertEqual(try SyncGit.git(["rev-parse", "HEAD"], in: clone).text, try SyncGit.git(["rev-parse", "HEAD"], in: f.work).text)
        XCTAssertEqual(try String(contentsOfFile: clone + "/grow.txt", encoding: .utf8), lines.joined(separator: "\n") + "\n")

        // On demand: what is left goes into one pack; a second run has nothing to do.
        let before = try SyncGit.bare(f.mirror, ["cat-file", "--batch-all-objects", "--batch-check=%(objectname)"]).text
        let left = packs(f.mirror).count
        XCTAssertGreaterThan(left, 1)
        let r = try h.run(["--home", f.clientHome, "--json", "objects", "repack", "alice/proj"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(j["packs_removed"] as? Int, left)
        XCTAssertEqual(j["objects"] as? Int, before.split(separator: "\n").count)
        XCTAssertGreaterThan(j["deltas"] as? Int ?? 0, 10)
        XCTAssertLessThan(j["bytes_after"] as? Int ?? .max, (j["bytes_before"] as? Int ?? 0) + 1024)
        XCTAssertEqual(packs(f.mirror).count, 1)
        XCTAssertEqual(try SyncGit.bare(f.mirror, ["cat-file", "--batch-all-objects", "--batch-check=%(objectname)"]).text, before)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        let verifyPack = try SyncGit.bare(f.mirror, ["verify-pack", f.mirror + "/objects/pack/" + packs(f.mirror)[0].replacingOccurrences(of: ".pack", with: ".idx")])
        XCTAssertEqual(verifyPack.status, 0)
        let again = try h.run(["--home", f.clientHome, "objects", "repack", f.mirror])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("nothing to repack"), again.stderr)

        // The mirror still syncs incrementally afterwards.
        try f.commit("after repack", files: ["after.txt": "after\n"])
        try f.push()
        let last = try f.sync()
        XCTAssertEqual(last.status, 0, last.stderr)
        try f.assertMirrorsUpstream()
    }

    /// `objects repack` takes the repository's lock like a sync: held by someone else,
    /// --no-wait exits 10 and changes nothing; max-packs = 0 in the config turns the
    /// automatic consolidation off.
    func testRepackTakesTheLockAndMaxPacksConfig() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer()
        try "max-packs = 0\n".write(toFile: f.clientHome + "/config", atomically: true, encoding: .utf8)
        XCTAssertEqual(try f.sync().status, 0)
        for i in 0..<10 {
            try f.commit("more \(i)", files: ["m.txt": "more \(i)\n"])
            try f.push()
            let r = try f.sync()
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(packs(f.mirror).count, 11, "max-packs = 0: never consolidated")

        let lock = try RepositoryLock.acquire(repositoryPath: f.mirror, wait: 0)
        let busy = try h.run(["--home", f.clientHome, "objects", "repack", "--no-wait", "alice/proj"])
        XCTAssertEqual(busy.status, 10, busy.stderr)
        XCTAssertTrue(busy.stderr.contains("nothing was done"), busy.stderr)
        XCTAssertEqual(packs(f.mirror).count, 11)
        lock.release()
        let done = try h.run(["--home", f.clientHome, "objects", "repack", "alice/proj"])
        XCTAssertEqual(done.status, 0, done.stderr)
        XCTAssertTrue(done.stderr.contains("repacked 11 packs"), done.stderr)
        XCTAssertEqual(packs(f.mirror).count, 1)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
    }

    /// A node mirroring a signed repository (each sync adds up to three packs: identity,
    /// signed refs, objects) consolidates after each sync that leaves more than its
    /// config's max-packs, logs it, and the mirror stays valid.
    func testNodeMirrorConsolidatesItsPacks() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("follower")
        try "max-packs = 1\n".write(toFile: h.home("follower") + "/config", atomically: true, encoding: .utf8)
        let bare = h.home("origin") + "/repos/demo/app.git"
        try FileManager.default.createDirectory(atPath: bare, withIntermediateDirectories: true)
        try SyncGit.git(["init", "-q", "--bare", "."], in: bare)
        let work = h.home("work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try SyncGit.git(["init", "-q", "."], in: work)
        try "v1\n".write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try SyncGit.git(["add", "file"], in: work)
        try SyncGit.git(["commit", "-q", "-m", "first"], in: work)
        try SyncGit.git(["push", "-q", bare, "main"], in: work)
        let initRun = try h.run(["--home", h.home("origin"), "repo", "init", "demo/app"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let (_, originLine) = try h.listen("origin", ["--announce-interval", "0.3"])
        let (follower, _) = try h.listen("follower", ["--bootstrap", originLine, "--mirror", "demo/app@\(originID)",
                                                      "--announce-interval", "0.3"])
        follower.waitFor("bootstrap connection") { _, err in err.contains("(bootstrap") }
        let mirror = h.home("follower") + "/repos/demo/app.git"
        // The follower's first sync, at start, is of the repository as it is now.
        follower.waitFor("the initial mirror sync", timeout: 30) { _, err in err.contains("mirror: synced demo/app") }
        for round in 1...2 {
            let before = follower.stderr.components(separatedBy: "mirror: synced demo/app").count
            try "v\(round + 1)\n".write(toFile: work + "/file", atomically: true, encoding: .utf8)
            try SyncGit.git(["commit", "-q", "-am", "round \(round)"], in: work)
            try SyncGit.git(["push", "-q", bare, "main"], in: work)
            let head = try SyncGit.git(["rev-parse", "HEAD"], in: work).text.trimmingCharacters(in: .whitespacesAndNewlines)
            follower.waitFor("mirror round \(round)", timeout: 30) { _, err in
                err.components(separatedBy: "mirror: synced demo/app").count > before
            }
            XCTAssertEqual(try SyncGit.revParse(mirror, "refs/heads/main"), head)
            XCTAssertEqual(packs(mirror).count, 1, "round \(round): \(packs(mirror)) \(follower.stderr)")
        }
        XCTAssertTrue(follower.stderr.contains("consolidated "), follower.stderr)
        try SyncGit.assertFsckClean(mirror)
        let verify = try h.run(["--home", h.home("follower"), "objects", "verify", mirror])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }
}
