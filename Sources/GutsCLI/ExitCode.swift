/// Process exit codes. Stable: documented in guts(1), relied on by scripts.
public enum ExitCode: Int32, Sendable {
    /// Success.
    case ok = 0
    /// The operation ran but had a negative answer: no pong received (as ping(8)).
    case noReply = 1
    /// Bad command line: unknown command or option, missing or malformed argument.
    case usage = 2
    /// Local I/O or state problem: state directory, identity, config, repository files.
    case io = 3
    /// The peer could not be reached: name resolution, connection refused or reset.
    case unreachable = 4
    /// Authentication failed: the remote identity differs from the PEERID asked for,
    /// or its identity proof is invalid.
    case authentication = 5
    /// Integrity failure: corrupt or inconsistent objects, refs or packs.
    case integrity = 6
    /// A network wait exceeded its timeout.
    case timeout = 7
    /// The peer violated the protocol, speaks an incompatible version, or said goodbye.
    case protocolError = 8
    /// The peer refused the request or does not have what was asked for.
    case refused = 9
    /// A local resource is locked by another guts process and the command would not wait
    /// (any longer): `sync` on a repository another sync, mirroring or maintenance holds.
    case busy = 10
    /// A repository named without an ID that nothing here pins: names are not unique in a
    /// peer-to-peer network, so it cannot be looked up (give its repository ID).
    case unresolved = 11

    /// The name of the code in JSON error objects (guts(1), JSON ERRORS).
    public var kind: String {
        switch self {
        case .ok: return "ok"
        case .noReply: return "negative"
        case .usage: return "usage"
        case .io: return "local"
        case .unreachable: return "unreachable"
        case .authentication: return "authentication"
        case .integrity: return "integrity"
        case .timeout: return "timeout"
        case .protocolError: return "protocol"
        case .refused: return "refused"
        case .busy: return "busy"
        case .unresolved: return "unresolved"
        }
    }
}
