import GutsAddress
import GutsIdentity
import GutsSupport

/// Why a peers file was refused: the line (1-based; 0 for the file as a whole) and what is
/// wrong with it.
public struct PeerBookParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let line: Int
    public let reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { line > 0 ? "line \(line): \(reason)" : reason }
}

/// The peers file: plain text, one entry per line, documented in guts-peers(5).
///
///     guts-peers 1
///     peer PEERID SEEN SCORE OFFENCES BAN COUNTED COUNTERS ADDRESSES
///     ban PREFIX BAN
///
/// Times are Unix seconds; BAN is `-`, `auto:TIME`, `manual:TIME` or `manual:permanent`;
/// COUNTERS is `-` or `name=value,...`; ADDRESSES is `-` or `host:port,...`.
extension PeerBook {
    /// The first line of every peers file.
    public static let header = "guts-peers 1"
    static let magic = "guts-peers"
    static let version = "1"
    /// The largest Unix time accepted (year 5138): keeps every conversion in range.
    static let maxUnixTime: UInt64 = 99_999_999_999
    /// The largest counter or score magnitude accepted.
    static let maxNumber = 1e9

    /// The book as a peers file, counters decayed to `now` (to the whole second nearest to it,
    /// the time written as COUNTED). Bans that ended by `now` are left out. Peers are in peer ID
    /// order and bans in prefix order, and what is written reads back to the same text.
    public func serialize(now: Instant) -> String {
        var out = Self.header + "\n"
        let countedText = unixText(now)
        let counted = instant(unix: unixTime(now).rounded())
        for entry in peers {
            var counters = [String]()
            var score = 0.0
            for event in ScoreEvent.allCases {
                let text = Self.decimal(entry.score.counter(event, now: counted))
                guard text != "0", let written = Self.parseDecimal(Substring(text), signed: false) else { continue }
                counters.append("\(event.rawValue)=\(text)")
                score += written * parameters[event].weight
            }
            let fields = [
                "peer", entry.peer.description, Self.integerText(entry.lastSeen), Self.decimal(score),
                String(entry.offences), banText(entry.ban.flatMap { $0.isActive(now: now) ? $0 : nil }), countedText,
                counters.isEmpty ? "-" : counters.joined(separator: ","),
                entry.addresses.isEmpty ? "-" : entry.addresses.map(\.address).joined(separator: ","),
            ]
            out += fields.joined(separator: " ") + "\n"
        }
        for (prefix, ban) in bans.sorted(by: { $0.key < $1.key }) where ban.isActive(now: now) {
            out += "ban \(prefix) \(banText(ban))\n"
        }
        return out
    }

    /// Reads a peers file. Strict: every line must match guts-peers(5) exactly, and the first
    /// problem is reported with its line number. Nothing in the text can make this trap or
    /// allocate beyond the limits: the size is checked before lines are split, each line
    /// before it is read, and the counts as they grow.
    ///
    /// On load, bans that ended before `now` are dropped (offence counts stay), automatic bans
    /// are shortened to at most their longest automatic duration from `now`, times after `now`
    /// are brought back to `now`, and counters above their cap are clamped; the file's SCORE
    /// field is informational and recomputed from the counters.
    public static func parse(_ text: String, epoch: Double, now: Instant, parameters: ScoreParameters = ScoreParameters(),
                             limits: Limits = Limits()) throws(PeerBookParseError) -> PeerBook {
        var book = PeerBook(epoch: epoch, parameters: parameters, limits: limits)
        guard text.utf8.count <= limits.maxFileBytes else {
            throw PeerBookParseError(line: 0, reason: "the file is \(text.utf8.count) bytes, more than the \(limits.maxFileBytes) allowed")
        }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw PeerBookParseError(line: 1, reason: "empty file: expected '\(header)'") }
        var lineNumber = 0
        var firstLine = [PeerID: Int]()
        var firstBanLine = [AddressPrefix: Int]()
        var start = 0
        while start < bytes.count {
            lineNumber += 1
            func fail(_ reason: String) -> PeerBookParseError { PeerBookParseError(line: lineNumber, reason: reason) }
            // Find the end of the line without looking further than a line may be long.
            var end = start
            while end < bytes.count, bytes[end] != 10 {
                let c = bytes[end]
                guard c >= 0x20, c < 0x7F else {
                    throw fail(c == 13 ? "carriage return (the file uses \\n line ends only)" : c == 9 ? "tab (fields are separated by one space)"
                        : "byte 0x\(String(c, radix: 16)) (only printable ASCII is allowed)")
                }
                guard end - start < limits.maxLineBytes else { throw fail("line longer than \(limits.maxLineBytes) bytes") }
                end += 1
            }
            guard end < bytes.count else { throw fail("no newline at the end of the file (truncated?)") }
            let line = String(decoding: bytes[start..<end], as: UTF8.self)
            start = end + 1

            if lineNumber == 1 {
                guard line == header else {
                    let fields = line.split(separator: " ", omittingEmptySubsequences: false)
                    if fields.count == 2, fields[0] == magic {
                        throw fail("unsupported peers file version '\(fields[1].prefix(20))' (this guts reads version \(version))")
                    }
                    throw fail("not a peers file: the first line must be '\(header)'")
                }
                continue
            }
            guard !line.isEmpty else { throw fail("empty line") }
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard !fields.contains(where: \.isEmpty) else { throw fail("fields must be separated by exactly one space") }
            switch fields[0] {
            case "peer":
                guard fields.count == 9 else { throw fail("a peer line has 9 fields, this one has \(fields.count)") }
                let entry = try book.parsePeer(fields, now: now, line: lineNumber)
                if let first = firstLine[entry.peer] { throw fail("peer \(entry.peer.short) is listed twice (first on line \(first))") }
                guard book.entries.count < limits.maxPeers else { throw fail("more than \(limits.maxPeers) peers") }
                firstLine[entry.peer] = lineNumber
                book.entries[entry.peer] = entry
            case "ban":
                guard fields.count == 3 else { throw fail("a ban line has 3 fields, this one has \(fields.count)") }
                let prefix: AddressPrefix
                do { prefix = try AddressPrefix.parse(fields[1]) } catch { throw fail(error.description) }
                guard prefix.description == fields[1] else { throw fail("write the prefix as '\(prefix)'") }
                if let first = firstBanLine[prefix] { throw fail("\(prefix) is banned twice (first on line \(first))") }
                guard firstBanLine.count < limits.maxAddressBans else { throw fail("more than \(limits.maxAddressBans) address bans") }
                firstBanLine[prefix] = lineNumber
                guard var ban = try book.parseBan(fields[2], line: lineNumber) else { throw fail("a ban line needs a ban, not '-'") }
                guard ban.isActive(now: now) else { continue }
                if case let .automatic(until) = ban { ban = .automatic(until: min(until, later(now, parameters.addressBanMax))) }
                book.insertBan(prefix, ban, now: now)
            default:
                throw fail("unknown entry '\(fields[0].prefix(20))' (expected 'peer' or 'ban')")
            }
        }
        if lineNumber == 0 { throw PeerBookParseError(line: 1, reason: "empty file: expected '\(header)'") }
        return book
    }

    private func parsePeer(_ fields: [Substring], now: Instant, line: Int) throws(PeerBookParseError) -> Entry {
        func fail(_ reason: String) -> PeerBookParseError { PeerBookParseError(line: line, reason: reason) }
        guard let peer = PeerID(fields[1]), peer.description == fields[1] else {
            throw fail("'\(fields[1].prefix(80))' is not a peer ID (gt and 56 lowercase base32 characters)")
        }
        guard let seen = Self.integer(fields[2], max: Self.maxUnixTime) else { throw fail("SEEN must be Unix seconds, not '\(fields[2].prefix(20))'") }
        guard Self.parseDecimal(fields[3], signed: true) != nil else { throw fail("SCORE must be a decimal number, not '\(fields[3].prefix(20))'") }
        guard let offences = Self.integer(fields[4], max: UInt64(limits.maxOffences)) else {
            throw fail("OFFENCES must be a whole number from 0 to \(limits.maxOffences)")
        }
        var ban = try parseBan(fields[5], line: line)
        guard let counted = Self.integer(fields[6], max: Self.maxUnixTime) else { throw fail("COUNTED must be Unix seconds, not '\(fields[6].prefix(20))'") }

        var counters = [ScoreEvent: Double]()
        if fields[7] != "-" {
            for item in fields[7].split(separator: ",", omittingEmptySubsequences: false) {
                let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard pair.count == 2, let event = ScoreEvent(name: pair[0]) else {
                    throw fail("'\(item.prefix(40))' is not a counter (name=value with a name from guts-peers(5))")
                }
                guard counters[event] == nil else { throw fail("counter \(event.rawValue) appears twice") }
                guard let value = Self.parseDecimal(pair[1], signed: false) else { throw fail("counter \(event.rawValue) must be a decimal number") }
                counters[event] = value
            }
        }

        var addresses = [Endpoint]()
        if fields[8] != "-" {
            let items = fields[8].split(separator: ",", omittingEmptySubsequences: false)
            guard items.count <= limits.maxAddressesPerPeer else { throw fail("more than \(limits.maxAddressesPerPeer) addresses") }
            for item in items {
                guard let endpoint = try? Endpoint.parse(String(item)), endpoint.peer == nil, endpoint.address == item,
                      endpoint.host.utf8.count <= Self.maxHostBytes
                else { throw fail("'\(item.prefix(80))' is not an address (host:port, [ipv6]:port)") }
                guard !addresses.contains(endpoint) else { throw fail("address \(item) appears twice") }
                addresses.append(endpoint)
            }
        }

        // Convert times to this process's clock.
        let nowUnix = unixTime(now)
        var score: PeerScore
        let countedUnix = min(Double(counted), nowUnix.rounded(.up))
        if countedUnix >= epoch {
            score = PeerScore(box: box, counters: counters, updated: instant(unix: countedUnix))
        } else {
            score = PeerScore(box: box, counters: counters, updated: Instant(nanoseconds: 0))
            score.decayExtra(seconds: epoch - countedUnix)
        }
        if let current = ban, !current.isActive(now: now) { ban = nil }
        if case let .automatic(until) = ban { ban = .automatic(until: min(until, later(now, parameters.banMax))) }
        return Entry(peer: peer, addresses: addresses, lastSeen: min(Double(seen), nowUnix.rounded(.up)), score: score, ban: ban,
                     offences: Int(offences))
    }

    /// `-` (nil), `auto:TIME`, `manual:TIME` or `manual:permanent`.
    private func parseBan(_ text: Substring, line: Int) throws(PeerBookParseError) -> Ban? {
        if text == "-" { return nil }
        if text == "manual:permanent" { return .manual(until: nil) }
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0] == "auto" || parts[0] == "manual", let time = Self.integer(parts[1], max: Self.maxUnixTime) else {
            throw PeerBookParseError(line: line, reason: "'\(text.prefix(40))' is not a ban (-, auto:TIME, manual:TIME or manual:permanent)")
        }
        let until = instant(unix: Double(time))
        return parts[0] == "auto" ? .automatic(until: until) : .manual(until: until)
    }

    /// The instant at Unix time `unix` (the clock's zero for earlier times).
    private func instant(unix: Double) -> Instant {
        let seconds = unix - epoch
        guard seconds > 0 else { return Instant(nanoseconds: 0) }
        return later(Instant(nanoseconds: 0), seconds)
    }

    private func unixText(_ instant: Instant) -> String { Self.integerText(unixTime(instant)) }

    private func banText(_ ban: Ban?) -> String {
        switch ban {
        case nil: return "-"
        case let .automatic(until): return "auto:" + unixText(until)
        case let .manual(until): return "manual:" + (until.map(unixText) ?? "permanent")
        }
    }

    /// A Unix time as whole seconds, rounded to nearest and kept in range.
    static func integerText(_ unix: Double) -> String {
        guard unix.isFinite, unix > 0 else { return "0" }
        return unix >= Double(maxUnixTime) ? String(maxUnixTime) : String(UInt64(unix.rounded()))
    }

    /// A decimal whole number without sign or leading zeros, at most `max`.
    static func integer(_ text: Substring, max: UInt64) -> UInt64? {
        guard !text.isEmpty, text.utf8.count <= 12, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              text == "0" || !text.hasPrefix("0"), let n = UInt64(text), n <= max else { return nil }
        return n
    }

    /// Fixed-point text with at most six decimals and no trailing zeros: `12`, `-0.5`, `3.141593`.
    static func decimal(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let micros = UInt64(min(abs(value), maxNumber) * 1e6 + 0.5)
        var text = String(micros / 1_000_000)
        let fraction = micros % 1_000_000
        if fraction != 0 {
            var digits = String(fraction)
            digits = String(repeating: "0", count: 6 - digits.count) + digits
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return value < 0 && micros != 0 ? "-" + text : text
    }

    /// Parses what `decimal` writes: optional `-` (when `signed`), digits without leading
    /// zeros, optionally `.` and one to six digits; magnitude at most `maxNumber`.
    static func parseDecimal(_ text: Substring, signed: Bool) -> Double? {
        var body = text
        var negative = false
        if signed, body.hasPrefix("-") {
            negative = true
            body = body.dropFirst()
        }
        let parts = body.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = integer(parts[0], max: UInt64(maxNumber)) else { return nil }
        var micros: UInt64 = 0
        if parts.count == 2 {
            let f = parts[1]
            guard (1...6).contains(f.utf8.count), f.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let n = UInt64(f) else { return nil }
            micros = n
            for _ in f.utf8.count..<6 { micros *= 10 }
        }
        let value = Double(whole) + Double(micros) / 1e6
        guard value <= maxNumber else { return nil }
        return negative ? -value : value
    }
}
