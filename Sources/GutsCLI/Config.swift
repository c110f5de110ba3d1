import GutsSupport

/// The optional `config` file in the state directory (guts-config(5)):
/// `key = value` lines, `#` comments, blank lines ignored, repeatable `bootstrap`.
public struct NodeConfig: Equatable, Sendable {
    public var listen = "127.0.0.1:9000"
    public var bootstrap: [String] = []
    public var maxConnections = 128
    public var connectTimeout = 10.0
    public var handshakeTimeout = 10.0
    public var keepaliveInterval = 30.0
    public var idleTimeout = 90.0
    public var network = ""

    public static let fileName = "config"
    public static let keys = ["listen", "bootstrap", "max-connections", "connect-timeout", "handshake-timeout",
                              "keepalive-interval", "idle-timeout", "network"]

    public init() {}

    /// Parses config text; `origin` names the file in error messages.
    public static func parse(_ text: String, origin: String) throws -> NodeConfig {
        var config = NodeConfig()
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = rawLine.trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw CommandError(.io, "\(origin):\(lineNumber): expected 'key = value'")
            }
            let key = String(line[..<eq]).trimmingSpaces()
            let value = String(line[line.index(after: eq)...]).trimmingSpaces()
            func number(_ range: ClosedRange<Double>) throws -> Double {
                guard let v = Double(value), v.isFinite, range.contains(v) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): \(key) must be a number from \(formatNumber(range.lowerBound)) to \(formatNumber(range.upperBound))")
                }
                return v
            }
            switch key {
            case "listen": config.listen = value
            case "bootstrap": config.bootstrap.append(value)
            case "max-connections": config.maxConnections = Int(try number(1...100_000))
            case "connect-timeout": config.connectTimeout = try number(0.1...3600)
            case "handshake-timeout": config.handshakeTimeout = try number(0.1...3600)
            case "keepalive-interval": config.keepaliveInterval = try number(1...86400)
            case "idle-timeout": config.idleTimeout = try number(1...86400)
            case "network":
                guard value.utf8.count <= 64 else { throw CommandError(.io, "\(origin):\(lineNumber): network ID longer than 64 bytes") }
                config.network = value
            default:
                let hint = ArgumentParser.closest(key, among: keys).map { "; did you mean '\($0)'?" } ?? ""
                throw CommandError(.io, "\(origin):\(lineNumber): unknown key '\(key)'\(hint)")
            }
        }
        return config
    }

    /// Loads `<home>/config` if present, else defaults.
    public static func load(home: String) throws -> NodeConfig {
        let path = home + "/" + fileName
        guard Files.exists(path) else { return NodeConfig() }
        let text: String
        do { text = try Files.readString(path, limit: 1 << 20) } catch { throw CommandError(.io, "\(error)") }
        return try parse(text, origin: path)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        let scalars = Array(unicodeScalars)
        var start = 0
        var end = scalars.count
        while start < end, scalars[start] == " " || scalars[start] == "\t" || scalars[start] == "\r" { start += 1 }
        while end > start, scalars[end - 1] == " " || scalars[end - 1] == "\t" || scalars[end - 1] == "\r" { end -= 1 }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[start..<end])
        return String(out)
    }
}
