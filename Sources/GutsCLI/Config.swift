import GutsNode
import GutsPolicy
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
    /// Peer scoring (guts-config(5), PEER SCORING).
    public var score = ScoreParameters()
    /// Admission before any cryptography.
    public var admission = AdmissionPolicy<ObjectIdentifier>.Limits()
    /// Per-connection budgets.
    public var rates = LinkGuard.Rates()

    public static let fileName = "config"
    static let scoreKeys = ScoreEvent.allCases.flatMap { e in ["weight", "cap", "half-life"].map { "score.\(e.rawValue).\($0)" } }
        + ["score.graylist", "score.disconnect", "score.ban", "ban.base", "ban.growth", "ban.max", "ban.address-max"]
    public static let keys = ["listen", "bootstrap", "max-connections", "connect-timeout", "handshake-timeout",
                              "keepalive-interval", "idle-timeout", "network",
                              "max-pending-handshakes", "max-pending-per-address", "handshake-rate", "handshake-burst",
                              "peer-message-rate", "peer-message-burst", "peer-byte-rate", "peer-byte-burst",
                              "peer-request-rate", "peer-request-burst"] + scoreKeys

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
            case "max-pending-handshakes": config.admission.maxPending = Int(try number(1...100_000))
            case "max-pending-per-address": config.admission.maxPendingPerGroup = Int(try number(1...100_000))
            case "handshake-rate": config.admission.groupRate = try number(0...1_000_000).nonZero
            case "handshake-burst": config.admission.groupBurst = try number(1...1_000_000)
            case "peer-message-rate": config.rates.messages = try number(1...1e9)
            case "peer-message-burst": config.rates.messageBurst = try number(1...1e9)
            case "peer-byte-rate": config.rates.bytes = try number(1024...1e12)
            case "peer-byte-burst": config.rates.byteBurst = try number(1024...1e12)
            case "peer-request-rate": config.rates.requests = try number(0.01...1e6)
            case "peer-request-burst": config.rates.requestBurst = try number(1...1e6)
            case "score.graylist": config.score.graylistThreshold = try number(-1e6...0)
            case "score.disconnect": config.score.disconnectThreshold = try number(-1e6...0)
            case "score.ban": config.score.banThreshold = try number(-1e6...0)
            case "ban.base": config.score.banBase = try number(1...31_536_000)
            case "ban.growth": config.score.banGrowth = try number(1...100)
            case "ban.max": config.score.banMax = try number(1...31_536_000)
            case "ban.address-max": config.score.addressBanMax = try number(0...3_600)
            case _ where key.hasPrefix("score."):
                let parts = key.split(separator: ".").map(String.init)
                guard parts.count == 3, let event = ScoreEvent(name: parts[1]), ["weight", "cap", "half-life"].contains(parts[2]) else {
                    let hint = ArgumentParser.closest(key, among: keys).map { "; did you mean '\($0)'?" } ?? ""
                    throw CommandError(.io, "\(origin):\(lineNumber): unknown key '\(key)'\(hint)")
                }
                switch parts[2] {
                case "weight": config.score[event].weight = event.isPenalty ? try number(-1e6...0) : try number(0...1e6)
                case "cap": config.score[event].cap = try number(0...ScoreParameters.penaltyCap)
                default: config.score[event].halfLife = try number(1...31_536_000)
                }
            default:
                let hint = ArgumentParser.closest(key, among: keys).map { "; did you mean '\($0)'?" } ?? ""
                throw CommandError(.io, "\(origin):\(lineNumber): unknown key '\(key)'\(hint)")
            }
        }
        if let problem = config.score.problems.first {
            throw CommandError(.io, "\(origin): peer scoring: \(problem)")
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

extension Double {
    /// nil for 0 (a rate of 0 turns the limit off).
    var nonZero: Double? { self == 0 ? nil : self }
}
