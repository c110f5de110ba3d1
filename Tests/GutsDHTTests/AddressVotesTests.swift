import GutsCrypto
import GutsDHT
import GutsPolicy
import GutsSupport
import XCTest

/// Observed addresses: a node adopts the IP address peers see it at only when reporters in
/// `quorum` distinct prefixes agree (guts-protocol(7), DHT, Observed addresses).
final class AddressVotesTests: XCTestCase {
    func ip(_ text: String) throws -> IPAddress { try XCTUnwrap(IPAddress(text)) }

    func testThreePrefixesAreNeededAndOnePrefixVotesOnce() throws {
        var v = AddressVotes()
        let seen = try ip("203.0.113.50")
        // Three reporters in one /24 are one vote.
        XCTAssertFalse(v.record(seen, by: contact(keyPair(1), "198.51.100.1:9000"), now: at(0).monotonic))
        XCTAssertFalse(v.record(seen, by: contact(keyPair(2), "198.51.100.2:9000"), now: at(0).monotonic))
        XCTAssertFalse(v.record(seen, by: contact(keyPair(3), "198.51.100.3:9000"), now: at(0).monotonic))
        XCTAssertEqual(v.votes(for: seen), 1)
        XCTAssertEqual(v.adopted, [])
        XCTAssertFalse(v.record(seen, by: contact(keyPair(4), "192.0.2.1:9000"), now: at(1).monotonic))
        XCTAssertTrue(v.record(seen, by: contact(keyPair(5), "8.8.4.4:9000"), now: at(2).monotonic))
        XCTAssertEqual(v.adopted, [seen])
        // A repeated report changes nothing.
        XCTAssertFalse(v.record(seen, by: contact(keyPair(5), "8.8.4.4:9000"), now: at(3).monotonic))
    }

    func testDisagreementNeedsAMajorityOfPrefixesToMove() throws {
        var v = AddressVotes()
        let a = try ip("203.0.113.50"), b = try ip("203.0.113.99")
        for (i, r) in ["198.51.100.1", "192.0.2.1", "8.8.4.4"].enumerated() {
            v.record(a, by: contact(keyPair(i), r + ":9000"), now: at(Double(i)).monotonic)
        }
        XCTAssertEqual(v.adopted, [a])
        // Three other prefixes say b: a tie with a keeps a.
        for (i, r) in ["1.1.1.1", "9.9.9.9", "4.4.4.4"].enumerated() {
            v.record(b, by: contact(keyPair(10 + i), r + ":9000"), now: at(10).monotonic)
        }
        XCTAssertEqual(v.adopted, [a])
        // A fourth makes b the majority.
        XCTAssertTrue(v.record(b, by: contact(keyPair(20), "5.5.5.5:9000"), now: at(11).monotonic))
        XCTAssertEqual(v.adopted, [b])
    }

    func testNarrowerScopeThanTheReporterIsIgnored() throws {
        var v = AddressVotes()
        // Global reporters cannot make this node advertise a loopback or private address.
        for (i, r) in ["198.51.100.1", "192.0.2.1", "8.8.4.4", "1.1.1.1"].enumerated() {
            XCTAssertFalse(v.record(try ip("127.0.0.1"), by: contact(keyPair(i), r + ":9000"), now: at(0).monotonic))
            XCTAssertFalse(v.record(try ip("10.0.0.5"), by: contact(keyPair(i), r + ":9000"), now: at(0).monotonic))
        }
        XCTAssertEqual(v.voterCount, 0)
        XCTAssertEqual(v.adopted, [])
    }

    func testLoopbackReportersVotePerPeer() throws {
        var v = AddressVotes()
        let lo = try ip("127.0.0.1")
        XCTAssertFalse(v.record(lo, by: contact(keyPair(1), "127.0.0.1:9001"), now: at(0).monotonic))
        // The same peer again (another port): still one vote.
        XCTAssertFalse(v.record(lo, by: contact(keyPair(1), "127.0.0.1:9005"), now: at(0).monotonic))
        XCTAssertFalse(v.record(lo, by: contact(keyPair(2), "127.0.0.1:9002"), now: at(0).monotonic))
        XCTAssertTrue(v.record(lo, by: contact(keyPair(3), "127.0.0.1:9003"), now: at(0).monotonic))
        XCTAssertEqual(v.adopted, [lo])
    }

    func testVotesExpireAndAreBounded() throws {
        var v = AddressVotes(lifetime: 60, maxVoters: 4)
        let a = try ip("203.0.113.50")
        v.record(a, by: contact(keyPair(1), "198.51.100.1:9000"), now: at(0).monotonic)
        v.record(a, by: contact(keyPair(2), "192.0.2.1:9000"), now: at(0).monotonic)
        // The first two expired: a third report is not a quorum.
        XCTAssertFalse(v.record(a, by: contact(keyPair(3), "8.8.4.4:9000"), now: at(61).monotonic))
        XCTAssertEqual(v.voterCount, 1)
        // Many prefixes: never more than maxVoters tracked.
        for i in 0..<50 {
            v.record(try ip("203.0.113.\(i + 100)"), by: contact(keyPair(100 + i), "10.\(i).0.1:9000"), now: at(62).monotonic)
        }
        XCTAssertLessThanOrEqual(v.voterCount, 4)
    }

    func testOneAddressPerFamily() throws {
        var v = AddressVotes()
        let a4 = try ip("203.0.113.50"), a6 = try ip("2001:db8::50")
        for (i, r) in ["198.51.100.1", "192.0.2.1", "8.8.4.4"].enumerated() {
            v.record(a4, by: contact(keyPair(i), r + ":9000"), now: at(0).monotonic)
        }
        for (i, r) in ["[2001:db8:1::1]", "[2001:db8:2::1]", "[2001:db8:3::1]"].enumerated() {
            v.record(a6, by: contact(keyPair(10 + i), r + ":9000"), now: at(0).monotonic)
        }
        XCTAssertEqual(v.adopted, [a4, a6])
    }

    /// The engine advertises the adopted IP address with its own listening port (not the
    /// port reported), announces its peer record and its provider records, and never learns
    /// when it was given an address.
    func testEngineAdoptsWithItsListeningPort() throws {
        var e = DHTEngine(config: DHTConfig(), identity: keyPair(0), seed: 1, now: at(0).monotonic)
        let repo = try XCTUnwrap(NodeID(bytes: repeated(0x11, 32)))
        _ = e.provide(repo, now: at(0))
        let peers = (1...3).map { contact(keyPair($0), "127.0.0.1:\(9000 + $0)") }
        for p in peers { _ = e.peerVerified(p, now: at(0)) }
        // Not learning: reports are ignored.
        for p in peers { _ = e.receive(.observedAddress(ObservedAddress(address: address("127.0.0.1:40000"))), from: p, now: at(1)) }
        XCTAssertEqual(e.addresses, [])
        XCTAssertNil(e.currentPeerRecord(now: at(1)))
        e.learnAddresses(port: 7777)
        var last: [DHTAction] = []
        for (i, p) in peers.enumerated() {
            last = e.receive(.observedAddress(ObservedAddress(address: address("127.0.0.1:\(40000 + i)"))), from: p, now: at(2))
            XCTAssertEqual(e.addresses.isEmpty, i < 2)
        }
        XCTAssertEqual(e.addresses, [address("127.0.0.1:7777")])
        XCTAssertEqual(e.currentPeerRecord(now: at(2))?.addresses, [address("127.0.0.1:7777")])
        let sent = sends(last).map(\.1.kind)
        XCTAssertTrue(sent.contains(.findNode), "\(sent)")
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(2).unixSeconds).first?.addresses, [address("127.0.0.1:7777")])
        // A configured address is never replaced by learning (the node does not learn).
        var told = DHTEngine(config: DHTConfig(), identity: keyPair(0), seed: 1, now: at(0).monotonic)
        _ = told.setAddresses([address("127.0.0.5:5000")], now: at(0))
        for p in peers { _ = told.receive(.observedAddress(ObservedAddress(address: address("127.0.0.1:40000"))), from: p, now: at(1)) }
        XCTAssertEqual(told.addresses, [address("127.0.0.5:5000")])
    }
}
