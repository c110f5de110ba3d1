import GutsCrypto
import GutsNoise
import XCTest

/// Behaviour of the Noise XX state machine beyond the fixed vectors: turn taking, failure
/// stickiness, malformed input, limits, and the transport phase.
final class NoiseStateTests: XCTestCase {
    private struct Pair {
        var initiator: HandshakeState
        var responder: HandshakeState
        let initiatorStatic: X25519KeyPair
        let responderStatic: X25519KeyPair
    }

    private func makePair(prologue: [UInt8] = Array("guts test".utf8)) -> Pair {
        let i = X25519KeyPair.generate(), r = X25519KeyPair.generate()
        return Pair(initiator: HandshakeState(role: .initiator, prologue: prologue, localStatic: i),
                    responder: HandshakeState(role: .responder, prologue: prologue, localStatic: r),
                    initiatorStatic: i, responderStatic: r)
    }

    /// Runs all three messages; returns (initiator, responder) transports.
    private func completeHandshake(_ pair: inout Pair) throws -> (TransportState, TransportState) {
        let m1 = try pair.initiator.writeMessage(payload: [1])
        XCTAssertEqual(try pair.responder.readMessage(m1), [1])
        let m2 = try pair.responder.writeMessage(payload: [2, 2])
        XCTAssertEqual(try pair.initiator.readMessage(m2), [2, 2])
        let m3 = try pair.initiator.writeMessage(payload: [3, 3, 3])
        XCTAssertEqual(try pair.responder.readMessage(m3), [3, 3, 3])
        return (try pair.initiator.intoTransport(), try pair.responder.intoTransport())
    }

    private func assertNoise<T>(_ expression: @autoclosure () throws -> T, throws expected: NoiseError,
                                _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), message, file: file, line: line) { error in
            XCTAssertEqual(error as? NoiseError, expected, message, file: file, line: line)
        }
    }

    // MARK: Happy path

    func testHandshakeRoundTripAndTransportBothDirections() throws {
        var pair = makePair()
        XCTAssertEqual(pair.initiator.role, .initiator)
        XCTAssertEqual(pair.responder.role, .responder)
        XCTAssertTrue(pair.initiator.isMyTurn)
        XCTAssertFalse(pair.responder.isMyTurn)

        let m1 = try pair.initiator.writeMessage(payload: Array("hello".utf8))
        XCTAssertEqual(m1.count, 32 + 5, "message 1 is e plus a cleartext payload")
        XCTAssertFalse(pair.initiator.isMyTurn)
        XCTAssertEqual(try pair.responder.readMessage(m1), Array("hello".utf8))
        XCTAssertTrue(pair.responder.isMyTurn)
        XCTAssertNil(pair.responder.remoteStaticKey)
        XCTAssertEqual(pair.responder.remoteEphemeralKey?.count, 32)

        let m2 = try pair.responder.writeMessage(payload: [])
        XCTAssertEqual(m2.count, 32 + 48 + 16)
        XCTAssertEqual(try pair.initiator.readMessage(m2), [])
        XCTAssertEqual(pair.initiator.remoteStaticKey, pair.responderStatic.publicKey)
        XCTAssertFalse(pair.initiator.isFinished)

        let m3 = try pair.initiator.writeMessage(payload: Array("me".utf8))
        XCTAssertEqual(m3.count, 48 + 2 + 16)
        XCTAssertTrue(pair.initiator.isFinished)
        XCTAssertFalse(pair.initiator.isMyTurn)
        XCTAssertEqual(try pair.responder.readMessage(m3), Array("me".utf8))
        XCTAssertTrue(pair.responder.isFinished)
        XCTAssertFalse(pair.responder.isMyTurn)

        XCTAssertEqual(pair.responder.remoteStaticKey, pair.initiatorStatic.publicKey)
        XCTAssertEqual(pair.initiator.handshakeHash, pair.responder.handshakeHash)
        XCTAssertEqual(pair.initiator.handshakeHash.count, 64)

        var it = try pair.initiator.intoTransport()
        var rt = try pair.responder.intoTransport()
        XCTAssertEqual(it.handshakeHash, rt.handshakeHash)
        XCTAssertEqual(it.remoteStaticKey, pair.responderStatic.publicKey)
        XCTAssertEqual(rt.remoteStaticKey, pair.initiatorStatic.publicKey)

        for round in 0..<20 {
            let a = Array("from initiator \(round)".utf8)
            XCTAssertEqual(try rt.decrypt(try it.encrypt(a)), a)
            let b = [UInt8](repeating: UInt8(round), count: round * 100)
            XCTAssertEqual(try it.decrypt(try rt.encrypt(b)), b)
        }
        // The two directions use different keys.
        var it2 = try pair.initiator.intoTransport(), rt2 = try pair.responder.intoTransport()
        XCTAssertNotEqual(try it2.encrypt([0, 0, 0]), try rt2.encrypt([0, 0, 0]))
    }

    func testSessionsDifferEvenWithSameStatics() throws {
        let i = X25519KeyPair.generate(), r = X25519KeyPair.generate()
        var hashes: Set<[UInt8]> = []
        for _ in 0..<3 {
            var pair = Pair(initiator: HandshakeState(role: .initiator, prologue: [], localStatic: i),
                            responder: HandshakeState(role: .responder, prologue: [], localStatic: r),
                            initiatorStatic: i, responderStatic: r)
            let (t, _) = try completeHandshake(&pair)
            hashes.insert(t.handshakeHash)
        }
        XCTAssertEqual(hashes.count, 3, "fresh ephemerals must give fresh sessions")
    }

    // MARK: Turn taking and stickiness

    func testWrongTurnThrowsAndPoisons() {
        var pair = makePair()
        assertNoise(try pair.initiator.readMessage([UInt8](repeating: 9, count: 32)), throws: .notMyTurn)
        XCTAssertTrue(pair.initiator.hasFailed)
        XCTAssertFalse(pair.initiator.isMyTurn)
        assertNoise(try pair.initiator.writeMessage(payload: []), throws: .failedState)
        assertNoise(try pair.initiator.intoTransport(), throws: .failedState)

        assertNoise(try pair.responder.writeMessage(payload: []), throws: .notMyTurn)
        assertNoise(try pair.responder.readMessage([UInt8](repeating: 9, count: 32)), throws: .failedState)
    }

    func testCallsAfterFinishAndBeforeFinish() throws {
        var pair = makePair()
        assertNoise(try pair.initiator.intoTransport(), throws: .handshakeNotFinished)
        _ = try completeHandshake(&pair)
        var afterInitiator = pair.initiator
        assertNoise(try afterInitiator.writeMessage(payload: []), throws: .handshakeFinished)
        assertNoise(try afterInitiator.intoTransport(), throws: .failedState)
        var afterResponder = pair.responder
        assertNoise(try afterResponder.readMessage([]), throws: .handshakeFinished)
        XCTAssertFalse(afterResponder.isFinished)
    }

    func testTamperedMessage2FailsAndPoisons() throws {
        var pair = makePair()
        _ = try pair.responder.readMessage(try pair.initiator.writeMessage(payload: []))
        let m2 = try pair.responder.writeMessage(payload: Array("payload".utf8))
        for index in m2.indices {
            var initiator = pair.initiator // a fresh copy per tamper
            var bad = m2
            bad[index] ^= 1 << UInt8(index % 8)
            assertNoise(try initiator.readMessage(bad), throws: .decryptionFailed, "flip in byte \(index)")
            XCTAssertTrue(initiator.hasFailed)
            assertNoise(try initiator.readMessage(m2), throws: .failedState, "no retry after byte \(index)")
            assertNoise(try initiator.writeMessage(payload: []), throws: .failedState)
        }
        // The untouched message still works on an unpoisoned copy.
        XCTAssertEqual(try pair.initiator.readMessage(m2), Array("payload".utf8))
    }

    func testTamperedMessage3FailsAndPoisons() throws {
        var pair = makePair()
        _ = try pair.responder.readMessage(try pair.initiator.writeMessage(payload: []))
        _ = try pair.initiator.readMessage(try pair.responder.writeMessage(payload: []))
        let m3 = try pair.initiator.writeMessage(payload: Array("payload".utf8))
        for index in m3.indices {
            var responder = pair.responder
            var bad = m3
            bad[index] ^= 1 << UInt8(index % 8)
            assertNoise(try responder.readMessage(bad), throws: .decryptionFailed, "flip in byte \(index)")
            assertNoise(try responder.readMessage(m3), throws: .failedState)
            assertNoise(try responder.intoTransport(), throws: .failedState)
            XCTAssertNil(try? responder.intoTransport())
        }
        XCTAssertEqual(try pair.responder.readMessage(m3), Array("payload".utf8))
    }

    func testPrologueMismatchFails() throws {
        let i = HandshakeState(role: .initiator, prologue: [1], localStatic: .generate())
        let r = HandshakeState(role: .responder, prologue: [2], localStatic: .generate())
        var pair = Pair(initiator: i, responder: r, initiatorStatic: .generate(), responderStatic: .generate())
        _ = try pair.responder.readMessage(try pair.initiator.writeMessage(payload: []))
        let m2 = try pair.responder.writeMessage(payload: [])
        assertNoise(try pair.initiator.readMessage(m2), throws: .decryptionFailed)
    }

    func testLowOrderEphemeralRejected() throws {
        // Responder side: an all-zero e in message 1 is caught by the ee DH while writing message 2.
        var pair = makePair()
        XCTAssertEqual(try pair.responder.readMessage([UInt8](repeating: 0, count: 32)), [])
        assertNoise(try pair.responder.writeMessage(payload: []), throws: .invalidPublicKey)
        assertNoise(try pair.responder.writeMessage(payload: []), throws: .failedState)

        // Initiator side: a low-order e in message 2.
        pair = makePair()
        _ = try pair.responder.readMessage(try pair.initiator.writeMessage(payload: []))
        var m2 = try pair.responder.writeMessage(payload: [])
        m2.replaceSubrange(0..<32, with: [1] + [UInt8](repeating: 0, count: 31))
        assertNoise(try pair.initiator.readMessage(m2), throws: .invalidPublicKey)
        XCTAssertTrue(pair.initiator.hasFailed)
    }

    // MARK: Malformed lengths

    func testTruncatedMessagesThrowWithoutCrashing() throws {
        var pair = makePair()
        let m1 = try pair.initiator.writeMessage(payload: [])
        for length in 0..<32 {
            var responder = pair.responder
            assertNoise(try responder.readMessage(Array(m1.prefix(length))), throws: .messageTooShort)
        }
        _ = try pair.responder.readMessage(m1)
        let m2 = try pair.responder.writeMessage(payload: [7])
        for length in 0..<m2.count {
            var initiator = pair.initiator
            // e (32) and encrypted s (48) and the payload tag (16) must be present.
            let expected: NoiseError = length < 32 + 48 + 16 ? .messageTooShort : .decryptionFailed
            assertNoise(try initiator.readMessage(Array(m2.prefix(length))), throws: expected, "m2 length \(length)")
        }
        _ = try pair.initiator.readMessage(m2)
        let m3 = try pair.initiator.writeMessage(payload: [7, 7])
        for length in 0..<m3.count {
            var responder = pair.responder
            let expected: NoiseError = length < 48 + 16 ? .messageTooShort : .decryptionFailed
            assertNoise(try responder.readMessage(Array(m3.prefix(length))), throws: expected, "m3 length \(length)")
        }
        // Trailing garbage is not a truncation but still fails authentication.
        var responder = pair.responder
        assertNoise(try responder.readMessage(m3 + [0]), throws: .decryptionFailed)
    }

    func testOverlongMessagesRejected() throws {
        var pair = makePair()
        // Message 1 is 32 + payload bytes: 65503 fits exactly, 65504 does not.
        var fits = pair.initiator
        XCTAssertEqual(try fits.writeMessage(payload: [UInt8](repeating: 0, count: 65503)).count, 65535)
        assertNoise(try pair.initiator.writeMessage(payload: [UInt8](repeating: 0, count: 65504)), throws: .messageTooLong)
        XCTAssertTrue(pair.initiator.hasFailed)
        assertNoise(try pair.responder.readMessage([UInt8](repeating: 1, count: 65536)), throws: .messageTooLong)

        var pair2 = makePair()
        _ = try pair2.responder.readMessage(try pair2.initiator.writeMessage(payload: []))
        // Message 2 is 32 + 48 + payload + 16.
        var fits2 = pair2.responder
        XCTAssertEqual(try fits2.writeMessage(payload: [UInt8](repeating: 0, count: 65535 - 96)).count, 65535)
        assertNoise(try pair2.responder.writeMessage(payload: [UInt8](repeating: 0, count: 65535 - 95)), throws: .messageTooLong)

        var pair3 = makePair()
        var (it, rt) = try completeHandshake(&pair3)
        XCTAssertEqual(TransportState.maxPlaintextLength, 65519)
        let big = try it.encrypt([UInt8](repeating: 5, count: 65519))
        XCTAssertEqual(big.count, 65535)
        XCTAssertEqual(try rt.decrypt(big).count, 65519)
        assertNoise(try it.encrypt([UInt8](repeating: 5, count: 65520)), throws: .messageTooLong)
        assertNoise(try rt.decrypt([UInt8](repeating: 5, count: 65536)), throws: .messageTooLong)
        assertNoise(try rt.decrypt([UInt8](repeating: 5, count: 15)), throws: .messageTooShort)
        XCTAssertEqual(it.sender.nonce, 1, "rejected messages do not consume nonces")
        XCTAssertEqual(rt.receiver.nonce, 1)
    }

    // MARK: Transport

    func testTransportNoncesAdvanceAndRejectReplayAndReorder() throws {
        var pair = makePair()
        var (it, rt) = try completeHandshake(&pair)
        XCTAssertEqual(it.sender.nonce, 0)
        let c0 = try it.encrypt([0]), c1 = try it.encrypt([1]), c2 = try it.encrypt([2])
        XCTAssertEqual(it.sender.nonce, 3)
        XCTAssertEqual(it.receiver.nonce, 0)
        assertNoise(try rt.decrypt(c1), throws: .decryptionFailed, "out of order")
        XCTAssertEqual(rt.receiver.nonce, 0, "failed decryption leaves n unchanged")
        XCTAssertEqual(try rt.decrypt(c0), [0])
        assertNoise(try rt.decrypt(c0), throws: .decryptionFailed, "replay")
        XCTAssertEqual(try rt.decrypt(c1), [1])
        var tampered = c2
        tampered[tampered.count - 1] ^= 0x80
        assertNoise(try rt.decrypt(tampered), throws: .decryptionFailed)
        XCTAssertEqual(try rt.decrypt(c2), [2])
        XCTAssertEqual(rt.receiver.nonce, 3)
    }

    func testInPlaceFastPathInteroperatesWithArrayPath() throws {
        var pair = makePair()
        var (it, rt) = try completeHandshake(&pair)
        for length in [0, 1, 16, 1000, TransportState.maxPlaintextLength] {
            let plaintext = Random.bytes(length)
            var reference = it // same keys and nonce, array path
            let expected = try reference.encrypt(plaintext)

            var buffer = plaintext + [UInt8](repeating: 0xee, count: 16 + 7) // room to spare
            let written = try buffer.withUnsafeMutableBytes { try it.sender.encryptInPlace($0, plaintextCount: length) }
            XCTAssertEqual(written, length + 16)
            XCTAssertEqual(Array(buffer.prefix(written)), expected, "in-place ciphertext equals array ciphertext")
            XCTAssertEqual(buffer.suffix(7), [UInt8](repeating: 0xee, count: 7)[...], "bytes past the tag untouched")

            // Array ciphertext -> in-place decryption on the other side.
            var incoming = expected
            let count = try incoming.withUnsafeMutableBytes { try rt.receiver.decryptInPlace($0, ciphertextCount: expected.count) }
            XCTAssertEqual(count, length)
            XCTAssertEqual(Array(incoming.prefix(count)), plaintext)

            // And back: in-place encryption -> array decryption.
            var back = plaintext + [UInt8](repeating: 0, count: 16)
            let n = try back.withUnsafeMutableBytes { try rt.sender.encryptInPlace($0, plaintextCount: length) }
            XCTAssertEqual(try it.decrypt(Array(back.prefix(n))), plaintext)
        }
        // In-place failures: short, tampered, too long.
        var short = [UInt8](repeating: 0, count: 15)
        XCTAssertThrowsError(try short.withUnsafeMutableBytes { try rt.receiver.decryptInPlace($0, ciphertextCount: 15) }) {
            XCTAssertEqual($0 as? NoiseError, .messageTooShort)
        }
        var forged = try it.encrypt([1, 2, 3])
        forged[0] ^= 1
        let before = rt.receiver.nonce
        XCTAssertThrowsError(try forged.withUnsafeMutableBytes { try rt.receiver.decryptInPlace($0, ciphertextCount: 19) }) {
            XCTAssertEqual($0 as? NoiseError, .decryptionFailed)
        }
        XCTAssertEqual(rt.receiver.nonce, before)
        var huge = [UInt8](repeating: 0, count: 65520 + 16)
        XCTAssertThrowsError(try huge.withUnsafeMutableBytes { try it.sender.encryptInPlace($0, plaintextCount: 65520) }) {
            XCTAssertEqual($0 as? NoiseError, .messageTooLong)
        }
    }

    // MARK: CipherState details

    func testCipherStateWithoutKeyPassesThrough() throws {
        var cs = CipherState(key: nil)
        XCTAssertFalse(cs.hasKey)
        XCTAssertEqual(try cs.encryptWithAd([1], [4, 5, 6]), [4, 5, 6])
        XCTAssertEqual(try cs.decryptWithAd([1], [4, 5, 6]), [4, 5, 6])
        XCTAssertEqual(cs.nonce, 0)
    }

    func testCipherStateMatchesChaChaPolyWithNoiseNonces() throws {
        let key = Random.bytes(32)
        var cs = CipherState(key: key)
        XCTAssertTrue(cs.hasKey)
        for n: UInt64 in 0..<3 {
            XCTAssertEqual(try cs.encryptWithAd([9], [n == 0 ? 1 : 2]),
                           ChaChaPoly.seal(key: key, nonce: n, ad: [9], plaintext: [n == 0 ? 1 : 2]))
        }
    }

    func testNonceExhaustion() throws {
        let key = Random.bytes(32)
        var sender = CipherState(key: key), receiver = CipherState(key: key)
        sender.setNonce(.max - 1)
        receiver.setNonce(.max - 1)
        let last = try sender.encryptWithAd([], [42])
        XCTAssertEqual(sender.nonce, .max)
        assertNoise(try sender.encryptWithAd([], [43]), throws: .nonceExhausted)
        XCTAssertEqual(try receiver.decryptWithAd([], last), [42])
        assertNoise(try receiver.decryptWithAd([], last), throws: .nonceExhausted)
        var buffer = [UInt8](repeating: 0, count: 32)
        XCTAssertThrowsError(try buffer.withUnsafeMutableBytes { try sender.encryptInPlace($0, plaintextCount: 1) }) {
            XCTAssertEqual($0 as? NoiseError, .nonceExhausted)
        }
    }

    func testRekey() throws {
        var pair = makePair()
        var (it, rt) = try completeHandshake(&pair)
        _ = try rt.decrypt(try it.encrypt([1]))

        // REKEY(k) = first 32 bytes of ENCRYPT(k, 2^64-1, zerolen, zeros) (spec 4.2); n is kept.
        it.sender.rekey()
        XCTAssertEqual(it.sender.nonce, 1)
        let ciphertext = try it.encrypt([7, 7])
        assertNoise(try { var r = rt; return try r.decrypt(ciphertext) }(), throws: .decryptionFailed,
                    "receiver must rekey too")
        rt.receiver.rekey()
        XCTAssertEqual(try rt.decrypt(ciphertext), [7, 7])

        // Cross-check against the definition with a fixed key.
        let key = (0..<32).map { UInt8($0) }
        var rekeyed = CipherState(key: key)
        rekeyed.setNonce(5)
        rekeyed.rekey()
        XCTAssertEqual(rekeyed.nonce, 5)
        let derived = Array(ChaChaPoly.seal(key: key, nonce: .max, ad: [], plaintext: [UInt8](repeating: 0, count: 32)).prefix(32))
        var reference = CipherState(key: derived)
        reference.setNonce(5)
        XCTAssertEqual(try rekeyed.encryptWithAd([1], [2, 3]), try reference.encryptWithAd([1], [2, 3]))
        var unkeyed = CipherState(key: nil)
        unkeyed.rekey()
        XCTAssertFalse(unkeyed.hasKey)
    }

    func testErrorDescriptions() {
        let all: [NoiseError] = [.notMyTurn, .handshakeFinished, .handshakeNotFinished, .messageTooLong, .messageTooShort,
                                 .decryptionFailed, .nonceExhausted, .invalidPublicKey, .failedState]
        XCTAssertEqual(Set(all.map(\.description)).count, all.count)
    }
}
