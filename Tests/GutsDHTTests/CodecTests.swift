import GutsDHT
import GutsWire
import XCTest

/// Byte-exact layouts of the DHT messages (guts-protocol(7), DHT). Each golden value is
/// written field by field: header `type (u8) | body length (u32)`, then the body.
final class CodecTests: XCTestCase {
    private let keyA = repeated(0xAA, 32)
    private let keyB = repeated(0xBB, 32)

    private func contactA() throws -> DHTContact {
        try XCTUnwrap(DHTContact(publicKey: keyA, address: address("192.0.2.1:9000")))
    }

    private func contactB() throws -> DHTContact {
        try XCTUnwrap(DHTContact(publicKey: keyB, address: address("[2001:db8::1]:9000")))
    }

    private func provider() throws -> ProviderRecord {
        ProviderRecord(repository: try XCTUnwrap(NodeID(bytes: repeated(0x11, 32))), publisher: repeated(0x22, 32),
                       expires: 0x6B49_D200, addresses: [address("192.0.2.1:9000")], signature: repeated(0x33, 64))
    }

    private func peerRecord() -> PeerRecord {
        PeerRecord(publisher: repeated(0x22, 32), sequence: 5, expires: 0x6B49_D200,
                   addresses: [address("192.0.2.1:9000"), address("[2001:db8::1]:9000")], signature: repeated(0x44, 64))
    }

    private func assertGolden(_ message: DHTMessage, _ golden: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws {
        let bytes = try MessageCodec.encode(message)
        XCTAssertEqual(Hex.encodeForTest(bytes), Hex.encodeForTest(golden), file: file, line: line)
        XCTAssertEqual(try DHTProtocol.decodeMessage(golden), message, file: file, line: line)
        // Through a session's registry too.
        let registry = MessageRegistry([DHTProtocol()])
        let decoded = try MessageCodec.decode(type: golden[0], body: Array(golden[5...]), registry: registry)
        XCTAssertEqual(decoded.dhtMessage, message, file: file, line: line)
    }

    func testObservedAddressGolden() throws {
        try assertGolden(.observedAddress(ObservedAddress(address: address("198.51.100.7:49152"))), hex("""
            48 00000007
            04 c6336407 c000
            """))
        try assertGolden(.observedAddress(ObservedAddress(address: address("[2001:db8::1]:9000"))), hex("""
            48 00000013
            06 20010db8000000000000000000000001 2328
            """))
        // An address with port 0 or an unspecified address is refused.
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("48 00000007 04 c6336407 0000")))
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("48 00000007 04 00000000 2328")))
        // Over the type's limit, refused from the header.
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("48 00000014 06 20010db8000000000000000000000001 2328 00")))
    }

    func testFindNodeGolden() throws {
        let target = try XCTUnwrap(NodeID(bytes: Array(0..<32)))
        try assertGolden(.findNode(FindNode(requestID: 0x0102_0304, target: target)), hex("""
            40 00000024
            01020304
            000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
            """))
    }

    func testNodesGolden() throws {
        try assertGolden(.nodes(Nodes(requestID: 7, contacts: [try contactA(), try contactB()])), hex("""
            41 0000005f
            00000007
            02
            aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  04 c0000201 2328
            bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb  06 20010db8000000000000000000000001 2328
            """))
    }

    func testGetProvidersAndGetPeerGolden() throws {
        let repo = try XCTUnwrap(NodeID(bytes: repeated(0x11, 32)))
        try assertGolden(.getProviders(GetProviders(requestID: 1, repository: repo)), hex("""
            42 00000024
            00000001
            1111111111111111111111111111111111111111111111111111111111111111
            """))
        try assertGolden(.getPeer(GetPeer(requestID: 2, target: repo)), hex("""
            45 00000024
            00000002
            1111111111111111111111111111111111111111111111111111111111111111
            """))
    }

    func testAddProviderGolden() throws {
        try assertGolden(.addProvider(AddProvider(record: try provider())), hex("""
            44 00000090
            1111111111111111111111111111111111111111111111111111111111111111
            2222222222222222222222222222222222222222222222222222222222222222
            000000006b49d200
            01  04 c0000201 2328
            33333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333
            """))
    }

    func testProvidersGolden() throws {
        try assertGolden(.providers(Providers(requestID: 3, records: [try provider()], closer: [try contactA()])), hex("""
            43 000000bd
            00000003
            01
            1111111111111111111111111111111111111111111111111111111111111111
            2222222222222222222222222222222222222222222222222222222222222222
            000000006b49d200
            01  04 c0000201 2328
            33333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333
            01
            aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  04 c0000201 2328
            """))
    }

    func testPeerRecordAndPutPeerGolden() throws {
        let record = """
            2222222222222222222222222222222222222222222222222222222222222222
            0000000000000005
            000000006b49d200
            02  04 c0000201 2328  06 20010db8000000000000000000000001 2328
            44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444
            """
        try assertGolden(.putPeer(PutPeer(record: peerRecord())), hex("47 0000008b" + record))
        try assertGolden(.peerRecord(PeerRecordAnswer(requestID: 9, record: peerRecord(), closer: [])),
                         hex("46 00000091  00000009  01" + record + "00"))
        try assertGolden(.peerRecord(PeerRecordAnswer(requestID: 9, record: nil, closer: [try contactA()])), hex("""
            46 0000002d
            00000009
            00
            01  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  04 c0000201 2328
            """))
    }

    /// A record's QUIC address: the family with bit 0x80 set (0x84, 0x86), in signed records
    /// only (guts-protocol(7), DHT, Addresses).
    func testQUICAddressesInRecordsGolden() throws {
        let record = PeerRecord(publisher: repeated(0x22, 32), sequence: 5, expires: 0x6B49_D200,
                                addresses: [address("192.0.2.1:9000"), address("quic/192.0.2.1:9001"), address("quic/[2001:db8::1]:9000")],
                                signature: repeated(0x44, 64))
        try assertGolden(.putPeer(PutPeer(record: record)), hex("""
            47 00000092
            2222222222222222222222222222222222222222222222222222222222222222
            0000000000000005
            000000006b49d200
            03  04 c0000201 2328  84 c0000201 2329  86 20010db8000000000000000000000001 2328
            44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444
            """))
        XCTAssertEqual(record.signedBytes, Array("guts-dht-peer-v1".utf8) + hex("""
            00
            2222222222222222222222222222222222222222222222222222222222222222
            0000000000000005
            000000006b49d200
            03  04 c0000201 2328  84 c0000201 2329  86 20010db8000000000000000000000001 2328
            """))
        XCTAssertEqual(record.addresses.map(\.description), ["192.0.2.1:9000", "quic/192.0.2.1:9001", "quic/[2001:db8::1]:9000"])
        let provider = ProviderRecord(repository: try XCTUnwrap(NodeID(bytes: repeated(0x11, 32))), publisher: repeated(0x22, 32),
                                      expires: 0x6B49_D200, addresses: [address("192.0.2.1:9000"), address("quic/192.0.2.1:9000")],
                                      signature: repeated(0x33, 64))
        try assertGolden(.addProvider(AddProvider(record: provider)), hex("""
            44 00000097
            1111111111111111111111111111111111111111111111111111111111111111
            2222222222222222222222222222222222222222222222222222222222222222
            000000006b49d200
            02  04 c0000201 2328  84 c0000201 2328
            33333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333333
            """))
        // TCP and QUIC at the same IP address and port are distinct addresses.
        XCTAssertEqual(Set(provider.addresses).count, 2)
        // Outside records (contacts, ObservedAddress) the QUIC families are invalid.
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("48 00000007 84 c6336407 c000")))
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("""
            41 0000002c  00000007  01
            aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  84 c0000201 2328
            """)))
        // Other bits stay invalid.
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(hex("""
            47 00000078
            2222222222222222222222222222222222222222222222222222222222222222
            0000000000000005
            000000006b49d200
            01  44 c0000201 2328
            44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444
            """)))
    }

    func testSignedBytesLayout() throws {
        XCTAssertEqual(try provider().signedBytes, Array("guts-dht-provider-v1".utf8) + hex("""
            00
            1111111111111111111111111111111111111111111111111111111111111111
            2222222222222222222222222222222222222222222222222222222222222222
            000000006b49d200
            01  04 c0000201 2328
            """))
        XCTAssertEqual(peerRecord().signedBytes, Array("guts-dht-peer-v1".utf8) + hex("""
            00
            2222222222222222222222222222222222222222222222222222222222222222
            0000000000000005
            000000006b49d200
            02  04 c0000201 2328  06 20010db8000000000000000000000001 2328
            """))
    }

    func testRoundTripOfFullSizeMessages() throws {
        let contacts = (0..<20).map { i in contact(keyPair(i), "[2001:db8::\(i + 1)]:\(9000 + i)") }
        let records = (0..<20).map { i in
            ProviderRecord(repository: NodeID(publicKey: [1]), publisher: keyPair(i).publicKey, expires: 1,
                           addresses: (0..<8).map { address("[2001:db8::\($0 + 1)]:\(100 + i)") }, signature: repeated(9, 64))
        }
        let messages: [DHTMessage] = [
            .nodes(Nodes(requestID: .max, contacts: contacts)),
            .providers(Providers(requestID: 0, records: records, closer: contacts)),
            .peerRecord(PeerRecordAnswer(requestID: 1, record: PeerRecord(publisher: keyPair(1).publicKey, sequence: .max, expires: .max,
                                                                          addresses: records[0].addresses, signature: repeated(1, 64)),
                                         closer: contacts)),
            .observedAddress(ObservedAddress(address: address("[2001:db8::1]:9000"))),
        ]
        for m in messages {
            let bytes = try MessageCodec.encode(m)
            XCTAssertEqual(bytes.count - 5, m.maxBodySize, m.typeName)  // the limits are exactly the largest message
            XCTAssertEqual(try DHTProtocol.decodeMessage(bytes), m)
        }
    }

    func testHostileBytesAreRefusedBeforeAllocation() throws {
        // A body longer than the type's limit is refused from the header alone.
        let registry = MessageRegistry([DHTProtocol()])
        XCTAssertThrowsError(try MessageCodec.decode(type: 0x40, body: repeated(0, 37), registry: registry))
        XCTAssertEqual(registry.maxBodySize(type: 0x49), nil)
        XCTAssertThrowsError(try MessageCodec.decode(type: 0x48, body: [], registry: registry))
        // Counts above the limit, before reading entries.
        XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x41, body: (hex("00000001 15") + repeated(0, 100))[...])) {
            XCTAssertEqual($0 as? DecodeError, .tooMany(field: "contacts", count: 21, limit: 20))
        }
        XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x41, body: hex("00000001 02")[...])) {
            XCTAssertEqual($0 as? DecodeError, .truncated(field: "contacts"))
        }
        let good = try MessageCodec.encode(DHTMessage.nodes(Nodes(requestID: 7, contacts: [try contactA()])))
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(good + [0]))
        XCTAssertThrowsError(try DHTProtocol.decodeMessage(Array(good.dropLast())))
        // Field values: address family, IPv4-mapped IPv6, port 0, unspecified address, empty
        // address list, more than 8 addresses, has_record above 1.
        let key = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        for bad in ["05 c0000201 2328", "06 00000000000000000000ffffc0000201 2328", "04 c0000201 0000", "04 00000000 2328",
                    "04 e0000001 2328"] {
            XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x41, body: hex("00000001 01 \(key) \(bad)")[...]), bad)
        }
        let recordHead = "1111111111111111111111111111111111111111111111111111111111111111" + key + "0000000000000001"
        XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x44, body: hex(recordHead + "00" + String(repeating: "33", count: 64))[...]))
        XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x44,
                                                       body: hex(recordHead + "09" + String(repeating: "04c00002012328", count: 9)
                                                           + String(repeating: "33", count: 64))[...]))
        XCTAssertThrowsError(try DHTProtocol.decodeDHT(type: 0x46, body: hex("00000001 02 00")[...]))
        // Encoding refuses what a peer would have to reject.
        XCTAssertThrowsError(try MessageCodec.encode(DHTMessage.nodes(Nodes(requestID: 1, contacts: Array(repeating: try contactA(), count: 21)))))
        var tooMany = try provider()
        tooMany.addresses = (1...9).map { address("192.0.2.\($0):1") }
        XCTAssertThrowsError(try MessageCodec.encode(DHTMessage.addProvider(AddProvider(record: tooMany))))
    }

    func testRandomBytesNeverTrap() {
        var rng = DHTRandom(seed: 42)
        for _ in 0..<3000 {
            let type = UInt8(0x40 + rng.next() % 9)
            let n = Int(rng.next() % 300)
            var body = [UInt8](repeating: 0, count: n)
            for i in 0..<n { body[i] = UInt8(truncatingIfNeeded: rng.next()) }
            if n > 4, rng.next() % 2 == 0 { body[4] = UInt8(rng.next() % 3) }
            _ = try? DHTProtocol.decodeDHT(type: type, body: body[...])
        }
    }
}

extension Hex {
    /// Hex with a space every 32 digits, so a golden mismatch is easy to locate.
    static func encodeForTest(_ b: [UInt8]) -> String {
        let h = Array(encode(b))
        return stride(from: 0, to: h.count, by: 32).map { String(h[$0..<min($0 + 32, h.count)]) }.joined(separator: " ")
    }
}

import GutsSupport
