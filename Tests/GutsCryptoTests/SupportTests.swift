import XCTest
import GutsSupport

final class SupportTests: XCTestCase {
    func testHexRoundTripAndRejects() {
        XCTAssertEqual(Hex.encode([0x00, 0xab, 0xff]), "00abff")
        XCTAssertEqual(Hex.decode("00ABff"), [0x00, 0xab, 0xff])
        XCTAssertNil(Hex.decode("abc"))
        XCTAssertNil(Hex.decode("zz"))
    }

    func testBase32RFC4648Vectors() {
        // RFC 4648 section 10, lowercased and unpadded.
        let vectors = ["": "", "f": "my", "fo": "mzxq", "foo": "mzxw6", "foob": "mzxw6yq", "fooba": "mzxw6ytb", "foobar": "mzxw6ytboi"]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base32.encode(Array(plain.utf8)), encoded)
            XCTAssertEqual(Base32.decode(encoded), Array(plain.utf8))
            XCTAssertEqual(Base32.decode(encoded.uppercased()), Array(plain.utf8))
        }
        XCTAssertNil(Base32.decode("mz1"), "digit 1 is not in the alphabet")
        XCTAssertNil(Base32.decode("mz"), "non-zero trailing bits must be rejected")
        XCTAssertNil(Base32.decode("m"), "a lone character cannot encode a byte")
    }
}

final class Base64Tests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors { XCTAssertEqual(Base64.encode(Array(plain.utf8)), encoded) }
        XCTAssertEqual(Base64.encode([0xff, 0xfe, 0x00]), "//4A")
    }
}
