/// A binary min-heap keyed by (key, insertion order): equal keys pop in insertion order,
/// which keeps engines' timers and simulations deterministic.
@frozen
public struct MinHeap<Value> {
    @usableFromInline
    struct Item {
        @usableFromInline var key: UInt64
        @usableFromInline var order: UInt64
        @usableFromInline var value: Value

        @inlinable
        init(key: UInt64, order: UInt64, value: Value) {
            self.key = key
            self.order = order
            self.value = value
        }
    }

    @usableFromInline var items: [Item] = []
    @usableFromInline var counter: UInt64 = 0

    @inlinable
    public init() {}

    @inlinable public var count: Int { items.count }
    @inlinable public var isEmpty: Bool { items.isEmpty }
    @inlinable public var minKey: UInt64? { items.first?.key }

    @inlinable
    func less(_ a: Int, _ b: Int) -> Bool {
        items[a].key < items[b].key || (items[a].key == items[b].key && items[a].order < items[b].order)
    }

    @inlinable
    public mutating func push(_ key: UInt64, _ value: Value) {
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

    @inlinable
    public mutating func popMin() -> (key: UInt64, value: Value)? {
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
