import GutsCrypto
import GutsPolicy
import GutsSupport

/// A point in the DHT's 256-bit key space: a node ID (BLAKE2b-256 of the node's Ed25519
/// public key) or a record key (a 32-byte repository ID, or a node ID for peer records).
///
/// Held as four big-endian words so XOR distance and comparison are cheap. Distances are
/// themselves `NodeID`s; `<` orders them as 256-bit unsigned integers.
public struct NodeID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public static let bitCount = 256

    public let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public init(words w0: UInt64, _ w1: UInt64, _ w2: UInt64, _ w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// Nil unless `bytes` is exactly 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        let words = bytes.withUnsafeBytes { raw in
            (0..<4).map { UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)) }
        }
        self.init(words: words[0], words[1], words[2], words[3])
    }

    /// Nil unless `bytes` is exactly 32 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        var words = [UInt64](repeating: 0, count: 4)
        for (i, b) in bytes.enumerated() { words[i >> 3] = words[i >> 3] << 8 | UInt64(b) }
        self.init(words: words[0], words[1], words[2], words[3])
    }

    /// The node ID of an Ed25519 public key: BLAKE2b-256 of its 32 bytes.
    public init(publicKey: [UInt8]) {
        let digest = BLAKE2b.hash(publicKey, outputLength: Self.byteCount)
        // A 32-byte digest always converts.
        self = NodeID(bytes: digest) ?? NodeID(words: 0, 0, 0, 0)
    }

    public static let zero = NodeID(words: 0, 0, 0, 0)

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for w in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: w >> UInt64(shift))) }
        }
        return out
    }

    /// XOR distance to `other`.
    @inline(__always)
    public func distance(to other: NodeID) -> NodeID {
        NodeID(words: w0 ^ other.w0, w1 ^ other.w1, w2 ^ other.w2, w3 ^ other.w3)
    }

    /// Number of leading zero bits (256 for zero).
    public var leadingZeroBits: Int {
        if w0 != 0 { return w0.leadingZeroBitCount }
        if w1 != 0 { return 64 + w1.leadingZeroBitCount }
        if w2 != 0 { return 128 + w2.leadingZeroBitCount }
        if w3 != 0 { return 192 + w3.leadingZeroBitCount }
        return 256
    }

    /// Length of the prefix shared with `other` (256 when equal). A contact with common
    /// prefix length `i` belongs in k-bucket `i`.
    public func commonPrefixLength(with other: NodeID) -> Int { distance(to: other).leadingZeroBits }

    /// Bit `i` counted from the most significant (0...255).
    public func bit(_ i: Int) -> Bool {
        let word = [w0, w1, w2, w3][i >> 6]
        return (word >> UInt64(63 - (i & 63))) & 1 == 1
    }

    /// A uniformly random ID sharing exactly the first `prefix` bits with `self` (bit
    /// `prefix` flipped, the rest random): a target inside k-bucket `prefix`.
    public func randomInBucket(_ prefix: Int, using rng: inout some RandomNumberGenerator) -> NodeID {
        precondition(prefix >= 0 && prefix < 256, "bucket index out of range")
        var words = [w0, w1, w2, w3]
        var random = [rng.next(), rng.next(), rng.next(), rng.next()]
        // Flip bit `prefix` relative to self and keep the bits before it.
        for i in 0..<4 {
            let start = i * 64
            let keep: UInt64
            if prefix >= start + 64 {
                keep = .max
            } else if prefix <= start {
                keep = 0
            } else {
                keep = UInt64.max << UInt64(64 - (prefix - start))
            }
            random[i] = (words[i] & keep) | (random[i] & ~keep)
        }
        let wi = prefix >> 6
        let mask = UInt64(1) << UInt64(63 - (prefix & 63))
        random[wi] = (random[wi] & ~mask) | (~words[wi] & mask)
        words = random
        return NodeID(words: words[0], words[1], words[2], words[3])
    }

    public static func < (a: NodeID, b: NodeID) -> Bool {
        if a.w0 != b.w0 { return a.w0 < b.w0 }
        if a.w1 != b.w1 { return a.w1 < b.w1 }
        if a.w2 != b.w2 { return a.w2 < b.w2 }
        return a.w3 < b.w3
    }

    /// 64 hex digits.
    public var description: String { Hex.encode(bytes) }
    /// The first 12 hex digits, for logs.
    public var short: String { String(description.prefix(12)) }
}

/// A listening address in the DHT: an IP address and a port. Host names never appear in
/// the DHT, so an address is always literal and its scope is known.
public struct DHTAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let ip: IPAddress
    public let port: UInt16
    /// A UDP port serving QUIC (only in signed records); else a TCP port.
    public let quic: Bool

    /// Nil for port 0 and for addresses no peer can dial: unspecified (`0.0.0.0/8`, `::`)
    /// and multicast (`224.0.0.0/4`, `ff00::/8`).
    public init?(ip: IPAddress, port: UInt16, quic: Bool = false) {
        guard port != 0 else { return nil }
        switch ip {
        case let .v4(v):
            guard v >> 24 != 0, v >> 28 != 0xE else { return nil }
        case let .v6(hi, lo):
            guard !(hi == 0 && lo == 0), hi >> 56 != 0xFF else { return nil }
        }
        self.ip = ip
        self.port = port
        self.quic = quic
    }

    /// This address as TCP or QUIC.
    public func with(quic: Bool) -> DHTAddress {
        DHTAddress(ip: ip, port: port, quic: quic) ?? self
    }

    /// Parses `A.B.C.D:PORT` or `[V6]:PORT` (no host names, no zone), with `quic/` before
    /// a QUIC address.
    public init?(_ text: some StringProtocol) {
        var s = String(text)
        let quic = s.hasPrefix("quic/")
        if quic { s = String(s.dropFirst(5)) }
        guard s.utf8.count <= IPAddress.maxTextLength + 8, !s.contains("%") else { return nil }
        let host: Substring
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            guard after.hasPrefix(":") else { return nil }
            portText = after.dropFirst()
            guard host.contains(":") else { return nil }
        } else {
            guard let colon = s.firstIndex(of: ":"), !s[s.index(after: colon)...].contains(":") else { return nil }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        }
        guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              portText == "0" || !portText.hasPrefix("0"),
              let port = Int(portText), port <= 65535, let ip = IPAddress(host) else { return nil }
        self.init(ip: ip, port: UInt16(port), quic: quic)
    }

    public var scope: AddressScope { ip.scope }
    public var group: AddressGroup { ip.group }

    /// `A.B.C.D:PORT` or `[V6]:PORT`, after `quic/` for a QUIC address.
    public var description: String {
        let prefix = quic ? "quic/" : ""
        switch ip {
        case .v4: return "\(prefix)\(ip):\(port)"
        case .v6: return "\(prefix)[\(ip)]:\(port)"
        }
    }

    public static func < (a: DHTAddress, b: DHTAddress) -> Bool {
        a.ip != b.ip ? a.ip < b.ip : (a.port != b.port ? a.port < b.port : !a.quic && b.quic)
    }
}

/// A DHT node as others can reach it: its Ed25519 public key (which the handshake proves),
/// the node ID derived from the key, and one listening address.
public struct DHTContact: Hashable, Sendable, CustomStringConvertible {
    public let publicKey: [UInt8]
    public let id: NodeID
    public let address: DHTAddress

    /// Nil unless `publicKey` is 32 bytes.
    public init?(publicKey: [UInt8], address: DHTAddress) {
        guard publicKey.count == Ed25519KeyPair.publicKeyLength else { return nil }
        self.publicKey = publicKey
        self.id = NodeID(publicKey: publicKey)
        self.address = address
    }

    /// For callers that already computed the ID (the simulation); `id` must be
    /// `NodeID(publicKey: publicKey)`.
    init(publicKey: [UInt8], id: NodeID, address: DHTAddress) {
        self.publicKey = publicKey
        self.id = id
        self.address = address
    }

    public static func == (a: DHTContact, b: DHTContact) -> Bool { a.id == b.id && a.address == b.address }
    public func hash(into h: inout Hasher) {
        h.combine(id)
        h.combine(address)
    }

    public var description: String { "\(id.short)@\(address)" }
}

/// The time as the DHT engine sees it: a monotonic instant for timeouts and schedules, and
/// wall-clock Unix seconds for the expiry times inside signed records (which travel between
/// nodes, so they cannot use a monotonic clock).
public struct DHTTime: Sendable, Equatable {
    public var monotonic: Instant
    public var unixSeconds: UInt64

    public init(monotonic: Instant, unixSeconds: UInt64) {
        self.monotonic = monotonic
        self.unixSeconds = unixSeconds
    }
}
