import GutsSupport
import GutsWire

// Small internal containers of the gossip engine. All of them are plain values with
// deterministic behaviour (no hashing-order dependence in anything they return in order).

/// A gossip message ID (BLAKE2b-256 of the signed bytes) as four words: cheap to hash and
/// compare. The public API uses `[UInt8]`; this is the internal key.
struct MessageID: Hashable, Sendable {
    let w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    /// Nil unless `bytes` is exactly `GossipLimits.idLength` (32) bytes.
    init?(_ bytes: [UInt8]) {
        guard bytes.count == GossipLimits.idLength else { return nil }
        func word(_ i: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<8 { v = v << 8 | UInt64(bytes[i * 8 + k]) }
            return v
        }
        w0 = word(0)
        w1 = word(1)
        w2 = word(2)
        w3 = word(3)
    }

    var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for w in [w0, w1, w2, w3] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: w >> UInt64(shift))) }
        }
        return out
    }
}

/// A first-in first-out queue with amortised O(1) operations.
struct FIFO<Element> {
    private var storage: [Element] = []
    private var head = 0

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }
    var first: Element? { head < storage.count ? storage[head] : nil }

    mutating func append(_ element: Element) { storage.append(element) }

    @discardableResult
    mutating func popFirst() -> Element? {
        guard head < storage.count else { return nil }
        let element = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return element
    }
}

extension FIFO: Sendable where Element: Sendable {}


/// A token bucket: `capacity` tokens, refilled at `rate` per second.
struct TokenBucket: Sendable {
    private var tokens: Double
    private var updated: UInt64
    let capacity: Double
    let rate: Double

    init(capacity: Double, rate: Double, now: UInt64) {
        self.capacity = max(0, capacity)
        self.rate = max(0, rate)
        tokens = self.capacity
        updated = now
    }

    /// Takes up to `n` tokens; returns how many were granted.
    mutating func take(_ n: Int, now: UInt64) -> Int {
        if now > updated {
            tokens = min(capacity, tokens + rate * Double(now - updated) / 1e9)
            updated = now
        }
        let granted = min(n, Int(tokens))
        tokens -= Double(granted)
        return granted
    }
}

/// IDs of messages already processed, bounded in time (`ttl`) and in entries (oldest evicted).
struct SeenCache: Sendable {
    private struct Stamp: Sendable {
        var id: MessageID
        var at: UInt64
    }

    private var ids: Set<MessageID> = []
    private var order = FIFO<Stamp>()
    let ttl: UInt64
    let capacity: Int

    init(ttl: UInt64, capacity: Int) {
        self.ttl = ttl
        self.capacity = max(1, capacity)
    }

    var count: Int { ids.count }
    func contains(_ id: MessageID) -> Bool { ids.contains(id) }

    mutating func insert(_ id: MessageID, now: UInt64) {
        guard ids.insert(id).inserted else { return }
        order.append(Stamp(id: id, at: now))
        while ids.count > capacity, let oldest = order.popFirst() { ids.remove(oldest.id) }
    }

    mutating func expire(now: UInt64) {
        while let oldest = order.first, oldest.at &+ ttl <= now {
            order.popFirst()
            ids.remove(oldest.id)
        }
    }

    var nextExpiry: UInt64? { order.first.map { $0.at &+ ttl } }
}

/// Full messages kept to answer IWant: bounded in time, entries and bytes (oldest evicted).
/// Also counts, per message and peer, how often the message was sent in answer to an IWant.
struct MessageCache: Sendable {
    private struct Entry: Sendable {
        var gossip: Gossip
        var size: Int
        var served: [UInt64: Int] = [:]
    }

    private struct Stamp: Sendable {
        var id: MessageID
        var at: UInt64
    }

    private var entries: [MessageID: Entry] = [:]
    private var order = FIFO<Stamp>()
    private(set) var bytes = 0
    let ttl: UInt64
    let maxEntries: Int
    let maxBytes: Int

    init(ttl: UInt64, maxEntries: Int, maxBytes: Int) {
        self.ttl = ttl
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(0, maxBytes)
    }

    var count: Int { entries.count }

    mutating func insert(_ id: MessageID, _ gossip: Gossip, now: UInt64) {
        guard entries[id] == nil else { return }
        let size = 400 + gossip.data.count
        entries[id] = Entry(gossip: gossip, size: size)
        bytes += size
        order.append(Stamp(id: id, at: now))
        while entries.count > 1, entries.count > maxEntries || bytes > maxBytes { evictOldest() }
    }

    private mutating func evictOldest() {
        guard let oldest = order.popFirst(), let entry = entries.removeValue(forKey: oldest.id) else { return }
        bytes -= entry.size
    }

    mutating func expire(now: UInt64) {
        while let oldest = order.first, oldest.at &+ ttl <= now { evictOldest() }
    }

    var nextExpiry: UInt64? { order.first.map { $0.at &+ ttl } }

    enum ServeResult {
        case missing
        case limitReached
        case message(Gossip)
    }

    /// The message if it is cached and was sent to `peer` fewer than `limit` times before.
    mutating func serve(_ id: MessageID, to peer: UInt64, limit: Int) -> ServeResult {
        guard var entry = entries[id] else { return .missing }
        let times = entry.served[peer, default: 0]
        guard times < limit else { return .limitReached }
        entry.served[peer] = times + 1
        entries[id] = entry
        return .message(entry.gossip)
    }
}
