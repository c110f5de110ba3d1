import GutsControl
import GutsIdentity
import GutsNode
import GutsPolicy
import GutsSupport

/// `guts peers score`: what the node thinks of its peers, live from the running node or
/// from the peer book when none runs.
enum PeersScoreCommand: Command {
    static let name = "peers score"
    static let summary = "show peers' scores, states and bans (from the running node, else from the peer book)"
    static let synopsis = "peers score [PEERID ...] [--json]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        var ids: [PeerID] = []
        for text in args.positionals {
            guard let id = PeerID(text) else {
                throw UsageError("'\(text.prefix(80))' is not a peer ID: \(PeerID.problem(text) ?? "invalid")")
            }
            if !ids.contains(id) { ids.append(id) }
        }
        guard ids.count <= ControlSocket.maxScorePeers else { throw UsageError("at most \(ControlSocket.maxScorePeers) peer IDs at once") }
        let scores: PeerScores
        switch try PeerBookAccess.source(context) {
        case let .node(client):
            defer { client.close() }
            guard case let .scores(s) = try PeerBookAccess.call(client, .scores(peers: ids.map(\.description)), context) else {
                throw CommandError(.protocolError, "the node answered scores with something else")
            }
            scores = s
            context.log("scores from the running node")
        case .book:
            let config = try NodeConfig.load(home: context.homePath)
            let file = PeerBookAccess.path(context.homePath)
            let book = try PeerBookAccess.read(home: context.homePath, parameters: config.score)
            scores = PeerScoreReports.from(book: book ?? PeerBook(epoch: PeerBookAccess.epoch(), parameters: config.score), peers: ids)
            context.log("scores from the peer book, no node is running (\(book == nil ? "there is no \(file) yet" : file))")
        }
        if context.json {
            for p in scores.peers where !context.outChecked(JSONValue.object(ControlCodec.json(p)).rendered) { return .ok }
            for b in ids.isEmpty ? scores.addressBans : [] where !context.outChecked(JSONValue.object(ControlCodec.json(b)).rendered) {
                return .ok
            }
            return .ok
        }
        if scores.peers.isEmpty && (scores.addressBans.isEmpty || !ids.isEmpty) {
            context.log("no peers known and no address banned")
            return .ok
        }
        var lines: [String] = []
        if !scores.peers.isEmpty {
            var rows = [["PEER", "SCORE", "STATE", "LAST SEEN", "ADDRESSES", "COMPONENTS"]]
            for p in scores.peers {
                rows.append([p.peerID, PeerScoreFormat.number(p.score), PeerScoreFormat.state(p),
                             p.lastSeen.map(PeerScoreFormat.rfc3339) ?? "-",
                             p.addresses.isEmpty ? "-" : p.addresses.joined(separator: ","), PeerScoreFormat.components(p)])
            }
            lines += PeersCommand.table(rows, rightAligned: [1])
        }
        // Address bans are listed when no peer was named.
        let addressBans = ids.isEmpty ? scores.addressBans : []
        if !addressBans.isEmpty {
            if !lines.isEmpty { lines.append("") }
            var rows = [["ADDRESS", "STATE", "BY"]]
            for b in addressBans {
                rows.append([b.prefix, PeerScoreFormat.banned(until: b.bannedUntil), b.automatic ? "score" : "hand"])
            }
            lines += PeersCommand.table(rows, rightAligned: [])
        }
        for line in lines where !context.outChecked(line) { break }
        return .ok
    }
}

/// `guts peers ban`: refuse a peer ID or an address / network, at once on the running
/// node, else in the peer book for the next node to start.
enum PeersBanCommand: Command {
    static let name = "peers ban"
    static let summary = "ban a peer ID or an address/network, on the running node or in the peer book"
    static let synopsis = "peers ban PEERID|ADDR[/PREFIX] [--for DURATION]"
    static let options = [
        OptionSpec("for", value: "DURATION", help: "how long: 30s, 10m, 2h, 7d (default: until unbanned)"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        let target = try PeersUnbanCommand.target(args, "ban")
        let seconds = try args.value("for").map { text -> Double in
            guard let v = parseDuration(text) else {
                throw UsageError("--for: expected a duration such as 30s, 10m, 2h or 7d (1 second to 3650 days), got '\(text.prefix(40))'")
            }
            return v
        }
        let until = seconds.map { unixTime() + $0 }
        let applied: String
        switch try PeerBookAccess.source(context) {
        case let .node(client):
            defer { client.close() }
            guard case let .changed(changed) = try PeerBookAccess.call(client, .ban(target: target.description, seconds: seconds), context) else {
                throw CommandError(.protocolError, "the node answered ban with something else")
            }
            guard changed else { throw tableFull() }
            applied = "applied by the running node, which closed what it covers"
        case .book:
            let home = try context.home()
            let config = try NodeConfig.load(home: home)
            let changed = try PeerBookAccess.edit(home: home, parameters: config.score) { book, now in
                book.ban(target, for: seconds, now: now)
            }
            guard changed else { throw tableFull() }
            applied = "written to the peer book \(PeerBookAccess.path(home)), no node is running (the next node to start honours it)"
        }
        if context.json {
            context.out(JSON.object(["target": .string(target.description), "banned_until": until.map { .double($0.rounded()) } ?? .null,
                                     "permanent": .bool(until == nil), "changed": .bool(true)]))
        } else {
            context.out("banned \(target) " + (until.map { "until " + PeerScoreFormat.rfc3339($0) } ?? "until unbanned"))
        }
        context.log(applied)
        return .ok
    }

    static func tableFull() -> CommandError {
        CommandError(.io, "cannot ban: the peer book already holds \(PeerBook.Limits().maxAddressBans) address bans made by hand; unban some first")
    }

    /// `N` seconds, or `N` followed by `s`, `m`, `h`, `d` or `w`; 1 second to 3650 days.
    static func parseDuration(_ text: String) -> Double? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        var digits = Substring(text)
        var unit = 1.0
        if let last = text.last, let u = units[last] {
            unit = u
            digits = digits.dropLast()
        }
        guard (1...12).contains(digits.utf8.count), digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let n = Double(digits) else {
            return nil
        }
        let seconds = n * unit
        guard seconds >= 1, seconds <= ControlSocket.maxBanSeconds else { return nil }
        return seconds
    }
}

/// `guts peers unban`: lift a ban, at once on the running node, else in the peer book.
enum PeersUnbanCommand: Command {
    static let name = "peers unban"
    static let summary = "lift the ban of a peer ID or an address/network"
    static let synopsis = "peers unban PEERID|ADDR[/PREFIX]"
    static let options: [OptionSpec] = []

    /// The one positional argument as a ban target; a usage error when malformed.
    static func target(_ args: ParsedArguments, _ verb: String) throws -> BanTarget {
        guard args.positionals.count == 1 else {
            throw UsageError("peers \(verb) needs exactly one PEERID or ADDR[/PREFIX]")
        }
        do {
            return try BanTarget.parse(args.positionals[0])
        } catch {
            throw UsageError("peers \(verb): \(error.description) (expected a peer ID, an IP address or ADDR/PREFIX)")
        }
    }

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        let target = try target(args, "unban")
        let changed: Bool
        let applied: String
        switch try PeerBookAccess.source(context) {
        case let .node(client):
            defer { client.close() }
            guard case let .changed(c) = try PeerBookAccess.call(client, .unban(target: target.description), context) else {
                throw CommandError(.protocolError, "the node answered unban with something else")
            }
            changed = c
            applied = "applied by the running node"
        case .book:
            let home = context.homePath
            if Files.exists(PeerBookAccess.path(home)) {
                let config = try NodeConfig.load(home: home)
                changed = try PeerBookAccess.edit(home: home, parameters: config.score) { book, now in
                    book.unban(target, now: now)
                }
            } else {
                changed = false
            }
            applied = "written to the peer book \(PeerBookAccess.path(home)), no node is running"
        }
        if context.json {
            context.out(JSON.object(["target": .string(target.description), "changed": .bool(changed)]))
        } else if changed {
            switch target {
            case .peer: context.out("unbanned \(target) (its record is forgiven: score back to 0)")
            case .prefix: context.out("unbanned \(target)")
            }
        } else {
            context.out("\(target) is not banned; nothing changed")
        }
        if changed { context.log(applied) }
        return changed ? .ok : .noReply
    }
}
