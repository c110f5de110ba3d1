/// Makes text from a peer (or from any untrusted source) safe to write to a terminal or
/// a log: it is escaped where it is written out, never altered where it enters.
///
/// Printable text passes unchanged, including non-ASCII letters. Everything that could
/// move the cursor, change colours, retitle the window, clear the screen, fake a line
/// of output or reorder what is shown is written as `\xNN`, one escape per byte of its
/// UTF-8 encoding (newline, carriage return and tab as `\n`, `\r` and `\t`):
///
/// - C0 control characters (U+0000 to U+001F, so also ESC, CR, LF and TAB) and DEL;
/// - C1 control characters (U+0080 to U+009F; U+009B alone starts a CSI sequence);
/// - line and paragraph separators (U+2028, U+2029), and the bidirectional formatting
///   characters (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069) that can
///   make text read differently from what it is;
/// - bytes that are not valid UTF-8 (in `escape(bytes:)`).
///
/// A backslash is doubled, so every escaped string reads back unambiguously.
public enum Escape {
    /// `text` with unsafe characters as `\xNN` escapes and `\` as `\\`.
    public static func text(_ text: String) -> String {
        // Fast path: nothing to escape (the common case).
        if !text.unicodeScalars.contains(where: needsEscape) { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            append(scalar, to: &out)
        }
        return String(out)
    }

    /// Raw bytes as text: valid UTF-8 as in `text(_:)`, every byte of an invalid
    /// sequence as `\xNN`.
    public static func bytes<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        let input = Array(bytes)
        var out = String.UnicodeScalarView()
        var index = 0
        while index < input.count {
            let length = sequenceLength(input, at: index)
            if length > 0, let scalar = String(decoding: input[index..<(index + length)], as: UTF8.self).unicodeScalars.first {
                append(scalar, to: &out)
                index += length
            } else {
                appendHex(input[index], to: &out)
                index += 1
            }
        }
        return String(out)
    }

    /// Whether `scalar` is written escaped.
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        switch v {
        case 0x00...0x1F, 0x7F...0x9F, 0x5C: return true
        case 0x061C, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }

    private static func append(_ scalar: Unicode.Scalar, to out: inout String.UnicodeScalarView) {
        if scalar == "\\" || scalar == "\n" || scalar == "\r" || scalar == "\t" {
            out.append("\\")
            out.append(scalar == "\n" ? "n" : scalar == "\r" ? "r" : scalar == "\t" ? "t" : "\\")
        } else if needsEscape(scalar) {
            for b in String(scalar).utf8 { appendHex(b, to: &out) }
        } else {
            out.append(scalar)
        }
    }

    private static func appendHex(_ b: UInt8, to out: inout String.UnicodeScalarView) {
        let digits: [Unicode.Scalar] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
        out.append("\\")
        out.append("x")
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0F)])
    }

    /// Length of the well-formed UTF-8 sequence starting at `i`, or 0 when the bytes
    /// there do not form one (overlong forms, surrogates and values above U+10FFFF
    /// included).
    static func sequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let c = b[i]
        func cont(_ k: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            i + k < b.count && range.contains(b[i + k])
        }
        switch c {
        case 0x00...0x7F: return 1
        case 0xC2...0xDF: return cont(1) ? 2 : 0
        case 0xE0: return cont(1, 0xA0...0xBF) && cont(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : 0
        case 0xED: return cont(1, 0x80...0x9F) && cont(2) ? 3 : 0
        case 0xF0: return cont(1, 0x90...0xBF) && cont(2) && cont(3) ? 4 : 0
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : 0
        case 0xF4: return cont(1, 0x80...0x8F) && cont(2) && cont(3) ? 4 : 0
        default: return 0
        }
    }
}
