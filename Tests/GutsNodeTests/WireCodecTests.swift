import XCTest
import GutsGossip
import GutsNode
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust
@testable import GutsWire

/// The codecs of every protocol together: the envelope and control messages (GutsWire),
/// sync (GutsSync), announcements (GutsNode) and gossip (GutsGossip).
final class WireCodecTests: XCTestCase {
    let registry = MessageRegistry([SyncProtocol(), AnnouncementProtocol(), GossipProtocol()])

    func oid(_ fill: UInt8, _ length: Int = 20) -> WireOID {
        guard let id = WireOID([UInt8](repeating: fill, count: length)) else { preconditionFailure("test oid") }
        return id
    }

    var signedRefs: SignedRefsUpdate {
        guard let rid = RepositoryID(bytes: [UInt8](repeating: 5, count: 32)),
              let delegate = try? PeerID(publicKey: [UInt8](repeating: 4, count: 32)) else { preconditionFailure("sample") }
        return SignedRefsUpdate(repository: rid, delegate: delegate, sequence: 9, signedRefs: oid(9))
    }

    /// One sample of every message type, with non-trivial field values. Their encodings
    /// are pinned byte for byte in `golden`.
    var samples: [Message] {
        [
            .hello(Hello(minVersion: 1, maxVersion: 3, capabilities: ["ping", "refs"], agent: "guts/test ü")),
            .helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "other-agent")),
            .ping(nonce: 0x0102_0304_0506_0708),
            .pong(nonce: .max),
            .goodbye(Goodbye(code: .tooManyConnections, reason: "full")),
            .error(ErrorReply(requestID: 7, code: .notFound, message: "no such repository")),
            .sync(.getRefs(GetRefs(requestID: 1, repository: "alice/project", prefix: "refs/heads/"))),
            .sync(.refs(Refs(requestID: 1, head: "refs/heads/main", refs: [
                RefEntry(name: "refs/heads/main", id: oid(0xaa)),
                RefEntry(name: "refs/tags/v1", id: oid(0xbb, 32)),
            ]))),
            .sync(.getObjects(GetObjects(requestID: 2, repository: "alice/project", wants: [oid(1), oid(2)], haves: [oid(3)]))),
            .sync(.objects(Objects(requestID: 2, final: true, data: Array(0..<255)))),
            .sync(.listRepositories(ListRepositories(requestID: 3, after: "alice/a"))),
            .sync(.repositories(Repositories(requestID: 3, repositories: [
                RepositoryEntry(name: "alice/b", id: [UInt8](repeating: 5, count: 32), restricted: true, head: "refs/heads/main", headID: oid(0xaa)),
                RepositoryEntry(name: "bob", head: "", headID: nil),
            ], more: true))),
            .app(Announcement.newRepository(NewRepository(repository: "bob/tools"))),
            .app(Announcement.refsChanged(RefsChanged(repository: "alice/project", refsHash: [UInt8](repeating: 7, count: 32)))),
            .app(Announcement.signedRefs(signedRefs)),
            .gossip(.gossip(Gossip(topic: "guts/commits", origin: [UInt8](repeating: 4, count: 32), sequence: 5,
                                   timestamp: 1_700_000_000_000, data: Array("hello".utf8),
                                   signature: [UInt8](repeating: 6, count: 64)))),
            .gossip(.subscribe(Subscribe(subscribe: true, topics: ["guts/commits", "chat"]))),
            .gossip(.iHave(IHave(topic: "chat", ids: [[UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)]))),
            .gossip(.iWant(IWant(ids: [[UInt8](repeating: 3, count: 32)]))),
            .gossip(.prune(Prune(topic: "chat"))),
        ]
    }

    /// The encodings of `samples`, captured from the codec before the protocols were split
    /// into their own modules: the split changed no byte on the wire. Each is also the
    /// layout guts-protocol(7) specifies (type, u32 length, fields in order).
    let golden = [
        "010000001c00010003020470696e6704726566730c677574732f7465737420c3bc",  // hello
        "02000000140001010470696e670b6f746865722d6167656e74",  // helloAck
        "03000000080102030405060708",  // ping
        "0400000008ffffffffffffffff",  // pong
        "05000000080007000466756c6c",  // goodbye
        "060000001a00000007000900126e6f2073756368207265706f7369746f7279",  // error
        "100000002000000001000d616c6963652f70726f6a656374000b726566732f68656164732f",  // getRefs
        "110000006f00000001000f726566732f68656164732f6d61696e00000002000f726566732f68656164732f6d61696e14aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa000c726566732f746167732f763120bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb00",  // refs (with the flags byte added for restricted repositories)
        "120000005a00000002000d616c6963652f70726f6a6563740000000214010101010101010101010101010101010101010114020202020202020202020202020202020202020200000001140303030303030303030303030303030303030303",  // getObjects
        "13000001080000000201000000ff000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfe",  // objects
        "140000000d000000030007616c6963652f61",  // listRepositories
        "15000000600000000300020007616c6963652f62030505050505050505050505050505050505050505050505050505050505050505000f726566732f68656164732f6d61696e14aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0003626f620000000001",  // repositories
        "210000000b0009626f622f746f6f6c73",  // newRepository
        "220000002f000d616c6963652f70726f6a6563740707070707070707070707070707070707070707070707070707070707070707",  // refsChanged
        "230000005d050505050505050505050505050505050505050505050505050505050505050504040404040404040404040404040404040404040404040404040404040404040000000000000009140909090909090909090909090909090909090909",  // signedRefs
        "30000000860c677574732f636f6d6d697473040404040404040404040404040404040404040404040404040404040404040400000000000000050000018bcfe568000000000568656c6c6f06060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606",  // gossip
        "310000001401020c677574732f636f6d6d6974730463686174",  // subscribe
        "32000000470463686174000201010101010101010101010101010101010101010101010101010101010101010202020202020202020202020202020202020202020202020202020202020202",  // iHave
        "330000002200010303030303030303030303030303030303030303030303030303030303030303",  // iWant
        "34000000050463686174",  // prune
    ]

    func hex(_ b: [UInt8]) -> String {
        let d = Array("0123456789abcdef")
        return String(b.flatMap { [d[Int($0 >> 4)], d[Int($0 & 15)]] })
    }

    func testEveryLayoutIsByteExact() throws {
        XCTAssertEqual(samples.count, golden.count)
        for (message, expected) in zip(samples, golden) {
            XCTAssertEqual(hex(try MessageCodec.encode(message)), expected, "\(message.typeName)")
        }
    }

    func testSamplesCoverEveryType() {
        let codes = Set(samples.map(\.typeCode))
        let all = ControlKind.allCases.map(\.rawValue) + SyncMessage.Kind.allCases.map(\.rawValue)
            + Announcement.Kind.allCases.map(\.rawValue) + GossipMessage.Kind.allCases.map(\.rawValue)
        XCTAssertEqual(codes, Set(all))
    }

    func testEveryMessageRoundTrips() throws {
        for message in samples {
            let encoded = try MessageCodec.encode(message)
            XCTAssertEqual(encoded[0], message.typeCode)
            let length = Int(encoded[1]) << 24 | Int(encoded[2]) << 16 | Int(encoded[3]) << 8 | Int(encoded[4])
            XCTAssertEqual(length, encoded.count - 5)
            let decoded = try MessageCodec.decode(type: message.typeCode, body: Array(encoded[5...]), registry: registry)
            XCTAssertEqual(decoded, message)
        }
    }

    /// Dispatch is by range: a registry without a family treats its types as unknown.
    func testTypesOfAbsentFamiliesAreUnknown() throws {
        let body = Array(try MessageCodec.encode(.sync(.getRefs(GetRefs(requestID: 1, repository: "a"))))[5...])
        XCTAssertThrowsError(try MessageCodec.decode(type: 0x10, body: body, registry: .control)) { error in
            XCTAssertEqual(error as? DecodeError, .unknownType(0x10))
            XCTAssertEqual("\(error)", "unknown message type 0x10")
        }
        // A code inside a family's range that the family does not define is unknown too.
        XCTAssertNil(registry.maxBodySize(type: 0x16))
        XCTAssertNil(registry.maxBodySize(type: 0x07))
        XCTAssertNil(registry.maxBodySize(type: 0x00))
    }

    func testGoodbyeLimitIsCodeAndReason() {
        XCTAssertEqual(ControlKind.goodbye.maxBodySize, 2 + 2 + 1024)
        XCTAssertEqual(ControlKind.error.maxBodySize, 4 + 2 + 2 + 1024)
    }

    func testPingLayoutIsExact() throws {
        let bytes = try MessageCodec.encode(.ping(nonce: 0x0102_0304_0506_0708))
        XCTAssertEqual(bytes, [0x03, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
    }

    func testHelloLayoutIsExact() throws {
        let bytes = try MessageCodec.encode(.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: ["ping"], agent: "guts/0.1.0")))
        let body: [UInt8] = [0, 1, 0, 1, 1, 4] + Array("ping".utf8) + [10] + Array("guts/0.1.0".utf8)
        XCTAssertEqual(bytes, [0x01, 0, 0, 0, UInt8(body.count)] + body)
    }

    /// A node serving QUIC ends Hello and HelloAck with its UDP port (guts-protocol(7),
    /// 0x01 Hello); a sender without QUIC omits the field, and 0 is never sent.
    func testHelloQUICPortLayoutIsExact() throws {
        let hello = Hello(minVersion: 1, maxVersion: 1, capabilities: ["ping"], agent: "guts/0.1.0", quicPort: 9000)
        let bytes = try MessageCodec.encode(.hello(hello))
        XCTAssertEqual(Hex.encode(bytes), "01" + "00000017" + "0001" + "0001" + "01" + "0470696e67"
                       + "0a677574732f302e312e30" + "2328")
        XCTAssertEqual(try MessageCodec.decode(type: 0x01, body: Array(bytes[5...]), registry: .control), .hello(hello))
        let ack = HelloAck(version: 1, capabilities: [], agent: "", quicPort: 0xC350)
        let ackBytes = try MessageCodec.encode(.helloAck(ack))
        XCTAssertEqual(Hex.encode(ackBytes), "02" + "00000006" + "0001" + "00" + "00" + "c350")
        XCTAssertEqual(try MessageCodec.decode(type: 0x02, body: Array(ackBytes[5...]), registry: .control), .helloAck(ack))
        // Without QUIC the field is absent: the bytes of a Hello before the field existed.
        var plain = hello
        plain.quicPort = 0
        XCTAssertEqual(try MessageCodec.encode(.hello(plain)), Array(bytes.dropLast(2)).replacing(at: 4, with: 0x15))
        XCTAssertEqual(try MessageCodec.decode(type: 0x01, body: Array(bytes[5..<(bytes.count - 2)]), registry: .control), .hello(plain))
        // 0 on the wire is refused (one encoding per meaning), as is anything after the port.
        XCTAssertThrowsError(try MessageCodec.decode(type: 0x01, body: Array(bytes[5..<(bytes.count - 2)]) + [0, 0], registry: .control))
        XCTAssertThrowsError(try MessageCodec.decode(type: 0x02, body: Array(ackBytes[5...]) + [0], registry: .control)) { error in
            XCTAssertEqual(error as? DecodeError, .trailingBytes(1))
        }
    }

    /// The Hello of `guts sync`, byte for byte as guts-protocol(7) shows it.
    func testSyncHelloLayoutIsExact() throws {
        let hello = Hello(minVersion: 1, maxVersion: 1, capabilities: Capabilities.default + SyncClient.capabilities, agent: "guts/0.1.0")
        let bytes = try MessageCodec.encode(.hello(hello))
        let expected: [UInt8] = [0x01, 0x00, 0x00, 0x00, 0x1f,
                                 0x00, 0x01, 0x00, 0x01, 0x02,
                                 0x04, 0x70, 0x69, 0x6e, 0x67,
                                 0x09, 0x6f, 0x66, 0x73, 0x2d, 0x64, 0x65, 0x6c, 0x74, 0x61,
                                 0x0a, 0x67, 0x75, 0x74, 0x73, 0x2f, 0x30, 0x2e, 0x31, 0x2e, 0x30]
        XCTAssertEqual(bytes, expected)
        XCTAssertEqual(bytes.count, 36)
    }

    /// A duplicated capability is dropped on receipt and never sent; case matters.
    func testDuplicateCapabilities() throws {
        let body: [UInt8] = [0, 1, 0, 1, 3, 4] + Array("ping".utf8) + [4] + Array("ping".utf8) + [4] + Array("Ping".utf8) + [0]
        let decoded = try MessageCodec.decode(type: 0x01, body: body, registry: .control)
        XCTAssertEqual(decoded, .hello(Hello(capabilities: ["ping", "Ping"], agent: "")))
        XCTAssertThrowsError(try MessageCodec.encode(.hello(Hello(capabilities: ["a", "a"], agent: ""))))
    }

    func testEveryTruncationIsRejected() throws {
        for message in samples {
            let body = Array(try MessageCodec.encode(message)[5...])
            for cut in 0..<body.count {
                XCTAssertThrowsError(try MessageCodec.decode(type: message.typeCode, body: Array(body[..<cut]), registry: registry),
                                     "\(message.typeName) truncated to \(cut) bytes must be rejected")
            }
        }
    }

    func testTrailingBytesAreRejected() throws {
        for message in samples {
            let body = Array(try MessageCodec.encode(message)[5...]) + [0]
            let limit = registry.maxBodySize(type: message.typeCode) ?? 0
            XCTAssertThrowsError(try MessageCodec.decode(type: message.typeCode, body: body, registry: registry)) { error in
                if message.typeCode == 0x01 || message.typeCode == 0x02 {
                    // Hello and HelloAck end with an optional u16 quic_port: one byte is a cut one.
                    XCTAssertEqual(error as? DecodeError, .truncated(field: "quic_port"))
                } else if body.count > limit {
                    // Fixed-size bodies (Ping, Pong) fail the size check first.
                    XCTAssertEqual(error as? DecodeError, .tooLarge(field: "body", size: body.count, limit: limit))
                } else {
                    XCTAssertEqual(error as? DecodeError, .trailingBytes(1))
                }
            }
        }
    }

    func testFieldValidation() {
        func decode(_ type: UInt8, _ body: [UInt8]) throws -> Message {
            try MessageCodec.decode(type: type, body: body, registry: registry)
        }
        // Object ID of a length other than 20 or 32.
        var body: [UInt8] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 19] + [UInt8](repeating: 0, count: 19)
        XCTAssertThrowsError(try decode(0x11, body))
        // Invalid UTF-8 in an agent string.
        body = [0, 1, 0, 1, 0, 2, 0xff, 0xfe]
        XCTAssertThrowsError(try decode(0x01, body)) { error in
            XCTAssertEqual(error as? DecodeError, .invalidUTF8(field: "agent"))
        }
        // min_version above max_version.
        XCTAssertThrowsError(try decode(0x01, [0, 2, 0, 1, 0, 0]))
        // Unknown flag bits in Objects.
        XCTAssertThrowsError(try decode(0x13, [0, 0, 0, 1, 2, 0, 0, 0, 0]))
        // A ref count that claims more entries than the body could hold fails before allocating.
        XCTAssertThrowsError(try decode(0x11, [0, 0, 0, 1, 0, 0, 0, 3, 0x0d, 0x40]))
        // A capability with a space.
        XCTAssertThrowsError(try decode(0x02, [0, 1, 1, 3, 0x61, 0x20, 0x62, 0]))
        // Over-long body for its type.
        XCTAssertThrowsError(try decode(0x03, [UInt8](repeating: 0, count: 9)))
        // A count over its limit says entries, not bytes.
        XCTAssertThrowsError(try decode(0x01, [0, 1, 0, 1, 33])) { error in
            XCTAssertEqual("\(error)", "field 'capabilities' has 33 entries, limit 32")
        }
        // SignedRefs: sequence 0, an absent or odd-length object ID, a retired type.
        let signed = [UInt8](repeating: 5, count: 32) + [UInt8](repeating: 4, count: 32)
        XCTAssertThrowsError(try decode(0x23, signed + [0, 0, 0, 0, 0, 0, 0, 0] + [20] + [UInt8](repeating: 9, count: 20)))
        XCTAssertThrowsError(try decode(0x23, signed + [0, 0, 0, 0, 0, 0, 0, 1] + [0]))
        XCTAssertThrowsError(try decode(0x23, signed + [0, 0, 0, 0, 0, 0, 0, 1] + [19] + [UInt8](repeating: 9, count: 19)))
        XCTAssertThrowsError(try decode(0x20, [0, 1, 0x61, 0, 1, 0x62, 0, 20] + [UInt8](repeating: 9, count: 20))) { error in
            XCTAssertEqual(error as? DecodeError, .unknownType(0x20))
        }
        // RefsChanged with a short hash.
        XCTAssertThrowsError(try decode(0x22, [0, 1, 0x61] + [UInt8](repeating: 1, count: 31)))
        XCTAssertNil(Announcement.decode([0x23, 0, 0, 0, 1, 0]), "gossip data that is no announcement")
    }

    func testEncoderRefusesWhatDecoderWouldReject() {
        XCTAssertThrowsError(try MessageCodec.encode(.hello(Hello(capabilities: Array(repeating: "x", count: 33), agent: ""))))
        let big = [UInt8](repeating: 0, count: SyncLimits.maxObjectsChunk + 1)
        XCTAssertThrowsError(try MessageCodec.encode(.sync(.objects(Objects(requestID: 0, final: false, data: big)))))
        XCTAssertThrowsError(try MessageCodec.encode(.sync(.getRefs(GetRefs(requestID: 0, repository: String(repeating: "r", count: 256))))))
        XCTAssertThrowsError(try MessageCodec.encode(.gossip(.gossip(Gossip(topic: "t", origin: [1], sequence: 0, timestamp: 0,
                                                                            data: [], signature: [])))))
    }

    /// Seeded random loop: random and mutated bodies for every type never crash a decoder,
    /// and anything it accepts re-encodes to an identical message.
    func testRepositoriesRejectsLiesAndUnknownBits() throws {
        func decode(_ hexText: String) throws -> Message {
            var bytes: [UInt8] = []
            var it = hexText.makeIterator()
            while let a = it.next(), let b = it.next() { bytes.append(UInt8(String([a, b]), radix: 16) ?? 0) }
            return try MessageCodec.decode(type: 0x15, body: bytes, registry: registry)
        }
        // A count of 256 entries in 8 bytes fails before anything is allocated.
        XCTAssertThrowsError(try decode("00000001" + "0100" + "01"))
        // More than a page.
        XCTAssertThrowsError(try decode("00000001" + "0101" + String(repeating: "0001610000000000", count: 257) + "00"))
        // Unknown entry flag bits, unknown trailing flag bits, an empty name.
        XCTAssertThrowsError(try decode("00000001" + "0001" + "00016104" + "0000" + "00" + "00"))
        XCTAssertThrowsError(try decode("00000001" + "0001" + "00016100" + "0000" + "00" + "02"))
        XCTAssertThrowsError(try decode("00000001" + "0001" + "000000" + "0000" + "00" + "00"))
        XCTAssertEqual(try decode("00000001" + "0001" + "00016100" + "0000" + "00" + "00"),
                       .sync(.repositories(Repositories(requestID: 1, repositories: [RepositoryEntry(name: "a", head: "", headID: nil)], more: false))))
        // The largest page fits the type's maximum body.
        let big = RepositoryEntry(name: String(repeating: "n", count: 255), id: [UInt8](repeating: 1, count: 32), restricted: true,
                                  head: String(repeating: "h", count: 1024), headID: oid(1, 32))
        let page = Message.sync(.repositories(Repositories(requestID: 1, repositories: Array(repeating: big, count: 256), more: true)))
        let encoded = try MessageCodec.encode(page)
        XCTAssertEqual(encoded.count - 5, SyncMessage.Kind.repositories.maxBodySize)
        XCTAssertEqual(try MessageCodec.decode(type: 0x15, body: Array(encoded[5...]), registry: registry), page)
        XCTAssertThrowsError(try MessageCodec.encode(.sync(.repositories(Repositories(requestID: 1, repositories: Array(repeating: big, count: 257), more: true)))))
    }

    func testDecoderSurvivesHundredThousandRandomInputs() throws {
        let seed: UInt64 = 0x6775_7473
        var rng = SeededRandom(seed: seed)
        let types = samples.map(\.typeCode)
        let valid = try samples.map { (m: Message) -> (UInt8, [UInt8]) in (m.typeCode, Array(try MessageCodec.encode(m)[5...])) }
        var accepted = 0
        for i in 0..<100_000 {
            let type: UInt8
            var body: [UInt8]
            switch i % 4 {
            case 0:
                type = types[Int.random(in: 0..<types.count, using: &rng)]
                body = rng.bytes(Int.random(in: 0...64, using: &rng))
            case 1:
                type = types[Int.random(in: 0..<types.count, using: &rng)]
                body = rng.bytes(Int.random(in: 0...600, using: &rng))
            default:
                // Mutate a valid body: flip bytes, cut, or extend.
                let pick = valid[Int.random(in: 0..<valid.count, using: &rng)]
                type = pick.0
                body = pick.1
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !body.isEmpty {
                    body[Int.random(in: 0..<body.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if Bool.random(using: &rng) { body = Array(body.prefix(Int.random(in: 0...body.count, using: &rng))) }
                if Int.random(in: 0..<8, using: &rng) == 0 { body += rng.bytes(Int.random(in: 1...8, using: &rng)) }
            }
            if let message = try? MessageCodec.decode(type: type, body: body, registry: registry) {
                accepted += 1
                let again = try MessageCodec.encode(message)
                XCTAssertEqual(try MessageCodec.decode(type: type, body: Array(again[5...]), registry: registry), message,
                               "seed \(seed) case \(i)")
            }
        }
        XCTAssertGreaterThan(accepted, 100, "mutations of valid messages should sometimes stay valid (seed \(seed))")
    }
}

/// Deterministic PRNG (SplitMix64) so fuzz cases are reproducible from the seed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

private extension Array where Element == UInt8 {
    func replacing(at index: Int, with byte: UInt8) -> [UInt8] {
        var copy = self
        copy[index] = byte
        return copy
    }
}
