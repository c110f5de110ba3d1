import GutsCrypto
import GutsDHT
import GutsPolicy
import XCTest

final class RecordTests: XCTestCase {
    private let repo = NodeID(publicKey: Array("repository".utf8))
    private let publisher = keyPair(50)

    private func record(expires: Double = 3600, addresses: [String] = ["192.0.2.1:9000"], key: Ed25519KeyPair? = nil,
                        repository: NodeID? = nil) -> ProviderRecord {
        ProviderRecord.signed(repository: repository ?? repo, addresses: addresses.map(address),
                              expires: at(expires).unixSeconds, key: key ?? publisher)
    }

    private func engine(_ configure: (inout DHTConfig) -> Void = { _ in }) -> DHTEngine {
        var config = DHTConfig()
        configure(&config)
        return DHTEngine(config: config, identity: keyPair(1), seed: 1, now: at(0).monotonic)
    }

    func testValidationChecksSizesLifetimeThenSignature() {
        XCTAssertNoThrow(try record().validate(unixNow: at(0).unixSeconds))
        var bad = record()
        bad.signature[10] ^= 1
        XCTAssertThrowsError(try bad.validate(unixNow: at(0).unixSeconds)) { XCTAssertEqual($0 as? RecordRejection, .badSignature) }
        var moved = record()
        moved.addresses = [address("192.0.2.2:9000")]
        XCTAssertThrowsError(try moved.validate(unixNow: at(0).unixSeconds)) { XCTAssertEqual($0 as? RecordRejection, .badSignature) }
        XCTAssertThrowsError(try record(expires: 10).validate(unixNow: at(10).unixSeconds)) {
            XCTAssertEqual($0 as? RecordRejection, .expired)
        }
        XCTAssertThrowsError(try record(expires: 49 * 3600).validate(unixNow: at(0).unixSeconds)) {
            XCTAssertEqual($0 as? RecordRejection, .lifetimeTooLong)
        }
        XCTAssertThrowsError(try record(addresses: (1...9).map { "192.0.2.\($0):1" }).validate(unixNow: at(0).unixSeconds)) {
            XCTAssertEqual($0 as? RecordRejection, .tooManyAddresses)
        }
        XCTAssertThrowsError(try record(addresses: ["192.0.2.1:1", "192.0.2.1:1"]).validate(unixNow: at(0).unixSeconds)) {
            XCTAssertEqual($0 as? RecordRejection, .duplicateAddress)
        }
        XCTAssertThrowsError(try record(addresses: []).validate(unixNow: at(0).unixSeconds)) {
            XCTAssertEqual($0 as? RecordRejection, .noAddresses)
        }
        var shortKey = record()
        shortKey.publisher.removeLast()
        XCTAssertThrowsError(try shortKey.validate(unixNow: at(0).unixSeconds)) { XCTAssertEqual($0 as? RecordRejection, .badPublicKey) }
        let peer = PeerRecord.signed(sequence: 3, addresses: [address("192.0.2.1:9000")], expires: at(60).unixSeconds, key: publisher)
        XCTAssertNoThrow(try peer.validate(unixNow: at(0).unixSeconds))
        var forged = peer
        forged.sequence = 4
        XCTAssertThrowsError(try forged.validate(unixNow: at(0).unixSeconds)) { XCTAssertEqual($0 as? RecordRejection, .badSignature) }
    }

    func testAddProviderIsStoredOnlyFromItsPublisherAndPenalisedWhenInvalid() {
        var e = engine()
        let sender = contact(publisher, "192.0.2.1:9000")
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record())), from: sender, now: at(1)), [])
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(1).unixSeconds), [record()])
        // Someone else relaying it.
        let other = contact(keyPair(51), "198.51.100.1:9000")
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record(key: keyPair(52)))), from: other, now: at(1)),
                       [.penalize(other.id, .invalidRecord(.notPublisher))])
        var bad = record(key: keyPair(51))
        bad.signature[0] ^= 0xFF
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: bad)), from: other, now: at(1)),
                       [.penalize(other.id, .invalidRecord(.badSignature))])
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record(expires: 0.5, key: keyPair(51)))), from: other, now: at(1)),
                       [.penalize(other.id, .invalidRecord(.expired))])
        XCTAssertEqual(e.storedRecords, 1)
        XCTAssertEqual(e.stats.recordsRejected[.badSignature], 1)
    }

    func testAddressScopeRuleForRecords() {
        var e = engine()
        // A global peer cannot plant a loopback or private address...
        let global = contact(publisher, "192.0.2.1:9000")
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record(addresses: ["127.0.0.1:9000"]))), from: global, now: at(1)),
                       [.penalize(global.id, .invalidRecord(.addressScope))])
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record(addresses: ["10.0.0.1:9000"]))), from: global, now: at(1)),
                       [.penalize(global.id, .invalidRecord(.addressScope))])
        // ...a loopback peer can (loopback test networks), and the record then reaches only
        // peers no wider than loopback.
        let local = contact(publisher, "127.0.0.1:9000")
        let loopRecord = record(addresses: ["127.0.0.1:9000"])
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: loopRecord)), from: local, now: at(1)), [])
        let askGlobal = e.receive(.getProviders(GetProviders(requestID: 1, repository: repo)),
                                  from: contact(keyPair(60), "203.0.113.1:9000"), now: at(2))
        XCTAssertEqual(askGlobal, [.reply(NodeID(publicKey: keyPair(60).publicKey),
                                          .providers(Providers(requestID: 1, records: [], closer: [])))])
        let askLocal = e.receive(.getProviders(GetProviders(requestID: 2, repository: repo)),
                                 from: contact(keyPair(61), "127.0.0.2:9000"), now: at(2))
        XCTAssertEqual(askLocal, [.reply(NodeID(publicKey: keyPair(61).publicKey),
                                         .providers(Providers(requestID: 2, records: [loopRecord], closer: [])))])
    }

    func testStoreBoundsPerPublisherInTotalAndPerKey() {
        var e = engine {
            $0.maxRecordsPerPublisher = 3
            $0.maxStoredRecords = 6
            $0.maxProvidersPerKey = 2
        }
        let flooder = contact(publisher, "192.0.2.1:9000")
        for i in 0..<5 {
            let r = record(repository: NodeID(publicKey: [UInt8(i)]))
            _ = e.receive(.addProvider(AddProvider(record: r)), from: flooder, now: at(1))
        }
        XCTAssertEqual(e.storedUsage(of: flooder.id).count, 3)
        XCTAssertEqual(e.stats.recordsRejected[.storeFull], 2)
        // A legitimate publisher is still served.
        let honest = contact(keyPair(70), "198.51.100.7:9000")
        _ = e.receive(.addProvider(AddProvider(record: record(key: keyPair(70)))), from: honest, now: at(1))
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(1).unixSeconds).map(\.publisher), [keyPair(70).publicKey])
        // Per key: a third provider of one repository is refused.
        _ = e.receive(.addProvider(AddProvider(record: record(key: keyPair(71)))), from: contact(keyPair(71), "198.51.100.8:9000"), now: at(1))
        _ = e.receive(.addProvider(AddProvider(record: record(key: keyPair(72)))), from: contact(keyPair(72), "198.51.100.9:9000"), now: at(1))
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(1).unixSeconds).count, 2)
        // In total: six records at most.
        for i in 0..<4 {
            let k = keyPair(80 + i)
            _ = e.receive(.addProvider(AddProvider(record: record(key: k, repository: NodeID(publicKey: [9, UInt8(i)])))),
                          from: contact(k, "203.0.113.\(i + 1):9000"), now: at(1))
        }
        XCTAssertEqual(e.storedRecords, 6)
    }

    func testBytesPerPublisherAreBounded() {
        var e = engine { $0.maxBytesPerPublisher = 300 }
        let sender = contact(publisher, "192.0.2.1:9000")
        let eight = (1...8).map { "192.0.2.\($0):9000" }
        _ = e.receive(.addProvider(AddProvider(record: record(addresses: eight, repository: NodeID(publicKey: [1])))), from: sender, now: at(1))
        _ = e.receive(.addProvider(AddProvider(record: record(addresses: eight, repository: NodeID(publicKey: [2])))), from: sender, now: at(1))
        XCTAssertEqual(e.storedUsage(of: sender.id).count, 1)
        XCTAssertLessThanOrEqual(e.storedUsage(of: sender.id).bytes, 300)
    }

    func testRecordsExpireByTheClock() {
        var e = engine { $0.expirySweepInterval = 10 }
        let sender = contact(publisher, "192.0.2.1:9000")
        _ = e.receive(.addProvider(AddProvider(record: record(expires: 100))), from: sender, now: at(0))
        _ = e.tick(now: at(0))
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(99).unixSeconds).count, 1)
        // Not served once expired, even before the sweep...
        XCTAssertEqual(e.storedProviders(of: repo, unixNow: at(100).unixSeconds).count, 0)
        XCTAssertEqual(e.storedRecords, 1)
        // ...and dropped by the sweep.
        _ = e.tick(now: at(100))
        XCTAssertEqual(e.storedRecords, 0)
        XCTAssertEqual(e.storedUsage(of: sender.id).count, 0)
    }

    func testPeerRecordsNeedAHigherSequence() {
        var e = engine()
        let sender = contact(publisher, "192.0.2.1:9000")
        let v2 = PeerRecord.signed(sequence: 2, addresses: [address("192.0.2.1:9000")], expires: at(600).unixSeconds, key: publisher)
        let v1 = PeerRecord.signed(sequence: 1, addresses: [address("192.0.2.9:9000")], expires: at(600).unixSeconds, key: publisher)
        let v3 = PeerRecord.signed(sequence: 3, addresses: [address("192.0.2.3:9000")], expires: at(600).unixSeconds, key: publisher)
        XCTAssertEqual(e.receive(.putPeer(PutPeer(record: v2)), from: sender, now: at(1)), [])
        XCTAssertEqual(e.receive(.putPeer(PutPeer(record: v1)), from: sender, now: at(1)), [])
        XCTAssertEqual(e.storedPeerRecord(of: sender.id, unixNow: at(1).unixSeconds), v2)
        XCTAssertEqual(e.stats.recordsRejected[.staleSequence], 1)
        _ = e.receive(.putPeer(PutPeer(record: v3)), from: sender, now: at(1))
        XCTAssertEqual(e.storedPeerRecord(of: sender.id, unixNow: at(1).unixSeconds), v3)
        XCTAssertEqual(e.storedUsage(of: sender.id).count, 1)
        let answer = e.receive(.getPeer(GetPeer(requestID: 4, target: sender.id)), from: contact(keyPair(9), "203.0.113.9:1"), now: at(2))
        if case let .peerRecord(a) = replies(answer).first { XCTAssertEqual(a.record, v3) } else { XCTFail("no PeerRecord answer") }
    }

    func testRecordsAreStoredOnlyByNodesCloseToTheKey() {
        var e = engine { $0.storeRadius = 2 }
        let local = NodeID(publicKey: keyPair(1).publicKey)
        let near = keys(inBucket: 0, of: local, count: 2)
        for (i, k) in near.enumerated() { _ = e.peerVerified(contact(k, "198.51.\(i).1:9000"), now: at(0)) }
        // Both contacts share bit 0 with the key and this node does not: two are closer.
        let key = NodeID(publicKey: near[0].publicKey)
        let sender = contact(publisher, "192.0.2.1:9000")
        XCTAssertEqual(e.receive(.addProvider(AddProvider(record: record(repository: key))), from: sender, now: at(1)), [])
        XCTAssertEqual(e.stats.recordsRejected[.notClose], 1)
        XCTAssertEqual(e.storedRecords, 0)
    }
}
