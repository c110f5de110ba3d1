import Foundation
import XCTest

/// Runs real `guts` processes for integration tests. Output goes to files in the test's
/// temporary directory; every wait is bounded; `cleanup()` kills whatever is left.
final class Harness {
    let root: URL
    private(set) var processes: [Process] = []
    /// Children started by `runMeasured` that may still run.
    private var spawned: [pid_t] = []
    private var counter = 0

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("guts-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    /// The guts binary built next to the test bundle.
    static let binary: String = {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [bundleDir, Bundle.main.bundleURL.deletingLastPathComponent(), Bundle.main.bundleURL] {
            let candidate = dir.appendingPathComponent("guts").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return bundleDir.appendingPathComponent("guts").path
    }()

    func home(_ name: String) -> String { root.appendingPathComponent(name).path }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// A started process and the files its output goes to.
    final class Running {
        let process: Process
        let stdoutPath: String
        let stderrPath: String
        /// Readable once the process has exited.
        let exit: ExitSignal
        init(process: Process, stdoutPath: String, stderrPath: String, exit: ExitSignal) {
            self.process = process
            self.stdoutPath = stdoutPath
            self.stderrPath = stderrPath
            self.exit = exit
        }
        var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
        var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

        /// Waits until `predicate` holds for stdout+stderr, or fails after `timeout` seconds.
        /// Re-reads the output each time the process writes to it or exits.
        @discardableResult
        func waitFor(_ what: String, timeout: Double = 10, file: StaticString = #filePath, line: UInt = #line,
                     _ predicate: (String, String) -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            let watch = FileWatch([stdoutPath, stderrPath])
            while Date() < deadline {
                if predicate(stdout, stderr) { return true }
                if exit.wait(timeout: 0) { break }
                watch.wait(until: deadline, alsoReadable: exit.descriptor)
            }
            if predicate(stdout, stderr) { return true }
            XCTFail("timed out waiting for \(what); stdout: \(stdout) stderr: \(stderr)", file: file, line: line)
            return false
        }

        /// Waits for exit (bounded); returns the status, or nil after killing it on timeout.
        func wait(timeout: Double = 20) -> Int32? {
            if !exit.wait(timeout: timeout) {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            process.waitUntilExit()
            return process.terminationStatus
        }

        func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }
    }

    /// Starts guts with `args` in the background; with a `launcher` (e.g. ["/usr/bin/setpriv",
    /// "--reuid=65534", ...] or ["/bin/sh", "-c", "\"$0\" \"$@\" | head -1"]), runs that with the
    /// guts binary and `args` appended.
    func start(_ args: [String], environment: [String: String] = [:], launcher: [String] = []) throws -> Running {
        counter += 1
        let out = root.appendingPathComponent("p\(counter).out").path
        let err = root.appendingPathComponent("p\(counter).err").path
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: launcher.first ?? Self.binary)
        p.arguments = launcher.isEmpty ? args : Array(launcher.dropFirst()) + [Self.binary] + args
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "GUTS_HOME")
        for (k, v) in environment { env[k] = v }
        p.environment = env
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: err)
        let exit = ExitSignal()
        exit.attach(to: p)
        try p.run()
        processes.append(p)
        return Running(process: p, stdoutPath: out, stderrPath: err, exit: exit)
    }

    /// Runs guts to completion (bounded by `timeout`).
    func run(_ args: [String], environment: [String: String] = [:], launcher: [String] = [], timeout: Double = 30,
             file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let r = try start(args, environment: environment, launcher: launcher)
        guard let status = r.wait(timeout: timeout) else {
            XCTFail("guts \(args.joined(separator: " ")) did not finish within \(timeout) s", file: file, line: line)
            return Result(status: -1, stdout: r.stdout, stderr: r.stderr)
        }
        return Result(status: status, stdout: r.stdout, stderr: r.stderr)
    }

    /// A finished child with what it cost: wall time, CPU time (user + system) and peak
    /// resident memory, from `wait4` on exactly that process.
    struct Measured {
        let status: Int32
        let stdout: String
        let stderr: String
        let seconds: Double
        let cpuSeconds: Double
        let peakRSSKB: Int
        var peakRSSMB: Double { Double(peakRSSKB) / 1024 }
        var summary: String { "exit \(status), \(String(format: "%.2f", seconds)) s, CPU \(String(format: "%.2f", cpuSeconds)) s, peak RSS \(String(format: "%.1f", peakRSSMB)) MB" }
    }

    /// Runs guts to completion like `run`, but spawned directly so that its own CPU time
    /// and peak RSS can be read. Killed after `timeout`.
    ///
    /// Peak RSS: Linux starts a spawned child's `ru_maxrss` at the parent's peak (the
    /// child ran in the parent's memory until exec), so `ru_maxrss` is the child's own
    /// only when it exceeds the test process's peak at spawn time; otherwise the child
    /// stayed below that, and its VmHWM, sampled every few milliseconds while it ran,
    /// is reported.
    func runMeasured(_ args: [String], environment: [String: String] = [:], timeout: Double = 60,
                     file: StaticString = #filePath, line: UInt = #line) throws -> Measured {
        counter += 1
        let out = root.appendingPathComponent("m\(counter).out").path
        let err = root.appendingPathComponent("m\(counter).err").path
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "GUTS_HOME")
        for (k, v) in environment { env[k] = v }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = [Self.binary] + args
        var cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cenv { free(p) } }
        var pid: pid_t = 0
        let parentPeak = Self.vmHWM("self") ?? Int.max
        var sampledPeak = 0
        let started = Date()
        let rc = posix_spawn(&pid, Self.binary, &actions, nil, &cargs, &cenv)
        guard rc == 0 else { throw NSError(domain: "Harness", code: Int(rc)) }
        spawned.append(pid)
        var status: Int32 = 0
        var usage = rusage()
        let deadline = started.addingTimeInterval(timeout)
        var reaped = false
        while Date() < deadline {
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid {
                reaped = true
                break
            }
            if r < 0 && errno != EINTR { break }
            if let hwm = Self.vmHWM("\(pid)") { sampledPeak = max(sampledPeak, hwm) }
            usleep(2_000)
        }
        if !reaped {
            kill(pid, SIGKILL)
            while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
            XCTFail("guts \(args.joined(separator: " ")) did not finish within \(timeout) s", file: file, line: line)
        }
        spawned.removeAll { $0 == pid }
        let seconds = Date().timeIntervalSince(started)
        let exit: Int32 = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : -1
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return Measured(status: reaped ? exit : -1, stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                        stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "",
                        seconds: seconds, cpuSeconds: cpu,
                        peakRSSKB: Int(usage.ru_maxrss) > parentPeak ? Int(usage.ru_maxrss) : sampledPeak)
    }

    /// VmHWM (peak resident memory, KiB) of /proc/`pid`, or nil.
    static func vmHWM(_ pid: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
    }

    /// keygen into a fresh home; returns the peer ID.
    func keygen(_ name: String) throws -> String {
        let r = try run(["--home", home(name), "keygen"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Starts `guts listen` on a free port and returns it with its `PEERID@ADDR` line.
    func listen(_ name: String, _ extra: [String] = []) throws -> (Running, String) {
        let r = try start(["--home", home(name), "listen", "--listen", "127.0.0.1:0"] + extra)
        r.waitFor("listen to print its address") { out, _ in out.contains("\n") }
        let line = r.stdout.split(separator: "\n").first.map(String.init) ?? ""
        return (r, line)
    }

    func cleanup() {
        for pid in spawned {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        spawned = []
        for p in processes where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        processes = []
        try? FileManager.default.removeItem(at: root)
    }
}

/// A raw TCP client for feeding a listener bytes that no guts would send.
final class RawSocket {
    let fd: Int32

    /// Connects to 127.0.0.1:`port`, from `source` (another loopback address such as
    /// 127.0.0.2, so per-address rules see a different host) when given.
    init?(port: Int, from source: String? = nil) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard bound == 0 else {
                close(fd)
                return nil
            }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            return nil
        }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// True when the peer closes the connection within `timeout` seconds.
    func closedByPeer(within timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let n = recv(fd, &buf, buf.count, 0)
            if n == 0 { return true }
            if n < 0 && errno != EAGAIN && errno != EINTR { return true }
        }
        return false
    }

    deinit { close(fd) }
}

func port(of address: String) -> Int {
    Int(address.split(separator: ":").last ?? "") ?? 0
}
