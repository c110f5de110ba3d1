/// SplitMix64 (Steele, Lea and Flood, 2014): a small seeded generator. Every random choice in
/// this module comes from one of these, seeded by the caller, so a run is reproducible from
/// its seed and tests can print it.
public struct PolicyRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    /// The SplitMix64 output function: a bijective 64-bit mixer.
    static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A keyed 64-bit hash of a few words, for orderings an outsider must not predict (which
/// address groups eviction protects). Not a MAC; the key only has to be unknown to peers.
func keyedHash(_ key: UInt64, _ words: UInt64...) -> UInt64 {
    var h = PolicyRandom.mix(key ^ 0x6775_7473_706F_6C69)
    for w in words { h = PolicyRandom.mix(h ^ PolicyRandom.mix(w &+ 0x9E37_79B9_7F4A_7C15)) }
    return h
}
