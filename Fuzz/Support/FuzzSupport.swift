// Shared by every fuzz harness: compiled into each libFuzzer binary by Fuzz/build.sh and
// into the FuzzRegressionTests test target, so both run exactly the same harness code.
#if canImport(Glibc)
import Glibc
#endif
import GutsCrypto
import GutsIdentity
import GutsSupport

/// Reads structured values from the fuzzer's bytes. Reads past the end give zeros and
/// empty arrays, so every input is a valid program for a harness.
struct FuzzReader {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16() -> Int { Int(u8()) << 8 | Int(u8()) }

    /// Up to `n` bytes (fewer at the end).
    mutating func take(_ n: Int) -> [UInt8] {
        let k = max(0, min(n, remaining))
        defer { position += k }
        return Array(bytes[position..<(position + k)])
    }

    /// A field preceded by its u16 length.
    mutating func chunk() -> [UInt8] { take(u16()) }

    mutating func rest() -> [UInt8] { take(remaining) }
}

/// The corpus file the regression tests are replaying, named when a property fails.
nonisolated(unsafe) var fuzzReplaying: String?

/// A property the harness checks was violated: crash, so libFuzzer saves the input and the
/// regression test of that input fails.
func fuzzFail(_ message: String) -> Never {
    fatalError("fuzz property violated: \(message)" + (fuzzReplaying.map { " (input \($0))" } ?? ""))
}

func fuzzCheck(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fuzzFail(message()) }
}

/// Fixed keys so runs are reproducible: a key pair from a seed of 32 equal bytes.
func fuzzEd25519(_ fill: UInt8) -> Ed25519KeyPair {
    guard let k = try? Ed25519KeyPair(seed: [UInt8](repeating: fill, count: 32)) else { fuzzFail("Ed25519 seed") }
    return k
}

func fuzzX25519(_ fill: UInt8) -> X25519KeyPair {
    guard let k = try? X25519KeyPair(secretKey: [UInt8](repeating: fill, count: 32)) else { fuzzFail("X25519 secret") }
    return k
}

func fuzzPeerID(_ key: Ed25519KeyPair) -> PeerID {
    guard let id = try? PeerID(publicKey: key.publicKey) else { fuzzFail("peer ID") }
    return id
}

/// The one fixed instant sessions are driven at (timeouts are not what is fuzzed).
let fuzzNow = Instant(nanoseconds: 1_000_000_000)

/// A private directory for harnesses that need files (packs are read from disk). Under
/// $TMPDIR (Fuzz/run.sh points it at memory when it can); removed by `fuzzRemoveScratch`.
let fuzzScratch: String = {
    let base = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(base)/guts-fuzz-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        fuzzFail("cannot create a scratch directory under \(base)")
    }
    return String(cString: made)
}()

/// Writes `bytes` to `path` (created or truncated), plainly: the files are scratch.
func fuzzWriteFile(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { fuzzFail("cannot write \(path): errno \(errno)") }
    defer { close(fd) }
    guard Files.writeAll(fd, bytes) == 0 else { fuzzFail("cannot write \(path)") }
}

/// Removes every plain file in `dir` (scratch directories hold no subdirectories).
func fuzzEmptyDirectory(_ dir: String) {
    for name in Files.list(dir) { unlink(dir + "/" + name) }
}

/// Removes the scratch directory and everything in it.
func fuzzRemoveScratch() {
    Files.removeTree(fuzzScratch)
}
