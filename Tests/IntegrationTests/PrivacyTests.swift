import Foundation
import GutsNode
import XCTest

/// Restricted repositories stay private: never announced, flagged in Refs, and a mirror
/// of one admits nobody until its owner says otherwise.
final class PrivacyTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func announcedNames(_ s: Harness.Running) -> [String] {
        s.stdout.split(separator: "\n").compactMap { line -> String? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let payload = o["payload"] as? String else { return nil }
            let bytes = o["encoding"] as? String == "base64" ? Data(base64Encoded: payload).map { [UInt8]($0) } : Array(payload.utf8)
            guard let data = bytes, case let .newRepository(r)? = Announcement.decode(data) else { return nil }
            return r.repository
        }
    }

    func testRestrictedRepositoriesAreNeverAnnouncedNorReservedToStrangers() throws {
        // The origin serves alice/secret to the follower only.
        let f = try SyncFixture(h, repoName: "alice/secret", clientName: "follower")
        try f.commit("secret", files: ["s.txt": "s\n"])
        try f.push()
        try "\(f.clientID)\n".write(toFile: f.upstream + "/guts-allow", atomically: true, encoding: .utf8)
        let (origin, originLine) = try h.listen("server", ["--announce-interval", "0.3"])
        let watcher = try h.start(["--home", h.home("w"), "-v", "--json", "gossip", "subscribe", "--raw", "--ephemeral", "--topic", "guts/repositories",
                                   "--peer", originLine, "--count", "1", "--timeout", "30"])
        watcher.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") }
        // A public repository appears later: it is announced, the restricted one never.
        let public_ = try SyncFixture(h, repoName: "alice/public", reuseServerHome: f)
        try FileManager.default.createDirectory(atPath: public_.work, withIntermediateDirectories: true)
        try SyncGit.git(["init", "-q", "."], in: public_.work)
        try "p\n".write(toFile: public_.work + "/p.txt", atomically: true, encoding: .utf8)
        try SyncGit.git(["add", "."], in: public_.work)
        try SyncGit.git(["-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "public"], in: public_.work)
        try SyncGit.git(["push", "-q", public_.upstream, "HEAD:refs/heads/main"], in: public_.work)
        XCTAssertEqual(watcher.wait(timeout: 30), 0, watcher.stderr)
        XCTAssertEqual(announcedNames(watcher), ["alice/public"])
        XCTAssertFalse(origin.stderr.contains("announcing repository alice/secret"), origin.stderr)

        // The follower, on the list, mirrors it; its copy gets an allow list that lists nobody.
        let r = try f.sync(peers: [originLine])
        XCTAssertEqual(r.status, 0, r.stderr)
        let allow = try String(contentsOfFile: f.mirror + "/guts-allow", encoding: .utf8)
        XCTAssertFalse(allow.split(separator: "\n").contains { !$0.hasPrefix("#") && !$0.trimmingCharacters(in: .whitespaces).isEmpty },
                       allow)

        // The follower's node neither serves it to a stranger nor announces it.
        let (follower, followerLine) = try h.listen("follower", ["--announce-interval", "0.3"])
        _ = try h.keygen("stranger")
        let stranger = try h.run(["--home", h.home("stranger"), "sync", "alice/secret", "--peer", followerLine])
        XCTAssertEqual(stranger.status, 9, stranger.stderr)
        XCTAssertTrue(stranger.stderr.contains("restricted"), stranger.stderr)
        let quiet = try h.start(["--home", h.home("w2"), "-v", "--json", "gossip", "subscribe", "--topic", "guts/repositories",
                                 "--peer", followerLine, "--count", "1", "--timeout", "3"])
        XCTAssertNotEqual(quiet.wait(timeout: 10), 0, "the follower announced something: \(quiet.stdout)")
        XCTAssertFalse(follower.stderr.contains("announcing repository alice/secret"), follower.stderr)
    }
}
