import Foundation
import XCTest

/// Command-line behaviour a script relies on: exit codes, messages, state directory rules.
final class CLITests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testUsageErrorsSuggestTheClosestSpelling() throws {
        let cmd = try h.run(["pnig", "x"])
        XCTAssertEqual(cmd.status, 2)
        XCTAssertEqual(cmd.stderr, "guts: unknown command 'pnig'; did you mean 'ping'? (see 'guts help')\n")
        let opt = try h.run(["ping", "--cuont", "3", "x"])
        XCTAssertEqual(opt.status, 2)
        XCTAssertTrue(opt.stderr.contains("did you mean '--count'?"), opt.stderr)
        let range = try h.run(["ping", "-c", "0", "127.0.0.1"])
        XCTAssertEqual(range.status, 2)
        XCTAssertEqual(try h.run([]).status, 2)
    }

    /// A DHT record holds at most 8 addresses: a ninth is refused at start, not dropped unseen.
    func testMoreAnnounceAddressesThanARecordHoldsIsAUsageError() throws {
        _ = try h.keygen("n")
        let nine = (1...9).flatMap { ["--announce-address", "198.51.100.\($0):9000"] }
        let r = try h.run(["--home", h.home("n"), "listen", "--listen", "127.0.0.1:0"] + nine)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("at most 8 addresses"), r.stderr)
    }

    func testHelpAndVersion() throws {
        let help = try h.run(["help"])
        XCTAssertEqual(help.status, 0)
        for cmd in ["keygen", "listen", "dial", "ping"] { XCTAssertTrue(help.stdout.contains("  \(cmd) "), cmd) }
        let pingHelp = try h.run(["ping", "--help"])
        XCTAssertEqual(pingHelp.status, 0)
        XCTAssertTrue(pingHelp.stdout.contains("--count COUNT"))
        XCTAssertEqual(try h.run(["help", "ping"]).stdout, pingHelp.stdout)
        let version = try h.run(["--version"])
        XCTAssertTrue(version.stdout.hasPrefix("guts "))
    }

    func testKeygenStateDirectoryAndPermissions() throws {
        let home = h.home("state/nested")
        let first = try h.run(["keygen"], environment: ["GUTS_HOME": home])
        XCTAssertEqual(first.status, 0, first.stderr)
        let attrs = try FileManager.default.attributesOfItem(atPath: home)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        let key = home + "/identity.key"
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? NSNumber)?.intValue, 0o600)

        // --home wins over GUTS_HOME.
        let other = h.home("other")
        XCTAssertEqual(try h.run(["--home", other, "keygen"], environment: ["GUTS_HOME": home]).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: other + "/identity.key"))

        let again = try h.run(["keygen"], environment: ["GUTS_HOME": home])
        XCTAssertEqual(again.status, 3)
        XCTAssertTrue(again.stderr.contains("--force"), again.stderr)
        let show = try h.run(["keygen", "--show"], environment: ["GUTS_HOME": home])
        XCTAssertEqual(show.stdout, first.stdout)
        let forced = try h.run(["keygen", "--force"], environment: ["GUTS_HOME": home])
        XCTAssertEqual(forced.status, 0)
        XCTAssertNotEqual(forced.stdout, first.stdout)

        chmod(key, 0o644)
        let loose = try h.run(["--home", home, "listen", "--listen", "127.0.0.1:0"])
        XCTAssertEqual(loose.status, 3)
        XCTAssertTrue(loose.stderr.contains("too open"), loose.stderr)

        let missing = try h.run(["--home", h.home("empty"), "listen", "--listen", "127.0.0.1:0"])
        XCTAssertEqual(missing.status, 3)
        XCTAssertTrue(missing.stderr.contains("guts keygen"), missing.stderr)
    }

    func testConfigFileIsReadAndValidated() throws {
        let home = h.home("cfg")
        XCTAssertEqual(try h.run(["--home", home, "keygen"]).status, 0)
        try "# test\nlisten = 127.0.0.1:0\nmax-connections = 5\n".write(toFile: home + "/config", atomically: true, encoding: .utf8)
        let node = try h.start(["--home", home, "listen"])
        node.waitFor("address line") { out, _ in out.contains("@127.0.0.1:") }
        try "listen = 127.0.0.1:0\nmax-conections = 5\n".write(toFile: home + "/config", atomically: true, encoding: .utf8)
        let bad = try h.run(["--home", home, "listen"])
        XCTAssertEqual(bad.status, 3, "a bad config file is a local state problem")
        XCTAssertTrue(bad.stderr.contains("config:2: unknown key 'max-conections'; did you mean 'max-connections'?"), bad.stderr)
    }
}
