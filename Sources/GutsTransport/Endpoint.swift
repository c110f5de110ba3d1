import NIOCore

/// Renders socket addresses as `a.b.c.d:port` or `[v6]:port`.
public enum PeerConnectionAddress {
    public static func render(_ address: SocketAddress) -> String { PeerConnection.render(address) }
}
