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
