#if canImport(Glibc)
import Glibc
#endif
import GutsIdentity
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers

/// The node's memory of peers for its shell: the peer book (scores, bans, addresses, kept
/// in `<home>/peers`) and the sessions it admitted, under one lock so that admission can
/// be decided synchronously on any connection's loop. Every decision is made by the pure
/// types of GutsPolicy; this class only holds them.
final class Reputation: Sendable {
    struct Session {
        let connection: any PeerLink
        let peer: PeerID
        let ip: IPAddress?
        let inbound: Bool
        let since: Instant
        /// Closed by this node for the peer's score (or the gossip engine's penalties): the
        /// close is the verdict on penalties already counted, not a new violation.
        var closedByVerdict = false
    }

    struct State {
        var book: PeerBook
        var sessions: [ObjectIdentifier: Session] = [:]
        var dirty = false
        var eviction: InboundEviction
        /// When each peer's last overrun was scored (one a second at most).
        var lastOverrun: [PeerID: Instant] = [:]
    }

    /// Sessions one identity may hold at once (inbound and outbound together).
    let maxSessionsPerPeer: Int

    let state: NIOLockedValueBox<State>
    let maxInbound: Int
    let path: String?
    let log: NodeLog

    init(book: PeerBook, maxInbound: Int, maxSessionsPerPeer: Int = 2, path: String?, log: NodeLog, seed: UInt64) {
        self.maxSessionsPerPeer = max(1, maxSessionsPerPeer)
        state = NIOLockedValueBox(State(book: book, eviction: InboundEviction(key: seed)))
        self.maxInbound = maxInbound
        self.path = path
        self.log = log
    }

    /// Loads the peer book at `path` (absent: empty). A damaged file is reported and
    /// kept aside rather than silently replaced.
    static func load(path: String?, parameters: ScoreParameters, log: NodeLog) -> PeerBook {
        let epoch = unixTime() - Instant.now().seconds(since: Instant(nanoseconds: 0))
        let empty = PeerBook(epoch: epoch, parameters: parameters)
        guard let path, Files.exists(path) else { return empty }
        do {
            let text = try Files.readString(path, limit: PeerBook.Limits().maxFileBytes)
            return try PeerBook.parse(text, epoch: epoch, now: .now(), parameters: parameters)
        } catch {
            let aside = path + ".damaged"
            _ = rename(path, aside)
            log.info("peer book \(path) cannot be read (\(error)); moved to \(aside), starting with an empty one")
            return empty
        }
    }

    static func address(of connection: any PeerLink) -> IPAddress? {
        let text = connection.remoteAddress
        // "a.b.c.d:port" or "[v6]:port"
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            return IPAddress(text[text.index(after: text.startIndex)..<close])
        }
        return text.lastIndex(of: ":").flatMap { IPAddress(text[..<$0]) }
    }

    // MARK: Admission

    func isBanned(_ ip: IPAddress) -> Bool {
        state.withLockedValue { $0.book.isBanned(ip, now: .now()) }
    }

    /// Decides on an inbound session when its Hello arrives: bans, sessions per identity,
    /// and when the node is full, the least valuable inbound peer makes room (Bitcoin
    /// Core's eviction) or the newcomer is refused.
    func admit(_ connection: any PeerLink, _ peer: PeerID, _ hello: Hello) -> Goodbye? {
        let now = Instant.now()
        let ip = Self.address(of: connection)
        let (refusal, victim): (Goodbye?, (any PeerLink)?) = state.withLockedValue { s in
            if s.book.isBanned(peer, now: now) {
                return (Goodbye(code: .identityRejected, reason: "this identity is banned on this node"), nil)
            }
            // A peer that was disconnected for its score may not come straight back: it is
            // refused until its score has decayed above the disconnect threshold.
            if s.book.standing(peer, now: now) == .disconnect {
                return (Goodbye(code: .identityRejected, reason: "this identity's score is too low to connect; try again later"), nil)
            }
            // Counted without building arrays: this runs for every inbound handshake.
            var sameIdentity = 0
            var inboundCount = 0
            for session in s.sessions.values {
                if session.peer == peer { sameIdentity += 1 }
                if session.inbound { inboundCount += 1 }
            }
            if sameIdentity >= maxSessionsPerPeer {
                return (Goodbye(code: .tooManyConnections, reason: "at most \(maxSessionsPerPeer) sessions per peer"), nil)
            }
            var victim: (any PeerLink)?
            if inboundCount >= maxInbound {
                let candidates = s.sessions.values.filter(\.inbound).map { session in
                    EvictionCandidate(id: ObjectIdentifier(session.connection),
                                      group: (Self.address(of: session.connection) ?? session.ip)?.group ?? AddressGroup(.v4(0)),
                                      connectedSince: session.since,
                                      minPing: session.connection.lastRoundTrip,
                                      lastUseful: nil,
                                      score: s.book.score(session.peer, now: now))
                }
                guard let chosen = s.eviction.select(candidates), let gone = s.sessions.removeValue(forKey: chosen) else {
                    return (Goodbye(code: .tooManyConnections, reason: "this node accepts at most \(maxInbound) connections"), nil)
                }
                victim = gone.connection
            }
            s.sessions[ObjectIdentifier(connection)] = Session(connection: connection, peer: peer, ip: ip, inbound: true, since: now)
            s.book.seen(peer, at: nil, now: now)
            s.dirty = true
            return (nil, victim)
        }
        if let victim {
            log.info("evicting \(victim.peer.map { $0.peerID.short } ?? "?") \(victim.remoteAddress) to make room for \(peer.short) \(connection.remoteAddress)")
            victim.close(.tooManyConnections, "evicted to make room for a newcomer")
        }
        return refusal
    }

    /// An outbound session (which never takes an inbound slot).
    func established(_ connection: any PeerLink, peer: PeerID) {
        state.withLockedValue { s in
            let key = ObjectIdentifier(connection)
            if s.sessions[key] == nil {
                s.sessions[key] = Session(connection: connection, peer: peer, ip: Self.address(of: connection),
                                          inbound: connection.inbound, since: .now())
            }
            s.book.seen(peer, at: nil, now: .now())
            s.dirty = true
        }
    }

    func closed(_ connection: any PeerLink) {
        _ = state.withLockedValue { $0.sessions.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    // MARK: Scores

    /// Records an event of `connection`'s peer and enforces the verdict: graylisted peers
    /// are ignored (see `isGraylisted`), those below the disconnect threshold are
    /// disconnected, banned ones disconnected and refused until the ban ends.
    func record(_ event: ScoreEvent, _ connection: any PeerLink, count: Double = 1, reason: String) {
        guard let peer = connection.peer?.peerID else { return }
        record(event, count: count, peer: peer, address: Self.address(of: connection), reason: reason)
    }

    /// `connection` is about to be closed as the verdict on offences already charged (by
    /// the gossip engine): its close is not charged again.
    func verdict(on connection: any PeerLink) {
        state.withLockedValue { $0.sessions[ObjectIdentifier(connection)]?.closedByVerdict = true }
    }

    /// A session this node closed with a Goodbye that names a violation: the violation is
    /// charged, unless the close was itself the verdict of the peer's score (which would
    /// charge the same offence twice).
    func closedForViolation(_ connection: any PeerLink, reason: String) {
        let verdict = state.withLockedValue { $0.sessions[ObjectIdentifier(connection)]?.closedByVerdict ?? false }
        if !verdict { record(.protocolViolation, connection, reason: reason) }
    }

    func record(_ event: ScoreEvent, count: Double = 1, peer: PeerID, address: IPAddress?, reason: String) {
        let now = Instant.now()
        let (standing, victims, score): (PeerStanding, [any PeerLink], Double) = state.withLockedValue { s in
            let standing = s.book.record(event, count: count, peer: peer, address: address, now: now)
            s.dirty = true
            let victims: [any PeerLink]
            switch standing {
            case .disconnect, .banned:
                var closing: [any PeerLink] = []
                for (key, session) in s.sessions where session.peer == peer {
                    s.sessions[key]?.closedByVerdict = true
                    closing.append(session.connection)
                }
                victims = closing
            default: victims = []
            }
            return (standing, victims, s.book.score(peer, now: now))
        }
        if event.isPenalty {
            log.info("score: \(peer.short) \(event.rawValue) (\(Escape.text(reason))); score \(Self.format(score))")
        }
        switch standing {
        case let .banned(until):
            let when = until.map { "for \(Self.format($0.seconds(since: now))) s" } ?? "until unbanned"
            log.info("score: banning \(peer.short) \(when)")
            for c in victims { c.close(.identityRejected, "banned: \(reason)") }
        case .disconnect:
            log.info("score: disconnecting \(peer.short): score \(Self.format(score)) below the disconnect threshold")
            for c in victims { c.close(.protocolViolation, "score below the disconnect threshold: \(reason)") }
        case .good, .graylisted:
            break
        }
    }

    /// A budget overrun: scored at most once a second per peer, so that a flood costs the
    /// peer steadily rather than all at once (and the log stays short).
    func overrun(_ connection: any PeerLink, reason: String) {
        guard let peer = connection.peer?.peerID else { return }
        let now = Instant.now()
        let due = state.withLockedValue { s -> Bool in
            if let last = s.lastOverrun[peer], now.seconds(since: last) < 1 { return false }
            s.lastOverrun[peer] = now
            if s.lastOverrun.count > 10_000 { s.lastOverrun = s.lastOverrun.filter { now.seconds(since: $0.value) < 1 } }
            return true
        }
        if due { record(.rateLimitOverrun, peer: peer, address: Self.address(of: connection), reason: reason) }
    }

    /// Whether the peer's gossip and requests are ignored.
    func isGraylisted(_ peer: PeerID) -> Bool {
        state.withLockedValue { $0.book.standing(peer, now: .now()) } == .graylisted
    }

    func score(_ peer: PeerID) -> Double {
        state.withLockedValue { $0.book.score(peer, now: .now()) }
    }

    /// Rewards every connected peer for a minute of uptime (capped by the parameters).
    func creditUptime() {
        let peers = state.withLockedValue { Set($0.sessions.values.map(\.peer)) }
        for p in peers { record(.uptime, peer: p, address: nil, reason: "connected") }
    }

    // MARK: Persistence

    /// The peer book's text when it changed since the last call.
    func takeSnapshot() -> String? {
        state.withLockedValue { s in
            guard s.dirty else { return nil }
            s.dirty = false
            s.book.prune(now: .now())
            return s.book.serialize(now: .now())
        }
    }

    /// Writes the peer book if it changed (atomically; blocking: call off the loops).
    func save() {
        guard let path, let text = takeSnapshot() else { return }
        do {
            try Files.writeAtomically(path, string: text, mode: 0o600)
        } catch {
            log.info("cannot write the peer book \(path): \(error)")
        }
    }

    static func format(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() && abs(r) < 1e15 ? String(Int(r)) : String(r)
    }
}

// MARK: - For the control socket and the CLI

/// One peer's score as `guts peers score` shows it.
public struct ScoreSummary: Sendable, Equatable {
    public var peerID: String
    public var score: Double
    /// Component name and its current value (decayed).
    public var components: [String: Double]
    /// "ok", "graylisted", "disconnect" or "banned".
    public var state: String
    /// Unix time the ban ends; nil when not banned or banned until unbanned.
    public var bannedUntil: Double?
    public var permanent: Bool
    public var addresses: [String]
    /// Unix time the peer was last seen.
    public var lastSeen: Double
    public var connected: Bool
}

extension Reputation {
    /// Scores of `peers` (all known peers when empty), best first.
    func summaries(_ peers: [PeerID]) -> [ScoreSummary] {
        let now = Instant.now()
        return state.withLockedValue { s in
            let connected = Set(s.sessions.values.map(\.peer))
            // Every known peer and every connected one (a neutral peer without an endpoint
            // is pruned from the book while it is still connected).
            let wanted = peers.isEmpty ? s.book.peers.map(\.peer) + connected.filter { s.book.entry($0) == nil }.sorted() : peers
            return wanted.compactMap { id -> ScoreSummary? in
                let entry = s.book.entry(id)
                guard entry != nil || connected.contains(id) || !peers.isEmpty else { return nil }
                return Self.summary(id, entry: entry, book: s.book, connected: connected.contains(id), now: now)
            }.sorted { ($0.score, $1.peerID) > ($1.score, $0.peerID) }
        }
    }

    static func summary(_ id: PeerID, entry: PeerBook.Entry?, book: PeerBook, connected: Bool, now: Instant) -> ScoreSummary {
        var components: [String: Double] = [:]
        for (name, value) in book.components(id, now: now) { components[name] = value }
        let standing = book.standing(id, now: now)
        let state: String
        var until: Double?
        var permanent = false
        switch standing {
        case .good: state = "ok"
        case .graylisted: state = "graylisted"
        case .disconnect: state = "disconnect"
        case let .banned(end):
            state = "banned"
            until = end.map { book.unixTime($0) }
            permanent = end == nil
        }
        return ScoreSummary(peerID: id.description, score: book.score(id, now: now), components: components, state: state,
                            bannedUntil: until, permanent: permanent, addresses: entry?.addresses.map(\.description) ?? [],
                            lastSeen: entry?.lastSeen ?? 0, connected: connected)
    }

    /// Bans a peer or an address prefix (nil seconds: until unbanned) and disconnects what
    /// it covers. Returns false when the target was already banned at least that long.
    @discardableResult
    func ban(_ target: BanTarget, seconds: Double?) -> Bool {
        let now = Instant.now()
        let (changed, victims): (Bool, [any PeerLink]) = state.withLockedValue { s in
            let changed = s.book.ban(target, for: seconds, now: now)
            s.dirty = true
            let victims = s.sessions.values.filter { session in
                switch target {
                case let .peer(id): return session.peer == id
                // The address now: a QUIC session follows its peer's validated migration.
                case let .prefix(prefix): return (Self.address(of: session.connection) ?? session.ip).map(prefix.contains) ?? false
                }
            }.map(\.connection)
            return (changed, victims)
        }
        log.info("ban: \(target) \(seconds.map { "for \(Self.format($0)) s" } ?? "until unbanned") (operator)")
        for c in victims { c.close(.identityRejected, "banned by the node's operator") }
        return changed
    }

    @discardableResult
    func unban(_ target: BanTarget) -> Bool {
        let changed = state.withLockedValue { s -> Bool in
            s.dirty = true
            return s.book.unban(target, now: .now())
        }
        log.info("unban: \(target) (operator)")
        return changed
    }

    /// An offence a one-shot command observed (e.g. `guts sync` got bad objects).
    func report(_ event: ScoreEvent, peer: PeerID, reason: String) {
        record(event, peer: peer, address: nil, reason: reason)
    }
}

extension Node {
    /// Peer scores for the control socket.
    public func scoreSummaries(_ peers: [PeerID]) -> [ScoreSummary] { reputation.summaries(peers) }
    /// Bans through the control socket.
    @discardableResult public func ban(_ target: BanTarget, seconds: Double?) -> Bool { reputation.ban(target, seconds: seconds) }
    @discardableResult public func unban(_ target: BanTarget) -> Bool { reputation.unban(target) }
    /// Offences reported by one-shot commands.
    public func report(_ event: ScoreEvent, peer: PeerID, reason: String) { reputation.report(event, peer: peer, reason: reason) }
}
