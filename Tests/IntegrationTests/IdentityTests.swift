import Foundation
import GutsCrypto
import GutsGit
import GutsIdentity
import GutsNode
@testable import GutsTrust
import GutsWire
import XCTest

/// Repository identities and signed refs with real processes: an origin that signs, a
/// follower that accepts only signed state, and attackers that serve or announce
/// anything else.
final class IdentityTests: XCTestCase {
    var h: Harness!
    var clock = 1_700_000_000

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    // MARK: Helpers

    @discardableResult
    func git(_ args: [String], in dir: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        clock += 60
        return try SyncGit.git(args, in: dir, date: clock, file: file, line: line).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func bare(_ home: String, _ name: String = "demo/app") -> String { h.home(home) + "/repos/" + name + ".git" }

    /// A bare repository `<home>/repos/demo/app.git` with one commit pushed from a new work tree.
    func makeRepository(_ home: String, content: String = "v1") throws -> String {
        let repo = bare(home)
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        try git(["init", "-q", "--bare", "."], in: repo)
        let work = h.root.appendingPathComponent("work-\(home)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try git(["init", "-q", "."], in: work)
        try git(["remote", "add", "origin", repo], in: work)
        try commitAndPush(work, content)
        return work
    }

    @discardableResult
    func commitAndPush(_ work: String, _ content: String, branch: String = "main") throws -> String {
        try (content + "\n").write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try git(["add", "file"], in: work)
        try git(["commit", "-q", "-m", content], in: work)
        try git(["push", "-q", "origin", "HEAD:\(branch)"], in: work)
        return try git(["rev-parse", "HEAD"], in: work)
    }

    func guts(_ home: String, _ args: [String], timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        try h.run(["--home", h.home(home)] + args, timeout: timeout, file: file, line: line)
    }

    func refs(_ gitDir: String) throws -> [String] { try SyncGit.refs(gitDir) }

    /// `git clone --mirror` of `from` into `to` (replacing it).
    func copyRepository(_ from: String, to: String) throws {
        try? FileManager.default.removeItem(atPath: to)
        try FileManager.default.createDirectory(atPath: (to as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try git(["clone", "-q", "--mirror", from, to], in: h.root.path)
    }

    func key(_ home: String) throws -> Ed25519KeyPair { try Identity.load(home: h.home(home)).keyPair }

    /// A commit in `repo` that no delegate signed.
    func foreignCommit(_ repo: Repository, _ text: String) throws -> ObjectID {
        let blob = try repo.writeLoose(type: .blob, body: Array(text.utf8))
        let tree = try repo.writeLoose(type: .tree, body: Tree(entries: [TreeEntry(mode: 0o100644, name: Array("file".utf8), id: blob)]).serialized())
        let sig = Signature(name: "Mallory", email: "m@example.com", time: 1_700_000_000, timezone: "+0000")
        return try repo.writeLoose(type: .commit, body: Commit(tree: tree, parents: [], author: sig, committer: sig, message: Array((text + "\n").utf8)).serialized())
    }

    /// Writes `signed` as the signed-refs commit of `namespace` and points the
    /// namespace's refs at what it lists (so a server hands out the objects).
    func install(_ signed: SignedRefs, in repo: Repository, namespace: PeerID, key: Ed25519KeyPair) throws {
        let commit = try TrustStore.writeCommit(repo, files: [("signed-refs", signed.serialized())], parent: nil,
                                                message: "forged\n", key: key, time: 1_700_000_000)
        let ns = TrustLayout.namespace(namespace)
        try repo.replaceRefs(under: ns, with: signed.refs.map { (ns + $0.name, $0.id) } + [(TrustLayout.sigrefsRef(namespace), commit)])
    }

    // MARK: One-shot sync against a hostile server

    func testSyncAcceptsOnlySignedStateFromAnyServer() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("client")
        let evilID = try h.keygen("evil")
        let work = try makeRepository("origin")
        let rid = try guts("origin", ["repo", "init", "demo/app"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertNotNil(RepositoryID(rid), rid)
        let (origin, originLine) = try h.listen("origin", ["--announce-interval", "0.2"])
        let mirror = bare("client")

        // First sync from a delegate named by peer ID: pinned.
        let first = try guts("client", ["sync", "demo/app", "--peer", originLine])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("identity \(rid), version 1"), first.stdout)
        // Evil keeps a copy of this state (sequence 1) for a replay later.
        let evilRepo = bare("evil")
        try copyRepository(bare("origin"), to: evilRepo)

        // The origin moves on: its node signs sequence 2.
        let second = try commitAndPush(work, "v2")
        origin.waitFor("the origin to sign the push") { _, err in err.contains("signed demo/app: sequence 2") }
        let update = try guts("client", ["--json", "sync", "demo/app", "--peer", originLine])
        XCTAssertEqual(update.status, 0, update.stderr)
        XCTAssertEqual(try SyncGit.revParse(mirror, "refs/heads/main"), second)
        let pinnedRefs = try refs(mirror)
        XCTAssertTrue(pinnedRefs.contains("refs/namespaces/\(originID)/refs/heads/main \(second)"), "\(pinnedRefs)")
        let (_, evilLine) = try h.listen("evil", [])

        func refused(_ what: String, _ expectedStatus: Int32 = 6, _ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
            let r = try guts("client", ["sync", "demo/app", "--peer", evilLine], file: file, line: line)
            XCTAssertEqual(r.status, expectedStatus, "\(what): \(r.stdout) \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.stderr.contains(text), "\(what): \(r.stderr)", file: file, line: line)
            XCTAssertEqual(try refs(mirror), pinnedRefs, "\(what) changed the follower's refs", file: file, line: line)
            // Each attack is held against evil in the client's peer book (four would ban it
            // and later syncs would skip it): checked, then forgiven so the next attack is
            // tried on its own.
            XCTAssertTrue(r.stderr.contains("recorded bad-objects in the peer book"), "\(what): \(r.stderr)", file: file, line: line)
            let forgive = try guts("client", ["peers", "unban", evilID], file: file, line: line)
            XCTAssertEqual(forgive.status, 0, forgive.stderr, file: file, line: line)
        }

        // 1. Rollback: a genuine but older signed state (sequence 1 < 2).
        try refused("rollback", 6, "rollback refused")

        // 2. Forged: the newer-looking state with main moved, the signature kept.
        let origin0 = try XCTUnwrap(PeerID(originID))
        let evilPeer = try XCTUnwrap(PeerID(evilID))
        let evilKey = try key("evil")
        var r = try Repository.open(evilRepo)
        let chain = try XCTUnwrap(try TrustStore.identity(of: r))
        var forged = try XCTUnwrap(try TrustStore.installedStates(r, identity: chain)[origin0]).refs
        let mallory = try foreignCommit(r, "mallory")
        forged.refs = [("refs/heads/main", mallory)]
        forged.sequence = 3
        try install(forged, in: r, namespace: origin0, key: evilKey)
        try refused("forged signature", 6, "does not verify")

        // 3. A non-delegate's validly signed state, put in the delegate's namespace.
        var foreign = SignedRefs(repository: chain.id, delegate: evilPeer, sequence: 3, time: 1_700_000_000,
                                 refs: [("refs/heads/main", mallory)])
        foreign.sign(with: evilKey)
        try install(foreign, in: r, namespace: origin0, key: evilKey)
        try refused("non-delegate", 6, "as their delegate")

        // 4. The genuine state, plus refs nobody signed: a non-delegate's own signed refs in
        //    its namespace, an unsigned branch and an extra ref in the delegate's namespace.
        try copyRepository(bare("origin"), to: evilRepo)
        r = try Repository.open(evilRepo)
        let mallory2 = try foreignCommit(r, "mallory2")
        var own = SignedRefs(repository: chain.id, delegate: evilPeer, sequence: 1, time: 1_700_000_000, refs: [("refs/heads/main", mallory2)])
        own.sign(with: evilKey)
        try install(own, in: r, namespace: evilPeer, key: evilKey)
        try r.updateRef("refs/heads/evil", to: mallory2)
        try r.updateRef("refs/namespaces/\(originID)/refs/heads/unsigned", to: mallory2)
        let extra = try guts("client", ["sync", "demo/app", "--peer", evilLine])
        XCTAssertEqual(extra.status, 0, "up to date: nothing signed is new. \(extra.stdout) \(extra.stderr)")
        XCTAssertEqual(try refs(mirror), pinnedRefs, "unsigned refs were installed")

        // 5. An identity update that lacks the threshold: evil adds itself.
        let doc2 = TrustStore.nextVersion(of: chain) { $0.delegates.append(evilPeer) }
        let v2 = try TrustStore.writeCommit(r, files: [("identity", doc2.serialized()),
                                                       ("signatures", DocumentSignatures([evilPeer: evilKey.sign(doc2.signingMessage)]).serialized())],
                                            parent: chain.tip, message: "identity version 2\n", key: evilKey, time: 1_700_000_000)
        try r.updateRef(TrustLayout.identityRef, to: v2)
        try refused("identity update without threshold", 6, "not a delegate")

        // 6. Another identity under the same name.
        try? FileManager.default.removeItem(atPath: evilRepo)
        _ = try makeRepository("evil", content: "evil")
        XCTAssertEqual(try guts("evil", ["repo", "init", "demo/app"]).status, 0)
        try refused("identity mismatch", 6, "identity mismatch")

        // 7. A first sync naming only a non-delegate never pins what it offers, even a
        //    genuine copy; the same peer is fine when the user gives the repository ID.
        try copyRepository(bare("origin"), to: evilRepo)
        _ = try h.keygen("newcomer")
        let untrusted = try guts("newcomer", ["sync", "demo/app", "--peer", evilLine])
        XCTAssertEqual(untrusted.status, 5, untrusted.stderr)
        XCTAssertTrue(untrusted.stderr.contains("not one of its delegates"), untrusted.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: bare("newcomer")), "nothing may be left behind")
        let byID = try guts("newcomer", ["sync", rid, "--peer", evilLine])
        XCTAssertEqual(byID.status, 0, byID.stderr)
        XCTAssertEqual(try SyncGit.revParse(bare("newcomer"), "refs/heads/main"), second, "named after its identity document")
        // The follower still verifies, with git and with guts.
        try SyncGit.assertFsckClean(mirror)
        let verify = try guts("client", ["objects", "verify", mirror])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    /// Freeze defences (guts-identity(5), FRESHNESS): signed state dated in the future is
    /// refused, `--max-age` fails on state older than asked, and a delegate's running node
    /// signs its unchanged refs again so followers can tell quiet from withheld.
    func testFreezeDefences() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("client")
        _ = try h.keygen("evil")
        let work = try makeRepository("origin")
        let rid = try guts("origin", ["repo", "init", "demo/app"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let head = try git(["rev-parse", "HEAD"], in: work)
        let originKey = try key("origin")
        let origin0 = try XCTUnwrap(PeerID(originID))
        let now = Int64(Date().timeIntervalSince1970)

        // A copy at evil whose newest state (sequence 2) the delegate signed, dated as given.
        let evilRepo = bare("evil")
        func serve(time: Int64) throws {
            try copyRepository(bare("origin"), to: evilRepo)
            let r = try Repository.open(evilRepo)
            let chain = try XCTUnwrap(try TrustStore.identity(of: r))
            var state = SignedRefs(repository: chain.id, delegate: origin0, sequence: 2, time: time, refs: [("refs/heads/main", try XCTUnwrap(ObjectID(hex: head)))])
            state.sign(with: originKey)
            try install(state, in: r, namespace: origin0, key: originKey)
        }
        let (_, evilLine) = try h.listen("evil", [])

        // 1. Two hours ahead of the clock: refused, nothing installed, the sender held to it.
        try serve(time: now + 7200)
        let future = try guts("client", ["sync", rid, "--peer", evilLine])
        XCTAssertEqual(future.status, 6, future.stderr)
        XCTAssertTrue(future.stderr.contains("in the future"), future.stderr)
        XCTAssertTrue(future.stderr.contains("recorded bad-objects in the peer book"), future.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: bare("client")), "nothing may be left behind")

        // 2. Ten days old: accepted without a limit, but --max-age 1 day says it is stale.
        try serve(time: now - 864_000)
        let old = try guts("client", ["sync", rid, "--peer", evilLine, "--max-age", "86400"])
        XCTAssertEqual(old.status, 6, old.stderr)
        XCTAssertTrue(old.stderr.contains("older than --max-age"), old.stderr)
        XCTAssertFalse(old.stderr.contains("recorded"), "a quiet repository is not the peer's fault: \(old.stderr)")
        XCTAssertEqual(try guts("client", ["sync", rid, "--peer", evilLine, "--exit-code"]).status, 1, "installed, and up to date")

        // 3. The delegate's running node signs its unchanged refs again once they are older
        //    than --resign-interval, so a follower asking for fresh state gets it.
        let (origin, originLine) = try h.listen("origin", ["--announce-interval", "0.2", "--resign-interval", "1"])
        origin.waitFor("the unchanged refs signed again") { _, err in err.contains("signed demo/app: sequence 3") }
        let fresh = try guts("client", ["sync", rid, "--peer", originLine, "--max-age", "600"])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertEqual(try SyncGit.revParse(bare("client"), "refs/heads/main"), head, "the same refs, freshly signed")
    }

    func testASignedDeletionRemovesTheRefAndNothingElse() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("client")
        let work = try makeRepository("origin")
        try git(["checkout", "-q", "-b", "topic"], in: work)
        let topic = try commitAndPush(work, "topic", branch: "topic")
        XCTAssertEqual(try guts("origin", ["repo", "init", "demo/app"]).status, 0)
        let (_, originLine) = try h.listen("origin", [])
        XCTAssertEqual(try guts("client", ["sync", "demo/app", "--peer", originLine]).status, 0)
        let mirror = bare("client")
        XCTAssertEqual(try SyncGit.revParse(mirror, "refs/heads/topic"), topic)
        // The delegate deletes the branch: its next signed refs omit it.
        try git(["push", "-q", "origin", "--delete", "topic"], in: work)
        let signed = try guts("origin", ["repo", "sign", "demo/app"])
        XCTAssertEqual(signed.status, 0, signed.stderr)
        let r = try guts("client", ["--json", "sync", "demo/app", "--peer", originLine])
        XCTAssertEqual(r.status, 0, r.stderr)
        let after = try refs(mirror)
        XCTAssertFalse(after.contains { $0.hasPrefix("refs/heads/topic ") }, "\(after)")
        XCTAssertFalse(after.contains { $0.hasPrefix("refs/namespaces/\(originID)/refs/heads/topic ") }, "\(after)")
        XCTAssertTrue(after.contains { $0.hasPrefix("refs/heads/main ") }, "\(after)")
        let verify = try guts("client", ["objects", "verify", mirror])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    // MARK: The attack of issue 11: a hostile announcer

    func testHostileAnnouncerCannotRewriteWhatAFollowerMirrors() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("follower")
        _ = try h.keygen("mallory")
        _ = try h.keygen("replayer")
        let work = try makeRepository("origin")
        let rid = try guts("origin", ["repo", "init", "demo/app"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let (origin, originLine) = try h.listen("origin", ["--announce-interval", "0.2"])
        let (follower, followerLine) = try h.listen("follower", ["--bootstrap", originLine, "--mirror", "demo/app@\(originID)",
                                                                  "--announce-interval", "0.2"])
        follower.waitFor("bootstrap connection") { _, err in err.contains("(bootstrap") }
        let genuine = try commitAndPush(work, "genuine")
        origin.waitFor("the origin to sign") { _, err in err.contains("signed demo/app: sequence 2") }
        let mirror = bare("follower")
        follower.waitFor("the follower to mirror", timeout: 20) { _, _ in SyncGit.peek(mirror, "refs/heads/main") == genuine }
        XCTAssertEqual(try SyncGit.revParse(mirror, "refs/heads/main"), genuine)
        let before = try refs(mirror)

        // Mallory: a throwaway node with its own demo/app and history, announced signed...
        let malloryWork = try makeRepository("mallory", content: "evil")
        XCTAssertEqual(try guts("mallory", ["repo", "init", "demo/app"]).status, 0)
        let (mallory, _) = try h.listen("mallory", ["--bootstrap", followerLine, "--announce-interval", "0.2"])
        mallory.waitFor("mallory to connect") { _, err in err.contains("(bootstrap") }
        try commitAndPush(malloryWork, "evil 2")
        mallory.waitFor("mallory to announce") { _, err in err.contains("announcing demo/app signed by") }
        // ...and a replayer: a genuine copy of the origin's state, announced as newer.
        try copyRepository(bare("origin"), to: bare("replayer"))
        let (replayer, _) = try h.listen("replayer", ["--bootstrap", followerLine, "--announce-interval", "0.2"])
        replayer.waitFor("the replayer to connect") { _, err in err.contains("(bootstrap") }
        let state = try XCTUnwrap(try TrustStore.installedStates(try Repository.open(bare("replayer")),
                                                                 identity: try XCTUnwrap(try TrustStore.identity(of: try Repository.open(bare("replayer")))))
            .first?.value)
        let lie = Announcement.signedRefs(SignedRefsUpdate(repository: try XCTUnwrap(RepositoryID(rid)), delegate: try XCTUnwrap(PeerID(originID)),
                                                           sequence: 99, signedRefs: try XCTUnwrap(WireOID(state.commit.bytes))))
        let payload = h.root.appendingPathComponent("lie.bin").path
        try Data(try lie.encoded()).write(to: URL(fileURLWithPath: payload))
        let publish = try h.run(["--home", h.home("replayer"), "gossip", "publish", "--topic", "guts/commits"],
                                launcher: ["/bin/sh", "-c", "exec \"$0\" \"$@\" < '\(payload)'"])
        XCTAssertEqual(publish.status, 0, publish.stderr)

        follower.waitFor("the follower to blame the replayer", timeout: 20) { _, err in err.contains("misbehaved: stale") }
        XCTAssertTrue(follower.stderr.contains("sequence 99 were announced"), follower.stderr)
        // Mallory's announcements named another repository ID: never followed.
        XCTAssertFalse(follower.stderr.contains("announcement: \(try Identity.load(home: h.home("mallory")).peerID.short)"), follower.stderr)
        XCTAssertEqual(try refs(mirror), before, "the follower's refs changed")
        XCTAssertEqual(try SyncGit.revParse(mirror, "refs/heads/main"), genuine)

        // The genuine origin still gets through.
        let next = try commitAndPush(work, "genuine 2")
        follower.waitFor("the follower to mirror the next push", timeout: 20) { _, _ in
            (try? SyncGit.revParse(mirror, "refs/heads/main")) == next
        }
    }

    // MARK: Unsigned repositories

    func testUnsignedMirrorFollowsOnlyTheNamedPeer() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("follower")
        _ = try h.keygen("stranger")
        let work = try makeRepository("origin")
        let strangerWork = try makeRepository("stranger", content: "stranger")
        let (_, originLine) = try h.listen("origin", ["--announce-interval", "0.2"])
        let (follower, followerLine) = try h.listen("follower", ["--bootstrap", originLine, "--mirror", "demo/app@\(originID)",
                                                                  "--announce-interval", "0.2"])
        follower.waitFor("bootstrap connection") { _, err in err.contains("(bootstrap") }
        let (stranger, _) = try h.listen("stranger", ["--bootstrap", followerLine, "--announce-interval", "0.2"])
        stranger.waitFor("the stranger to connect") { _, err in err.contains("(bootstrap") }
        stranger.waitFor("the stranger's first scan") { _, err in err.contains("announcing repository demo/app") }
        try commitAndPush(strangerWork, "stranger 2")
        stranger.waitFor("the stranger to announce") { _, err in err.contains("announcing demo/app: refs changed (unsigned)") }
        let genuine = try commitAndPush(work, "origin 2")
        follower.waitFor("the follower to mirror the origin", timeout: 20) { _, _ in
            SyncGit.peek(self.bare("follower"), "refs/heads/main") == genuine
        }
        XCTAssertEqual(try SyncGit.revParse(bare("follower"), "refs/heads/main"), genuine)
        XCTAssertFalse(follower.stderr.contains("announcement: \(try Identity.load(home: h.home("stranger")).peerID.short) changed"), follower.stderr)
        // A one-shot sync of an unsigned repository works as before and says so.
        _ = try h.keygen("cron")
        let once = try guts("cron", ["sync", "demo/app", "--peer", originLine])
        XCTAssertEqual(once.status, 0, once.stderr)
        XCTAssertTrue(once.stdout.contains("unsigned (no identity)"), once.stdout)
    }

    // MARK: Interop with stock git

    func testStockGitClonesAndChecksSignedRepositories() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("client")
        let work = try makeRepository("origin")
        try git(["tag", "-a", "v1", "-m", "release"], in: work)
        try git(["push", "-q", "origin", "v1"], in: work)
        try git(["checkout", "-q", "-b", "topic"], in: work)
        let topic = try commitAndPush(work, "topic", branch: "topic")
        XCTAssertEqual(try guts("origin", ["repo", "init", "demo/app", "--description", "interop"]).status, 0)
        let (_, originLine) = try h.listen("origin", [])
        XCTAssertEqual(try guts("client", ["sync", "demo/app", "--peer", originLine]).status, 0)
        for repo in [bare("origin"), bare("client")] {
            try SyncGit.assertFsckClean(repo)
            let verify = try guts("client", ["objects", "verify", repo])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            // A clone of branches and tags gets exactly those, nothing reserved.
            let clone = h.root.appendingPathComponent("clone-\(UUID().uuidString.prefix(6))").path
            try git(["clone", "-q", "file://" + repo, clone], in: h.root.path)
            let cloned = try git(["for-each-ref", "--format=%(refname)"], in: clone).split(separator: "\n")
            XCTAssertEqual(cloned.sorted(), ["refs/heads/main", "refs/remotes/origin/HEAD", "refs/remotes/origin/main",
                                             "refs/remotes/origin/topic", "refs/tags/v1"], "\(cloned)")
            XCTAssertEqual(try git(["rev-parse", "origin/topic"], in: clone), topic)
            XCTAssertEqual(try git(["fsck", "--full", "--strict"], in: clone), "")
            // A mirror clone carries the identity and signed refs, and stock git checks them clean.
            let mirrorClone = clone + "-mirror.git"
            try git(["clone", "-q", "--mirror", "file://" + repo, mirrorClone], in: h.root.path)
            try SyncGit.assertFsckClean(mirrorClone)
            XCTAssertTrue(try git(["cat-file", "-p", "refs/guts/id:identity"], in: mirrorClone).contains("description interop"))
            XCTAssertTrue(try git(["cat-file", "-p", "refs/namespaces/\(originID)/refs/guts/sigrefs:signed-refs"], in: mirrorClone)
                .contains("refs/heads/topic"))
        }
        // guts objects verify notices a namespace that differs from what was signed.
        let tampered = bare("client")
        try git(["--git-dir", tampered, "update-ref", "refs/namespaces/\(originID)/refs/heads/main", topic], in: h.root.path)
        let verify = try guts("client", ["objects", "verify", tampered])
        XCTAssertEqual(verify.status, 6, verify.stdout)
        XCTAssertTrue(verify.stdout.contains("bad-signed-refs refs/namespaces/\(originID)/refs/heads/main: is at \(topic)"), verify.stdout)
    }

    // MARK: Delegates

    func testTwoDelegatesAndTheThreshold() throws {
        let aliceID = try h.keygen("alice")
        let bobID = try h.keygen("bob")
        _ = try h.keygen("carol")
        let work = try makeRepository("alice")
        let rid = try guts("alice", ["repo", "init", "demo/app"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let x = try git(["rev-parse", "HEAD"], in: work)
        // Bob joins with threshold 2: from now on branches move only where both signed.
        let add = try guts("alice", ["repo", "delegates", "add", "demo/app", bobID, "--threshold", "2"])
        XCTAssertEqual(add.status, 0, add.stderr)
        XCTAssertTrue(add.stdout.contains("threshold       2 of 2"), add.stdout)
        // A further change needs both signatures; one alone is refused.
        let refusedChange = try guts("alice", ["repo", "delegates", "remove", "demo/app", bobID])
        XCTAssertEqual(refusedChange.status, 9, refusedChange.stderr)
        let (_, aliceLine) = try h.listen("alice", [])
        // Carol follows by ID: only Alice has signed, so no canonical branch yet.
        let c1 = try guts("carol", ["--json", "sync", rid, "--peer", aliceLine])
        XCTAssertEqual(c1.status, 0, c1.stderr)
        let carol = bare("carol")
        XCTAssertEqual(try SyncGit.revParse(carol, "refs/namespaces/\(aliceID)/refs/heads/main"), x)
        XCTAssertFalse(try refs(carol).contains { $0.hasPrefix("refs/heads/main ") }, "one of two delegates cannot move main")
        // Bob syncs, makes the mirror his working copy and signs main at X too.
        XCTAssertEqual(try guts("bob", ["sync", "demo/app", "--peer", aliceLine]).status, 0)
        let adopt = try guts("bob", ["repo", "init", "demo/app"])
        XCTAssertEqual(adopt.status, 0, adopt.stderr)
        try git(["--git-dir", bare("bob"), "update-ref", "refs/heads/main", x], in: h.root.path)
        XCTAssertEqual(try guts("bob", ["repo", "sign", "demo/app"]).status, 0)
        let (_, bobLine) = try h.listen("bob", [])
        let c2 = try guts("carol", ["sync", "demo/app", "--peer", bobLine])
        XCTAssertEqual(c2.status, 0, c2.stderr)
        XCTAssertEqual(try SyncGit.revParse(carol, "refs/heads/main"), x, "both delegates signed X")
        XCTAssertEqual(try SyncGit.head(carol), "refs/heads/main")
        let show = try guts("carol", ["--json", "repo", "show", "demo/app"])
        XCTAssertEqual(show.status, 0, show.stderr)
        let shown = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((shown["delegates"] as? [[String: Any]])?.compactMap { $0["sequence"] as? Int }.count, 2)
    }

    func testDelegatesCollectSignaturesThroughAProposal() throws {
        _ = try h.keygen("alice")
        let bobID = try h.keygen("bob")
        let carolID = try h.keygen("carol")
        _ = try makeRepository("alice")
        let rid = try guts("alice", ["repo", "init", "demo/app"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try guts("alice", ["repo", "delegates", "add", "demo/app", bobID, "--threshold", "2"]).status, 0)
        let (_, aliceLine) = try h.listen("alice", [])
        XCTAssertEqual(try guts("bob", ["sync", rid, "--peer", aliceLine]).status, 0)
        XCTAssertEqual(try guts("bob", ["repo", "init", "demo/app"]).status, 0)
        // Alone, Alice cannot publish version 3; she is told how to collect signatures.
        let alone = try guts("alice", ["repo", "delegates", "add", "demo/app", carolID])
        XCTAssertEqual(alone.status, 9, alone.stderr)
        XCTAssertTrue(alone.stderr.contains("--proposal"), alone.stderr)
        let file = h.root.appendingPathComponent("add-carol.proposal").path
        let proposed = try guts("alice", ["repo", "delegates", "add", "demo/app", carolID, "--proposal", file])
        XCTAssertEqual(proposed.status, 0, proposed.stderr)
        XCTAssertTrue(proposed.stderr.contains("1 of 2 signatures"), proposed.stderr)
        XCTAssertEqual(try guts("alice", ["--json", "repo", "show", "demo/app"]).stdout.contains("\"version\":2"), true)
        // A tampered copy (Carol made threshold 1) is refused before anyone signs it.
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let tampered = h.root.appendingPathComponent("tampered.proposal").path
        try text.replacingOccurrences(of: "threshold 2\n", with: "threshold 1\n").write(toFile: tampered, atomically: true, encoding: .utf8)
        let refused = try guts("bob", ["repo", "approve", tampered])
        XCTAssertEqual(refused.status, 6, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("do not verify"), refused.stderr)
        // Carol is not a delegate of version 2: she cannot approve her own admission.
        XCTAssertEqual(try guts("carol", ["sync", rid, "--peer", aliceLine]).status, 0)
        XCTAssertEqual(try guts("carol", ["repo", "approve", file]).status, 9)
        // Bob's signature meets the threshold: approving publishes version 3 in his copy.
        let approved = try guts("bob", ["--json", "repo", "approve", file])
        XCTAssertEqual(approved.status, 0, approved.stderr)
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(approved.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(result["published"] as? Bool, true, approved.stdout)
        XCTAssertEqual(result["signatures"] as? Int, 2)
        XCTAssertEqual(result["delegates_added"] as? [String], [carolID])
        // A follower learns version 3 from Bob, and it verifies.
        let (_, bobLine) = try h.listen("bob", [])
        let c = try guts("carol", ["sync", rid, "--peer", bobLine])
        XCTAssertEqual(c.status, 0, c.stderr)
        let show = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try guts("carol", ["--json", "repo", "show", rid]).stdout.utf8)) as? [String: Any])
        XCTAssertEqual(show["version"] as? Int, 3)
        XCTAssertEqual((show["delegates"] as? [[String: Any]])?.count, 3)
        XCTAssertEqual(try guts("carol", ["objects", "verify", bare("carol")]).status, 0)
        // The same proposal is stale now.
        let again = try guts("bob", ["repo", "approve", file])
        XCTAssertEqual(again.status, 9, again.stderr)
        XCTAssertTrue(again.stderr.contains("already published"), again.stderr)
    }

    // MARK: Gossip cost

    func testOnePushToA1500RefRepositoryCostsOneAnnouncementPerNode() throws {
        let originID = try h.keygen("origin")
        _ = try h.keygen("follower")
        let work = try makeRepository("origin")
        let head = try git(["rev-parse", "HEAD"], in: work)
        var lines = ""
        for i in 0..<1500 { lines += "create refs/heads/branch-\(i) \(head)\n" }
        try SyncGit.bare(bare("origin"), ["update-ref", "--stdin"], input: Data(lines.utf8))
        XCTAssertEqual(try guts("origin", ["repo", "init", "demo/app"]).status, 0)
        let (origin, originLine) = try h.listen("origin", ["--announce-interval", "0.2"])
        let (follower, followerLine) = try h.listen("follower", ["--bootstrap", originLine, "--mirror", "demo/app@\(originID)",
                                                                  "--announce-interval", "0.2"])
        follower.waitFor("bootstrap connection") { _, err in err.contains("(bootstrap") }
        // The first mirror of all 1,501 refs, at start, installed and seen by a scan.
        follower.waitFor("the initial mirror", timeout: 30) { _, err in err.contains("announcing repository demo/app") }
        let first = try commitAndPush(work, "first push")
        follower.waitFor("the first mirror", timeout: 30) { _, _ in SyncGit.peek(self.bare("follower"), "refs/heads/main") == first }
        follower.waitFor("the follower to announce what it mirrored") { _, err in
            err.contains("announcing demo/app signed by \(originID.prefix(12)), sequence 2")
        }
        let watcher = try h.start(["--home", h.home("w"), "-v", "--json", "gossip", "subscribe", "--raw", "--ephemeral", "--topic", "guts/commits",
                                   "--peer", followerLine, "--count", "2", "--timeout", "40"])
        watcher.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") }
        func announced(_ node: Harness.Running) -> Int { node.stderr.components(separatedBy: "announcing demo/app signed by").count - 1 }
        let (originBefore, followerBefore) = (announced(origin), announced(follower))
        let started = Date()
        let next = try commitAndPush(work, "one more commit")
        follower.waitFor("the follower to mirror the push", timeout: 30) { _, _ in
            (try? SyncGit.revParse(self.bare("follower"), "refs/heads/main")) == next
        }
        let mirrored = Date().timeIntervalSince(started)
        XCTAssertEqual(watcher.wait(timeout: 40), 0, watcher.stderr)
        // Several scan intervals later, still exactly one announcement per node.
        usleep(1_500_000)
        XCTAssertEqual(announced(origin) - originBefore, 1, origin.stderr)
        XCTAssertEqual(announced(follower) - followerBefore, 1, follower.stderr)
        let messages = watcher.stdout.split(separator: "\n")
        XCTAssertEqual(messages.count, 2, "one from the origin, one from the follower: \(watcher.stdout)")
        print("1,501-ref repository: push to mirrored in \(String(format: "%.2f", mirrored)) s, 2 announcements")
        XCTAssertEqual(try refs(bare("follower")).filter { $0.hasPrefix("refs/heads/") }.count, 1501)
    }
}
