import GutsAddress
import GutsPolicy
import XCTest
@testable import GutsCLI

final class KnownPeersConfigTests: XCTestCase {
    let id = "gtszj542n275nytwitgyu4t7dpmfccafefppn4yo2pr4ac6oak5tg4fe4g"

    func testAliasesAndModeParse() throws {
        let config = try NodeConfig.parse("known-peers = strict\nalias.alice = \(id)@alice.example.org:9001\nalias.lab_2 = 10.0.0.7\n",
                                          origin: "config")
        XCTAssertEqual(config.knownPeers, .strict)
        XCTAssertEqual(config.aliases["alice"]?.address, "alice.example.org:9001")
        XCTAssertEqual(config.aliases["alice"]?.peer?.description, id)
        XCTAssertEqual(config.aliases["lab_2"], try Endpoint.parse("10.0.0.7:9000"))
        XCTAssertEqual(try NodeConfig.parse("", origin: "config").knownPeers, .acceptNew)
    }

    func testBadAliasesNameTheLine() {
        for (text, line) in [("known-peers = maybe\n", 1), ("\nalias.a.b = 10.0.0.1\n", 2), ("alias.9 = 10.0.0.1\n", 1),
                             ("alias.x = gtnotanid@10.0.0.1\n", 1), ("alias.x = 10.0.0.1\nalias.x = 10.0.0.2\n", 2),
                             ("alias. = 10.0.0.1\n", 1), ("alias.x = \n", 1)] {
            XCTAssertThrowsError(try NodeConfig.parse(text, origin: "config"), text) { error in
                XCTAssertTrue("\(error)".hasPrefix("config:\(line):"), "\(text): \(error)")
            }
        }
    }

    func testMirrorTakesAnAlias() throws {
        let alias = try Endpoint.parse("\(id)@10.0.0.7:9001")
        let spec = try ListenCommand.parseMirror("alice/proj@lab", aliases: ["lab": alias])
        XCTAssertEqual(spec.peer, alias)
        XCTAssertEqual(spec.trusted?.description, id)
        // A host that is not an alias stays a host.
        XCTAssertEqual(try ListenCommand.parseMirror("alice/proj@10.0.0.8", aliases: ["lab": alias]).peer?.address, "10.0.0.8:9000")
    }
}
