import GutsAddress
import GutsQUIC
import GutsIdentity
import GutsNode
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsWire
import NIOCore

/// A peer as the user named it, resolved (guts-known-peers(5)): an alias expanded, the
/// identity to demand taken from the command line, else the alias, else known_peers.
struct PeerTarget: CustomStringConvertible {
    /// Where to connect; `peer` is the identity the handshake must prove, when any.
    var endpoint: Endpoint
    /// The peer ID written on the command line or in the alias: the user named this peer.
    var named: PeerID?
    /// The alias used, if any.
    var alias: String?
    /// The known_peers entry that supplied `endpoint.peer` (nothing was named).
    var known: KnownPeers.Entry?

    var description: String { endpoint.description }
}

/// Resolves peer arguments and checks and records the identities they answer with.
struct PeerResolver {
    let mode: KnownPeersMode
    /// `--transport` (when the command has it): QUIC and TCP raced, or one forced.
    let transport: TransportChoice
    let aliases: [String: Endpoint]
    let home: String
    let path: String
    private(set) var known: KnownPeers

    /// The mode from `--known-peers` (when the command has it), else the config's.
    init(_ args: ParsedArguments, config: NodeConfig, context: Context) throws {
        var mode = config.knownPeers
        if let v = args.value("known-peers") {
            guard let m = KnownPeersMode(rawValue: v) else {
                throw UsageError("--known-peers: expected accept-new, strict or off, not '\(v.prefix(40))'")
            }
            mode = m
        }
        self.mode = mode
        if let v = args.value("transport") {
            guard v == "tcp" || v == "quic", let t = TransportChoice(option: v) else {
                throw UsageError("--transport: expected tcp or quic, not '\(v.prefix(40))'")
            }
            transport = t
        } else if let v = context.environment["GUTS_TRANSPORT"], !v.isEmpty {
            guard let t = TransportChoice(option: v) else {
                throw UsageError("GUTS_TRANSPORT: expected auto, tcp or quic, not '\(v.prefix(40))'")
            }
            transport = t
        } else {
            transport = TransportChoice(option: config.transport) ?? .auto
        }
        aliases = config.aliases
        home = context.homePath
        path = KnownPeersFile.path(home: home)
        if mode == .off {
            known = KnownPeers()
        } else {
            do { known = try KnownPeersFile.load(path) } catch { throw CommandError(.io, error.description) }
        }
    }

    static let transportOption = OptionSpec("transport", value: "tcp|quic",
                                            help: "use only this transport (default: $GUTS_TRANSPORT, else config transport, else QUIC first and TCP 250 ms later, whichever connects first; a quic/ or tcp/ address forces its own)")

    static let option = OptionSpec("known-peers", value: "MODE",
                                   help: "accept-new (record a peer's ID on first use, refuse a change), strict (refuse unknown addresses without PEERID) or off (default: config known-peers, accept-new)")

    /// `[PEERID@]ADDR` or `[PEERID@]ALIAS`. An alias wins over a host of the same name.
    func resolve(_ text: String) throws -> PeerTarget {
        var rest = Substring(text)
        var given: PeerID?
        if let at = rest.firstIndex(of: "@") {
            let idText = rest[..<at]
            guard let id = PeerID(idText) else {
                throw UsageError("invalid address '\(text)': '\(idText)' is not a peer ID: \(PeerID.problem(idText) ?? "expected gt followed by 56 base32 characters")")
            }
            given = id
            rest = rest[rest.index(after: at)...]
        }
        var target: PeerTarget
        if let a = aliases[String(rest)] {
            target = PeerTarget(endpoint: a, named: given ?? a.peer, alias: String(rest))
        } else {
            target = PeerTarget(endpoint: try Network.parseEndpoint(String(rest)), named: given)
        }
        target.endpoint.peer = target.named
        guard mode != .off else { return target }
        let entry = known.lookup(target.endpoint.address)
        if target.named == nil {
            if let entry {
                target.endpoint.peer = entry.peer
                target.known = entry
            } else if mode == .strict {
                throw CommandError(.authentication, "\(target.endpoint.address) is not in \(path) and no peer ID was given (--known-peers strict): give PEERID@ADDR, or connect once with --known-peers accept-new")
            }
        }
        return target
    }

    /// The command that removes the entry for `address`, as the user can paste it.
    func forgetCommand(_ address: String) -> String {
        "guts --home \(Self.shellQuote(home)) peers forget \(Self.shellQuote(address))"
    }

    static func shellQuote(_ s: String) -> String {
        let safe = s.unicodeScalars.allSatisfy { c in
            (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9") || "/._-:[]@+=,".unicodeScalars.contains(c)
        }
        return safe && !s.isEmpty ? s : "'" + s.replacingAll("'", with: "'\\''") + "'"
    }

    /// The error for an identity that changed at a known address, as ssh words it.
    func changed(_ address: String, old: KnownPeers.Entry, new: PeerID, _ context: Context) -> CommandError {
        let at = old.line > 0 ? "\(path):\(old.line)" : path
        context.error("WARNING: the identity of the peer at \(address) has changed")
        context.error("\(at) records \(old.peer) for \(address), but it presented \(new)")
        context.error("the node may have a new key, another node may answer at that address, or someone may be intercepting the connection")
        return CommandError(.authentication, "refusing to talk to \(address); if the change is expected, forget the old entry with: \(forgetCommand(address))")
    }

    /// Connects to `target` and completes the handshake (or throws a CommandError with the
    /// right exit code), then records the identity seen on first use; with `record`
    /// false the caller records it (`remember`) once its work succeeded.
    func dial(_ target: PeerTarget, config: SessionConfig, group: EventLoopGroup, connectTimeout: Double,
              record: Bool = true, _ context: Context) throws -> any PeerLink {
        let connection: any PeerLink
        do {
            connection = try LinkDialer.dial(target.endpoint, choice: transport, config: config, group: group,
                                             connectTimeout: connectTimeout).wait()
        } catch {
            if let old = target.known, let actual = Self.mismatch(error) {
                throw changed(target.endpoint.address, old: old, new: actual, context)
            }
            throw Network.describe(error, endpoint: target.endpoint)
        }
        if record, let peer = connection.peer?.peerID {
            do {
                try remember(target, peer, context)
            } catch {
                connection.close(.shutdown, "identity refused")
                _ = try? connection.closeFuture.wait()
                throw error
            }
        }
        return connection
    }

    /// Records `peer` for the target's address on first use (accept-new, strict with a
    /// named peer). A different entry written meanwhile by another command is a change.
    func remember(_ target: PeerTarget, _ peer: PeerID, _ context: Context) throws {
        guard mode != .off, target.known == nil else { return }
        let address = target.endpoint.address
        if let entry = known.lookup(address), entry.peer != peer {
            // A named peer beats known_peers: the entry stays, and the user hears of it.
            context.log("note: \(path):\(entry.line) records \(entry.peer) for \(address); using \(peer) as named (to replace the entry: \(forgetCommand(address)))")
            return
        }
        guard known.lookup(address) == nil else { return }
        let outcome: KnownPeers.AddOutcome
        do {
            outcome = try KnownPeersFile.record(path, address: address, peer: peer, now: KnownPeersFile.now())
        } catch {
            context.error("cannot record \(peer) for \(address): \(error.description)")
            return
        }
        switch outcome {
        case .added:
            context.log("learned \(peer) at \(address) (first use; kept in \(path))")
        case .known:
            break
        case let .conflict(entry):
            if target.named == nil { throw changed(address, old: entry, new: peer, context) }
        case .full:
            context.error("cannot record \(peer) for \(address): \(path) holds \(KnownPeers.maxEntries) entries")
        }
    }

    /// The identity a peer presented instead of the one demanded, if that is why the
    /// handshake failed.
    static func mismatch(_ error: Error) -> PeerID? {
        var close = error as? SessionClose
        if let t = error as? TransportError, case let .closed(c) = t { close = c }
        if case let .identityMismatch(_, actual)? = close { return actual }
        return nil
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
