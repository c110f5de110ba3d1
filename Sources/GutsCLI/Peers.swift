import GutsControl
import GutsSupport

/// `guts peers`: the peers the local node is connected to, from its control socket.
enum PeersCommand: Command {
    static let name = "peers"
    static let summary = "list the peers the running node is connected to"
    static let synopsis = "peers [--json]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("peers takes no arguments") }
        guard case let .peers(list) = try LocalNode.call(context, .peers) else {
            throw CommandError(.protocolError, "the node answered peers with something else")
        }
        if context.json {
            for p in list where !context.outChecked(JSONValue.object(ControlCodec.json(p)).rendered) { break }
            return .ok
        }
        if list.isEmpty {
            context.log("no peers connected")
            return .ok
        }
        let now = unixTime()
        var rows = [["PEER", "DIRECTION", "KIND", "ADDRESS", "RTT", "CONNECTED", "BYTES IN", "BYTES OUT"]]
        for p in list {
            rows.append([p.peerID, p.direction.rawValue, p.isClient ? "client" : "node", p.address,
                         p.roundTrip.map { Network.ms($0) + " ms" } ?? "-", formatDuration(now - p.connectedSince),
                         String(p.bytesIn), String(p.bytesOut)])
        }
        for line in table(rows, rightAligned: [4, 5, 6, 7]) where !context.outChecked(line) { break }
        return .ok
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
