import Foundation
import GutsAddress
import GutsIdentity
import GutsSync
import GutsTransport
import GutsWire
import NIOPosix
import XCTest

/// OFS_DELTA on the wire, with a real `guts listen`: `guts sync` announces ofs-delta and
/// stores the deltas as OFS_DELTA, as small as the upstream's pack; a peer that does not
/// announce it is sent REF_DELTA, as before.
final class OffsetDeltaTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Entry types (6 OFS_DELTA, 7 REF_DELTA, 1-4 whole) of the single pack in `gitDir`,
    /// read at the offsets `git show-index` lists.
    func entryKinds(_ gitDir: String) throws -> (kinds: [UInt8], bytes: Int) {
        let names = try FileManager.default.contentsOfDirectory(atPath: gitDir + "/objects/pack")
        let idx = try XCTUnwrap(names.first { $0.hasSuffix(".idx") }, "\(names)")
        XCTAssertEqual(names.filter { $0.hasSuffix(".pack") }.count, 1, "\(names)")
        let listing = try SyncGit.git(["show-index"], in: gitDir, input: try Data(contentsOf: URL(fileURLWithPath: gitDir + "/objects/pack/" + idx))).text
        let pack = [UInt8](try Data(contentsOf: URL(fileURLWithPath: gitDir + "/objects/pack/" + idx.replacingOccurrences(of: ".idx", with: ".pack"))))
        let kinds = listing.split(separator: "\n").compactMap { Int($0.split(separator: " ")[0]) }.map { (pack[$0] >> 4) & 7 }
        return (kinds, pack.count)
    }

    func testSyncStoresOffsetDeltasAndOldPeersGetRefDeltas() throws {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 16)
        try f.startServer()
        let upstream = try entryKinds(f.upstream)
        let deltas = upstream.kinds.filter { $0 == 6 || $0 == 7 }.count
        XCTAssertGreaterThan(deltas, 10, "git stores deltas upstream")

        // guts sync: OFS_DELTA all the way to the stored pack.
        let r = try f.sync()
        XCTAssertEqual(r.status, 0, r.stderr)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        let mirror = try entryKinds(f.mirror)
        XCTAssertEqual(mirror.kinds.filter { $0 == 6 }.count, deltas)
        XCTAssertEqual(mirror.kinds.filter { $0 == 7 }.count, 0)
        XCTAssertLessThanOrEqual(abs(mirror.bytes - upstream.bytes), upstream.bytes / 100,
                                 "stored \(mirror.bytes) bytes, git's pack is \(upstream.bytes)")
        let idx = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: f.mirror + "/objects/pack").first { $0.hasSuffix(".idx") })
        XCTAssertEqual(try SyncGit.bare(f.mirror, ["verify-pack", f.mirror + "/objects/pack/" + idx]).status, 0)

        // A peer that does not announce ofs-delta (an older guts): REF_DELTA only.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let config = SessionConfig(identity: Identity.generate().keyPair, noiseStatic: .generate(), capabilities: ["ping"],
                                   agent: "guts/0.0.9", protocols: MessageRegistry([SyncProtocol()]))
        let connection = try Dialer.dial(try Endpoint.parse(f.peer), config: config, group: group, connectTimeout: 10).wait()
        defer { connection.close(.shutdown, "done") }
        let old = h.home("old") + "/proj.git"
        let report = try SyncClient.run(repository: try XCTUnwrap(RepositoryName("alice/proj")), into: old, over: connection)
        XCTAssertEqual(report.objectsReceived, upstream.kinds.count)
        let refs = try entryKinds(old)
        XCTAssertEqual(refs.kinds.filter { $0 == 6 }.count, 0)
        XCTAssertEqual(refs.kinds.filter { $0 == 7 }.count, deltas)
        XCTAssertGreaterThan(refs.bytes, mirror.bytes + 15 * deltas, "each REF_DELTA names its base in 20 bytes")
        try SyncGit.assertFsckClean(old)
        f.listener?.waitFor("both transfer log lines") { _, err in err.components(separatedBy: "served 'alice/proj'").count == 3 }
        let served = f.listener?.stderr.split(separator: "\n").filter { $0.contains("served 'alice/proj'") }.map(String.init) ?? []
        XCTAssertTrue(served.last?.contains("\(deltas) deltas, 0 as OFS_DELTA, 0 thin)") == true, "\(served)")

        // An increment pushed the way git stores pushes (new objects as deltas on old
        // ones): guts sync gets them as thin deltas against what the mirror has.
        try SyncGit.bare(f.upstream, ["config", "receive.unpackLimit", "1"])
        try f.commit("grow", files: ["big.txt": (try String(contentsOfFile: f.work + "/big.txt", encoding: .utf8)) + "one more line\n"])
        try f.push()
        let increment = try f.sync()
        XCTAssertEqual(increment.status, 0, increment.stderr)
        f.listener?.waitFor("the increment's log line") { _, err in err.components(separatedBy: "served 'alice/proj'").count == 4 }
        let line = f.listener?.stderr.split(separator: "\n").filter { $0.contains("served 'alice/proj'") }.last.map(String.init) ?? ""
        let thin = try XCTUnwrap(line.firstMatch(of: /, (\d+) thin\)/), line)
        XCTAssertGreaterThan(Int(thin.1) ?? 0, 0, line)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
    }
}
