/// The control socket: a Unix stream socket in the state directory over which the CLI
/// asks a running node for its status and peers and publishes or follows gossip.
/// Requests and responses are newline-delimited JSON objects (guts-control(7)).
public enum ControlSocket {
    /// The socket's file name in the state directory.
    public static let fileName = "control.sock"
    /// Longest request line accepted, newline included; longer ones are answered
    /// `too-large` and skipped without being buffered.
    public static let maxRequestLine = 256 << 10
    /// Longest response line a client accepts (a `scores` answer for a full peer book
    /// of 10,000 peers and 4,096 address bans fits).
    public static let maxResponseLine = 16 << 20
    /// Deepest JSON nesting accepted in a request.
    public static let maxRequestDepth = 8
    /// Most topics in one subscribe request.
    public static let maxTopics = 64
    /// Most peer IDs in one `scores` request.
    public static let maxScorePeers = 1_024
    /// Longest ban target (`PEERID` or `ADDR[/PREFIX]`), in bytes.
    public static let maxTargetLength = 100
    /// Longest reason in a `report`, in bytes.
    public static let maxReasonLength = 512
    /// Longest ban, in seconds (10 years); longer is `null`, until unbanned.
    public static let maxBanSeconds = 315_360_000.0
}

/// A request to the node.
public enum ControlRequest: Equatable, Sendable {
    /// The node's identity, listening addresses, repositories, uptime, connection counts.
    case status
    /// The connected peers.
    case peers
    /// Sign `data` with the node's identity and flood it on `topic`.
    case publish(topic: String, data: [UInt8])
    /// Follow `topics`: an acknowledgement, then one event line per delivery until the
    /// client closes the connection.
    case subscribe(topics: [String])
    /// Scores of these peers (peer IDs), or of every peer the node knows when empty, and
    /// the address bans.
    case scores(peers: [String])
    /// Ban a peer ID or `ADDR[/PREFIX]` for `seconds`, or until unbanned (nil).
    case ban(target: String, seconds: Double?)
    /// Lift the ban of a peer ID (forgiving its record) or of exactly that prefix.
    case unban(target: String)
    /// An offence (a `ScoreEvent` penalty name) a one-shot command caught `peer` at.
    case report(peer: String, event: String, reason: String)
    /// A DHT lookup: a peer's addresses (`key` a peer ID) or a repository's providers
    /// (`key` a repository ID).
    case find(key: String)

    /// The `cmd` member.
    public var command: String {
        switch self {
        case .status: return "status"
        case .peers: return "peers"
        case .publish: return "publish"
        case .subscribe: return "subscribe"
        case .scores: return "scores"
        case .ban: return "ban"
        case .unban: return "unban"
        case .report: return "report"
        case .find: return "find"
        }
    }
}

/// An error answer: a stable machine-readable code and a sentence for people.
public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The line is not a JSON object of the documented form.
        public static let badRequest = Code(rawValue: "bad-request")
        /// The line is longer than `ControlSocket.maxRequestLine`.
        public static let tooLarge = Code(rawValue: "too-large")
        /// `cmd` names no known command.
        public static let unknownCommand = Code(rawValue: "unknown-command")
        /// The client runs as another user.
        public static let forbidden = Code(rawValue: "forbidden")
        /// Every connection slot holds a subscription.
        public static let busy = Code(rawValue: "busy")
        /// An idle connection was closed to make room for a new one.
        public static let evicted = Code(rawValue: "evicted")
        /// The node refused the publication or subscription (e.g. invalid topic).
        public static let rejected = Code(rawValue: "rejected")
        /// The node is shutting down or cannot do it now.
        public static let unavailable = Code(rawValue: "unavailable")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) (\(code))" }
}

/// What `status` answers.
public struct NodeStatus: Equatable, Sendable {
    public var peerID: String
    /// Software name and version, e.g. "guts/0.1.0".
    public var agent: String
    /// Process ID of the node.
    public var pid: Int
    /// Addresses the node accepts peers on, `HOST:PORT`.
    public var listening: [String]
    /// Names of the repositories served.
    public var repositories: [String]
    /// Unix time (seconds) the node started.
    public var startedAt: Double
    public var uptimeSeconds: Double
    /// Established sessions accepted (gossip clients included).
    public var inbound: Int
    /// Established sessions this node dialled.
    public var outbound: Int
    /// Every open connection, handshakes in progress included.
    public var open: Int

    public init(peerID: String, agent: String, pid: Int, listening: [String], repositories: [String],
                startedAt: Double, uptimeSeconds: Double, inbound: Int, outbound: Int, open: Int) {
        self.peerID = peerID
        self.agent = agent
        self.pid = pid
        self.listening = listening
        self.repositories = repositories
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.inbound = inbound
        self.outbound = outbound
        self.open = open
    }
}

/// One connected peer, as `peers` answers.
public struct PeerSummary: Equatable, Sendable {
    public enum Direction: String, Sendable {
        case inbound, outbound
    }

    public var peerID: String
    public var direction: Direction
    /// Remote `HOST:PORT`.
    public var address: String
    /// Software name and version the peer announced.
    public var agent: String
    /// A CLI tool connected as a gossip client rather than a node.
    public var isClient: Bool
    /// Round-trip time in seconds of the most recent Ping answered, nil when none was.
    public var roundTrip: Double?
    /// Unix time (seconds) the connection was opened.
    public var connectedSince: Double
    /// Bytes received from and sent to the peer on this connection, handshake included.
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// What carries the session: "tcp" or "quic".
    public var transport: String

    public init(peerID: String, direction: Direction, address: String, agent: String, isClient: Bool,
                roundTrip: Double?, connectedSince: Double, bytesIn: UInt64, bytesOut: UInt64, transport: String) {
        self.transport = transport
        self.peerID = peerID
        self.direction = direction
        self.address = address
        self.agent = agent
        self.isClient = isClient
        self.roundTrip = roundTrip
        self.connectedSince = connectedSince
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
    }
}

/// What `publish` answers once the node has accepted the message.
public struct PublishReceipt: Equatable, Sendable {
    /// The gossip message ID.
    public var id: [UInt8]
    public var topic: String
    /// Peer ID of the signer (the node).
    public var origin: String
    public var bytes: Int

    public init(id: [UInt8], topic: String, origin: String, bytes: Int) {
        self.id = id
        self.topic = topic
        self.origin = origin
        self.bytes = bytes
    }
}

/// One gossip message delivered to a subscriber.
public struct GossipDelivery: Equatable, Sendable {
    public var topic: String
    /// Peer ID of the signer.
    public var origin: String
    /// The gossip message ID.
    public var id: [UInt8]
    /// The signer's wall clock at publication, milliseconds since the Unix epoch.
    public var timestampMillis: UInt64
    public var data: [UInt8]

    public init(topic: String, origin: String, id: [UInt8], timestampMillis: UInt64, data: [UInt8]) {
        self.topic = topic
        self.origin = origin
        self.id = id
        self.timestampMillis = timestampMillis
        self.data = data
    }
}

/// One peer's score, as `scores` answers (and `guts peers score` shows).
public struct PeerScoreInfo: Equatable, Sendable {
    /// A part of the score: an event's decayed counter times its weight.
    public struct Component: Equatable, Sendable {
        /// The event's name (guts-peers(5)), e.g. "protocol-violation".
        public var name: String
        public var value: Double
        public init(name: String, value: Double) {
            self.name = name
            self.value = value
        }
    }

    public var peerID: String
    public var score: Double
    /// Every event's part, in the node's order.
    public var components: [Component]
    /// "ok", "graylisted", "disconnect" or "banned".
    public var state: String
    /// Unix time the ban ends; nil when not banned or banned until unbanned.
    public var bannedUntil: Double?
    /// Banned until unbanned.
    public var permanent: Bool
    /// `HOST:PORT` it was seen at, most recent first.
    public var addresses: [String]
    /// Unix time it was last seen; nil when never.
    public var lastSeen: Double?
    /// It has a session with the node now (false when read from the peer book).
    public var connected: Bool

    public init(peerID: String, score: Double, components: [Component], state: String, bannedUntil: Double?,
                permanent: Bool, addresses: [String], lastSeen: Double?, connected: Bool) {
        self.peerID = peerID
        self.score = score
        self.components = components
        self.state = state
        self.bannedUntil = bannedUntil
        self.permanent = permanent
        self.addresses = addresses
        self.lastSeen = lastSeen
        self.connected = connected
    }

    /// The states `state` may hold.
    public static let states: Set<String> = ["ok", "graylisted", "disconnect", "banned"]
}

/// A ban of an address or network, as `scores` answers.
public struct AddressBanInfo: Equatable, Sendable {
    /// `ADDR` or `ADDR/LENGTH`.
    public var prefix: String
    /// Unix time the ban ends; nil when permanent.
    public var bannedUntil: Double?
    /// Made by the node's score (at most an hour) rather than by hand.
    public var automatic: Bool

    public var permanent: Bool { bannedUntil == nil }

    public init(prefix: String, bannedUntil: Double?, automatic: Bool) {
        self.prefix = prefix
        self.bannedUntil = bannedUntil
        self.automatic = automatic
    }
}

/// What `scores` answers.
public struct PeerScores: Equatable, Sendable {
    /// Best score first.
    public var peers: [PeerScoreInfo]
    /// Every address ban in force, in address order.
    public var addressBans: [AddressBanInfo]

    public init(peers: [PeerScoreInfo], addressBans: [AddressBanInfo]) {
        self.peers = peers
        self.addressBans = addressBans
    }
}

/// One provider of a repository found in the DHT.
public struct FoundProvider: Equatable, Sendable {
    public var peerID: String
    public var addresses: [String]
    /// Unix seconds the signed record is valid until.
    public var expires: UInt64
    public init(peerID: String, addresses: [String], expires: UInt64) {
        self.peerID = peerID
        self.addresses = addresses
        self.expires = expires
    }
}

/// What `find` answers.
public struct FindResult: Equatable, Sendable {
    /// "peer" or "repository".
    public var kind: String
    public var key: String
    public var found: Bool
    /// The peer's addresses (kind "peer"), from its signed peer record.
    public var addresses: [String]
    /// Providers (kind "repository"), from their signed provider records.
    public var providers: [FoundProvider]
    public var hops: Int
    public var messages: Int
    public var seconds: Double
    public init(kind: String, key: String, found: Bool, addresses: [String], providers: [FoundProvider],
                hops: Int, messages: Int, seconds: Double) {
        self.kind = kind
        self.key = key
        self.found = found
        self.addresses = addresses
        self.providers = providers
        self.hops = hops
        self.messages = messages
        self.seconds = seconds
    }
}

/// A response line, typed.
public enum ControlResponse: Equatable, Sendable {
    case status(NodeStatus)
    case peers([PeerSummary])
    case scores(PeerScores)
    /// Answers `ban` and `unban`: whether the peer book changed.
    case changed(Bool)
    /// Answers `report`: the peer's score once the event is counted.
    case reported(PeerScoreInfo)
    case published(PublishReceipt)
    /// The subscription is in place: deliveries from now on are sent.
    case subscribed(topics: [String])
    /// An event on a subscription.
    case gossip(GossipDelivery)
    /// Answers `find`.
    case found(FindResult)
    case failure(ControlError)
}

/// A live subscription; `cancel` ends it (idempotent).
public protocol ControlSubscription: Sendable {
    func cancel()
}

/// What the control server needs from a node. The server calls these on its own event
/// loop threads; none may block. Completion handlers are called exactly once, on any thread.
public protocol ControlHandler: Sendable {
    func status() -> NodeStatus
    /// The connected peers (established sessions), round trips measured fresh where the
    /// peers answer promptly.
    func peers(_ done: @escaping @Sendable ([PeerSummary]) -> Void)
    /// Signs `data` with the node's identity and floods it on `topic`.
    func publish(topic: String, data: [UInt8], _ done: @escaping @Sendable (Result<PublishReceipt, ControlError>) -> Void)
    /// Makes the node follow `topics` and calls `deliver` for every message delivered on
    /// them until `deliver` returns false or the subscription is cancelled. `done` reports
    /// when the node follows the topics (or why it will not).
    func subscribe(topics: [String], deliver: @escaping @Sendable (GossipDelivery) -> Bool,
                   _ done: @escaping @Sendable (Result<any ControlSubscription, ControlError>) -> Void)
    /// Scores of `peers` (peer IDs as text), or of every known peer when empty, and the
    /// address bans. A malformed peer ID is a `badRequest`.
    func scores(peers: [String]) -> Result<PeerScores, ControlError>
    /// Bans `target` (`PEERID` or `ADDR[/PREFIX]`) for `seconds` (nil: until unbanned),
    /// closing the sessions it covers; says whether the peer book changed.
    func ban(target: String, seconds: Double?) -> Result<Bool, ControlError>
    /// Lifts the ban of `target`; says whether anything changed.
    func unban(target: String) -> Result<Bool, ControlError>
    /// Counts penalty `event` against `peer`, as the node would have had it seen it.
    func report(peer: String, event: String, reason: String) -> Result<PeerScoreInfo, ControlError>
    /// Looks `key` (a peer ID or a repository ID, as text) up in the DHT; a malformed key
    /// is a `badRequest`, a node without the DHT answers `unavailable`.
    func find(key: String, _ done: @escaping @Sendable (Result<FindResult, ControlError>) -> Void)
}
