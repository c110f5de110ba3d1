import GutsControl
import GutsSupport

/// `guts status`: what the local node is doing, from its control socket.
enum StatusCommand: Command {
    static let name = "status"
    static let summary = "show the running node: peer ID, listening addresses, repositories, uptime"
    static let synopsis = "status [--json]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("status takes no arguments") }
        guard case let .status(s) = try LocalNode.call(context, .status) else {
            throw CommandError(.protocolError, "the node answered status with something else")
        }
        if context.json {
            context.out(JSONValue.object(ControlCodec.json(s)).rendered)
            return .ok
        }
        let rows: [(String, [String])] = [
            ("peer ID", [s.peerID]),
            ("agent", ["\(s.agent) (pid \(s.pid))"]),
            ("listening", s.listening.isEmpty ? ["-"] : s.listening),
            ("uptime", [formatDuration(s.uptimeSeconds)]),
            ("connections", ["\(s.inbound) inbound, \(s.outbound) outbound, \(s.open) open"]),
            ("repositories", s.repositories.isEmpty ? ["none"] : s.repositories),
        ]
        let width = (rows.map(\.0.count).max() ?? 0) + 2
        for (label, values) in rows {
            for (i, v) in values.enumerated() {
                context.out((i == 0 ? label : "").padded(to: width) + v)
            }
        }
        return .ok
    }
}
