import GutsSupport

/// SplitMix64 (Steele, Lea and Flood, 2014): the engine and the simulation draw every random
/// choice from one of these, so a run is reproducible from its seed.
public struct DHTRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func unit() -> Double { Double(next() >> 11) / Double(UInt64(1) << 53) }
}

/// A binary min-heap keyed by (key, insertion order): equal keys pop in insertion order,
/// which keeps the engine's timers and the simulation deterministic.
struct MinHeap<Value> {
    fileprivate struct Item {
        var key: UInt64
        var order: UInt64
        var value: Value
    }

    private var items: [Item] = []
    private var counter: UInt64 = 0

    var count: Int { items.count }
    var isEmpty: Bool { items.isEmpty }
    var minKey: UInt64? { items.first?.key }

    private func less(_ a: Int, _ b: Int) -> Bool {
        items[a].key < items[b].key || (items[a].key == items[b].key && items[a].order < items[b].order)
    }

    mutating func push(_ key: UInt64, _ value: Value) {
        items.append(Item(key: key, order: counter, value: value))
        counter &+= 1
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func popMin() -> (key: UInt64, value: Value)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        guard let top = items.popLast() else { return nil }
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count, less(l, m) { m = l }
            if r < items.count, less(r, m) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return (top.key, top.value)
    }
}

extension MinHeap: Sendable where Value: Sendable {}
extension MinHeap.Item: Sendable where Value: Sendable {}

@inline(__always)
func nanoseconds(_ seconds: Double) -> UInt64 {
    guard seconds.isFinite, seconds > 0 else { return 0 }
    return seconds >= 1e10 ? UInt64(1e19) : UInt64(seconds * 1e9)
}

extension Instant {
    /// `seconds` later, with non-finite or huge delays (a misconfigured interval) clamped to
    /// about 31 years instead of trapping.
    func after(_ seconds: Double) -> Instant {
        adding(seconds: seconds.isFinite ? min(max(0, seconds), 1e9) : 1e9)
    }
}
