/// An IPv4 or IPv6 address, parsed from text by this module (no Foundation, no resolver).
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are stored as the IPv4 address they carry:
/// a dual-stack listener reports IPv4 peers that way, and they must not escape IPv4 limits.
public enum IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    case v4(UInt32)
    /// The 128 bits as two words, most significant first.
    case v6(UInt64, UInt64)

    /// The longest text accepted, zone included; longer input is refused before it is scanned.
    public static let maxTextLength = 64

    /// Parses dotted-quad IPv4 (`192.0.2.1`, no leading zeros) or IPv6 in any RFC 4291 text form
    /// (`2001:db8::1`, `::ffff:192.0.2.1`), optionally with a zone (`fe80::1%eth0`, ignored).
    public init?(_ text: some StringProtocol) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= Self.maxTextLength else { return nil }
        if bytes.contains(UInt8(ascii: ":")) {
            var body = bytes[...]
            if let percent = body.firstIndex(of: UInt8(ascii: "%")) {
                let zone = body[(percent + 1)...]
                guard !zone.isEmpty, zone.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "%") }) else { return nil }
                body = body[..<percent]
            }
            guard let (hi, lo) = Self.parseV6(body) else { return nil }
            self = Self.fromV6(hi, lo)
        } else {
            guard let v = Self.parseV4(bytes[...]) else { return nil }
            self = .v4(v)
        }
    }

    /// A v6 address, or the IPv4 address it maps (`::ffff:0:0/96`).
    static func fromV6(_ hi: UInt64, _ lo: UInt64) -> IPAddress {
        if hi == 0, lo >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: lo)) }
        return .v6(hi, lo)
    }

    var bitLength: Int {
        switch self {
        case .v4: return 32
        case .v6: return 128
        }
    }

    /// IPv4 before IPv6, then numeric order.
    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        switch (a, b) {
        case let (.v4(x), .v4(y)): return x < y
        case (.v4, .v6): return true
        case (.v6, .v4): return false
        case let (.v6(xh, xl), .v6(yh, yl)): return xh != yh ? xh < yh : xl < yl
        }
    }

    /// Canonical text: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run as `::`).
    public var description: String {
        switch self {
        case let .v4(v):
            return "\(v >> 24).\(v >> 16 & 0xFF).\(v >> 8 & 0xFF).\(v & 0xFF)"
        case let .v6(hi, lo):
            var groups = [UInt16]()
            for shift in stride(from: 48, through: 0, by: -16) { groups.append(UInt16(truncatingIfNeeded: hi >> UInt64(shift))) }
            for shift in stride(from: 48, through: 0, by: -16) { groups.append(UInt16(truncatingIfNeeded: lo >> UInt64(shift))) }
            var bestStart = -1, bestLength = 1, i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8, groups[j] == 0 { j += 1 }
                    if j - i > bestLength { bestStart = i; bestLength = j - i }
                    i = j
                } else {
                    i += 1
                }
            }
            func hex(_ range: Range<Int>) -> String {
                groups[range].map { String($0, radix: 16) }.joined(separator: ":")
            }
            if bestStart < 0 { return hex(0..<8) }
            return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
        }
    }

    /// Where the address lives: this host, a private network, or the Internet.
    public var scope: AddressScope {
        switch self {
        case let .v4(v):
            let a = v >> 24, b = v >> 16 & 0xFF
            if a == 127 || a == 0 { return .loopback }  // 0.0.0.0/8 means "this host"
            if a == 10 || (a == 172 && b & 0xF0 == 16) || (a == 192 && b == 168) { return .private }
            if a == 169 && b == 254 { return .private }  // link-local
            if a == 100 && b & 0xC0 == 64 { return .private }  // 100.64.0.0/10, carrier-grade NAT
            return .global
        case let .v6(hi, lo):
            if hi == 0 && (lo == 1 || lo == 0) { return .loopback }  // ::1 and ::
            let top = hi >> 48
            if top & 0xFE00 == 0xFC00 { return .private }  // fc00::/7, unique local
            if top & 0xFFC0 == 0xFE80 || top & 0xFFC0 == 0xFEC0 { return .private }  // link-local, old site-local
            return .global
        }
    }

    /// The address group this address counts against (see `AddressGroup`).
    public var group: AddressGroup { AddressGroup(self) }

    // MARK: Parsing

    /// Dotted quad with exactly four decimal parts 0-255; leading zeros are refused because
    /// some parsers read them as octal.
    static func parseV4(_ bytes: ArraySlice<UInt8>) -> UInt32? {
        var value: UInt32 = 0
        var parts = 0
        var part: UInt32 = 0
        var digits = 0
        var leadingZero = false
        for c in bytes {
            if c == UInt8(ascii: ".") {
                guard digits > 0, parts < 3 else { return nil }
                value = value << 8 | part
                parts += 1
                part = 0
                digits = 0
                leadingZero = false
            } else if c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") {
                guard !leadingZero, digits < 3 else { return nil }
                if digits == 0, c == UInt8(ascii: "0") { leadingZero = true }
                part = part * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                guard part <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, parts == 3 else { return nil }
        return value << 8 | part
    }

    /// RFC 4291 section 2.2 text: eight hex groups, one optional `::`, an optional trailing
    /// dotted quad standing for the last two groups.
    static func parseV6(_ bytes: ArraySlice<UInt8>) -> (UInt64, UInt64)? {
        let colon = UInt8(ascii: ":")
        var doubleColon: Int?
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            if bytes[i] == colon, bytes[i + 1] == colon {
                guard doubleColon == nil else { return nil }
                doubleColon = i
                i += 2
            } else {
                i += 1
            }
        }
        var groups: [UInt16]
        if let at = doubleColon {
            guard let head = hexGroups(bytes[bytes.startIndex..<at], allowV4: false),
                  let tail = hexGroups(bytes[(at + 2)...], allowV4: true),
                  head.count + tail.count <= 7 else { return nil }
            groups = head + [UInt16](repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard let all = hexGroups(bytes, allowV4: true), all.count == 8 else { return nil }
            groups = all
        }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for k in 0..<4 { hi = hi << 16 | UInt64(groups[k]) }
        for k in 4..<8 { lo = lo << 16 | UInt64(groups[k]) }
        return (hi, lo)
    }

    private static func hexGroups(_ bytes: ArraySlice<UInt8>, allowV4: Bool) -> [UInt16]? {
        if bytes.isEmpty { return [] }
        let fields = bytes.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false)
        guard fields.count <= 8 else { return nil }
        var out = [UInt16]()
        for (index, field) in fields.enumerated() {
            if field.contains(UInt8(ascii: ".")) {
                guard allowV4, index == fields.count - 1, let v4 = parseV4(field) else { return nil }
                out.append(UInt16(truncatingIfNeeded: v4 >> 16))
                out.append(UInt16(truncatingIfNeeded: v4))
            } else {
                guard (1...4).contains(field.count) else { return nil }
                var g: UInt16 = 0
                for c in field {
                    guard let d = hexDigit(c) else { return nil }
                    g = g << 4 | UInt16(d)
                }
                out.append(g)
            }
        }
        return out
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// How far away an address is, ordered `loopback < private < global`.
public enum AddressScope: Int, Comparable, Sendable, CaseIterable {
    /// This host: 127.0.0.0/8, 0.0.0.0/8, ::1, ::.
    case loopback
    /// A private or link-local network: RFC 1918, 100.64.0.0/10, 169.254.0.0/16, fc00::/7, fe80::/10.
    case `private`
    /// Everything else.
    case global

    public static func < (a: AddressScope, b: AddressScope) -> Bool { a.rawValue < b.rawValue }
}

/// Why an address or prefix text was refused.
public struct AddressParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String

    public init(text: String, reason: String) {
        self.text = text
        self.reason = reason
    }

    public var description: String { "invalid address '\(text)': \(reason)" }
}

/// A network: an address with its host bits clear and a prefix length (`10.1.2.0/24`,
/// `2001:db8::/48`). Used for bans; a single address is a full-length prefix.
public struct AddressPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The network address (host bits are zero).
    public let address: IPAddress
    /// Prefix length in bits: 0-32 for IPv4, 0-128 for IPv6.
    public let length: Int

    /// The prefix of `length` bits containing `address` (host bits are cleared; `length` is
    /// clamped to the address family's range).
    public init(containing address: IPAddress, length: Int) {
        let bits = max(0, min(length, address.bitLength))
        self.address = Self.mask(address, bits)
        self.length = bits
    }

    /// The full-length prefix naming one address.
    public init(_ address: IPAddress) { self.init(containing: address, length: address.bitLength) }

    /// Parses `ADDR` or `ADDR/LENGTH`. Strict: the length is decimal without leading zeros and
    /// in range, and the host bits must be zero (`10.1.2.3/24` is refused, naming `10.1.2.0/24`).
    /// An IPv4-mapped prefix (`::ffff:10.0.0.0/104`) becomes the IPv4 prefix (`10.0.0.0/8`).
    public static func parse(_ text: some StringProtocol) throws(AddressParseError) -> AddressPrefix {
        let string = String(text.prefix(IPAddress.maxTextLength + 8))
        func fail(_ reason: String) -> AddressParseError { AddressParseError(text: string, reason: reason) }
        guard text.utf8.count <= IPAddress.maxTextLength + 4 else { throw fail("too long") }
        var addressText = Substring(string)
        var lengthText: Substring?
        if let slash = string.firstIndex(of: "/") {
            addressText = string[..<slash]
            lengthText = string[string.index(after: slash)...]
        }
        guard !addressText.contains("%") else { throw fail("a prefix cannot have a zone") }
        guard let address = IPAddress(addressText) else { throw fail("not an IPv4 or IPv6 address") }
        let mapped = addressText.contains(":") && address.bitLength == 32
        let familyBits = mapped ? 128 : address.bitLength
        var length = familyBits
        if let lengthText {
            guard !lengthText.isEmpty, lengthText.utf8.count <= 3, lengthText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                  lengthText == "0" || !lengthText.hasPrefix("0"), let n = Int(lengthText), n <= familyBits
            else { throw fail("prefix length must be a number from 0 to \(familyBits)") }
            length = n
        }
        if mapped {
            guard length >= 96 else { throw fail("an IPv4-mapped prefix must be at least /96") }
            length -= 96
        }
        let prefix = AddressPrefix(containing: address, length: length)
        guard prefix.address == address else {
            throw fail("host bits are set; the network is \(prefix)")
        }
        return prefix
    }

    /// By network address, then shorter prefixes first.
    public static func < (a: AddressPrefix, b: AddressPrefix) -> Bool {
        a.address != b.address ? a.address < b.address : a.length < b.length
    }

    /// Whether `address` is in this network. IPv4 and IPv6 never contain each other.
    public func contains(_ address: IPAddress) -> Bool {
        guard address.bitLength == self.address.bitLength else { return false }
        return Self.mask(address, length) == self.address
    }

    /// `ADDR/LENGTH`, or just `ADDR` for a full-length prefix.
    public var description: String {
        length == address.bitLength ? address.description : "\(address)/\(length)"
    }

    static func mask(_ address: IPAddress, _ bits: Int) -> IPAddress {
        switch address {
        case let .v4(v):
            return .v4(bits == 0 ? 0 : v & (UInt32.max << UInt32(32 - bits)))
        case let .v6(hi, lo):
            let hiBits = min(bits, 64), loBits = max(0, bits - 64)
            let hiMask: UInt64 = hiBits == 0 ? 0 : UInt64.max << UInt64(64 - hiBits)
            let loMask: UInt64 = loBits == 0 ? 0 : UInt64.max << UInt64(64 - loBits)
            return .v6(hi & hiMask, lo & loMask)
        }
    }
}

/// The group of addresses one operator plausibly controls, for per-group limits and for
/// spreading connections: IPv4 /24, IPv6 /56 (a typical end-site allocation).
///
/// Exceptions: loopback 127.0.0.0/8 is grouped per address (/32) and `::1` alone, so local
/// tests on 127.0.0.x behave like distinct hosts; IPv4-mapped (`::ffff:0:0/96`), 6to4
/// (`2002::/16`) and NAT64 (`64:ff9b::/96`) addresses count as the IPv4 address they embed,
/// so IPv6 transition space does not multiply one IPv4 host into many groups.
public struct AddressGroup: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let ipv4Length = 24
    public static let ipv6Length = 56

    /// The network this group covers.
    public let prefix: AddressPrefix

    public init(_ address: IPAddress) { prefix = Self.groupPrefix(address) }

    private static func groupPrefix(_ address: IPAddress) -> AddressPrefix {
        switch address {
        case let .v4(v):
            return AddressPrefix(containing: address, length: v >> 24 == 127 ? 32 : ipv4Length)
        case let .v6(hi, lo):
            if hi == 0 && lo == 1 { return AddressPrefix(address) }
            if hi >> 48 == 0x2002 { return groupPrefix(.v4(UInt32(truncatingIfNeeded: hi >> 16))) }
            if hi == 0x0064_FF9B_0000_0000, lo >> 32 == 0 { return groupPrefix(.v4(UInt32(truncatingIfNeeded: lo))) }
            return AddressPrefix(containing: address, length: ipv6Length)
        }
    }

    /// The group of an address given as text; nil when the text is not an IP address.
    public init?(address text: some StringProtocol) {
        guard let address = IPAddress(text) else { return nil }
        self.init(address)
    }

    public static func < (a: AddressGroup, b: AddressGroup) -> Bool { a.prefix < b.prefix }

    /// Whether `address` belongs to this group.
    public func contains(_ address: IPAddress) -> Bool { AddressGroup(address) == self }

    public var description: String { prefix.description }

    /// Two words that identify the group, for keyed hashing.
    var words: (UInt64, UInt64) {
        switch prefix.address {
        case let .v4(v): return (UInt64(v) << 8 | UInt64(prefix.length), 0x4)
        case let .v6(hi, lo): return (hi ^ UInt64(prefix.length), lo ^ 0x6)
        }
    }
}
