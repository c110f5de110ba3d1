import GutsCrypto
import GutsIdentity
import GutsSupport
import XCTest
@testable import GutsWire

final class SessionTests: XCTestCase {
    func testHandshakeEstablishesBothSidesWithProvenIdentities() throws {
        var p = Pair()
        p.connect()
        XCTAssertTrue(p.a.isEstablished)
        XCTAssertTrue(p.b.isEstablished)
        XCTAssertEqual(p.a.peer?.peerID.publicKey, p.bIdentity.publicKey)
        XCTAssertEqual(p.b.peer?.peerID.publicKey, p.aIdentity.publicKey)
        XCTAssertEqual(p.a.peer?.agent, "b")
        XCTAssertEqual(p.b.peer?.agent, "a")
        XCTAssertEqual(p.a.peer?.capabilities, Capabilities.default)
        XCTAssertEqual(p.a.peer?.version, 1)
        XCTAssertNil(p.aClose)
        XCTAssertNil(p.bClose)
    }

    func testExpectedPeerMatchesOrIsRefused() throws {
        let bKey = Ed25519KeyPair.generate()
        var ok = Pair(expected: try PeerID(publicKey: bKey.publicKey), bIdentity: bKey)
        ok.connect()
        XCTAssertTrue(ok.a.isEstablished)

        let other = try PeerID(publicKey: Ed25519KeyPair.generate().publicKey)
        var bad = Pair(expected: other)
        bad.connect()
        guard case let .identityMismatch(expected, actual)? = bad.aClose else {
            return XCTFail("expected identity mismatch, got \(String(describing: bad.aClose))")
        }
        XCTAssertEqual(expected, other)
        XCTAssertEqual(actual.publicKey, bad.bIdentity.publicKey)
        XCTAssertFalse(bad.b.isEstablished, "the responder never sees message 3")
    }

    func testDifferentNetworksCannotConnect() {
        var p = Pair(aNetwork: "main", bNetwork: "test")
        p.connect()
        guard case .handshakeFailed? = p.aClose else { return XCTFail("got \(String(describing: p.aClose))") }
        XCTAssertFalse(p.a.isEstablished)
    }

    func testSelfConnectionIsRefused() {
        let key = Ed25519KeyPair.generate()
        var p = Pair(aIdentity: key, bIdentity: key)
        p.connect()
        XCTAssertEqual(p.aClose, .selfConnection)
    }

    func testRefusalIsExplained() {
        var p = Pair(refusal: Goodbye(code: .tooManyConnections, reason: "this node accepts at most 1 connections"))
        p.connect()
        XCTAssertEqual(p.aClose, .remoteGoodbye(Goodbye(code: .tooManyConnections, reason: "this node accepts at most 1 connections")))
        XCTAssertFalse(p.a.isEstablished)
    }

    func testPingIsAnsweredAndMessagesFlowBothWays() throws {
        var p = Pair()
        p.connect()
        p.pump([.send(try p.a.send(.ping(nonce: 42)))], fromA: true)
        XCTAssertEqual(p.aMessages, [.pong(nonce: 42)])
        XCTAssertTrue(p.bMessages.isEmpty, "ping is answered inside the session")
        p.pump([.send(try p.b.send(.app(Blob(data: [1, 2, 3]))))], fromA: false)
        XCTAssertEqual(p.aMessages.last, .app(Blob(data: [1, 2, 3])))
    }

    /// A message far larger than one Noise message is chunked and arrives intact, even when
    /// the bytes arrive in arbitrary pieces.
    func testLargeMessagesAreChunkedAndReassembled() throws {
        var p = Pair()
        p.connect()
        var rng = SeededRandom(seed: 7)
        let data = rng.bytes(1 << 20)
        let first = try p.a.send(.app(Blob(data: data)))
        let second = try p.a.send(.ping(nonce: 1))
        XCTAssertGreaterThan(first.count, 16 * 65535, "spans many Noise messages")
        var stream = first + second
        var events: [SessionEvent] = []
        while !stream.isEmpty {
            let n = min(stream.count, Int.random(in: 1...100_000, using: &rng))
            events += p.b.receive(Array(stream[..<n]), now: p.now)
            stream.removeFirst(n)
        }
        let messages = events.compactMap { if case let .message(m) = $0 { return m } else { return nil } }
        XCTAssertEqual(messages, [.app(Blob(data: data))])
        XCTAssertEqual(events.filter { if case .send = $0 { return true } else { return false } }.count, 1, "one pong")
    }

    /// The frames of guts-protocol(7), EXAMPLES: 00 20 and the initiator's ephemeral key;
    /// 00 c1 and 193 bytes; 00 a1 and 161 bytes with, in the same write, the Hello of
    /// `guts dial` (26 bytes) as frame 00 2a; a Ping (13 bytes) as frame 00 1d.
    func testFramesOfTheManualExample() throws {
        var ac = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "guts/0.1.0", protocols: blobRegistry)
        ac.capabilities = ["ping"]
        let bc = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "guts/0.1.0", protocols: blobRegistry)
        let now = Instant(nanoseconds: 1_000_000_000)
        var a = Session(role: .initiator, config: ac, now: now)
        var b = Session(role: .responder, config: bc, now: now)
        func sends(_ events: [SessionEvent]) -> [[UInt8]] {
            events.compactMap { if case let .send(bytes) = $0 { return bytes } else { return nil } }
        }
        let m1 = sends(a.start(now: now))
        XCTAssertEqual(m1.count, 1)
        XCTAssertEqual(Array(m1[0].prefix(2)), [0x00, 0x20])
        XCTAssertEqual(m1[0].count, 2 + 32)
        let m2 = sends(b.receive(m1[0], now: now))
        XCTAssertEqual(m2.count, 1)
        XCTAssertEqual(Array(m2[0].prefix(2)), [0x00, 0xc1])
        XCTAssertEqual(m2[0].count, 2 + 193)
        let m3 = sends(a.receive(m2[0], now: now))
        XCTAssertEqual(m3.count, 1, "message 3 and Hello in one write")
        XCTAssertEqual(Array(m3[0].prefix(2)), [0x00, 0xa1])
        XCTAssertEqual(Array(m3[0][163..<165]), [0x00, 0x2a])
        XCTAssertEqual(m3[0].count, 2 + 161 + 2 + 42)
        XCTAssertEqual(try MessageCodec.encode(.hello(Hello(capabilities: ["ping"], agent: "guts/0.1.0"))).count, 42 - 16)
        _ = sends(a.receive(sends(b.receive(m3[0], now: now)).joined().map { $0 }, now: now))
        XCTAssertTrue(a.isEstablished)
        XCTAssertTrue(b.isEstablished)
        let ping = try a.send(.ping(nonce: 0x0102_0304_0506_0708))
        XCTAssertEqual(Array(ping.prefix(2)), [0x00, 0x1d])
        XCTAssertEqual(ping.count, 2 + 29)
    }

    func testHandshakeByteByByte() {
        var p = Pair()
        var toB = p.a.start(now: p.now).compactMap { if case let .send(b) = $0 { return b } else { return nil } }.joined().map { $0 }
        var toA: [UInt8] = []
        for _ in 0..<4 {
            for byte in toB {
                for e in p.b.receive([byte], now: p.now) { if case let .send(b) = e { toA += b } }
            }
            toB = []
            for byte in toA {
                for e in p.a.receive([byte], now: p.now) { if case let .send(b) = e { toB += b } }
            }
            toA = []
        }
        XCTAssertTrue(p.a.isEstablished)
        XCTAssertTrue(p.b.isEstablished)
    }

    func testHandshakeTimeout() {
        var p = Pair()
        _ = p.a.start(now: p.now)
        XCTAssertEqual(p.b.nextDeadline, p.now.adding(seconds: 10))
        XCTAssertTrue(p.b.tick(now: p.now.adding(seconds: 9.9)).isEmpty)
        let events = p.b.tick(now: p.now.adding(seconds: 10))
        guard case .closed(.timeout)? = events.last else { return XCTFail("got \(events)") }
        XCTAssertTrue(p.b.isClosed)
    }

    func testKeepaliveThenIdleTimeout() {
        var p = Pair()
        p.connect()
        let t0 = p.now
        XCTAssertTrue(p.a.tick(now: t0.adding(seconds: 29)).isEmpty)
        let ka = p.a.tick(now: t0.adding(seconds: 30))
        guard case let .send(ping)? = ka.first else { return XCTFail("keepalive ping expected, got \(ka)") }
        // The peer answers; the answer resets the idle clock and is not surfaced.
        let reply = p.b.receive(ping, now: t0.adding(seconds: 30))
        guard case let .send(pong)? = reply.first else { return XCTFail("pong expected") }
        XCTAssertTrue(p.a.receive(pong, now: t0.adding(seconds: 30.001)).isEmpty)
        // Now the peer goes silent: another keepalive at +60, idle close at +120.
        XCTAssertEqual(p.a.tick(now: t0.adding(seconds: 60.1)).count, 1)
        XCTAssertTrue(p.a.tick(now: t0.adding(seconds: 100)).isEmpty)
        let close = p.a.tick(now: t0.adding(seconds: 120.1))
        guard case .closed(.timeout)? = close.last else { return XCTFail("idle timeout expected, got \(close)") }
    }

    func testUnknownTypeAndOversizeGetExplainedGoodbye() throws {
        for (raw, code) in [([0x7f, 0, 0, 0, 0] as [UInt8], ReasonCode.unknownMessageType),
                            ([0x03, 0xff, 0xff, 0xff, 0xff], .messageTooLarge),
                            ([0x03, 0, 0, 0, 2, 1, 2], .protocolViolation)] {
            var p = Pair()
            p.connect()
            var ts = try XCTUnwrap(p.a.transport)
            let bytes = try Session.sealStream(raw, with: &ts)
            p.a.setTransport(ts)
            let events = p.b.receive(bytes, now: p.now)
            guard case let .send(goodbyeBytes)? = events.first, case let .closed(.localGoodbye(g))? = events.last else {
                return XCTFail("expected Goodbye then close, got \(events)")
            }
            XCTAssertEqual(g.code, code)
            // The peer learns why.
            let aEvents = p.a.receive(goodbyeBytes, now: p.now)
            XCTAssertEqual(aEvents.last, .closed(.remoteGoodbye(g)))
        }
    }

    func testTamperedTransportMessageCloses() throws {
        var p = Pair()
        p.connect()
        var bytes = try p.a.send(.ping(nonce: 1))
        bytes[5] ^= 0x40
        let events = p.b.receive(bytes, now: p.now)
        guard case .closed? = events.last else { return XCTFail("got \(events)") }
        XCTAssertTrue(p.b.isClosed)
    }

    func testGarbageBeforeHandshakeIsRejected() {
        var rng = SeededRandom(seed: 99)
        for _ in 0..<2000 {
            var p = Pair()
            let events = p.b.receive(rng.bytes(Int.random(in: 1...400, using: &rng)), now: p.now)
            // Either it waits for more bytes or closes; it never establishes.
            XCTAssertFalse(p.b.isEstablished)
            if case .closed? = events.last { XCTAssertTrue(p.b.isClosed) }
        }
        // A plausible-length first message with junk is answered (message 1 is unauthenticated),
        // but a junk message 3 is rejected.
        var p = Pair()
        _ = p.b.receive([0, 32] + [UInt8](repeating: 9, count: 32), now: p.now)
        let events = p.b.receive([0, 200] + rng.bytes(200), now: p.now)
        guard case .closed(.handshakeFailed)? = events.last else { return XCTFail("got \(events)") }
    }

    func testIdentityProofBindsHashAndStaticKey() throws {
        let id = Ed25519KeyPair.generate()
        let h = [UInt8](repeating: 1, count: 64)
        let s = [UInt8](repeating: 2, count: 32)
        let proof = IdentityProof.make(identity: id, handshakeHash: h, noiseStatic: s)
        XCTAssertEqual(proof.count, 97)
        XCTAssertEqual(try IdentityProof.verify(proof, handshakeHash: h, remoteNoiseStatic: s).publicKey, id.publicKey)
        XCTAssertThrowsError(try IdentityProof.verify(proof, handshakeHash: [UInt8](repeating: 3, count: 64), remoteNoiseStatic: s))
        XCTAssertThrowsError(try IdentityProof.verify(proof, handshakeHash: h, remoteNoiseStatic: [UInt8](repeating: 4, count: 32)))
        var wrongVersion = proof
        wrongVersion[0] = 2
        XCTAssertThrowsError(try IdentityProof.verify(wrongVersion, handshakeHash: h, remoteNoiseStatic: s))
        XCTAssertThrowsError(try IdentityProof.verify(Array(proof.dropLast()), handshakeHash: h, remoteNoiseStatic: s))
    }

    func testVersionNegotiationRefusesDisjointRanges() throws {
        var p = Pair()
        // Drive the handshake by hand so the initiator's Hello can be replaced.
        var toB = p.a.start(now: p.now)
        var m2: [UInt8] = []
        for case let .send(bytes) in toB { for case let .send(b) in p.b.receive(bytes, now: p.now) { m2 += b } }
        toB = p.a.receive(m2, now: p.now)
        // toB holds message 3 followed by Hello; feed only message 3 (first frame).
        guard case let .send(all)? = toB.first else { return XCTFail() }
        let m3Length = Int(all[0]) << 8 | Int(all[1])
        _ = p.b.receive(Array(all[..<(2 + m3Length)]), now: p.now)
        var ts = try XCTUnwrap(p.a.transport)
        ts.sender.setNonce(0)  // reuse the slot of the Hello that was not delivered
        let hello = try Session.seal(.hello(Hello(minVersion: 5, maxVersion: 9, capabilities: [], agent: "future")), with: &ts)
        let events = p.b.receive(hello, now: p.now)
        guard case let .closed(.localGoodbye(g))? = events.last else { return XCTFail("got \(events)") }
        XCTAssertEqual(g.code, .unsupportedVersion)
        XCTAssertTrue(g.reason.contains("5-9"))
    }

    /// Random plaintext streams inside a valid encrypted session never crash the parser;
    /// the session either keeps going or closes with an explained Goodbye.
    func testRandomApplicationStreamsNeverCrash() throws {
        var rng = SeededRandom(seed: 0xfeed)
        var p = Pair()
        p.connect()
        var closed = 0
        for i in 0..<3000 {
            if p.b.isClosed {
                p = Pair()
                p.connect()
            }
            var raw = rng.bytes(Int.random(in: 1...200, using: &rng))
            // Half the cases start with a real type byte so bodies get parsed.
            if i % 2 == 0, let kind = ([0x70] + ControlKind.allCases.map(\.rawValue)).randomElement(using: &rng) {
                raw[0] = kind
                if raw.count >= 5 { raw[1] = 0; raw[2] = 0; raw[3] = 0; raw[4] = UInt8(min(raw.count - 5, 255)) }
            }
            var ts = try XCTUnwrap(p.a.transport)
            let bytes = try Session.sealStream(raw, with: &ts)
            p.a.setTransport(ts)
            let events = p.b.receive(bytes, now: p.now)
            if case .closed? = events.last { closed += 1 }
        }
        XCTAssertGreaterThan(closed, 100)
    }

    /// An answer nobody asked for is refused from its header: its body is skipped as it
    /// arrives (never buffered whole), and the session goes on.
    func testLargeUnsolicitedAnswerIsSkippedFromItsHeader() throws {
        var p = Pair()
        p.connect()
        var rng = SeededRandom(seed: 11)
        let big = Blob(data: rng.bytes(1 << 20), answer: true)
        var stream = try p.a.send(.app(big)) + (try p.a.send(.ping(nonce: 5)))
        var events: [SessionEvent] = []
        var largestBuffer = 0
        while !stream.isEmpty {
            let n = min(stream.count, 70_000)
            events += p.b.receive(Array(stream[..<n]), now: p.now)
            stream.removeFirst(n)
            largestBuffer = max(largestBuffer, p.b.bufferedStream)
        }
        XCTAssertTrue(events.contains(.discarded(typeName: "blob 0x71", bytes: 4 + (1 << 20))), "\(events.count) events")
        XCTAssertFalse(events.contains { if case .message = $0 { return true } else { return false } })
        XCTAssertEqual(events.filter { if case .send = $0 { return true } else { return false } }.count, 1, "the ping after it is answered")
        XCTAssertLessThan(largestBuffer, 128 << 10, "never buffered whole")
        // Small answers, and any answer while a request is outstanding, are delivered.
        p.b.answersExpected = true
        let delivered = p.b.receive(try p.a.send(.app(big)), now: p.now)
        XCTAssertTrue(delivered.contains(.message(.app(big))))
    }
}
