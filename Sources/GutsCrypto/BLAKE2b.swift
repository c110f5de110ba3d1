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

    /// BLAKE2b-512 of `a || b` into `out` (64 bytes), with the state on the stack: the
    /// Noise handshake hashes this way several times per connection.
    public static func hash(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) {
        Sodium.ensureInitialized()
        withUnsafeTemporaryAllocation(byteCount: crypto_generichash_statebytes(), alignment: 64) { scratch in
            guard let st = scratch.baseAddress.map(OpaquePointer.init) else { preconditionFailure("unreachable: state has bytes") }
            crypto_generichash_init(st, nil, 0, 64)
            crypto_generichash_update(st, a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count))
            crypto_generichash_update(st, b.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(b.count))
            crypto_generichash_final(st, out.assumingMemoryBound(to: UInt8.self), 64)
        }
    }

    /// BLAKE2b-512 of `a || b`.
    public static func hash(_ a: [UInt8], _ b: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: maxOutputLength) { out, initialized in
            a.withUnsafeBytes { ra in b.withUnsafeBytes { rb in hash(ra, rb, into: UnsafeMutableRawPointer(out.baseAddress!)) } }
            initialized = maxOutputLength
        }
    }

    /// HMAC-BLAKE2b per RFC 2104 with a 128-byte block, as Noise requires (not BLAKE2b's
    /// native keyed mode), of `a || b` into `out` (64 bytes). Stack memory only.
    public static func hmac(key: UnsafeRawBufferPointer, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer,
                            into out: UnsafeMutableRawPointer) {
        Sodium.ensureInitialized()
        let stateBytes = (crypto_generichash_statebytes() + 63) & ~63
        withUnsafeTemporaryAllocation(byteCount: stateBytes + blockLength + maxOutputLength, alignment: 64) { scratch in
            guard let base = scratch.baseAddress else { preconditionFailure("unreachable: scratch has bytes") }
            let st = OpaquePointer(base)
            let pad = (base + stateBytes).initializeMemory(as: UInt8.self, repeating: 0, count: blockLength)
            let inner = (base + stateBytes + blockLength).assumingMemoryBound(to: UInt8.self)
            if key.count > blockLength {
                crypto_generichash(pad, 64, key.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(key.count), nil, 0)
            } else if let k = key.baseAddress {
                UnsafeMutableRawPointer(pad).copyMemory(from: k, byteCount: key.count)
            }
            for i in 0..<blockLength { pad[i] ^= 0x36 }
            crypto_generichash_init(st, nil, 0, 64)
            crypto_generichash_update(st, pad, UInt64(blockLength))
            crypto_generichash_update(st, a.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(a.count))
            crypto_generichash_update(st, b.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(b.count))
            crypto_generichash_final(st, inner, 64)
            for i in 0..<blockLength { pad[i] ^= 0x36 ^ 0x5c }
            crypto_generichash_init(st, nil, 0, 64)
            crypto_generichash_update(st, pad, UInt64(blockLength))
            crypto_generichash_update(st, inner, 64)
            crypto_generichash_final(st, out.assumingMemoryBound(to: UInt8.self), 64)
        }
    }

    /// HMAC-BLAKE2b per RFC 2104 with a 128-byte block, as Noise requires
    /// (not BLAKE2b's native keyed mode).
    public static func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: maxOutputLength) { out, initialized in
            key.withUnsafeBytes { k in
                data.withUnsafeBytes { d in
                    hmac(key: k, d, UnsafeRawBufferPointer(start: nil, count: 0), into: UnsafeMutableRawPointer(out.baseAddress!))
                }
            }
            initialized = maxOutputLength
        }
    }

    /// Noise HKDF(chaining_key, input_key_material, num_outputs) with num_outputs 2 or 3,
    /// into `out` (64 bytes per output, one after the other). Stack memory only.
    public static func hkdf(chainingKey: UnsafeRawBufferPointer, inputKeyMaterial: UnsafeRawBufferPointer, outputs: Int,
                            into out: UnsafeMutableRawPointer) {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF yields 2 or 3 outputs")
        let none = UnsafeRawBufferPointer(start: nil, count: 0)
        withUnsafeTemporaryAllocation(byteCount: maxOutputLength, alignment: 8) { temp in
            guard let t = temp.baseAddress else { preconditionFailure("unreachable: temp has bytes") }
            hmac(key: chainingKey, inputKeyMaterial, none, into: t)
            let tempKey = UnsafeRawBufferPointer(start: t, count: maxOutputLength)
            var counter: UInt8 = 1
            withUnsafeBytes(of: &counter) { hmac(key: tempKey, $0, none, into: out) }
            for i in 1..<outputs {
                counter = UInt8(i + 1)
                let previous = UnsafeRawBufferPointer(start: out + (i - 1) * maxOutputLength, count: maxOutputLength)
                withUnsafeBytes(of: &counter) { hmac(key: tempKey, previous, $0, into: out + i * maxOutputLength) }
            }
        }
    }

    /// Noise HKDF(chaining_key, input_key_material, num_outputs) with num_outputs 2 or 3.
    public static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF yields 2 or 3 outputs")
        let all = [UInt8](unsafeUninitializedCapacity: outputs * maxOutputLength) { out, initialized in
            chainingKey.withUnsafeBytes { c in
                inputKeyMaterial.withUnsafeBytes { i in
                    hkdf(chainingKey: c, inputKeyMaterial: i, outputs: outputs, into: UnsafeMutableRawPointer(out.baseAddress!))
                }
            }
            initialized = outputs * maxOutputLength
        }
        return (0..<outputs).map { Array(all[($0 * maxOutputLength)..<(($0 + 1) * maxOutputLength)]) }
    }
}
