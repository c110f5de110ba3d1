import CSodium

/// BLAKE2b, plus HMAC and HKDF built on it exactly as the Noise spec (section 4.3) defines.
public enum BLAKE2b {
    public static let blockLength = 128
    public static let maxOutputLength = 64

    /// Unkeyed BLAKE2b with `outputLength` bytes (1...64).
    public static func hash(_ data: [UInt8], outputLength: Int = 64) -> [UInt8] {
        Sodium.ensureInitialized()
        precondition(outputLength >= 1 && outputLength <= 64, "BLAKE2b output length out of range")
        var out = [UInt8](repeating: 0, count: outputLength)
        _ = out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { d in
                crypto_generichash(o.baseAddress!, outputLength, d.baseAddress, UInt64(d.count), nil, 0)
            }
        }
        return out
    }

    /// Streaming unkeyed BLAKE2b-512. libsodium's state is 64-byte aligned and opaque
    /// to Swift, so it lives in its own aligned allocation.
    public final class Hasher {
        private let state: UnsafeMutableRawPointer

        public init() {
            Sodium.ensureInitialized()
            state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
            crypto_generichash_init(OpaquePointer(state), nil, 0, 64)
        }

        deinit { state.deallocate() }

        public func update(_ data: [UInt8]) {
            data.withUnsafeBufferPointer { d in
                _ = crypto_generichash_update(OpaquePointer(state), d.baseAddress, UInt64(d.count))
            }
        }

        public func finalize() -> [UInt8] {
            var out = [UInt8](repeating: 0, count: 64)
            _ = out.withUnsafeMutableBufferPointer { crypto_generichash_final(OpaquePointer(state), $0.baseAddress!, 64) }
            return out
        }
    }

    /// HMAC-BLAKE2b per RFC 2104 with a 128-byte block, as Noise requires
    /// (not BLAKE2b's native keyed mode).
    public static func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var k = key.count > blockLength ? hash(key) : key
        k += [UInt8](repeating: 0, count: blockLength - k.count)
        let inner = Hasher()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(data)
        let innerDigest = inner.finalize()
        let outer = Hasher()
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(innerDigest)
        return outer.finalize()
    }

    /// Noise HKDF(chaining_key, input_key_material, num_outputs) with num_outputs 2 or 3.
    public static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF yields 2 or 3 outputs")
        let tempKey = hmac(key: chainingKey, data: inputKeyMaterial)
        let out1 = hmac(key: tempKey, data: [0x01])
        let out2 = hmac(key: tempKey, data: out1 + [0x02])
        if outputs == 2 { return [out1, out2] }
        let out3 = hmac(key: tempKey, data: out2 + [0x03])
        return [out1, out2, out3]
    }
}
