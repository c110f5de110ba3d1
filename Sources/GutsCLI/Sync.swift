import GutsAddress
import GutsControl
import GutsGit
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsSync
import GutsTransport
import GutsTrust
import GutsWire
import NIOPosix

/// `guts sync`: mirror a repository from a peer, verified, into the state directory.
enum SyncCommand: Command {
    static let name = "sync"
    static let summary = "mirror a repository from a peer, verifying every object before it becomes visible"
    static let synopsis = "sync [--into DIR [--force]] [--timeout SECONDS] [--deadline SECONDS] [--wait SECONDS | --no-wait] [--exit-code] [--ephemeral] [--network ID] [--known-peers MODE] [--transport tcp|quic] [limits] REPO... | --all --peer [PEERID@]ADDR|ALIAS [--peer ...] (without --peer: the providers of REPO in the DHT)"
    static let options = [
        OptionSpec("peer", short: "p", value: "[PEERID@]ADDR|ALIAS", repeatable: true, help: "peer to fetch from; several are tried best score first until one succeeds, banned ones skipped (default: the repository's providers in the DHT)"),
        DHTLookup.bootstrapOption,
        OptionSpec("into", value: "DIR", help: "bare repository to sync into (default <home>/repos/REPO.git)"),
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "connect, handshake, per-answer silence and no-pack-data limit (default 30)"),
        OptionSpec("deadline", value: "SECONDS", help: "most time the whole sync may take, per peer (default 3600, 0 for none; config sync-deadline)"),
        OptionSpec("network", value: "ID", help: "network ID to connect within (default: network from config, empty)"),
        OptionSpec("force", short: "f", help: "mirror into an existing repository that guts did not create (replaces all its refs)"),
        OptionSpec("max-pack-size", value: "BYTES", help: "most pack bytes accepted in one sync (default 4G; config max-pack-size)"),
        OptionSpec("wait", value: "SECONDS", help: "wait this long for another sync of the repository to finish (default 600)"),
        OptionSpec("no-wait", help: "exit at once with status 10 if another sync holds the repository"),
        OptionSpec("all", help: "sync every repository under the state directory's repos directory"),
        OptionSpec("exit-code", help: "exit with status 1 when nothing was new (default: 0)"),
        Network.ephemeralOption,
        OptionSpec("max-age", value: "SECONDS", help: "fail (status 6) when the newest signed state is older than this (default 0: no limit; config max-signed-age)"),
        PeerResolver.option,
        PeerResolver.transportOption,
    ] + NodeConfig.limitOptions

    /// Default of --timeout.
    static let defaultTimeout = 30.0

    /// Default of --wait: long enough for a large first sync to finish.
    static let defaultWait = 600.0

    /// How one repository's sync ended (failures are thrown).
    enum Result { case updated, upToDate }

    /// Summary exit code of a run over several repositories: the first of these that any
    /// repository failed with (guts-sync(1), EXIT STATUS).
    static let precedence: [ExitCode] = [.usage, .integrity, .refused, .authentication, .protocolError, .timeout, .unreachable, .io, .busy]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        MemoryTrace.mark("sync: start")
        let all = args.has("all")
        var names: [RepositoryRef] = []
        if all {
            guard args.positionals.isEmpty else { throw UsageError("--all syncs every repository under the state directory; give no REPO with it") }
            guard args.value("into") == nil else { throw UsageError("--into applies to one repository, not with --all") }
            let root = try context.home() + "/repos"
            names = RepositoryCatalog(roots: [root]).all().map { .name($0) }
            guard !names.isEmpty else { throw CommandError(.io, "--all: no repositories under \(root) to sync") }
        } else {
            guard !args.positionals.isEmpty else { throw UsageError("sync needs a repository name (OWNER/NAME) or ID, or --all") }
            for text in args.positionals {
                guard let name = RepositoryRef(text) else {
                    throw UsageError("invalid repository name '\(text)': use NAME or OWNER/NAME with letters, digits, '.', '_' and '-', or a repository ID")
                }
                if !names.contains(name) { names.append(name) }
            }
            if names.count > 1, args.value("into") != nil { throw UsageError("--into applies to one repository; give one REPO with it") }
        }
        if all && !args.has("peer") { throw UsageError("sync --all needs at least one --peer [PEERID@]ADDR") }
        let timeout = try args.seconds("timeout", in: 0.1...3600) ?? defaultTimeout
        if args.has("no-wait") && args.value("wait") != nil { throw UsageError("--wait and --no-wait exclude each other") }
        let wait = args.has("no-wait") ? 0 : try args.seconds("wait", in: 0...86400) ?? defaultWait
        var config = try NodeConfig.load(home: context.homePath)
        config.connectTimeout = timeout
        config.handshakeTimeout = timeout
        let limits = try config.objectLimits(args)
        let deadline = try args.seconds("deadline", in: NodeConfig.deadlineRange) ?? config.syncDeadline
        let maxPackSize = try args.bytes("max-pack-size", in: NodeConfig.packSizeRange) ?? config.maxPackSize
        let maxAge = try args.seconds("max-age", in: NodeConfig.signedAgeRange) ?? config.maxSignedAge
        try Network.applyNetworkOption(args, to: &config)
        let resolver = try PeerResolver(args, config: config, context: context)
        var targets = try args.all("peer").map { try resolver.resolve($0) }
        if targets.isEmpty {
            // Providers found in the DHT, by repository ID (the handshake proves each one's key).
            targets = try providers(of: names, context, args).map { PeerTarget(endpoint: $0, named: $0.peer) }
        }
        let given = targets.map(\.endpoint)
        // Best-scoring peers first, banned ones skipped (see guts-sync(1), Peers).
        let standings = PeerStandings.load(context, peers: given.compactMap(\.peer), parameters: config.score)
        let peers = order(given, standings, context)
        guard !peers.isEmpty else {
            throw CommandError(.io, "every peer given is banned (see 'guts peers score'; 'guts peers unban' lifts a ban); nothing was done")
        }
        let identity = try Network.clientIdentity(context, args)
        let session = Network.sessionConfig(identity: identity, config: config, capabilities: Capabilities.default + SyncClient.capabilities,
                                            protocols: MessageRegistry([SyncProtocol()]))
        let signals = SignalWatcher.install()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let job = Job(args: args, context: context, peers: peers, targets: targets, resolver: resolver, standings: standings, timeout: timeout, wait: wait, config: config,
                      limits: limits, deadline: deadline, maxPackSize: maxPackSize, maxAge: maxAge, identity: identity, session: session,
                      signals: signals, group: group)
        let exitCode = args.has("exit-code")
        if names.count == 1 && !all {
            let result = try job.sync(names[0])
            return result == .upToDate && exitCode ? .noReply : .ok
        }
        // Several repositories: each gets its own result line (or error line), then one
        // summary exit code.
        var failed: [ExitCode] = []
        var updated = 0
        for name in names {
            if signals.received != 0 {
                context.error("\(name): not synced (interrupted)")
                failed.append(.io)
                continue
            }
            do {
                if try job.sync(name) == .updated { updated += 1 }
            } catch let e as CommandError {
                context.error("\(name): \(e.message)")
                if context.json {
                    context.out(JSON.object(["repository": .string(name.description), "status": .string("failed"),
                                             "error": GutsMain.errorObject(code: e.code, message: e.message)]))
                }
                failed.append(e.code)
            }
        }
        if !failed.isEmpty {
            context.log("\(names.count - failed.count) of \(names.count) repositories synced, \(failed.count) failed")
            return precedence.first { failed.contains($0) } ?? .io
        }
        return updated == 0 && exitCode ? .noReply : .ok
    }

    /// What every repository of one run shares: options, peers, identity, event loop.
    struct Job {
        let args: ParsedArguments
        let context: Context
        let peers: [Endpoint]
        /// The peers as given, resolved (aliases, known_peers).
        let targets: [PeerTarget]
        let resolver: PeerResolver
        let standings: PeerStandings?
        let timeout: Double
        let wait: Double
        let config: NodeConfig
        let limits: ObjectLimits
        let deadline: Double
        let maxPackSize: Int
        let maxAge: Double
        let identity: Identity
        let session: SessionConfig
        let signals: SignalWatcher
        let group: MultiThreadedEventLoopGroup

        /// Syncs one repository from the first peer that serves it; throws a
        /// CommandError when none did.
        func sync(_ name: RepositoryRef) throws -> Result {
            let destination: SyncDestination
            // The repository's path when it is known before the peer is asked: a name, --into,
            // or an ID already mirrored here. A first sync by ID finds its path only once the
            // identity is verified, and takes the lock then.
            var lockPath: String?
            if let into = args.value("into") {
                destination = .path(into)
                lockPath = into
            } else {
                let root = try context.home() + "/repos"
                destination = .root(root)
                switch name {
                case let .name(n): lockPath = n.path(in: root)
                case let .id(id): lockPath = RepositoryIDIndex().locate(id, in: RepositoryCatalog(roots: [root]))?.path
                }
            }
            // One sync, mirroring or maintenance per repository at a time; taken before
            // dialling, so no connection idles while this waits.
            var lock: RepositoryLock?
            if let path = lockPath {
                do {
                    lock = try SyncClient.takeLock(path, wait: wait, waiting: { holder in
                        let who = holder.map { "process \($0)" } ?? "another process"
                        context.log("\(path) is locked by \(who); waiting up to \(formatNumber(wait)) s for it to finish")
                    }, interrupted: { signals.received != 0 })
                } catch let f as SyncFailure {
                    if signals.received != 0 { throw CommandError(.io, "interrupted while waiting for the lock of \(path); nothing was done") }
                    if case let .busy(m) = f {
                        let hint = wait > 0 ? "wait longer with --wait SECONDS" : "--no-wait given"
                        throw CommandError(.busy, "\(m); nothing was done (\(hint))")
                    }
                    throw CommandError(.io, f.description)
                }
            }
            defer { lock?.release() }
            // What a failure leaves: the existing mirror untouched, or no repository at all.
            // Looked at under the lock: a sync that ran meanwhile may have created it.
            let untouched: String
            if let path = lockPath {
                let existed = Files.exists(path) && !(Files.isDirectory(path) && Files.list(path).isEmpty)
                untouched = existed ? "\(path) is unchanged" : "nothing was created at \(path)"
            } else {
                untouched = "nothing was changed"
            }

            var failures: [CommandError] = []
            var bannedAfterDial = 0
            for endpoint in peers {
                if signals.received != 0 { break }
                guard let target = targets.first(where: { $0.endpoint == endpoint }) else { continue }
                let connection: any PeerLink
                do {
                    // Recorded in known_peers only once the sync succeeded: a failed first
                    // sync leaves nothing behind.
                    connection = try resolver.dial(target, config: session, group: group, connectTimeout: timeout, record: false, context)
                } catch let e as CommandError {
                    context.error(e.message)
                    failures.append(e)
                    continue
                }
                signals.onSignal { _ in connection.close(.shutdown, "sync interrupted") }
                guard let peer = connection.peer else { continue }
                if endpoint.peer == nil, let why = standings?.ban(of: peer.peerID, context) {
                    connection.close(.shutdown, "banned")
                    _ = try? connection.closeFuture.wait()
                    context.log("skipping \(endpoint.address): it is \(peer.peerID), and \(why)")
                    bannedAfterDial += 1
                    continue
                }
                let served = "\(peer.peerID)@\(connection.remoteAddress)"
                context.debug("syncing \(name) from \(served)")
                MemoryTrace.mark("sync: connected to \(served)")
                let progress: @Sendable (SyncProgress) -> Void = { p in
                    context.progress(progressLine(p))
                }
                do {
                    var options = SyncOptions(timeout: timeout, deadline: deadline > 0 ? deadline : nil, maxPackBytes: maxPackSize,
                                              minFreeBytes: config.minFreeDisk, limits: limits,
                                              progress: context.stderrIsTTY ? progress : nil, adoptExisting: args.has("force"))
                    options.lockWait = wait
                    options.maxPacks = config.maxPacks
                    let request = SignedSyncRequest(repository: name, namedPeer: target.named, localPeer: identity.peerID)
                    let report = try SignedSync.run(request, to: destination, over: connection, options: options, holding: lock)
                    context.endProgress()
                    connection.close(.shutdown, "sync finished")
                    _ = try? connection.closeFuture.wait()
                    do { try resolver.remember(target, peer.peerID, context) } catch let e as CommandError { context.error(e.message) }
                    emit(report, name: name, peer: served, context)
                    if let c = report.sync.consolidated {
                        context.log(RepackCommand.describe(c))
                    }
                    if let problem = report.sync.maintenanceProblem { context.error("warning: \(problem)") }
                    if let problem = Self.freshness(report, maxAge: maxAge, peer: served) {
                        // Not the peer's fault for certain (the delegates may be quiet): no penalty, try the next.
                        context.error(problem.message)
                        failures.append(problem)
                        continue
                    }
                    return report.sync.upToDate ? .upToDate : .updated
                } catch let f as SyncFailure {
                    context.endProgress()
                    connection.close(.shutdown, "sync failed")
                    _ = try? connection.closeFuture.wait()
                    if signals.received != 0 {
                        throw CommandError(.io, "interrupted; \(untouched)")
                    }
                    let e = describe(f, peer: served)
                    // A local problem (not a repository, disk) is the same with every peer.
                    switch f {
                    case .local, .busy: throw e
                    default: break
                    }
                    context.error(e.message)
                    failures.append(e)
                    hold(peer.peerID, to: f, limits: limits, maxPackSize: maxPackSize, deadline: deadline, timeout: timeout, config: config, context)
                }
            }
            if failures.isEmpty, bannedAfterDial > 0, signals.received == 0 {
                throw CommandError(.io, "could not sync \(name): every peer reached is banned; \(untouched)")
            }
            // Every peer failed: report the most serious kind.
            let order: [ExitCode] = [.integrity, .refused, .authentication, .protocolError, .timeout, .unreachable, .io]
            let worst = order.first { code in failures.contains { $0.code == code } } ?? .unreachable
            let count = peers.count
            throw CommandError(worst, "could not sync \(name) from \(count == 1 ? "the peer" : "any of \(count) peers"); \(untouched)")
        }

        /// A failure when the newest signed state is older than `maxAge` seconds (0: none):
        /// the peer may withhold newer state (a freeze), or the delegates stopped signing.
        static func freshness(_ report: SignedSyncReport, maxAge: Double, peer: String) -> CommandError? {
            guard maxAge > 0, report.id != nil else { return nil }
            let now = unixTime()
            guard let newest = report.newestSignedTime else {
                return CommandError(.integrity, "no delegate of \(report.id.map(\.description) ?? "") has signed state at \(peer), so its freshness is unknown (--max-age)")
            }
            let age = now - Double(newest)
            guard age > maxAge else { return nil }
            return CommandError(.integrity, "the newest signed state at \(peer) is \(formatNumber(age.rounded())) s old, older than --max-age \(formatNumber(maxAge)) s: the peer may be withholding newer state, or the delegates stopped signing (a delegate's running node signs again every day)")
        }
    }

    /// Without --peer: the providers of each repository (by ID, or by the ID a name is pinned
    /// to here) from the DHT, as `PEERID@ADDR` endpoints.
    static func providers(of names: [RepositoryRef], _ context: Context, _ args: ParsedArguments) throws -> [Endpoint] {
        var endpoints: [Endpoint] = []
        for name in names {
            let id: RepositoryID
            switch name {
            case let .id(r):
                id = r
            case let .name(n):
                guard let pinned = pinnedID(n, context) else { throw try identities(under: n, context, args) }
                context.debug("\(n) is pinned to \(pinned)")
                id = pinned
            }
            let found = try DHTLookup.find(id.description, context, args)
            let list = DHTLookup.endpoints(found)
            context.debug("\(id): \(found.providers.count) provider(s) in the DHT")
            for e in list where !endpoints.contains(e) { endpoints.append(e) }
        }
        guard !endpoints.isEmpty else {
            throw CommandError(.noReply, "no provider of \(names.map(\.description).joined(separator: ", ")) found in the DHT; give --peer [PEERID@]ADDR")
        }
        return endpoints
    }

    /// Peers asked at most for the identities under a name.
    static let maxNameCandidates = 8

    /// A name nothing here pins (names are not unique in a peer-to-peer network): asks the
    /// running node's outbound peers and the bootstrap peers (config and --bootstrap) with
    /// ListRepositories, prints the repository IDs they serve under that name, one line per
    /// offer (`REPO-ID<TAB>PEERID@ADDR`, or JSON), pins nothing, and returns the error to
    /// exit with (status 11).
    static func identities(under name: RepositoryName, _ context: Context, _ args: ParsedArguments) throws -> CommandError {
        var config = try NodeConfig.load(home: context.homePath)
        try Network.applyNetworkOption(args, to: &config)
        let timeout = min(try args.seconds("timeout", in: 0.1...3600) ?? defaultTimeout, 10)
        config.connectTimeout = timeout
        config.handshakeTimeout = timeout
        var candidates: [String] = []
        if let client = try? ControlClient.connect(directory: context.homePath, timeout: LocalNode.timeout) {
            defer { client.close() }
            if case let .peers(list)? = try? client.call(.peers, timeout: LocalNode.timeout) {
                candidates += list.filter { $0.direction == .outbound && !$0.isClient }.map { "\($0.peerID)@\($0.address)" }
            }
        }
        candidates += config.bootstrap + args.all("bootstrap")
        var unique: [String] = []
        for c in candidates where !unique.contains(c) { unique.append(c) }
        let resolver = try PeerResolver(args, config: config, context: context)
        let identity = try Network.clientIdentity(context, args)
        let session = Network.sessionConfig(identity: identity, config: config, protocols: MessageRegistry([SyncProtocol()]))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        var offers: [(id: RepositoryID, peer: String)] = []
        var asked = Set<String>()
        for text in unique.prefix(maxNameCandidates) {
            do {
                let target = try resolver.resolve(text)
                let connection = try resolver.dial(target, config: session, group: group, connectTimeout: timeout, record: false, context)
                defer {
                    connection.close(.shutdown, "listing done")
                    _ = try? connection.closeFuture.wait()
                }
                guard let peer = connection.peer?.peerID, asked.insert(peer.description).inserted else { continue }
                let list = try RepositoryListing.list(over: connection, timeout: timeout)
                let who = "\(peer)@\(target.endpoint.host.contains(":") ? "[\(target.endpoint.host)]" : target.endpoint.host):\(target.endpoint.port)"
                for e in list where e.name == name.description {
                    if let id = e.id.flatMap({ RepositoryID(bytes: $0) }) { offers.append((id, who)) }
                }
            } catch let e as CommandError {
                context.debug("cannot list the repositories of \(text): \(e.message)")
            } catch {
                context.debug("cannot list the repositories of \(text): \(error)")
            }
        }
        offers.sort { $0.id != $1.id ? $0.id < $1.id : $0.peer < $1.peer }
        for o in offers {
            let line = context.json
                ? JSON.object(["name": .string(name.description), "id": .string(o.id.description), "peer": .string(o.peer)])
                : "\(o.id)\t\(o.peer)"
            if !context.outChecked(line) { break }
        }
        let ids = Set(offers.map(\.id)).count
        let found = offers.isEmpty
            ? "no peer asked (\(asked.count)) serves a repository of that name"
            : "\(ids) identit\(ids == 1 ? "y" : "ies") found under that name (on stdout)"
        return CommandError(.unresolved, "\(name) is not pinned here and names are not unique in a peer-to-peer network; \(found): give its repository ID (gr...), or --peer [PEERID@]ADDR")
    }

    /// The repository ID the mirror of `name` here carries, if any.
    static func pinnedID(_ name: RepositoryName, _ context: Context) -> RepositoryID? {
        let path = name.path(in: context.homePath + "/repos")
        guard Files.isDirectory(path), let repo = try? Repository.open(path),
              let chain = try? TrustStore.identity(of: repo) else { return nil }
        return chain.id
    }

    /// `given` best score first (stable: equal scores keep their order; peers without a
    /// peer ID, or unknown, count as 0), without the banned ones, which are named on stderr.
    static func order(_ given: [Endpoint], _ standings: PeerStandings?, _ context: Context) -> [Endpoint] {
        guard let standings else { return given }
        var kept: [(endpoint: Endpoint, score: Double, index: Int)] = []
        for (i, endpoint) in given.enumerated() {
            if let why = standings.ban(endpoint) {
                context.log("skipping \(endpoint): \(why) (in \(standings.source))")
                continue
            }
            kept.append((endpoint, standings.score(endpoint), i))
        }
        kept.sort { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
        if given.count > 1 {
            context.debug("peers by score (from \(standings.source)): " + kept.map { "\($0.endpoint) \(PeerScoreFormat.number($0.score))" }.joined(separator: ", "))
        }
        return kept.map(\.endpoint)
    }

    /// The score event for a failure that shows the peer sent bad data or stalled, as the
    /// node's own mirror syncs count them: nil for failures that may not be its fault, and
    /// for limits set below their defaults (a peer cannot know of those).
    static func offence(_ f: SyncFailure, limits: ObjectLimits, maxPackSize: Int, deadline: Double, timeout: Double) -> ScoreEvent? {
        let d = ObjectLimits.default
        switch f {
        case .integrity, .forged, .stale, .identityMismatch: return .badObjects
        case .protocolViolation: return .protocolViolation
        case .timeout: return timeout >= defaultTimeout ? .stall : nil
        case let .budget(limit, _):
            let atDefault: Bool
            switch limit {
            case .objectSize: atDefault = limits.maxObjectSize >= d.maxObjectSize
            case .deltaDepth: atDefault = limits.maxDeltaDepth >= d.maxDeltaDepth
            case .packObjects: atDefault = limits.maxPackObjects >= d.maxPackObjects
            case .inflatedBytes, .deltaBytes:
                atDefault = (limits.workFactor == 0 || limits.workFactor >= d.workFactor) && limits.maxWork >= d.maxWork
            case .packSize: atDefault = maxPackSize >= SyncOptions.defaultMaxPackBytes
            case .deadline: atDefault = deadline == 0 || deadline >= SyncOptions.defaultDeadline
            }
            guard atDefault else { return nil }
            return limit == .deadline ? .stall : .badObjects
        case .notFound, .refused, .connection, .local, .busy, .untrusted:
            return nil
        }
    }

    /// Records the peer's offence in the peer book (through the running node when there
    /// is one), and says so.
    static func hold(_ peer: PeerID, to f: SyncFailure, limits: ObjectLimits, maxPackSize: Int, deadline: Double,
                     timeout: Double, config: NodeConfig, _ context: Context) {
        guard let event = offence(f, limits: limits, maxPackSize: maxPackSize, deadline: deadline, timeout: timeout) else {
            switch f {
            case let .budget(limit, _): context.log("not counting it against \(peer.short): \(limit.setting) is set below its default")
            case .timeout: context.log("not counting it against \(peer.short): --timeout is set below its default")
            default: break
            }
            return
        }
        if let outcome = PeerBookAccess.record(event, peer: peer, reason: "guts sync: \(f.description)", context, parameters: config.score) {
            context.log("\(peer.short): \(outcome)")
        }
    }

    static func describe(_ f: SyncFailure, peer: String) -> CommandError {
        switch f {
        case let .notFound(m): return CommandError(.refused, "peer \(peer): \(m)")
        case let .refused(m): return CommandError(.refused, "peer \(peer): \(m)")
        case let .integrity(m): return CommandError(.integrity, "peer \(peer) sent bad data: \(m); nothing was stored")
        case let .protocolViolation(m): return CommandError(.protocolError, "peer \(peer): \(m)")
        case let .timeout(m): return CommandError(.timeout, "peer \(peer): \(m)")
        case let .connection(m): return CommandError(.unreachable, "peer \(peer): \(m)")
        case let .local(m): return CommandError(.io, m)
        case let .busy(m): return CommandError(.busy, m)
        case let .forged(m): return CommandError(.integrity, "peer \(peer) sent signed state that does not verify: \(m); nothing was changed")
        case let .stale(m): return CommandError(.integrity, "peer \(peer) sent stale signed state: \(m); nothing was changed")
        case let .identityMismatch(m): return CommandError(.integrity, "identity mismatch: \(m)")
        case let .untrusted(m): return CommandError(.authentication, "peer \(peer): \(m); nothing was stored")
        case let .budget(limit, m):
            return CommandError(.integrity, "peer \(peer) sent more than this client accepts: \(m); nothing was stored\(hint(limit))")
        }
    }

    /// How to raise `limit`, for people who mirror unusual repositories.
    static func hint(_ limit: ResourceLimit) -> String {
        switch limit {
        case .objectSize, .deltaDepth, .packSize:
            return " (limit \(limit.setting): raise it with --\(limit.setting) or '\(limit.setting) = ...' in the config file)"
        case .inflatedBytes, .deltaBytes:
            return " (limit work-factor: raise it with --work-factor, or --max-work when the cap was reached, or in the config file)"
        case .deadline:
            return " (limit deadline: raise it with --deadline or 'sync-deadline = ...' in the config file)"
        case .packObjects:
            return ""
        }
    }

    static func progressLine(_ p: SyncProgress) -> String {
        let rate = p.seconds > 0 ? Double(p.bytes) / p.seconds : 0
        let objects = p.objects.map { "\($0) objects, " } ?? ""
        switch p.phase {
        case .refs: return "asking for refs..."
        case .receiving: return "receiving: \(objects)\(bytes(p.bytes)), \(bytes(Int(rate)))/s"
        case .indexing: return "verifying \(objects)\(bytes(p.bytes))..."
        case .checking: return "checking connectivity..."
        case .updating: return "updating refs..."
        }
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : "\(format3((v * 10).rounded() / 10)) \(units[u])"
    }

    static func short(_ id: ObjectID?) -> String { id.map { String($0.hex.prefix(12)) } ?? "-" }

    static func emit(_ signed: SignedSyncReport, name: RepositoryRef, peer: String, _ context: Context) {
        let r = signed.sync
        let created = r.changes.filter { $0.kind == .created }.count
        let updated = r.changes.filter { $0.kind == .updated }.count
        let deleted = r.changes.filter { $0.kind == .deleted }.count
        if context.json {
            context.out(JSON.object([
                "repository": .string(name.description),
                "path": .string(r.repositoryPath),
                "peer": .string(peer),
                "status": .string(r.upToDate ? "up-to-date" : "updated"),
                "created": .bool(r.created),
                "signed": .bool(signed.id != nil),
                "id": signed.id.map { .string($0.description) } ?? .null,
                "identity_version": signed.identityVersion.map { .int(Int($0)) } ?? .null,
                "pinned": .bool(signed.pinned && signed.id != nil),
                "delegates": .array(signed.delegates.map { d in
                    .object([("peer_id", .string(d.delegate.description)), ("from", d.from.map { .int(Int($0)) } ?? .null),
                             ("to", .int(Int(d.to)))])
                }),
                "diverged": .array(signed.diverged.map { .string($0) }),
                "refs_created": .int(created), "refs_updated": .int(updated), "refs_deleted": .int(deleted),
                "changes": .array(r.changes.map { c in
                    .object([("ref", .string(c.name)), ("old", c.old.map { .string($0.hex) } ?? .null),
                             ("new", c.new.map { .string($0.hex) } ?? .null)])
                }),
                "head_changed": .bool(r.headChanged),
                "head": r.head.map { .string($0) } ?? .null,
                "objects": .int(r.objectsReceived),
                "bytes": .int(r.bytesReceived),
                "seconds": .double(r.seconds),
            ]))
            return
        }
        // -q: nothing on success (cron mails only what goes wrong).
        if context.quiet { return }
        if r.upToDate {
            context.out("\(name) is up to date with \(peer)" + (signed.id == nil ? " (unsigned)" : ""))
            return
        }
        context.out("synced \(name) from \(peer) into \(r.repositoryPath)\(r.created ? " (new)" : "")")
        if let id = signed.id {
            context.out("  identity \(id), version \(signed.identityVersion ?? 0)\(signed.workingCopy ? " (working copy: only other delegates' refs)" : "")")
        } else {
            context.out("  unsigned (no identity): the refs are the peer's")
        }
        if signed.pinned, let id = signed.id { context.out("  pinned   identity \(id)") }
        for d in signed.delegates {
            context.out("  signed   \(d.delegate.short)  sequence \(d.from.map(String.init) ?? "-")..\(d.to)")
        }
        // Ref names come from the peer: escaped as they are printed.
        for c in r.changes {
            let ref = Escape.text(c.name)
            switch c.kind {
            case .created: context.out("  new      \(ref)  \(short(c.new))")
            case .updated: context.out("  updated  \(ref)  \(short(c.old))..\(short(c.new))")
            case .deleted: context.out("  deleted  \(ref)  (was \(short(c.old)))")
            }
        }
        for d in signed.diverged { context.out("  diverged \(Escape.text("\(d)"))  (delegates disagree; left as it was)") }
        if r.headChanged, let head = r.head { context.out("  HEAD  ->  \(Escape.text(head))") }
        context.out("refs: \(created) new, \(updated) updated, \(deleted) deleted; objects: \(r.objectsReceived) (\(bytes(r.bytesReceived))); \(format3(r.seconds)) s")
    }
}
