#if canImport(Glibc)
import Glibc
#endif
import GutsAddress
import GutsControl
import GutsIdentity
import GutsNode
import GutsPolicy
import GutsSupport

/// The peer book (`<home>/peers`, guts-peers(5)) for one-shot commands: through the
/// running node when there is one (it owns the book and writes it), else the file itself.
///
/// Reading needs no lock: the node and `edit` replace the file atomically. Editing holds
/// `node.lock` (so no node can start and load the book half way through, then write its
/// own copy over the change) and the file's `StateFile` lock (so two commands take turns).
enum PeerBookAccess {
    static let fileName = "peers"

    static func path(_ home: String) -> String { home + "/" + fileName }

    /// Where scores come from.
    enum Source {
        /// The node running for the home, connected.
        case node(ControlClient)
        /// No node runs: the file.
        case book
    }

    /// The running node when there is one. A node that holds `node.lock` without
    /// answering on its control socket yet (starting) is waited for, up to `wait`
    /// seconds; one that does not answer at all is an error.
    static func source(_ context: Context, wait: Double = 5) throws -> Source {
        let deadline = Instant.now().adding(seconds: wait)
        while true {
            do {
                return .node(try ControlClient.connect(directory: context.homePath, timeout: LocalNode.timeout))
            } catch .notRunning {
                // Nobody answers: is a node starting (or stopping)?
                guard nodeHoldsLock(context.homePath) else { return .book }
            } catch {
                throw LocalNode.describe(error, context)
            }
            if Instant.now() >= deadline {
                throw CommandError(.io, "a node holds \(context.homePath)/\(ListenCommand.lockFileName) but does not answer on its control socket; try again when it has started or stopped")
            }
            usleep(50_000)
        }
    }

    /// Whether a process holds `node.lock` now.
    static func nodeHoldsLock(_ home: String) -> Bool {
        let lockPath = home + "/" + ListenCommand.lockFileName
        guard Files.exists(lockPath) else { return false }
        guard let lock = try? FileLock.tryAcquire(lockPath, mode: .shared) else { return true }
        lock.release()
        return false
    }

    /// A request to the connected node; error answers become CommandErrors.
    static func call(_ client: ControlClient, _ request: ControlRequest, _ context: Context) throws -> ControlResponse {
        let response: ControlResponse
        do {
            response = try client.call(request, timeout: LocalNode.timeout)
        } catch {
            throw LocalNode.describe(error, context)
        }
        if case let .failure(e) = response { throw LocalNode.describe(e) }
        return response
    }

    /// The Unix time at the monotonic clock's zero, as the node computes it.
    static func epoch() -> Double { unixTime() - Instant.now().seconds(since: Instant(nanoseconds: 0)) }

    /// The peer book of `home`, read only; nil when there is no file yet.
    static func read(home: String, parameters: ScoreParameters) throws -> PeerBook? {
        let file = path(home)
        guard Files.exists(file) else { return nil }
        let text: String
        do {
            text = try Files.readString(file, limit: PeerBook.Limits().maxFileBytes)
        } catch {
            throw CommandError(.io, "cannot read the peer book: \(error)")
        }
        return try parse(text, file: file, parameters: parameters)
    }

    static func parse(_ text: String, file: String, parameters: ScoreParameters) throws -> PeerBook {
        do {
            return try PeerBook.parse(text, epoch: epoch(), now: .now(), parameters: parameters)
        } catch {
            throw CommandError(.io, "the peer book \(file) is damaged: \(error) (see guts-peers(5); the node moves a damaged book aside when it starts)")
        }
    }

    /// Changes the peer book of a home no node runs for: holds `node.lock` and the file's
    /// lock, parses, lets `change` modify it and writes it back atomically when `change`
    /// returns true. Returns what `change` returned.
    static func edit(home: String, parameters: ScoreParameters, _ change: (inout PeerBook, Instant) throws -> Bool) throws -> Bool {
        let lockPath = home + "/" + ListenCommand.lockFileName
        let nodeLock: FileLock?
        do {
            nodeLock = try FileLock.tryAcquire(lockPath, mode: .exclusive, removeOnRelease: true, permissions: 0o600)
        } catch {
            throw CommandError(.io, "cannot lock the state directory: \(error)")
        }
        guard let nodeLock else {
            throw CommandError(.io, "a node started for \(home) meanwhile; try again (it will apply the change at once)")
        }
        defer { nodeLock.release() }
        nodeLock.writeInfo("\(getpid())\n")
        let file = path(home)
        var changed = false
        do {
            try StateFile.update(file, mode: 0o600, limit: PeerBook.Limits().maxFileBytes) { old in
                let now = Instant.now()
                var book = try old.map { try parse(String(decoding: $0, as: UTF8.self), file: file, parameters: parameters) }
                    ?? PeerBook(epoch: epoch(), parameters: parameters)
                changed = try change(&book, now)
                guard changed else { return nil }
                book.prune(now: now)
                return Array(book.serialize(now: now).utf8)
            }
        } catch let e as CommandError {
            throw e
        } catch {
            throw CommandError(.io, "cannot update the peer book \(file): \(error)")
        }
        return changed
    }

    /// Counts penalty `event` against `peer`: through the running node, else in the file.
    /// Never fails the caller: problems are logged. Returns a description of the outcome.
    static func record(_ event: ScoreEvent, peer: PeerID, reason: String, _ context: Context,
                       parameters: ScoreParameters) -> String? {
        let reason = String(reason.utf8.count <= ControlSocket.maxReasonLength ? reason
            : String(decoding: Array(reason.utf8.prefix(ControlSocket.maxReasonLength - 3)), as: UTF8.self) + "...")
        do {
            switch try source(context) {
            case let .node(client):
                defer { client.close() }
                guard case let .reported(info) = try call(client, .report(peer: peer.description, event: event.rawValue, reason: reason), context) else {
                    throw CommandError(.protocolError, "the node answered report with something else")
                }
                return "reported \(event.rawValue) to the running node; score now \(PeerScoreFormat.number(info.score)) (\(PeerScoreFormat.state(info)))"
            case .book:
                guard Files.isDirectory(context.homePath) else {
                    context.debug("not recording \(event.rawValue) against \(peer.short): no state directory \(context.homePath)")
                    return nil
                }
                var info: PeerScoreInfo?
                _ = try edit(home: context.homePath, parameters: parameters) { book, now in
                    book.record(event, peer: peer, now: now)
                    info = PeerScoreReports.from(book: book, peers: [peer], now: now).peers.first
                    return true
                }
                let outcome = info.map { "; score now \(PeerScoreFormat.number($0.score)) (\(PeerScoreFormat.state($0)))" } ?? ""
                return "recorded \(event.rawValue) in the peer book \(path(context.homePath))\(outcome)"
            }
        } catch {
            context.error("could not record \(event.rawValue) against \(peer.short): \(error)")
            return nil
        }
    }
}

/// How scores are written for people.
enum PeerScoreFormat {
    /// At most two decimals, no trailing zeros, no "-0".
    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let r = (v * 100).rounded() / 100
        if r == 0 { return "0" }
        if r == r.rounded(), abs(r) < 1e15 { return String(Int(r)) }
        var text = String(r)
        if let dot = text.firstIndex(of: "."), text.distance(from: dot, to: text.endIndex) > 3 {
            text = String(text[..<text.index(dot, offsetBy: 3)])
        }
        return text
    }

    /// "ok", "graylisted", "disconnected", "banned until 2026-12-01T10:00:00Z" or
    /// "banned until unbanned".
    static func state(_ p: PeerScoreInfo) -> String {
        switch p.state {
        case "banned": return banned(until: p.bannedUntil)
        case "disconnect": return "disconnected"
        default: return p.state
        }
    }

    static func banned(until: Double?) -> String {
        until.map { "banned until " + rfc3339($0) } ?? "banned until unbanned"
    }

    /// `2026-12-01T10:00:00Z` (UTC, whole seconds).
    static func rfc3339(_ unix: Double) -> String {
        guard unix.isFinite, unix >= 0, unix < 253_402_300_800 else { return "-" }
        var t = time_t(unix.rounded())
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2))Z"
    }

    /// The nonzero components, `name=value` separated by commas; "-" when none.
    static func components(_ p: PeerScoreInfo) -> String {
        let parts = p.components.filter { number($0.value) != "0" }.map { "\($0.name)=\(number($0.value))" }
        return parts.isEmpty ? "-" : parts.joined(separator: ",")
    }
}

/// What the peer book says about the peers a one-shot command is about to dial (for
/// `guts sync`): their scores and bans, from the running node or from the file.
struct PeerStandings {
    /// "the running node" or "the peer book".
    let source: String
    private(set) var scores: [PeerID: PeerScoreInfo] = [:]
    let addressBans: [(prefix: AddressPrefix, info: AddressBanInfo)]
    /// The book itself when it was read from the file (to look up peers met later).
    let book: PeerBook?

    /// Loads what concerns `peers` (peer IDs known before dialing). Never fails the
    /// command: when the node or the file cannot tell, says why and returns nil.
    static func load(_ context: Context, peers: [PeerID], parameters: ScoreParameters) -> PeerStandings? {
        do {
            switch try PeerBookAccess.source(context) {
            case let .node(client):
                defer { client.close() }
                guard case let .scores(s) = try PeerBookAccess.call(client, .scores(peers: Array(Set(peers.map(\.description))).sorted()), context)
                else { return nil }
                return PeerStandings(source: "the running node", scores: s, book: nil)
            case .book:
                guard let book = try PeerBookAccess.read(home: context.homePath, parameters: parameters) else { return nil }
                return PeerStandings(source: "the peer book", scores: PeerScoreReports.from(book: book, peers: Array(Set(peers))), book: book)
            }
        } catch {
            context.log("peers are tried in the order given: cannot read their scores: \(error)")
            return nil
        }
    }

    private init(source: String, scores: PeerScores, book: PeerBook?) {
        self.source = source
        for p in scores.peers { if let id = PeerID(p.peerID) { self.scores[id] = p } }
        addressBans = scores.addressBans.compactMap { b in (try? AddressPrefix.parse(b.prefix)).map { ($0, b) } }
        self.book = book
    }

    /// The peer's score (0, neutral, for an unknown peer or an endpoint without peer ID).
    func score(_ endpoint: Endpoint) -> Double { endpoint.peer.flatMap { scores[$0]?.score } ?? 0 }

    /// Why `endpoint` must not be dialled, or nil: its peer ID or its address is banned.
    func ban(_ endpoint: Endpoint) -> String? {
        if let peer = endpoint.peer, let why = ban(of: scores[peer]) { return why }
        guard let ip = IPAddress(endpoint.host) else { return nil }
        guard let hit = addressBans.first(where: { $0.prefix.contains(ip) }) else { return nil }
        let rule = hit.prefix.description == endpoint.host ? "its address is" : "its address is in \(hit.prefix), which is"
        return "\(rule) \(PeerScoreFormat.banned(until: hit.info.bannedUntil))"
    }

    /// Why `peer` (met after dialing an endpoint without peer ID) must not be used, or nil.
    func ban(of peer: PeerID, _ context: Context) -> String? {
        if let known = scores[peer] { return ban(of: known) }
        if let book { return ban(of: PeerScoreReports.from(book: book, peers: [peer]).peers.first) }
        guard let client = try? ControlClient.connect(directory: context.homePath, timeout: LocalNode.timeout) else { return nil }
        defer { client.close() }
        guard case let .scores(s)? = try? PeerBookAccess.call(client, .scores(peers: [peer.description]), context) else { return nil }
        return ban(of: s.peers.first)
    }

    private func ban(of info: PeerScoreInfo?) -> String? {
        guard let info, info.state == "banned" else { return nil }
        return "its peer ID is \(PeerScoreFormat.banned(until: info.bannedUntil))"
    }
}
