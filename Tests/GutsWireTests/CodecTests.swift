import XCTest
@testable import GutsWire

final class CodecTests: XCTestCase {
    func testEveryMessageRoundTrips() throws {
        XCTAssertEqual(Set(sampleMessages.map(\.kind)).count, Message.Kind.allCases.count, "samples cover every kind")
        for message in sampleMessages {
            let encoded = try MessageCodec.encode(message)
            XCTAssertEqual(encoded[0], message.kind.rawValue)
            let length = Int(encoded[1]) << 24 | Int(encoded[2]) << 16 | Int(encoded[3]) << 8 | Int(encoded[4])
            XCTAssertEqual(length, encoded.count - 5)
            let decoded = try MessageCodec.decode(kind: message.kind, body: Array(encoded[5...]))
            XCTAssertEqual(decoded, message)
        }
    }

    /// Byte layout of Ping as specified in guts-protocol(7).
    func testPingLayoutIsExact() throws {
        let bytes = try MessageCodec.encode(.ping(nonce: 0x0102_0304_0506_0708))
        XCTAssertEqual(bytes, [0x03, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])
    }

    func testHelloLayoutIsExact() throws {
        let bytes = try MessageCodec.encode(.hello(Hello(minVersion: 1, maxVersion: 1, capabilities: ["ping"], agent: "guts/0.1.0")))
        let body: [UInt8] = [0, 1, 0, 1, 1, 4] + Array("ping".utf8) + [10] + Array("guts/0.1.0".utf8)
        XCTAssertEqual(bytes, [0x01, 0, 0, 0, UInt8(body.count)] + body)
    }

    func testEveryTruncationIsRejected() throws {
        for message in sampleMessages {
            let body = Array(try MessageCodec.encode(message)[5...])
            for cut in 0..<body.count {
                XCTAssertThrowsError(try MessageCodec.decode(kind: message.kind, body: Array(body[..<cut])),
                                     "\(message.kind) truncated to \(cut) bytes must be rejected")
            }
        }
    }

    func testTrailingBytesAreRejected() throws {
        for message in sampleMessages {
            let body = Array(try MessageCodec.encode(message)[5...]) + [0]
            XCTAssertThrowsError(try MessageCodec.decode(kind: message.kind, body: body)) { error in
                if body.count > message.kind.maxBodySize {
                    // Fixed-size bodies (Ping, Pong) fail the size check first.
                    XCTAssertEqual(error as? DecodeError, .tooLarge(field: "body", size: body.count, limit: message.kind.maxBodySize))
                } else {
                    XCTAssertEqual(error as? DecodeError, .trailingBytes(1))
                }
            }
        }
    }

    func testFieldValidation() {
        // Object ID of a length other than 20 or 32.
        var body: [UInt8] = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 19] + [UInt8](repeating: 0, count: 19)
        XCTAssertThrowsError(try MessageCodec.decode(kind: .refs, body: body))
        // Invalid UTF-8 in an agent string.
        body = [0, 1, 0, 1, 0, 2, 0xff, 0xfe]
        XCTAssertThrowsError(try MessageCodec.decode(kind: .hello, body: body)) { error in
            XCTAssertEqual(error as? DecodeError, .invalidUTF8(field: "agent"))
        }
        // min_version above max_version.
        XCTAssertThrowsError(try MessageCodec.decode(kind: .hello, body: [0, 2, 0, 1, 0, 0]))
        // Unknown flag bits in Objects.
        XCTAssertThrowsError(try MessageCodec.decode(kind: .objects, body: [0, 0, 0, 1, 2, 0, 0, 0, 0]))
        // A ref count that claims more entries than the body could hold fails before allocating.
        XCTAssertThrowsError(try MessageCodec.decode(kind: .refs, body: [0, 0, 0, 1, 0, 0, 0, 3, 0x0d, 0x40]))
        // A capability with a space.
        XCTAssertThrowsError(try MessageCodec.decode(kind: .helloAck, body: [0, 1, 1, 3, 0x61, 0x20, 0x62, 0]))
        // Over-long body for its kind.
        XCTAssertThrowsError(try MessageCodec.decode(kind: .ping, body: [UInt8](repeating: 0, count: 9)))
    }

    func testEncoderRefusesWhatDecoderWouldReject() {
        XCTAssertThrowsError(try MessageCodec.encode(.hello(Hello(capabilities: Array(repeating: "x", count: 33), agent: ""))))
        XCTAssertThrowsError(try MessageCodec.encode(.objects(Objects(requestID: 0, final: false, data: [UInt8](repeating: 0, count: Limits.maxObjectsChunk + 1)))))
        XCTAssertThrowsError(try MessageCodec.encode(.getRefs(GetRefs(requestID: 0, repository: String(repeating: "r", count: 256)))))
        XCTAssertThrowsError(try MessageCodec.encode(.gossip(Gossip(topic: "t", origin: [1], sequence: 0, timestamp: 0, data: [], signature: []))))
    }

    /// Seeded random loop: random and mutated bodies for every kind never crash the decoder,
    /// and anything it accepts re-encodes to an identical message.
    func testDecoderSurvivesHundredThousandRandomInputs() throws {
        var rng = SeededRandom(seed: 0x6775_7473)
        let kinds = Message.Kind.allCases
        let valid = try sampleMessages.map { (m: Message) -> (Message.Kind, [UInt8]) in (m.kind, Array(try MessageCodec.encode(m)[5...])) }
        var accepted = 0
        for i in 0..<100_000 {
            let kind: Message.Kind
            var body: [UInt8]
            switch i % 4 {
            case 0:
                kind = kinds[Int.random(in: 0..<kinds.count, using: &rng)]
                body = rng.bytes(Int.random(in: 0...64, using: &rng))
            case 1:
                kind = kinds[Int.random(in: 0..<kinds.count, using: &rng)]
                body = rng.bytes(Int.random(in: 0...600, using: &rng))
            default:
                // Mutate a valid body: flip bytes, cut, or extend.
                let pick = valid[Int.random(in: 0..<valid.count, using: &rng)]
                kind = pick.0
                body = pick.1
                for _ in 0..<Int.random(in: 1...4, using: &rng) where !body.isEmpty {
                    body[Int.random(in: 0..<body.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                if Bool.random(using: &rng) { body = Array(body.prefix(Int.random(in: 0...body.count, using: &rng))) }
                if Int.random(in: 0..<8, using: &rng) == 0 { body += rng.bytes(Int.random(in: 1...8, using: &rng)) }
            }
            if let message = try? MessageCodec.decode(kind: kind, body: body) {
                accepted += 1
                let again = try MessageCodec.encode(message)
                XCTAssertEqual(try MessageCodec.decode(kind: kind, body: Array(again[5...])), message)
            }
        }
        XCTAssertGreaterThan(accepted, 100, "mutations of valid messages should sometimes stay valid")
    }
}
