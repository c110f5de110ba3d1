import GutsControl
import GutsSupport

/// `guts peers`: the peers the local node is connected to, from its control socket.
enum PeersCommand: Command {
    static let name = "peers"
    static let summary = "list the peers the running node is connected to, with their scores"
    static let synopsis = "peers [--json]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else {
            let subs = GutsMain.commands.map { $0.name }.filter { $0.hasPrefix("peers ") }.map { String($0.dropFirst(6)) }
            let hint = ArgumentParser.closest(args.positionals[0], among: subs).map { "; did you mean 'guts peers \($0)'?" } ?? ""
            throw UsageError("peers takes no arguments (subcommands: \(subs.joined(separator: ", ")))\(hint)")
        }
        let client = try LocalNode.connect(context)
        defer { client.close() }
        guard case let .peers(list) = try PeerBookAccess.call(client, .peers, context) else {
            throw CommandError(.protocolError, "the node answered peers with something else")
        }
        let scores = self.scores(of: list, client, context)
        if context.json {
            for p in list {
                let score: JSONValue = scores[p.peerID].map { .double($0) } ?? .null
                if !context.outChecked(JSONValue.object(ControlCodec.json(p) + [("score", score)]).rendered) { break }
            }
            return .ok
        }
        if list.isEmpty {
            context.log("no peers connected")
            return .ok
        }
        let now = unixTime()
        var rows = [["PEER", "DIRECTION", "TRANSPORT", "KIND", "SCORE", "ADDRESS", "RTT", "CONNECTED", "BYTES IN", "BYTES OUT"]]
        for p in list {
            rows.append([p.peerID, p.direction.rawValue, p.transport, p.isClient ? "client" : "node",
                         scores[p.peerID].map(PeerScoreFormat.number) ?? "-", p.address,
                         p.roundTrip.map { Network.ms($0) + " ms" } ?? "-", formatDuration(now - p.connectedSince),
                         String(p.bytesIn), String(p.bytesOut)])
        }
        for line in table(rows, rightAligned: [4, 6, 7, 8, 9]) where !context.outChecked(line) { break }
        return .ok
    }

    /// The scores of the listed peers, by peer ID; empty (shown as "-") when the node
    /// cannot tell.
    static func scores(of list: [PeerSummary], _ client: ControlClient, _ context: Context) -> [String: Double] {
        let ids = Array(Set(list.map(\.peerID))).sorted().prefix(ControlSocket.maxScorePeers)
        guard !ids.isEmpty else { return [:] }
        do {
            guard case let .scores(s) = try PeerBookAccess.call(client, .scores(peers: Array(ids)), context) else { return [:] }
            var out: [String: Double] = [:]
            for p in s.peers { out[p.peerID] = p.score }
            return out
        } catch {
            context.debug("no scores: \(error)")
            return [:]
        }
    }

    /// Columns padded to their widest cell, two spaces apart; no trailing blanks.
    static func table(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { c in rows.map { c < $0.count ? $0[c].count : 0 }.max() ?? 0 }
        return rows.map { row in
            var line = ""
            for (c, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                if c > 0 { line += "  " }
                line += rightAligned.contains(c) ? pad + cell : (c == row.count - 1 ? cell : cell + pad)
            }
            return line
        }
    }
}
