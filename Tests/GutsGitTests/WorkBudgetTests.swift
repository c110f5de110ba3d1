import Foundation
import GutsSupport
import XCTest
@testable import GutsGit

/// A delta copying `size` bytes at `offset` of the base (one instruction).
func copyInstruction(offset: Int, size: Int) -> [UInt8] {
    var op: UInt8 = 0x80
    var tail: [UInt8] = []
    for k in 0..<4 where (offset >> (8 * k)) & 0xFF != 0 {
        op |= 1 << k
        tail.append(UInt8((offset >> (8 * k)) & 0xFF))
    }
    for k in 0..<3 where (size >> (8 * k)) & 0xFF != 0 {
        op |= 0x10 << k
        tail.append(UInt8((size >> (8 * k)) & 0xFF))
    }
    return [op] + tail
}

/// A delta building `prefix` bytes copied from the start of a `baseSize`-byte base,
/// then `literal`.
func copyThenInsert(baseSize: Int, prefix: Int, literal: [UInt8]) -> [UInt8] {
    var d = deltaVarint(baseSize) + deltaVarint(prefix + literal.count)
    var at = 0
    while at < prefix {
        let n = min(prefix - at, 0xFF_FF00)
        d += copyInstruction(offset: at, size: n)
        at += n
    }
    d.append(UInt8(literal.count))
    d += literal
    return d
}

/// The limits on work spent on untrusted packs: each case plays the attacker and
/// checks the pack is refused for the right limit, quickly, and that honest packs
/// (including the same shapes at sane sizes) still index.
final class WorkBudgetTests: XCTestCase {
    /// The issue's pack, scaled: a base of `size` bytes and a chain of `depth` REF_DELTAs
    /// on it, each link also the base of a leaf delta, links written before leaves (the
    /// order that made the old resolver rebuild bases again and again). Real names, so
    /// REF_DELTA children are found, unless `fakeNames` (quicker to build, for packs that
    /// must be refused before their deltas are looked at).
    func chainWithLeaves(size: Int, depth: Int, leavesFirst: Bool = false, fakeNames: Bool = false) throws -> (pack: [UInt8], objects: Int, declared: Int) {
        var c = PackCrafter()
        let zeros = [UInt8](repeating: 0, count: size)
        // The body, when names are real (built only then: large and slow to hash).
        func name(_ body: @autoclosure () -> [UInt8], fake: [UInt8]) -> ObjectID {
            ObjectID.compute(type: .blob, body: fakeNames ? fake : body())
        }
        var previous = name(zeros, fake: [0])
        try c.add(kind: ObjectType.blob.rawValue, payload: zeros, name: previous)
        var declared = size
        var links: [(ObjectID, [UInt8])] = []
        var leaves: [(ObjectID, ObjectID, [UInt8])] = []
        for i in 1...depth {
            // link i: zeros(size - 1) + [i]; leaf i: zeros(size - 2) + [0xAA, i].
            let linkID = name([UInt8](repeating: 0, count: size - 1) + [UInt8(i)], fake: [1, UInt8(i)])
            links.append((linkID, copyThenInsert(baseSize: size, prefix: size - 1, literal: [UInt8(i)])))
            leaves.append((name([UInt8](repeating: 0, count: size - 2) + [0xAA, UInt8(i)], fake: [2, UInt8(i)]), linkID, copyThenInsert(baseSize: size, prefix: size - 2, literal: [0xAA, UInt8(i)])))
            var entries: [(ObjectID, ObjectID, [UInt8])] = [(linkID, previous, links.last!.1), leaves.last!]
            if leavesFirst { entries.reverse() }
            // The leaf's base is the link itself; the link's base the previous link.
            for (name, base, delta) in entries {
                try c.add(kind: PackEntryKind.refDelta, payload: delta, base: base.bytes, name: name)
                declared += delta.count
            }
            previous = linkID
        }
        return (c.finish().pack, 1 + 2 * depth, declared)
    }

    func index(_ pack: [UInt8], limits: ObjectLimits = .default, budget: WorkBudget? = nil) throws -> PackIndexer.Result {
        let dir = try makeTempDirectory(self)
        try writeFile(dir + "/in.pack", bytes: pack)
        return try PackIndexer.index(packPath: dir + "/in.pack", limits: limits, budget: budget)
    }

    func assertRefused(_ pack: [UInt8], limits: ObjectLimits = .default, budget: WorkBudget? = nil, _ limit: ResourceLimit,
                       within seconds: Double = 5, file: StaticString = #filePath, line: UInt = #line) {
        let start = Instant.now()
        XCTAssertThrowsError(try index(pack, limits: limits, budget: budget), file: file, line: line) { error in
            let e = error as? GitError
            XCTAssertEqual(e?.limit, limit, "\(error)", file: file, line: line)
        }
        XCTAssertLessThan(Instant.now().seconds(since: start), seconds, file: file, line: line)
    }

    func testAllowanceFollowsReceivedBytesNeverDeclaredOnes() {
        var limits = ObjectLimits()
        limits.workFactor = 64
        limits.workAllowance = 8 << 20
        limits.maxWork = 1 << 30
        XCTAssertEqual(WorkBudget.allowance(limits: limits, inputBytes: 0), 8 << 20)
        XCTAssertEqual(WorkBudget.allowance(limits: limits, inputBytes: 1 << 20), (8 << 20) + (64 << 20))
        XCTAssertEqual(WorkBudget.allowance(limits: limits, inputBytes: 1 << 30), 1 << 30, "capped")
        XCTAssertEqual(WorkBudget.allowance(limits: limits, inputBytes: Int.max), 1 << 30, "no overflow")
        limits.workFactor = 0
        XCTAssertEqual(WorkBudget.allowance(limits: limits, inputBytes: 10), Int.max, "0 turns it off")
    }

    func testChargesAreSeparateAndTheFirstFailureSticks() throws {
        var limits = ObjectLimits()
        limits.workAllowance = 100
        limits.workFactor = 1
        let budget = WorkBudget(limits: limits, inputBytes: 10)
        XCTAssertEqual(budget.inflateLimit, 110)
        try budget.chargeInflate(100)
        try budget.chargeDelta(110)
        XCTAssertThrowsError(try budget.chargeInflate(11)) { XCTAssertEqual(($0 as? GitError)?.limit, .inflatedBytes) }
        // Every later charge fails with the first reason, so all threads stop.
        XCTAssertThrowsError(try budget.chargeDelta(0)) { XCTAssertEqual(($0 as? GitError)?.limit, .inflatedBytes) }
        XCTAssertEqual(budget.exceeded?.kind, .overBudget)
        let late = WorkBudget(limits: limits, inputBytes: 10, deadline: Instant.now().adding(seconds: -1))
        XCTAssertThrowsError(try late.check()) { XCTAssertEqual(($0 as? GitError)?.limit, .deadline) }
    }

    /// The issue's 44 KB pack (32 MiB base, 45-deep chain with leaves: 33 s of CPU before)
    /// is refused at once: the base alone inflates to more than the pack is worth.
    func testIssueChainOfLargeObjectsIsRefusedAtOnce() throws {
        let (pack, _, _) = try chainWithLeaves(size: 32 << 20, depth: 45, fakeNames: true)
        XCTAssertLessThan(pack.count, 100_000)
        assertRefused(pack, .inflatedBytes, within: 2)
    }

    /// The same shape where the budget allows it (work budget off): every object is built
    /// exactly once even with room for only two bases, instead of the chain being
    /// rebuilt for every leaf.
    func testChainWithLeavesBuildsEveryObjectOnce() throws {
        let size = 256 << 10
        let depth = 24
        for leavesFirst in [false, true] {
            let (pack, count, declared) = try chainWithLeaves(size: size, depth: depth, leavesFirst: leavesFirst)
            var limits = ObjectLimits()
            limits.workFactor = 0
            limits.deltaBaseBudget = 2 * 2 * size  // two bases for each of the two threads
            let budget = WorkBudget(limits: limits, inputBytes: pack.count)
            let result = try index(pack, limits: limits, budget: budget)
            XCTAssertEqual(result.count, count)
            XCTAssertEqual(budget.deltaProduced, 2 * depth * size, "each delta applied once (leaves first: \(leavesFirst))")
            XCTAssertEqual(budget.inflated, 2 * declared, "every entry inflated twice: by the scan and to resolve it")
        }
    }

    /// With the default budget the same chain, made large enough, is stopped by the delta
    /// budget part-way, not after building everything.
    func testDeltaBudgetStopsAChainPartWay() throws {
        let size = 512 << 10
        let (pack, _, _) = try chainWithLeaves(size: size, depth: 40)
        var limits = ObjectLimits()
        limits.workAllowance = 16 << 20
        let budget = WorkBudget(limits: limits, inputBytes: pack.count)
        // How far it got is asserted through the budget's counters, not the clock: building
        // the chain in a debug build takes about 5 s on its own, more with the suite in parallel.
        assertRefused(pack, limits: limits, budget: budget, .deltaBytes, within: 120)
        XCTAssertLessThanOrEqual(budget.deltaProduced, budget.deltaLimit)
        XCTAssertLessThan(budget.deltaProduced, 40 * 2 * size)
    }

    /// Tree-shaped: a base with two children that both have chains of their own, and no
    /// room to keep any base: dropped bases are rebuilt (and charged again), and the
    /// objects still come out right.
    func testDroppedBasesAreRebuiltCorrectly() throws {
        var c = PackCrafter()
        let size = 64 << 10
        let base = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let baseID = try c.addObject(.blob, base)
        var expected: Set<ObjectID> = [baseID]
        for branch in 0..<2 {
            var parent = baseID
            for k in 0..<5 {
                let body = Array(base[0..<(size - 1)]) + [UInt8(16 * branch + k)]
                let id = ObjectID.compute(type: .blob, body: body)
                try c.add(kind: PackEntryKind.refDelta, payload: copyThenInsert(baseSize: size, prefix: size - 1, literal: [UInt8(16 * branch + k)]),
                          base: parent.bytes, name: id)
                expected.insert(id)
                parent = id
            }
        }
        var limits = ObjectLimits()
        limits.deltaBaseBudget = 1
        let budget = WorkBudget(limits: limits, inputBytes: 1 << 30)
        let result = try index(c.finish().pack, limits: limits, budget: budget)
        XCTAssertEqual(Set(try result.objects.map(\.id)), expected)
        XCTAssertGreaterThan(budget.deltaProduced, 10 * size, "some bases were rebuilt")
    }

    func testDeltaChainDepthLimit() throws {
        func chain(_ depth: Int) throws -> [UInt8] {
            var c = PackCrafter()
            var body = Array("base object\n".utf8)
            var previous = try c.addObject(.blob, body)
            for i in 0..<depth {
                let next = body + [UInt8(i & 0x7F)]
                let id = ObjectID.compute(type: .blob, body: next)
                try c.add(kind: PackEntryKind.refDelta, payload: copyThenInsert(baseSize: body.count, prefix: body.count, literal: [UInt8(i & 0x7F)]),
                          base: previous.bytes, name: id)
                body = next
                previous = id
            }
            return c.finish().pack
        }
        XCTAssertEqual(try index(chain(64)).count, 65, "git's depth 50 and a margin are fine")
        assertRefused(try chain(65), .deltaDepth)
        var deeper = ObjectLimits()
        deeper.maxDeltaDepth = 100
        XCTAssertEqual(try index(chain(65), limits: deeper).count, 66)
    }

    /// A delta declaring a result within the object size limit but beyond the budget is
    /// refused before the result is allocated; one beyond the object size limit too.
    func testDeclaredResultIsChargedBeforeAllocating() throws {
        var c = PackCrafter()
        let base = [UInt8](repeating: 7, count: 1 << 16)
        let baseID = try c.addObject(.blob, base)
        // 90 MiB of copies of the base: a few kilobytes of delta.
        let big = deltaVarint(base.count) + deltaVarint(90 << 20) + (0..<(90 << 4)).flatMap { _ in copyInstruction(offset: 0, size: 1 << 16) }
        XCTAssertLessThan(big.count, 20_000)
        try c.add(kind: PackEntryKind.refDelta, payload: big, base: baseID.bytes, name: ObjectID.compute(type: .blob, body: [1]))
        assertRefused(c.finish().pack, .deltaBytes, within: 2)

        var huge = PackCrafter()
        let hugeBase = try huge.addObject(.blob, base)
        let claim = deltaVarint(base.count) + deltaVarint(1020 << 20) + copyInstruction(offset: 0, size: 1 << 16)
        try huge.add(kind: PackEntryKind.refDelta, payload: claim, base: hugeBase.bytes, name: ObjectID.compute(type: .blob, body: [2]))
        assertRefused(huge.finish().pack, .objectSize, within: 2)
    }

    /// `objects verify` applies the same bounds to a pack that arrived by other means:
    /// one over-budget problem for the pack, nothing reported missing because of it.
    func testVerifierReportsAnOverBudgetPackOnce() throws {
        let base = try makeTempDirectory(self)
        let repo = try Repository.create(bare: base + "/r.git")
        var c = PackCrafter()
        _ = try c.addObject(.blob, [UInt8](repeating: 0, count: 12 << 20))
        for i in 0..<20 { _ = try c.addObject(.blob, Array("small \(i)\n".utf8)) }
        try c.install(in: repo.gitDirectory)
        let (problems, summary) = try verify(repo.gitDirectory)
        XCTAssertEqual(problems.map(\.kind), [.overBudget], "\(problems)")
        XCTAssertFalse(summary.isClean)
        // Raised limits: clean.
        var limits = ObjectLimits()
        limits.workFactor = 0
        XCTAssertEqual(try verify(repo.gitDirectory, options: VerifyOptions(limits: limits)).0, [])
    }
}
