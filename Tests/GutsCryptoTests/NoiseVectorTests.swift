import Foundation
import GutsCrypto
import GutsNoise
import GutsSupport
import XCTest

/// Runs the shared Noise_XX_25519_ChaChaPoly_BLAKE2b test vectors.
///
/// File: `Tests/GutsCryptoTests/Vectors/noise_xx_25519_chachapoly_blake2b.json`, a verbatim
/// copy of the team's shared vectors, kept in the project so a fresh clone tests alone.
/// Assumed format (the
/// cacophony/snow vector format, all byte strings lowercase or uppercase hex):
///
///     { "vectors": [ {
///         "protocol_name": "Noise_XX_25519_ChaChaPoly_BLAKE2b",   // must match exactly
///         "init_prologue": hex, "resp_prologue": hex,
///         "init_static": hex32, "resp_static": hex32,              // X25519 secret keys
///         "init_ephemeral": hex32, "resp_ephemeral": hex32,        // X25519 secret keys
///         "init_psks": [], "resp_psks": [],                        // optional; must be empty
///         "handshake_hash": hex64,                                 // optional: h after msg 3
///         "source": "...",                                         // optional, informational
///         "messages": [ { "payload": hex, "ciphertext": hex }, ... ]
///     } ] }
///
/// Messages alternate starting with the initiator. Messages 1-3 are the XX handshake; the
/// rest are transport messages after `Split()` (initiator sends 4, 6, ...; responder 5, 7, ...).
final class NoiseVectorTests: XCTestCase {
    static let vectorFileName = "noise_xx_25519_chachapoly_blake2b.json"

    /// `Tests/GutsCryptoTests/Vectors/<file>`, derived from `#filePath` without URL APIs.
    static func vectorPath(filePath: String = #filePath) -> String {
        var components = filePath.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        components.removeLast() // file name
        return components.joined(separator: "/") + "/Vectors/" + vectorFileName
    }

    func testSharedVectors() throws {
        let path = Self.vectorPath()
        guard let data = FileManager.default.contents(atPath: path) else {
            XCTFail("Noise test vector file missing or unreadable: \(path)")
            return
        }
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any],
                                 "vector file is not a JSON object")
        let vectors = try XCTUnwrap(root["vectors"] as? [[String: Any]], "no \"vectors\" array")
        XCTAssertFalse(vectors.isEmpty, "vector file holds no vectors")
        for (index, vector) in vectors.enumerated() {
            let label = "vector \(index) (\(vector["source"] as? String ?? "no source"))"
            try runVector(vector, label: label)
        }
    }

    private func hex(_ vector: [String: Any], _ key: String, _ label: String) throws -> [UInt8] {
        let text = try XCTUnwrap(vector[key] as? String, "\(label): missing \(key)")
        return try XCTUnwrap(Hex.decode(text), "\(label): \(key) is not hex")
    }

    private func runVector(_ vector: [String: Any], label: String) throws {
        XCTAssertEqual(vector["protocol_name"] as? String, NoiseProtocol.name, "\(label): protocol name")
        for key in ["init_psks", "resp_psks"] {
            if let psks = vector[key] as? [Any] { XCTAssertTrue(psks.isEmpty, "\(label): \(key) must be empty for XX") }
        }
        var initiator = HandshakeState(
            role: .initiator, prologue: try hex(vector, "init_prologue", label),
            localStatic: try X25519KeyPair(secretKey: hex(vector, "init_static", label)),
            localEphemeral: try X25519KeyPair(secretKey: hex(vector, "init_ephemeral", label)))
        var responder = HandshakeState(
            role: .responder, prologue: try hex(vector, "resp_prologue", label),
            localStatic: try X25519KeyPair(secretKey: hex(vector, "resp_static", label)),
            localEphemeral: try X25519KeyPair(secretKey: hex(vector, "resp_ephemeral", label)))

        let messages = try XCTUnwrap(vector["messages"] as? [[String: Any]], "\(label): no messages")
        XCTAssertGreaterThanOrEqual(messages.count, 3, "\(label): fewer than 3 messages cannot finish XX")
        var initiatorTransport: TransportState?
        var responderTransport: TransportState?

        for (i, message) in messages.enumerated() {
            let context = "\(label), message \(i + 1)"
            let payload = try hex(message, "payload", context)
            let expected = try hex(message, "ciphertext", context)
            let initiatorWrites = i % 2 == 0

            if i < 3 {
                let written: [UInt8]
                let read: [UInt8]
                if initiatorWrites {
                    XCTAssertTrue(initiator.isMyTurn, context)
                    written = try initiator.writeMessage(payload: payload)
                    read = try responder.readMessage(written)
                } else {
                    XCTAssertTrue(responder.isMyTurn, context)
                    written = try responder.writeMessage(payload: payload)
                    read = try initiator.readMessage(written)
                }
                XCTAssertEqual(Hex.encode(written), Hex.encode(expected), "\(context): handshake ciphertext")
                XCTAssertEqual(read, payload, "\(context): decrypted handshake payload")
                if i == 2 {
                    XCTAssertTrue(initiator.isFinished && responder.isFinished, "\(label): handshake not finished")
                    XCTAssertEqual(initiator.handshakeHash, responder.handshakeHash, "\(label): handshake hashes differ")
                    if vector["handshake_hash"] != nil {
                        XCTAssertEqual(Hex.encode(initiator.handshakeHash),
                                       Hex.encode(try hex(vector, "handshake_hash", label)), "\(label): handshake hash")
                    }
                    initiatorTransport = try initiator.intoTransport()
                    responderTransport = try responder.intoTransport()
                }
            } else {
                var sending = try XCTUnwrap(initiatorWrites ? initiatorTransport : responderTransport)
                var receiving = try XCTUnwrap(initiatorWrites ? responderTransport : initiatorTransport)
                let written = try sending.encrypt(payload)
                XCTAssertEqual(Hex.encode(written), Hex.encode(expected), "\(context): transport ciphertext")
                XCTAssertEqual(try receiving.decrypt(written), payload, "\(context): decrypted transport payload")
                if initiatorWrites {
                    (initiatorTransport, responderTransport) = (sending, receiving)
                } else {
                    (responderTransport, initiatorTransport) = (sending, receiving)
                }
            }
        }
    }
}
