#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GutsGit
import GutsSupport

/// `guts-bench index`: the receiver's indexer (`PackIndexer.index`, every object hashed
/// with SHA-1 collision detection and checked with the fsck rules) on a copy of a pack,
/// in-process, so that it can be profiled (`perf record`) without a sync around it.
///
///     guts-bench index --pack PATH [--runs N] [--threads N] [--prescan]
///
/// With --prescan the copy is scanned by a `PackPrescan` as it is written (as a sync
/// does while receiving) and the indexer starts from what it found. Prints wall-clock
/// seconds per run and the median. Without --pack it does nothing (it is part of `all`).
enum IndexBench {
    static func run(arguments: [String]) -> Int32 {
        var pack: String?
        var runs = 3
        var threads = 2
        var prescan = false
        var i = 0
        while i < arguments.count {
            switch arguments[i] {
            case "--pack" where i + 1 < arguments.count: pack = arguments[i + 1]; i += 1
            case "--runs" where i + 1 < arguments.count: runs = max(1, Int(arguments[i + 1]) ?? runs); i += 1
            case "--threads" where i + 1 < arguments.count: threads = max(1, Int(arguments[i + 1]) ?? threads); i += 1
            case "--prescan": prescan = true
            default:
                print("usage: guts-bench index --pack PATH [--runs N] [--threads N] [--prescan]")
                return 2
            }
            i += 1
        }
        guard let pack else {
            print("index: skipped (needs --pack PATH)")
            return 0
        }
        guard let data = FileManager.default.contents(atPath: pack) else {
            print("index: cannot read \(pack)")
            return 3
        }
        let bytes = [UInt8](data)
        var times: [Double] = []
        for run in 0..<runs {
            let dir = NSTemporaryDirectory() + "guts-bench-index-\(getpid())-\(run)"
            Files.removeTree(dir)
            _ = try? Files.makeDirectories(dir)
            defer { Files.removeTree(dir) }
            let path = dir + "/in.pack"
            let start = Date()
            var scanned: PackPrescan.Result?
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { print("index: cannot write \(path)"); return 3 }
            let scan = prescan ? PackPrescan(path: path, limits: .default) : nil
            var at = 0
            while at < bytes.count {
                let n = min(bytes.count - at, 1 << 20)
                let rc = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + at, n) }
                guard rc > 0 else { close(fd); print("index: write failed"); return 3 }
                at += rc
                scan?.advance(to: at)
            }
            close(fd)
            scan?.finish(total: bytes.count)
            scanned = scan?.result()
            let received = Date().timeIntervalSince(start)
            do {
                let r = try PackIndexer.index(packPath: path, limits: .default, threads: threads, prescan: scanned, collectLinks: true)
                let seconds = Date().timeIntervalSince(start)
                times.append(seconds)
                print(String(format: "index: run %d: %.2f s (written and scanned in %.2f s), %d objects%@", run + 1, seconds, received, r.count,
                             prescan ? (scanned == nil ? ", prescan gave up" : "") : ""))
            } catch {
                print("index: run \(run + 1) failed: \(error)")
                return 1
            }
        }
        let sorted = times.sorted()
        print(String(format: "index: median %.2f s over %d runs", sorted[sorted.count / 2], runs))
        return 0
    }
}
