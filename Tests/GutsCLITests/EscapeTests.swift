import Foundation
import GutsSupport
import XCTest
@testable import GutsCLI

/// Peer-supplied text is escaped where it is written out: no control character,
/// invalid UTF-8 or reordering character reaches a terminal raw, and JSON output
/// still decodes to the exact original.
final class EscapeTests: XCTestCase {
    func testPrintableTextIsUnchanged() {
        for s in ["refs/heads/main", "guts/0.1.0", "ünïcødé 名前 🚀", ""] {
            XCTAssertEqual(Escape.text(s), s)
        }
    }

    func testTerminalSequencesAreEscaped() {
        // A ref name that would turn the terminal red, retitle the window and fake a line.
        let evil = "refs/heads/\u{1B}[31mred\u{1B}]0;pwned\u{07}\r\nguts: fake"
        let escaped = Escape.text(evil)
        XCTAssertEqual(escaped, "refs/heads/\\x1b[31mred\\x1b]0;pwned\\x07\\r\\nguts: fake")
        XCTAssertFalse(escaped.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        // C1 controls (U+009B is a one-character CSI), DEL, separators, bidi overrides.
        XCTAssertEqual(Escape.text("a\u{9B}31mb"), "a\\xc2\\x9b31mb")
        XCTAssertEqual(Escape.text("x\u{7F}y"), "x\\x7fy")
        XCTAssertEqual(Escape.text("a\u{2028}b\u{202E}c\u{2066}d"), "a\\xe2\\x80\\xa8b\\xe2\\x80\\xaec\\xe2\\x81\\xa6d")
        XCTAssertEqual(Escape.text("tab\there"), "tab\\there")
        // Backslashes are doubled, so an escape in the input cannot pass for ours.
        XCTAssertEqual(Escape.text("a\\x1b"), "a\\\\x1b")
    }

    func testBytesEscapeInvalidUTF8ByteForByte() {
        XCTAssertEqual(Escape.bytes(Array("plain é".utf8)), "plain é")
        XCTAssertEqual(Escape.bytes([0x61, 0xFF, 0x62]), "a\\xffb")
        XCTAssertEqual(Escape.bytes([0xC3]), "\\xc3", "truncated sequence")
        XCTAssertEqual(Escape.bytes([0xE2, 0x28, 0xA1]), "\\xe2(\\xa1", "bad continuation")
        XCTAssertEqual(Escape.bytes([0xC0, 0xAF]), "\\xc0\\xaf", "overlong /")
        XCTAssertEqual(Escape.bytes([0xED, 0xA0, 0x80]), "\\xed\\xa0\\x80", "surrogate")
        XCTAssertEqual(Escape.bytes([0xF4, 0x90, 0x80, 0x80]), "\\xf4\\x90\\x80\\x80", "above U+10FFFF")
        XCTAssertEqual(Escape.bytes([0x1B, 0x5B, 0x32, 0x4A]), "\\x1b[2J")
        // Every byte value, alone: the output is always printable.
        for b in 0...255 {
            let out = Escape.bytes([UInt8(b)])
            XCTAssertFalse(out.unicodeScalars.contains { Escape.needsEscape($0) && $0 != "\\" }, "byte \(b): \(out)")
        }
    }

    /// JSON escapes every control character (and what terminals act on) and decodes back
    /// to the original.
    func testJSONQuoteHandlesEveryControlCharacter() throws {
        var all = String.UnicodeScalarView()
        for v in 0..<0x20 { all.append(Unicode.Scalar(UInt8(v))) }
        all.append(contentsOf: "\"\\/\u{7F}\u{80}\u{9B}\u{9F}\u{2028}\u{2029}\u{202E}é名🚀".unicodeScalars)
        let original = String(all)
        let quoted = JSON.quote(original)
        XCTAssertFalse(quoted.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "\u{2028}" || $0 == "\u{202E}" },
                       quoted)
        XCTAssertTrue(quoted.contains("\\u001b"), quoted)
        XCTAssertTrue(quoted.contains("\\u009b"), quoted)
        let decoded = try JSONSerialization.jsonObject(with: Data("[\(quoted)]".utf8)) as? [String]
        XCTAssertEqual(decoded?.first, original)
    }

    func testByteCounts() {
        XCTAssertEqual(parseByteCount("100"), 100)
        XCTAssertEqual(parseByteCount("4G"), 4 << 30)
        XCTAssertEqual(parseByteCount("100M"), 100 << 20)
        XCTAssertEqual(parseByteCount("8MiB"), 8 << 20)
        XCTAssertEqual(parseByteCount("1k"), 1024)
        XCTAssertEqual(parseByteCount("2T"), 2 << 40)
        for bad in ["", "G", "-1", "1.5G", "1 G", "99999999999999999999", "9999999999999T", "1X"] {
            XCTAssertNil(parseByteCount(bad), bad)
        }
    }

    func testConfigKeysForLimits() throws {
        let config = try NodeConfig.parse("""
            max-object-size = 200M
            max-delta-depth = 250
            work-factor = 512
            max-work = 1T
            max-pack-size = 16G
            min-free-disk = 1G
            sync-deadline = 0
            """, origin: "config")
        XCTAssertEqual(config.maxObjectSize, 200 << 20)
        XCTAssertEqual(config.maxDeltaDepth, 250)
        XCTAssertEqual(config.workFactor, 512)
        XCTAssertEqual(config.maxWork, 1 << 40)
        XCTAssertEqual(config.maxPackSize, 16 << 30)
        XCTAssertEqual(config.minFreeDisk, 1 << 30)
        XCTAssertEqual(config.syncDeadline, 0)
        let limits = try config.objectLimits(ArgumentParser.parse(["--max-delta-depth", "80"], options: NodeConfig.limitOptions))
        XCTAssertEqual(limits.maxDeltaDepth, 80, "the option wins")
        XCTAssertEqual(limits.workFactor, 512)
        XCTAssertThrowsError(try NodeConfig.parse("max-delta-depth = 0\n", origin: "c"))
        XCTAssertThrowsError(try NodeConfig.parse("max-pack-size = lots\n", origin: "c"))
        XCTAssertEqual(NodeConfig().maxObjectSize, 100 << 20)
        XCTAssertEqual(NodeConfig().maxPackSize, 4 << 30)
    }
}
