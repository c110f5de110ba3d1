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

    /// The longest word (in Unicode scalars) whose edit distance is computed for a suggestion.
    /// Every name guts suggests is far shorter; a longer word (a config file's hostile key, a
    /// pasted blob) gets a suggestion only by the prefix rule, so a suggestion never costs more
    /// than a few thousand steps per candidate.
    static let suggestionWordLimit = 64

    /// The candidate nearest to `word` by edit distance, if near enough to be a typo.
    public static func closest(_ word: String, among candidates: [String]) -> String? {
        let w = Array(word.unicodeScalars)
        var best: (name: String, distance: Int)?
        for c in candidates {
            let name = Array(c.unicodeScalars)
            let limit = max(2, min(w.count, name.count) / 2)
            var distance = Int.max
            if w.starts(with: name) || name.starts(with: w) {
                distance = abs(w.count - name.count)
                if distance > limit { distance = limit }  // a prefix always qualifies
            } else if w.count <= suggestionWordLimit, abs(w.count - name.count) <= limit {
                distance = editDistance(w, name)
                if distance > limit { continue }
            } else {
                continue
            }
            if best == nil || distance < best?.distance ?? Int.max { best = (c, distance) }
        }
        return best?.name
    }

    /// Damerau-Levenshtein (optimal string alignment) distance.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        editDistance(Array(a.unicodeScalars), Array(b.unicodeScalars))
    }

    /// The same over scalars, in three rows of one allocation.
    static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        let width = b.count + 1
        var rows = [Int](repeating: 0, count: 3 * width)  // row i-2, i-1, i, rotating
        for j in 0...b.count { rows[width + j] = j }      // row 0 sits in slot 1
        for i in 1...a.count {
            let cur = ((i + 1) % 3) * width, prev = (i % 3) * width, prev2 = ((i + 2) % 3) * width
            rows[cur] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                var d = min(rows[prev + j] + 1, rows[cur + j - 1] + 1, rows[prev + j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d = min(d, rows[prev2 + j - 2] + 1)
                }
                rows[cur + j] = d
            }
        }
        return rows[((a.count + 1) % 3) * width + b.count]
    }
}
