import GutsCLI

/// The node's config file (guts-config(5)).
///
/// Input: the file text (any bytes, decoded as UTF-8 with replacement as the loader does).
///
/// Properties: an accepted config holds only values inside the documented ranges.
func fuzzConfig(_ data: [UInt8]) {
    guard let c = try? NodeConfig.parse(String(decoding: data, as: UTF8.self), origin: "config") else { return }
    fuzzCheck((1...100_000).contains(c.maxConnections), "max-connections \(c.maxConnections)")
    fuzzCheck((0.1...3600).contains(c.connectTimeout) && (0.1...3600).contains(c.handshakeTimeout), "timeouts out of range")
    fuzzCheck((1...86400).contains(c.keepaliveInterval) && (1...86400).contains(c.idleTimeout), "intervals out of range")
    fuzzCheck(c.network.utf8.count <= 64, "network ID of \(c.network.utf8.count) bytes")
}
