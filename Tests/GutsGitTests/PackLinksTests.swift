import Foundation
import XCTest
@testable import GutsGit
import GutsSupport

/// The links the indexer collects for a first sync's self-contained check
/// (`PackLinks`): a table in stripes, each with its own lock, that the workers fill at
/// the same time; what is read does not depend on how the objects were split between
/// workers.
final class PackLinksTests: XCTestCase {
    func id(_ n: Int) -> ObjectID {
        ObjectID.compute(type: .blob, body: Array("object \(n)".utf8))
    }

    func testLinksFromSeveralThreadsAreTheUnionAndConflictsAreFound() {
        let links = PackLinks()
        let ids = (0..<300).map { id($0) }
        // Every link named twice, from three threads, with the same type.
        DispatchQueue.concurrentPerform(iterations: 3) { k in
            for n in 0..<300 where n % 3 == k || (n + 1) % 3 == k {
                links.add([(ids[n], n % 2 == 0 ? .blob : .tree)])
            }
        }
        XCTAssertNil(links.conflict)
        XCTAssertEqual(links.count, 300)
        var seen: [ObjectID: ObjectType] = [:]
        links.forEach { seen[$0] = $1 }
        XCTAssertEqual(seen.count, 300)
        for n in 0..<300 { XCTAssertEqual(seen[id(n)], n % 2 == 0 ? .blob : .tree) }

        // Two types for one object, named by two objects.
        let clash = PackLinks()
        clash.add([(id(1), .blob), (id(2), .tree)])
        XCTAssertNil(clash.conflict)
        clash.add([(id(3), .commit), (id(1), .tree)])
        XCTAssertEqual(clash.conflict, id(1))
        XCTAssertEqual(clash.count, 3)
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
