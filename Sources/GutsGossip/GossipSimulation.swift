import GutsCrypto
import GutsSupport
import GutsWire

/// A deterministic in-process network of `GossipEngine`s: a virtual clock, an event queue,
/// links with a fixed random latency each (delivery in order per link, as over TCP) and an
/// optional loss rate. Same options, same seed: same run, event for event.
///
/// Every node subscribes to `Options.topic` and connects to its neighbours at time 0. Loss
/// applies to every message except Subscribe (a connection that lost its subscriptions would
/// be a different network, not a lossy one). Hops and copies are tracked for messages
/// published through `publish(from:data:)`.
public struct GossipSimulation: Sendable {
    /// How the nodes are connected.
    public enum Topology: Sendable, Equatable {
        /// A ring plus random links until every node has at least `degree` neighbours
        /// (links to nodes that already have `degree + 2` are avoided): connected, degree ~d..d+2.
        case randomRegular(degree: Int)
        /// Every node linked to every other.
        case fullMesh
    }

    /// Parameters of a simulation.
    public struct Options: Sendable {
        /// Number of nodes.
        public var nodes = 1000
        /// How they are linked.
        public var topology = Topology.randomRegular(degree: 6)
        /// Each link's one-way latency is drawn uniformly from this range (seconds).
        public var minLatency = 0.005
        public var maxLatency = 0.050
        /// Probability that a message (other than Subscribe) is lost.
        public var lossRate = 0.0
        /// Seeds the topology, the keys, the latencies, the losses and every engine.
        public var seed: UInt64 = 1
        /// The topic every node subscribes to and `publish(from:data:)` uses.
        public var topic = "sim/topic"
        /// The configuration of every engine.
        public var config = GossipConfig()
        /// Wall clock (ms since the epoch) at virtual time 0.
        public var wallClockStart: UInt64 = 1_800_000_000_000
        /// The defaults: 1000 nodes, degree 6 to 8, 5 to 50 ms, no loss.
        public init() {}
    }

    /// What happened to one message published through `publish(from:data:)`.
    public struct MessageReport: Sendable, Equatable {
        public var id: [UInt8]
        public var origin: Int
        /// Nodes other than the origin that delivered it.
        public var delivered: Int
        /// Hops (links crossed) of the first copy to reach each delivering node, max and mean.
        public var maxHops: Int
        public var meanHops: Double
        /// Seconds from publication to delivery, max and mean over the delivering nodes.
        public var maxLatency: Double
        public var meanLatency: Double
        /// Full copies received by the nodes other than the origin (first copies included).
        public var copies: Int
        /// `copies` per node other than the origin.
        public var copiesPerNode: Double
    }

    /// Counts over the whole run (including the subscription exchange at start).
    public struct Totals: Sendable, Equatable {
        /// Gossip messages sent (eager pushes and IWant answers), lost ones included.
        public var fullMessagesSent = 0
        /// Control messages sent, by kind, lost ones included.
        public var subscribeSent = 0
        public var iHaveSent = 0
        public var iWantSent = 0
        public var pruneSent = 0
        /// Messages dropped by the loss rate.
        public var lost = 0
        /// `.deliver`, `.penalize` and `.disconnect` actions over all nodes.
        public var deliveries = 0
        public var penalties = 0
        public var disconnects = 0
        /// IHave + IWant + Prune (the control traffic of dissemination; Subscribe excluded).
        public var disseminationControl: Int { iHaveSent + iWantSent + pruneSent }
    }

    private enum EventKind: Sendable {
        case message(from: Int, to: Int, GossipMessage, tracked: Int, hop: Int)
        case tick(Int)
    }

    private struct Tracked: Sendable {
        var id: [UInt8]
        var origin: Int
        var published: UInt64
        var hops: [Int]
        var deliveredAt: [UInt64]
        var copies: [Int]
    }

    /// The options the network was built with.
    public let options: Options
    private var engines: [GossipEngine]
    private var neighbors: [[Int]]
    private var linkLatency: [UInt64: UInt64] = [:]
    private var linkLastArrival: [UInt64: UInt64] = [:]
    private var events = MinHeap<EventKind>()
    private var scheduledTick: [UInt64?]
    private var rng: SplitMix64
    private var tracked: [Tracked] = []
    private var trackedIndex: [[UInt8]: Int] = [:]
    /// The virtual clock.
    public private(set) var now = Instant(nanoseconds: 0)
    /// Counts since the start.
    public private(set) var totals = Totals()

    /// Builds the network, subscribes every node and connects the links at time 0.
    public init(options: Options) throws {
        self.options = options
        let n = max(1, options.nodes)
        var rng = SplitMix64(seed: options.seed)
        var engines: [GossipEngine] = []
        for _ in 0..<n {
            var seed = [UInt8]()
            for _ in 0..<4 {
                let word = rng.next()
                for shift in stride(from: 56, through: 0, by: -8) { seed.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
            }
            engines.append(GossipEngine(config: options.config, identity: try Ed25519KeyPair(seed: seed), seed: rng.next()))
        }
        self.engines = engines
        neighbors = Self.makeTopology(options.topology, nodes: n, rng: &rng)
        scheduledTick = Array(repeating: nil, count: n)
        self.rng = rng
        for node in 0..<n {
            perform(try self.engines[node].subscribe(options.topic, now: now), at: node, hop: 0)
        }
        let span = max(0, options.maxLatency - options.minLatency)
        for a in 0..<n {
            for b in neighbors[a] where a < b {
                let latency = nanoseconds(options.minLatency + span * self.rng.unit())
                linkLatency[linkKey(a, b)] = latency
                linkLatency[linkKey(b, a)] = latency
                perform(self.engines[a].peerConnected(PeerKey(b), now: now), at: a, hop: 0)
                perform(self.engines[b].peerConnected(PeerKey(a), now: now), at: b, hop: 0)
            }
        }
    }

    private static func makeTopology(_ topology: Topology, nodes n: Int, rng: inout SplitMix64) -> [[Int]] {
        var adjacency = Array(repeating: [Int](), count: n)
        var linked = Set<UInt64>()
        func link(_ a: Int, _ b: Int) {
            guard a != b, linked.insert(UInt64(min(a, b)) << 32 | UInt64(max(a, b))).inserted else { return }
            adjacency[a].append(b)
            adjacency[b].append(a)
        }
        switch topology {
        case .fullMesh:
            for a in 0..<n { for b in (a + 1)..<max(a + 1, n) { link(a, b) } }
        case let .randomRegular(degree):
            for a in 0..<n where n > 1 { link(a, (a + 1) % n) }
            for a in 0..<n where n > 2 {
                var attempts = 0
                while adjacency[a].count < degree, attempts < 100 * degree {
                    attempts += 1
                    let b = Int(rng.next() % UInt64(n))
                    if adjacency[b].count < degree + 2 { link(a, b) }
                }
            }
        }
        return adjacency
    }

    // MARK: Access

    /// Number of nodes (node numbers are 0..<nodeCount; a node's PeerKey for a neighbour is its number).
    public var nodeCount: Int { engines.count }
    /// A node's engine (a copy).
    public func engine(_ node: Int) -> GossipEngine { engines[node] }
    /// The nodes linked to `node`.
    public func neighbors(of node: Int) -> [Int] { neighbors[node] }
    /// A node drawn from the simulation's seeded generator.
    public mutating func randomNode() -> Int { Int(rng.next() % UInt64(engines.count)) }
    /// The wall clock of every node at the current virtual time.
    public var wallClockMillis: UInt64 { options.wallClockStart + now.nanoseconds / 1_000_000 }

    /// Reports of the messages published through `publish(from:data:)`, in order.
    public var reports: [MessageReport] { tracked.map(Self.report) }

    private static func report(_ t: Tracked) -> MessageReport {
        var delivered = 0, maxHops = 0, hopSum = 0, copies = 0
        var maxLatency = 0.0, latencySum = 0.0
        for node in t.hops.indices where node != t.origin {
            copies += t.copies[node]
            guard t.hops[node] >= 0 else { continue }
            delivered += 1
            maxHops = max(maxHops, t.hops[node])
            hopSum += t.hops[node]
            let latency = Double(t.deliveredAt[node] - t.published) / 1e9
            maxLatency = max(maxLatency, latency)
            latencySum += latency
        }
        let others = max(1, t.hops.count - 1)
        return MessageReport(id: t.id, origin: t.origin, delivered: delivered, maxHops: maxHops,
                             meanHops: Double(hopSum) / Double(max(1, delivered)), maxLatency: maxLatency,
                             meanLatency: latencySum / Double(max(1, delivered)), copies: copies,
                             copiesPerNode: Double(copies) / Double(others))
    }

    // MARK: Driving

    /// Publishes `data` on the topic from `node` at the current virtual time.
    @discardableResult
    public mutating func publish(from node: Int, data: [UInt8]) throws(GossipRejection) -> [UInt8] {
        let (id, actions) = try engines[node].publish(topic: options.topic, data: data, now: now,
                                                      wallClockMillis: wallClockMillis)
        trackedIndex[id] = tracked.count
        let n = engines.count
        tracked.append(Tracked(id: id, origin: node, published: now.nanoseconds, hops: Array(repeating: -1, count: n),
                               deliveredAt: Array(repeating: 0, count: n), copies: Array(repeating: 0, count: n)))
        perform(actions, at: node, hop: 0)
        return id
    }

    /// Hands a message signed elsewhere to `node` (`GossipEngine.inject`).
    public mutating func inject(_ gossip: Gossip, at node: Int) -> Result<[UInt8], GossipRejection> {
        let (result, actions) = engines[node].inject(gossip, now: now, wallClockMillis: wallClockMillis)
        perform(actions, at: node, hop: 0)
        return result
    }

    /// Sends an arbitrary message over the link from `from` to `to` (e.g. a forgery), without loss.
    public mutating func transmit(_ message: GossipMessage, from: Int, to: Int) {
        enqueue(message, from: from, to: to, tracked: -1, hop: 1)
    }

    /// Runs the event queue for `seconds` of virtual time.
    public mutating func run(for seconds: Double) {
        let until = now.nanoseconds + nanoseconds(seconds)
        while let key = events.minKey, key <= until, let (time, event) = events.popMin() {
            now = Instant(nanoseconds: time)
            switch event {
            case let .message(from, to, message, index, hop):
                if index >= 0 { tracked[index].copies[to] += 1 }
                perform(engines[to].receive(message, from: PeerKey(from), now: now, wallClockMillis: wallClockMillis),
                        at: to, hop: hop)
            case let .tick(node):
                guard scheduledTick[node] == time else { continue }
                scheduledTick[node] = nil
                perform(engines[node].tick(now: now), at: node, hop: 0)
            }
        }
        now = Instant(nanoseconds: until)
    }

    private func linkKey(_ from: Int, _ to: Int) -> UInt64 { UInt64(from) << 32 | UInt64(to) }

    private mutating func enqueue(_ message: GossipMessage, from: Int, to: Int, tracked index: Int, hop: Int) {
        let key = linkKey(from, to)
        let arrival = max(now.nanoseconds + (linkLatency[key] ?? nanoseconds(options.maxLatency)), linkLastArrival[key] ?? 0)
        linkLastArrival[key] = arrival
        events.push(arrival, .message(from: from, to: to, message, tracked: index, hop: hop))
    }

    /// Carries out a node's actions; `hop` is the hop count of the message being handled.
    private mutating func perform(_ actions: [GossipAction], at node: Int, hop: Int) {
        for action in actions {
            switch action {
            case let .send(peer, message):
                var index = -1, nextHop = 0
                switch message {
                case let .gossip(g):
                    totals.fullMessagesSent += 1
                    if let i = trackedIndex[g.id] {
                        index = i
                        nextHop = max(0, tracked[i].hops[node]) + 1
                    }
                case .subscribe: totals.subscribeSent += 1
                case .iHave: totals.iHaveSent += 1
                case .iWant: totals.iWantSent += 1
                case .prune: totals.pruneSent += 1
                }
                if message.kind != .subscribe, options.lossRate > 0, rng.unit() < options.lossRate {
                    totals.lost += 1
                    continue
                }
                enqueue(message, from: node, to: Int(peer), tracked: index, hop: nextHop)
            case let .deliver(_, id, from):
                totals.deliveries += 1
                if let i = trackedIndex[id], tracked[i].hops[node] < 0 {
                    tracked[i].hops[node] = from == nil ? 0 : hop
                    tracked[i].deliveredAt[node] = now.nanoseconds
                }
            case .penalize:
                totals.penalties += 1
            case let .disconnect(peer, _):
                totals.disconnects += 1
                if Int(peer) < engines.count { engines[Int(peer)].peerDisconnected(PeerKey(node)) }
            }
        }
        // Keep one tick scheduled at the engine's next deadline (never in the past).
        if let deadline = engines[node].nextDeadline?.nanoseconds {
            let when = max(deadline, now.nanoseconds + 1)
            if scheduledTick[node].map({ when < $0 }) ?? true {
                scheduledTick[node] = when
                events.push(when, .tick(node))
            }
        }
    }
}
