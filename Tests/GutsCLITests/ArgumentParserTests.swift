import XCTest
@testable import GutsCLI

final class ArgumentParserTests: XCTestCase {
    let specs = [
        OptionSpec("count", short: "c", value: "N", help: ""),
        OptionSpec("peer", value: "ADDR", repeatable: true, help: ""),
        OptionSpec("force", short: "f", help: ""),
        OptionSpec("verbose", short: "v", repeatable: true, help: ""),
    ]

    func testLongShortInlineAndSeparated() throws {
        let p = try ArgumentParser.parse(["--count=3", "x", "--peer", "a", "--peer=b", "-fvv", "y"], options: specs)
        XCTAssertEqual(p.value("count"), "3")
        XCTAssertEqual(p.all("peer"), ["a", "b"])
        XCTAssertTrue(p.has("force"))
        XCTAssertEqual(p.all("verbose").count, 2)
        XCTAssertEqual(p.positionals, ["x", "y"])
    }

    func testShortValueAttachedAndDoubleDash() throws {
        let p = try ArgumentParser.parse(["-c5", "--", "--force", "-v"], options: specs)
        XCTAssertEqual(p.value("count"), "5")
        XCTAssertFalse(p.has("force"))
        XCTAssertEqual(p.positionals, ["--force", "-v"])
    }

    func testUnknownOptionSuggestsClosest() {
        XCTAssertThrowsError(try ArgumentParser.parse(["--cuont", "3"], options: specs)) { error in
            XCTAssertEqual((error as? UsageError)?.message, "unknown option '--cuont'; did you mean '--count'?")
        }
    }

    func testMissingValueAndFlagWithValue() {
        XCTAssertThrowsError(try ArgumentParser.parse(["--count"], options: specs))
        XCTAssertThrowsError(try ArgumentParser.parse(["--force=yes"], options: specs))
        XCTAssertThrowsError(try ArgumentParser.parse(["--count", "1", "--count", "2"], options: specs))
    }

    func testIntegerRange() throws {
        let p = try ArgumentParser.parse(["-c", "0"], options: specs)
        XCTAssertThrowsError(try p.int("count", in: 1...10))
        let q = try ArgumentParser.parse(["-c", "7"], options: specs)
        XCTAssertEqual(try q.int("count", in: 1...10), 7)
    }

    func testUnknownCommandSuggestion() {
        XCTAssertThrowsError(try GutsMain.resolve(["kegen"])) { error in
            XCTAssertEqual((error as? UsageError)?.message, "unknown command 'kegen'; did you mean 'keygen'? (see 'guts help')")
        }
    }

    func testEditDistance() {
        XCTAssertEqual(ArgumentParser.editDistance("ping", "pnig"), 1)
        XCTAssertEqual(ArgumentParser.editDistance("", "abc"), 3)
        XCTAssertEqual(ArgumentParser.editDistance("listen", "listen"), 0)
    }
}
