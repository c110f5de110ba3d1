import GutsGit
import GutsSync
import XCTest
@testable import GutsCLI

final class PeersCommandUnitTests: XCTestCase {
    func testDurations() {
        XCTAssertEqual(PeersBanCommand.parseDuration("30s"), 30)
        XCTAssertEqual(PeersBanCommand.parseDuration("45"), 45)
        XCTAssertEqual(PeersBanCommand.parseDuration("10m"), 600)
        XCTAssertEqual(PeersBanCommand.parseDuration("2h"), 7200)
        XCTAssertEqual(PeersBanCommand.parseDuration("7d"), 604_800)
        XCTAssertEqual(PeersBanCommand.parseDuration("1w"), 604_800)
        XCTAssertEqual(PeersBanCommand.parseDuration("3650d"), 315_360_000)
        for bad in ["", "s", "0", "0s", "-5m", "+5m", "1.5h", "5y", "3651d", "1e3", " 5m", "5m ", "5M", "9999999999999s", "٣s"] {
            XCTAssertNil(PeersBanCommand.parseDuration(bad), bad)
        }
    }

    func testNumbersAndTimes() {
        XCTAssertEqual(PeerScoreFormat.number(0), "0")
        XCTAssertEqual(PeerScoreFormat.number(-0.001), "0")
        XCTAssertEqual(PeerScoreFormat.number(-40), "-40")
        XCTAssertEqual(PeerScoreFormat.number(-39.99961), "-40")
        XCTAssertEqual(PeerScoreFormat.number(2.345), "2.35")
        XCTAssertEqual(PeerScoreFormat.number(0.05), "0.05")
        XCTAssertEqual(PeerScoreFormat.number(.nan), "0")
        XCTAssertEqual(PeerScoreFormat.rfc3339(0), "1970-01-01T00:00:00Z")
        XCTAssertEqual(PeerScoreFormat.rfc3339(1_796_149_108.4), "2026-12-01T18:18:28Z")
        XCTAssertEqual(PeerScoreFormat.rfc3339(-1), "-")
        XCTAssertEqual(PeerScoreFormat.rfc3339(.infinity), "-")
        XCTAssertEqual(PeerScoreFormat.banned(until: nil), "banned until unbanned")
    }

    /// The events a failed sync holds against its peer, as the node's mirror syncs do; none
    /// for limits lowered below their defaults.
    func testSyncOffences() {
        let d = ObjectLimits.default
        func offence(_ f: SyncFailure, limits: ObjectLimits = .default, pack: Int = SyncOptions.defaultMaxPackBytes,
                     deadline: Double = SyncOptions.defaultDeadline, timeout: Double = 30) -> String? {
            SyncCommand.offence(f, limits: limits, maxPackSize: pack, deadline: deadline, timeout: timeout)?.rawValue
        }
        XCTAssertEqual(offence(.integrity("x")), "bad-objects")
        XCTAssertEqual(offence(.forged("x")), "bad-objects")
        XCTAssertEqual(offence(.stale("x")), "bad-objects")
        XCTAssertEqual(offence(.identityMismatch("x")), "bad-objects")
        XCTAssertEqual(offence(.protocolViolation("x")), "protocol-violation")
        XCTAssertEqual(offence(.timeout("x")), "stall")
        XCTAssertNil(offence(.timeout("x"), timeout: 5))
        XCTAssertEqual(offence(.budget(limit: .packSize, "x")), "bad-objects")
        XCTAssertNil(offence(.budget(limit: .packSize, "x"), pack: 1 << 20))
        var small = d
        small.maxObjectSize = 1 << 10
        XCTAssertNil(offence(.budget(limit: .objectSize, "x"), limits: small))
        XCTAssertEqual(offence(.budget(limit: .deltaDepth, "x"), limits: small), "bad-objects")
        XCTAssertEqual(offence(.budget(limit: .deadline, "x")), "stall")
        XCTAssertNil(offence(.budget(limit: .deadline, "x"), deadline: 10))
        for f: SyncFailure in [.notFound("x"), .refused("x"), .connection("x"), .local("x"), .busy("x"), .untrusted("x")] {
            XCTAssertNil(offence(f), "\(f)")
        }
    }
}
