import GutsSupport

/// Minimal JSON writer for --json output (one object per line, keys in given order).
public enum JSONValue: Sendable {
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
}

/// Renders a double with at most 3 decimals and no exponent noise.
func format3(_ d: Double) -> String {
    let scaled = (d * 1000).rounded() / 1000
    if scaled == scaled.rounded(), abs(scaled) < 1e15 { return String(Int(scaled)) }
    return String(scaled)
}

public enum JSON {
    public static func object(_ pairs: KeyValuePairs<String, JSONValue>) -> String {
        JSONValue.object(pairs.map { ($0.key, $0.value) }).rendered
    }

    /// A JSON string literal for `s`. Besides what JSON requires (quote, backslash,
    /// U+0000 to U+001F), everything `Escape` escapes for terminals (DEL, C1 controls,
    /// line separators, bidirectional formatting) is written as `\uXXXX`, so the line
    /// is safe to print and the value still decodes to exactly `s`.
    public static func quote(_ s: String) -> String {
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
}
