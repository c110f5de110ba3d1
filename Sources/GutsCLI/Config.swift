import GutsAddress
import GutsDHT
import GutsPolicy
import GutsGit
import GutsSupport
import GutsSync

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
    public var rates = LinkRates()
    /// Sessions one identity may hold at once.
    public var maxSessionsPerPeer = 2
    // Limits on data from peers (guts sync) and on packs checked by objects verify.
    public var maxObjectSize = ObjectLimits.default.maxObjectSize
    public var maxDeltaDepth = ObjectLimits.default.maxDeltaDepth
    public var workFactor = ObjectLimits.default.workFactor
    public var maxWork = ObjectLimits.default.maxWork
    public var maxPackSize = SyncDefaults.maxPackBytes
    public var minFreeDisk = SyncDefaults.minFreeBytes
    /// Seconds a whole sync may take; 0 for no deadline.
    public var syncDeadline = SyncDefaults.deadline
    /// How known_peers is used (guts-known-peers(5)).
    public var knownPeers = KnownPeersMode.acceptNew
    /// `alias.NAME = [PEERID@]ADDR` lines: names usable wherever a peer is accepted.
    public var aliases: [String: Endpoint] = [:]
    /// Seconds: `sync` fails when the newest signed state is older; 0 for no limit.
    public var maxSignedAge = 0.0
    /// Seconds after which a running node signs its unchanged refs again; 0 never.
    public var resignInterval = 86_400.0
    /// Seconds between catch-up syncs of `listen --mirror` repositories; 0 for none.
    public var mirrorInterval = 300.0
    /// A sync that leaves more packs than this consolidates them; 0 never.
    public var maxPacks = PackMaintenance.defaultMaxPacks
    /// Addresses (IP:PORT) `listen` advertises in the DHT; empty: the listen address.
    public var announceAddresses: [String] = []
    /// Whether `listen` takes part in the DHT.
    public var dht = true
    /// Which transport dials use when neither `--transport` nor GUTS_TRANSPORT says:
    /// "auto" (QUIC first, TCP 250 ms later), "tcp" or "quic".
    public var transport = "auto"

    public static let fileName = "config"
    static let scoreKeys = ScoreEvent.allCases.flatMap { e in ["weight", "cap", "half-life"].map { "score.\(e.rawValue).\($0)" } }
        + ["score.graylist", "score.disconnect", "score.ban", "ban.base", "ban.growth", "ban.max", "ban.address-max"]
    public static let keys = ["listen", "bootstrap", "max-connections", "connect-timeout", "handshake-timeout",
                              "keepalive-interval", "idle-timeout", "network", "max-object-size", "max-delta-depth",
                              "work-factor", "max-work", "max-pack-size", "min-free-disk", "sync-deadline",
                              "max-pending-handshakes", "max-pending-per-address", "handshake-rate", "handshake-burst",
                              "peer-message-rate", "peer-message-burst", "peer-byte-rate", "peer-byte-burst",
                              "peer-request-rate", "peer-request-burst", "max-sessions-per-peer",
                              "max-signed-age", "resign-interval", "mirror-interval", "max-packs", "known-peers",
                              "announce-address", "dht", "transport"] + scoreKeys

    /// Ranges of the limit settings, shared by the config keys and the options.
    static let objectSizeRange = 1...(1 << 40)
    static let deltaDepthRange = 1...10_000
    static let workFactorRange = 0...1_000_000
    static let maxWorkRange = 1...(1 << 60)
    static let packSizeRange = 1...(1 << 50)
    static let freeDiskRange = 0...(1 << 50)
    static let deadlineRange = 0.0...604_800
    static let signedAgeRange = 0.0...315_360_000
    /// --mirror-interval: 0 (off) or 1 s to a week.
    static let mirrorIntervalRange = 1.0...604_800

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
                    throw CommandError(.io, "\(origin):\(lineNumber): \(key) = '\(value)': must be a number from \(formatNumber(range.lowerBound)) to \(formatNumber(range.upperBound))")
                }
                return v
            }
            func bytes(_ range: ClosedRange<Int>) throws -> Int {
                guard let v = parseByteCount(value), range.contains(v) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): \(key) = '\(value)': must be a byte count from \(range.lowerBound) to \(range.upperBound) (suffixes K, M, G, T allowed)")
                }
                return v
            }
            func interval() throws -> Double {
                guard let v = Double(value), v.isFinite, v == 0 || mirrorIntervalRange.contains(v) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): \(key) = '\(value)': must be 0 (off) or a number of seconds from 1 to 604800")
                }
                return v
            }
            func integer(_ range: ClosedRange<Int>) throws -> Int {
                guard let v = Int(value), range.contains(v) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): \(key) = '\(value)': must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                }
                return v
            }
            switch key {
            case "listen":
                do { _ = try Endpoint.parse(value, allowPortZero: true) } catch {
                    throw CommandError(.io, "\(origin):\(lineNumber): listen: \(error)")
                }
                config.listen = value
            case "announce-address":
                guard DHTAddress(value) != nil else {
                    throw CommandError(.io, "\(origin):\(lineNumber): announce-address = '\(value)': expected [quic/]IP:PORT (an IP literal, not unspecified or multicast, port not 0)")
                }
                config.announceAddresses.append(value)
            case "transport":
                guard ["auto", "tcp", "quic"].contains(value) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): transport = '\(value.prefix(40))': must be auto, tcp or quic")
                }
                config.transport = value
            case "dht":
                switch value {
                case "on", "yes", "true": config.dht = true
                case "off", "no", "false": config.dht = false
                default: throw CommandError(.io, "\(origin):\(lineNumber): dht = '\(value)': must be on or off")
                }
            case "bootstrap":
                do { _ = try Endpoint.parse(value) } catch {
                    throw CommandError(.io, "\(origin):\(lineNumber): bootstrap: \(error)")
                }
                config.bootstrap.append(value)
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
            case "max-sessions-per-peer": config.maxSessionsPerPeer = Int(try number(1...1_000_000))
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
            case "max-object-size": config.maxObjectSize = try bytes(objectSizeRange)
            case "max-delta-depth": config.maxDeltaDepth = try integer(deltaDepthRange)
            case "work-factor": config.workFactor = try integer(workFactorRange)
            case "max-work": config.maxWork = try bytes(maxWorkRange)
            case "max-pack-size": config.maxPackSize = try bytes(packSizeRange)
            case "min-free-disk": config.minFreeDisk = try bytes(freeDiskRange)
            case "sync-deadline": config.syncDeadline = try number(deadlineRange)
            case "max-packs": config.maxPacks = try integer(0...100_000)
            case "max-signed-age": config.maxSignedAge = try number(signedAgeRange)
            case "resign-interval": config.resignInterval = try number(signedAgeRange)
            case "mirror-interval": config.mirrorInterval = try interval()
            case "known-peers":
                guard let mode = KnownPeersMode(rawValue: value) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): known-peers must be accept-new, strict or off")
                }
                config.knownPeers = mode
            case _ where key.hasPrefix("alias."):
                let name = String(key.dropFirst(6))
                guard isAliasName(name) else {
                    throw CommandError(.io, "\(origin):\(lineNumber): invalid alias name '\(name.prefix(80))': 1 to 64 of A-Z a-z 0-9 _ -, starting with a letter")
                }
                guard config.aliases[name] == nil else { throw CommandError(.io, "\(origin):\(lineNumber): alias '\(name)' is defined twice") }
                do {
                    config.aliases[name] = try Endpoint.parse(value)
                } catch {
                    throw CommandError(.io, "\(origin):\(lineNumber): alias.\(name): \(error)")
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

    /// Alias names: letters, digits, '_' and '-', starting with a letter; no '.', ':' or
    /// '@', so an alias never looks like an IP address, a domain name or PEERID@ADDR.
    static func isAliasName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), let first = name.utf8.first,
              (first | 0x20) >= UInt8(ascii: "a"), (first | 0x20) <= UInt8(ascii: "z") else { return false }
        return name.utf8.allSatisfy { b in
            ((b | 0x20) >= UInt8(ascii: "a") && (b | 0x20) <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }

    /// The object limits and work budget for untrusted data: the config's, overridden
    /// by the options `--max-object-size`, `--max-delta-depth`, `--work-factor` and
    /// `--max-work` where the command has them.
    func objectLimits(_ args: ParsedArguments) throws -> ObjectLimits {
        var limits = ObjectLimits.default
        limits.maxObjectSize = try args.bytes("max-object-size", in: Self.objectSizeRange) ?? maxObjectSize
        limits.maxDeltaDepth = try args.int("max-delta-depth", in: Self.deltaDepthRange) ?? maxDeltaDepth
        limits.workFactor = try args.int("work-factor", in: Self.workFactorRange) ?? workFactor
        limits.maxWork = try args.bytes("max-work", in: Self.maxWorkRange) ?? maxWork
        return limits
    }

    /// The options that set the limits of `objectLimits`.
    static let limitOptions = [
        OptionSpec("max-object-size", value: "BYTES", help: "largest object accepted (default 100M; config max-object-size)"),
        OptionSpec("max-delta-depth", value: "N", help: "longest delta chain accepted (default 64; config max-delta-depth)"),
        OptionSpec("work-factor", value: "N", help: "bytes inflated, and bytes built from deltas, allowed per pack byte (default 64, 0 for no limit; config work-factor)"),
        OptionSpec("max-work", value: "BYTES", help: "cap on each kind of work per pack, whatever its size (default 64G; config max-work)"),
    ]

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
