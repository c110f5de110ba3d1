import GutsSupport

/// Why bytes from a peer could not be decoded. Every decode failure is one of these;
/// decoding never traps.
public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(field: String)
    case trailingBytes(Int)
    case tooLarge(field: String, size: Int, limit: Int)
    case invalidUTF8(field: String)
    case invalidValue(field: String, reason: String)
    case tooMany(field: String, count: Int, limit: Int)
    case unknownType(UInt8)

    /// A type code as guts-protocol(7) writes it: 0x followed by two hex digits.
    public static func hex(_ t: UInt8) -> String {
        let d = Array("0123456789abcdef")
        return "0x" + String(d[Int(t >> 4)]) + String(d[Int(t & 15)])
    }

    public var description: String {
        switch self {
        case let .truncated(field): return "message truncated in field '\(field)'"
        case let .trailingBytes(n): return "\(n) unexpected bytes after the last field"
        case let .tooLarge(field, size, limit): return "field '\(field)' is \(size) bytes, limit \(limit)"
        case let .invalidUTF8(field): return "field '\(field)' is not valid UTF-8"
        case let .invalidValue(field, reason): return "field '\(field)': \(reason)"
        case let .tooMany(field, count, limit): return "field '\(field)' has \(count) entries, limit \(limit)"
        case let .unknownType(t): return "unknown message type \(Self.hex(t))"
        }
    }
}

/// Big-endian writer for message bodies.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xff)) }
    public mutating func u32(_ v: UInt32) {
        for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8((v >> UInt32(shift)) & 0xff)) }
    }
    public mutating func u64(_ v: UInt64) {
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v >> UInt64(shift)) & 0xff)) }
    }
    public mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }

    /// Overwrites 4 bytes at `offset` (used to fill in a length once it is known).
    public mutating func patchU32(at offset: Int, _ v: UInt32) {
        bytes[offset] = UInt8(v >> 24)
        bytes[offset + 1] = UInt8((v >> 16) & 0xff)
        bytes[offset + 2] = UInt8((v >> 8) & 0xff)
        bytes[offset + 3] = UInt8(v & 0xff)
    }
    public mutating func raw(_ b: ArraySlice<UInt8>) { bytes.append(contentsOf: b) }

    /// u8 length + UTF-8. Callers validate lengths before encoding (see Message.validate()).
    public mutating func str8(_ s: String) {
        let u = Array(s.utf8)
        u8(UInt8(min(u.count, 255)))
        raw(u.prefix(255))
    }

    /// u16 length + UTF-8.
    public mutating func str16(_ s: String) {
        let u = Array(s.utf8)
        u16(UInt16(min(u.count, 65535)))
        raw(u.prefix(65535))
    }

    /// u32 length + bytes.
    public mutating func bytes32(_ b: [UInt8]) {
        u32(UInt32(b.count))
        raw(b)
    }
}

/// Bounds-checked big-endian reader. Every read checks the remaining length first.
public struct ByteReader: Sendable {
    private let bytes: ArraySlice<UInt8>
    /// Absolute index of the next unread byte in `bytes`.
    private var index: Int

    public init(_ bytes: [UInt8]) {
        self.init(slice: bytes[...])
    }

    /// Reads a slice in place (no copy of the underlying storage).
    public init(slice: ArraySlice<UInt8>) {
        self.bytes = slice
        self.index = slice.startIndex
    }

    /// Bytes consumed so far.
    public var offset: Int { index - bytes.startIndex }
    public var remaining: Int { bytes.endIndex - index }

    mutating func take(_ n: Int, _ field: String) throws -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw DecodeError.truncated(field: field) }
        defer { index += n }
        return bytes[index..<index + n]
    }

    public mutating func u8(_ field: String) throws -> UInt8 { try take(1, field).first ?? 0 }

    public mutating func u16(_ field: String) throws -> UInt16 {
        let s = try take(2, field)
        return UInt16(s[s.startIndex]) << 8 | UInt16(s[s.startIndex + 1])
    }

    public mutating func u32(_ field: String) throws -> UInt32 {
        let s = try take(4, field)
        var v: UInt32 = 0
        for b in s { v = v << 8 | UInt32(b) }
        return v
    }

    public mutating func u64(_ field: String) throws -> UInt64 {
        let s = try take(8, field)
        var v: UInt64 = 0
        for b in s { v = v << 8 | UInt64(b) }
        return v
    }

    public mutating func raw(_ n: Int, _ field: String) throws -> [UInt8] { Array(try take(n, field)) }

    static func utf8(_ s: ArraySlice<UInt8>, _ field: String) throws -> String {
        guard let text = decodeUTF8(s) else { throw DecodeError.invalidUTF8(field: field) }
        return text
    }

    public mutating func str8(_ field: String, limit: Int = 255) throws -> String {
        let n = Int(try u8(field))
        guard n <= limit else { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
        return try Self.utf8(try take(n, field), field)
    }

    public mutating func str16(_ field: String, limit: Int = 65535) throws -> String {
        let n = Int(try u16(field))
        guard n <= limit else { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
        return try Self.utf8(try take(n, field), field)
    }

    /// u32 length + bytes; the length is checked against `limit` before anything is copied.
    public mutating func bytes32(_ field: String, limit: Int) throws -> [UInt8] {
        let n = Int(try u32(field))
        guard n <= limit else { throw DecodeError.tooLarge(field: field, size: n, limit: limit) }
        return Array(try take(n, field))
    }

    public func expectEnd() throws {
        if remaining != 0 { throw DecodeError.trailingBytes(remaining) }
    }
}
