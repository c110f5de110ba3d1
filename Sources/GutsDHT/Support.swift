import GutsSupport

/// The engine and the simulation draw every random choice from one of these (SplitMix64),
/// so a run is reproducible from its seed.
public typealias DHTRandom = SplitMix64

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
