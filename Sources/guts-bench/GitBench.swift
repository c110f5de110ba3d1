#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport

/// `guts-bench git`: `guts objects verify` against `git fsck --full` on the same
/// repository, and guts' SHA-1 against `sha1sum` on the same bytes.
///
///     guts-bench git [--repo PATH] [--commits N] [--runs N] [--sha-mb N]
///                    [--threads N] [--in-process] [--keep]
///
/// Without --repo a repository is generated with `git fast-import` (N commits over a
/// few hundred files, then `git repack -adf --depth=50`) in a temporary directory.
/// Verification runs the `guts` binary next to this one (so both tools pay process
/// start-up), or the verifier in-process with --in-process or when no binary is found.
/// Peak RSS is summed over each command's process tree (sampled from /proc, and at
/// least the largest single process's maxrss), binary runs only.
enum GitBench {
    struct Options {
        var repo: String?
        var commits = 3000
        var runs = 5
        var shaMB = 256
        var threads = 2
        var inProcess = false
        var keep = false
    }

    static func run(arguments: [String]) -> Int32 {
        var o = Options()
        var i = 0
        func value() -> String? {
            i += 1
            return i < arguments.count ? arguments[i] : nil
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--repo": o.repo = value()
            case "--commits": o.commits = value().flatMap { Int($0) } ?? o.commits
            case "--runs": o.runs = max(1, value().flatMap { Int($0) } ?? o.runs)
            case "--sha-mb": o.shaMB = max(1, value().flatMap { Int($0) } ?? o.shaMB)
            case "--threads": o.threads = max(1, value().flatMap { Int($0) } ?? o.threads)
            case "--in-process": o.inProcess = true
            case "--keep": o.keep = true
            case "git": break
            default:
                print("usage: guts-bench git [--repo PATH] [--commits N] [--runs N] [--sha-mb N] [--threads N] [--in-process] [--keep]")
                return 2
            }
            i += 1
        }
        var temp: String?
        defer {
            if let temp, !o.keep { Files.removeTree(temp) }
        }
        let repoPath: String
        if let r = o.repo {
            repoPath = r
        } else {
            var template = Array("/tmp/guts-bench-git-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
                print("cannot create a temporary directory")
                return 3
            }
            let dir = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            temp = dir
            print("generating a repository with \(o.commits) commits in \(dir) ...")
            guard generate(at: dir + "/repo.git", commits: o.commits, scratch: dir) else {
                print("repository generation failed")
                return 3
            }
            repoPath = dir + "/repo.git"
        }
        guard verifyBenchmark(repoPath, o) else { return 1 }
        shaBenchmark(o, scratch: temp)
        return 0
    }

    // MARK: Verify vs git fsck

    static func verifyBenchmark(_ path: String, _ o: Options) -> Bool {
        let repository: Repository
        do {
            repository = try Repository.open(path)
        } catch {
            print("\(path): \(error)")
            return false
        }
        let packBytes = repository.packs.reduce(0) { $0 + (Files.size($1.packPath) ?? 0) }
        let objects = repository.packs.reduce(0) { $0 + $1.count }
        print("repository: \(repository.gitDirectory)")
        print("  \(objects) packed objects in \(repository.packs.count) pack(s), \(mb(packBytes)) MB")
        let guts = siblingBinary("guts")
        let useBinary = !o.inProcess && guts != nil
        var gutsTimes: [Double] = []
        var gitTimes: [Double] = []
        var gutsKB: [Double] = []
        var gitKB: [Double] = []
        for run in 0..<o.runs {
            // Alternate the order so neither tool always gets the warmer cache.
            for which in (run % 2 == 0 ? [0, 1] : [1, 0]) {
                if which == 0 {
                    let start = Instant.now()
                    let ok: Bool
                    if useBinary, let guts {
                        let r = Processes.runMeasured([guts, "objects", "verify", "-q", "--threads", String(o.threads), repository.gitDirectory], env: nil)
                        ok = r.status == 0
                        gutsKB.append(Double(r.peakKB))
                    } else {
                        let v = Verifier(repository: (try? Repository.open(path)) ?? repository, options: VerifyOptions(threads: o.threads))
                        ok = v.run { _ in }.isClean
                    }
                    gutsTimes.append(Instant.now().seconds(since: start))
                    if !ok { print("  warning: guts objects verify reported problems") }
                } else {
                    let start = Instant.now()
                    let (status, kb) = Processes.runMeasured(["/usr/bin/git", "--git-dir", repository.gitDirectory, "fsck", "--full", "--no-dangling", "--no-progress"], env: nil)
                    gitTimes.append(Instant.now().seconds(since: start))
                    gitKB.append(Double(kb))
                    if status != 0 { print("  warning: git fsck exited \(status)") }
                }
            }
        }
        let g = Statistics.median(gutsTimes)
        let f = Statistics.median(gitTimes)
        print("guts objects verify (\(useBinary ? "binary" : "in-process"), \(o.threads) threads): median \(fmt(g)) s of \(o.runs) runs [\(gutsTimes.map(fmt).joined(separator: " "))]")
        print("git fsck --full:                 median \(fmt(f)) s of \(o.runs) runs [\(gitTimes.map(fmt).joined(separator: " "))]")
        print("ratio guts/git: \(fmt(g / f)) (target <= 1.0) \(g <= f ? "OK" : "SLOWER")")
        if !gitKB.isEmpty && (!gutsKB.isEmpty || !useBinary) {
            // Peak RSS summed over each command's process tree (sampled every 5 ms, and at
            // least the largest single process's maxrss); in-process runs are not measured.
            let gm = Statistics.median(gutsKB) / 1024
            let fm = Statistics.median(gitKB) / 1024
            print("peak RSS, MB (median, process tree): guts \(useBinary ? fmt(gm) : "n/a")  git fsck \(fmt(fm))"
                + (useBinary ? "  ratio guts/git: \(fmt(gm / fm)) (target <= 1.0) \(gm <= fm ? "OK" : "LARGER")" : ""))
        }
        return true
    }

    // MARK: SHA-1 vs sha1sum

    static func shaBenchmark(_ o: Options, scratch: String?) {
        SHA1Bench.measure(mb: o.shaMB, runs: o.runs, scratch: scratch)
    }

    // MARK: Repository generation

    /// A repository of `commits` commits over 600 source-like files in 120 directories,
    /// each commit editing a few lines of 1-5 files, with a merge every 97 commits and a
    /// tag every 500, packed with `git repack -adf --depth=50`.
    static func generate(at path: String, commits: Int, scratch: String) -> Bool {
        guard Processes.run(["/usr/bin/git", "init", "-q", "--bare", path], env: nil) == 0 else { return false }
        let script = scratch + "/import.txt"
        let fd = open(script, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return false }
        var buffer: [UInt8] = []
        func emit(_ s: String) {
            buffer.append(contentsOf: s.utf8)
            if buffer.count > 1 << 20 { flush() }
        }
        func flush() {
            buffer.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, raw.count - off)
                    if n <= 0 { return }
                    off += n
                }
            }
            buffer.removeAll(keepingCapacity: true)
        }
        var rng: UInt64 = 42
        func next() -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: rng >> 33)
        }
        let words = ["let", "var", "func", "return", "if", "else", "for", "in", "while", "guard", "struct", "class",
                     "value", "count", "index", "buffer", "result", "error", "throw", "try", "self", "init", "data",
                     "offset", "size", "limit", "object", "commit", "tree", "blob", "pack", "delta", "base", "hash",
                     "=", "+", "-", "{", "}", "(", ")", "[", "]", ":", ",", "0", "1", "42", "nil", "true", "false"]
        func line() -> String {
            var l = String(repeating: "    ", count: next() % 4)
            for _ in 0..<(3 + next() % 9) { l += words[next() % words.count] + " " }
            return l + "\n"
        }
        // Source-like files: ~600 files of 20-300 lines in 30 directories.
        let files = 600
        var content: [[String]] = (0..<files).map { _ in (0..<(20 + next() % 280)).map { _ in line() } }
        for c in 0..<commits {
            emit("commit refs/heads/main\nmark :\(c + 1)\n")
            emit("author Dev \(c % 7) <dev\(c % 7)@example.com> \(1_500_000_000 + c * 600) +0200\n")
            emit("committer Dev \(c % 7) <dev\(c % 7)@example.com> \(1_500_000_000 + c * 600) +0200\n")
            let msg = "change \(c): \(line())"
            emit("data \(msg.utf8.count)\n\(msg)")
            if c > 0 { emit("from :\(c)\n") }
            if c > 10 && c % 97 == 0 { emit("merge :\(c - 5)\n") }
            let edits = c == 0 ? files : 1 + next() % 5
            for e in 0..<edits {
                let f = c == 0 ? e : next() % files
                if c > 0 {
                    for _ in 0..<(1 + next() % 4) {
                        let at = next() % content[f].count
                        switch next() % 3 {
                        case 0: content[f][at] = line()
                        case 1: content[f].insert(line(), at: at)
                        default: if content[f].count > 5 { content[f].remove(at: at) }
                        }
                    }
                }
                let body = content[f].joined()
                emit("M 100644 inline src/mod\(f % 30)/part\(f % 4)/file\(f).swift\ndata \(body.utf8.count)\n\(body)")
            }
            emit("\n")
            if c % 500 == 499 {
                let tagMsg = "release \(c)\n"
                emit("tag v\(c)\nfrom :\(c + 1)\ntagger Rel <rel@example.com> \(1_500_000_000 + c * 600) +0000\ndata \(tagMsg.utf8.count)\n\(tagMsg)\n")
            }
        }
        flush()
        close(fd)
        guard Processes.run(["/usr/bin/git", "--git-dir", path, "fast-import", "--quiet"], env: nil, stdin: script) == 0 else { return false }
        Files.remove(script)
        return Processes.run(["/usr/bin/git", "--git-dir", path, "repack", "-adfq", "--depth=50", "--window=10"], env: nil) == 0
    }

    // MARK: Helpers

    static func fmt(_ d: Double) -> String {
        let r = (d * 1000).rounded() / 1000
        return String(r)
    }

    static func mb(_ bytes: Int) -> String { fmt(Double(bytes) / 1e6) }

    /// A binary in the same directory as this one.
    static func siblingBinary(_ name: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let path = Files.directoryName(exe) + "/" + name
        return access(path, X_OK) == 0 ? path : nil
    }
}
