import Foundation
import GutsAddress
import GutsIdentity
import GutsPolicy
import GutsSupport
import XCTest

final class PeerBookFormatTests: XCTestCase {
    /// A book with a bit of everything, drawn from `rng`.
    private func randomBook(_ rng: inout PolicyRandom, epoch: Double, peers: Int) throws -> PeerBook {
        var book = PeerBook(epoch: epoch)
        let hosts = ["203.0.113.", "[2001:db8::", "node-", "10.0.0."]
        for k in 0..<peers {
            let p = try peer(Int.random(in: 0...Int(Int32.max), using: &rng))
            let t = Double.random(in: 0...86_400, using: &rng)
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                let h = hosts[Int.random(in: 0..<hosts.count, using: &rng)]
                let n = Int.random(in: 1...250, using: &rng)
                let text = h.hasPrefix("[") ? "\(h)\(n)]" : h.hasSuffix("-") ? "\(h)\(n).example.org" : "\(h)\(n)"
                book.seen(p, at: try Endpoint.parse(text, defaultPort: Int.random(in: 1...65535, using: &rng)), now: at(t))
            }
            for _ in 0..<Int.random(in: 0...6, using: &rng) {
                let event = ScoreEvent.allCases[Int.random(in: 0..<ScoreEvent.allCases.count, using: &rng)]
                book.record(event, count: Double(Int.random(in: 1...40, using: &rng)) / 7, peer: p, now: at(t))
            }
            switch k % 7 {
            case 0: book.ban(.peer(p), for: nil, now: at(t))
            case 1: book.ban(.peer(p), for: Double.random(in: 1e5...1e6, using: &rng), now: at(t))
            default: break
            }
        }
        for k in 0..<20 {
            let prefix = k % 2 == 0 ? AddressPrefix(containing: v4(k, 0, 0), length: Int.random(in: 8...32, using: &rng))
                : try AddressPrefix.parse("2001:db8:\(String(k, radix: 16))::/48")
            book.ban(.prefix(prefix), for: k % 3 == 0 ? nil : 1e6, now: at(0))
            book.penalize(v4(100 + k, 1, 1), for: 3_600, now: at(86_000))
        }
        return book
    }

    func testRoundTrip() throws {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        for round in 0..<10 {
            let epoch = Double.random(in: 1.6e9...1.9e9, using: &rng)
            let book = try randomBook(&rng, epoch: epoch, peers: 150)
            let now = at(86_400)
            let text = book.serialize(now: now)
            let parsed: PeerBook
            do { parsed = try PeerBook.parse(text, epoch: epoch, now: now) } catch {
                return XCTFail("seed \(seed) round \(round): \(error)\n\(text)")
            }
            XCTAssertEqual(parsed.serialize(now: now), text, "seed \(seed) round \(round)")
            XCTAssertEqual(try PeerBook.parse(parsed.serialize(now: now), epoch: epoch, now: now), parsed, "seed \(seed) round \(round)")
            XCTAssertEqual(parsed.count, book.count, "seed \(seed)")
            for entry in book.peers {
                guard let copy = parsed.entry(entry.peer) else { return XCTFail("seed \(seed): \(entry.peer.short) lost") }
                XCTAssertEqual(copy.addresses, entry.addresses, "seed \(seed)")
                XCTAssertEqual(copy.offences, entry.offences, "seed \(seed)")
                XCTAssertEqual(copy.lastSeen, entry.lastSeen, accuracy: 0.5, "seed \(seed)")
                // Times are whole seconds in the file: the score may have decayed for up to half a second less or more.
                // Compare against the size of the parts, since penalties and rewards can cancel.
                let value = entry.score.value(now: now)
                let size = entry.score.components(now: now).reduce(0) { $0 + abs($1.value) }
                XCTAssertEqual(copy.score.value(now: now), value, accuracy: max(1e-3, size * 1e-3), "seed \(seed)")
                for later in [now, at(200_000), at(2e6)] {
                    XCTAssertEqual(parsed.isBanned(entry.peer, now: later), book.isBanned(entry.peer, now: later), "seed \(seed)")
                }
            }
            XCTAssertEqual(parsed.addressBans(now: now).map(\.prefix), book.addressBans(now: now).map(\.prefix), "seed \(seed)")
        }
    }

    /// The example in guts-peers(5) is a valid peers file, so the manual stays true.
    func testManualPageExampleParses() throws {
        let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Man/guts-peers.5").path
        let roff = try String(contentsOfFile: page, encoding: .utf8)
        guard let section = roff.range(of: ".SH EXAMPLE\n"), let start = roff.range(of: ".EX\n", range: section.upperBound..<roff.endIndex),
              let end = roff.range(of: ".EE\n", range: start.upperBound..<roff.endIndex) else {
            return XCTFail("no .EX example in \(page)")
        }
        let example = String(roff[start.upperBound..<end.lowerBound]).replacingOccurrences(of: "\\-", with: "-")
            .replacingOccurrences(of: "\\e", with: "\\")
        // Read it as of 2027-01-15 on a clock that started at 2027-01-01.
        let epoch = 1_798_761_600.0
        let now = Instant(nanoseconds: 14 * 86_400 * 1_000_000_000)
        let book = try PeerBook.parse(example, epoch: epoch, now: now)
        XCTAssertEqual(book.count, 4)
        XCTAssertEqual(book.addressBans(now: now).count, 2)
        XCTAssertEqual(book.serialize(now: now).components(separatedBy: "\n").first, PeerBook.header)
        XCTAssertTrue(book.peers.contains { $0.ban == .manual(until: nil) })
    }

    func testMalformedLinesAreRefusedWithTheirLineNumber() throws {
        let id = try peer(7).description
        let good = "peer \(id) 1800000000 -12.5 1 - 1800000000 stall=2.5 203.0.113.5:9000"
        XCTAssertNoThrow(try PeerBook.parse("guts-peers 1\n\(good)\n", epoch: testEpoch, now: at(0)))
        let cases: [(line: String, says: String)] = [
            ("peer \(id) 1800000000 0 0 -", "9 fields"),
            ("peer \(id)  1800000000 0 0 - 1800000000 - -", "one space"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - - ", "one space"),
            ("peer \(id.uppercased()) 1800000000 0 0 - 1800000000 - -", "peer ID"),
            ("peer gt\(String(repeating: "a", count: 56)) 1800000000 0 0 - 1800000000 - -", "peer ID"),
            ("peer \(id) 01800000000 0 0 - 1800000000 - -", "SEEN"),
            ("peer \(id) -5 0 0 - 1800000000 - -", "SEEN"),
            ("peer \(id) 1800000000 1e3 0 - 1800000000 - -", "SCORE"),
            ("peer \(id) 1800000000 0 1001 - 1800000000 - -", "OFFENCES"),
            ("peer \(id) 1800000000 0 0 auto:permanent 1800000000 - -", "ban"),
            ("peer \(id) 1800000000 0 0 banned 1800000000 - -", "ban"),
            ("peer \(id) 1800000000 0 0 - 1800000000 stall=1,stall=2 -", "twice"),
            ("peer \(id) 1800000000 0 0 - 1800000000 charm=9 -", "not a counter"),
            ("peer \(id) 1800000000 0 0 - 1800000000 stall=1.0000001 -", "decimal"),
            ("peer \(id) 1800000000 0 0 - 1800000000 stall=-1 -", "decimal"),
            ("peer \(id) 1800000000 0 0 - 1800000000 stall=inf -", "decimal"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - 203.0.113.5", "not an address"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - ::1:9000", "not an address"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - gt\(String(repeating: "a", count: 56))@h:1", "not an address"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - a:1,a:1", "twice"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - " + (1...9).map { "h\($0):1" }.joined(separator: ","), "more than 8"),
            ("ban 10.1.2.3/24 manual:permanent", "host bits"),
            ("ban 10.1.2.0/24 -", "needs a ban"),
            ("ban 2001:DB8::/32 manual:permanent", "write the prefix as '2001:db8::/32'"),
            ("ban 10.1.2.0/24", "3 fields"),
            ("bann 10.1.2.0/24 manual:permanent", "unknown entry"),
            ("", "empty line"),
            ("peer \(id) 1800000000 0 0 -\t1800000000 - -", "tab"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - -\r", "carriage return"),
            ("peer \(id) 1800000000 0 0 - 1800000000 - h\u{E9}:1", "printable ASCII"),
            (good, "listed twice (first on line 2)"),
        ]
        for (line, says) in cases {
            let text = "guts-peers 1\n\(good)\n\(line)\nban 10.9.0.0/16 manual:permanent\n"
            XCTAssertThrowsError(try PeerBook.parse(text, epoch: testEpoch, now: at(0)), line) { error in
                guard let error = error as? PeerBookParseError else { return XCTFail("\(error)") }
                XCTAssertEqual(error.line, 3, "\(line): \(error)")
                XCTAssertTrue(error.reason.contains(says), "\(line): '\(error.reason)' should say '\(says)'")
                XCTAssertTrue(error.description.hasPrefix("line 3: "), error.description)
            }
        }
        let banTwice = "guts-peers 1\nban 10.9.0.0/16 manual:permanent\nban 10.9.0.0/16 auto:1800000000\n"
        XCTAssertThrowsError(try PeerBook.parse(banTwice, epoch: testEpoch, now: at(0))) {
            XCTAssertEqual("\($0)", "line 3: 10.9.0.0/16 is banned twice (first on line 2)")
        }
    }

    func testHeaderAndEndOfFileAreChecked() throws {
        func reason(_ text: String) -> String {
            do {
                _ = try PeerBook.parse(text, epoch: testEpoch, now: at(0))
                return "accepted"
            } catch { return error.description }
        }
        XCTAssertEqual(reason(""), "line 1: empty file: expected 'guts-peers 1'")
        XCTAssertEqual(reason("guts-peers 2\n"), "line 1: unsupported peers file version '2' (this guts reads version 1)")
        XCTAssertEqual(reason("hello\n"), "line 1: not a peers file: the first line must be 'guts-peers 1'")
        XCTAssertEqual(reason("guts-peers 1"), "line 1: no newline at the end of the file (truncated?)")
        XCTAssertEqual(reason("guts-peers 1\nban 10.0.0.0/8 manual:perm"), "line 2: no newline at the end of the file (truncated?)")
        XCTAssertEqual(reason("guts-peers 1\n"), "accepted")
    }

    func testOversizedInputIsRefusedBeforeItIsRead() throws {
        var limits = PeerBook.Limits()
        limits.maxPeers = 5
        limits.maxAddressBans = 3
        let long = "guts-peers 1\npeer " + String(repeating: "x", count: 5_000) + "\n"
        XCTAssertThrowsError(try PeerBook.parse(long, epoch: testEpoch, now: at(0), limits: limits)) {
            XCTAssertEqual("\($0)", "line 2: line longer than 2048 bytes")
        }
        var many = "guts-peers 1\n"
        for k in 0..<6 { many += "peer \(try peer(k)) 1800000000 0 0 - 1800000000 - -\n" }
        XCTAssertThrowsError(try PeerBook.parse(many, epoch: testEpoch, now: at(0), limits: limits)) {
            XCTAssertEqual("\($0)", "line 7: more than 5 peers")
        }
        var bans = "guts-peers 1\n"
        for k in 0..<4 { bans += "ban 10.0.0.\(k) manual:permanent\n" }
        XCTAssertThrowsError(try PeerBook.parse(bans, epoch: testEpoch, now: at(0), limits: limits)) {
            XCTAssertEqual("\($0)", "line 5: more than 3 address bans")
        }
        let huge = String(repeating: "guts-peers 1\n", count: limits.maxFileBytes / 13 + 1)
        XCTAssertThrowsError(try PeerBook.parse(huge, epoch: testEpoch, now: at(0), limits: limits)) { error in
            XCTAssertEqual((error as? PeerBookParseError)?.line, 0)
            XCTAssertTrue("\(error)".contains("more than the \(limits.maxFileBytes) allowed"), "\(error)")
        }
    }

    /// Times are brought into this run's clock: what ended is dropped, automatic bans are cut
    /// to their longest, the future is brought back to now, and scores saved before the
    /// clock's zero are decayed by the time that passed.
    func testLoadingAdjustsTimes() throws {
        let (a, b, c) = (try peer(1), try peer(2), try peer(3))
        let nowUnix = Int(testEpoch) + 1_000
        let text = """
            guts-peers 1
            peer \(a) \(nowUnix - 100) 0 3 auto:\(nowUnix - 1) \(nowUnix) - -
            peer \(b) \(nowUnix + 999) 0 1 auto:\(nowUnix + 10_000_000) \(nowUnix + 5) stall=4 -
            peer \(c) \(Int(testEpoch) - 7_200) 0 0 - \(Int(testEpoch) - 7_200) stall=8 -
            ban 10.0.0.0/8 auto:\(nowUnix + 86_400)
            ban 10.1.0.0/16 manual:\(nowUnix - 5)

            """
        let book = try PeerBook.parse(text, epoch: testEpoch, now: at(0))
        XCTAssertNil(book.entry(a)?.ban, "an ended ban is dropped")
        XCTAssertEqual(book.entry(a)?.offences, 3, "its offence count stays")
        XCTAssertEqual(book.entry(b)?.ban, .automatic(until: at(604_800)), "cut to the longest automatic ban")
        XCTAssertEqual(book.entry(b)?.lastSeen, Double(nowUnix), "the future is brought back to now")
        XCTAssertEqual(book.entry(b)?.score.counter(.stall, now: at(0)), 4)
        XCTAssertEqual(book.entry(c)?.score.counter(.stall, now: Instant(nanoseconds: 0)) ?? 0, 2, accuracy: 1e-9,
                       "saved two hours (two half-lives) before the clock's zero")
        XCTAssertEqual(book.addressBans(now: at(0)).map(\.prefix.description), ["10.0.0.0/8"])
        XCTAssertTrue(book.isBanned(address: "10.200.0.1", now: at(3_599)))
        XCTAssertFalse(book.isBanned(address: "10.200.0.1", now: at(3_600)), "automatic address bans are cut to an hour")
    }

    /// Random damage to a valid file never crashes the parser: it either loads or names a line.
    func testDamagedFilesNeverCrashTheParser() throws {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        let valid = try randomBook(&rng, epoch: testEpoch, peers: 25).serialize(now: at(86_400))
        let lines = valid.split(separator: "\n", omittingEmptySubsequences: false).count
        let alphabet = Array(" \n\t\r:,=-./0123456789abcdefgtxyz[]@%\u{0}\u{7F}".utf8) + [0xC3, 0xA9, 0xFF]
        var loaded = 0
        for round in 0..<1_000 {
            var bytes = Array(valid.utf8)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: bytes[i] = alphabet[Int.random(in: 0..<alphabet.count, using: &rng)]
                case 1: bytes.remove(at: i)
                case 2: bytes.insert(alphabet[Int.random(in: 0..<alphabet.count, using: &rng)], at: i)
                case 3: bytes.removeLast(Int.random(in: 0...min(200, bytes.count - 1), using: &rng))
                default:
                    let j = Int.random(in: i..<min(bytes.count, i + 300), using: &rng)
                    bytes.insert(contentsOf: bytes[i..<j], at: j)
                }
                if bytes.isEmpty { bytes = [10] }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            do {
                _ = try PeerBook.parse(text, epoch: testEpoch, now: at(86_400))
                loaded += 1
            } catch {
                XCTAssertTrue((1...(lines + 400)).contains(error.line), "seed \(seed) round \(round): \(error)")
                XCTAssertFalse(error.reason.isEmpty, "seed \(seed)")
            }
        }
        print("peers file fuzz: seed \(seed), 1000 damaged files, \(loaded) still valid")
    }

    func testDecimalsAreExactToSixPlaces() {
        for (value, text) in [(0.0, "0"), (12.0, "12"), (-0.5, "-0.5"), (3.14159265, "3.141593"), (1e-7, "0"), (-1e-7, "0"),
                              (1_000_000, "1000000"), (0.000001, "0.000001")] {
            XCTAssertEqual(formattedDecimal(value), text, "\(value)")
        }
    }
}

/// The peers file writes numbers like this (checked through a one-peer file).
private func formattedDecimal(_ value: Double) -> String {
    var book = PeerBook(epoch: 0)
    guard let p = try? peer(1) else { return "?" }
    var parameters = ScoreParameters()
    parameters.uptime = .init(weight: 1, cap: 1e6, halfLife: .infinity)
    parameters.stall = .init(weight: -1, cap: 1e6, halfLife: .infinity)
    book = PeerBook(epoch: 0, parameters: parameters)
    book.record(value < 0 ? .stall : .uptime, count: abs(value), peer: p, now: at(0))
    let line = book.serialize(now: at(0)).split(separator: "\n")[1]
    return String(line.split(separator: " ")[3])
}

