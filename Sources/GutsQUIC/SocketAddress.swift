import Glibc

/// An IP address and UDP port as the kernel and ngtcp2 see it (a sockaddr), without any
/// I/O library: the engine is sans-I/O and tests invent addresses.
public struct QUICSocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The sockaddr_in or sockaddr_in6 bytes.
    public let bytes: [UInt8]

    public init?(sockaddrBytes: [UInt8]) {
        guard sockaddrBytes.count == MemoryLayout<sockaddr_in>.size || sockaddrBytes.count == MemoryLayout<sockaddr_in6>.size else { return nil }
        bytes = sockaddrBytes
    }

    /// From a numeric IPv4 or IPv6 address and a port.
    public init?(ip: String, port: Int) {
        guard (0...65535).contains(port) else { return nil }
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, ip, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            bytes = withUnsafeBytes(of: v4) { Array($0) }
            return
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            bytes = withUnsafeBytes(of: v6) { Array($0) }
            return
        }
        return nil
    }

    public var isIPv6: Bool { bytes.count == MemoryLayout<sockaddr_in6>.size }

    public var port: Int {
        Int(UInt16(bytes[2]) << 8 | UInt16(bytes[3]))
    }

    /// The numeric address without the port.
    public var ip: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let ok: Bool = bytes.withUnsafeBytes { raw in
            if isIPv6 {
                let a = raw.loadUnaligned(as: sockaddr_in6.self)
                var addr = a.sin6_addr
                return inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil
            }
            let a = raw.loadUnaligned(as: sockaddr_in.self)
            var addr = a.sin_addr
            return inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "?" }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `a.b.c.d:port` or `[v6]:port`.
    public var description: String { isIPv6 ? "[\(ip)]:\(port)" : "\(ip):\(port)" }
}
