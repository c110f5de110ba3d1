import Foundation
import GutsCrypto
import GutsDHT
import GutsPolicy
import GutsSupport
import XCTest

final class RoutingTableTests: XCTestCase {
    private let local = NodeID(publicKey: keyPair(1).publicKey)

    private func smallConfig(k: Int = 4) -> DHTConfig {
        var c = DHTConfig()
        c.k = k
        c.maxPerGroupPerBucket = k
        c.maxPerGroupTotal = 1000
        return c
    }

    func testNodeIDIsBLAKE2bOfTheKeyAndDistanceIsXOR() throws {
        let key = keyPair(7)
        XCTAssertEqual(NodeID(publicKey: key.publicKey).bytes, BLAKE2b.hash(key.publicKey, outputLength: 32))
        let a = try XCTUnwrap(NodeID(bytes: hex("80") + repeated(0, 31)))
        let b = try XCTUnwrap(NodeID(bytes: hex("c0") + repeated(0, 30) + hex("01")))
        XCTAssertEqual(a.distance(to: b).bytes, hex("40") + repeated(0, 30) + hex("01"))
        XCTAssertEqual(a.commonPrefixLength(with: b), 1)
        XCTAssertEqual(a.commonPrefixLength(with: a), 256)
        XCTAssertNil(NodeID(bytes: repeated(0, 31)))
        var rng = DHTRandom(seed: 5)
        for bucket in [0, 1, 63, 64, 65, 127, 200, 255] {
            for _ in 0..<20 {
                XCTAssertEqual(local.commonPrefixLength(with: local.randomInBucket(bucket, using: &rng)), bucket)
            }
        }
    }

    func testAddressesParseStrictlyAndRefuseUndialable() {
        XCTAssertEqual(DHTAddress("192.0.2.1:9000")?.description, "192.0.2.1:9000")
        XCTAssertEqual(DHTAddress("[2001:db8::1]:9000")?.description, "[2001:db8::1]:9000")
        XCTAssertEqual(DHTAddress("[::1]:1")?.scope, .loopback)
        XCTAssertEqual(DHTAddress("10.1.2.3:5")?.scope, .private)
        for bad in ["192.0.2.1", "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:09000", "0.0.0.0:9000", "[::]:9000",
                    "224.0.0.1:9000", "[ff02::1]:9000", "example.com:9000", "2001:db8::1:9000", "[fe80::1%eth0]:9000", ""] {
            XCTAssertNil(DHTAddress(bad), bad)
        }
    }

    func testFullBucketPingsTheOldestAndKeepsItWhenAlive() {
        var table = RoutingTable(localID: local, config: smallConfig(), now: at(0).monotonic)
        let ks = keys(inBucket: 0, of: local, count: 6)
        for (i, k) in ks.prefix(4).enumerated() {
            XCTAssertEqual(table.insert(contact(k, "20.0.\(i).1:9000"), now: at(Double(i)).monotonic), .added)
        }
        let oldest = contact(ks[0], "20.0.0.1:9000")
        let newcomer = contact(ks[4], "20.0.4.1:9000")
        XCTAssertEqual(table.insert(newcomer, now: at(10).monotonic), .pingOldest(oldest))
        // A second newcomer while the ping runs only waits in the replacement cache.
        XCTAssertEqual(table.insert(contact(ks[5], "20.0.5.1:9000"), now: at(11).monotonic), .cached)
        XCTAssertEqual(table.replacementCount(bucket: 0), 2)
        XCTAssertNil(table.pingAnswered(oldest.id, alive: true, now: at(12).monotonic))
        XCTAssertTrue(table.contains(oldest.id))
        XCTAssertFalse(table.contains(newcomer.id))
        // The old contact is now the most recently seen: the next ping goes to the second oldest.
        XCTAssertEqual(table.insert(newcomer, now: at(13).monotonic), .pingOldest(contact(ks[1], "20.0.1.1:9000")))
    }

    func testDeadOldestIsReplacedByTheNewestWaitingContact() {
        var table = RoutingTable(localID: local, config: smallConfig(), now: at(0).monotonic)
        let ks = keys(inBucket: 0, of: local, count: 6)
        for (i, k) in ks.prefix(4).enumerated() { _ = table.insert(contact(k, "20.0.\(i).1:9000"), now: at(0).monotonic) }
        let oldest = contact(ks[0], "20.0.0.1:9000")
        _ = table.insert(contact(ks[4], "20.0.4.1:9000"), now: at(1).monotonic)
        _ = table.insert(contact(ks[5], "20.0.5.1:9000"), now: at(2).monotonic)
        let promoted = table.pingAnswered(oldest.id, alive: false, now: at(3).monotonic)
        XCTAssertEqual(promoted, contact(ks[5], "20.0.5.1:9000"))
        XCTAssertFalse(table.contains(oldest.id))
        XCTAssertEqual(table.count, 4)
    }

    func testUnansweredPingCountsAsDeadThroughTheEngine() {
        var config = smallConfig()
        config.pingTimeout = 5
        var engine = DHTEngine(config: config, identity: keyPair(1), seed: 1, now: at(0).monotonic)
        let ks = keys(inBucket: 0, of: local, count: 5)
        for (i, k) in ks.prefix(4).enumerated() { XCTAssertEqual(engine.peerVerified(contact(k, "20.0.\(i).1:9000"), now: at(0)), []) }
        let actions = engine.peerVerified(contact(ks[4], "20.0.4.1:9000"), now: at(1))
        XCTAssertEqual(actions, [.ping(contact(ks[0], "20.0.0.1:9000"))])
        XCTAssertLessThanOrEqual(engine.nextDeadline ?? at(100).monotonic, at(6).monotonic)
        _ = engine.tick(now: at(5.9))
        XCTAssertTrue(engine.table.contains(NodeID(publicKey: ks[0].publicKey)))
        _ = engine.tick(now: at(6))
        XCTAssertFalse(engine.table.contains(NodeID(publicKey: ks[0].publicKey)))
        XCTAssertTrue(engine.table.contains(NodeID(publicKey: ks[4].publicKey)))
    }

    func testContactThatFailedMakesWayWithoutAPing() {
        var table = RoutingTable(localID: local, config: smallConfig(), now: at(0).monotonic)
        let ks = keys(inBucket: 0, of: local, count: 5)
        for (i, k) in ks.prefix(4).enumerated() { _ = table.insert(contact(k, "20.0.\(i).1:9000"), now: at(0).monotonic) }
        let second = NodeID(publicKey: ks[1].publicKey)
        XCTAssertNil(table.failed(second))
        XCTAssertEqual(table.entry(second)?.failures, 1)
        XCTAssertEqual(table.insert(contact(ks[4], "20.0.4.1:9000"), now: at(1).monotonic), .added)
        XCTAssertFalse(table.contains(second))
        // After maxFailures in a row a contact is dropped even with nobody waiting.
        let third = NodeID(publicKey: ks[2].publicKey)
        for _ in 0..<3 { table.failed(third) }
        XCTAssertFalse(table.contains(third))
    }

    func testAddressGroupLimitsPerBucketAndInTotal() {
        var config = smallConfig(k: 20)
        config.maxPerGroupPerBucket = 2
        config.maxPerGroupTotal = 3
        var table = RoutingTable(localID: local, config: config, now: at(0).monotonic)
        let b0 = keys(inBucket: 0, of: local, count: 4)
        let b1 = keys(inBucket: 1, of: local, count: 3)
        XCTAssertEqual(table.insert(contact(b0[0], "20.0.0.1:9000"), now: at(0).monotonic), .added)
        XCTAssertEqual(table.insert(contact(b0[1], "20.0.0.2:9000"), now: at(0).monotonic), .added)
        XCTAssertEqual(table.insert(contact(b0[2], "20.0.0.3:9000"), now: at(0).monotonic), .rejected(.groupLimitInBucket))
        XCTAssertEqual(table.insert(contact(b0[3], "20.0.1.3:9000"), now: at(0).monotonic), .added)
        XCTAssertEqual(table.insert(contact(b1[0], "20.0.0.4:9000"), now: at(0).monotonic), .added)
        XCTAssertEqual(table.insert(contact(b1[1], "20.0.0.5:9000"), now: at(0).monotonic), .rejected(.groupLimitInTable))
        // IPv6 groups are /56; loopback addresses are each their own group, so local test
        // networks are not limited.
        XCTAssertEqual(table.insert(contact(b1[1], "[2001:db8:0:1::1]:9000"), now: at(0).monotonic), .added)
        var loop = RoutingTable(localID: local, config: config, now: at(0).monotonic)
        for (i, k) in b0.enumerated() { XCTAssertEqual(loop.insert(contact(k, "127.0.0.\(i + 1):9000"), now: at(0).monotonic), .added) }
        XCTAssertEqual(table.insert(contact(keyPair(1), "20.9.9.9:1"), now: at(0).monotonic), .rejected(.isSelf))
    }

    func testClosestIsOrderedByXORDistance() {
        var table = RoutingTable(localID: local, config: DHTConfig(), now: at(0).monotonic)
        var all: [DHTContact] = []
        for n in 0..<300 {
            let c = contact(keyPair(5000 + n), "21.\(n / 256).\(n % 256).1:9000")
            if table.insert(c, now: at(0).monotonic) == .added { all.append(c) }
        }
        var rng = DHTRandom(seed: 9)
        for _ in 0..<20 {
            let target = NodeID(words: rng.next(), rng.next(), rng.next(), rng.next())
            let expected = all.sorted { $0.id.distance(to: target) < $1.id.distance(to: target) }.prefix(20)
            XCTAssertEqual(table.closest(to: target, count: 20), Array(expected))
        }
        XCTAssertEqual(table.closest(to: local, count: 5),
                       Array(all.sorted { $0.id.distance(to: local) < $1.id.distance(to: local) }.prefix(5)))
    }

    func testIdleBucketsAreRefreshedWithALookupInTheirRange() {
        var config = DHTConfig()
        config.refreshInterval = 600
        var engine = DHTEngine(config: config, identity: keyPair(1), seed: 3, now: at(0).monotonic)
        let b0 = keys(inBucket: 0, of: local, count: 2)
        let b2 = keys(inBucket: 2, of: local, count: 1)
        for (i, k) in (b0 + b2).enumerated() { _ = engine.peerVerified(contact(k, "20.0.\(i).1:9000"), now: at(0)) }
        XCTAssertEqual(engine.table.bucketsDueForRefresh(now: at(599).monotonic), [])
        XCTAssertEqual(engine.nextDeadline, at(600).monotonic)
        let actions = engine.tick(now: at(600))
        // Buckets 0 to 3 (one past the deepest used) each get a FindNode for a target inside them.
        let targets = sends(actions).compactMap { _, m -> NodeID? in
            if case let .findNode(f) = m { return f.target }
            return nil
        }
        XCTAssertEqual(Set(targets.map { local.commonPrefixLength(with: $0) }), [0, 1, 2, 3])
        XCTAssertEqual(engine.table.bucketsDueForRefresh(now: at(601).monotonic), [])
    }

    func testRoutingTableTextRoundTripsLongestKnownFirst() throws {
        var table = RoutingTable(localID: local, config: DHTConfig(), now: at(0).monotonic)
        let a = contact(keyPair(11), "192.0.2.1:9000"), b = contact(keyPair(12), "[2001:db8::7]:9001")
        _ = table.insert(a, now: at(100).monotonic)
        _ = table.insert(b, now: at(50).monotonic, knownFor: 1000)
        let text = RoutingTableText.serialize(table, now: at(200).monotonic)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.first.map(String.init), RoutingTableText.header)
        XCTAssertTrue(lines[1].hasSuffix(" [2001:db8::7]:9001 1150"), String(lines[1]))
        XCTAssertTrue(lines[2].hasSuffix(" 192.0.2.1:9000 100"), String(lines[2]))
        let parsed = try RoutingTableText.parse(text)
        XCTAssertEqual(parsed.skipped, 0)
        XCTAssertEqual(parsed.contacts, [RoutingTableText.Saved(contact: b, knownFor: 1150), RoutingTableText.Saved(contact: a, knownFor: 100)])
    }

    func testRoutingTableTextIsParsedAsHostile() throws {
        let good = "\(try XCTUnwrap(try? GutsIdentityPeer.id(keyPair(11)))) 192.0.2.1:9000 5"
        let text = [RoutingTableText.header, "# comment", "", good, good,
                    "gtnotapeerid 192.0.2.1:9000 5",
                    good.replacingOccurrences(of: "192.0.2.1:9000", with: "host.example:9000"),
                    good.replacingOccurrences(of: " 5", with: " -5"),
                    good.replacingOccurrences(of: " 5", with: " 05"),
                    good + " extra",
                    good.replacingOccurrences(of: " ", with: "  "),
                    String(repeating: "x", count: 5000)].joined(separator: "\n")
        let parsed = try RoutingTableText.parse(text)
        XCTAssertEqual(parsed.contacts.count, 1)
        XCTAssertEqual(parsed.skipped, 8)
        XCTAssertThrowsError(try RoutingTableText.parse("not a table\n" + good))
        XCTAssertThrowsError(try RoutingTableText.parse(RoutingTableText.header + "\n" + String(repeating: "#", count: RoutingTableText.maxBytes)))
        // More lines than the limit: the rest are skipped, not kept.
        var many = [RoutingTableText.header]
        for n in 0..<(RoutingTableText.maxContacts + 3) { many.append("\(try GutsIdentityPeer.id(keyPair(20_000 + n))) 192.0.2.1:9000 1") }
        let capped = try RoutingTableText.parse(many.joined(separator: "\n"))
        XCTAssertEqual(capped.contacts.count, RoutingTableText.maxContacts)
        XCTAssertEqual(capped.skipped, 3)
    }
}

import GutsIdentity

enum GutsIdentityPeer {
    static func id(_ key: Ed25519KeyPair) throws -> PeerID { try PeerID(publicKey: key.publicKey) }
}
