/// git's delta format: base size, result size (little-endian base-128 varints), then
/// copy instructions (bit 7 set: offset and size bytes selected by bits 0-6) and
/// insert instructions (1-127 literal bytes). Every field is bounds-checked.
public enum Delta {
    /// Reads a size varint at `p`; nil when truncated or over 62 bits.
    static func readSize(_ d: UnsafeRawBufferPointer, _ p: inout Int) -> Int? {
        var value = 0
        var shift = 0
        while true {
            guard p < d.count, shift <= 56 else { return nil }
            let c = d[p]
            p += 1
            value |= Int(c & 0x7F) << shift
            shift += 7
            if c & 0x80 == 0 { return value }
        }
    }

    /// The (base size, result size) a delta declares, and where its instructions start.
    public static func sizes(_ delta: UnsafeRawBufferPointer) throws -> (base: Int, result: Int, start: Int) {
        var p = 0
        guard let base = readSize(delta, &p), let result = readSize(delta, &p) else {
            throw GitError(.corrupt, "delta header truncated")
        }
        return (base, result, p)
    }

    /// Applies `delta` to `base`. Fails when the declared base size differs from the
    /// base, when the result would exceed `limit` (checked before allocating), when an
    /// instruction reads outside the base or writes past the declared result, or when
    /// the result comes out short. With a `budget`, the declared result size is charged
    /// to it before anything is allocated.
    public static func apply(base: UnsafeRawBufferPointer, delta: UnsafeRawBufferPointer, limit: Int,
                             budget: WorkBudget? = nil) throws -> [UInt8] {
        let (baseSize, resultSize, start) = try sizes(delta)
        guard baseSize == base.count else {
            throw GitError(.corrupt, "delta expects a base of \(baseSize) bytes, base has \(base.count)")
        }
        guard resultSize <= limit else {
            throw GitError(.tooLarge, "delta claims a result of \(resultSize) bytes (limit \(limit))", limit: .objectSize)
        }
        try budget?.chargeDelta(resultSize)
        var failure: GitError?
        let out = [UInt8](unsafeUninitializedCapacity: resultSize) { buf, count in
            count = 0
            guard let dst = buf.baseAddress else {
                if delta.count > start { failure = GitError(.corrupt, "delta writes past its declared size 0") }
                return
            }
            var p = start
            var o = 0
            let n = delta.count
            while p < n {
                let op = delta[p]
                p += 1
                if op & 0x80 != 0 {
                    var off = 0
                    var size = 0
                    for bit in 0..<4 where op & (1 << bit) != 0 {
                        guard p < n else { failure = GitError(.corrupt, "delta copy instruction truncated"); return }
                        off |= Int(delta[p]) << (8 * bit)
                        p += 1
                    }
                    for bit in 0..<3 where op & (0x10 << bit) != 0 {
                        guard p < n else { failure = GitError(.corrupt, "delta copy instruction truncated"); return }
                        size |= Int(delta[p]) << (8 * bit)
                        p += 1
                    }
                    if size == 0 { size = 0x10000 }
                    guard off <= base.count, size <= base.count - off else {
                        failure = GitError(.corrupt, "delta copies outside its base (offset \(off), size \(size), base \(base.count))")
                        return
                    }
                    guard size <= resultSize - o else {
                        failure = GitError(.corrupt, "delta writes past its declared size \(resultSize)")
                        return
                    }
                    (UnsafeMutableRawPointer(dst) + o).copyMemory(from: base.baseAddress! + off, byteCount: size)
                    o += size
                } else if op != 0 {
                    let size = Int(op)
                    guard size <= n - p else { failure = GitError(.corrupt, "delta insert instruction truncated"); return }
                    guard size <= resultSize - o else {
                        failure = GitError(.corrupt, "delta writes past its declared size \(resultSize)")
                        return
                    }
                    (UnsafeMutableRawPointer(dst) + o).copyMemory(from: delta.baseAddress! + p, byteCount: size)
                    o += size
                    p += size
                } else {
                    failure = GitError(.corrupt, "delta uses reserved instruction 0")
                    return
                }
            }
            guard o == resultSize else {
                failure = GitError(.corrupt, "delta produced \(o) bytes, declared \(resultSize)")
                return
            }
            count = o
        }
        if let failure { throw failure }
        return out
    }
}
