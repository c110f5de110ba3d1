import GutsIdentity
import GutsPolicy
import GutsSupport
import XCTest

final class KnownPeersTests: XCTestCase {
    private func parse(_ text: String) throws -> KnownPeers { try KnownPeers.parse(Array(text.utf8)) }

    private func parseError(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> KnownPeersParseError? {
        do {
            _ = try parse(text)
            XCTFail("should be refused: \(text.prefix(120))", file: file, line: line)
            return nil
        } catch let e as KnownPeersParseError {
            return e
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return nil
        }
    }

    func testParseKeepsCommentsAndRoundTrips() throws {
        let a = try peer(1), b = try peer(2)
        let text = "# known peers\n\n127.0.0.1:9000 \(a) 2026-12-01T18:12:00Z\n  # indented comment\n[::1]:9001\t\(b)\n"
        let known = try parse(text)
        XCTAssertEqual(known.entries.count, 2)
        XCTAssertEqual(known.lookup("127.0.0.1:9000")?.peer, a)
        XCTAssertEqual(known.lookup("127.0.0.1:9000")?.line, 3)
        XCTAssertEqual(known.lookup("127.0.0.1:9000")?.firstSeen, KnownPeers.parseTime("2026-12-01T18:12:00Z"))
        XCTAssertEqual(known.lookup("[::1]:9001")?.peer, b)
        XCTAssertNil(known.lookup("[::1]:9001")?.firstSeen)
        XCTAssertNil(known.lookup("127.0.0.1:9001"))
        // Tabs become single spaces; everything else, comments included, is kept.
        XCTAssertEqual(known.serialize(), text.replacingOccurrences(of: "\t", with: " "))
        XCTAssertEqual(try parse(known.serialize()), known)
    }

    func testAddressesAreNormalized() throws {
        let a = try peer(1)
        let known = try parse("Node.Example.ORG \(a)\n")
        XCTAssertEqual(known.entries.first?.address, "node.example.org:9000")
        XCTAssertEqual(known.lookup("node.example.org:9000")?.peer, a)
        XCTAssertEqual(known.lookup("NODE.example.org")?.peer, a)
        XCTAssertEqual(KnownPeers.normalize("::1"), "[::1]:9000")
        XCTAssertNil(KnownPeers.normalize("\(a)@127.0.0.1:9000"), "a peer ID is not an address")
        XCTAssertNil(KnownPeers.normalize("127.0.0.1:0"))
    }

    func testStrictParseNamesTheLine() throws {
        let a = try peer(1)
        XCTAssertEqual(parseError("# ok\n127.0.0.1:9000\n")?.line, 2)
        XCTAssertEqual(parseError("127.0.0.1:9000 \(a) 2026-12-01T18:12:00Z extra\n")?.line, 1)
        XCTAssertEqual(parseError("127.0.0.1:9000 gtnotapeerid\n")?.line, 1)
        XCTAssertEqual(parseError("not an address! \(a)\n")?.line, 1)
        XCTAssertEqual(parseError("\(a)@127.0.0.1:9000 \(a)\n")?.line, 1)
        XCTAssertEqual(parseError("127.0.0.1:9000 \(a) yesterday\n")?.line, 1)
        XCTAssertEqual(parseError("127.0.0.1:9000 \(a) 2026-02-30T00:00:00Z\n")?.line, 1)
        let dup = parseError("\n127.0.0.1:9000 \(a)\n127.0.0.1:9000 \(try peer(2))\n")
        XCTAssertEqual(dup?.line, 3)
        XCTAssertTrue(dup?.reason.contains("line 2") ?? false, "\(String(describing: dup))")
        XCTAssertEqual(parseError("127.0.0.1:9000 \(a)\n\u{1B}[31m\n")?.line, 2)
        XCTAssertEqual(parseError(String(repeating: "#", count: KnownPeers.maxLineBytes + 1))?.line, 1)
        XCTAssertEqual(parseError("# \u{0}\n")?.line, 1)
        XCTAssertThrowsError(try KnownPeers.parse([0x31, 0xFF, 0x0A]), "not UTF-8")
        XCTAssertThrowsError(try KnownPeers.parse([UInt8](repeating: 0x23, count: KnownPeers.maxFileBytes + 1)))
    }

    func testEntryLimit() throws {
        var text = ""
        for i in 0...KnownPeers.maxEntries { text += "10.\(i / 65536).\(i / 256 % 256).\(i % 256):9000 \(try peer(i % 7))\n" }
        XCTAssertEqual(parseError(text)?.line, KnownPeers.maxEntries + 1)
    }

    func testAddAndRemove() throws {
        let a = try peer(1), b = try peer(2)
        var known = try parse("# mine\n")
        XCTAssertEqual(known.add(address: "127.0.0.1:9000", peer: a, firstSeen: 1_800_000_000), .added)
        guard case .known = known.add(address: "127.0.0.1:9000", peer: a, firstSeen: 1) else { return XCTFail() }
        guard case let .conflict(old) = known.add(address: "127.0.0.1", peer: b, firstSeen: 1) else { return XCTFail() }
        XCTAssertEqual(old.peer, a)
        XCTAssertEqual(known.add(address: "[::1]:9000", peer: a, firstSeen: nil), .added)
        XCTAssertEqual(known.serialize(), "# mine\n127.0.0.1:9000 \(a) 2027-01-15T08:00:00Z\n[::1]:9000 \(a)\n")
        XCTAssertEqual(known.remove("127.0.0.1:9000")?.peer, a)
        XCTAssertNil(known.remove("127.0.0.1:9000"))
        XCTAssertEqual(known.add(address: "10.0.0.1:1", peer: a, firstSeen: nil), .added)
        XCTAssertEqual(known.remove(peer: a).map(\.address), ["[::1]:9000", "10.0.0.1:1"])
        XCTAssertEqual(known.serialize(), "# mine\n")
    }

    func testTimes() {
        XCTAssertEqual(KnownPeers.formatTime(0), "1970-01-01T00:00:00Z")
        XCTAssertEqual(KnownPeers.parseTime("1970-01-01T00:00:00Z"), 0)
        XCTAssertEqual(KnownPeers.parseTime("2000-03-01T00:00:00Z"), 951_868_800)
        XCTAssertEqual(KnownPeers.parseTime("2024-02-29T23:59:59Z"), 1_709_251_199)
        XCTAssertNil(KnownPeers.parseTime("2023-02-29T00:00:00Z"))
        XCTAssertNil(KnownPeers.parseTime("2024-01-01T24:00:00Z"))
        XCTAssertNil(KnownPeers.parseTime("2024-01-01 00:00:00Z"))
        XCTAssertNil(KnownPeers.parseTime("1969-12-31T23:59:59Z"))
        // Every format reads back, across leap years and centuries.
        var t: Int64 = 0
        while t < 8_000_000_000 {
            XCTAssertEqual(KnownPeers.parseTime(KnownPeers.formatTime(t)), t, "\(t)")
            t += 86_400 * 37 + 3_601
        }
    }
}
