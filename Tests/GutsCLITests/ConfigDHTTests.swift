@testable import GutsCLI
import XCTest

/// The DHT's config keys (guts-config(5)).
final class ConfigDHTTests: XCTestCase {
    func testAnnounceAddressAndDHTKeys() throws {
        let c = try NodeConfig.parse("announce-address = 198.51.100.4:9000\nannounce-address = [2001:db8::1]:9001\ndht = off\n", origin: "config")
        XCTAssertEqual(c.announceAddresses, ["198.51.100.4:9000", "[2001:db8::1]:9001"])
        XCTAssertFalse(c.dht)
        XCTAssertTrue(try NodeConfig.parse("dht = on\n", origin: "config").dht)
        XCTAssertTrue(try NodeConfig.parse("", origin: "config").dht)
        for bad in ["announce-address = example.com:9000", "announce-address = 0.0.0.0:9000", "announce-address = 10.0.0.1:0",
                    "announce-address = 224.0.0.1:9000", "announce-address = 10.0.0.1", "dht = maybe"] {
            XCTAssertThrowsError(try NodeConfig.parse(bad + "\n", origin: "config"), bad) { error in
                XCTAssertEqual((error as? CommandError)?.code, .io, bad)
            }
        }
    }
}
