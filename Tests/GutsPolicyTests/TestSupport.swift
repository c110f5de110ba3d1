#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GutsIdentity
import GutsPolicy
import GutsSupport
import XCTest

/// The virtual clock's origin, well away from 0 so "before start" instants exist.
let clockStart: UInt64 = 1_000_000_000_000

/// The virtual instant `seconds` after the start.
func at(_ seconds: Double) -> Instant { Instant(nanoseconds: clockStart + UInt64((seconds * 1e9).rounded())) }

/// A fixed Unix time for `Instant(nanoseconds: 0)` (so `at(0)` is 1_800_001_000 Unix seconds).
let testEpoch = 1_800_000_000.0

/// The seed for a randomized test: GUTS_TEST_SEED when set (to replay a failure), otherwise
/// fresh. Every assertion in a randomized test names it.
func testSeed() -> UInt64 {
    if let text = getenv("GUTS_TEST_SEED"), let seed = UInt64(String(cString: text)) { return seed }
    return UInt64.random(in: 0...UInt64.max)
}

/// A peer ID from a number (its public key is the number's bytes repeated).
func peer(_ n: Int) throws -> PeerID {
    var key = [UInt8](repeating: 0, count: 32)
    for i in 0..<8 { key[i] = UInt8(truncatingIfNeeded: n >> (8 * i)) }
    key[31] = 0x5A
    return try PeerID(publicKey: key)
}

func ip(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> IPAddress {
    try XCTUnwrap(IPAddress(text), "'\(text)' should parse", file: file, line: line)
}

func group(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws -> AddressGroup {
    try ip(text, file: file, line: line).group
}

/// The IPv4 address 10.a.b.c.
func v4(_ a: Int, _ b: Int, _ c: Int) -> IPAddress {
    .v4(UInt32(10) << 24 | UInt32(a & 0xFF) << 16 | UInt32(b & 0xFF) << 8 | UInt32(c & 0xFF))
}
