import Foundation
import XCTest
import GutsGit
@testable import GutsSync

/// A first sync's completeness and extras checked from the links the indexer collected
/// (`SyncClient.checkSelfContained`), and the walk left to decide whenever that check
/// does not pass.
final class SelfContainedCheckTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "selfcontained-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    @discardableResult
    func git(_ args: [String], in dir: String, input: Data? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: dir)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in ["GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "T",
                       "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_AUTHOR_DATE": "1700000000 +0000",
                       "GIT_COMMITTER_DATE": "1700000000 +0000", "GIT_CONFIG_NOSYSTEM": "1", "HOME": root] { env[k] = v }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        let inPipe = Pipe()
        if input != nil { p.standardInput = inPipe }
        try p.run()
        if let input {
            inPipe.fileHandleForWriting.write(input)
            try inPipe.fileHandleForWriting.close()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NSError(domain: "git", code: Int(p.terminationStatus)) }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A small history with a tag, and a pack of `revs` (git pack-objects --revs).
    func makePack(_ revs: [String]) throws -> (work: String, pack: String, tips: [ObjectID]) {
        let work = root + "/work"
        if !FileManager.default.fileExists(atPath: work) {
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
            try git(["init", "-q", "-b", "main"], in: work)
            for i in 0..<5 {
                try "line \(i)\n".write(toFile: work + "/f\(i % 2).txt", atomically: true, encoding: .utf8)
                try git(["add", "-A"], in: work)
                try git(["commit", "-q", "-m", "c\(i)"], in: work)
            }
            try git(["tag", "-a", "-m", "t", "v1", "HEAD~1"], in: work)
            try git(["checkout", "-q", "-b", "extra"], in: work)
            try "only here\n".write(toFile: work + "/extra.txt", atomically: true, encoding: .utf8)
            try git(["add", "-A"], in: work)
            try git(["commit", "-q", "-m", "extra"], in: work)
            try git(["checkout", "-q", "main"], in: work)
        }
        let dir = root + "/pack-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = try git(["pack-objects", "--revs", "-q", dir + "/p"], in: work, input: Data((revs.joined(separator: "\n") + "\n").utf8))
        let tips = try revs.filter { !$0.hasPrefix("^") }.map { try XCTUnwrap(ObjectID(hex: try git(["rev-parse", $0], in: work))) }
        return (work, dir + "/p-\(name).pack", tips)
    }

    func plan(wants: [ObjectID]) -> SyncPlan {
        SyncPlan(remoteRefs: wants.enumerated().map { (name: "refs/heads/b\($0.offset)", id: $0.element) }, remoteHead: "",
                 wants: wants, haves: [], changes: [], headChanges: false)
    }

    func testCompletePackPassesWithoutAWalk() throws {
        let (_, packPath, tips) = try makePack(["main", "v1"])
        let indexed = try PackIndexer.index(packPath: packPath, outputDirectory: root + "/q1", collectLinks: true)
        let reached = try XCTUnwrap(SyncClient.checkSelfContained(indexed, plan: plan(wants: tips), created: true))
        XCTAssertEqual(reached.cardinality, indexed.count, "every object is reachable")
        // Not a first sync, or no links collected: the walk decides.
        XCTAssertNil(SyncClient.checkSelfContained(indexed, plan: plan(wants: tips), created: false))
        let plain = try PackIndexer.index(packPath: indexed.packPath, outputDirectory: root + "/q1b")
        XCTAssertNil(SyncClient.checkSelfContained(plain, plan: plan(wants: tips), created: true))
    }

    func testExtrasAndMissingObjectsAreLeftToTheWalk() throws {
        // A pack with a branch nobody asked for: extras.
        let (_, packPath, tips) = try makePack(["main", "extra"])
        let indexed = try PackIndexer.index(packPath: packPath, outputDirectory: root + "/q2", collectLinks: true)
        XCTAssertNil(SyncClient.checkSelfContained(indexed, plan: plan(wants: [tips[0]]), created: true))
        XCTAssertNotNil(SyncClient.checkSelfContained(indexed, plan: plan(wants: tips), created: true))
        // A pack without the history of its tip (only the last commit's new objects): missing.
        let (_, partialPath, partialTips) = try makePack(["main", "^main~1"])
        let partial = try PackIndexer.index(packPath: partialPath, outputDirectory: root + "/q3", collectLinks: true)
        XCTAssertNil(SyncClient.checkSelfContained(partial, plan: plan(wants: [partialTips[0]]), created: true))
    }
    /// A tag that declares `type commit` but names a blob: the links carry the declared
    /// type, so the check does not pass and the walk decides.
    func testTagWhoseTargetIsNotTheDeclaredTypeIsLeftToTheWalk() throws {
        _ = try makePack(["main"])
        let work = root + "/work"
        let blob = try git(["hash-object", "-w", "--stdin"], in: work, input: Data("a blob\n".utf8))
        let body = "object \(blob)\ntype commit\ntag liar\ntagger T <t@example.com> 1700000000 +0000\n\nnot a commit\n"
        let tag = try git(["hash-object", "-t", "tag", "--literally", "-w", "--stdin"], in: work, input: Data(body.utf8))
        let dir = root + "/liar"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = try git(["pack-objects", "-q", dir + "/p"], in: work, input: Data("\(tag)\n\(blob)\n".utf8))
        let indexed = try PackIndexer.index(packPath: dir + "/p-\(name).pack", outputDirectory: root + "/q4", collectLinks: true)
        let tagID = try XCTUnwrap(ObjectID(hex: tag))
        XCTAssertNil(SyncClient.checkSelfContained(indexed, plan: plan(wants: [tagID]), created: true))
    }
}
