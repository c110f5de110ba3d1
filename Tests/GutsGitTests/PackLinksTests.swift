import Foundation
import XCTest
@testable import GutsGit
import GutsSupport

/// The links the indexer collects for a first sync's self-contained check
/// (`PackLinks`): each worker fills its own shard, and reading them merges the shards,
/// so what is read does not depend on how the objects were split between workers.
final class PackLinksTests: XCTestCase {
    func id(_ n: Int) -> ObjectID {
        ObjectID.compute(type: .blob, body: Array("object \(n)".utf8))
    }

    func testShardsMergeToTheUnionAndConflictsAcrossShardsAreFound() {
        let links = PackLinks(workers: 3)
        for n in 0..<300 {
            // Every link named by two workers, with the same type.
            links.add([(id(n), n % 2 == 0 ? .blob : .tree)], worker: n % 3)
            links.add([(id(n), n % 2 == 0 ? .blob : .tree)], worker: (n + 1) % 3)
        }
        XCTAssertNil(links.conflict)
        XCTAssertEqual(links.count, 300)
        var seen: [ObjectID: ObjectType] = [:]
        links.forEach { seen[$0] = $1 }
        XCTAssertEqual(seen.count, 300)
        for n in 0..<300 { XCTAssertEqual(seen[id(n)], n % 2 == 0 ? .blob : .tree) }

        // Two types for one object in two workers' shards.
        let across = PackLinks(workers: 2)
        across.add([(id(1), .blob), (id(2), .tree)], worker: 0)
        across.add([(id(3), .commit), (id(1), .tree)], worker: 1)
        XCTAssertEqual(across.conflict, id(1))
        XCTAssertEqual(across.count, 3)
        // And within one worker's shard.
        let within = PackLinks(workers: 2)
        within.add([(id(4), .blob)], worker: 1)
        within.add([(id(4), .commit)], worker: 1)
        XCTAssertEqual(within.conflict, id(4))
    }

    /// On a real pack, one worker and two collect the same links.
    func testSameLinksWhateverTheWorkers() throws {
        let work = try makeHistoryRepository(self, commits: 20)
        try git(["repack", "-q", "-a", "-d", "--depth=20", "--window=20"], in: work)
        let dir = work + "/.git/objects/pack"
        let name = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasSuffix(".pack") })
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        let out = NSTemporaryDirectory() + "packlinks-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        var found: [[ObjectID: ObjectType]] = []
        for threads in [1, 2] {
            let path = out + "/in-\(threads).pack"
            try bytes.write(to: URL(fileURLWithPath: path))
            let r = try PackIndexer.index(packPath: path, outputDirectory: out + "/\(threads)", threads: threads, collectLinks: true)
            let links = try XCTUnwrap(r.links)
            XCTAssertNil(links.conflict)
            var all: [ObjectID: ObjectType] = [:]
            links.forEach { all[$0] = $1 }
            XCTAssertEqual(all.count, links.count)
            XCTAssertGreaterThan(all.count, 20)
            found.append(all)
        }
        XCTAssertEqual(found[0], found[1])
    }
}
