import GutsControl
import GutsSupport

/// Talking to the node that runs for this state directory, over its control socket.
enum LocalNode {
    /// Seconds to wait for the node's answer.
    static let timeout = 10.0

    /// Connects to the node running for `context`'s home.
    static func connect(_ context: Context, timeout: Double = timeout, hint: String = "") throws -> ControlClient {
        do {
            return try ControlClient.connect(directory: context.homePath, timeout: timeout)
        } catch {
            throw describe(error, context, hint: hint)
        }
    }

    /// Sends one request and returns its (successful) answer; error answers become
    /// CommandErrors with their exit codes.
    static func call(_ context: Context, _ request: ControlRequest, timeout: Double = timeout) throws -> ControlResponse {
        let client = try connect(context, timeout: timeout)
        defer { client.close() }
        let response: ControlResponse
        do {
            response = try client.call(request, timeout: timeout)
        } catch {
            throw describe(error, context)
        }
        if case let .failure(e) = response { throw describe(e) }
        return response
    }

    /// The documented failure when no node runs: exit code 3 (local state).
    static func notRunning(_ context: Context, hint: String = "") -> CommandError {
        CommandError(.io, "no node is running for \(context.homePath) (start one with 'guts listen'\(hint))")
    }

    static func describe(_ error: ControlClientError, _ context: Context, hint: String = "") -> CommandError {
        switch error {
        case .notRunning: return notRunning(context, hint: hint)
        case .permissionDenied: return CommandError(.refused, "\(error)")
        case .timeout: return CommandError(.timeout, "the node for \(context.homePath): \(error)")
        case .closed: return CommandError(.unreachable, "\(error)")
        case .malformed: return CommandError(.protocolError, "\(error)")
        case .system: return CommandError(.io, "control socket: \(error)")
        }
    }

    /// An error answer from the node: a request it did not understand is a protocol
    /// error (8); anything else is a refusal (9).
    static func describe(_ error: ControlError) -> CommandError {
        switch error.code {
        case .badRequest, .tooLarge, .unknownCommand:
            return CommandError(.protocolError, "the node did not understand the request: \(error.message)")
        default:
            return CommandError(.refused, "the node refused: \(error.message)")
        }
    }
}

/// "12s", "4m05s", "3h07m", "2d04h".
func formatDuration(_ seconds: Double) -> String {
    let s = max(0, Int(seconds))
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(two(s % 60))s" }
    if s < 86400 { return "\(s / 3600)h\(two(s % 3600 / 60))m" }
    return "\(s / 86400)d\(two(s % 86400 / 3600))h"
}
