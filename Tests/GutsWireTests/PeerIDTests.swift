import XCTest
import GutsIdentity
import GutsCrypto

final class PeerIDTests: XCTestCase {
    func testRoundTripAndChecksum() throws {
        let kp = try Ed25519KeyPair(seed: [UInt8](repeating: 7, count: 32))
        let id = try PeerID(publicKey: kp.publicKey)
        let text = id.description
        XCTAssertEqual(text.count, PeerID.textLength)
        XCTAssertTrue(text.hasPrefix("gt"))
        XCTAssertEqual(PeerID(text), id)
        XCTAssertEqual(PeerID(text.uppercased().replacingOccurrences(of: "GT", with: "gt")), id)
        // Any single-character change is caught by the checksum or the alphabet.
        var chars = Array(text)
        chars[20] = chars[20] == "a" ? "b" : "a"
        XCTAssertNil(PeerID(String(chars)))
        XCTAssertNil(PeerID(String(text.dropLast())))
        XCTAssertNil(PeerID("xx" + text.dropFirst(2)))
    }
}
