import Foundation
import GutsSupport

/// Child processes for the benchmark suites: the reference tools (git, sha1sum, git
/// daemon) and the guts binaries under test.
enum Processes {
    /// Starts a program; stdout to `stdoutFD` or the file `stdout`, stderr to the file
    /// `stderr` (both /dev/null when not given).
    static func launch(_ argv: [String], env: [String: String]?, stdin: String? = nil, stdout: String? = nil,
                       stdoutFD: Int32? = nil, stderr: String? = nil) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin ?? "/dev/null", O_RDONLY, 0)
        if let stdoutFD {
            posix_spawn_file_actions_adddup2(&actions, stdoutFD, 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, stdout ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
        posix_spawn_file_actions_addopen(&actions, 2, stderr ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var cenv: [UnsafeMutablePointer<CChar>?] = (env ?? [:]).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let rc: Int32
        if env != nil {
            rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, &cenv)
        } else {
            rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        }
        return rc == 0 ? pid : nil
    }

    /// Runs a program to its end; its exit status (128 + signal when killed, -1 when it
    /// could not start).
    @discardableResult
    static func run(_ argv: [String], env: [String: String]?, stdin: String? = nil, stdout: String? = nil, stderr: String? = nil) -> Int32 {
        guard let pid = launch(argv, env: env, stdin: stdin, stdout: stdout, stderr: stderr) else { return -1 }
        return wait(pid)
    }

    /// Runs a program to its end; its exit status and its peak resident memory in KiB,
    /// summed over its process tree (the larger of the sampled sum and the largest
    /// single process's maxrss from wait4).
    static func runMeasured(_ argv: [String], env: [String: String]?, stdout: String? = nil, stderr: String? = nil) -> (status: Int32, peakKB: Int) {
        guard let pid = launch(argv, env: env, stdout: stdout, stderr: stderr) else { return (-1, 0) }
        let tree = TreeMemory(roots: [pid], includeRoots: true)
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let sampled = tree.stop()
        let code = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return (code, max(sampled, usage.ru_maxrss))
    }

    /// Waits for a launched program; its exit status as `run` gives it.
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
    }

    /// SIGTERM, then SIGKILL after 5 seconds.
    static func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        let deadline = Instant.now().adding(seconds: 5)
        while waitpid(pid, nil, WNOHANG) == 0 {
            if Instant.now() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, nil, 0)
                return
            }
            usleep(10_000)
        }
    }

    /// Runs a program to its end and returns its standard output.
    static func capture(_ argv: [String]) -> String {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return "" }
        let pid = launch(argv, env: nil, stdoutFD: fds[1])
        close(fds[1])
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while pid != nil {
            let n = chunk.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += chunk[0..<n]
        }
        close(fds[0])
        if let pid {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Peak resident memory summed over process trees, sampled from /proc every few
/// milliseconds on a background thread (git forks: `git clone` runs `index-pack`,
/// `git daemon` forks `upload-pack`, which runs `pack-objects`, so one process's
/// maxrss is not the side's footprint). Sampling can miss a short spike, so the figure
/// is a lower bound of the true peak of the sum; callers take the larger of it and any
/// exact single-process peak they know.
final class TreeMemory: @unchecked Sendable {
    private let roots: Set<pid_t>
    private let includeRoots: Bool
    private let interval: useconds_t
    private let lock = NSLock()
    private var running = true
    private var peakBytes = 0
    private var samples = 0
    private let done = DispatchSemaphore(value: 0)

    /// Samples the descendants of `roots` (and the roots themselves when `includeRoots`).
    init(roots: [pid_t], includeRoots: Bool, intervalMicroseconds: useconds_t = 5_000) {
        self.roots = Set(roots)
        self.includeRoots = includeRoots
        interval = intervalMicroseconds
        let thread = Thread { [self] in
            while true {
                let bytes = TreeMemory.residentBytes(roots: self.roots, includeRoots: self.includeRoots)
                lock.lock()
                peakBytes = max(peakBytes, bytes)
                samples += 1
                let go = running
                lock.unlock()
                if !go { break }
                usleep(interval)
            }
            done.signal()
        }
        thread.start()
    }

    /// Stops sampling; the largest sum seen, in KiB.
    func stop() -> Int {
        lock.lock()
        running = false
        lock.unlock()
        done.wait()
        lock.lock()
        defer { lock.unlock() }
        return peakBytes / 1024
    }

    /// Sum of VmRSS over the trees below `roots` right now.
    static func residentBytes(roots: Set<pid_t>, includeRoots: Bool) -> Int {
        guard let dir = opendir("/proc") else { return 0 }
        defer { closedir(dir) }
        var parent: [pid_t: pid_t] = [:]
        var rss: [pid_t: Int] = [:]
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var buffer = [UInt8](repeating: 0, count: 1024)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = pid_t(name) else { continue }
            let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            close(fd)
            guard n > 0, let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) else { continue }
            // After "pid (comm)": state ppid pgrp ... with rss (pages) the 24th field overall.
            let fields = buffer[(close + 1)..<n].split(separator: UInt8(ascii: " "))
            guard fields.count > 21,
                  let ppid = pid_t(String(decoding: fields[1], as: UTF8.self)),
                  let pages = Int(String(decoding: fields[21], as: UTF8.self)) else { continue }
            parent[pid] = ppid
            rss[pid] = pages * page
        }
        var total = 0
        for (pid, bytes) in rss {
            if roots.contains(pid) {
                if includeRoots { total += bytes }
                continue
            }
            var p = parent[pid] ?? 0
            var depth = 0
            while p > 1 && depth < 64 {
                if roots.contains(p) {
                    total += bytes
                    break
                }
                p = parent[p] ?? 0
                depth += 1
            }
        }
        return total
    }
}
