import Foundation
import GutsIdentity
import GutsNode
import GutsWire
import XCTest

/// NewRepository / SignedRefs announcements and event-driven mirroring, with real processes.
final class AnnouncementTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    @discardableResult
    func git(_ args: [String], in dir: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = ["-c", "user.name=T", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"] + args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "git \(args)")
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A bare repository at `<home>/repos/demo/app.git` with one commit, and a work tree to push from.
    func makeServedRepository(home: String) throws -> String {
        let bare = home + "/repos/demo/app.git"
        try FileManager.default.createDirectory(atPath: bare, withIntermediateDirectories: true)
        try git(["init", "-q", "--bare", "."], in: bare)
        let work = h.root.appendingPathComponent("work-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try git(["init", "-q", "."], in: work)
        try "v1\n".write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try git(["add", "file"], in: work)
        try git(["commit", "-q", "-m", "first"], in: work)
        try git(["remote", "add", "origin", bare], in: work)
        try git(["push", "-q", "origin", "main"], in: work)
        return work
    }

    /// Decoded announcements a JSON subscriber printed.
    func announcements(_ s: Harness.Running) -> [Announcement] {
        s.stdout.split(separator: "\n").compactMap { line -> Announcement? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let payload = o["payload"] as? String else { return nil }
            // Announcements are wire-encoded messages: base64 unless they happen to be valid UTF-8.
            let bytes = o["encoding"] as? String == "base64" ? Data(base64Encoded: payload).map { [UInt8]($0) } : Array(payload.utf8)
            guard let data = bytes else { return nil }
            return Announcement.decode(data)
        }
    }

    func testPushIsSignedAnnouncedOnceAndMirroredByFollowers() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("follower")
        let work = try makeServedRepository(home: h.home("origin"))
        let initRun = try h.run(["--home", h.home("origin"), "repo", "init", "demo/app"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let (origin, originLine) = try h.listen("origin", ["--announce-interval", "0.3"])
        let (follower, followerLine) = try h.listen("follower", ["--bootstrap", originLine, "--mirror", "demo/app@\(originID)",
                                                                  "--announce-interval", "0.3"])
        follower.waitFor("bootstrap connection") { _, err in err.contains("(bootstrap") }
        // The follower mirrors at start (sequence 1) and announces what it installed.
        follower.waitFor("the initial mirror", timeout: 20) { _, err in err.contains("mirror: synced demo/app") }
        follower.waitFor("a scan to see the initial mirror") { _, err in err.contains("announcing repository demo/app") }
        let watcher = try h.start(["--home", h.home("w"), "-v", "--json", "gossip", "subscribe", "--raw", "--ephemeral", "--topic", "guts/commits",
                                   "--peer", followerLine, "--count", "2", "--timeout", "30"])
        watcher.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") }

        try "v2\n".write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try git(["commit", "-q", "-am", "second"], in: work)
        try git(["push", "-q", "origin", "main"], in: work)
        let head = try git(["rev-parse", "HEAD"], in: work)

        let mirror = h.home("follower") + "/repos/demo/app.git"
        follower.waitFor("the follower to mirror the pushed commit", timeout: 20) { _, _ in
            (try? self.git(["rev-parse", "refs/heads/main"], in: mirror)) == head
        }
        XCTAssertEqual(try git(["rev-parse", "refs/heads/main"], in: mirror), head)
        XCTAssertEqual(try git(["fsck", "--full"], in: mirror), "")
        // The origin signed and announced the push once; the follower re-announced it once after mirroring.
        XCTAssertEqual(watcher.wait(timeout: 20), 0, watcher.stderr)
        let seen = announcements(watcher)
        XCTAssertEqual(seen.count, 2, watcher.stdout)
        for m in seen {
            guard case let .signedRefs(u) = m else { return XCTFail("expected SignedRefs, got \(m)") }
            XCTAssertEqual(u.delegate.description, originID)
            XCTAssertEqual(u.sequence, 2, "sequence 1 was signed by repo init")
        }
        XCTAssertTrue(origin.stderr.contains("signed demo/app: sequence 2"), origin.stderr)
    }

    func testNewRepositoryAndSyncedRefsAreAnnounced() throws {
        _ = try h.keygen("origin")
        _ = try h.keygen("cron")
        _ = try makeServedRepository(home: h.home("origin"))
        let (_, originLine) = try h.listen("origin", ["--announce-interval", "0.3"])
        // A node serving the home that cron syncs into: it announces what each sync brought.
        let (cronNode, cronLine) = try h.listen("cron", ["--announce-interval", "0.3"])
        let watcher = try h.start(["--home", h.home("w"), "-v", "--json", "gossip", "subscribe", "--raw", "--ephemeral", "--topic", "guts/repositories",
                                   "--peer", cronLine, "--count", "1", "--timeout", "30"])
        watcher.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") }
        let sync = try h.run(["--home", h.home("cron"), "sync", "demo/app", "--peer", originLine])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        cronNode.waitFor("the syncing node to announce the new repository", timeout: 15) { _, err in
            err.contains("announcing repository demo/app")
        }
        XCTAssertEqual(watcher.wait(timeout: 20), 0, watcher.stderr)
        XCTAssertEqual(announcements(watcher), [.newRepository(NewRepository(repository: "demo/app"))])
    }
}
