/// One option a command accepts.
public struct OptionSpec: Sendable {
    public let long: String
    public let short: Character?
    /// Name of the value in help output; nil for flags.
    public let valueName: String?
    public let repeatable: Bool
    public let help: String

    public init(_ long: String, short: Character? = nil, value: String? = nil, repeatable: Bool = false, help: String) {
        self.long = long
        self.short = short
        self.valueName = value
        self.repeatable = repeatable
        self.help = help
    }

    public var takesValue: Bool { valueName != nil }
}

/// A command-line error: one line for stderr, exit code 2.
public struct UsageError: Error, Equatable, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The result of parsing: option values by long name, and positional arguments.
public struct ParsedArguments: Sendable, Equatable {
    public var values: [String: [String]] = [:]
    public var positionals: [String] = []

    public init() {}

    public func has(_ long: String) -> Bool { values[long] != nil }
    public func value(_ long: String) -> String? { values[long]?.last }
    public func all(_ long: String) -> [String] { values[long] ?? [] }

    /// Parses an option value as an integer in `range`.
    public func int(_ long: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = value(long) else { return nil }
        guard let v = Int(text), range.contains(v) else {
            throw UsageError("--\(long): expected a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return v
    }

    /// Parses an option value as a byte count in `range` (see `parseByteCount`).
    public func bytes(_ long: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = value(long) else { return nil }
        guard let v = parseByteCount(text), range.contains(v) else {
            throw UsageError("--\(long): expected a byte count from \(range.lowerBound) to \(range.upperBound) (suffixes K, M, G, T allowed), got '\(text)'")
        }
        return v
    }

    /// Parses an option value as seconds (decimal allowed) in `range`.
    public func seconds(_ long: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = value(long) else { return nil }
        guard let v = Double(text), v.isFinite, range.contains(v) else {
            throw UsageError("--\(long): expected seconds from \(formatNumber(range.lowerBound)) to \(formatNumber(range.upperBound)), got '\(text)'")
        }
        return v
    }
}

/// A byte count: a whole number, optionally followed by K, M, G or T (powers of 1024,
/// also written KiB, MiB, GiB, TiB); nil when malformed or too large.
func parseByteCount(_ text: String) -> Int? {
    var digits = Substring(text)
    var shift = 0
    for (suffixes, s) in [(["T", "TiB"], 40), (["G", "GiB"], 30), (["M", "MiB"], 20), (["K", "KiB"], 10)] {
        if let suffix = suffixes.first(where: { text.uppercased().hasSuffix($0.uppercased()) }) {
            digits = digits.dropLast(suffix.count)
            shift = s
            break
        }
    }
    guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Int(digits) else { return nil }
    let (v, overflow) = n.multipliedReportingOverflow(by: 1 << shift)
    return overflow ? nil : v
}

func formatNumber(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
}

/// The hand-rolled parser. Accepts `--opt value`, `--opt=value`, `-o value`,
/// `-ovalue`, clustered short flags (`-vq`), and `--` to end options.
public enum ArgumentParser {
    public static func parse(_ args: [String], options: [OptionSpec]) throws -> ParsedArguments {
        var result = ParsedArguments()
        var i = 0
        var optionsEnded = false

        func store(_ spec: OptionSpec, _ value: String) throws {
            if !spec.repeatable, result.values[spec.long] != nil, spec.takesValue {
                throw UsageError("option --\(spec.long) given more than once")
            }
            result.values[spec.long, default: []].append(value)
        }

        while i < args.count {
            let arg = args[i]
            i += 1
            if optionsEnded || arg == "-" || !arg.hasPrefix("-") {
                result.positionals.append(arg)
                continue
            }
            if arg == "--" {
                optionsEnded = true
                continue
            }
            if arg.hasPrefix("--") {
                let body = arg.dropFirst(2)
                let name: String
                var inline: String?
                if let eq = body.firstIndex(of: "=") {
                    name = String(body[..<eq])
                    inline = String(body[body.index(after: eq)...])
                } else {
                    name = String(body)
                }
                guard let spec = options.first(where: { $0.long == name }) else {
                    throw UsageError(unknownOptionMessage("--" + name, options: options))
                }
                if spec.takesValue {
                    if let inline {
                        try store(spec, inline)
                    } else {
                        guard i < args.count else { throw UsageError("option --\(name) needs a value (\(spec.valueName ?? "VALUE"))") }
                        try store(spec, args[i])
                        i += 1
                    }
                } else {
                    if inline != nil { throw UsageError("option --\(name) takes no value") }
                    try store(spec, "")
                }
                continue
            }
            // Short options, possibly clustered.
            var chars = Array(arg.dropFirst())
            while !chars.isEmpty {
                let c = chars.removeFirst()
                guard let spec = options.first(where: { $0.short == c }) else {
                    // A negative number is a positional (e.g. an offset), not an option.
                    if c.isNumber && chars.allSatisfy({ $0.isNumber || $0 == "." }) {
                        result.positionals.append(arg)
                        break
                    }
                    throw UsageError(unknownOptionMessage("-" + String(c), options: options))
                }
                if spec.takesValue {
                    if !chars.isEmpty {
                        try store(spec, String(chars))
                    } else {
                        guard i < args.count else { throw UsageError("option -\(c) needs a value (\(spec.valueName ?? "VALUE"))") }
                        try store(spec, args[i])
                        i += 1
                    }
                    chars = []
                } else {
                    try store(spec, "")
                }
            }
        }
        return result
    }

    static func unknownOptionMessage(_ given: String, options: [OptionSpec]) -> String {
        var candidates = options.map { "--" + $0.long }
        candidates += options.compactMap { $0.short.map { "-" + String($0) } }
        if let best = closest(given, among: candidates) {
            return "unknown option '\(given)'; did you mean '\(best)'?"
        }
        return "unknown option '\(given)'"
    }

    /// The candidate nearest to `word` by edit distance, if near enough to be a typo.
    public static func closest(_ word: String, among candidates: [String]) -> String? {
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(word, c)
            if best == nil || d < best!.1 { best = (c, d) }
        }
        guard let (name, distance) = best else { return nil }
        let limit = max(2, min(word.count, name.count) / 2)
        if distance <= limit || name.hasPrefix(word) || word.hasPrefix(name) { return name }
        return nil
    }

    /// Damerau-Levenshtein (optimal string alignment) distance.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
