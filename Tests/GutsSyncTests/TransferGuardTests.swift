import GutsGit
import GutsSupport
import GutsSync
import XCTest

/// The transfer limits of a sync, driven with a made-up clock and made-up free space.
final class TransferGuardTests: XCTestCase {
    let t0 = Instant(nanoseconds: 1_000_000_000_000)

    func at(_ seconds: Double) -> Instant { t0.adding(seconds: seconds) }

    func makeGuard(timeout: Double = 10, deadline: Double? = 60, maxPack: Int = 1 << 20, minFree: Int = 1000) -> TransferGuard {
        var g = TransferGuard(noProgressTimeout: timeout, deadlineSeconds: deadline, started: t0, maxPackBytes: maxPack,
                              minFreeBytes: minFree, diskCheckInterval: 100)
        g.start(at: t0)
        return g
    }

    func failure(_ body: () throws -> Void) -> SyncFailure? {
        do {
            try body()
            return nil
        } catch {
            return error as? SyncFailure
        }
    }

    /// Only pack bytes are progress: without them the wait runs out after the timeout,
    /// however many empty chunks or other messages came meanwhile.
    func testOnlyPackBytesAreProgress() throws {
        var g = makeGuard()
        XCTAssertEqual(try g.waitLimit(at: at(0), waitingFor: "objects"), 10, accuracy: 1e-6)
        XCTAssertEqual(try g.waitLimit(at: at(4), waitingFor: "objects"), 6, accuracy: 1e-6)
        XCTAssertFalse(try g.received(0, at: at(9)))  // an empty chunk: no progress
        guard case .timeout = failure({ _ = try g.waitLimit(at: at(10.5), waitingFor: "objects") }) else {
            return XCTFail("no progress for 10 s must time out")
        }
        _ = try g.received(5, at: at(9.5))
        XCTAssertEqual(try g.waitLimit(at: at(10.5), waitingFor: "objects"), 9, accuracy: 1e-6)
    }

    /// A drip of pack bytes keeps the no-progress clock going, but not past the deadline.
    func testDeadlineEndsADrip() throws {
        var g = makeGuard(timeout: 10, deadline: 30)
        var now = 0.0
        while now < 29 {
            _ = try g.received(1, at: at(now))
            XCTAssertLessThanOrEqual(try g.waitLimit(at: at(now), waitingFor: "objects"), 30 - now + 1e-6)
            now += 2
        }
        guard case let .timeout(message) = failure({ _ = try g.waitLimit(at: at(30), waitingFor: "objects") }) else {
            return XCTFail("the deadline must end it")
        }
        XCTAssertTrue(message.contains("deadline of 30 s"), message)
        // Without a deadline only the no-progress timeout applies.
        var open = makeGuard(timeout: 10, deadline: nil)
        _ = try open.received(1, at: at(1000))
        XCTAssertEqual(try open.waitLimit(at: at(1001), waitingFor: "objects"), 9, accuracy: 1e-6)
    }

    func testPackSizeIsCheckedAsBytesArrive() throws {
        var g = makeGuard(maxPack: 250)
        _ = try g.received(200, at: at(1))
        let f = failure { _ = try g.received(51, at: at(2)) }
        XCTAssertEqual(f?.limit, .packSize, "\(String(describing: f))")
    }

    /// Free space is checked before the transfer and every `diskCheckInterval` bytes.
    func testFreeDiskReserve() throws {
        var g = makeGuard(minFree: 1000)
        XCTAssertNil(failure { try g.checkDisk(free: 5000, path: "/q") })
        XCTAssertNil(failure { try g.checkDisk(free: nil, path: "/q") }, "unknown: not checked")
        guard case let .local(before) = failure({ try g.checkDisk(free: 999, path: "/q") }) else { return XCTFail("too little space") }
        XCTAssertTrue(before.contains("min-free-disk"), before)
        XCTAssertFalse(try g.received(60, at: at(1)))
        XCTAssertTrue(try g.received(60, at: at(1)), "120 bytes since the last check: check now")
        XCTAssertFalse(try g.received(10, at: at(1)))
        guard case let .local(during) = failure({ try g.checkDisk(free: 10, path: "/q") }) else { return XCTFail("too little space") }
        XCTAssertTrue(during.contains("after receiving 130 bytes"), during)
        XCTAssertNotNil(TransferGuard.freeBytes("/"))
    }

    func testBudgetFailuresCarryTheirLimit() {
        let f = SyncFailure.budget(limit: .deltaDepth, "delta chain deeper than 64")
        XCTAssertEqual(f.limit, .deltaDepth)
        XCTAssertEqual(f.description, "delta chain deeper than 64")
        XCTAssertNil(SyncFailure.integrity("x").limit)
    }
}
