import Foundation
import XCTest
@testable import GutsGit

final class ReachabilityTests: XCTestCase {
    func ids(_ text: String) -> Set<ObjectID> {
        Set(text.split(separator: "\n").compactMap { ObjectID(hex: $0.prefix(40)) })
    }

    func testWalkMatchesGitRevListObjects() throws {
        let dir = try makeHistoryRepository(self, commits: 20)
        try git(["gc", "-q"], in: dir)
        let repo = try Repository.open(dir)
        func rev(_ s: String) throws -> ObjectID {
            try XCTUnwrap(ObjectID(hex: try git(["rev-parse", s], in: dir).text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let walk = ObjectWalk(store: repo)
        // Everything.
        let all = try walk.objects(reachableFrom: [try rev("v1.0"), try rev("side")])
        XCTAssertEqual(Set(all.objects), ids(try git(["rev-list", "--objects", "v1.0", "side"], in: dir).text).union([try rev("v1.0")]))
        XCTAssertEqual(all.objects.count, Set(all.objects).count)
        XCTAssertEqual(all.tags, 1)
        // Order: commits first, then tags, trees, blobs.
        let kinds = try all.objects.map { try XCTUnwrap(try repo.read($0)).type }
        XCTAssertEqual(kinds, kinds.sorted { order($0) < order($1) })
        // Incremental: main minus HEAD~7.
        let inc = try walk.objects(reachableFrom: [try rev("main")], excluding: [try rev("main~7")])
        let expected = ids(try git(["rev-list", "--objects", "main", "^main~7"], in: dir).text)
        XCTAssertEqual(Set(inc.objects), expected)
        XCTAssertTrue(try walk.missingObjects(reachableFrom: [try rev("main")]).isEmpty)
        // A pack of the increment, applied to a repository that has main~7, is connected.
        let writer = try PackWriter(directory: try makeTempDirectory(self) + "/p")
        for id in inc.objects {
            let obj = try XCTUnwrap(try repo.read(id))
            try writer.add(type: obj.type, body: obj.body, id: id)
        }
        let pack = try writer.finish()
        let vp = try git(["verify-pack", pack.indexPath], in: dir)
        XCTAssertEqual(vp.status, 0)
    }

    /// A tag (or a ref) that names a tree directly, as git.git's v2.6.11-tree does in
    /// Linux: the tree's entries are walked too, not only the tree itself.
    func testTreeNamedByATagIsWalkedWhole() throws {
        let dir = try makeHistoryRepository(self, commits: 3)
        func plumb(_ args: [String], _ input: String? = nil) throws -> String {
            try git(args, in: dir, input: input.map { Data($0.utf8) }).text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let blob = try plumb(["hash-object", "-w", "--stdin"], "only reachable through the tag\n")
        let sub = try plumb(["mktree"], "100644 blob \(blob)\tinner.txt\n")
        let tree = try plumb(["mktree"], "040000 tree \(sub)\tdir\n100644 blob \(blob)\ttop.txt\n")
        _ = try plumb(["tag", "-a", "-m", "a tree", "treetag", tree])
        _ = try plumb(["update-ref", "refs/trees/plain", tree])
        let repo = try Repository.open(dir)
        let tag = try XCTUnwrap(ObjectID(hex: try plumb(["rev-parse", "treetag"])))
        let walk = ObjectWalk(store: repo)
        for tip in [tag, try XCTUnwrap(ObjectID(hex: tree))] {
            let result = try walk.objects(reachableFrom: [tip])
            let expected = ids(try git(["rev-list", "--objects", tip.hex], in: dir).text).union([tip])
            XCTAssertEqual(Set(result.objects), expected, "tip \(tip)")
            XCTAssertEqual(result.trees, 2)
            XCTAssertEqual(result.blobs, 1)
        }
        XCTAssertTrue(try walk.missingObjects(reachableFrom: [tag]).isEmpty)
    }

    func order(_ t: ObjectType) -> Int {
        switch t {
        case .commit: return 0
        case .tag: return 1
        case .tree: return 2
        case .blob: return 3
        }
    }

    /// A long linear history (built with fast-import) walks and verifies without
    /// recursion: both run on a thread with a 256 KiB stack, which a walk that recursed
    /// once per commit would overflow long before 20,000 commits (a frame of only 16
    /// bytes a level already needs 320 KiB), so the history need not be huge to prove it.
    func testLongHistory() throws {
        let dir = try makeTempDirectory(self)
        try git(["init", "-q", "--bare", "long.git"], in: dir)
        let n = 20_000
        var script = ""
        script.reserveCapacity(n * 120)
        for i in 0..<n {
            script += "commit refs/heads/main\nmark :\(i + 1)\ncommitter C <c@e> \(1_600_000_000 + i) +0000\ndata 0\n"
            if i > 0 { script += "from :\(i)\n" }
            script += "M 100644 inline f\ndata \(String(i).utf8.count)\n\(i)\n"
        }
        try git(["--git-dir", dir + "/long.git", "fast-import", "--quiet"], in: dir, input: Data(script.utf8))
        let repo = try Repository.open(dir + "/long.git")
        let head = try XCTUnwrap(try repo.resolveRef("refs/heads/main"))
        final class Outcome: @unchecked Sendable {
            var walked: (commits: Int, trees: Int, blobs: Int)?
            var problems: [Problem] = []
            var reachable = -1
            var error: Error?
        }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        let path = dir + "/long.git"
        let thread = Thread {
            defer { done.signal() }
            do {
                let result = try ObjectWalk(store: repo).objects(reachableFrom: [head])
                outcome.walked = (result.commits, result.trees, result.blobs)
                let (problems, summary) = try verify(path)
                outcome.problems = problems
                outcome.reachable = summary.reachable
            } catch {
                outcome.error = error
            }
        }
        thread.stackSize = 256 * 1024
        thread.start()
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success, "walk did not finish")
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.walked?.commits, n)
        XCTAssertEqual(outcome.walked?.trees, n)
        XCTAssertEqual(outcome.walked?.blobs, n)
        XCTAssertEqual(outcome.problems, [])
        XCTAssertEqual(outcome.reachable, 3 * n)
    }
}
