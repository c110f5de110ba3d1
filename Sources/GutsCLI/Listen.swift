import GutsControl
import GutsDHT
import GutsIdentity
import GutsNode
import GutsGossip
import GutsSync
import GutsSupport
import GutsTransport
import GutsWire
#if canImport(Glibc)
import Glibc
import GutsAddress
#endif

/// `guts listen`: run a node until SIGINT/SIGTERM.
enum ListenCommand: Command {
    static let name = "listen"
    static let summary = "run a node: accept peers, keep bootstrap peers connected, answer requests"
    static let synopsis = "listen [--listen ADDR] [--bootstrap [PEERID@]ADDR|ALIAS ...] [--repos DIR ...] [--max-connections N] [options]"
    static let options = [
        OptionSpec("listen", short: "l", value: "ADDR", help: "address to bind (default 127.0.0.1:9000; port 0 picks a free port)"),
        OptionSpec("bootstrap", short: "b", value: "[PEERID@]ADDR|ALIAS", repeatable: true, help: "peer to keep connected (repeatable; adds to config)"),
        OptionSpec("max-connections", value: "N", help: "most inbound connections at once (default 128)"),
        OptionSpec("handshake-timeout", value: "SECONDS", help: "drop peers that do not finish the handshake in time (default 10)"),
        OptionSpec("idle-timeout", value: "SECONDS", help: "drop peers silent for this long (default 90)"),
        OptionSpec("keepalive-interval", value: "SECONDS", help: "ping peers silent for this long (default 30)"),
        OptionSpec("network", value: "ID", help: "network ID; nodes on different networks cannot connect (default empty)"),
        OptionSpec("repos", value: "DIR", repeatable: true, help: "also serve the repositories under DIR (besides <home>/repos)"),
        OptionSpec("follow-symlinks", help: "also serve repositories that symbolic links place outside their repository directory"),
        OptionSpec("mirror", short: "m", value: "REPO[@PEERID][@ADDR]", repeatable: true, help: "follow REPO (a name or ID): sync its signed refs when announced; PEERID pins it and is the only source of an unsigned REPO"),
        OptionSpec("mirror-interval", value: "SECONDS", help: "catch-up sync of each --mirror repository this often, jittered ±10% (default 300, 0 for none; config mirror-interval)"),
        OptionSpec("topic", value: "TOPIC", repeatable: true, help: "also subscribe to and relay TOPIC"),
        OptionSpec("announce-interval", value: "SECONDS", help: "how often served repositories are scanned for changes to announce (default 2)"),
        OptionSpec("resign-interval", value: "SECONDS", help: "sign unchanged refs of repositories this node is a delegate of again after this long (default 86400, 0 never; config resign-interval)"),
        OptionSpec("max-transfers", value: "N", help: "object transfers served at once; more are answered busy (default 8)"),
        OptionSpec("announce-address", value: "[quic/]IP:PORT", repeatable: true, help: "address to advertise in the DHT, quic/ for a QUIC one (repeatable; default: the listen address, or on 0.0.0.0 or :: the IP address 3 peers in different prefixes see, with the listen port, each with QUIC on the same port number when QUIC is on; config announce-address)"),
        OptionSpec("no-dht", help: "take no part in the DHT: no capability dht, no routing table, no provider records (config dht = off)"),
        OptionSpec("stall-timeout", value: "SECONDS", help: "cut off a transfer whose peer takes no bytes for this long (default 60)"),
        PeerResolver.option,
    ]

    /// `REPO` or `REPO@[PEERID@]ADDR` (ADDR may be an alias).
    static func parseMirror(_ text: String, aliases: [String: Endpoint] = [:]) throws -> MirrorSpec {
        let (repoText, peerText): (Substring, Substring?)
        if let at = text.firstIndex(of: "@") {
            repoText = text[..<at]
            peerText = text[text.index(after: at)...]
        } else {
            repoText = Substring(text)
            peerText = nil
        }
        guard let name = RepositoryRef(String(repoText)) else { throw UsageError("--mirror: invalid repository name or ID '\(repoText)'") }
        guard let peerText else { return MirrorSpec(repository: name, peer: nil) }
        if let peer = PeerID(peerText) { return MirrorSpec(repository: name, peer: nil, trusted: peer) }
        // An alias stands for its [PEERID@]ADDR; a peer ID written before it wins.
        var rest = peerText
        var given: PeerID?
        if let at = rest.firstIndex(of: "@"), let id = PeerID(rest[..<at]) {
            given = id
            rest = rest[rest.index(after: at)...]
        }
        if var alias = aliases[String(rest)] {
            alias.peer = given ?? alias.peer
            return MirrorSpec(repository: name, peer: alias)
        }
        return MirrorSpec(repository: name, peer: try Network.parseEndpoint(String(peerText)))
    }

    static let lockFileName = "node.lock"

    /// Takes `<home>/node.lock` for the node's lifetime: one node per state directory.
    /// The kernel drops the lock when the process ends, however it ends.
    static func lockHome(_ home: String) throws -> FileLock {
        let path = home + "/" + lockFileName
        let lock: FileLock?
        do {
            lock = try FileLock.tryAcquire(path, mode: .exclusive, removeOnRelease: true, permissions: 0o600)
        } catch {
            throw CommandError(.io, "cannot lock the state directory: \(error)")
        }
        guard let lock else {
            let holder = FileLock.recordedPID(path).map { " (process \($0), as recorded in \(path))" } ?? " (\(path) is locked)"
            throw CommandError(.io, "a node is already running with state directory \(home)\(holder); stop it first, or use another --home")
        }
        lock.writeInfo("\(getpid())\n")
        return lock
    }

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("listen takes no arguments (did you mean --listen ADDR?)") }
        let home = try context.home()
        var config = try NodeConfig.load(home: home)
        if let v = args.value("listen") { config.listen = v }
        config.bootstrap += args.all("bootstrap")
        if let v = try args.int("max-connections", in: 1...100_000) { config.maxConnections = v }
        if let v = try args.seconds("handshake-timeout", in: 0.1...3600) { config.handshakeTimeout = v }
        if let v = try args.seconds("idle-timeout", in: 1...86400) { config.idleTimeout = v }
        if let v = try args.seconds("keepalive-interval", in: 1...86400) { config.keepaliveInterval = v }
        if let v = args.value("network") {
            guard v.utf8.count <= WireProtocol.maxNetworkIDLength else { throw UsageError("--network: at most 64 bytes") }
            config.network = v
        }
        let bind: Endpoint
        do { bind = try Endpoint.parse(config.listen, allowPortZero: true) } catch { throw UsageError("listen address: \(error)") }
        guard bind.peer == nil else { throw UsageError("the listen address takes HOST:PORT without a peer ID") }
        let resolver = try PeerResolver(args, config: config, context: context)
        let targets = try config.bootstrap.map { try resolver.resolve($0) }
        let bootstrap = targets.map(\.endpoint)
        let identity = try loadIdentity(context)
        // Options, config and identity are checked first (read only); the lock comes before
        // anything is written to the state directory.
        let nodeLock = try lockHome(home)
        defer { nodeLock.release() }
        var roots = [home + "/repos"]
        do { try Files.makeDirectories(roots[0], mode: 0o755) } catch { throw CommandError(.io, "cannot create \(roots[0]): \(error)") }
        for dir in args.all("repos") {
            guard Files.isDirectory(dir) else { throw CommandError(.io, "--repos \(dir): not a directory") }
            roots.append(dir)
        }
        let catalog = RepositoryCatalog(roots: roots, followExternalLinks: args.has("follow-symlinks"))

        raiseFileLimit(context)
        let signals = SignalWatcher.install()
        // The node's lines quote what peers send; context.log and context.debug escape
        // each line as it is written (see Context), so they reach stderr safe.
        // Peers make the node log; a stderr nobody reads must not stall the event loops.
        let sink = LogSink(fd: 2)
        context.useLogSink(sink)
        defer {
            sink.close(timeout: 2)
            context.useLogSink(nil)
        }
        let log = NodeLog(info: { context.log($0) }, debug: { context.debug($0) }, infoEnabled: !context.quiet)
        var nodeOptions = Node.Options(host: bind.host, port: bind.port, bootstrap: bootstrap,
                                       maxConnections: config.maxConnections, connectTimeout: config.connectTimeout,
                                       session: Network.sessionConfig(identity: identity, config: config))
        nodeOptions.repositories = catalog
        nodeOptions.stateDirectory = home
        nodeOptions.score = config.score
        nodeOptions.admission = config.admission
        nodeOptions.rates = config.rates
        nodeOptions.maxSessionsPerPeer = config.maxSessionsPerPeer
        nodeOptions.maxPacks = config.maxPacks
        // The node's own dials (bootstrap, mirrors, DHT) follow GUTS_TRANSPORT or the config.
        nodeOptions.transport = resolver.transport
        nodeOptions.resignInterval = try args.seconds("resign-interval", in: NodeConfig.signedAgeRange) ?? config.resignInterval
        nodeOptions.mirrors = try args.all("mirror").map { try parseMirror($0, aliases: config.aliases) }
        if resolver.mode != .off {
            let learn = Set(targets.indices.filter { targets[$0].endpoint.peer == nil })
            let fromFile = Set(targets.indices.filter { targets[$0].known != nil })
            nodeOptions.knownPeers = KnownPeersHook(path: resolver.path, learn: learn, fromFile: fromFile,
                                                    forgetCommand: { [resolver] in resolver.forgetCommand($0) })
        }
        nodeOptions.topics = try args.all("topic").map { t in
            guard Topic.isValid(t) else { throw UsageError("--topic: invalid topic '\(t)'") }
            return t
        }
        if let v = try args.seconds("announce-interval", in: 0.1...86400) { nodeOptions.announceInterval = v }
        nodeOptions.mirrorInterval = config.mirrorInterval
        if let text = args.value("mirror-interval") {
            guard let v = Double(text), v.isFinite, v == 0 || NodeConfig.mirrorIntervalRange.contains(v) else {
                throw UsageError("--mirror-interval: expected 0 (off) or seconds from 1 to 604800, not '\(text)'")
            }
            nodeOptions.mirrorInterval = v
        }
        if let v = try args.int("max-transfers", in: 1...1024) { nodeOptions.maxTransfers = v }
        if let v = try args.seconds("stall-timeout", in: 1...86400) { nodeOptions.stallTimeout = v }
        let announce = args.all("announce-address")
        nodeOptions.announceAddresses = try (announce.isEmpty ? config.announceAddresses : announce).map { text in
            guard let a = DHTAddress(text) else {
                throw UsageError("--announce-address: expected [quic/]IP:PORT (an IP literal, not unspecified or multicast, port not 0), not '\(text)'")
            }
            return a
        }
        if nodeOptions.announceAddresses.count > DHTLimits.maxAddresses {
            throw UsageError("announce-address: at most \(DHTLimits.maxAddresses) addresses (a DHT record holds no more), not \(nodeOptions.announceAddresses.count)")
        }
        nodeOptions.dht = config.dht && !args.has("no-dht")
        // The control socket first: a node already running for this home keeps it.
        let controlServer = ControlServer(directory: home, log: { context.log($0) })
        do {
            try controlServer.bind()
        } catch .nodeRunning {
            throw CommandError(.io, "another node is already running for \(home) (it answers on \(controlServer.path)); stop it first, or use another --home")
        } catch {
            throw CommandError(.io, "cannot open the control socket: \(error)")
        }
        let node = Node(options: nodeOptions, log: log)
        let control = NodeControl(node: node)
        do {
            try controlServer.start(handler: control)
        } catch {
            node.stop()
            controlServer.stop()
            throw CommandError(.io, "cannot open the control socket: \(error)")
        }
        let address: String
        do {
            let bound = try node.start()
            address = PeerConnectionAddress.render(bound)
        } catch {
            controlServer.stop()
            node.stop()
            throw CommandError(.io, "cannot listen on \(bind.address): \(Network.userReason(error))")
        }
        control.setListening([address])
        if context.json {
            context.out(JSON.object(["peer_id": .string(identity.peerID.description), "address": .string(address),
                                     "dial": .string("\(identity.peerID)@\(address)"), "control": .string(controlServer.path)]))
        } else {
            context.out("\(identity.peerID)@\(address)")
        }
        context.log("listening on \(address) as \(identity.peerID)" + (config.network.isEmpty ? "" : " (network \(config.network))"))
        context.debug("control socket: \(controlServer.path)")
        let served = catalog.all()
        context.log("serving \(served.count) repositor\(served.count == 1 ? "y" : "ies") from \(roots.joined(separator: ", "))")
        let sig = signals.wait()
        context.log("received \(sig == SIGTERM ? "SIGTERM" : "SIGINT"), shutting down")
        controlServer.stop()  // before the node: no request may reach a stopping node
        node.stop()
        context.log("stopped")
        return .ok
    }
}

/// A node holds a descriptor per connection: raise the soft limit on open files to the
/// hard limit, so the connection caps, not the default 1024, decide how many peers fit.
func raiseFileLimit(_ context: Context) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    let before = limit.rlim_cur
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        context.debug("open files limit raised from \(before) to \(limit.rlim_max)")
    }
}
