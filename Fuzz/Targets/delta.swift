import GutsGit

/// git's delta format applied the plain way (arrays, no pointers): the reference the
/// real implementation is compared with.
func fuzzReferenceDelta(base: [UInt8], delta: [UInt8], limit: Int) -> [UInt8]? {
    var p = 0
    func size() -> Int? {
        var value = 0
        var shift = 0
        while true {
            guard p < delta.count, shift <= 56 else { return nil }
            let c = delta[p]
            p += 1
            value |= Int(c & 0x7F) << shift
            shift += 7
            if c & 0x80 == 0 { return value }
        }
    }
    guard let baseSize = size(), let resultSize = size(), baseSize == base.count, resultSize <= limit else { return nil }
    var out: [UInt8] = []
    while p < delta.count {
        let op = delta[p]
        p += 1
        if op & 0x80 != 0 {
            var offset = 0
            var count = 0
            for bit in 0..<4 where op & (1 << bit) != 0 {
                guard p < delta.count else { return nil }
                offset |= Int(delta[p]) << (8 * bit)
                p += 1
            }
            for bit in 0..<3 where op & (0x10 << bit) != 0 {
                guard p < delta.count else { return nil }
                count |= Int(delta[p]) << (8 * bit)
                p += 1
            }
            if count == 0 { count = 0x10000 }
            guard offset + count <= base.count, out.count + count <= resultSize else { return nil }
            out += base[offset..<(offset + count)]
        } else if op != 0 {
            let count = Int(op)
            guard p + count <= delta.count, out.count + count <= resultSize else { return nil }
            out += delta[p..<(p + count)]
            p += count
        } else {
            return nil
        }
    }
    return out.count == resultSize ? out : nil
}

/// Delta application (pack entries and thin packs): sizes, copy and insert
/// instructions, every bound.
///
/// Input: flags (bit 0: the harness writes the base-size header, so inputs match their
/// base), the base length (u16) and base, then the delta.
///
/// Properties: `Delta.apply` agrees with the reference: the same result, or both refuse.
func fuzzDelta(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    let base = input.chunk()
    var delta = input.rest()
    if flags & 1 != 0 {
        var header: [UInt8] = []
        var n = base.count
        repeat {
            header.append(UInt8(n & 0x7F) | (n > 0x7F ? 0x80 : 0))
            n >>= 7
        } while n > 0
        delta = header + delta
    }
    let limit = 1 << 20
    let real = base.withUnsafeBytes { b in delta.withUnsafeBytes { d in try? Delta.apply(base: b, delta: d, limit: limit) } }
    let expected = fuzzReferenceDelta(base: base, delta: delta, limit: limit)
    fuzzCheck(real == expected, "Delta.apply gave \(real.map { "\($0.count) bytes" } ?? "an error"), the reference \(expected.map { "\($0.count) bytes" } ?? "an error")")
    if let sizes = delta.withUnsafeBytes({ try? Delta.sizes($0) }), let real {
        fuzzCheck(sizes.result == real.count && sizes.base == base.count, "declared sizes differ from the result")
    }
}
