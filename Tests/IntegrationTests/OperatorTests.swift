import Foundation
import GutsGit
import XCTest

private func jsonLines(_ text: String) -> [[String: Any]] {
    text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

/// Cron, pipelines and people debugging peers (guts(1), guts-sync(1), guts-gossip(1)):
/// quiet success, exit codes, prompt ends, state-directory errors, honest messages.
final class OperatorTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    // MARK: Pipelines

    /// `guts gossip subscribe ... | head -1` ends right after the first line, with no
    /// second message to fail writing: the subscriber watches its stdout for the reader
    /// going away.
    func testSubscribeThroughHeadEndsAfterTheFirstLine() throws {
        _ = try h.keygen("node")
        let (_, line) = try h.listen("node")
        let out = h.root.appendingPathComponent("head.out").path
        let pipeline = try h.start(["--home", h.home("sub"), "-v", "gossip", "subscribe", "--ephemeral", "--topic", "news", "--peer", line],
                                   launcher: ["/bin/sh", "-c", "\"$0\" \"$@\" | head -1 > '\(out)'"])
        pipeline.waitFor("the subscription") { _, err in err.contains("subscribed to news") }
        // Published until one arrives (the node may take the subscription a moment later).
        var firstSeen: Date?
        for i in 0..<50 {
            let pub = try h.run(["--home", h.home("pub"), "gossip", "publish", "--ephemeral", "--topic", "news", "--peer", line,
                                 "--data", "message \(i)"])
            XCTAssertEqual(pub.status, 0, pub.stderr)
            if eventually(timeout: 0.3, { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("\n") }) {
                firstSeen = Date()
                break
            }
        }
        let seen = try XCTUnwrap(firstSeen, "no message reached the pipeline")
        XCTAssertNotNil(pipeline.wait(timeout: 10), "the pipeline did not end without a second message")
        XCTAssertLessThan(Date().timeIntervalSince(seen), 5, "ended promptly after head exited")
        let text = try String(contentsOfFile: out, encoding: .utf8)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
        XCTAssertTrue(text.contains("message "), text)
    }

    // MARK: Cron semantics of sync

    func testQuietNoOpSyncsExitZeroAndExitCodeOptsIntoOne() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer()
        let first = try f.sync(json: false, extra: ["-q"])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertEqual(first.stdout, "", "-q: nothing on stdout on success")
        XCTAssertEqual(first.stderr, "", "-q: nothing on stderr on success")
        try f.assertMirrorsUpstream()
        let again = try f.sync(json: false, extra: ["-q"])
        XCTAssertEqual(again.status, 0, "nothing new is success: \(again.stderr)")
        XCTAssertEqual(again.stdout + again.stderr, "")
        let asked = try f.sync(json: false, extra: ["-q", "--exit-code"])
        XCTAssertEqual(asked.status, 1, "--exit-code: nothing new")
        XCTAssertEqual(asked.stdout + asked.stderr, "")
        try f.commit("more")
        try f.push()
        let updated = try f.sync(json: false, extra: ["--exit-code"])
        XCTAssertEqual(updated.status, 0, updated.stderr)
        XCTAssertTrue(updated.stdout.contains("synced alice/proj"), updated.stdout)
        // Failures still speak under -q.
        let missing = try f.sync(name: "alice/missing", json: false, extra: ["-q"])
        XCTAssertEqual(missing.status, 9)
        XCTAssertEqual(missing.stdout, "")
        XCTAssertTrue(missing.stderr.contains("could not sync alice/missing"), missing.stderr)
    }

    /// Two syncs of an existing mirror that overlap (the test holds the lock until both
    /// wait for it): they take turns, one brings the new commit, the other finds it up
    /// to date; neither fails.
    func testOverlappingSyncsOfAnExistingMirrorTakeTurns() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer()
        XCTAssertEqual(try f.sync().status, 0)
        try f.commit("newer")
        try f.push()
        let held = try RepositoryLock.acquire(repositoryPath: f.mirror, wait: 0)
        let a = try h.start(["--home", f.clientHome, "--json", "sync", f.repoName, "--peer", f.peer])
        let b = try h.start(["--home", f.clientHome, "--json", "sync", f.repoName, "--peer", f.peer])
        for r in [a, b] {
            r.waitFor("the sync to wait for the lock") { _, err in err.contains("is locked by process \(getpid()); waiting up to 600 s") }
        }
        held.release()
        let statuses = [a.wait(timeout: 60), b.wait(timeout: 60)]
        XCTAssertEqual(statuses, [0, 0], "\(a.stderr) \(b.stderr)")
        let results = [a, b].compactMap { jsonLines($0.stdout).first?["status"] as? String }.sorted()
        XCTAssertEqual(results, ["up-to-date", "updated"])
        try f.assertMirrorsUpstream()
    }

    func testSeveralRepositoriesInOneRunEachWithItsResult() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        let two = try SyncFixture(h, repoName: "alice/two", reuseServerHome: f)
        try two.addBigCommit(branch: "main", blobs: 1, size: 100)
        try f.startServer()
        let both = try h.run(["--home", f.clientHome, "sync", "alice/proj", "alice/two", "--peer", f.peer])
        XCTAssertEqual(both.status, 0, both.stderr)
        XCTAssertTrue(both.stdout.contains("synced alice/proj"), both.stdout)
        XCTAssertTrue(both.stdout.contains("synced alice/two"), both.stdout)
        // --all: every repository under <home>/repos; both up to date.
        let all = try h.run(["--home", f.clientHome, "sync", "--all", "--peer", f.peer])
        XCTAssertEqual(all.status, 0, all.stderr)
        XCTAssertEqual(all.stdout, "alice/proj is up to date with \(f.peer) (unsigned)\nalice/two is up to date with \(f.peer) (unsigned)\n")
        XCTAssertEqual(try h.run(["--home", f.clientHome, "sync", "--all", "--exit-code", "--peer", f.peer]).status, 1)
        // One fails: the others are still synced; the summary code is the failure's.
        let mixed = try h.run(["--home", f.clientHome, "--json", "sync", "alice/missing", "alice/proj", "--peer", f.peer])
        XCTAssertEqual(mixed.status, 9, mixed.stderr)
        let lines = jsonLines(mixed.stdout)
        XCTAssertEqual(lines.count, 2, mixed.stdout)
        XCTAssertEqual(lines.first?["repository"] as? String, "alice/missing")
        let error = lines.first?["error"] as? [String: Any]
        XCTAssertEqual(error?["code"] as? Int, 9)
        XCTAssertEqual(error?["kind"] as? String, "refused")
        XCTAssertEqual(lines.last?["repository"] as? String, "alice/proj")
        XCTAssertEqual(lines.last?["status"] as? String, "up-to-date")
        XCTAssertTrue(mixed.stderr.contains("guts: alice/missing: could not sync alice/missing"), mixed.stderr)
        XCTAssertTrue(mixed.stderr.contains("1 of 2 repositories synced, 1 failed"), mixed.stderr)
        // Usage: --all with names, --into with several.
        XCTAssertEqual(try h.run(["--home", f.clientHome, "sync", "--all", "alice/proj", "--peer", f.peer]).status, 2)
        XCTAssertEqual(try h.run(["--home", f.clientHome, "sync", "a/b", "c/d", "--into", "/tmp/x", "--peer", f.peer]).status, 2)
    }

    // MARK: Mirroring that catches up

    /// A mirror started after the origin has commits gets them at once (no announcement
    /// needed), and one that never hears an announcement (it is not connected to the
    /// origin's gossip) catches up within its interval.
    func testMirrorSyncsAtStartAndCatchesUpWithoutAnnouncements() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer()
        _ = try h.keygen("mirror")
        let spec = "\(f.repoName)@\(f.peer)"
        let (node, _) = try h.listen("mirror", ["--mirror", spec, "--mirror-interval", "1", "--announce-interval", "0.3"])
        let copy = h.home("mirror") + "/repos/" + f.repoName + ".git"
        node.waitFor("the initial sync", timeout: 30) { _, err in err.contains("mirror: synced \(f.repoName)") }
        try f.assertMirrorsUpstream(copy)
        XCTAssertFalse(f.listener?.stderr.contains("announcing") ?? false, "nothing was announced before: \(f.listener?.stderr ?? "")")

        // The origin changes; the mirror hears nothing (no gossip link) but catches up.
        try f.commit("after the mirror started")
        try f.push()
        let head = try SyncGit.revParse(f.upstream, "refs/heads/main")
        XCTAssertTrue(eventually(timeout: 30) { SyncGit.peek(copy, "refs/heads/main") == head }, node.stderr)
        node.waitFor("the catch-up to be logged") { _, err in
            err.components(separatedBy: "mirror: synced \(f.repoName)").count >= 3
        }
        try f.assertMirrorsUpstream(copy)
        // Each line carries its time (RFC 3339, UTC) and level.
        let logged = node.stderr.split(separator: "\n").filter { $0.contains("mirror: synced") }
        for l in logged {
            XCTAssertNotNil(l.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info "#, options: .regularExpression), String(l))
        }
    }

    // MARK: Honest errors

    func testJSONErrorObjectsOnStdout() throws {
        _ = try h.keygen("c")
        let port = syncUnusedPort()
        let refused = try h.run(["--home", h.home("c"), "--json", "dial", "127.0.0.1:\(port)"])
        XCTAssertEqual(refused.status, 4)
        let object = try XCTUnwrap(jsonLines(refused.stdout).first?["error"] as? [String: Any], refused.stdout)
        XCTAssertEqual(object["code"] as? Int, 4)
        XCTAssertEqual(object["kind"] as? String, "unreachable")
        XCTAssertEqual(object["message"] as? String, "127.0.0.1:\(port): cannot connect: Connection refused")
        XCTAssertEqual(refused.stderr, "guts: 127.0.0.1:\(port): cannot connect: Connection refused\n")
        XCTAssertEqual(refused.stdout.split(separator: "\n").count, 1)
        // A usage error, the option after the command.
        let usage = try h.run(["--home", h.home("c"), "dial", "--json", "--bogus", "x"])
        XCTAssertEqual(usage.status, 2)
        XCTAssertEqual((jsonLines(usage.stdout).first?["error"] as? [String: Any])?["kind"] as? String, "usage", usage.stdout)
        // Without --json, stdout stays empty.
        XCTAssertEqual(try h.run(["--home", h.home("c"), "dial", "127.0.0.1:\(port)"]).stdout, "")
        // --log-format json: stderr lines are objects too.
        let logged = try h.run(["--home", h.home("c"), "--log-format", "json", "dial", "127.0.0.1:\(port)"])
        let line = try XCTUnwrap(jsonLines(logged.stderr).first, logged.stderr)
        XCTAssertEqual(line["level"] as? String, "error")
        XCTAssertEqual(line["message"] as? String, "127.0.0.1:\(port): cannot connect: Connection refused")
        XCTAssertNotNil((line["time"] as? String)?.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"#, options: .regularExpression))
        XCTAssertNotNil(line["fields"] as? [String: Any])
    }

    func testListenOnAPortInUseSaysSoInUserTerms() throws {
        _ = try h.keygen("a")
        _ = try h.keygen("b")
        let (_, line) = try h.listen("a")
        let address = String(line.split(separator: "@")[1])
        let r = try h.run(["--home", h.home("b"), "listen", "-l", address])
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("guts: cannot listen on \(address): address already in use\n"), r.stderr)
        XCTAssertFalse(r.stderr.contains("bind(descriptor"), r.stderr)
        XCTAssertFalse(r.stderr.contains("errno"), r.stderr)
    }

    func testPeerIDWithABadChecksumSaysSo() throws {
        let id = try h.keygen("a")
        let last = id.last == "a" ? "b" : "a"
        let typo = String(id.dropLast()) + last
        let r = try h.run(["--home", h.home("a"), "dial", "\(typo)@127.0.0.1:9"])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("bad checksum"), r.stderr)
    }

    /// No identity: refused with the way out, unless --ephemeral. A state directory of
    /// another user, or a path through a file: exit 3 naming the path and the reason.
    func testStateDirectoryErrorsAndEphemeralIdentity() throws {
        _ = try h.keygen("server")
        let (_, line) = try h.listen("server")
        let empty = h.home("empty")
        let none = try h.run(["--home", empty, "dial", line])
        XCTAssertEqual(none.status, 3)
        XCTAssertTrue(none.stderr.contains("no identity at \(empty)/identity.key"), none.stderr)
        XCTAssertTrue(none.stderr.contains("--ephemeral"), none.stderr)
        let once = try h.run(["--home", empty, "-v", "dial", "--ephemeral", line])
        XCTAssertEqual(once.status, 0, once.stderr)
        XCTAssertTrue(once.stderr.contains("one-time identity"), once.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: empty + "/identity.key"))

        let foreign = h.home("foreign")
        XCTAssertEqual(try h.run(["--home", foreign, "keygen"]).status, 0)
        XCTAssertEqual(chown(foreign, 54321, 54321), 0)
        for args in [["dial", line], ["ping", "-c", "1", line], ["sync", "a/b", "--peer", line], ["listen", "-l", "127.0.0.1:0"]] {
            let r = try h.run(["--home", foreign] + args)
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("cannot use state directory \(foreign): it is owned by uid 54321"), "\(args): \(r.stderr)")
        }
        XCTAssertEqual(chown(foreign, getuid(), getgid()), 0)
        XCTAssertEqual(chown(foreign + "/identity.key", 54321, 54321), 0)
        let key = try h.run(["--home", foreign, "dial", line])
        XCTAssertEqual(key.status, 3)
        XCTAssertTrue(key.stderr.contains("cannot use the identity \(foreign)/identity.key: it is owned by uid 54321"), key.stderr)

        let file = h.root.appendingPathComponent("plain-file").path
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        let through = try h.run(["--home", file + "/home", "dial", line])
        XCTAssertEqual(through.status, 3)
        XCTAssertTrue(through.stderr.contains("cannot use state directory \(file)/home: Not a directory"), through.stderr)
    }

    // MARK: Smaller items

    /// Bad values in the config file are reported with file:line and the value.
    func testConfigValueErrorsNameFileAndLine() throws {
        _ = try h.keygen("c")
        let config = h.home("c") + "/config"
        for (text, expected) in [("# x\nidle-timeout = 0.5\n", "\(config):2: idle-timeout = '0.5': must be a number from 1 to 86400"),
                                 ("\n\nlisten = 127.0.0.1:99999\n", "\(config):3: listen: invalid address"),
                                 ("bootstrap = gtbad@127.0.0.1\n", "\(config):1: bootstrap: invalid address 'gtbad@127.0.0.1'")] {
            try text.write(toFile: config, atomically: true, encoding: .utf8)
            let r = try h.run(["--home", h.home("c"), "dial", "127.0.0.1:9"])
            XCTAssertEqual(r.status, 3, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("guts: " + expected), "\(r.stderr) vs \(expected)")
        }
    }

    func testGroupHelpPingQuietAndDeadline() throws {
        for args in [["help", "gossip"], ["gossip", "--help"], ["help", "repo"], ["repo", "delegates", "--help"]] {
            let r = try h.run(args)
            XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stdout.hasPrefix("usage: guts \(args.filter { $0 != "help" && $0 != "--help" }.joined(separator: " "))"), r.stdout)
        }
        _ = try h.keygen("server")
        _ = try h.keygen("c")
        let (_, line) = try h.listen("server")
        let quiet = try h.run(["--home", h.home("c"), "ping", "-q", "-c", "3", "-i", "0.05", line])
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        let lines = quiet.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 4, quiet.stdout)
        XCTAssertTrue(lines.first?.hasPrefix("--- ") ?? false, quiet.stdout)
        XCTAssertTrue(quiet.stdout.contains("3 pings transmitted, 3 received"), quiet.stdout)
        let started = Date()
        let deadline = try h.run(["--home", h.home("c"), "ping", "-w", "1", "-i", "0.2", line])
        let took = Date().timeIntervalSince(started)
        XCTAssertEqual(deadline.status, 0, deadline.stderr)
        XCTAssertLessThan(took, 5, "-w 1 ends the run")
        XCTAssertGreaterThanOrEqual(took, 1)
        XCTAssertTrue(deadline.stdout.contains("ping statistics"), deadline.stdout)
    }

    /// Announcements are printed decoded (text and JSON); --raw keeps the payload.
    func testSubscribeDecodesAnnouncements() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer(["--announce-interval", "0.3"])
        let json = try h.start(["--home", h.home("w"), "-v", "--json", "gossip", "subscribe", "--ephemeral", "--topic", "guts/repositories",
                                "--peer", f.peer, "--count", "1", "--timeout", "30"])
        let text = try h.start(["--home", h.home("t"), "-v", "gossip", "subscribe", "--ephemeral", "--topic", "guts/repositories",
                                "--peer", f.peer, "--count", "1", "--timeout", "30"])
        let raw = try h.start(["--home", h.home("r"), "-v", "--json", "gossip", "subscribe", "--ephemeral", "--raw", "--topic", "guts/repositories",
                               "--peer", f.peer, "--count", "1", "--timeout", "30"])
        for s in [json, text, raw] { s.waitFor("the subscription") { _, err in err.contains("subscribed to") } }
        // 'subscribed to' comes once the node has the subscription; then a new repository appears.
        let two = try SyncFixture(h, repoName: "alice/two", reuseServerHome: f)
        try two.addBigCommit(branch: "main", blobs: 1, size: 10)
        for s in [json, text, raw] { XCTAssertEqual(s.wait(timeout: 30), 0, s.stderr) }
        let object = try XCTUnwrap(jsonLines(json.stdout).first, json.stdout)
        XCTAssertEqual(object["type"] as? String, "NewRepository")
        // The first scan's alice/proj, when a subscription was in place in time, else alice/two.
        let names = ["alice/proj", "alice/two"]
        XCTAssertTrue(names.contains(object["repository"] as? String ?? ""), json.stdout)
        XCTAssertEqual(object["origin"] as? String, f.serverID)
        XCTAssertTrue(names.contains { text.stdout.hasSuffix(" NewRepository repository=\($0)\n") }, text.stdout)
        XCTAssertTrue(text.stdout.hasPrefix(f.serverID + " "), text.stdout)
        let rawObject = try XCTUnwrap(jsonLines(raw.stdout).first, raw.stdout)
        XCTAssertNil(rawObject["type"])
        XCTAssertNotNil(rawObject["payload"])
    }
}
