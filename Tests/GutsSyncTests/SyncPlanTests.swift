import GutsGit
import GutsSync
import GutsWire
import XCTest

/// SyncPlan is pure: remote refs + local refs + "do we have it" in, wants, haves and
/// ref changes out, or a refusal of what the peer sent.
final class SyncPlanTests: XCTestCase {
    /// A distinct, realistic (uniformly distributed) SHA-1 ID per number.
    func oid(_ n: Int) -> ObjectID {
        ObjectID(bytes: SHA1.hash(Array("object \(n)".utf8)))!
    }

    func remote(_ refs: [(String, ObjectID)], head: String = "refs/heads/main") -> GutsSync.Refs {
        GutsSync.Refs(requestID: 1, head: head, refs: refs.map { RefEntry(name: $0.0, id: WireOID($0.1.bytes)!) })
    }

    func plan(_ r: GutsSync.Refs, local: [Ref] = [], head: String? = "refs/heads/main", has: Set<ObjectID> = []) throws -> SyncPlan {
        try SyncPlan.make(remote: r, local: local, localHead: head) { has.contains($0) }
    }

    func testFirstSyncWantsEveryTipOnceAndCreatesEveryRef() throws {
        let p = try plan(remote([("refs/heads/main", oid(1)), ("refs/tags/v1", oid(2)), ("refs/heads/copy", oid(1))]))
        XCTAssertEqual(p.wants, [oid(1), oid(2)], "deduplicated, in ref name order")
        XCTAssertEqual(p.haves, [])
        XCTAssertEqual(p.remoteRefs.map(\.name), ["refs/heads/copy", "refs/heads/main", "refs/tags/v1"])
        XCTAssertEqual(p.changes.map(\.kind), [.created, .created, .created])
        XCTAssertEqual(p.changes.map(\.name), ["refs/heads/copy", "refs/heads/main", "refs/tags/v1"])
        XCTAssertFalse(p.headChanges, "HEAD already names refs/heads/main")
        XCTAssertFalse(p.isUpToDate)
    }

    func testIncrementalWantsOnlyWhatIsMissingAndOffersEveryLocalTip() throws {
        let local = [Ref(name: "refs/heads/gone", id: oid(9)), Ref(name: "refs/heads/main", id: oid(1)),
                     Ref(name: "refs/heads/same", id: oid(5)), Ref(name: "refs/remotes/x/HEAD", id: oid(1), symbolicTarget: "refs/heads/main"),
                     Ref(name: "refs/tags/dup", id: oid(5))]
        let r = remote([("refs/heads/main", oid(2)), ("refs/heads/same", oid(5)), ("refs/heads/new", oid(3)),
                        ("refs/tags/dup", oid(5)), ("refs/tags/old", oid(9))])
        let p = try plan(r, local: local, has: [oid(1), oid(5), oid(9)])
        XCTAssertEqual(p.wants, [oid(2), oid(3)], "missing tips only, in ref name order (main, new)")
        XCTAssertEqual(p.haves, [oid(9), oid(1), oid(5)], "direct local tips, deduplicated, symbolic refs left out")
        let summary = p.changes.map { "\($0.kind) \($0.name)" }
        XCTAssertEqual(summary, ["deleted refs/heads/gone", "updated refs/heads/main", "created refs/heads/new", "created refs/tags/old"])
        let main = try XCTUnwrap(p.changes.first { $0.name == "refs/heads/main" })
        XCTAssertEqual(main.old, oid(1))
        XCTAssertEqual(main.new, oid(2))
        let gone = try XCTUnwrap(p.changes.first { $0.name == "refs/heads/gone" })
        XCTAssertEqual(gone.new, nil)
        XCTAssertEqual(gone.kind, .deleted)
    }

    func testRefMovedToAnObjectWeHaveNeedsNoTransfer() throws {
        let p = try plan(remote([("refs/heads/main", oid(1))]), local: [Ref(name: "refs/heads/main", id: oid(2))], has: [oid(1), oid(2)])
        XCTAssertEqual(p.wants, [])
        XCTAssertEqual(p.changes.map(\.kind), [.updated])
        XCTAssertFalse(p.isUpToDate)
    }

    func testUpToDate() throws {
        let local = [Ref(name: "refs/heads/main", id: oid(1)), Ref(name: "refs/tags/t", id: oid(2))]
        let p = try plan(remote([("refs/tags/t", oid(2)), ("refs/heads/main", oid(1))]), local: local, has: [oid(1), oid(2)])
        XCTAssertTrue(p.isUpToDate)
        XCTAssertEqual(p.wants, [])
        XCTAssertEqual(p.changes, [])
        // Equal plans compare equal; a different HEAD does not.
        XCTAssertEqual(p, try plan(remote([("refs/heads/main", oid(1)), ("refs/tags/t", oid(2))]), local: local, has: [oid(1), oid(2)]))
        XCTAssertNotEqual(p, try plan(remote([("refs/heads/main", oid(1)), ("refs/tags/t", oid(2))], head: "refs/tags/t"),
                                      local: local, has: [oid(1), oid(2)]))
    }

    func testHeadChanges() throws {
        let refs = [("refs/heads/main", oid(1)), ("refs/heads/dev", oid(2))]
        let local = [Ref(name: "refs/heads/main", id: oid(1)), Ref(name: "refs/heads/dev", id: oid(2))]
        let has: Set<ObjectID> = [oid(1), oid(2)]
        let moved = try plan(remote(refs, head: "refs/heads/dev"), local: local, has: has)
        XCTAssertTrue(moved.headChanges)
        XCTAssertFalse(moved.isUpToDate, "a HEAD change alone is work to do")
        XCTAssertEqual(moved.remoteHead, "refs/heads/dev")
        XCTAssertFalse(try plan(remote(refs, head: "refs/heads/main"), local: local, has: has).headChanges)
        XCTAssertFalse(try plan(remote(refs, head: ""), local: local, has: has).headChanges, "detached remote HEAD: keep ours")
        XCTAssertFalse(try plan(remote(refs, head: "refs/heads/unborn"), local: local, has: has).headChanges,
                       "HEAD naming a ref that will not exist is not followed")
        XCTAssertTrue(try plan(remote(refs, head: "refs/heads/main"), local: local, head: nil, has: has).headChanges,
                      "a detached local HEAD is repointed")
    }

    func testRemoteRefsSortBytewise() throws {
        let p = try plan(remote([("refs/heads/zz", oid(1)), ("refs/heads/Z", oid(2)), ("refs/heads/é", oid(3)), ("refs/heads/a", oid(4))]))
        XCTAssertEqual(p.remoteRefs.map(\.name), ["refs/heads/Z", "refs/heads/a", "refs/heads/zz", "refs/heads/é"])
    }

    func testRejectsInvalidRefNames() {
        for bad in ["HEAD", "heads/main", "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/with space", "refs/heads/",
                    "refs/heads/a/", "refs//x", "refs/heads/.hidden", "refs/heads/a@{1}", "refs/heads/tab\t", "refs/heads/q?",
                    "refs/heads/star*", "refs/heads/colon:", "refs/heads/tilde~1", "refs/heads/caret^", "refs/heads/br[", "refs/heads/back\\slash",
                    "refs/heads/dot.", "refs", "refs/heads/ctl\u{1}", ""] {
            XCTAssertThrowsError(try plan(remote([("refs/heads/ok", oid(1)), (bad, oid(2))])), bad) { error in
                XCTAssertEqual(error as? SyncPlan.Invalid, .badRefName(bad), bad)
                XCTAssertTrue("\(error)".contains("invalid ref name"), "\(error)")
            }
        }
    }

    func testRejectsDuplicateRefs() {
        XCTAssertThrowsError(try plan(remote([("refs/heads/a", oid(1)), ("refs/heads/b", oid(2)), ("refs/heads/a", oid(1))]))) { error in
            XCTAssertEqual(error as? SyncPlan.Invalid, .duplicateRef("refs/heads/a"))
        }
    }

    func testRejectsBadHead() {
        for bad in ["HEAD", "main", "refs/heads/a..b", "refs/heads/", "../etc/passwd"] {
            XCTAssertThrowsError(try plan(remote([("refs/heads/main", oid(1))], head: bad)), bad) { error in
                XCTAssertEqual(error as? SyncPlan.Invalid, .badHead(bad), bad)
            }
        }
    }

    func testRejectsSHA256IDs() {
        let long = GutsSync.Refs(requestID: 1, head: "", refs: [RefEntry(name: "refs/heads/main", id: WireOID([UInt8](repeating: 7, count: 32))!)])
        XCTAssertThrowsError(try plan(long)) { error in
            XCTAssertEqual(error as? SyncPlan.Invalid, .badObjectID("refs/heads/main"))
        }
    }

    func testRejectsRefsThatConflictAsFileAndDirectory() {
        // No git repository can hold both: refusing them up front beats failing after the transfer.
        for (a, b) in [("refs/heads/a", "refs/heads/a/b"), ("refs/tags/x/y", "refs/tags/x/y/z/w")] {
            XCTAssertThrowsError(try plan(remote([(b, oid(1)), (a, oid(2))]))) { error in
                XCTAssertEqual(error as? SyncPlan.Invalid, .refConflict(b, a))
                XCTAssertTrue("\(error)".contains("conflict"), "\(error)")
            }
        }
        XCTAssertNoThrow(try plan(remote([("refs/heads/a", oid(1)), ("refs/heads/ab/c", oid(2)), ("refs/heads/a-b", oid(3))])))
    }

    func testHavesAreCapped() throws {
        let local = (0..<(SyncLimits.maxHaves + 10)).map { Ref(name: "refs/tags/t\($0)", id: oid($0)) }
        let p = try plan(remote([("refs/heads/main", oid(1))]), local: local)
        XCTAssertEqual(p.haves.count, SyncLimits.maxHaves)
    }
}
