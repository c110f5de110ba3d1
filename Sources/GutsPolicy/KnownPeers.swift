import GutsAddress
import GutsIdentity
import GutsSupport

/// How `known_peers` is used (`--known-peers`, config `known-peers`, guts-known-peers(5)).
public enum KnownPeersMode: String, Sendable, CaseIterable {
    /// Record the peer ID seen at an address on first use; refuse a different one later.
    case acceptNew = "accept-new"
    /// Refuse an address that is neither in known_peers nor given with a peer ID.
    case strict
    /// Neither read nor write known_peers.
    case off
}

/// Why a known_peers file was refused: the line (1-based; 0 for the file as a whole).
public struct KnownPeersParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let line: Int
    public let reason: String

    public init(line: Int, reason: String) {
        self.line = line
        self.reason = reason
    }

    public var description: String { line > 0 ? "line \(line): \(reason)" : reason }
}

/// The `known_peers` file (guts-known-peers(5)): which peer ID answered at which address.
///
///     # comment
///     ADDR PEERID [FIRST-SEEN]
///
/// ADDR is `HOST:PORT` (IPv6 in brackets), PEERID a peer ID, FIRST-SEEN an RFC 3339 UTC
/// time (`2026-12-01T18:12:00Z`). Fields are separated by spaces or tabs. Comments and
/// blank lines are kept as they are when the file is rewritten. Pure: text in, text out.
public struct KnownPeers: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        /// The normalized `host:port`.
        public var address: String
        public var peer: PeerID
        /// Unix seconds, when recorded.
        public var firstSeen: Int64?
        /// 1-based line in the text it was parsed from (0 for entries added since).
        public var line: Int

        public init(address: String, peer: PeerID, firstSeen: Int64?, line: Int = 0) {
            self.address = address
            self.peer = peer
            self.firstSeen = firstSeen
            self.line = line
        }
    }

    enum Line: Equatable, Sendable {
        case text(String)
        case entry(Entry)
    }

    public static let fileName = "known_peers"
    /// Limits on what is read: a larger file or a longer line is refused before parsing.
    public static let maxFileBytes = 1 << 20
    public static let maxLineBytes = 1024
    public static let maxEntries = 10_000

    var lines: [Line] = []

    public init() {}

    public var entries: [Entry] {
        lines.compactMap { if case let .entry(e) = $0 { return e } else { return nil } }
    }

    /// The entry for `address` (any form `Endpoint.parse` takes; normalized first).
    public func lookup(_ address: String) -> Entry? {
        guard let key = Self.normalize(address) else { return nil }
        for case let .entry(e) in lines where e.address == key { return e }
        return nil
    }

    /// `host:port` as known_peers keys it: the host in lower case, the port written out,
    /// an IPv6 literal in brackets; nil when `text` is not an address (or names a peer ID).
    public static func normalize(_ text: String) -> String? {
        guard let e = try? Endpoint.parse(text), e.peer == nil else { return nil }
        return Endpoint(host: e.host.lowercased(), port: e.port).address
    }

    /// Parses known_peers text, strictly: any line that is not a comment, blank or a valid
    /// entry is an error naming the line, and so is an address listed twice.
    public static func parse(_ bytes: [UInt8]) throws -> KnownPeers {
        guard bytes.count <= maxFileBytes else {
            throw KnownPeersParseError(line: 0, reason: "larger than \(maxFileBytes) bytes")
        }
        guard let text = decodeUTF8(bytes[...]) else { throw KnownPeersParseError(line: 0, reason: "not UTF-8 text") }
        var out = KnownPeers()
        var seen: [String: Int] = [:]
        var number = 0
        var rest = Substring(text)
        while !rest.isEmpty {
            number += 1
            let raw: Substring
            if let nl = rest.firstIndex(of: "\n") {
                raw = rest[..<nl]
                rest = rest[rest.index(after: nl)...]
            } else {
                raw = rest
                rest = ""
            }
            guard raw.utf8.count <= maxLineBytes else {
                throw KnownPeersParseError(line: number, reason: "longer than \(maxLineBytes) bytes")
            }
            guard !raw.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\t" && $0 != "\r" || $0.value == 0x7F }) else {
                throw KnownPeersParseError(line: number, reason: "control characters")
            }
            let fields = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            if fields.isEmpty || fields[0].hasPrefix("#") {
                out.lines.append(.text(String(raw)))
                continue
            }
            guard fields.count == 2 || fields.count == 3 else {
                throw KnownPeersParseError(line: number, reason: "expected 'ADDR PEERID [FIRST-SEEN]'")
            }
            guard let address = normalize(String(fields[0])) else {
                throw KnownPeersParseError(line: number, reason: "'\(fields[0].prefix(100))' is not an address (HOST:PORT)")
            }
            guard let peer = PeerID(fields[1]) else {
                throw KnownPeersParseError(line: number, reason: "'\(fields[1].prefix(100))' is not a peer ID")
            }
            var firstSeen: Int64?
            if fields.count == 3 {
                guard let t = parseTime(fields[2]) else {
                    throw KnownPeersParseError(line: number, reason: "'\(fields[2].prefix(40))' is not a time like 2026-12-01T18:12:00Z")
                }
                firstSeen = t
            }
            if let earlier = seen[address] {
                throw KnownPeersParseError(line: number, reason: "\(address) is already listed on line \(earlier)")
            }
            seen[address] = number
            guard seen.count <= maxEntries else {
                throw KnownPeersParseError(line: number, reason: "more than \(maxEntries) entries")
            }
            out.lines.append(.entry(Entry(address: address, peer: peer, firstSeen: firstSeen, line: number)))
        }
        return out
    }

    /// The text of the file; parsing it gives these entries back.
    public func serialize() -> String {
        var out = ""
        for line in lines {
            switch line {
            case let .text(t): out += t + "\n"
            case let .entry(e):
                out += e.address + " " + e.peer.description + (e.firstSeen.map { " " + Self.formatTime($0) } ?? "") + "\n"
            }
        }
        return out
    }

    public enum AddOutcome: Equatable, Sendable {
        /// The entry was appended.
        case added
        /// The address was known with this peer ID already.
        case known(Entry)
        /// The address is known with another peer ID (left as it was).
        case conflict(Entry)
        /// The file holds `maxEntries` entries.
        case full
    }

    /// Records `peer` at `address` unless the address is listed already.
    public mutating func add(address: String, peer: PeerID, firstSeen: Int64?) -> AddOutcome {
        guard let key = Self.normalize(address) else { return .full }
        if let e = lookup(key) { return e.peer == peer ? .known(e) : .conflict(e) }
        guard entries.count < Self.maxEntries else { return .full }
        lines.append(.entry(Entry(address: key, peer: peer, firstSeen: firstSeen)))
        return .added
    }

    /// Removes the entry for `address`; returns it, or nil when there was none.
    public mutating func remove(_ address: String) -> Entry? {
        guard let key = Self.normalize(address) else { return nil }
        guard let i = lines.firstIndex(where: { if case let .entry(e) = $0 { return e.address == key } else { return false } }),
              case let .entry(e) = lines[i] else { return nil }
        lines.remove(at: i)
        return e
    }

    /// Removes every entry with `peer`; returns them.
    public mutating func remove(peer: PeerID) -> [Entry] {
        var removed: [Entry] = []
        lines.removeAll { line in
            if case let .entry(e) = line, e.peer == peer {
                removed.append(e)
                return true
            }
            return false
        }
        return removed
    }

    // MARK: - Times (RFC 3339, UTC, whole seconds)

    /// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
    public static func formatTime(_ t: Int64) -> String {
        let days = t >= 0 ? t / 86_400 : (t - 86_399) / 86_400
        let secs = t - days * 86_400
        let (y, m, d) = civil(fromDays: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let year = String(y)
        return String(repeating: "0", count: max(0, 4 - year.count)) + year + "-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs / 60 % 60)):\(two(secs % 60))Z"
    }

    /// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (years 1970 to 9999), or nil.
    public static func parseTime<S: StringProtocol>(_ text: S) -> Int64? {
        let b = Array(text.utf8)
        guard b.count == 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[19] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var v: Int64 = 0
            for i in range {
                guard b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") else { return nil }
                v = v * 10 + Int64(b[i] - UInt8(ascii: "0"))
            }
            return v
        }
        guard let y = number(0..<4), let mo = number(5..<7), let d = number(8..<10),
              let h = number(11..<13), let mi = number(14..<16), let s = number(17..<19),
              y >= 1970, (1...12).contains(mo), d >= 1, d <= daysIn(month: mo, year: y), h < 24, mi < 60, s < 60 else { return nil }
        return days(year: y, month: mo, day: d) * 86_400 + h * 3600 + mi * 60 + s
    }

    static func isLeap(_ y: Int64) -> Bool { y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) }

    static func daysIn(month m: Int64, year y: Int64) -> Int64 {
        switch m {
        case 2: return isLeap(y) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date.
    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The date of a day count since 1970-01-01.
    static func civil(fromDays z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }
}
