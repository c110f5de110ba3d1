#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A JSON value: written for --json output and the control socket (keys in given
/// order), and read back by the strict parser below.
public enum JSONValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public var rendered: String {
        switch self {
        case let .string(s): return JSON.quote(s)
        case let .int(i): return String(i)
        case let .double(d):
            guard d.isFinite else { return "null" }
            return String(format3(d))
        case let .bool(b): return b ? "true" : "false"
        case .null: return "null"
        case let .array(items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case let .object(pairs): return "{" + pairs.map { JSON.quote($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        }
    }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.string(x), .string(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// The member `key` of an object (nil for other values and missing keys).
    public subscript(key: String) -> JSONValue? {
        guard case let .object(pairs) = self else { return nil }
        return pairs.first(where: { $0.0 == key })?.1
    }

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var intValue: Int? {
        if case let .int(i) = self { return i }
        return nil
    }

    /// A number, integer or not.
    public var doubleValue: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case let .array(a) = self { return a }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// Renders a double with at most 3 decimals and no exponent noise.
public func format3(_ d: Double) -> String {
    // From 1e15 on a double has no fraction left to round, and d * 1000 may overflow to
    // infinity (which rendered "inf", not JSON, for any finite value over about 1.8e305).
    guard abs(d) < 1e15 else { return String(d) }
    let scaled = (d * 1000).rounded() / 1000
    if scaled == scaled.rounded() { return String(Int(scaled)) }
    return String(scaled)
}

public enum JSON {
    public static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> String {
        JSONValue.object(pairs.map { ($0.key, $0.value) }).rendered
    }

    public static func quote(_ s: String) -> String {
        // Most strings are printable ASCII needing no escapes: copy them whole. Anything
        // else goes scalar by scalar (DEL, C1 controls, separators, bidi marks are escaped).
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f && $0 != 0x22 && $0 != 0x5c }) { return "\"" + s + "\"" }
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || Escape.needsEscape(scalar) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Why a text is not acceptable JSON, and where (byte offset).
    public struct ParseError: Error, Equatable, CustomStringConvertible, Sendable {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Most nesting of arrays and objects `parse` accepts by default.
    public static let defaultMaxDepth = 32
    /// Longest input `parse` accepts by default.
    public static let defaultMaxBytes = 1 << 20

    /// Parses exactly one JSON value (RFC 8259) surrounded by optional whitespace.
    ///
    /// Strict: the input must be valid UTF-8; no comments, trailing commas, leading zeros,
    /// NaN, unescaped control characters, lone surrogates or duplicate object keys. Input
    /// longer than `maxBytes` is refused before any of it is read, nesting deeper than
    /// `maxDepth` as soon as it is reached, so hostile input costs bounded time and memory.
    /// Integers that fit in `Int` become `.int`; other numbers `.double`.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth,
                             maxBytes: Int = defaultMaxBytes) throws(ParseError) -> JSONValue {
        guard bytes.count <= maxBytes else {
            throw ParseError(offset: 0, reason: "input is \(bytes.count) bytes, more than the limit of \(maxBytes)")
        }
        var parser = JSONParser(bytes: bytes, maxDepth: maxDepth)
        return try parser.document()
    }

    public static func parse(_ text: String, maxDepth: Int = defaultMaxDepth,
                             maxBytes: Int = defaultMaxBytes) throws(ParseError) -> JSONValue {
        try parse(Array(text.utf8), maxDepth: maxDepth, maxBytes: maxBytes)
    }
}

/// A recursive-descent parser over bytes; recursion is bounded by `maxDepth`.
struct JSONParser {
    let bytes: [UInt8]
    let maxDepth: Int
    var i = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func fail(_ reason: String, at offset: Int? = nil) -> JSON.ParseError {
        JSON.ParseError(offset: offset ?? i, reason: reason)
    }

    mutating func document() throws(JSON.ParseError) -> JSONValue {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        guard i == bytes.count else { throw fail("unexpected \(describe(bytes[i])) after the value") }
        return value
    }

    func describe(_ b: UInt8) -> String {
        (0x21..<0x7f).contains(b) ? "'\(Character(UnicodeScalar(b)))'" : "byte 0x\(Hex.encode([b]))"
    }

    mutating func skipWhitespace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0a || bytes[i] == 0x0d { i += 1 }
    }

    mutating func parseValue(depth: Int) throws(JSON.ParseError) -> JSONValue {
        guard i < bytes.count else { throw fail("unexpected end of input, expected a value") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw fail("unexpected \(describe(bytes[i])), expected a value")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSON.ParseError) {
        let start = i
        let utf8 = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
        for b in utf8 {
            guard i < bytes.count, bytes[i] == b else { throw fail("invalid literal, expected '\(word)'", at: start) }
            i += 1
        }
    }

    mutating func parseObject(depth: Int) throws(JSON.ParseError) -> JSONValue {
        guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        i += 1  // {
        var pairs: [(String, JSONValue)] = []
        var keys = Set<String>()
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(pairs)
        }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else {
                throw fail(i < bytes.count ? "expected a string key, got \(describe(bytes[i]))" : "unexpected end of input in an object")
            }
            let keyOffset = i
            let key = try parseString()
            guard keys.insert(key).inserted else { throw fail("duplicate key \(JSON.quote(key))", at: keyOffset) }
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':' after an object key") }
            i += 1
            skipWhitespace()
            pairs.append((key, try parseValue(depth: depth)))
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of input in an object") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "}") else { throw fail("expected ',' or '}' in an object, got \(describe(bytes[i]))") }
            i += 1
            return .object(pairs)
        }
    }

    mutating func parseArray(depth: Int) throws(JSON.ParseError) -> JSONValue {
        guard depth <= maxDepth else { throw fail("nesting deeper than \(maxDepth)") }
        i += 1  // [
        var items: [JSONValue] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard i < bytes.count else { throw fail("unexpected end of input in an array") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "]") else { throw fail("expected ',' or ']' in an array, got \(describe(bytes[i]))") }
            i += 1
            return .array(items)
        }
    }

    mutating func parseString() throws(JSON.ParseError) -> String {
        let start = i
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            // Copy the run of plain bytes up to the next quote, backslash or control byte at once.
            let from = i
            let end = bytes.withUnsafeBufferPointer { buf in
                var k = from
                while k < buf.count, buf[k] >= 0x20, buf[k] != 0x22, buf[k] != 0x5c { k += 1 }
                return k
            }
            if end > i {
                out.append(contentsOf: bytes[i..<end])
                i = end
            }
            guard i < bytes.count else { throw fail("unterminated string", at: start) }
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not valid UTF-8", at: start) }
                return s
            case UInt8(ascii: "\\"):
                i += 1
                guard i < bytes.count else { throw fail("unterminated escape") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5c)
                case UInt8(ascii: "/"): out.append(0x2f)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    let escapeStart = i - 2
                    var scalar = try hex4()
                    if (0xd800..<0xdc00).contains(scalar) {
                        guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("unpaired surrogate escape", at: escapeStart)
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xdc00..<0xe000).contains(low) else { throw fail("unpaired surrogate escape", at: escapeStart) }
                        scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
                    } else if (0xdc00..<0xe000).contains(scalar) {
                        throw fail("unpaired surrogate escape", at: escapeStart)
                    }
                    guard let u = UnicodeScalar(scalar) else { throw fail("invalid escape", at: escapeStart) }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default:
                    throw fail("invalid escape '\\\(Character(UnicodeScalar(e)))'", at: i - 2)
                }
            default:
                guard b >= 0x20 else { throw fail("unescaped control character in a string") }
                out.append(b)
                i += 1
            }
        }
    }

    mutating func hex4() throws(JSON.ParseError) -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for k in 0..<4 {
            guard let n = Hex.nibble(bytes[i + k]) else { throw fail("invalid \\u escape", at: i + k) }
            v = v << 4 | UInt32(n)
        }
        i += 4
        return v
    }

    func isDigit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= UInt8(ascii: "0") && bytes[k] <= UInt8(ascii: "9") }

    mutating func parseNumber() throws(JSON.ParseError) -> JSONValue {
        let start = i
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        guard isDigit(i) else { throw fail("expected a digit", at: i) }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
            if isDigit(i) { throw fail("leading zero in a number", at: start) }
        } else {
            while isDigit(i) { i += 1 }
        }
        var integral = true
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            integral = false
            i += 1
            guard isDigit(i) else { throw fail("expected a digit after '.'") }
            while isDigit(i) { i += 1 }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            integral = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard isDigit(i) else { throw fail("expected a digit in the exponent") }
            while isDigit(i) { i += 1 }
        }
        // The slice is ASCII by construction.
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if integral, let v = Int(text) { return .int(v) }
        guard let d = Double(text), d.isFinite else { throw fail("number out of range", at: start) }
        return .double(d)
    }
}
