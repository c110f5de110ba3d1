import GutsAddress
import GutsGit
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTrust
import GutsWire

/// A connection's number inside one node (never reused while the node runs).
public typealias LinkID = UInt64

/// What the node service learns: peer events, requests, results of work it asked for.
/// The time comes with every event (`NodeService.handle(_:now:)`), never from a clock.
public enum NodeEvent: Sendable {
    /// The node started; bootstrap peers are dialled and the first scan is planned.
    case started
    /// A session was established on a link; `bootstrap` names the bootstrap peer it was
    /// dialled for.
    case established(LinkID, PeerInfo, address: String, inbound: Bool, bootstrap: Int?)
    /// A link ended (established or not).
    case closed(LinkID, reason: String)
    /// Dialling a bootstrap peer failed before a session was established.
    case dialFailed(bootstrap: Int, reason: String)
    /// A message from a peer that no protocol engine took and no local request awaits.
    case message(LinkID, Message)
    /// Every served repository as the announcer's executor found it (after signing the
    /// refs of those this node is a delegate of).
    case scanned([RepositoryName: ScannedRepository])
    /// A valid announcement arrived by gossip from `origin`.
    case announced(Announcement, origin: PeerID)
    /// The mirror sync of `options.mirrors[spec]` finished.
    case mirrored(spec: Int, MirrorOutcome)
    /// A wake-up the service asked for (or any other moment).
    case tick
}

/// How a mirror sync ended (for logs and for deciding what comes next).
public enum MirrorOutcome: Sendable, Equatable {
    case updated(from: String, refs: Int, objects: Int)
    case upToDate(from: String)
    case failed(MirrorFailure)
}

/// Why a mirror sync failed, and whether a peer is to blame (for scoring peers).
public struct MirrorFailure: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// Signed refs or an identity that do not verify (bad signature, not a delegate,
        /// wrong repository, below threshold).
        case forged
        /// Older signed state than installed or than announced (rollback, replay, freeze).
        case stale
        /// Other bad data: malformed, missing or unrequested objects.
        case integrity
        /// The peer serves another identity under the followed name or ID.
        case identityMismatch = "identity-mismatch"
        /// Nothing pinned yet and no peer the user named offers the identity.
        case untrusted
        case protocolViolation = "protocol"
        case unreachable
        case timeout
        /// Not found, busy, access denied.
        case refused
        /// A local problem (disk, lock).
        case local
    }

    public var kind: Kind
    /// The peer whose data or behaviour caused it, when a peer did.
    public var peer: PeerID?
    public var message: String

    public init(_ kind: Kind, peer: PeerID?, _ message: String) {
        self.kind = kind
        self.peer = peer
        self.message = message
    }

    /// Whether the peer misbehaved (sent forged, stale or invalid data, or broke the
    /// protocol) rather than merely being unavailable.
    public var penalizes: Bool {
        peer != nil && [.forged, .stale, .integrity, .identityMismatch, .protocolViolation].contains(kind)
    }

    public var description: String { message }
}

/// A mirror sync for the mirror executor to run.
public struct MirrorJob: Sendable, Equatable {
    /// Index into `NodeService.Options.mirrors`.
    public var index: Int
    public var spec: MirrorSpec
    /// The node that announced, tried first when connected.
    public var origin: PeerID?
    /// Connected links that serve objects, best first.
    public var links: [LinkID]
    /// Sequences announced per delegate: a peer that serves older signed refs is stale.
    public var expected: [PeerID: UInt64] = [:]
    /// For an unsigned repository: the only peer it may be synced from.
    public var onlyFrom: PeerID?
}

public enum LogLevel: Sendable, Equatable { case info, debug }

/// What the service asks its shell to do, in order.
public enum NodeAction: Sendable, Equatable {
    case dial(bootstrap: Int, Endpoint)
    case send(LinkID, Message)
    case disconnect(LinkID, ReasonCode, String)
    /// Hand a sync request to the sync server's executors.
    case serve(LinkID, SyncMessage)
    /// Read the refs of every served repository (answered with `.scanned`).
    case scan
    /// Sign and publish an announcement on `topic`.
    case publish(topic: String, Announcement)
    /// Run a mirror sync (answered with `.mirrored`).
    case mirror(MirrorJob)
    /// Record in known_peers that `peer` answered at `address` (first session of a
    /// bootstrap peer dialled without a peer ID); its later dials demand that identity.
    case remember(bootstrap: Int, address: String, PeerID)
    case log(LogLevel, String)
}

/// The node as a pure state machine (in the style of heartwood's service and its outbox):
/// events and the time in, actions out. It owns the peer manager, the announcer and the
/// mirrorer; the NIO shell (`Node`) executes its actions and feeds back their results.
/// Deterministic: randomness (reconnect jitter) comes from a seeded generator.
public struct NodeService: Sendable {
    public struct Options: Sendable {
        public var bootstrap: [Endpoint] = []
        /// Whether repositories are served (sync requests answered, changes announced).
        public var serving = false
        public var mirrors: [MirrorSpec] = []
        public var announceInterval: Double = 2
        /// Seconds between catch-up syncs of each followed repository (jittered ±10%);
        /// 0 for none. Each is also synced once at start.
        public var mirrorInterval: Double = 300
        /// Whether each followed repository is synced once at start.
        public var mirrorAtStart = true
        public var minBackoff: Double = 1
        public var maxBackoff: Double = 60
        /// Bootstrap peers (indices into `bootstrap`) dialled without a peer ID whose
        /// first session pins their identity and is recorded (known_peers accept-new).
        public var learnBootstrap: Set<Int> = []
        /// Whether info lines are wanted: the per-connection ones are not even formatted
        /// when they are not (a busy listener run with --quiet).
        public var logsInfo = true
        public init() {}
    }

    public let options: Options
    public let localPeer: PeerID
    public private(set) var peers: PeerManager
    public private(set) var announcer: Announcer
    public private(set) var mirrorer: Mirrorer
    private var stopped = false

    public init(options: Options, localPeer: PeerID, seed: UInt64) {
        self.options = options
        self.localPeer = localPeer
        peers = PeerManager(bootstrap: options.bootstrap, minBackoff: options.minBackoff, maxBackoff: options.maxBackoff, seed: seed)
        announcer = Announcer(interval: options.announceInterval, enabled: options.serving)
        mirrorer = Mirrorer(specs: options.mirrors, interval: options.mirrorInterval, seed: seed ^ 0x6D69_7272_6F72)
    }

    /// When the shell must next call `handle(.tick, now:)`, if ever.
    public var nextDeadline: Instant? {
        stopped ? nil : [peers.nextDeadline, announcer.nextDeadline, mirrorer.nextDeadline].compactMap { $0 }.min()
    }

    /// From now on, start nothing new (no dials, scans or mirrors).
    public mutating func stop() { stopped = true }

    public mutating func handle(_ event: NodeEvent, now: Instant) -> [NodeAction] {
        var out: [NodeAction] = []
        switch event {
        case .started:
            announcer.start(now: now)
            if options.mirrorAtStart { mirrorer.start(now: now) }
        case let .established(link, info, address, inbound, bootstrap):
            peers.established(link, info: info, address: address, inbound: inbound, bootstrap: bootstrap, now: now)
            if let loser = peers.simultaneousDial(link, local: localPeer) {
                // Both nodes pick the same session to drop (guts-protocol(7), SESSION).
                out.append(.log(.info, "two sessions with \(info.peerID) (simultaneous dial): closing \(peers.describe(loser)), keeping the one dialed by the lower peer ID"))
                out.append(.disconnect(loser, .shutdown, PeerManager.duplicateReason))
            }
            if let b = bootstrap, options.learnBootstrap.contains(b), let endpoint = peers.pin(b, info.peerID) {
                out.append(.remember(bootstrap: b, address: endpoint.address, info.peerID))
            }
            if options.logsInfo {
                let kind = info.capabilities.contains(GossipClient.capability) ? "gossip client" : (bootstrap != nil ? "bootstrap" : (inbound ? "inbound" : "outbound"))
                out.append(.log(.info, "peer connected: \(info.peerID) \(address) (\(kind), \(Escape.text(info.agent)), protocol \(info.version), handshake \(Self.ms(info.handshakeSeconds)) ms)"))
            }
        case let .closed(link, reason):
            if let gone = peers.closed(link, now: now, reconnect: !stopped) {
                if options.logsInfo { out.append(.log(.info, "peer disconnected: \(gone.info.peerID) \(gone.address) (\(Escape.text(reason)))")) }
                if let b = gone.bootstrap, let wait = peers.retryDelay(b) {
                    out.append(.log(.info, "bootstrap peer \(options.bootstrap[b]) disconnected; reconnecting in \(Self.seconds(wait)) s"))
                }
            }
        case let .dialFailed(b, reason):
            let wait = peers.dialFailed(b, now: now, reconnect: !stopped)
            out.append(.log(.info, "bootstrap peer \(options.bootstrap[b]) unreachable (\(Escape.text(reason)))" + (wait.map { "; retrying in \(Self.seconds($0)) s" } ?? "")))
        case let .message(link, message):
            out += dispatch(message, from: link)
        case let .scanned(current):
            out += announcer.scanned(current, now: now)
        case let .announced(announcement, origin):
            out += announced(announcement, origin: origin)
        case let .mirrored(index, outcome):
            let name = options.mirrors.indices.contains(index) ? options.mirrors[index].description : "mirror \(index)"
            switch outcome {
            case let .updated(from, refs, objects):
                out.append(.log(.info, "mirror: synced \(name) from \(from): \(refs) refs changed, \(objects) objects"))
            case let .upToDate(from):
                out.append(.log(.info, "mirror: \(name) is up to date with \(from)"))
            case let .failed(f):
                let blame = f.penalizes ? " [peer \(f.peer?.short ?? "?") misbehaved: \(f.kind.rawValue)]" : ""
                out.append(.log(.info, "mirror: cannot sync \(name): \(Escape.text(f.message))\(blame)"))
            }
            if let again = mirrorer.finished(index, now: now), !stopped {
                out.append(.mirror(job(index, origin: again.origin, expected: again.expected, onlyFrom: again.onlyFrom)))
            }
            // Re-announce promptly: the next scan sees the new refs.
            announcer.scanSoon(now: now)
        case .tick:
            break
        }
        if !stopped {
            for (b, endpoint) in peers.dueDials(now: now) {
                out.append(.log(.debug, "dialling bootstrap peer \(endpoint)"))
                out.append(.dial(bootstrap: b, endpoint))
            }
            if announcer.scanDue(now: now) { out.append(.scan) }
            out += dueMirrors(now: now)
        }
        return out
    }

    /// Initial and periodic catch-up syncs whose time has come (guts-listen(1),
    /// MIRRORING): they find what announcements missed. One that can only use connected
    /// peers (no address given) waits until a peer that serves objects is connected.
    mutating func dueMirrors(now: Instant) -> [NodeAction] {
        // Runs after every event: without followed repositories, skip listing the peers.
        guard !options.mirrors.isEmpty else { return [] }
        var out: [NodeAction] = []
        let connected = !peers.objectServers(preferring: nil).isEmpty
        if connected { mirrorer.peerAvailable(now: now) }
        for index in mirrorer.due(now: now) {
            let spec = options.mirrors[index]
            if spec.peer == nil && !connected {
                mirrorer.waitForPeer(index)
                out.append(.log(.debug, "mirror: \(spec) waits for a connected peer to catch up from"))
                continue
            }
            let why = mirrorer.synced.contains(index) ? "catch-up" : "initial"
            if mirrorer.request(index, origin: nil, expected: [:], onlyFrom: nil) {
                out.append(.log(.debug, "mirror: \(why) sync of \(spec)"))
                out.append(.mirror(job(index, origin: nil, expected: [:], onlyFrom: nil)))
            }
        }
        return out
    }

    /// Requests that no engine took: sync requests go to the sync server when serving;
    /// answers nobody asked for are dropped.
    func dispatch(_ message: Message, from link: LinkID) -> [NodeAction] {
        let who = peers.describe(link)
        switch (message, message.syncMessage) {
        case let (_, request?) where request.isRequest:
            if options.serving { return [.serve(link, request)] }
            let capability = request.kind == .getObjects ? "objects" : "refs"
            return [.send(link, .error(ErrorReply(requestID: request.requestID, code: .badRequest,
                                                  message: "this node does not offer the '\(capability)' capability")))]
        case (_, _?), (.error, _), (.pong, _):
            return [.log(.debug, "dropping an unsolicited \(message.typeName) from \(who)")]
        default:
            return [.log(.debug, "ignoring \(message.typeName) from \(who)")]
        }
    }

    /// Routes an announcement to the mirrors it concerns (guts-listen(1), MIRRORING):
    /// SignedRefs of a followed repository ID that is newer than installed start a sync
    /// from the announcer (any announcer: what it serves is verified); RefsChanged of an
    /// unsigned followed repository starts one only when the user named the announcer.
    mutating func announced(_ announcement: Announcement, origin: PeerID) -> [NodeAction] {
        guard origin != localPeer else { return [] }
        var out: [NodeAction] = []
        for (index, spec) in options.mirrors.enumerated() {
            let local = localName(of: spec)
            let pinned = spec.id ?? local.flatMap { announcer.known[$0]?.id }
            switch announcement {
            case let .signedRefs(u):
                if let pinned {
                    guard pinned == u.repository else { continue }
                } else {
                    // Not pinned yet (no local copy, or an unsigned one): only the peer the
                    // user named may bring the first identity.
                    guard let named = spec.trusted, named == origin else { continue }
                }
                if let local, let have = announcer.known[local]?.states[u.delegate], have.sequence >= u.sequence {
                    out.append(.log(.debug, "announcement: \(origin.short) has \(spec) of \(u.delegate.short) at sequence \(u.sequence); this node has \(have.sequence)"))
                    continue
                }
                out.append(.log(.info, "announcement: \(origin.short) has \(spec) signed by \(u.delegate.short), sequence \(u.sequence)"))
                if !stopped, mirrorer.request(index, origin: origin, expected: [u.delegate: u.sequence], onlyFrom: nil) {
                    out.append(.mirror(job(index, origin: origin, expected: [u.delegate: u.sequence], onlyFrom: nil)))
                }
            case let .refsChanged(r):
                guard let name = spec.name, name.value == r.repository else { continue }
                if pinned != nil {
                    out.append(.log(.debug, "announcement: ignoring unsigned refs of \(name) from \(origin.short): \(name) is signed"))
                    continue
                }
                guard let named = spec.trusted, named == origin else {
                    out.append(.log(.debug, "announcement: ignoring unsigned refs of \(name) from \(origin.short), not the peer named for it"))
                    continue
                }
                out.append(.log(.info, "announcement: \(origin.short) changed \(name) (unsigned)"))
                if !stopped, mirrorer.request(index, origin: origin, expected: [:], onlyFrom: origin) {
                    out.append(.mirror(job(index, origin: origin, expected: [:], onlyFrom: origin)))
                }
            case .newRepository:
                continue
            }
        }
        return out
    }

    /// The served repository a mirror spec lands in: its name, or for an ID the served
    /// repository with that identity.
    func localName(of spec: MirrorSpec) -> RepositoryName? {
        if let name = spec.name { return name }
        guard let id = spec.id else { return nil }
        return announcer.known.first(where: { $0.value.id == id })?.key
    }

    func job(_ index: Int, origin: PeerID?, expected: [PeerID: UInt64], onlyFrom: PeerID?) -> MirrorJob {
        MirrorJob(index: index, spec: options.mirrors[index], origin: origin, links: peers.objectServers(preferring: origin),
                  expected: expected, onlyFrom: onlyFrom)
    }

    static func ms(_ s: Double) -> String { String((s * 1_000_000).rounded() / 1000) }

    static func seconds(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}

/// The node's connected peers and its bootstrap peers' reconnect schedule (pure).
public struct PeerManager: Sendable {
    public struct Entry: Sendable, Equatable {
        public var info: PeerInfo
        public var address: String
        public var inbound: Bool
        public var bootstrap: Int?
        public var since: Instant
    }

    struct Bootstrap: Sendable {
        var endpoint: Endpoint
        var connected: LinkID?
        var dialling = false
        /// Backoff for the next failure.
        var backoff: Double
        /// When to dial next (nil: not planned).
        var nextDial: Instant?
        var lastDelay: Double?
    }

    public private(set) var links: [LinkID: Entry] = [:]
    var bootstrap: [Bootstrap]
    let minBackoff: Double
    let maxBackoff: Double
    var rng: SplitMix

    init(bootstrap: [Endpoint], minBackoff: Double, maxBackoff: Double, seed: UInt64) {
        self.bootstrap = bootstrap.map { Bootstrap(endpoint: $0, backoff: minBackoff, nextDial: Instant(nanoseconds: 0)) }
        self.minBackoff = minBackoff
        self.maxBackoff = maxBackoff
        rng = SplitMix(seed: seed)
    }

    var nextDeadline: Instant? {
        bootstrap.compactMap { $0.dialling ? nil : $0.nextDial }.min()
    }

    /// Bootstrap peers whose dial time has come (marked as being dialled).
    mutating func dueDials(now: Instant) -> [(Int, Endpoint)] {
        var due: [(Int, Endpoint)] = []
        for i in bootstrap.indices {
            guard !bootstrap[i].dialling, bootstrap[i].connected == nil, let at = bootstrap[i].nextDial, at <= now else { continue }
            bootstrap[i].dialling = true
            bootstrap[i].nextDial = nil
            due.append((i, bootstrap[i].endpoint))
        }
        return due
    }

    mutating func established(_ link: LinkID, info: PeerInfo, address: String, inbound: Bool, bootstrap b: Int?, now: Instant) {
        links[link] = Entry(info: info, address: address, inbound: inbound, bootstrap: b, since: now)
        if let b, bootstrap.indices.contains(b) {
            bootstrap[b].connected = link
            bootstrap[b].dialling = false
            bootstrap[b].backoff = minBackoff
        }
    }

    static let duplicateReason = "duplicate session: keeping the one dialed by the lower peer ID"

    /// Whether `local` keeps the session it dialed when it and `remote` dialed each other:
    /// the session dialed by the lower peer ID (its 32 key bytes compared) survives.
    public static func keepsOwnDial(local: PeerID, remote: PeerID) -> Bool { local < remote }

    /// Node-to-node sessions (not gossip clients, nor one-shot commands run with a
    /// node's identity, which list neither capability).
    static func isNodeSession(_ e: Entry) -> Bool {
        e.info.capabilities.contains(GossipService.capability) && !e.info.capabilities.contains(GossipClient.capability)
    }

    /// Two nodes that dial each other at once hold two sessions, one each way. When
    /// `link` just made such a pair, returns the session to close: the one not dialed by
    /// the lower peer ID, so both ends close the same one. A bootstrap role moves to the
    /// session kept (its close redials the bootstrap peer; the dropped one's does not).
    mutating func simultaneousDial(_ link: LinkID, local: PeerID) -> LinkID? {
        guard let new = links[link], Self.isNodeSession(new), new.info.peerID != local else { return nil }
        guard let other = links.filter({ $0.key != link && $0.value.info.peerID == new.info.peerID
                                            && $0.value.inbound != new.inbound && Self.isNodeSession($0.value) })
            .keys.min() else { return nil }
        let keepOutbound = Self.keepsOwnDial(local: local, remote: new.info.peerID)
        let (keep, drop) = new.inbound != keepOutbound ? (link, other) : (other, link)
        if let b = links[drop]?.bootstrap, bootstrap.indices.contains(b), links[keep]?.bootstrap == nil {
            links[keep]?.bootstrap = b
            links[drop]?.bootstrap = nil
            bootstrap[b].connected = keep
        }
        return drop
    }

    /// Makes later dials of bootstrap peer `b` demand `peer`, when it had no peer ID yet;
    /// returns its endpoint then.
    mutating func pin(_ b: Int, _ peer: PeerID) -> Endpoint? {
        guard bootstrap.indices.contains(b), bootstrap[b].endpoint.peer == nil else { return nil }
        bootstrap[b].endpoint.peer = peer
        return bootstrap[b].endpoint
    }

    /// Forgets a link; a bootstrap link is redialled after the minimum backoff (jittered).
    mutating func closed(_ link: LinkID, now: Instant, reconnect: Bool) -> Entry? {
        guard let entry = links.removeValue(forKey: link) else { return nil }
        if let b = entry.bootstrap, bootstrap.indices.contains(b), bootstrap[b].connected == link {
            bootstrap[b].connected = nil
            bootstrap[b].dialling = false
            if reconnect { plan(b, after: minBackoff, now: now) }
        }
        return entry
    }

    /// A dial failed: retry after the current backoff (jittered), doubling it up to the cap.
    mutating func dialFailed(_ b: Int, now: Instant, reconnect: Bool) -> Double? {
        guard bootstrap.indices.contains(b) else { return nil }
        bootstrap[b].dialling = false
        guard reconnect else { return nil }
        let wait = bootstrap[b].backoff
        bootstrap[b].backoff = min(maxBackoff, wait * 2)
        return plan(b, after: wait, now: now)
    }

    func retryDelay(_ b: Int) -> Double? { bootstrap.indices.contains(b) ? bootstrap[b].lastDelay : nil }

    /// ±20% jitter so many nodes restarting together do not reconnect in lockstep.
    @discardableResult
    mutating func plan(_ b: Int, after delay: Double, now: Instant) -> Double {
        let jitter = Double(rng.next() % 401) / 1000 - 0.2
        let wait = max(0.05, delay * (1 + jitter))
        bootstrap[b].nextDial = now.adding(seconds: wait)
        bootstrap[b].lastDelay = wait
        return wait
    }

    /// Connected peers that serve objects (not gossip clients), `preferring` first.
    func objectServers(preferring origin: PeerID?) -> [LinkID] {
        let servers = links.filter { _, e in
            e.info.capabilities.contains("objects") && !e.info.capabilities.contains(GossipClient.capability)
        }
        return servers.keys.sorted { a, b in
            let ea = servers[a]?.info.peerID == origin, eb = servers[b]?.info.peerID == origin
            return ea != eb ? ea : a < b
        }
    }

    func describe(_ link: LinkID) -> String {
        links[link].map { "\($0.info.peerID.short) \($0.address)" } ?? "link \(link)"
    }
}

/// Decides what to announce from scans of the served repositories (pure), one message
/// per change: a new repository gets NewRepository; each delegate state of a signed
/// repository that changed (this node signed it, or a sync installed it) SignedRefs;
/// an unsigned repository whose refs changed RefsChanged. Repositories found by the
/// first scan are only announced as repositories (and what this node signed in that
/// scan); one that appears later (pushed, or created by a sync) also gets its states.
public struct Announcer: Sendable {
    let interval: Double
    let enabled: Bool
    /// The last scan: what followers of each repository were told.
    public private(set) var known: [RepositoryName: ScannedRepository] = [:]
    var initial = true
    var scanning = false
    var nextScan: Instant?
    var reported: Set<String> = []

    init(interval: Double, enabled: Bool) {
        self.interval = interval
        self.enabled = enabled
    }

    var nextDeadline: Instant? { scanning ? nil : nextScan }

    mutating func start(now: Instant) {
        if enabled { nextScan = now.adding(seconds: min(1, interval)) }
    }

    mutating func scanSoon(now: Instant) {
        if enabled { nextScan = now }
    }

    mutating func scanDue(now: Instant) -> Bool {
        guard enabled, !scanning, let at = nextScan, at <= now else { return false }
        scanning = true
        nextScan = nil
        return true
    }

    mutating func scanned(_ current: [RepositoryName: ScannedRepository], now: Instant) -> [NodeAction] {
        scanning = false
        if nextScan == nil { nextScan = now.adding(seconds: interval) }
        var out: [NodeAction] = []
        for name in current.keys.sorted(by: { $0.value < $1.value }) {
            guard let repo = current[name] else { continue }
            // Restricted repositories are never announced: not their names, not their refs.
            if repo.restricted {
                if known.removeValue(forKey: name) != nil || reported.insert("\(name): restricted").inserted {
                    out.append(.log(.debug, "announce: \(name) is restricted (guts-allow); not announced"))
                }
                continue
            }
            let previous = known[name]
            if let problem = repo.problem {
                if reported.insert("\(name): \(problem)").inserted { out.append(.log(.info, "announce: \(name): \(Escape.text(problem))")) }
                if repo.id == nil { continue }
            }
            known[name] = repo
            if previous == nil {
                out.append(.log(.info, "announcing repository \(name)" + (repo.id.map { " (\($0))" } ?? " (unsigned)")))
                out.append(.publish(topic: Topic.repositories, .newRepository(NewRepository(repository: name.value))))
            }
            if let id = repo.id {
                let before = previous?.id == id ? previous?.states ?? [:] : [:]
                for (delegate, head) in repo.states.sorted(by: { $0.key < $1.key }) where before[delegate] != head {
                    let signedNow = repo.signer == delegate && repo.signed == head.sequence
                    // The first scan announces only what it signed itself.
                    if previous == nil && initial && !signedNow { continue }
                    guard let oid = WireOID(head.commit.bytes) else { continue }
                    if signedNow { out.append(.log(.info, "signed \(name): sequence \(head.sequence)")) }
                    out.append(.log(.info, "announcing \(name) signed by \(delegate.short), sequence \(head.sequence)"))
                    out.append(.publish(topic: Topic.commits, .signedRefs(SignedRefsUpdate(repository: id, delegate: delegate,
                                                                                            sequence: head.sequence, signedRefs: oid))))
                }
            } else if repo.hasRefs, !(previous == nil && initial), previous?.refsHash != repo.refsHash {
                out.append(.log(.info, "announcing \(name): refs changed (unsigned)"))
                out.append(.publish(topic: Topic.commits, .refsChanged(RefsChanged(repository: name.value, refsHash: repo.refsHash))))
            }
        }
        // A repository that disappeared is announced again if it comes back.
        for name in known.keys where current[name] == nil || (current[name]?.problem != nil && current[name]?.id == nil) { known[name] = nil }
        initial = false
        return out
    }

}

/// Mirror syncs per followed repository (pure): at most one runs per spec;
/// announcements that arrive meanwhile coalesce into one more run after it. Each spec
/// is also synced at start and then every `interval` seconds (±10%, seeded jitter, so
/// mirrors restarted together do not ask in lockstep) after its last sync ended.
public struct Mirrorer: Sendable {
    struct Running: Sendable {
        var again = false
        var origin: PeerID?
        var expected: [PeerID: UInt64] = [:]
        var onlyFrom: PeerID?
    }

    let specs: [MirrorSpec]
    let interval: Double
    var rng: SplitMix
    var running: [Int: Running] = [:]
    /// When each spec's next initial or catch-up sync is due.
    public private(set) var nextSync: [Int: Instant] = [:]
    /// Specs whose sync is due but that wait for a connected peer.
    var waiting: Set<Int> = []
    /// Specs synced at least once (the next timed sync is a catch-up, not the initial one).
    var synced: Set<Int> = []

    init(specs: [MirrorSpec], interval: Double = 0, seed: UInt64 = 0) {
        self.specs = specs
        self.interval = interval
        rng = SplitMix(seed: seed)
    }

    /// The initial syncs: every spec is due at once.
    mutating func start(now: Instant) {
        for i in specs.indices { nextSync[i] = now }
    }

    var nextDeadline: Instant? { nextSync.values.min() }

    /// Specs whose timed sync is due (taken off the schedule; `finished` plans the next).
    mutating func due(now: Instant) -> [Int] {
        let ready = nextSync.filter { $0.value <= now }.map(\.key).sorted()
        for i in ready { nextSync[i] = nil }
        return ready
    }

    mutating func waitForPeer(_ index: Int) { waiting.insert(index) }

    /// A peer that serves objects is connected: waiting specs are due now.
    mutating func peerAvailable(now: Instant) {
        for i in waiting { nextSync[i] = now }
        waiting = []
    }

    /// The jittered interval: `interval` ±10%.
    mutating func jittered() -> Double {
        interval * (1 + Double(rng.next() % 201) / 1000 - 0.1)
    }

    /// Whether a sync of spec `index` should start now (false: one runs; it will run again).
    mutating func request(_ index: Int, origin: PeerID?, expected: [PeerID: UInt64], onlyFrom: PeerID?) -> Bool {
        if var r = running[index] {
            r.again = true
            r.origin = origin
            r.expected.merge(expected, uniquingKeysWith: max)
            r.onlyFrom = onlyFrom
            running[index] = r
            return false
        }
        running[index] = Running()
        return true
    }

    /// A sync ended: what to run again with, if more announcements came. Otherwise the
    /// next catch-up sync is planned an interval from `now`.
    mutating func finished(_ index: Int, now: Instant) -> (origin: PeerID?, expected: [PeerID: UInt64], onlyFrom: PeerID?)? {
        guard let state = running[index] else { return nil }
        synced.insert(index)
        guard state.again, specs.indices.contains(index) else {
            running[index] = nil
            if interval > 0, specs.indices.contains(index) { nextSync[index] = now.adding(seconds: jittered()) }
            return nil
        }
        running[index] = Running()
        return (state.origin, state.expected, state.onlyFrom)
    }

    public var active: Int { running.count }
}

/// SplitMix64: a small deterministic generator for jitter.
struct SplitMix: Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
