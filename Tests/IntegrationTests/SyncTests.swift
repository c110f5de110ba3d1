import Foundation
import XCTest

/// `guts sync` against a real `guts listen`, checked with stock git: first, incremental
/// and no-op syncs, deleted and forced refs, many refs, deep history, access control,
/// peer fallback, and interrupted transfers.
final class SyncTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testFirstSyncThenIncrementalThenUpToDate() throws {
        let f = try SyncFixture(h)
        try f.buildHistory()
        try f.startServer()
        let upstreamRefs = try SyncGit.refs(f.upstream)
        let objectCount = try SyncGit.bare(f.upstream, ["rev-list", "--objects", "--all"]).text.split(separator: "\n").count

        // 1. First sync: a new, complete, verified mirror.
        let first = try f.sync()
        XCTAssertEqual(first.status, 0, first.stderr)
        let j = first.json
        XCTAssertEqual(j["repository"] as? String, "alice/proj")
        XCTAssertEqual(j["path"] as? String, f.mirror)
        XCTAssertEqual(j["peer"] as? String, f.peer)
        XCTAssertEqual(j["status"] as? String, "updated")
        XCTAssertEqual(j["created"] as? Bool, true)
        XCTAssertEqual(j["refs_created"] as? Int, upstreamRefs.count)
        XCTAssertEqual(j["refs_updated"] as? Int, 0)
        XCTAssertEqual(j["refs_deleted"] as? Int, 0)
        XCTAssertEqual(j["head_changed"] as? Bool, true)
        XCTAssertEqual(j["objects"] as? Int, objectCount, "every object of the upstream, once")
        XCTAssertGreaterThan(j["bytes"] as? Int ?? 0, 100)
        XCTAssertNotNil(j["seconds"] as? Double)
        let changes = j["changes"] as? [[String: Any]] ?? []
        XCTAssertEqual(changes.map { "\($0["ref"] as? String ?? "?") \($0["new"] as? String ?? "?")" }, upstreamRefs)
        XCTAssertTrue(changes.allSatisfy { $0["old"] is NSNull }, "\(changes)")
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        // The repacked upstream was served by copying its stored entries, deltas included.
        f.listener?.waitFor("the transfer log line") { _, err in err.contains("served 'alice/proj'") }
        let served = try XCTUnwrap(f.listener?.stderr.split(separator: "\n").first { $0.contains("served 'alice/proj'") })
        let reuse = try XCTUnwrap(served.firstMatch(of: /\((\d+) reused, (\d+) deltas, (\d+) as OFS_DELTA, 0 thin\)/), String(served))
        XCTAssertGreaterThan(Int(reuse.1) ?? 0, objectCount / 2, String(served))
        XCTAssertGreaterThan(Int(reuse.2) ?? 0, 5, String(served))
        // guts sync announces ofs-delta: every reused delta went as an OFS_DELTA.
        XCTAssertEqual(reuse.3, reuse.2, String(served))

        // The mirror is a normal git repository: clone it and check out the tree.
        let clone = h.home("clone")
        try SyncGit.git(["clone", "-q", f.mirror, clone], in: h.root.path)
        XCTAssertEqual(try SyncGit.git(["rev-parse", "HEAD"], in: clone).text, try SyncGit.git(["rev-parse", "HEAD"], in: f.work).text)
        XCTAssertEqual(try String(contentsOfFile: clone + "/big.txt", encoding: .utf8),
                       try String(contentsOfFile: f.work + "/big.txt", encoding: .utf8))
        XCTAssertEqual(try SyncGit.git(["cat-file", "-p", "blob-tag"], in: clone).text, "side\n")

        // 2. Incremental: one new commit touching one top-level file is three objects.
        let old = try SyncGit.revParse(f.upstream, "refs/heads/main")
        let new = try f.commit("one more", files: ["new.txt": "new\n"])
        try f.push()
        let second = try f.sync()
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(second.json["status"] as? String, "updated")
        XCTAssertEqual(second.json["created"] as? Bool, false)
        XCTAssertEqual(second.json["objects"] as? Int, 3, "commit, root tree and blob only: \(second.stdout)")
        XCTAssertLessThan(second.json["bytes"] as? Int ?? .max, 2000)
        XCTAssertEqual(second.json["refs_updated"] as? Int, 1)
        XCTAssertEqual(second.json["head_changed"] as? Bool, false)
        let change = (second.json["changes"] as? [[String: Any]])?.first
        XCTAssertEqual(change?["ref"] as? String, "refs/heads/main")
        XCTAssertEqual(change?["old"] as? String, old)
        XCTAssertEqual(change?["new"] as? String, new)
        try f.assertMirrorsUpstream()

        // 3. Nothing new: exit 0 (as git fetch; 1 only with --exit-code), up to date,
        // nothing transferred.
        let third = try f.sync()
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertEqual(third.json["status"] as? String, "up-to-date")
        XCTAssertEqual(third.json["objects"] as? Int, 0)
        XCTAssertEqual(third.json["bytes"] as? Int, 0)
        XCTAssertEqual((third.json["changes"] as? [Any])?.count, 0)
        let text = try f.sync(json: false)
        XCTAssertEqual(text.status, 0)
        XCTAssertEqual(text.stdout, "alice/proj is up to date with \(f.peer) (unsigned)\n")
        let asked = try f.sync(json: false, extra: ["--exit-code"])
        XCTAssertEqual(asked.status, 1, "--exit-code: nothing new is 1")
        XCTAssertEqual(asked.stdout, text.stdout)
        try f.assertMirrorsUpstream()
    }

    func testDeletedForcedAndRenamedRefsAreMirroredExactly() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 6)
        try f.gitWork(["branch", "topic", "HEAD~1"])
        try f.gitWork(["branch", "doomed", "HEAD~2"])
        try f.push()
        try f.startServer()
        XCTAssertEqual(try f.sync().status, 0)
        try f.assertMirrorsUpstream()
        let before = try SyncGit.refs(f.mirror)

        // Upstream rewrites history: main loses two commits and gains another, side is
        // force-moved, branches and tags are deleted, `topic` becomes the directory
        // `topic/one` (a file/directory swap in one sync), HEAD moves, and the old
        // commits are pruned upstream (so the client offers haves the server lacks).
        try f.gitWork(["reset", "-q", "--hard", "HEAD~2"])
        try f.commit("rewritten main", files: ["rewritten.txt": "again\n"])
        try f.gitWork(["checkout", "-q", "side"])
        try f.gitWork(["reset", "-q", "--hard", "main~1"])
        try f.commit("forced side", files: ["forced.txt": "forced\n"])
        try f.gitWork(["checkout", "-q", "main"])
        try f.gitWork(["branch", "-D", "doomed", "topic"])
        try f.gitWork(["branch", "topic/one", "side"])
        try f.gitWork(["tag", "-d", "light", "v1.0-signed-off"])
        try f.gitWork(["reflog", "expire", "--expire=now", "--all"])
        try f.push()
        try SyncGit.bare(f.upstream, ["symbolic-ref", "HEAD", "refs/heads/side"])
        try SyncGit.bare(f.upstream, ["gc", "-q", "--prune=now"])

        let r = try f.sync()
        XCTAssertEqual(r.status, 0, r.stderr)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        XCTAssertEqual(try SyncGit.head(f.mirror), "refs/heads/side")
        XCTAssertEqual(r.json["head_changed"] as? Bool, true)
        let kinds = (r.json["changes"] as? [[String: Any]] ?? []).map { c -> String in
            let kind = c["old"] is NSNull ? "created" : (c["new"] is NSNull ? "deleted" : "updated")
            return "\(kind) \(c["ref"] as? String ?? "?")"
        }
        XCTAssertEqual(kinds, ["deleted refs/heads/doomed", "updated refs/heads/main", "updated refs/heads/side",
                               "deleted refs/heads/topic", "created refs/heads/topic/one",
                               "deleted refs/tags/light", "deleted refs/tags/v1.0-signed-off"])
        XCTAssertEqual(r.json["refs_deleted"] as? Int, 4)
        XCTAssertNotEqual(before, try SyncGit.refs(f.mirror))

        // And the text form names each change.
        try f.gitWork(["branch", "-D", "topic/one"])
        try f.push()
        let text = try f.sync(json: false)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.hasPrefix("synced alice/proj from \(f.peer) into \(f.mirror)\n"), text.stdout)
        XCTAssertTrue(text.stdout.contains("  deleted  refs/heads/topic/one  (was "), text.stdout)
        XCTAssertTrue(text.stdout.contains("refs: 0 new, 0 updated, 1 deleted; objects: 0"), text.stdout)
        try f.assertMirrorsUpstream()
    }

    func testManyRefs() throws {
        let f = try SyncFixture(h)
        for i in 0..<5 { try f.commit("c\(i)", files: ["f.txt": "\(i)\n"]) }
        try f.push()
        let commits = try SyncGit.bare(f.upstream, ["rev-list", "main"]).text.split(separator: "\n").map(String.init)
        // 700 packed tags and 600 loose branches, spread over the commits.
        var script = ""
        for i in 0..<700 { script += "create refs/tags/t\(String(format: "%04d", i)) \(commits[i % commits.count])\n" }
        try SyncGit.bare(f.upstream, ["update-ref", "--stdin"], input: Data(script.utf8))
        try SyncGit.bare(f.upstream, ["pack-refs", "--all"])
        script = ""
        for i in 0..<600 { script += "create refs/heads/b/\(i % 7)/n\(i) \(commits[(i * 3) % commits.count])\n" }
        try SyncGit.bare(f.upstream, ["update-ref", "--stdin"], input: Data(script.utf8))
        let total = try SyncGit.refs(f.upstream).count
        XCTAssertEqual(total, 1301)
        try f.startServer()

        let r = try f.sync()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.json["refs_created"] as? Int, total)
        try f.assertMirrorsUpstream()

        // Delete 100, move 50, add 10: the mirror follows exactly.
        script = ""
        for i in 0..<100 { script += "delete refs/tags/t\(String(format: "%04d", i * 7))\n" }
        for i in 0..<50 { script += "update refs/heads/b/\(i % 7)/n\(i) \(commits[(i * 3 + 1) % commits.count])\n" }
        for i in 0..<10 { script += "create refs/heads/extra/e\(i) \(commits[0])\n" }
        try SyncGit.bare(f.upstream, ["update-ref", "--stdin"], input: Data(script.utf8))
        let again = try f.sync()
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.json["refs_deleted"] as? Int, 100)
        XCTAssertEqual(again.json["refs_created"] as? Int, 10)
        XCTAssertEqual(again.json["refs_updated"] as? Int, 50)
        XCTAssertEqual(again.json["objects"] as? Int, 0)
        try f.assertMirrorsUpstream()
    }

    func testDeepHistory() throws {
        let f = try SyncFixture(h)
        let commits = 5200
        try SyncGit.bare(f.upstream, ["fast-import", "--quiet"], input: Data(fastImportStream(commits: commits).utf8))
        XCTAssertEqual(try SyncGit.bare(f.upstream, ["rev-list", "--count", "main"]).text, "\(commits)\n")
        let objects = try SyncGit.bare(f.upstream, ["rev-list", "--objects", "--all"]).text.split(separator: "\n").count
        try f.startServer()

        let r = try f.sync(timeout: 120)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.json["objects"] as? Int, objects)
        try f.assertMirrorsUpstream()

        // An incremental sync on top of deep history walks it without trouble and
        // sends only the new commit.
        let more = "commit refs/heads/main\ncommitter C <c@example.com> 1800000000 +0000\ndata 4\nmore\nfrom refs/heads/main^0\nM 644 inline top.txt\ndata 4\nmore\n\n"
        try SyncGit.bare(f.upstream, ["fast-import", "--quiet"], input: Data(more.utf8))
        let again = try f.sync(timeout: 120)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.json["objects"] as? Int, 3)
        try f.assertMirrorsUpstream()
    }

    /// A `git fast-import` stream: `commits` linear commits each editing `dir/file.txt`,
    /// a branch halfway and a tag every 1000 commits.
    func fastImportStream(commits: Int) -> String {
        var s = ""
        s.reserveCapacity(commits * 160)
        for i in 1...commits {
            let msg = "commit \(i)\n"
            let body = "version \(i)\n" + (i % 10 == 0 ? String(repeating: "padding \(i)\n", count: 20) : "")
            s += "commit refs/heads/main\nmark :\(i)\ncommitter C O Mitter <c@example.com> \(1_600_000_000 + i * 60) +0000\n"
            s += "data \(msg.utf8.count)\n\(msg)"
            if i > 1 { s += "from :\(i - 1)\n" }
            s += "M 644 inline dir/file.txt\ndata \(body.utf8.count)\n\(body)\n"
        }
        s += "reset refs/heads/half\nfrom :\(commits / 2)\n\n"
        for t in stride(from: 1000, through: commits, by: 1000) { s += "reset refs/tags/k\(t)\nfrom :\(t)\n\n" }
        return s
    }

    func testRestrictedRepository() throws {
        let f = try SyncFixture(h)
        let other = try h.keygen("other")
        try f.commit("only", files: ["a.txt": "a\n"])
        try f.push()
        let allow = f.upstream + "/guts-allow"
        try SyncFiles.write(allow, "# who may read\n\(other)   # bob\n\n")
        try f.startServer()

        let denied = try f.sync()
        XCTAssertEqual(denied.status, 9, denied.stderr)
        XCTAssertTrue(denied.stderr.contains("restricted") && denied.stderr.contains("allow list"), denied.stderr)
        XCTAssertTrue(denied.stderr.contains(f.clientID), denied.stderr)
        assertOnlyErrorObject(denied.stdout, status: denied.status)
        XCTAssertFalse(SyncFiles.exists(f.mirror), "nothing may be created for a refused sync")
        XCTAssertFalse(SyncFiles.exists(f.clientHome + "/repos/alice"), "not even the owner directory")

        // A malformed allow file shuts everyone out, even a listed peer.
        try SyncFiles.write(allow, "\(f.clientID)\nnot-a-peer-id\n")
        let broken = try f.sync()
        XCTAssertEqual(broken.status, 9, broken.stderr)
        XCTAssertTrue(broken.stderr.contains("restricted"), broken.stderr)
        XCTAssertFalse(SyncFiles.exists(f.mirror))

        try SyncFiles.write(allow, "\(other)\n\(f.clientID) # the client\n")
        let allowed = try f.sync()
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        try f.assertMirrorsUpstream()
    }

    func testNotFoundUnreachableAndFallbackPeers() throws {
        let f = try SyncFixture(h)
        try f.commit("only", files: ["a.txt": "a\n"])
        try f.push()
        try f.startServer()
        let address = String(f.peer.split(separator: "@")[1])
        let dead = "\(f.serverID)@127.0.0.1:\(syncUnusedPort())"

        let missing = try f.sync(name: "alice/nope")
        XCTAssertEqual(missing.status, 9, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("no repository 'alice/nope'"), missing.stderr)
        XCTAssertTrue(missing.stderr.contains(f.serverID), "names the peer: \(missing.stderr)")
        XCTAssertFalse(SyncFiles.exists(f.clientHome + "/repos/alice"))

        let unreachable = try f.sync(peers: [dead], extra: ["--timeout", "5"])
        XCTAssertEqual(unreachable.status, 4, unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("cannot connect"), unreachable.stderr)
        XCTAssertFalse(SyncFiles.exists(f.mirror))

        // The wrong peer ID at the right address is an authentication failure.
        let impostor = try f.sync(peers: ["\(f.clientID)@\(address)"])
        XCTAssertEqual(impostor.status, 5, impostor.stderr)

        // First peer dead, second good: the second serves, and the output says so.
        let fallback = try f.sync(peers: [dead, f.peer])
        XCTAssertEqual(fallback.status, 0, fallback.stderr)
        XCTAssertEqual(fallback.json["peer"] as? String, f.peer)
        XCTAssertTrue(fallback.stderr.contains(String(dead.split(separator: "@")[1])), fallback.stderr)
        try f.assertMirrorsUpstream()

        try f.commit("two", files: ["b.txt": "b\n"])
        try f.push()
        let text = try f.sync(peers: [dead, f.peer], json: false)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.hasPrefix("synced alice/proj from \(f.peer) into "), text.stdout)

        let usage = try f.sync(name: "../escape")
        XCTAssertEqual(usage.status, 2, usage.stderr)
    }
}

/// `guts sync` against a peer that lies: every lie must fail the sync with the right
/// exit code and a message naming the problem and the peer, and leave the local
/// repository exactly as it was (or absent, for a first sync).
final class MaliciousSyncTests: XCTestCase {
    var h: Harness!
    var f: SyncFixture!
    var servers: [MaliciousServer] = []
    /// New upstream tips the client lacks after the first (honest) sync.
    var newMain = ""
    var newSide = ""

    override func setUpWithError() throws {
        h = try Harness()
        f = try SyncFixture(h)
        try f.buildHistory(commits: 4)
        try f.startServer()
        let first = try f.sync()
        XCTAssertEqual(first.status, 0, first.stderr)
        // The first sync recorded its check: the incremental checks below stop at what
        // that file marks, so every lie is caught with it in use.
        let packDir = f.mirror + "/objects/pack"
        XCTAssertTrue(((try? FileManager.default.contentsOfDirectory(atPath: packDir)) ?? []).contains { $0.hasSuffix(".reach") })
        try advanceUpstream()
    }

    private var round = 0

    /// Upstream moves on: main and side gain commits (main with a sizeable new blob),
    /// and the unadvertised-to-liars ref `refs/hidden/other` gets a commit of its own.
    func advanceUpstream() throws {
        round += 1
        let payload = (0..<60).map { "payload \(round) line \($0) " + String(repeating: "xyz", count: $0 % 9) }.joined(separator: "\n")
        newMain = try f.commit("payload \(round)", files: ["payload.txt": payload + "\n", "dir0/more.txt": "more \(round)\n"])
        try f.gitWork(["checkout", "-q", "side"])
        newSide = try f.commit("side moves \(round)", files: ["side.txt": "side \(round)\n"])
        try f.gitWork(["checkout", "-q", "-b", "other", "main~2"])
        try f.commit("other \(round)", files: ["other.txt": String(repeating: "other \(round)\n", count: 40)])
        try f.gitWork(["update-ref", "refs/hidden/other", "HEAD"])
        try f.gitWork(["checkout", "-q", "main"])
        try f.gitWork(["branch", "-D", "other"])
        try f.push()
    }

    override func tearDown() {
        for s in servers { s.shutdown() }
        h.cleanup()
    }

    func serve(_ behavior: MaliciousServer.Behavior) throws -> MaliciousServer {
        let s = try MaliciousServer(repository: f.upstream, behavior: behavior)
        servers.append(s)
        return s
    }

    /// Runs an incremental sync against `behavior` and checks the outcome; then checks
    /// that an honest sync still works.
    @discardableResult
    func assertIncrementalFails(_ behavior: MaliciousServer.Behavior, exit: Int32, extra: [String] = [],
                                mentions: [String] = [], file: StaticString = #filePath, line: UInt = #line,
                                _ more: (String, MaliciousServer) -> Void = { _, _ in }) throws -> MaliciousServer {
        if try SyncGit.refs(f.mirror) == SyncGit.refs(f.upstream) { try advanceUpstream() }
        let server = try serve(behavior)
        let before = try RepoSnapshot(f.mirror)
        let r = try f.sync(peers: [server.peer], extra: extra, file: file, line: line)
        XCTAssertEqual(r.status, exit, "stderr: \(r.stderr) server: \(server.events)", file: file, line: line)
        assertOnlyErrorObject(r.stdout, status: r.status, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(server.peerID), "names the peer: \(r.stderr)", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(r.stderr.contains(m), "expected '\(m)' in: \(r.stderr) server: \(server.events)", file: file, line: line)
        }
        XCTAssertTrue(r.stderr.contains("\(f.mirror) is unchanged"), r.stderr, file: file, line: line)
        more(r.stderr, server)
        let after = try RepoSnapshot(f.mirror)
        XCTAssertEqual(before, after, "the mirror changed", file: file, line: line)
        XCTAssertTrue(after.files.filter { $0.contains("incoming-") }.isEmpty, "\(after.files)", file: file, line: line)
        XCTAssertFalse(SyncFiles.exists(f.mirror + ".lock"), "lock file left behind", file: file, line: line)
        try SyncGit.assertFsckClean(f.mirror, file: file, line: line)

        let honest = try f.sync(file: file, line: line)
        XCTAssertEqual(honest.status, 0, honest.stderr, file: file, line: line)
        try f.assertMirrorsUpstream(file: file, line: line)
        return server
    }

    /// Runs a first sync (fresh client) against `behavior`: it fails and nothing exists afterwards.
    func assertFirstSyncFails(_ behavior: MaliciousServer.Behavior, exit: Int32, extra: [String] = [],
                              mentions: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        let server = try serve(behavior)
        let home = h.home("fresh")
        _ = try h.keygen("fresh")
        let before = SyncFiles.tree(home)
        let r = try f.sync(peers: [server.peer], home: home, extra: extra, file: file, line: line)
        XCTAssertEqual(r.status, exit, "stderr: \(r.stderr) server: \(server.events)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(server.peerID), "names the peer: \(r.stderr)", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(r.stderr.contains(m), "expected '\(m)' in: \(r.stderr)", file: file, line: line)
        }
        XCTAssertTrue(r.stderr.contains("nothing was created at \(home)/repos/alice/proj.git"), r.stderr, file: file, line: line)
        // Nothing but the record of the offence in the peer book (guts-sync(1), Peers).
        XCTAssertEqual(SyncFiles.tree(home).filter { $0 != "peers" }, before, "a failed first sync leaves nothing behind", file: file, line: line)
        try? FileManager.default.removeItem(atPath: home)
    }

    func testHonestDoubleWorks() throws {
        let server = try serve(.honest)
        let r = try f.sync(peers: [server.peer])
        XCTAssertEqual(r.status, 0, "\(r.stderr) \(server.events)")
        try f.assertMirrorsUpstream()
    }

    func testCorruptedObject() throws {
        let s = try assertIncrementalFails(.corruptByte, exit: 6, mentions: ["sent bad data", "received pack rejected"])
        XCTAssertNotNil(s.victim)
        try assertFirstSyncFails(.corruptByte, exit: 6, mentions: ["received pack rejected"])
    }

    func testObjectWithTheWrongID() throws {
        // The advertised blob never arrives (another one came in its place).
        let altered = try assertIncrementalFails(.alteredBlob, exit: 6, mentions: ["is missing"]) { stderr, server in
            XCTAssertTrue(stderr.contains("object \(server.victim ?? "?") is missing (1 missing in all)"), stderr)
        }
        XCTAssertNotNil(altered.victim)
        // Refs advertise new tips, the pack carries another ref's history: the tips are missing.
        try assertIncrementalFails(.otherRef("refs/hidden/other"), exit: 6, mentions: ["is missing"]) { [self] stderr, _ in
            XCTAssertTrue(stderr.contains("object \(newMain) is missing") || stderr.contains("object \(newSide) is missing"), stderr)
        }
        try assertFirstSyncFails(.otherRef("refs/hidden/other"), exit: 6, mentions: ["is missing"])
    }

    func testUnrequestedObject() throws {
        let server = try serve(.extraBlob)
        let before = try RepoSnapshot(f.mirror)
        let r = try f.sync(peers: [server.peer])
        XCTAssertEqual(r.status, 6, r.stderr)
        let extra = try XCTUnwrap(server.victim)
        XCTAssertTrue(r.stderr.contains("object \(extra) was not requested"), r.stderr)
        XCTAssertTrue(r.stderr.contains(server.peerID), r.stderr)
        XCTAssertEqual(try RepoSnapshot(f.mirror), before)
        try assertFirstSyncFails(.extraBlob, exit: 6, mentions: ["was not requested"])
    }

    func testStreamStopsMidway() throws {
        try assertIncrementalFails(.closeMidStream, exit: 4, mentions: ["connection closed while waiting for objects"])
        try assertIncrementalFails(.silentMidStream, exit: 7, extra: ["--timeout", "2"], mentions: ["no pack data for 2 s while waiting for objects"])
        try assertFirstSyncFails(.closeMidStream, exit: 4)
        try assertFirstSyncFails(.silentRefs, exit: 7, extra: ["--timeout", "1"], mentions: ["timed out after 1 s waiting for the list of refs"])
    }

    func testChatterIsNotAnAnswer() throws {
        // Unrelated messages keep coming, but no answer: the timeout still applies.
        let server = try serve(.chatterInsteadOfRefs)
        let started = Date()
        let r = try f.sync(peers: [server.peer], extra: ["--timeout", "2"], timeout: 15)
        XCTAssertEqual(r.status, 7, r.stderr)
        XCTAssertTrue(r.stderr.contains("timed out after 2 s waiting for the list of refs"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 6)
    }

    func testTruncatedPackMarkedFinal() throws {
        try assertIncrementalFails(.truncatedFinal, exit: 6, mentions: ["received pack rejected"])
        try assertFirstSyncFails(.truncatedFinal, exit: 6)
    }

    func testInvalidRefName() throws {
        try assertIncrementalFails(.badRefName, exit: 6, mentions: ["invalid ref name 'refs/heads/bad..name'"])
        try assertFirstSyncFails(.badRefName, exit: 6)
    }

    func testRefsNoRepositoryCanHold() throws {
        // refs/heads/main and refs/heads/main/x: refused as the peer's fault, before any transfer.
        let s = try assertIncrementalFails(.conflictingRefs, exit: 6, mentions: ["refs/heads/main/x", "conflicts with 'refs/heads/main'"])
        XCTAssertFalse(s.events.contains { $0.hasPrefix("GetObjects") }, "\(s.events)")
        try assertFirstSyncFails(.conflictingRefs, exit: 6)
    }
}

/// Transfers interrupted by SIGKILL, on either side: the local repository is left as
/// it was (absent for a first sync), and the next sync completes and cleans up.
final class InterruptedSyncTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Blobs per big commit and their size: a few seconds of streaming in a debug build.
    let blobs = 4
    let blobSize = 3 << 20

    func startSync(_ f: SyncFixture) throws -> Harness.Running {
        try h.start(["--home", f.clientHome, "--json", "sync", f.repoName, "--peer", f.peer])
    }

    func testKillClientMidTransferThenResume() throws {
        let f = try SyncFixture(h)
        try f.commit("small", files: ["a.txt": "a\n"])
        try f.push()
        try f.addBigCommit(branch: "main", blobs: blobs, size: blobSize)
        try f.startServer()
        let repos = f.clientHome + "/repos"

        // 1. A first sync killed while receiving: no repository at the target.
        let first = try startSync(f)
        XCTAssertTrue(f.waitForIncomingPack(under: repos, bytes: 1 << 20, while: first),
                      "the transfer finished before it could be interrupted: \(first.stdout) \(first.stderr)")
        first.signal(SIGKILL)
        _ = first.wait()
        XCTAssertEqual(first.process.terminationReason, .uncaughtSignal)
        XCTAssertFalse(SyncFiles.exists(f.mirror), "a killed first sync leaves no repository at the target")
        // What it does leave: its hidden staging directory, for the next sync to remove.
        let leftovers = SyncFiles.tree(repos + "/alice")
        XCTAssertTrue(leftovers.first?.hasPrefix(".proj.git.guts-sync-") ?? false, "\(leftovers)")

        let resumed = try f.sync()
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(resumed.json["created"] as? Bool, true)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: repos + "/alice"), ["proj.git"],
                       "the stale staging directory is gone")

        // 2. An incremental sync interrupted with SIGINT cleans up after itself; one killed
        // with SIGKILL cannot, but leaves refs and stored objects unchanged. Meanwhile a
        // second sync of the same repository with --no-wait is turned away (status 10).
        try f.addBigCommit(branch: "main", blobs: blobs, size: blobSize)
        let before = try RepoSnapshot(f.mirror)
        let interrupted = try startSync(f)
        XCTAssertTrue(f.waitForIncomingPack(under: f.mirror + "/objects", bytes: 1 << 20, while: interrupted),
                      "the transfer finished before it could be interrupted: \(interrupted.stdout) \(interrupted.stderr)")
        let concurrent = try f.sync(extra: ["--no-wait"])
        XCTAssertEqual(concurrent.status, 10, concurrent.stderr)
        XCTAssertTrue(concurrent.stderr.contains("\(f.mirror) is locked by process \(interrupted.process.processIdentifier)"),
                      concurrent.stderr)
        interrupted.signal(SIGINT)
        XCTAssertEqual(interrupted.wait(), 3, interrupted.stderr)
        XCTAssertTrue(interrupted.stderr.contains("interrupted; \(f.mirror) is unchanged"), interrupted.stderr)
        XCTAssertEqual(try RepoSnapshot(f.mirror), before, "SIGINT: nothing left behind")

        let second = try startSync(f)
        XCTAssertTrue(f.waitForIncomingPack(under: f.mirror + "/objects", bytes: 1 << 20, while: second),
                      "the transfer finished before it could be interrupted: \(second.stdout) \(second.stderr)")
        second.signal(SIGKILL)
        _ = second.wait()
        XCTAssertEqual(second.process.terminationReason, .uncaughtSignal)
        var after = try RepoSnapshot(f.mirror)
        // SIGKILL leaves the quarantine, and the lock file beside the repository (naming a
        // dead process, locked by no one); nothing else moved.
        let killLeftovers = after.files.filter { $0.hasPrefix("objects/incoming-") }
        XCTAssertFalse(killLeftovers.isEmpty)
        XCTAssertTrue(SyncFiles.exists(f.mirror + ".lock"))
        after.files.removeAll { killLeftovers.contains($0) }
        XCTAssertEqual(before, after)
        try SyncGit.assertFsckClean(f.mirror)
        try f.assertVerifies()

        let again = try f.sync()
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.json["objects"] as? Int, blobs + 2)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
    }

    func testKillServerMidTransferThenSyncFromANewServer() throws {
        let f = try SyncFixture(h)
        try f.commit("small", files: ["a.txt": "a\n"])
        try f.push()
        try f.addBigCommit(branch: "main", blobs: blobs, size: blobSize)
        try f.startServer()

        let sync = try startSync(f)
        XCTAssertTrue(f.waitForIncomingPack(under: f.clientHome + "/repos", bytes: 1 << 20, while: sync),
                      "the transfer finished before it could be interrupted: \(sync.stdout) \(sync.stderr)")
        f.stopServer()
        let status = sync.wait(timeout: 30)
        XCTAssertTrue(status == 4 || status == 7, "exit \(String(describing: status)): \(sync.stderr)")
        XCTAssertTrue(sync.stderr.contains(f.serverID), sync.stderr)
        XCTAssertTrue(sync.stderr.contains("nothing was created at \(f.mirror)"), sync.stderr)
        assertOnlyErrorObject(sync.stdout, status: status ?? -1)
        XCTAssertFalse(SyncFiles.exists(f.clientHome + "/repos/alice"), "\(SyncFiles.tree(f.clientHome))")

        // The new server serves a repacked upstream: multi-megabyte stored entries are
        // copied out in slices across chunks.
        try SyncGit.bare(f.upstream, ["repack", "-q", "-a", "-d", "--window=0"])
        try f.startServer()
        let r = try f.sync()
        XCTAssertEqual(r.status, 0, r.stderr)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        let objects = try XCTUnwrap(r.json["objects"] as? Int)
        f.listener?.waitFor("the transfer log line") { _, err in err.contains("\(objects) objects, ") && err.contains("(\(objects) reused, 0 deltas, 0 as OFS_DELTA, 0 thin)") }
    }
}

/// How a serving node shares itself between transfers.
final class ServerSyncTests: XCTestCase {
    var h: Harness!
    var stalled: [StalledReader] = []

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() {
        for s in stalled { s.shutdown() }
        h.cleanup()
    }

    /// `alice/big`: `blobs` incompressible blobs, packed without deltas (served by raw
    /// copy, fast), big enough that a reader who stops reading blocks the server's writes.
    func makeBigRepository(_ f: SyncFixture, blobs: Int = 6, size: Int = 4 << 20) throws -> (path: String, tip: String) {
        let big = f.serverHome + "/repos/alice/big.git"
        try SyncGit.git(["init", "-q", "--bare", big], in: h.root.path)
        let other = try SyncFixture(h, repoName: "alice/big", reuseServerHome: f)
        let tip = try other.addBigCommit(branch: "main", blobs: blobs, size: size)
        try SyncGit.bare(big, ["repack", "-q", "-a", "-d", "--window=0"])
        return (big, tip)
    }

    func testRefsAreAnsweredWhileTransfersAreStuck() throws {
        let f = try SyncFixture(h)
        try f.commit("small", files: ["a.txt": "a\n"])
        try f.push()
        let (_, tip) = try makeBigRepository(f)
        try f.startServer()

        // Two peers ask for the big repository and stop reading.
        for _ in 0..<2 { stalled.append(try StalledReader(peer: f.peer, repository: "alice/big", want: tip)) }
        // Both transfers are under way (the node has sent each of them part of the pack).
        var peers = ""
        let started = try eventually(timeout: 20, every: 0.05) {
            peers = try h.run(["--home", f.serverHome, "--json", "peers"]).stdout
            return peers.split(separator: "\n").filter { line in
                guard let p = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return false }
                return p["agent"] as? String == "stalled/1" && (p["bytes_out"] as? Int ?? 0) > 64 << 10
            }.count == 2
        }
        XCTAssertTrue(started, peers)

        // A third peer is still served promptly.
        let syncStarted = Date()
        let r = try f.sync(extra: ["--timeout", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(syncStarted), 4)
        try f.assertMirrorsUpstream()
    }
}

extension ServerSyncTests {
    func testBusyRefusalAndStalledReadersAreCutOff() throws {
        let f = try SyncFixture(h)
        try f.commit("small", files: ["a.txt": "a\n"])
        try f.push()
        let (_, tip) = try makeBigRepository(f)
        let server = try InProcessSyncServer(roots: [f.serverHome + "/repos"], maxTransfers: 1, stallTimeout: 3)
        defer { server.shutdown() }

        // One transfer slot, taken by a peer that stops reading: the next peer hears "busy" at once.
        let reader = try StalledReader(peer: server.peer, repository: "alice/big", want: tip)
        stalled.append(reader)
        eventually(timeout: 5, every: 0.01) { server.server.activeTransfers > 0 }
        let busy = try f.sync(peers: [server.peer])
        XCTAssertEqual(busy.status, 9, busy.stderr)
        XCTAssertTrue(busy.stderr.contains("busy") || busy.stderr.contains("serving 1 transfers"), busy.stderr)
        XCTAssertFalse(SyncFiles.exists(f.mirror))

        // After the stall timeout the reader is disconnected and its slot is free again.
        // (The reader, which reads nothing, cannot notice; the server's side shows it.)
        eventually(timeout: 20) { server.server.activeTransfers == 0 }
        XCTAssertEqual(server.server.activeTransfers, 0)
        XCTAssertTrue(server.log.contains { $0.contains("read nothing for 3.0 s; disconnected") }, "\(server.log)")
        let r = try f.sync(peers: [server.peer])
        XCTAssertEqual(r.status, 0, r.stderr)
        try f.assertMirrorsUpstream()

        // A slow reader that keeps taking bytes is not cut off, however long one chunk takes.
        let slow = try StalledReader(peer: server.peer, repository: "alice/big", want: tip, readEvery: 1)
        stalled.append(slow)
        // Not being cut off can only be shown over time: more than twice the stall timeout.
        Thread.sleep(forTimeInterval: 7)
        // Still running, or finished in full (a fast machine with large socket buffers):
        // either way it was never cut off.
        let finished = server.log.contains { $0.contains("served 'alice/big'") }
        XCTAssertTrue(server.server.activeTransfers == 1 || finished, "\(server.log)")
        XCTAssertEqual(server.log.filter { $0.contains("read nothing") }.count, 1, "\(server.log)")
    }
}
