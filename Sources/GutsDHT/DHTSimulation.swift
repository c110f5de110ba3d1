import GutsCrypto
import GutsPolicy
import GutsSupport
import GutsWire

/// A deterministic simulation of a DHT network in one process: N nodes with real engines,
/// every message encoded and decoded through the wire codec, a virtual clock, seeded
/// randomness, churn (nodes leaving and fresh nodes joining during the run) and hostile
/// nodes. Used by the tests (at a size that fits the time budget) and by `guts-bench
/// dht-sim` (at full size).
///
/// The run (see `run()`):
/// 1. The network starts converged: every node's table is filled as Kademlia's own joins
///    would fill it (up to k random nodes per bucket), through the engines' verified-peer
///    event. Hostile nodes are in the tables like anyone else.
/// 2. Providers announce their repositories (AddProvider to the k closest nodes).
/// 3. During `churnDuration`, `churnFraction` of the nodes leave and as many new nodes join
///    (a verified bootstrap contact, then a self-lookup); meanwhile FindNode and FindPeer
///    lookups of live honest nodes run from random honest nodes.
/// 4. Right after churn, and again one republish interval later, every repository whose
///    provider is alive is looked up from a random honest node.
///
/// Hostile nodes run no engine: half of them answer every request with the k hostile
/// nodes closest to the target and never store or return records (an eclipse attempt), the
/// other half answer with garbage: undecodable bytes, records with bad signatures, or
/// nothing.
public struct DHTSimulation: Sendable {
    public struct Options: Sendable {
        public var nodes = 1000
        public var seed: UInt64 = 1
        public var hostileFraction = 0.10
        public var churnFraction = 0.20
        public var churnDuration = 600.0
        public var repositories = 50
        public var nodeLookups = 300
        public var peerLookups = 100
        public var disjointPaths = 1
        /// One-way message latency range, seconds.
        public var minLatency = 0.010
        public var maxLatency = 0.080
        public var config: DHTConfig

        public init() {
            var c = DHTConfig()
            c.requestTimeout = 2
            c.republishInterval = 3600
            c.peerRepublishInterval = 3600
            c.recordTTL = 2 * 3600
            // Refresh lookups would dominate the simulated traffic; joins and lookups keep
            // tables current here, and refresh has its own tests.
            c.refreshInterval = .infinity
            c.expirySweepInterval = 600
            config = c
        }
    }

    public enum Behaviour: Sendable, Equatable {
        case honest
        case eclipse
        case garbage
    }

    struct Node: Sendable {
        var contact: DHTContact
        var key: Ed25519KeyPair
        var behaviour: Behaviour
        var engine: DHTEngine?
        var alive = true
        var leaves = false
        var scheduledTick: UInt64?
    }

    enum Event: Sendable {
        case deliver(to: Int, from: Int, bytes: [UInt8])
        case pingResult(at: Int, about: Int, alive: Bool)
        case tick(Int)
        case leave(Int)
        case join
        case startLookup(Category)
    }

    public enum Category: Sendable, Hashable {
        case node
        case peer
        case providersAfterChurn
        case providersAfterRepublish
    }

    /// Figures of one category of lookups.
    public struct Figures: Sendable {
        public var lookups = 0
        public var succeeded = 0
        public var hops: [Int] = []
        public var messages: [Int] = []
        public var successRate: Double { lookups == 0 ? 0 : Double(succeeded) / Double(lookups) }
        public var medianHops: Int { Self.percentile(hops, 0.5) }
        public var p90Hops: Int { Self.percentile(hops, 0.9) }
        public var meanMessages: Double { messages.isEmpty ? 0 : Double(messages.reduce(0, +)) / Double(messages.count) }
        public var medianMessages: Int { Self.percentile(messages, 0.5) }

        static func percentile(_ values: [Int], _ p: Double) -> Int {
            guard !values.isEmpty else { return 0 }
            let s = values.sorted()
            return s[min(s.count - 1, Int(Double(s.count - 1) * p + 0.5))]
        }
    }

    public let options: Options
    private var rng: DHTRandom
    private var nodes: [Node] = []
    private var byID: [NodeID: Int] = [:]
    private var hostileSorted: [(NodeID, Int)] = []
    private var events = MinHeap<Event>()
    private var clock: UInt64 = 0 {
        didSet { now = DHTTime(monotonic: Instant(nanoseconds: clock), unixSeconds: Self.epoch + clock / 1_000_000_000) }
    }
    private static let epoch: UInt64 = 1_800_000_000
    private var now = DHTTime(monotonic: Instant(nanoseconds: 0), unixSeconds: epoch)
    private var usedAddresses = Set<UInt32>()
    private var expected: [Int: [LookupID: (Category, NodeID, Int?)]] = [:]
    /// Repositories and the node providing each.
    private var repositories: [(NodeID, Int)] = []
    public private(set) var figures: [Category: Figures] = [:]
    public private(set) var messagesDelivered = 0
    public private(set) var decodeFailures = 0
    public private(set) var penalties = 0
    public private(set) var joined = 0
    public private(set) var left = 0

    public init(options: Options) {
        self.options = options
        rng = DHTRandom(seed: options.seed)
    }

    public var liveNodes: Int { nodes.reduce(0) { $0 + ($1.alive ? 1 : 0) } }

    // MARK: Building

    private mutating func newAddress() -> DHTAddress {
        while true {
            // Global unicast IPv4 space 11.0.0.0-126.255.255.255 (no private or special ranges used).
            let v = UInt32(11 + rng.next() % 100) << 24 | UInt32(truncatingIfNeeded: rng.next() & 0xFF_FFFF)
            guard usedAddresses.insert(v).inserted, let a = DHTAddress(ip: .v4(v), port: 9000), a.scope == .global else { continue }
            return a
        }
    }

    private mutating func makeNode(_ behaviour: Behaviour) -> Int {
        var seed = [UInt8](repeating: 0, count: 32)
        for i in 0..<4 {
            let w = rng.next()
            for j in 0..<8 { seed[i * 8 + j] = UInt8(truncatingIfNeeded: w >> UInt64(j * 8)) }
        }
        // A 32-byte seed is always accepted.
        guard let key = try? Ed25519KeyPair(seed: seed), let contact = DHTContact(publicKey: key.publicKey, address: newAddress())
        else { preconditionFailure("unreachable: 32-byte seed") }
        var node = Node(contact: contact, key: key, behaviour: behaviour)
        if behaviour == .honest {
            var engine = DHTEngine(config: options.config, identity: key, seed: rng.next(), now: now.monotonic)
            _ = engine.setAddresses([contact.address], now: now)  // table empty: announces to nobody
            node.engine = engine
        }
        let index = nodes.count
        nodes.append(node)
        byID[contact.id] = index
        return index
    }

    /// Fills every honest node's table as a converged network would: for each bucket, up
    /// to k random nodes of the ID range the bucket covers.
    private mutating func fillTables() {
        let sorted = nodes.indices.map { (nodes[$0].contact.id, $0) }.sorted { $0.0 < $1.0 }
        let ids = sorted.map(\.0)
        func lowerBound(_ x: NodeID) -> Int {
            var lo = 0, hi = ids.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if ids[mid] < x { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        let k = options.config.k
        for n in nodes.indices where nodes[n].engine != nil {
            let me = nodes[n].contact.id
            for b in 0..<256 {
                // The range of IDs sharing exactly b leading bits with `me`.
                let low = rangeBound(me, flip: b, fill: false), high = rangeBound(me, flip: b, fill: true)
                let start = lowerBound(low)
                let end = lowerBound(high) + (lowerBound(high) < ids.count && ids[lowerBound(high)] == high ? 1 : 0)
                let size = end - start
                if size > 0 {
                    var picks = Array(start..<end)
                    if size > k {
                        for i in 0..<k { picks.swapAt(i, i + Int(rng.next() % UInt64(size - i))) }
                        picks = Array(picks.prefix(k))
                    }
                    for p in picks {
                        let c = nodes[sorted[p].1].contact
                        _ = nodes[n].engine?.peerVerified(c, now: now)
                    }
                }
                // Stop once no other node shares b + 1 bits with `me`.
                let subLow = rangeBound(me, keep: b + 1, fill: false), subHigh = rangeBound(me, keep: b + 1, fill: true)
                let s0 = lowerBound(subLow), s1 = lowerBound(subHigh)
                let subCount = s1 - s0 + (s1 < ids.count && ids[s1] == subHigh ? 1 : 0)
                if subCount <= 1 { break }
            }
        }
    }

    /// `id` with its first `flip` bits kept, bit `flip` flipped, the rest all 0 or all 1.
    private func rangeBound(_ id: NodeID, flip: Int, fill: Bool) -> NodeID {
        var w = [id.w0, id.w1, id.w2, id.w3]
        let wi = flip >> 6, bit = UInt64(63 - (flip & 63))
        w[wi] ^= 1 << bit
        return Self.fillAfter(w, from: flip + 1, fill: fill)
    }

    /// `id` with its first `keep` bits kept, the rest all 0 or all 1.
    private func rangeBound(_ id: NodeID, keep: Int, fill: Bool) -> NodeID {
        Self.fillAfter([id.w0, id.w1, id.w2, id.w3], from: keep, fill: fill)
    }

    private static func fillAfter(_ words: [UInt64], from bitIndex: Int, fill: Bool) -> NodeID {
        var w = words
        for i in 0..<4 {
            let start = i * 64
            if bitIndex >= start + 64 { continue }
            let keepBits = max(0, bitIndex - start)
            let mask: UInt64 = keepBits == 0 ? 0 : UInt64.max << UInt64(64 - keepBits)
            w[i] = fill ? (w[i] & mask) | ~mask : w[i] & mask
        }
        return NodeID(words: w[0], w[1], w[2], w[3])
    }

    // MARK: Running

    /// Runs the whole scenario and returns the figures per category.
    public mutating func run() -> [Category: Figures] {
        let n = options.nodes
        let hostile = Int(Double(n) * options.hostileFraction)
        for i in 0..<n {
            let b: Behaviour = i < hostile ? (i % 2 == 0 ? .eclipse : .garbage) : .honest
            _ = makeNode(b)
        }
        hostileSorted = nodes.indices.filter { nodes[$0].behaviour != .honest }.map { (nodes[$0].contact.id, $0) }
        fillTables()
        for i in nodes.indices { scheduleTick(i) }

        // Providers announce.
        let honest = nodes.indices.filter { nodes[$0].behaviour == .honest }
        for _ in 0..<options.repositories {
            let provider = honest[Int(rng.next() % UInt64(honest.count))]
            var repo = [UInt8](repeating: 0, count: 32)
            for i in 0..<32 { repo[i] = UInt8(truncatingIfNeeded: rng.next()) }
            guard let id = NodeID(bytes: repo) else { continue }
            repositories.append((id, provider))
            if let actions = nodes[provider].engine?.provide(id, now: now) { perform(actions, at: provider) }
        }
        runUntil(clock + 30_000_000_000)

        // Churn, with lookups spread over the same period.
        let churnStart = clock
        let churnNs = UInt64(options.churnDuration * 1e9)
        let leaving = Int(Double(n) * options.churnFraction)
        var candidates = Array(nodes.indices)
        for i in 0..<leaving {
            let j = i + Int(rng.next() % UInt64(candidates.count - i))
            candidates.swapAt(i, j)
            let victim = candidates[i]
            nodes[victim].leaves = true
            events.push(churnStart + rng.next() % churnNs, .leave(victim))
            events.push(churnStart + rng.next() % churnNs, .join)
        }
        for _ in 0..<options.nodeLookups { events.push(churnStart + rng.next() % churnNs, .startLookup(.node)) }
        for _ in 0..<options.peerLookups { events.push(churnStart + rng.next() % churnNs, .startLookup(.peer)) }
        runUntil(churnStart + churnNs + 30_000_000_000)

        // Provider records right after churn, then one republish interval later.
        lookUpRepositories(.providersAfterChurn)
        runUntil(clock + 60_000_000_000)
        runUntil(clock + UInt64(options.config.republishInterval * 1e9))
        lookUpRepositories(.providersAfterRepublish)
        runUntil(clock + 60_000_000_000)
        return figures
    }

    /// A random node that is alive and honest (and, with `staying`, will not leave), other
    /// than `except`. Sampling instead of filtering keeps each draw O(1).
    private mutating func randomHonest(staying: Bool = false, except: Int = -1) -> Int? {
        for _ in 0..<100_000 {
            let i = Int(rng.next() % UInt64(nodes.count))
            if i != except, nodes[i].alive, nodes[i].behaviour == .honest, !staying || !nodes[i].leaves { return i }
        }
        return nil
    }

    private mutating func lookUpRepositories(_ category: Category) {
        for (repo, provider) in repositories where nodes[provider].alive {
            guard let origin = randomHonest(except: provider) else { continue }
            guard let (id, actions) = nodes[origin].engine?.findProviders(repo, now: now, disjointPaths: options.disjointPaths)
            else { continue }
            expected[origin, default: [:]][id] = (category, repo, provider)
            figures[category, default: Figures()].lookups += 1
            perform(actions, at: origin)
        }
    }

    private mutating func runUntil(_ end: UInt64) {
        while let key = events.minKey, key <= end, let (t, event) = events.popMin() {
            clock = max(clock, t)
            handle(event)
        }
        clock = max(clock, end)
    }

    private mutating func latency() -> UInt64 {
        let span = max(0, options.maxLatency - options.minLatency)
        return UInt64((options.minLatency + rng.unit() * span) * 1e9)
    }

    private mutating func scheduleTick(_ i: Int) {
        guard let deadline = nodes[i].engine?.nextDeadline?.nanoseconds else { return }
        let at = max(deadline, clock)
        if let s = nodes[i].scheduledTick, s <= at, s >= clock { return }
        nodes[i].scheduledTick = at
        events.push(at, .tick(i))
    }

    private mutating func handle(_ event: Event) {
        switch event {
        case let .tick(i):
            // A tick superseded by an earlier or later one is stale.
            guard nodes[i].alive, let due = nodes[i].scheduledTick, due <= clock else { return }
            nodes[i].scheduledTick = nil
            if let actions = nodes[i].engine?.tick(now: now) { perform(actions, at: i) }
            scheduleTick(i)
        case let .deliver(to, from, bytes):
            deliver(to: to, from: from, bytes: bytes)
        case let .pingResult(at, about, alive):
            guard nodes[at].alive else { return }
            let id = nodes[about].contact.id
            nodes[at].engine?.pingAnswered(id, alive: alive, now: now)
            scheduleTick(at)
        case let .leave(i):
            nodes[i].alive = false
            nodes[i].engine = nil
            left += 1
        case .join:
            let i = makeNode(.honest)
            joined += 1
            guard let boot = randomHonest(except: i) else { return }
            let bootContact = nodes[boot].contact
            var actions = nodes[i].engine?.peerVerified(bootContact, now: now) ?? []
            actions += nodes[i].engine?.bootstrap(now: now) ?? []
            perform(actions, at: i)
        case let .startLookup(category):
            startLookup(category)
        }
    }

    private mutating func startLookup(_ category: Category) {
        // Origins and targets: honest nodes that stay up for the rest of the run (a lookup
        // whose origin leaves never reports, and one for a node that left cannot succeed).
        guard let origin = randomHonest(staying: true), let target = randomHonest(staying: true, except: origin) else { return }
        let tid = nodes[target].contact.id
        let started: (LookupID, [DHTAction])?
        switch category {
        case .peer: started = nodes[origin].engine?.findPeer(tid, now: now, disjointPaths: options.disjointPaths)
        default: started = nodes[origin].engine?.findNode(tid, now: now, disjointPaths: options.disjointPaths)
        }
        guard let (id, actions) = started else { return }
        expected[origin, default: [:]][id] = (category, tid, nil)
        figures[category, default: Figures()].lookups += 1
        perform(actions, at: origin)
    }

    private mutating func perform(_ actions: [DHTAction], at i: Int) {
        for action in actions {
            switch action {
            case let .send(contact, message):
                guard let to = byID[contact.id] else { continue }
                send(message, from: i, to: to)
            case let .reply(id, message):
                guard let to = byID[id] else { continue }
                send(message, from: i, to: to)
            case let .ping(contact):
                guard let about = byID[contact.id] else { continue }
                events.push(clock + 2 * latency(), .pingResult(at: i, about: about, alive: nodes[about].alive))
            case let .lookupFinished(id, result):
                guard let (category, _, provider) = expected[i]?.removeValue(forKey: id) else { continue }
                var f = figures[category, default: Figures()]
                let ok: Bool
                if let provider {
                    ok = result.providers.contains { $0.publisher == nodes[provider].contact.publicKey }
                } else {
                    ok = result.found
                }
                if ok {
                    f.succeeded += 1
                    f.hops.append(result.hops)
                }
                f.messages.append(result.messages)
                figures[category] = f
            case .penalize:
                penalties += 1
            }
        }
        scheduleTick(i)
    }

    private mutating func send(_ message: DHTMessage, from: Int, to: Int) {
        guard let bytes = try? MessageCodec.encode(message) else { return }
        events.push(clock + latency(), .deliver(to: to, from: from, bytes: bytes))
    }

    private mutating func deliver(to: Int, from: Int, bytes: [UInt8]) {
        guard nodes[to].alive, nodes[from].alive || nodes[to].behaviour != .honest else { return }
        messagesDelivered += 1
        switch nodes[to].behaviour {
        case .honest:
            let sender = nodes[from].contact
            let message: DHTMessage
            do {
                message = try DHTProtocol.decodeMessage(bytes)
            } catch {
                // The shell closes a session that sends garbage; its requests fail now.
                decodeFailures += 1
                if let actions = nodes[to].engine?.unreachable(sender.id, now: now) { perform(actions, at: to) }
                return
            }
            var actions: [DHTAction] = []
            if message.kind.isAnswer {
                // An answer to a request this node dialled out for: the address is verified.
                actions += nodes[to].engine?.peerVerified(sender, now: now) ?? []
            }
            actions += nodes[to].engine?.receive(message, from: sender, now: now) ?? []
            if !message.kind.isAnswer, nodes[from].alive {
                // An inbound peer that passes the dial-back check (every simulated node listens).
                actions += nodes[to].engine?.peerVerified(sender, now: now) ?? []
            }
            perform(actions, at: to)
        case .eclipse, .garbage:
            guard let message = try? DHTProtocol.decodeMessage(bytes) else { return }
            hostileAnswer(message, at: to, from: from)
        }
    }

    /// The k hostile nodes closest to `target`.
    private func hostileClosest(to target: NodeID) -> [DHTContact] {
        var best: [(NodeID, Int)] = []
        let k = options.config.k
        for (id, index) in hostileSorted where nodes[index].alive {
            let d = id.distance(to: target)
            if best.count == k, let last = best.last, !(d < last.0) { continue }
            var i = best.count
            while i > 0, d < best[i - 1].0 { i -= 1 }
            best.insert((d, index), at: i)
            if best.count > k { best.removeLast() }
        }
        return best.map { nodes[$0.1].contact }
    }

    private mutating func hostileAnswer(_ message: DHTMessage, at i: Int, from: Int) {
        guard let rid = message.requestID, !message.kind.isAnswer else { return }
        let target: NodeID
        switch message {
        case let .findNode(m): target = m.target
        case let .getProviders(m): target = m.repository
        case let .getPeer(m): target = m.target
        default: return
        }
        if nodes[i].behaviour == .garbage {
            switch rng.next() % 3 {
            case 0:
                var junk = [UInt8](repeating: 0, count: 40)
                for j in junk.indices { junk[j] = UInt8(truncatingIfNeeded: rng.next()) }
                junk[0] = message.kind == .findNode ? 0x41 : 0x43
                events.push(clock + latency(), .deliver(to: from, from: i, bytes: junk))
                return
            case 1:
                // A validly shaped record with a bad signature.
                let forged = ProviderRecord(repository: target, publisher: nodes[i].key.publicKey, expires: now.unixSeconds + 600,
                                            addresses: [nodes[i].contact.address], signature: [UInt8](repeating: 7, count: 64))
                let answer: DHTMessage
                switch message.kind {
                case .getProviders: answer = .providers(Providers(requestID: rid, records: [forged], closer: hostileClosest(to: target)))
                case .getPeer: answer = .peerRecord(PeerRecordAnswer(requestID: rid, record: nil, closer: hostileClosest(to: target)))
                default: answer = .nodes(Nodes(requestID: rid, contacts: hostileClosest(to: target)))
                }
                send(answer, from: i, to: from)
                return
            default:
                return  // silence: the request times out
            }
        }
        let closer = hostileClosest(to: target).filter { $0.id != nodes[from].contact.id }
        let answer: DHTMessage
        switch message.kind {
        case .getProviders: answer = .providers(Providers(requestID: rid, records: [], closer: closer))
        case .getPeer: answer = .peerRecord(PeerRecordAnswer(requestID: rid, record: nil, closer: closer))
        default: answer = .nodes(Nodes(requestID: rid, contacts: closer))
        }
        send(answer, from: i, to: from)
    }

    /// A multi-line report of the figures.
    public func report() -> String {
        var lines: [String] = []
        lines.append("dht-sim: \(options.nodes) nodes (\(Int(options.hostileFraction * 100))% hostile), seed \(options.seed), "
            + "churn \(left) left / \(joined) joined, disjoint paths \(options.disjointPaths)")
        let names: [(Category, String)] = [(.node, "FindNode"), (.peer, "FindPeer"),
                                           (.providersAfterChurn, "providers after churn"),
                                           (.providersAfterRepublish, "providers after republish")]
        for (c, name) in names {
            guard let f = figures[c] else { continue }
            let rate = (f.successRate * 1000).rounded() / 10
            let mean = (f.meanMessages * 10).rounded() / 10
            lines.append("  \(name): \(f.succeeded)/\(f.lookups) found (\(rate)%), hops median \(f.medianHops) p90 \(f.p90Hops), "
                + "messages per lookup mean \(mean) median \(f.medianMessages)")
        }
        lines.append("  messages delivered \(messagesDelivered), undecodable \(decodeFailures), penalties \(penalties)")
        return lines.joined(separator: "\n")
    }
}
