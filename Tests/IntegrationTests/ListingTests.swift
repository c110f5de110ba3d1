import Foundation
import GutsAddress
import GutsCrypto
import GutsSync
import GutsTransport
import GutsWire
import NIOPosix
import XCTest

/// `guts ls` against a real node: the repositories it serves (guts-allow respected), and
/// the refs of one, as `git ls-remote` prints them.
final class ListingTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func guts(_ home: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        try h.run(["--home", h.home(home)] + args, timeout: 30, file: file, line: line)
    }

    func lines(_ text: String) -> [String] { text.split(separator: "\n").map(String.init) }

    func json(_ line: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
    }

    /// A server with `alice/proj` (unsigned, two branches, an annotated tag), `alice/signed`
    /// (with an identity) and `alice/secret` (restricted to `allowed`).
    func makeServer() throws -> (SyncFixture, rid: String, allowed: String) {
        let fixture = try SyncFixture(h)
        try fixture.commit("one", files: ["a": "1\n"])
        try fixture.gitWork(["tag", "-a", "-m", "release", "v1"])
        try fixture.gitWork(["branch", "side"])
        try fixture.commit("two", files: ["a": "2\n"])
        try fixture.push()
        let signed = try SyncFixture(h, repoName: "alice/signed", reuseServerHome: fixture)
        try SyncGit.git(["push", "-q", signed.upstream, "main"], in: fixture.work)
        try SyncGit.bare(signed.upstream, ["symbolic-ref", "HEAD", "refs/heads/main"])
        let initRun = try guts("server", ["repo", "init", "alice/signed"])
        XCTAssertEqual(initRun.status, 0, initRun.stderr)
        let rid = initRun.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let secret = try SyncFixture(h, repoName: "alice/secret", reuseServerHome: fixture)
        try SyncGit.git(["push", "-q", secret.upstream, "side:main"], in: fixture.work)
        let allowed = try h.keygen("allowed")
        try "# only this peer\n\(allowed)\n".write(toFile: secret.upstream + "/guts-allow", atomically: true, encoding: .utf8)
        try fixture.startServer()
        return (fixture, rid, allowed)
    }

    func testListingRespectsGutsAllowAndMatchesGitLsRemote() throws {
        let (fixture, rid, _) = try makeServer()
        let main = try SyncGit.revParse(fixture.upstream, "refs/heads/main")
        let signedMain = try SyncGit.revParse(h.home("server") + "/repos/alice/signed.git", "refs/heads/main")

        // A peer not on the allow list does not see the restricted repository at all.
        let listed = try guts("client", ["ls", fixture.peer])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertEqual(lines(listed.stdout), [
            "alice/proj\t-\t\(main)\trefs/heads/main\tpublic",
            "alice/signed\t\(rid)\t\(signedMain)\trefs/heads/main\tpublic",
        ])
        let denied = try guts("client", ["ls", fixture.peer, "alice/secret"])
        XCTAssertEqual(denied.status, 9, denied.stderr)
        // The allowed peer sees it, marked restricted.
        let secretMain = try SyncGit.revParse(h.home("server") + "/repos/alice/secret.git", "refs/heads/main")
        let allowed = try guts("allowed", ["ls", fixture.peer])
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertEqual(lines(allowed.stdout), [
            "alice/proj\t-\t\(main)\trefs/heads/main\tpublic",
            "alice/secret\t-\t\(secretMain)\trefs/heads/main\trestricted",
            "alice/signed\t\(rid)\t\(signedMain)\trefs/heads/main\tpublic",
        ])

        // The refs of one repository are git ls-remote's lines (without peeled tags: a
        // listing carries no objects to peel).
        let remote = try SyncGit.git(["ls-remote", fixture.upstream], in: h.root.path).text
        let expected = lines(remote).filter { !$0.hasSuffix("^{}") }
        XCTAssertTrue(expected.contains { $0.hasSuffix("\trefs/tags/v1") }, remote)
        let refs = try guts("client", ["ls", fixture.peer, "alice/proj"])
        XCTAssertEqual(refs.status, 0, refs.stderr)
        XCTAssertEqual(lines(refs.stdout), expected)
        // By repository ID as well.
        let byID = try guts("client", ["ls", fixture.peer, rid])
        XCTAssertEqual(byID.status, 0, byID.stderr)
        let signedRemote = lines(try SyncGit.git(["ls-remote", h.home("server") + "/repos/alice/signed.git"], in: h.root.path).text)
        XCTAssertEqual(lines(byID.stdout), signedRemote.filter { !$0.hasSuffix("^{}") })

        // --json: one object per line.
        let listJSON = try guts("allowed", ["--json", "ls", fixture.peer])
        XCTAssertEqual(listJSON.status, 0, listJSON.stderr)
        let objects = try lines(listJSON.stdout).map(json)
        XCTAssertEqual(objects.map { $0["name"] as? String }, ["alice/proj", "alice/secret", "alice/signed"])
        XCTAssertTrue(objects[0]["id"] is NSNull)
        XCTAssertEqual(objects[2]["id"] as? String, rid)
        XCTAssertEqual(objects[0]["head"] as? String, "refs/heads/main")
        XCTAssertEqual(objects[0]["head_oid"] as? String, main)
        XCTAssertEqual(objects.map { $0["restricted"] as? Bool }, [false, true, false])
        XCTAssertEqual(Set(objects[0].keys), ["name", "id", "head", "head_oid", "restricted"])
        let refsJSON = try guts("client", ["--json", "ls", fixture.peer, "alice/proj"])
        let refObjects = try lines(refsJSON.stdout).map(json)
        XCTAssertEqual(refObjects.first?["ref"] as? String, "HEAD")
        XCTAssertEqual(refObjects.first?["target"] as? String, "refs/heads/main")
        XCTAssertEqual(refObjects.map { "\($0["oid"] as? String ?? "")\t\($0["ref"] as? String ?? "")" }, expected)

        // Errors: an unknown repository is refused (9), an unreachable peer is 4.
        XCTAssertEqual(try guts("client", ["ls", fixture.peer, "alice/nothing"]).status, 9)
        fixture.stopServer()
        XCTAssertEqual(try guts("client", ["ls", fixture.peer]).status, 4)
    }

    /// A server that lists forever or lists nonsense is cut off with exit 8 and nothing
    /// printed; a real node is still listed.
    func testHostileListingsAreRefused() throws {
        let fixture = try SyncFixture(h)
        try fixture.commit("one", files: ["a": "1\n"])
        try fixture.push()
        try fixture.startServer()
        for behavior in [MaliciousServer.Behavior.endlessListing, .badListing] {
            let hostile = try MaliciousServer(repository: fixture.upstream, behavior: behavior)
            defer { hostile.shutdown() }
            let r = try guts("client", ["ls", "--known-peers", "off", hostile.peer])
            XCTAssertEqual(r.status, 8, "\(behavior): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(behavior)")
            XCTAssertFalse(r.stderr.contains("\u{1B}"), r.stderr)
            XCTAssertLessThanOrEqual(hostile.events.count, 2, "\(behavior): \(hostile.events)")
        }
        let honest = try MaliciousServer(repository: fixture.upstream, behavior: .honest)
        defer { honest.shutdown() }
        XCTAssertEqual(try guts("client", ["ls", honest.peer]).stdout.split(separator: "\t").first, "alice/proj")
        let real = try guts("client", ["ls", fixture.peer])
        XCTAssertEqual(real.status, 0, real.stderr)
        XCTAssertTrue(real.stdout.hasPrefix("alice/proj\t"), real.stdout)
        fixture.stopServer()
    }

    func testListingPagesThroughManyRepositories() throws {
        let fixture = try SyncFixture(h)
        try fixture.commit("one", files: ["a": "1\n"])
        try fixture.push()
        // 260 repositories: more than one page of 256. Minimal empty bare repositories
        // (HEAD, objects, refs), quick to make.
        for i in 0..<260 {
            let path = h.home("server") + "/repos/many/r\(String(format: "%03d", i)).git"
            try FileManager.default.createDirectory(atPath: path + "/objects/pack", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: path + "/refs/heads", withIntermediateDirectories: true)
            try "ref: refs/heads/main\n".write(toFile: path + "/HEAD", atomically: false, encoding: .utf8)
        }
        try fixture.startServer()
        let t0 = Date()
        let listed = try guts("client", ["ls", fixture.peer])
        print("ls of 261 repositories: \(Date().timeIntervalSince(t0)) s")
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let names = lines(listed.stdout).map { String($0.split(separator: "\t")[0]) }
        XCTAssertEqual(names, ["alice/proj"] + (0..<260).map { "many/r" + String(format: "%03d", $0) })

        // A burst of listings (each a full page of work for the node) followed by a
        // disconnect: the overflow is answered busy, the rest dropped with the connection,
        // and a legitimate listing is served at once.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let config = SessionConfig(identity: .generate(), noiseStatic: .generate(), capabilities: ["ping"], agent: "attacker",
                                   protocols: MessageRegistry([SyncProtocol()]))
        let attacker = try Dialer.dial(try Endpoint.parse(fixture.peer), config: config, group: group, connectTimeout: 5,
                                       source: "127.0.0.2").wait()
        for i in 0..<200 { attacker.send(.sync(.listRepositories(ListRepositories(requestID: UInt32(i + 1))))) }
        attacker.abort()
        let started = Date()
        let again = try guts("client", ["ls", fixture.peer])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.stdout, listed.stdout)
        print("ls after a burst of 200 listings: \(Date().timeIntervalSince(started)) s")
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
        fixture.stopServer()
    }
}
