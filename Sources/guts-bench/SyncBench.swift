#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GutsSupport

/// `guts-bench sync`: `guts sync` against `git clone --mirror` / `git fetch` over
/// `git daemon`, both on loopback, in the same run, on the same repository.
///
///     guts-bench sync [--repo PATH] [--commits N] [--blobs N] [--rounds N]
///                     [--no-git-fsck] [--timeout SECONDS] [--keep] [--first-once]
///
/// Without --repo a repository is generated with `git fast-import` (N commits over
/// 400 text files that change a little each time, plus a few larger binary files
/// revised now and then; tags and a second branch), packed with
/// `git repack -adf --depth=50 --window=10`. With --repo PATH a local mirror clone of
/// PATH is served (PATH itself is never modified). --timeout is passed to `guts sync`
/// (its no-pack-data limit, 30 s by default, can be too short for a large first mirror
/// on a loaded machine). --first-once measures the first mirror in round 1 only and
/// starts later rounds from copies (`cp -a`) of round 1's fresh mirrors, to iterate on
/// the incremental and no-op figures quickly; its first-mirror figure is one sample.
///
/// Each round measures, for every tool, with a fresh client each round:
///   first        first mirror (`guts sync` into an empty home; `git clone --mirror`)
///   incremental  after one new commit upstream (`guts sync`; `git fetch --prune`)
///   no-op        nothing new (`guts sync`, exit 1; `git fetch --prune`)
/// and reports medians and the ratios guts/git. Every timing includes process
/// start-up. Peak RSS is summed over each side's process tree, since git forks:
/// client, the command's tree sampled from /proc (and at least `/usr/bin/time -f %M`);
/// server, VmHWM of `guts listen` (reset through /proc/PID/clear_refs before each
/// transfer) and, for git, git daemon's whole tree sampled from /proc (and at least
/// the maxrss of the `git pack-objects` each transfer runs, through
/// uploadpack.packObjectsHook in a private global config).
enum SyncBench {
    struct Options {
        var repo: String?
        var commits = 3000
        var blobs = 8
        var rounds = 3
        var gitFsck = true
        var keep = false
        /// Measure the first mirror in round 1 only; later rounds copy its mirrors.
        var firstOnce = false
        /// `guts sync --timeout` (nil: guts' default).
        var timeout: String?
    }

    enum Tool: Int, CaseIterable {
        case guts, git, gitFsck
        var label: String {
            switch self {
            case .guts: return "guts"
            case .git: return "git"
            case .gitFsck: return "git+fsck"
            }
        }
    }

    enum Phase: Int, CaseIterable {
        case first, incremental, noop
        var label: String {
            switch self {
            case .first: return "first mirror"
            case .incremental: return "incremental (1 commit)"
            case .noop: return "no-op (nothing new)"
            }
        }
    }

    /// One measured command.
    struct Sample {
        var seconds: Double
        var clientKB: Int?
        var serverKB: Int?
    }

    static let git = "/usr/bin/git"
    static let timeBinary = "/usr/bin/time"
    static let repoName = "bench/repo"

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
            case "--commits": o.commits = max(2, value().flatMap { Int($0) } ?? o.commits)
            case "--blobs": o.blobs = max(0, value().flatMap { Int($0) } ?? o.blobs)
            case "--rounds", "--runs": o.rounds = max(1, value().flatMap { Int($0) } ?? o.rounds)
            case "--no-git-fsck": o.gitFsck = false
            case "--keep": o.keep = true
            case "--first-once": o.firstOnce = true
            case "--timeout": o.timeout = value()
            case "sync": break
            default:
                print("usage: guts-bench sync [--repo PATH] [--commits N] [--blobs N] [--rounds N] [--no-git-fsck] [--timeout SECONDS] [--keep] [--first-once]")
                return 2
            }
            i += 1
        }
        let bench = Bench(options: o)
        defer { bench.cleanUp() }
        return bench.run()
    }

    final class Bench {
        let o: Options
        let guts: String
        let hasTime: Bool
        var temp = ""
        var listenPID: pid_t = 0
        var listenOut: Int32 = -1
        var daemonPID: pid_t = 0
        var peerLine = ""
        var url = ""
        var upstream = ""
        var tools: [Tool]
        /// samples[phase][tool]
        var samples: [[[Sample]]]
        var storedPack: [Tool: Int] = [:]
        var gutsReceived: (objects: Int, bytes: Int)?
        var failures = 0

        init(options: Options) {
            o = options
            var binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("guts").path
            if access(binary, X_OK) != 0, let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
                // Started through $PATH: argv[0] has no directory.
                binary = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("guts").path
            }
            guts = binary
            hasTime = access(SyncBench.timeBinary, X_OK) == 0
            tools = options.gitFsck ? [.guts, .git, .gitFsck] : [.guts, .git]
            samples = Array(repeating: Array(repeating: [], count: Tool.allCases.count), count: Phase.allCases.count)
        }

        func cleanUp() {
            if listenPID > 0 { Processes.stop(listenPID) }
            if listenOut >= 0 { close(listenOut) }
            if daemonPID > 0 { Processes.stop(daemonPID) }
            listenPID = 0
            listenOut = -1
            daemonPID = 0
            if !temp.isEmpty {
                if o.keep { print("kept \(temp)") } else { Files.removeTree(temp) }
                temp = ""
            }
        }

        func run() -> Int32 {
            print("== sync: guts sync vs git over git daemon, loopback ==")
            guard access(guts, X_OK) == 0 else {
                print("no guts binary at \(guts): build with `swift build -c release` and run .build/release/guts-bench")
                return 3
            }
            guard access(git, X_OK) == 0 else {
                print("no \(git): install git")
                return 3
            }
            guard let dir = makeTemporaryDirectory() else {
                print("cannot create a temporary directory")
                return 3
            }
            temp = dir
            let server = temp + "/server"
            upstream = server + "/repos/" + repoName + ".git"
            try? Files.makeDirectories(Files.directoryName(upstream))
            try? Files.writeAtomically(temp + "/gitconfig-client", string: "")
            try? Files.writeAtomically(temp + "/gitconfig-daemon", string: hasTime
                ? "[uploadpack]\n\tpackObjectsHook = \(timeBinary) -a -o \(temp)/pack-objects.rss -f %M\n" : "")

            // 1. The repository.
            if let r = o.repo {
                print("cloning \(r) (local mirror clone; \(r) is not modified) ...")
                guard runGit(["clone", "--mirror", "--quiet", r, upstream]) == 0 else {
                    print("cannot clone \(r)")
                    return 3
                }
            } else {
                print("generating a repository: \(o.commits) commits, 400 text files, \(o.blobs) binary files ...")
                let start = Instant.now()
                guard generate(at: upstream, commits: o.commits, blobs: o.blobs, scratch: temp) else {
                    print("repository generation failed")
                    return 3
                }
                print("  generated and packed in \(fmt(Instant.now().seconds(since: start), 1)) s")
            }
            describe(upstream)

            // 2. Servers.
            guard startListen(home: server), startDaemon(base: server + "/repos") else { return 3 }
            print("guts listen: \(peerLine)")
            print("git daemon:  \(url)")
            if !hasTime { print("note: \(timeBinary) not found: client and git server peak memory are not measured (apt-get install time)") }

            // 3. Rounds.
            for round in 0..<o.rounds {
                print("round \(round + 1) of \(o.rounds) ...")
                guard runRound(round) else {
                    print("round \(round + 1) failed; see the messages above\(o.keep ? "" : " (run with --keep to inspect \(temp))")")
                    return 1
                }
            }
            report()
            return failures == 0 ? 0 : 1
        }

        // MARK: Rounds

        func runRound(_ round: Int) -> Bool {
            let dir = temp + "/round-\(round + 1)"
            try? Files.makeDirectories(dir)
            defer { if !o.keep { Files.removeTree(dir) } }
            // Alternate the order so no tool always runs on the warmer cache.
            let order = round % 2 == 0 ? tools : Array(tools.reversed())
            let upstreamRefs = refs(upstream)
            let pristine = temp + "/first-mirrors"
            for tool in order {
                // guts: the whole home (its known_peers too, as after a first mirror).
                let copied = tool == .guts ? dir + "/guts-home" : mirror(tool, dir)
                if o.firstOnce && round > 0 {
                    // A copy of round 1's fresh mirror (see --first-once).
                    let target = copied
                    try? Files.makeDirectories(Files.directoryName(target))
                    guard Processes.run(["/bin/cp", "-a", pristine + "/\(tool.label)", target], env: nil) == 0 else {
                        print("  cannot copy round 1's \(tool.label) mirror")
                        return false
                    }
                    continue
                }
                guard let s = measure(tool, .first, dir: dir) else { return false }
                samples[Phase.first.rawValue][tool.rawValue].append(s)
                if round == 0 { storedPack[tool] = packBytes(mirror(tool, dir)) }
                if o.firstOnce && round == 0 {
                    try? Files.makeDirectories(pristine)
                    guard Processes.run(["/bin/cp", "-a", copied, pristine + "/\(tool.label)"], env: nil) == 0 else {
                        print("  cannot keep a copy of the \(tool.label) mirror")
                        return false
                    }
                }
            }
            for tool in tools where refs(mirror(tool, dir)) != upstreamRefs {
                print("  MISMATCH: refs of the \(tool.label) mirror differ from upstream after the first mirror")
                failures += 1
            }

            guard let restore = addCommit(round: round) else { return false }
            defer { restore() }
            let changedRefs = refs(upstream)
            for tool in order {
                guard let s = measure(tool, .incremental, dir: dir) else { return false }
                samples[Phase.incremental.rawValue][tool.rawValue].append(s)
            }
            for tool in tools where refs(mirror(tool, dir)) != changedRefs {
                print("  MISMATCH: refs of the \(tool.label) mirror differ from upstream after the incremental sync")
                failures += 1
            }
            for tool in order {
                guard let s = measure(tool, .noop, dir: dir) else { return false }
                samples[Phase.noop.rawValue][tool.rawValue].append(s)
            }
            return true
        }

        func mirror(_ tool: Tool, _ dir: String) -> String {
            switch tool {
            case .guts: return dir + "/guts-home/repos/" + repoName + ".git"
            case .git: return dir + "/git/repo.git"
            case .gitFsck: return dir + "/git-fsck/repo.git"
            }
        }

        /// Runs one tool for one phase; nil (after printing why) when it failed.
        func measure(_ tool: Tool, _ phase: Phase, dir: String) -> Sample? {
            let argv: [String]
            var expected: Int32 = 0
            let out = dir + "/\(tool.label)-\(phase).out"
            switch tool {
            case .guts:
                // --exit-code: a no-op must say "nothing new" (1), so the bench knows it was one.
                argv = [guts, "--home", dir + "/guts-home", "--json", "sync", "--ephemeral"] + (phase == .noop ? ["--exit-code"] : [])
                    + (o.timeout.map { ["--timeout", $0] } ?? [])
                    + [repoName, "--peer", peerLine]
                if phase == .noop { expected = 1 }
            case .git, .gitFsck:
                let fsck = tool == .gitFsck ? ["-c", "transfer.fsckObjects=true"] : []
                if phase == .first {
                    argv = [git] + fsck + ["clone", "--mirror", "--quiet", url, mirror(tool, dir)]
                } else {
                    argv = [git] + fsck + ["--git-dir", mirror(tool, dir), "fetch", "--prune", "--quiet"]
                }
            }
            if tool == .guts {
                resetPeak(listenPID)
            } else {
                truncate(temp + "/pack-objects.rss", 0)
            }
            let rssFile = dir + "/rss"
            let command = hasTime ? [timeBinary, "-f", "%M", "-o", rssFile] + argv : argv
            let start = Instant.now()
            let serverTree = TreeMemory(roots: [tool == .guts ? listenPID : daemonPID], includeRoots: true)
            var clientTree: TreeMemory?
            var status: Int32 = -1
            if let pid = Processes.launch(command, env: gitEnvironment(temp + "/gitconfig-client"), stdout: out, stderr: out + ".err") {
                // Under /usr/bin/time the tree below it is the client; time itself is not counted.
                clientTree = TreeMemory(roots: [pid], includeRoots: !hasTime)
                status = Processes.wait(pid)
            }
            let seconds = Instant.now().seconds(since: start)
            let clientTreeKB = clientTree?.stop() ?? 0
            let serverTreeKB = serverTree.stop()
            guard status == expected else {
                print("  \(tool.label) \(phase): exit status \(status), expected \(expected): \(argv.joined(separator: " "))")
                if let e = try? Files.readString(out + ".err", limit: 4096), !e.isEmpty { print("  " + e.split(separator: "\n").joined(separator: "\n  ")) }
                return nil
            }
            var sample = Sample(seconds: seconds)
            sample.clientKB = max(hasTime ? lastNumber(in: rssFile) ?? 0 : 0, clientTreeKB)
            if tool == .guts {
                sample.serverKB = max(peak(listenPID) ?? 0, serverTreeKB)
                if phase == .first && gutsReceived == nil,
                   let data = try? Files.read(out),
                   let json = try? JSONSerialization.jsonObject(with: Data(data)) as? [String: Any],
                   let objects = json["objects"] as? Int, let bytes = json["bytes"] as? Int {
                    gutsReceived = (objects, bytes)
                }
            } else {
                sample.serverKB = max(hasTime ? maxNumber(in: temp + "/pack-objects.rss") ?? 0 : 0, serverTreeKB)
            }
            return sample
        }

        /// Adds one commit to the branch HEAD names (a new file in a new directory) with
        /// `git fast-import`; returns what undoes it (ref reset, new pack removed), so
        /// every round starts from the same upstream.
        func addCommit(round: Int) -> (() -> Void)? {
            var branch = capture([git, "--git-dir", upstream, "symbolic-ref", "-q", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
            var old = branch.isEmpty ? "" : capture([git, "--git-dir", upstream, "rev-parse", "-q", "--verify", branch + "^{commit}"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            if old.isEmpty {
                let first = capture([git, "--git-dir", upstream, "for-each-ref", "--count=1", "--format=%(refname) %(objectname)", "refs/heads/"])
                    .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
                guard first.count == 2 else {
                    print("  upstream has no branch to add a commit to")
                    return nil
                }
                branch = String(first[0])
                old = String(first[1])
            }
            var body = ""
            for l in 0..<60 { body += "round \(round + 1) line \(l): an incremental change for guts-bench sync\n" }
            let message = "guts-bench: one more commit\n"
            let script = """
            commit \(branch)
            committer Guts Bench <bench@example.com> \(1_800_000_000 + round) +0000
            data \(message.utf8.count)
            \(message)from \(old)
            M 100644 inline guts-bench/sync/change.txt
            data \(body.utf8.count)
            \(body)

            """
            let scriptPath = temp + "/change.txt"
            try? Files.writeAtomically(scriptPath, string: script)
            let packDir = upstream + "/objects/pack"
            let before = Set(Files.list(packDir))
            guard Processes.run([git, "--git-dir", upstream, "fast-import", "--quiet"], env: gitEnvironment(temp + "/gitconfig-client"),
                                stdin: scriptPath) == 0 else {
                print("  cannot add a commit upstream")
                return nil
            }
            let added = Set(Files.list(packDir)).subtracting(before)
            let upstream = self.upstream
            let env = gitEnvironment(temp + "/gitconfig-client")
            return {
                _ = Processes.run([SyncBench.git, "--git-dir", upstream, "update-ref", branch, old], env: env)
                for name in added { Files.remove(packDir + "/" + name) }
            }
        }

        // MARK: Report

        func report() {
            let n = o.rounds
            print("")
            print("median of \(n) round\(n == 1 ? "" : "s"), seconds, each including process start-up" + (tools.contains(.gitFsck) ? "; git+fsck = git with transfer.fsckObjects=true (checks objects as guts always does)" : ""))
            var header = "                          " + tools.map { pad($0.label, 10) }.joined()
            header += "  guts/git" + (tools.contains(.gitFsck) ? "  guts/git+fsck" : "")
            print(header)
            for phase in Phase.allCases {
                let m = tools.map { Statistics.median(samples[phase.rawValue][$0.rawValue].map(\.seconds)) }
                var line = pad(phase.label, 26) + m.map { pad(fmt($0, 3), 10) }.joined()
                line += "  " + pad(ratio(m[0], m[1]), 8)
                if tools.contains(.gitFsck) { line += "  " + ratio(m[0], m[2]) }
                print(line)
            }
            if o.firstOnce { print("  (--first-once: the first mirror was measured in round 1 only; later rounds started from copies)") }
            print("")
            print("peak RSS, MB (median)      " + tools.map { pad($0.label, 10) }.joined() + "  guts/git")
            for phase in Phase.allCases {
                printMemory("client, " + phaseShort(phase), phase: phase, \.clientKB)
            }
            for phase in [Phase.first, .incremental] {
                printMemory("server, " + phaseShort(phase), phase: phase, \.serverKB)
            }
            print("  client: peak of the RSS summed over the command's process tree (sampled every 5 ms), at least /usr/bin/time %M")
            print("  server: guts listen VmHWM during the transfer; git: peak of the RSS summed over git daemon's tree (daemon,")
            print("          upload-pack, pack-objects; sampled every 5 ms), at least pack-objects' own maxrss. Sampling can miss")
            print("          a short spike, so git's figures are lower bounds (conservative for the ratio)")
            print("")
            var stored = "pack stored by the first mirror: " + tools.compactMap { t in storedPack[t].map { "\(t.label) \(mb($0)) MB" } }.joined(separator: ", ")
            if let r = gutsReceived { stored += "; guts received \(r.objects) objects, \(mb(r.bytes)) MB" }
            print(stored)
            if let log = try? Files.readString(temp + "/listen.log", limit: 8 << 20),
               let served = log.split(separator: "\n").first(where: { $0.hasPrefix("served ") }) {
                print("guts listen: \(served)")
            }
            if failures > 0 { print("\(failures) mirror(s) did not match upstream") }
        }

        func phaseShort(_ p: Phase) -> String {
            switch p {
            case .first: return "first mirror"
            case .incremental: return "incremental"
            case .noop: return "no-op"
            }
        }

        func printMemory(_ label: String, phase: Phase, _ key: KeyPath<Sample, Int?>) {
            let values = tools.map { t -> Double? in
                let kb = samples[phase.rawValue][t.rawValue].compactMap { $0[keyPath: key] }
                return kb.isEmpty ? nil : Statistics.median(kb.map(Double.init)) / 1024
            }
            guard values.contains(where: { $0 != nil }) else { return }
            var line = pad(label, 26) + values.map { pad($0.map { fmt($0, 1) } ?? "n/a", 10) }.joined()
            if let g = values[0], let t = values[1] { line += "  " + ratio(g, t) }
            print(line)
        }

        // MARK: Servers

        func startListen(home: String) -> Bool {
            guard Processes.run([guts, "--home", home, "-q", "keygen"], env: nil) == 0 else {
                print("guts keygen failed")
                return false
            }
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { return false }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            let pid = Processes.launch([guts, "--home", home, "listen", "--listen", "127.0.0.1:0"], env: nil,
                                       stdoutFD: fds[1], stderr: temp + "/listen.log")
            close(fds[1])
            listenOut = fds[0]
            guard let pid else {
                print("cannot start guts listen")
                return false
            }
            listenPID = pid
            guard let line = SyncBench.readLine(fds[0], timeout: 15), line.contains("@") else {
                print("guts listen did not print its address; log:")
                print((try? Files.readString(temp + "/listen.log")) ?? "")
                return false
            }
            peerLine = line
            return true
        }

        func startDaemon(base: String) -> Bool {
            guard let port = freePort() else {
                print("no free port for git daemon")
                return false
            }
            let pid = Processes.launch([git, "daemon", "--reuseaddr", "--base-path=\(base)", "--export-all",
                                        "--listen=127.0.0.1", "--port=\(port)", base],
                                       env: gitEnvironment(temp + "/gitconfig-daemon"), stderr: temp + "/daemon.log")
            guard let pid else {
                print("cannot start git daemon")
                return false
            }
            daemonPID = pid
            let deadline = Instant.now().adding(seconds: 10)
            while !canConnect(port: port) {
                if Instant.now() > deadline || waitpid(pid, nil, WNOHANG) == pid {
                    print("git daemon does not accept connections on 127.0.0.1:\(port); log:")
                    print((try? Files.readString(temp + "/daemon.log")) ?? "")
                    if waitpid(pid, nil, WNOHANG) == pid { daemonPID = 0 }
                    return false
                }
                usleep(20_000)
            }
            url = "git://127.0.0.1:\(port)/\(repoName).git"
            return true
        }

        // MARK: Repository

        func describe(_ path: String) {
            let stats = capture([git, "--git-dir", path, "count-objects", "-v"])
            var v: [String: Int] = [:]
            for line in stats.split(separator: "\n") {
                let kv = line.split(separator: ":", maxSplits: 1)
                if kv.count == 2, let n = Int(kv[1].trimmingCharacters(in: .whitespaces)) { v[String(kv[0])] = n }
            }
            let commits = capture([git, "--git-dir", path, "rev-list", "--all", "--count"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let refCount = capture([git, "--git-dir", path, "for-each-ref", "--format=x"]).split(separator: "\n").count
            print("repository: \(commits) commits, \(refCount) refs, \(v["in-pack"] ?? 0) packed objects in \(v["packs"] ?? 0) pack(s), \(mb(packBytes(path))) MB of pack; \(v["count"] ?? 0) loose objects")
        }

        func packBytes(_ repo: String) -> Int {
            Files.list(repo + "/objects/pack").filter { $0.hasSuffix(".pack") }
                .reduce(0) { $0 + (Files.size(repo + "/objects/pack/" + $1) ?? 0) }
        }

        /// "objectname refname" of every ref, and HEAD's target.
        func refs(_ repo: String) -> String {
            capture([git, "--git-dir", repo, "for-each-ref", "--format=%(objectname) %(refname)"])
                + "HEAD " + capture([git, "--git-dir", repo, "symbolic-ref", "-q", "HEAD"])
        }

        func runGit(_ args: [String]) -> Int32 {
            Processes.run([git] + args, env: gitEnvironment(temp + "/gitconfig-client"), stdout: "/dev/null", stderr: temp + "/git.err")
        }

        func capture(_ argv: [String]) -> String {
            let file = temp + "/capture.out"
            _ = Processes.run(argv, env: gitEnvironment(temp + "/gitconfig-client"), stdout: file, stderr: "/dev/null")
            defer { Files.remove(file) }
            return (try? Files.readString(file, limit: 64 << 20)) ?? ""
        }

        /// The environment for git: no system config, `global` as the global one.
        func gitEnvironment(_ global: String) -> [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["GIT_CONFIG_NOSYSTEM"] = "1"
            env["GIT_CONFIG_GLOBAL"] = global
            env["GIT_TERMINAL_PROMPT"] = "0"
            return env
        }

        /// A deterministic repository: `commits` commits on main over 400 text files in
        /// 20 directories (each commit edits 1 to 4 of them a little), `blobs` binary files
        /// of 256 KiB to 1 MiB of incompressible bytes, each revised every 250 commits in a
        /// few places, a merge every 97 commits, an annotated tag every 500 and a `release`
        /// branch half-way; packed with deltas.
        func generate(at path: String, commits: Int, blobs: Int, scratch: String) -> Bool {
            guard runGit(["init", "-q", "--bare", "--initial-branch=main", path]) == 0 else { return false }
            let script = scratch + "/import.txt"
            let fd = open(script, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return false }
            var buffer: [UInt8] = []
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
            func emit(_ s: String) {
                buffer.append(contentsOf: s.utf8)
                if buffer.count > 4 << 20 { flush() }
            }
            var rng: UInt64 = 0x5EED_0F_6A75_7473
            func next() -> Int {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                return Int(truncatingIfNeeded: rng >> 33)
            }
            func randomBytes(_ n: Int) -> [UInt8] {
                var out = [UInt8](repeating: 0, count: n)
                var x = UInt64(truncatingIfNeeded: next()) | 1
                for k in 0..<n {
                    x ^= x << 13
                    x ^= x >> 7
                    x ^= x << 17
                    out[k] = UInt8(truncatingIfNeeded: x)
                }
                return out
            }
            let files = 400
            var versions = [Int](repeating: 0, count: files)
            var assets: [[UInt8]] = (0..<blobs).map { k in randomBytes((256 << 10) * (1 + k % 4)) }
            for c in 0..<commits {
                emit("commit refs/heads/main\nmark :\(c + 1)\n")
                let when = 1_500_000_000 + c * 600
                emit("author Dev \(c % 7) <dev\(c % 7)@example.com> \(when) +0200\n")
                emit("committer Dev \(c % 7) <dev\(c % 7)@example.com> \(when) +0200\n")
                let msg = "change \(c): update things\n"
                emit("data \(msg.utf8.count)\n\(msg)")
                if c > 0 { emit("from :\(c)\n") }
                if c > 10 && c % 97 == 0 { emit("merge :\(c - 5)\n") }
                let edits = c == 0 ? files : 1 + next() % 4
                for e in 0..<edits {
                    let f = c == 0 ? e : next() % files
                    versions[f] += 1
                    var body = ""
                    let lines = 40 + (f % 13) * 10
                    for l in 0..<lines {
                        let v = (l % 9 == versions[f] % 9) ? versions[f] : 0
                        body += "file \(f) line \(l) value \(v) lorem ipsum dolor sit amet consectetur\n"
                    }
                    emit("M 100644 inline dir\(f % 20)/sub\(f % 3)/file\(f).txt\ndata \(body.utf8.count)\n\(body)")
                }
                for k in 0..<blobs where c == 0 || c % 250 == (k * 31) % 250 {
                    if c > 0 {
                        for _ in 0..<6 {
                            let at = next() % (assets[k].count - 512)
                            let patch = randomBytes(512)
                            assets[k].replaceSubrange(at..<(at + 512), with: patch)
                        }
                        assets[k] += randomBytes(1024)
                    }
                    emit("M 100644 inline assets/blob\(k).bin\ndata \(assets[k].count)\n")
                    buffer += assets[k]
                    emit("\n")
                }
                emit("\n")
                if c % 500 == 499 {
                    let tagMsg = "release \(c)\n"
                    emit("tag v\(c)\nfrom :\(c + 1)\ntagger Rel <rel@example.com> \(when) +0000\ndata \(tagMsg.utf8.count)\n\(tagMsg)\n")
                }
                if c == commits / 2 { emit("reset refs/heads/release\nfrom :\(c + 1)\n\n") }
            }
            flush()
            close(fd)
            guard Processes.run([git, "--git-dir", path, "fast-import", "--quiet"], env: gitEnvironment(temp + "/gitconfig-client"),
                                stdin: script, stderr: temp + "/git.err") == 0 else { return false }
            Files.remove(script)
            guard runGit(["--git-dir", path, "repack", "-adfq", "--depth=50", "--window=10"]) == 0 else { return false }
            return runGit(["--git-dir", path, "pack-refs", "--all"]) == 0
        }

        func makeTemporaryDirectory() -> String? {
            var template = Array("/tmp/guts-bench-sync-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return nil }
            return String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    // MARK: Processes

    /// The first line written to `fd`, waiting at most `timeout` seconds.
    static func readLine(_ fd: Int32, timeout: Double) -> String? {
        var bytes: [UInt8] = []
        let deadline = Instant.now().adding(seconds: timeout)
        while !bytes.contains(10) {
            let left = deadline.seconds(since: Instant.now())
            guard left > 0 else { return nil }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(left * 1000) + 1)
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { return nil }
            var chunk = [UInt8](repeating: 0, count: 1024)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { return nil }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes.prefix(while: { $0 != 10 }), as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    // MARK: Memory

    /// Resets the peak RSS (VmHWM) of `pid` to its current RSS (Linux 4.0+).
    static func resetPeak(_ pid: pid_t) {
        let fd = open("/proc/\(pid)/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = write(fd, "5", 1)
        close(fd)
    }

    /// VmHWM of `pid` in KiB.
    static func peak(_ pid: pid_t) -> Int? {
        guard let status = try? Files.readString("/proc/\(pid)/status", limit: 1 << 16) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        }
        return nil
    }

    static func numbers(in file: String) -> [Int] {
        guard let text = try? Files.readString(file, limit: 1 << 20) else { return [] }
        return text.split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// /usr/bin/time -o writes "Command exited with non-zero status N" before the figure.
    static func lastNumber(in file: String) -> Int? { numbers(in: file).last }
    static func maxNumber(in file: String) -> Int? { numbers(in: file).max() }

    // MARK: Sockets

    static func withAddress<T>(port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard withAddress(port: 0, { bind(fd, $0, $1) }) == 0 else { return nil }
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return rc == 0 ? Int(UInt16(bigEndian: addr.sin_port)) : nil
    }

    static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return withAddress(port: port, { connect(fd, $0, $1) }) == 0
    }

    // MARK: Formatting

    static func fmt(_ d: Double, _ decimals: Int) -> String { String(format: "%.\(decimals)f", d) }
    static func mb(_ bytes: Int) -> String { fmt(Double(bytes) / 1e6, 2) }
    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s.padding(toLength: n, withPad: " ", startingAt: 0) }
    static func ratio(_ a: Double, _ b: Double) -> String { b > 0 ? fmt(a / b, 2) : "n/a" }
}
