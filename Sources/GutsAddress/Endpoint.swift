import GutsIdentity

/// The transports a peer can be reached over.
public enum TransportKind: String, Sendable, CaseIterable {
    case tcp, quic
}

/// What is known of a peer's QUIC address beside its TCP address.
public enum QUICAdvertisement: Equatable, Sendable {
    /// Nothing (an address the user typed): QUIC is tried on the same port number.
    case unknown
    /// The peer advertised no QUIC (Hello, DHT record): TCP only.
    case none
    /// The peer advertised QUIC on this UDP port, at the same host.
    case port(Int)
}

/// Where to reach a peer: `[PEERID@][quic/|tcp/]HOST[:PORT]`, with HOST an IPv4 address, a
/// bracketed IPv6 address (`[::1]:9000`) or a host name. `quic/` names the node's QUIC
/// (UDP) port, `tcp/` its TCP port; without either, both are tried (QUIC first).
public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
    public static let defaultPort = 9000

    public var host: String
    public var port: Int
    /// The identity the peer must prove, when given.
    public var peer: PeerID?
    /// The transport the address names, when it names one.
    public var transport: TransportKind?
    /// The peer's QUIC address as it advertised it, for an address without a transport.
    public var quic: QUICAdvertisement

    public init(host: String, port: Int, peer: PeerID? = nil, transport: TransportKind? = nil, quic: QUICAdvertisement = .unknown) {
        self.host = host
        self.port = port
        self.peer = peer
        self.transport = transport
        self.quic = quic
    }

    /// The port to try QUIC on (nil: the peer advertised none).
    public var quicPort: Int? {
        switch quic {
        case .unknown: return port
        case .none: return nil
        case let .port(p): return p
        }
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible, Sendable {
        case invalid(String, String)
        public var description: String {
            switch self {
            case let .invalid(text, why): return "invalid address '\(text)': \(why)"
            }
        }
    }

    /// Parses `[PEERID@]HOST[:PORT]`. `allowPortZero` for listen addresses.
    public static func parse(_ text: String, defaultPort: Int = Endpoint.defaultPort, allowPortZero: Bool = false) throws -> Endpoint {
        var rest = Substring(text)
        var peer: PeerID?
        if let at = rest.firstIndex(of: "@") {
            let idText = rest[..<at]
            guard let id = PeerID(idText) else {
                throw ParseError.invalid(text, "'\(idText)' is not a peer ID: \(PeerID.problem(idText) ?? "expected gt followed by 56 base32 characters")")
            }
            peer = id
            rest = rest[rest.index(after: at)...]
        }
        var transport: TransportKind?
        for kind in TransportKind.allCases where rest.hasPrefix(kind.rawValue + "/") {
            transport = kind
            rest = rest.dropFirst(kind.rawValue.count + 1)
        }
        var host: Substring
        var portText: Substring?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw ParseError.invalid(text, "missing ']' after IPv6 address") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ParseError.invalid(text, "expected ':PORT' after ']'") }
                portText = after.dropFirst()
            }
        } else if rest.filter({ $0 == ":" }).count > 1 {
            host = rest  // bare IPv6 without port
        } else if let colon = rest.firstIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = rest
        }
        guard !host.isEmpty else { throw ParseError.invalid(text, "missing host") }
        guard host.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == ":" || $0 == "%" || $0 == "_" }) else {
            throw ParseError.invalid(text, "bad characters in host")
        }
        var port = defaultPort
        if let portText {
            guard let p = Int(portText), p >= (allowPortZero ? 0 : 1), p <= 65535 else {
                throw ParseError.invalid(text, "port must be a number from \(allowPortZero ? 0 : 1) to 65535")
            }
            port = p
        }
        return Endpoint(host: String(host), port: port, peer: peer, transport: transport)
    }

    /// `host:port`, bracketing IPv6 literals.
    public var address: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public var description: String {
        (peer.map { "\($0)@" } ?? "") + (transport.map { $0.rawValue + "/" } ?? "") + address
    }
}
