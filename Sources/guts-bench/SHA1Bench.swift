import Foundation
import GutsGit
import GutsSupport

/// `guts-bench sha1`: guts' plain SHA-1 and collision-detecting SHA-1 (`SHA1DC`, used
/// for object names) against `sha1sum` on the same bytes, in the same run.
///
///     guts-bench sha1 [--mb N] [--runs N]
///
/// The data (N MiB, default 256, pseudo-random) is hashed in memory by guts; sha1sum
/// reads a temporary file of the same bytes (in the page cache) and pays its process
/// start. Medians of --runs runs (default 5), each tool's runs interleaved.
enum SHA1Bench {
    static func run(arguments: [String]) -> Int32 {
        var mb = 256
        var runs = 5
        var i = 0
        while i < arguments.count {
            let value = i + 1 < arguments.count ? Int(arguments[i + 1]) : nil
            switch arguments[i] {
            case "--mb" where value != nil: mb = max(1, value!)
            case "--runs" where value != nil: runs = max(1, value!)
            default:
                print("usage: guts-bench sha1 [--mb N] [--runs N]")
                return 2
            }
            i += 2
        }
        return measure(mb: mb, runs: runs, scratch: nil) ? 0 : 1
    }

    /// Prints the three throughputs and the SHA1DC/sha1sum ratio; false when a digest
    /// disagrees or the file cannot be written.
    @discardableResult
    static func measure(mb: Int, runs: Int, scratch: String?) -> Bool {
        let size = mb << 20
        var data = [UInt8](repeating: 0, count: size)
        var x: UInt64 = 0x9E37_79B9_7F4A_7C15
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for k in 0..<words.count {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                words[k] = x
            }
        }
        let file = (scratch ?? "/tmp") + "/guts-bench-sha1-\(getpid()).bin"
        defer { Files.remove(file) }
        do {
            try Files.writeAtomically(file, data)
        } catch {
            print("cannot write \(file): \(error)")
            return false
        }
        var plain: [Double] = [], detecting: [Double] = [], theirs: [Double] = []
        var plainDigest = "", detectingDigest = "", theirDigest = ""
        var flagged = false
        _ = Processes.capture(["/usr/bin/sha1sum", file])  // warm the page cache
        for _ in 0..<runs {
            var start = Instant.now()
            plainDigest = Hex.encode(SHA1.hash(data))
            plain.append(Instant.now().seconds(since: start))

            start = Instant.now()
            let r = SHA1DC.hash(data)
            detecting.append(Instant.now().seconds(since: start))
            detectingDigest = Hex.encode(r.digest)
            flagged = flagged || r.collisionDetected

            start = Instant.now()
            let out = Processes.capture(["/usr/bin/sha1sum", file])
            theirs.append(Instant.now().seconds(since: start))
            theirDigest = String(out.prefix(40))
        }
        func rate(_ times: [Double]) -> Double { Double(size) / 1e6 / Statistics.median(times) }
        func fmt(_ v: Double) -> String { String(format: "%.2f", v) }
        func list(_ times: [Double]) -> String { times.map { fmt(Double(size) / 1e6 / $0) }.joined(separator: " ") }
        let p = rate(plain), d = rate(detecting), s = rate(theirs)
        print("SHA-1 over \(mb) MiB, median of \(runs) runs (MB/s per run in brackets):")
        print("  guts SHA1 (plain):              \(fmt(p)) MB/s [\(list(plain))]")
        print("  guts SHA1DC (collision detect): \(fmt(d)) MB/s [\(list(detecting))]")
        print("  sha1sum (file in page cache):   \(fmt(s)) MB/s [\(list(theirs))]")
        print("ratio SHA1/sha1sum: \(fmt(p / s))")
        print("ratio SHA1DC/sha1sum: \(fmt(d / s)) (target >= 0.60) \(d / s >= 0.6 ? "OK" : "BELOW")")
        print("ratio SHA1DC/SHA1: \(fmt(d / p))")
        let agree = plainDigest == theirDigest && detectingDigest == theirDigest
        if !agree { print("DIGESTS DIFFER: \(plainDigest) \(detectingDigest) \(theirDigest)") }
        if flagged { print("SHA1DC FLAGGED PSEUDO-RANDOM DATA") }
        return agree && !flagged
    }
}
