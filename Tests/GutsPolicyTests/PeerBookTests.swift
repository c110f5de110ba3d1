import GutsAddress
import GutsIdentity
import GutsPolicy
import GutsSupport
import XCTest

final class PeerBookTests: XCTestCase {
    /// Each time the score bans a peer the ban is twice as long, up to 7 days; its address is
    /// banned alongside for at most an hour; the score restarts at neutral after each ban.
    func testRepeatedOffencesLengthenBans() throws {
        var book = PeerBook(epoch: testEpoch)
        let p = try peer(1)
        let address = try ip("203.0.113.7")
        var t = 0.0
        var durations = [Double]()
        for offence in 1...12 {
            XCTAssertEqual(book.record(.protocolViolation, peer: p, address: address, now: at(t)), .disconnect)
            guard case let .banned(until?) = book.record(.protocolViolation, peer: p, address: address, now: at(t)) else {
                return XCTFail("offence \(offence): the second violation bans")
            }
            let duration = until.seconds(since: at(t))
            durations.append(duration)
            XCTAssertEqual(book.entry(p)?.offences, offence)
            XCTAssertEqual(book.score(p, now: at(t)), 0, "the score restarts after a ban")
            XCTAssertEqual(book.standing(p, now: at(t)), .banned(until: until))
            XCTAssertEqual(book.record(.stall, peer: p, now: at(t + 1)), .banned(until: until), "events during a ban keep it")
            let addressBan = min(duration, 3_600)
            XCTAssertTrue(book.isBanned(address, now: at(t + addressBan - 1)))
            XCTAssertFalse(book.isBanned(address, now: at(t + addressBan)), "automatic address bans last at most an hour")
            XCTAssertTrue(book.isBanned(p, now: at(t + duration - 1)))
            t += duration
            XCTAssertFalse(book.isBanned(p, now: at(t)))
            XCTAssertEqual(book.standing(p, now: at(t)), .good, "the stall recorded during the ban has decayed")
        }
        XCTAssertEqual(durations, [600, 1_200, 2_400, 4_800, 9_600, 19_200, 38_400, 76_800, 153_600, 307_200, 604_800, 604_800])
    }

    func testStandingFollowsTheScore() throws {
        var book = PeerBook(epoch: testEpoch)
        let p = try peer(2)
        XCTAssertEqual(book.standing(p, now: at(0)), .good, "an unknown peer is good")
        XCTAssertEqual(book.record(.invalidGossip, peer: p, now: at(0)), .good)
        XCTAssertEqual(book.record(.invalidGossip, peer: p, now: at(0)), .graylisted)
        XCTAssertEqual(book.record(.invalidGossip, peer: p, now: at(0)), .disconnect)
        XCTAssertEqual(book.standing(p, now: at(0)), .disconnect)
        XCTAssertEqual(book.standing(p, now: at(6 * 3_600)), .graylisted, "one half-life later")
        XCTAssertEqual(book.components(p, now: at(0)).first { $0.name == "invalid-gossip" }?.value, -60)
        XCTAssertEqual(book.components(try peer(99), now: at(0)).count, ScoreEvent.allCases.count)
    }

    func testManualBans() throws {
        var book = PeerBook(epoch: testEpoch)
        let p = try peer(3)
        XCTAssertEqual(try BanTarget.parse(p.description), .peer(p))
        book.ban(.peer(p), for: nil, now: at(0))
        XCTAssertEqual(book.standing(p, now: at(1e8)), .banned(until: nil), "permanent")
        book.record(.protocolViolation, count: 5, peer: p, now: at(1))
        XCTAssertEqual(book.entry(p)?.ban, .manual(until: nil), "an automatic ban never replaces a manual one")
        XCTAssertTrue(book.unban(.peer(p), now: at(2)))
        XCTAssertFalse(book.isBanned(p, now: at(2)))
        XCTAssertEqual(book.entry(p)?.offences, 0)
        XCTAssertEqual(book.score(p, now: at(2)), 0, "unban forgives")
        XCTAssertFalse(book.unban(.peer(p), now: at(3)), "nothing left to forgive")

        let net = try BanTarget.parse("10.1.2.0/24")
        XCTAssertEqual(net, .prefix(try AddressPrefix.parse("10.1.2.0/24")))
        XCTAssertTrue(book.ban(net, for: 86_400, now: at(0)))
        XCTAssertTrue(book.isBanned(address: "10.1.2.77", now: at(86_399)))
        XCTAssertTrue(book.isBanned(address: "::ffff:10.1.2.5", now: at(0)))
        XCTAssertFalse(book.isBanned(address: "10.1.3.1", now: at(0)))
        XCTAssertFalse(book.isBanned(address: "example.org", now: at(0)), "host names cannot be checked")
        XCTAssertFalse(book.isBanned(address: "10.1.2.77", now: at(86_400)), "manual bans may be longer than an hour, and end")
        XCTAssertTrue(book.unban(net, now: at(1)))
        XCTAssertFalse(book.isBanned(address: "10.1.2.77", now: at(1)))
        XCTAssertFalse(book.unban(net, now: at(1)))

        book.ban(try BanTarget.parse("2001:db8::/48"), for: nil, now: at(0))
        XCTAssertTrue(book.isBanned(address: "2001:db8:0:1::9", now: at(1e9)))
        XCTAssertEqual(book.addressBans(now: at(0)).map(\.prefix.description), ["2001:db8::/48"])

        XCTAssertThrowsError(try BanTarget.parse("gtaaaa")) { XCTAssertTrue("\($0)".contains("peer ID"), "\($0)") }
        XCTAssertThrowsError(try BanTarget.parse("10.1.2.3/24"))
    }

    func testAutomaticAddressBansLastAtMostAnHour() throws {
        var book = PeerBook(epoch: testEpoch)
        let a = try ip("198.51.100.1")
        XCTAssertTrue(book.penalize(a, for: 86_400, now: at(0)))
        XCTAssertTrue(book.isBanned(a, now: at(3_599)))
        XCTAssertFalse(book.isBanned(a, now: at(3_600)))
        XCTAssertFalse(book.isBanned(try ip("198.51.100.2"), now: at(0)), "only the one address, not its group")

        XCTAssertTrue(book.penalize(a, for: 600, now: at(4_000)))
        XCTAssertFalse(book.penalize(a, for: 60, now: at(4_001)), "never shortens a longer ban")
        XCTAssertTrue(book.isBanned(a, now: at(4_599)))

        book.ban(.prefix(AddressPrefix(a)), for: 86_400, now: at(5_000))
        XCTAssertFalse(book.penalize(a, for: 60, now: at(5_001)), "never replaces a manual ban")
        XCTAssertTrue(book.isBanned(a, now: at(80_000)))
    }

    func testCandidatesAreBestFirstAndSkipBanned() throws {
        var book = PeerBook(epoch: testEpoch)
        func endpoint(_ host: String) throws -> Endpoint { try Endpoint.parse(host + ":9000") }
        let (good, neutralOld, neutralNew, graylisted, banned, bannedAddress, noAddress, hopeless) =
            (try peer(10), try peer(11), try peer(12), try peer(13), try peer(14), try peer(15), try peer(16), try peer(17))
        book.seen(good, at: try endpoint("203.0.113.10"), now: at(0))
        book.record(.firstDelivery, count: 5, peer: good, now: at(0))
        book.seen(neutralOld, at: try endpoint("203.0.113.11"), now: at(1))
        book.seen(neutralNew, at: try endpoint("peer.example.org"), now: at(2))
        book.seen(graylisted, at: try endpoint("[2001:db8::13]"), now: at(0))
        book.record(.invalidGossip, count: 2, peer: graylisted, now: at(0))
        book.seen(banned, at: try endpoint("203.0.113.14"), now: at(0))
        book.ban(.peer(banned), for: 60, now: at(0))
        book.seen(bannedAddress, at: try endpoint("192.0.2.15"), now: at(0))
        book.ban(try BanTarget.parse("192.0.2.0/24"), for: nil, now: at(0))
        book.seen(noAddress, now: at(0))
        book.seen(hopeless, at: try endpoint("203.0.113.17"), now: at(0))
        book.record(.protocolViolation, peer: hopeless, now: at(0))

        let list = book.candidates(now: at(10))
        XCTAssertEqual(list.map(\.peer), [good, neutralNew, neutralOld, graylisted])
        XCTAssertEqual(list.first?.score ?? 0, 5, accuracy: 0.01)
        XCTAssertEqual(list.first?.addresses.map(\.address), ["203.0.113.10:9000"])
        XCTAssertEqual(book.candidates(now: at(10), limit: 2).count, 2)
        XCTAssertTrue(book.candidates(now: at(61)).contains { $0.peer == banned }, "the ban ended")

        // Endpoints are kept most recent first, without duplicates, at most 8.
        for k in 0..<12 { book.seen(good, at: try endpoint("203.0.113.\(100 + k % 10)"), now: at(20 + Double(k))) }
        let addresses = book.entry(good)?.addresses.map(\.host) ?? []
        XCTAssertEqual(addresses.count, 8)
        XCTAssertEqual(addresses.first, "203.0.113.101")
        XCTAssertEqual(Set(addresses).count, 8)
    }

    /// A flood of fresh identities, well-behaved or not, never grows the book past its cap
    /// and never pushes out peers with a good record.
    func testIdentityFloodStaysWithinTheCapAndKeepsGoodPeers() throws {
        var limits = PeerBook.Limits()
        limits.maxPeers = 1_000
        var book = PeerBook(epoch: testEpoch, limits: limits)
        let good = try (0..<20).map { try peer(1_000_000 + $0) }
        for p in good {
            book.seen(p, at: try Endpoint.parse("203.0.113.1:9000"), now: at(0))
            book.record(.objectsServed, count: 2, peer: p, now: at(0))
        }
        for k in 0..<30_000 {
            let t = 1 + Double(k) * 0.01
            if k % 2 == 0 {
                book.record(.invalidGossip, count: 2, peer: try peer(k), now: at(t))
            } else {
                book.seen(try peer(k), at: try Endpoint.parse("198.51.100.1:9000"), now: at(t))
            }
            XCTAssertLessThanOrEqual(book.count, 1_000)
        }
        for p in good { XCTAssertNotNil(book.entry(p), "good peer \(p.short) survived the flood") }
    }

    func testPruneForgetsWhatRanOut() throws {
        var book = PeerBook(epoch: testEpoch)
        let (offender, quiet, reachable) = (try peer(20), try peer(21), try peer(22))
        book.record(.protocolViolation, count: 2, peer: offender, now: at(0))
        XCTAssertTrue(book.isBanned(offender, now: at(0)))
        book.seen(quiet, now: at(0))
        book.seen(reachable, at: try Endpoint.parse("203.0.113.22:9000"), now: at(0))
        book.penalize(try ip("203.0.113.99"), for: 60, now: at(0))
        book.prune(now: at(601))
        XCTAssertNil(book.entry(offender)?.ban, "the expired ban is gone")
        XCTAssertEqual(book.entry(offender)?.offences, 1, "the offence count stays")
        XCTAssertNil(book.entry(quiet), "a neutral peer with no address carries nothing")
        XCTAssertNotNil(book.entry(reachable))
        XCTAssertTrue(book.addressBans(now: at(0)).isEmpty, "expired address bans are dropped")
    }

    /// Automatic address bans cannot crowd out manual ones or grow the table past its cap.
    func testAddressBanTableStaysWithinTheCap() throws {
        var limits = PeerBook.Limits()
        limits.maxAddressBans = 100
        var book = PeerBook(epoch: testEpoch, limits: limits)
        for k in 0..<10 { XCTAssertTrue(book.ban(.prefix(try AddressPrefix.parse("192.0.2.\(k)")), for: nil, now: at(0))) }
        for k in 0..<10_000 { book.penalize(v4(k >> 16, k >> 8, k), for: 3_600, now: at(Double(k) * 0.01)) }
        let bans = book.addressBans(now: at(100))
        XCTAssertLessThanOrEqual(bans.count, 100)
        XCTAssertEqual(bans.filter { $0.ban.isManual }.count, 10, "manual bans survive")
        XCTAssertTrue(book.isBanned(v4(9_999 >> 16, 9_999 >> 8, 9_999), now: at(100)), "the newest automatic ban is kept")
        for k in 10..<100 {
            XCTAssertTrue(book.ban(.prefix(AddressPrefix(v4(200, 0, k))), for: nil, now: at(100)))
        }
        XCTAssertFalse(book.ban(.prefix(AddressPrefix(v4(200, 1, 0))), for: nil, now: at(100)), "full of manual bans")
    }
}
