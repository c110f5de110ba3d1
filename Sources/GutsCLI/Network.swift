#if canImport(Glibc)
import Glibc
import GutsAddress
#endif
import GutsCrypto
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOCore
import NIOPosix

/// Shared set-up of the networked commands.
enum Network {
    static var agent: String { "guts/\(GutsMain.version)" }

    /// Session settings from the node identity and config.
    /// `protocols` are the message families the command speaks besides the control messages.
    static func sessionConfig(identity: Identity, config: NodeConfig, capabilities: [String] = Capabilities.default,
                              protocols: MessageRegistry = .control) -> SessionConfig {
        SessionConfig(identity: identity.keyPair, noiseStatic: .generate(), networkID: config.network,
                      capabilities: capabilities, agent: agent, handshakeTimeout: config.handshakeTimeout,
                      idleTimeout: config.idleTimeout, keepaliveInterval: config.keepaliveInterval,
                      protocols: protocols)
    }

    /// The node identity for outbound-only commands: the stored one (its state directory
    /// and key file checked), or with `--ephemeral` a throwaway identity for this run,
    /// never silently.
    static func clientIdentity(_ context: Context, _ args: ParsedArguments) throws -> Identity {
        if args.has("ephemeral") {
            context.debug("using a one-time identity for this run (--ephemeral)")
            return Identity.generate()
        }
        do {
            return try Identity.load(home: context.homePath)
        } catch let IdentityError.missing(path) {
            throw CommandError(.io, "no identity at \(path); create one with 'guts keygen', or give --ephemeral to use a one-time identity")
        } catch let e as IdentityError {
            throw CommandError(.io, e.description)
        }
    }

    /// The `--ephemeral` option of the commands that may use a one-time identity.
    static let ephemeralOption = OptionSpec("ephemeral", help: "use a one-time identity instead of the state directory's")

    /// `--network ID` overrides the config file's network.
    static func applyNetworkOption(_ args: ParsedArguments, to config: inout NodeConfig) throws {
        guard let v = args.value("network") else { return }
        guard v.utf8.count <= WireProtocol.maxNetworkIDLength else { throw UsageError("--network: at most 64 bytes") }
        config.network = v
    }

    static func parseEndpoint(_ text: String) throws -> Endpoint {
        do { return try Endpoint.parse(text) } catch { throw UsageError("\(error)") }
    }

    /// Connects and completes the handshake, or throws a CommandError with the right exit code.
    static func dial(_ endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup, connectTimeout: Double) throws -> PeerConnection {
        do {
            return try Dialer.dial(endpoint, config: config, group: group, connectTimeout: connectTimeout).wait()
        } catch {
            throw describe(error, endpoint: endpoint)
        }
    }

    /// Maps transport and session failures to exit codes and one-line explanations.
    static func describe(_ error: Error, endpoint: Endpoint) -> CommandError {
        let target = endpoint.address
        if let t = error as? TransportError {
            switch t {
            case let .closed(reason): return describe(reason, target: target)
            case let .timeout(what): return CommandError(.timeout, "\(target): timed out \(what)")
            case .notEstablished: return CommandError(.protocolError, "\(target): connection is not established")
            }
        }
        if let s = error as? SessionClose { return describe(s, target: target) }
        if let c = error as? ChannelError, case .connectTimeout = c {
            return CommandError(.timeout, "\(target): connection timed out")
        }
        if let c = error as? NIOConnectionError {
            let first = c.connectionErrors.first.map { explain($0.error) } ?? (c.dnsAError.map { "\($0)" } ?? "no address found")
            if c.connectionErrors.isEmpty {
                return CommandError(.unreachable, "\(target): cannot resolve host '\(c.host)'")
            }
            return CommandError(.unreachable, "\(target): cannot connect: \(first)")
        }
        if let io = error as? IOError {
            return CommandError(.unreachable, "\(target): \(explain(io))")
        }
        return CommandError(.unreachable, "\(target): \(error)")
    }

    /// An OS error as its plain strerror text ("Connection refused").
    static func explain(_ error: Error) -> String {
        if let io = error as? IOError, let text = strerror(io.errnoCode) { return String(cString: text) }
        return "\(error)"
    }

    /// An error from binding or accepting in user terms: the system's reason, starting
    /// lower case ("address already in use"), never the library's call and descriptor.
    static func userReason(_ error: Error) -> String {
        if let io = error as? IOError, let text = strerror(io.errnoCode) {
            let s = String(cString: text)
            return s.prefix(1).lowercased() + s.dropFirst()
        }
        return "\(error)"
    }

    static func describe(_ reason: SessionClose, target: String) -> CommandError {
        switch reason {
        case .identityMismatch:
            return CommandError(.authentication, "\(target): \(reason) (refusing to talk to it)")
        case .handshakeFailed, .selfConnection:
            return CommandError(.authentication, "\(target): \(reason)")
        case .timeout:
            return CommandError(.timeout, "\(target): \(reason)")
        case let .remoteGoodbye(g), let .localGoodbye(g):
            switch g.code {
            case .tooManyConnections, .accessDenied, .notFound: return CommandError(.refused, "\(target): \(reason)")
            case .timeout: return CommandError(.timeout, "\(target): \(reason)")
            default: return CommandError(.protocolError, "\(target): \(reason)")
            }
        case .connectionLost:
            return CommandError(.unreachable, "\(target): \(reason)")
        }
    }

    /// Milliseconds with 3 decimals, as ping(8) prints them.
    static func ms(_ seconds: Double) -> String {
        let v = (seconds * 1e6).rounded() / 1000
        let whole = Int(v)
        let frac = Int(((v - Double(whole)) * 1000).rounded())
        let fracText = String(frac)
        return "\(whole)." + String(repeating: "0", count: max(0, 3 - fracText.count)) + fracText
    }
}
