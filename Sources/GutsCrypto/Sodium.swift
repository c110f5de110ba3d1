import CSodium

/// libsodium initialisation. `sodium_init` is idempotent and thread-safe; every
/// public entry point of this module calls `Sodium.ensureInitialized()` first.
public enum Sodium {
    private static let initResult: Int32 = sodium_init()

    /// Initialises libsodium once. A negative result means the library cannot be
    /// used at all (no entropy source); nothing in guts can run without it.
    @inline(__always)
    public static func ensureInitialized() {
        precondition(initResult >= 0, "libsodium failed to initialise (no entropy source?)")
    }
}

/// Cryptographically secure randomness from libsodium.
public enum Random {
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ensureInitialized()
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
        return out
    }

    public static func uint64() -> UInt64 {
        Sodium.ensureInitialized()
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { randombytes_buf($0.baseAddress!, 8) }
        return v
    }
}
