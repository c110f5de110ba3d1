import GutsControl
import GutsIdentity
import GutsPolicy
import GutsSupport

/// Peer scores and address bans in the form the control socket and `guts peers score`
/// show them, live from a node or read from a peer book.
public enum PeerScoreReports {
    /// Scores of `peers` (every peer in the book when empty) from `book`, best first, and
    /// the address bans, as a node that is not running would show them.
    public static func from(book: PeerBook, peers: [PeerID], now: Instant = .now()) -> PeerScores {
        let wanted = peers.isEmpty ? book.peers.map(\.peer) : peers
        let list = wanted.map { id in
            info(Reputation.summary(id, entry: book.entry(id), book: book, connected: false, now: now))
        }.sorted { ($0.score, $1.peerID) > ($1.score, $0.peerID) }
        return PeerScores(peers: list, addressBans: addressBans(book, now: now))
    }

    static func info(_ s: ScoreSummary) -> PeerScoreInfo {
        PeerScoreInfo(peerID: s.peerID, score: s.score,
                      components: ScoreEvent.allCases.map { .init(name: $0.rawValue, value: s.components[$0.rawValue] ?? 0) },
                      state: s.state, bannedUntil: s.bannedUntil, permanent: s.permanent, addresses: s.addresses,
                      lastSeen: s.lastSeen > 0 ? s.lastSeen : nil, connected: s.connected)
    }

    static func addressBans(_ book: PeerBook, now: Instant) -> [AddressBanInfo] {
        book.addressBans(now: now).map { ban in
            AddressBanInfo(prefix: ban.prefix.description, bannedUntil: ban.ban.until.map { book.unixTime($0) },
                           automatic: !ban.ban.isManual)
        }
    }
}

extension Node {
    /// Scores for the control socket: of `peers` (every known peer when empty), and the
    /// address bans.
    func scoreReports(_ peers: [PeerID]) -> PeerScores {
        // A connected peer's session addresses come first (the book keeps only the
        // endpoints it may be dialled at).
        var sessions: [String: [String]] = [:]
        for c in establishedConnections {
            if let id = c.peer?.peerID.description { sessions[id, default: []].append(c.remoteAddress) }
        }
        let list = scoreSummaries(peers).map { summary in
            var info = PeerScoreReports.info(summary)
            if let live = sessions[info.peerID] {
                info.addresses = live.sorted() + info.addresses.filter { !live.contains($0) }
                info.lastSeen = unixTime()  // connected: seen now
            }
            return info
        }
        let bans = reputation.state.withLockedValue { PeerScoreReports.addressBans($0.book, now: .now()) }
        return PeerScores(peers: list, addressBans: bans)
    }

    /// Writes the peer book now rather than at the next periodic save (an operator's ban
    /// should survive even a crash right after it); off the loops.
    func persistSoon() {
        stateWriter.submit { [weak self] in self?.reputation.save() }
    }
}
