import XCTest
import GutsSupport
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
        XCTAssertEqual(ArgumentParser.editDistance("kitten", "sitting"), 3)
        XCTAssertEqual(ArgumentParser.editDistance("abc", ""), 3)
    }

    /// The rolling-row distance equals the textbook full-matrix one on seeded random words.
    func testEditDistanceMatchesTheFullMatrix() {
        let seed: UInt64 = 0x6775_7473
        var rng = SplitMix64(seed: seed)
        func word() -> String {
            let letters = Array("abcde")
            return String((0..<Int(rng.next() % 9)).map { _ in letters[Int(rng.next() % 5)] })
        }
        func reference(_ a: [Character], _ b: [Character]) -> Int {
            var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
            for i in 0...a.count { d[i][0] = i }
            for j in 0...b.count { d[0][j] = j }
            for i in stride(from: 1, through: a.count, by: 1) {
                for j in stride(from: 1, through: b.count, by: 1) {
                    let cost = a[i - 1] == b[j - 1] ? 0 : 1
                    d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                    if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                        d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                    }
                }
            }
            return d[a.count][b.count]
        }
        for _ in 0..<2000 {
            let a = word(), b = word()
            XCTAssertEqual(ArgumentParser.editDistance(a, b), reference(Array(a), Array(b)),
                           "\(a) / \(b) (seed \(seed))")
        }
    }

    /// A hostile word (a config file's 100 KB key) gets no suggestion and costs no quadratic work;
    /// typos and prefixes still get theirs.
    func testSuggestionsAreBoundedAndStillHelp() {
        let keys = ["max-connections", "listen", "network", "transport"]
        XCTAssertEqual(ArgumentParser.closest("max-conections", among: keys), "max-connections")
        XCTAssertEqual(ArgumentParser.closest("trans", among: keys), "transport")
        XCTAssertNil(ArgumentParser.closest("zzzzzz", among: keys))
        let huge = String(repeating: "x", count: 100_000)
        XCTAssertNil(ArgumentParser.closest(huge, among: keys))
        XCTAssertEqual(ArgumentParser.closest("listen" + huge, among: keys), "listen")
    }
}
