import Foundation
import XCTest
@testable import GutsGit

/// Random damage to packs, indexes and loose objects must be reported, never crash.
/// GUTS_FUZZ_ITERATIONS raises the number of rounds (default 120).
final class FuzzTests: XCTestCase {
    func testRandomDamageNeverCrashes() throws {
        let dir = try makeHistoryRepository(self, commits: 6)
        try git(["repack", "-adfq", "--depth=50"], in: dir)
        // Keep a few loose objects too.
        try writeFile(dir + "/extra.txt", "extra\n")
        try git(["add", "extra.txt"], in: dir)
        try git(["commit", "-qm", "extra"], in: dir)
        let gitDir = dir + "/.git"
        let packDir = gitDir + "/objects/pack"
        let stem = packDir + "/" + (try FileManager.default.contentsOfDirectory(atPath: packDir).first { $0.hasSuffix(".pack") }!.dropLast(5))
        let pack = try readBytes(stem + ".pack")
        let idx = try readBytes(stem + ".idx")
        chmod(stem + ".pack", 0o644)
        chmod(stem + ".idx", 0o644)
        let loose = try FileManager.default.subpathsOfDirectory(atPath: gitDir + "/objects")
            .filter { $0.count == 41 && $0.contains("/") }.map { gitDir + "/objects/" + $0 }
        XCTAssertFalse(loose.isEmpty)
        var rng: UInt64 = 0x1234_5678
        func next(_ n: Int) -> Int {
            rng ^= rng << 13
            rng ^= rng >> 7
            rng ^= rng << 17
            return Int(rng % UInt64(max(1, n)))
        }
        func damage(_ bytes: [UInt8]) -> [UInt8] {
            var b = bytes
            switch next(5) {
            case 0:
                for _ in 0..<(1 + next(8)) { b[next(b.count)] ^= UInt8(1 << next(8)) }
            case 1:
                b = Array(b[0..<next(b.count)])
            case 2:
                let at = next(b.count)
                b[at] = UInt8(next(256))
            case 3:
                let at = next(b.count)
                b.insert(contentsOf: (0..<next(40)).map { _ in UInt8(next(256)) }, at: at)
            default:
                let at = next(b.count)
                b.removeSubrange(at..<min(b.count, at + 1 + next(30)))
            }
            return b
        }
        var limits = ObjectLimits()
        limits.maxObjectSize = 1 << 22
        let iterations = Int(ProcessInfo.processInfo.environment["GUTS_FUZZ_ITERATIONS"] ?? "") ?? 120
        var detected = 0
        for round in 0..<iterations {
            var p = pack
            var i = idx
            switch round % 3 {
            case 0: p = damage(pack)
            case 1: i = damage(idx)
            default: break
            }
            try writeFile(stem + ".pack", bytes: p)
            try writeFile(stem + ".idx", bytes: i)
            var changedLoose: (String, [UInt8])?
            if round % 3 == 2 {
                let path = loose[next(loose.count)]
                let original = try readBytes(path)
                chmod(path, 0o644)
                try writeFile(path, bytes: damage(original))
                changedLoose = (path, original)
            }
            let (problems, summary) = try verify(dir, options: VerifyOptions(limits: limits))
            if !summary.isClean { detected += 1 }
            // Whatever the damage, reading every object either works or throws.
            let repo = try Repository.open(dir, limits: limits)
            for p in repo.packs {
                for k in 0..<min(p.count, 40) { _ = try? p.read(p.id(at: k)) }
            }
            try? writeFile(dir + "/in.pack", bytes: p)
            _ = try? PackIndexer.index(packPath: dir + "/in.pack", outputDirectory: dir + "/indexed", limits: limits)
            try? FileManager.default.removeItem(atPath: dir + "/indexed")
            if let (path, original) = changedLoose { try writeFile(path, bytes: original) }
            _ = problems
        }
        try writeFile(stem + ".pack", bytes: pack)
        try writeFile(stem + ".idx", bytes: idx)
        XCTAssertEqual(try verify(dir).0, [])
        XCTAssertGreaterThan(detected, iterations / 2)
    }

    func testObjectCheckerOnMutatedObjects() throws {
        let dir = try makeHistoryRepository(self, commits: 3)
        let objects = try catFileAll(dir + "/.git").values.filter { $0.type != .blob }
        var rng: UInt64 = 99
        func next(_ n: Int) -> Int {
            rng ^= rng << 13
            rng ^= rng >> 7
            rng ^= rng << 17
            return Int(rng % UInt64(max(1, n)))
        }
        var rejected = 0
        for round in 0..<20_000 {
            let obj = objects[round % objects.count]
            var b = obj.body
            for _ in 0..<(1 + next(3)) {
                guard !b.isEmpty else { break }
                switch next(4) {
                case 0: b[next(b.count)] = UInt8(next(256))
                case 1: b = Array(b[0..<next(b.count)])
                case 2: b.insert([0x0A, 0x20, 0x00, 0x3C, 0x3E, 0x2F, 0x2E][next(7)], at: next(b.count))
                default: b.remove(at: next(b.count))
                }
            }
            let issues = b.withUnsafeBytes { ObjectChecker.check(type: obj.type, body: $0) { _, _ in } }
            if issues.contains(where: { $0.severity == .error }) { rejected += 1 }
            switch obj.type {
            case .tree: _ = try? Tree(parsing: b)
            case .commit: _ = try? Commit(parsing: b)
            case .tag: _ = try? Tag(parsing: b)
            case .blob: break
            }
        }
        XCTAssertGreaterThan(rejected, 5_000)
    }
}
