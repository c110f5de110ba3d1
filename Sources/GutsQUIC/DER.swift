/// The few pieces of ASN.1 DER the QUIC certificate needs, written and read by hand so
/// the exact bytes are ours (and documented in guts-protocol(7)).
enum DER {
    static let sequence: UInt8 = 0x30
    static let set: UInt8 = 0x31
    static let integer: UInt8 = 0x02
    static let bitString: UInt8 = 0x03
    static let octetString: UInt8 = 0x04
    static let objectIdentifier: UInt8 = 0x06
    static let utf8String: UInt8 = 0x0c
    static let utcTime: UInt8 = 0x17
    static let generalizedTime: UInt8 = 0x18
    static let boolean: UInt8 = 0x01

    /// Tag, definite length (short or long form), value.
    static func tlv(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [tag]
        let n = value.count
        if n < 0x80 {
            out.append(UInt8(n))
        } else {
            var bytes: [UInt8] = []
            var v = n
            while v > 0 {
                bytes.insert(UInt8(v & 0xff), at: 0)
                v >>= 8
            }
            out.append(0x80 | UInt8(bytes.count))
            out += bytes
        }
        return out + value
    }

    static func sequence(_ parts: [UInt8]...) -> [UInt8] { tlv(sequence, parts.flatMap { $0 }) }

    /// Encodes a dotted object identifier whose arcs may exceed 64 bits (decimal strings).
    static func oid(_ dotted: String) -> [UInt8] {
        let arcs = dotted.split(separator: ".").map { decimalToBase128(String($0)) }
        guard arcs.count >= 2, let first = Int(dotted.split(separator: ".")[0]), let second = Int(dotted.split(separator: ".")[1]) else { return [] }
        var body = base128(UInt64(first * 40 + second))
        for arc in arcs.dropFirst(2) { body += arc }
        return tlv(objectIdentifier, body)
    }

    static func base128(_ value: UInt64) -> [UInt8] {
        var v = value
        var out: [UInt8] = [UInt8(v & 0x7f)]
        v >>= 7
        while v > 0 {
            out.insert(UInt8(v & 0x7f) | 0x80, at: 0)
            v >>= 7
        }
        return out
    }

    /// A decimal number of any size in base-128 with continuation bits (an OID arc).
    static func decimalToBase128(_ decimal: String) -> [UInt8] {
        var digits = decimal.utf8.map { Int($0) - 48 }
        var groups: [UInt8] = []
        while !(digits.isEmpty || digits.allSatisfy({ $0 == 0 })) {
            // Divide by 128, keep the remainder.
            var remainder = 0
            var quotient: [Int] = []
            for d in digits {
                let cur = remainder * 10 + d
                let q = cur / 128
                remainder = cur % 128
                if !(quotient.isEmpty && q == 0) { quotient.append(q) }
            }
            groups.insert(UInt8(remainder), at: 0)
            digits = quotient
        }
        if groups.isEmpty { return [0] }
        for i in 0..<(groups.count - 1) { groups[i] |= 0x80 }
        return groups
    }

    /// A positive INTEGER from big-endian magnitude bytes.
    static func unsignedInteger(_ magnitude: [UInt8]) -> [UInt8] {
        var m = Array(magnitude.drop(while: { $0 == 0 }))
        if m.isEmpty { m = [0] }
        if m[0] & 0x80 != 0 { m.insert(0, at: 0) }
        return tlv(integer, m)
    }

    /// UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
    static func time(_ unix: Int64) -> [UInt8] {
        let c = CivilTime(unix: unix)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let rest = two(c.month) + two(c.day) + two(c.hour) + two(c.minute) + two(c.second) + "Z"
        if c.year >= 1950 && c.year < 2050 {
            return tlv(utcTime, Array((two(c.year % 100) + rest).utf8))
        }
        return tlv(generalizedTime, Array((String(c.year) + rest).utf8))
    }

    /// Reads one element; strict DER lengths (minimal, definite, at most 4 length bytes).
    struct Reader {
        let bytes: [UInt8]
        var position: Int
        let end: Int

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            position = 0
            end = bytes.count
        }

        init(_ bytes: [UInt8], range: Range<Int>) {
            self.bytes = bytes
            position = range.lowerBound
            end = range.upperBound
        }

        var atEnd: Bool { position >= end }

        /// The next element's tag and the range of its value, plus the range of the whole element.
        mutating func read() throws -> (tag: UInt8, value: Range<Int>, whole: Range<Int>) {
            let start = position
            guard end - position >= 2 else { throw CertificateError.malformed("truncated element") }
            let tag = bytes[position]
            var length = Int(bytes[position + 1])
            position += 2
            if length & 0x80 != 0 {
                let count = length & 0x7f
                guard count >= 1, count <= 4, end - position >= count else { throw CertificateError.malformed("bad length") }
                length = 0
                for i in 0..<count { length = length << 8 | Int(bytes[position + i]) }
                guard bytes[position] != 0, length >= 0x80 else { throw CertificateError.malformed("length not minimal") }
                position += count
            }
            guard length <= end - position else { throw CertificateError.malformed("element overruns its container") }
            let value = position..<(position + length)
            position += length
            return (tag, value, start..<position)
        }

        mutating func expect(_ tag: UInt8, _ what: String) throws -> Range<Int> {
            let e = try read()
            guard e.tag == tag else { throw CertificateError.malformed("expected \(what)") }
            return e.value
        }
    }
}

/// Calendar fields of a Unix time (UTC), and back; proleptic Gregorian.
struct CivilTime: Equatable {
    var year, month, day, hour, minute, second: Int

    init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        (self.year, self.month, self.day, self.hour, self.minute, self.second) = (year, month, day, hour, minute, second)
    }

    init(unix: Int64) {
        let days = Int(unix >= 0 ? unix / 86400 : (unix - 86399) / 86400)
        let secs = Int(unix - Int64(days) * 86400)
        // Howard Hinnant's civil_from_days.
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (m <= 2 ? 1 : 0)
        month = m
        day = d
        hour = secs / 3600
        minute = secs % 3600 / 60
        second = secs % 60
    }

    var unix: Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Int64(days) * 86400 + Int64(hour * 3600 + minute * 60 + second)
    }

    /// Parses UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ).
    static func parse(_ text: ArraySlice<UInt8>, generalized: Bool) -> Int64? {
        let digits = Array(text)
        guard digits.last == UInt8(ascii: "Z"), digits.count == (generalized ? 15 : 13) else { return nil }
        var values: [Int] = []
        for b in digits.dropLast() {
            guard b >= 48, b <= 57 else { return nil }
            values.append(Int(b) - 48)
        }
        func num(_ i: Int, _ n: Int) -> Int { values[i..<(i + n)].reduce(0) { $0 * 10 + $1 } }
        var i = 0
        var year: Int
        if generalized {
            year = num(0, 4)
            i = 4
        } else {
            year = num(0, 2)
            year += year >= 50 ? 1900 : 2000
            i = 2
        }
        let c = CivilTime(year: year, month: num(i, 2), day: num(i + 2, 2), hour: num(i + 4, 2), minute: num(i + 6, 2), second: num(i + 8, 2))
        guard (1...12).contains(c.month), (1...31).contains(c.day), c.hour < 24, c.minute < 60, c.second < 60 else { return nil }
        return c.unix
    }
}
