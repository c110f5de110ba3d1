import XCTest
import GutsCrypto
import GutsIdentity
import GutsSupport
import GutsTrust
@testable import GutsNode

/// Providers from announcements seen: bounded per repository, per origin and in all, and
/// expiring (virtual clock).
final class SeenProvidersTests: XCTestCase {
    let t0 = Instant(nanoseconds: 1_000_000_000)

    func peer(_ n: UInt8) -> PeerID {
        var seed = [UInt8](repeating: 0x5A, count: 32)
        seed[0] = n
        guard let kp = try? Ed25519KeyPair(seed: seed), let id = try? PeerID(publicKey: kp.publicKey) else { preconditionFailure("key") }
        return id
    }

    func repo(_ n: Int) -> RepositoryID {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes[0] = UInt8(truncatingIfNeeded: n >> 8)
        bytes[1] = UInt8(truncatingIfNeeded: n)
        guard let id = RepositoryID(bytes: bytes) else { preconditionFailure("id") }
        return id
    }

    func testMostRecentFirstAndExpiry() {
        var s = SeenProviders()
        s.record(repo(1), origin: peer(1), now: t0)
        s.record(repo(1), origin: peer(2), now: t0.adding(seconds: 10))
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 20)).map(\.peer), [peer(2), peer(1)])
        // A new announcement refreshes an entry without adding one.
        s.record(repo(1), origin: peer(1), now: t0.adding(seconds: 30))
        XCTAssertEqual(s.count, 2)
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 31)).map(\.peer), [peer(1), peer(2)])
        // Past the lifetime: gone from answers, and dropped by the next record.
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 3615)).map(\.peer), [peer(1)])
        s.record(repo(2), origin: peer(3), now: t0.adding(seconds: 3700))
        XCTAssertEqual(s.count, 1)
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 3700)), [])
    }

    func testBoundsPerRepositoryPerOriginAndInAll() {
        var limits = SeenProviders.Limits()
        limits.maxPerRepository = 3
        limits.maxPerOrigin = 4
        limits.maxEntries = 10
        var s = SeenProviders(limits: limits)
        for i in 0..<6 { s.record(repo(1), origin: peer(UInt8(i)), now: t0.adding(seconds: Double(i))) }
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 10)).map(\.peer), [peer(5), peer(4), peer(3)])
        // One origin announcing many repositories keeps only its newest few...
        for r in 10..<30 { s.record(repo(r), origin: peer(9), now: t0.adding(seconds: Double(r))) }
        XCTAssertEqual((10..<30).filter { !s.providers(of: repo($0), now: t0.adding(seconds: 40)).isEmpty }, [26, 27, 28, 29])
        // ...and does not push out the others.
        XCTAssertEqual(s.providers(of: repo(1), now: t0.adding(seconds: 40)).count, 3)
        // The total is capped.
        for i in 0..<40 { s.record(repo(100 + i), origin: peer(UInt8(20 + i)), now: t0.adding(seconds: 50 + Double(i))) }
        XCTAssertLessThanOrEqual(s.count, 10)
        XCTAssertEqual(s.providers(of: repo(139), now: t0.adding(seconds: 100)).map(\.peer), [peer(59)])
    }

    func testFreshIdentitiesFloodingARepositoryDoNotPushOutAWellScoredAnnouncer() {
        var limits = SeenProviders.Limits()
        limits.maxPerRepository = 4
        var s = SeenProviders(limits: limits)
        s.record(repo(1), origin: peer(1), score: 12, now: t0)
        for i in 0..<40 { s.record(repo(1), origin: peer(UInt8(100 + i)), score: 0, now: t0.adding(seconds: 1 + Double(i))) }
        let kept = s.providers(of: repo(1), now: t0.adding(seconds: 60)).map(\.peer)
        XCTAssertEqual(kept.count, 4)
        XCTAssertTrue(kept.contains(peer(1)), "\(kept)")
        // A newcomer scored below every entry is not kept; a penalised one never displaces.
        var full = SeenProviders(limits: limits)
        for i in 0..<4 { full.record(repo(2), origin: peer(UInt8(i)), score: 5, now: t0) }
        full.record(repo(2), origin: peer(50), score: -3, now: t0.adding(seconds: 1))
        XCTAssertFalse(full.providers(of: repo(2), now: t0.adding(seconds: 2)).map(\.peer).contains(peer(50)))
    }
}
