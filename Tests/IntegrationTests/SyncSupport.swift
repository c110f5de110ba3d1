import Foundation
import GutsCrypto
import GutsIdentity
import GutsSync
import GutsTransport
import GutsWire
import NIOPosix
import XCTest

// Helpers for the sync tests: git with a deterministic environment, repository
// builders, and snapshots of a repository's state to prove "nothing changed".
// Everything is namespaced (SyncGit, SyncFixture, RepoSnapshot) so other test files
// in this target can define their own helpers freely.

/// Output of a child process.
struct SyncProcessResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

enum SyncGit {
    static let gitPath = "/usr/bin/git"

    /// Runs `executable`; `input` goes to stdin, stderr to a temporary file (so a
    /// chatty child never blocks on a full pipe).
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], cwd: String? = nil, input: Data? = nil,
                    environment extra: [String: String] = [:]) throws -> SyncProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        var env = ProcessInfo.processInfo.environment
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_CONFIG_GLOBAL"] = "/dev/null"
        env["GIT_AUTHOR_NAME"] = "A U Thor"
        env["GIT_AUTHOR_EMAIL"] = "author@example.com"
        env["GIT_COMMITTER_NAME"] = "C O Mitter"
        env["GIT_COMMITTER_EMAIL"] = "committer@example.com"
        env["GIT_AUTHOR_DATE"] = "1700000000 +0100"
        env["GIT_COMMITTER_DATE"] = "1700000000 +0100"
        env.removeValue(forKey: "GIT_DIR")
        for (k, v) in extra { env[k] = v }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        let tmp = NSTemporaryDirectory() + "guts-sync-proc-" + UUID().uuidString
        _ = FileManager.default.createFile(atPath: tmp + ".err", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + ".in", contents: input ?? Data())
        defer {
            try? FileManager.default.removeItem(atPath: tmp + ".err")
            try? FileManager.default.removeItem(atPath: tmp + ".in")
        }
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".err"))
        let inHandle = try FileHandle(forReadingFrom: URL(fileURLWithPath: tmp + ".in"))
        p.standardError = errHandle
        p.standardInput = inHandle
        try p.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try? errHandle.close()
        try? inHandle.close()
        let errData = (try? Data(contentsOf: URL(fileURLWithPath: tmp + ".err"))) ?? Data()
        return SyncProcessResult(status: p.terminationStatus, stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs git in `dir` (a work tree, or any directory with `--git-dir` in `args`);
    /// fails the test on a non-zero exit unless `check` is false.
    @discardableResult
    static func git(_ args: [String], in dir: String, input: Data? = nil, check: Bool = true, date: Int? = nil,
                    file: StaticString = #filePath, line: UInt = #line) throws -> SyncProcessResult {
        var env: [String: String] = ["HOME": dir]
        if let date {
            env["GIT_AUTHOR_DATE"] = "\(date) +0100"
            env["GIT_COMMITTER_DATE"] = "\(date) +0100"
        }
        let r = try run(gitPath, ["-c", "init.defaultBranch=main", "-c", "gc.auto=0", "-c", "core.autocrlf=false",
                                  "-c", "receive.unpackLimit=100"] + args,
                        cwd: dir, input: input, environment: env)
        if check && r.status != 0 {
            XCTFail("git \(args.joined(separator: " ")) failed (\(r.status)): \(r.stderr)", file: file, line: line)
        }
        return r
    }

    /// git on a bare repository.
    @discardableResult
    static func bare(_ gitDir: String, _ args: [String], input: Data? = nil, check: Bool = true,
                     file: StaticString = #filePath, line: UInt = #line) throws -> SyncProcessResult {
        try git(["--git-dir", gitDir] + args, in: NSTemporaryDirectory(), input: input, check: check, file: file, line: line)
    }

    /// `refname objectname` for every ref, sorted by git.
    static func refs(_ gitDir: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        try bare(gitDir, ["for-each-ref", "--format=%(refname) %(objectname)"], file: file, line: line)
            .text.split(separator: "\n").map(String.init)
    }

    /// The symbolic target of HEAD ("" when detached).
    static func head(_ gitDir: String) throws -> String {
        try bare(gitDir, ["symbolic-ref", "-q", "HEAD"], check: false).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// What `rev` names in `gitDir`, or nil (no repository yet, no such ref): for polling.
    static func peek(_ gitDir: String, _ rev: String) -> String? {
        guard FileManager.default.fileExists(atPath: gitDir + "/HEAD"),
              let r = try? bare(gitDir, ["rev-parse", "-q", "--verify", rev], check: false) else { return nil }
        let text = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }

    static func revParse(_ gitDir: String, _ rev: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try bare(gitDir, ["rev-parse", rev], file: file, line: line).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `git fsck --full --strict`: asserts a clean result (dangling objects are fine).
    static func assertFsckClean(_ gitDir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try bare(gitDir, ["fsck", "--full", "--strict", "--no-progress"], check: false)
        XCTAssertEqual(r.status, 0, "git fsck: \(r.text) \(r.stderr)", file: file, line: line)
        let bad = (r.text + r.stderr).split(separator: "\n").filter { !$0.hasPrefix("dangling ") && !$0.isEmpty }
        XCTAssertTrue(bad.isEmpty, "git fsck complained: \(bad)", file: file, line: line)
    }
}

/// Small file helpers.
enum SyncFiles {
    static func parent(_ path: String) -> String { (path as NSString).deletingLastPathComponent }

    static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    static func write(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: parent(path), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    static func write(_ path: String, bytes: Data) throws {
        try FileManager.default.createDirectory(atPath: parent(path), withIntermediateDirectories: true)
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    /// `count` bytes from /dev/urandom (incompressible).
    static func random(_ count: Int) -> Data {
        guard let h = FileHandle(forReadingAtPath: "/dev/urandom") else { return Data(count: count) }
        defer { try? h.close() }
        return h.readData(ofLength: count)
    }

    /// Every path below `dir` (relative, sorted), directories marked with a trailing "/".
    static func tree(_ dir: String) -> [String] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir)
            out.append(isDir.boolValue ? rel + "/" : rel)
        }
        return out.sorted()
    }

    /// Paths below `dir` whose last component is `name`.
    static func find(_ name: String, under dir: String) -> [String] {
        tree(dir).filter { ($0 as NSString).lastPathComponent == name }.map { dir + "/" + $0 }
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? -1
    }
}

/// Everything observable about a repository: refs, HEAD, packed-refs, and every file
/// under it with its size (pack and index names embed their checksums, loose object
/// names their IDs). Two equal snapshots mean a sync changed nothing.
struct RepoSnapshot: Equatable, CustomStringConvertible {
    var refs: [String]
    var head: String
    var files: [String]

    init(_ gitDir: String) throws {
        refs = try SyncGit.refs(gitDir)
        head = (try? String(contentsOfFile: gitDir + "/HEAD", encoding: .utf8)) ?? "<none>"
        files = SyncFiles.tree(gitDir).map { $0.hasSuffix("/") ? $0 : "\($0) \(SyncFiles.size(gitDir + "/" + $0))" }
    }

    var description: String { "refs \(refs)\nHEAD \(head)\nfiles \(files)" }
}

/// A served repository and a client, wired up with real `guts` processes:
/// `<server>/repos/alice/proj.git` is the upstream (bare), `work` a work tree that
/// pushes to it with `--mirror` (so deletions and forced updates reach it), and
/// `mirror` the client's copy at `<client>/repos/alice/proj.git`.
final class SyncFixture {
    let h: Harness
    let repoName: String
    let serverHome: String
    let clientHome: String
    let work: String
    let serverID: String
    let clientID: String
    private(set) var listener: Harness.Running?
    private(set) var peer = ""
    private var clock = 1_700_000_000

    var upstream: String { serverHome + "/repos/" + repoName + ".git" }
    var mirror: String { clientHome + "/repos/" + repoName + ".git" }

    init(_ h: Harness, repoName: String = "alice/proj", clientName: String = "client") throws {
        self.h = h
        self.repoName = repoName
        serverHome = h.home("server")
        clientHome = h.home(clientName)
        work = h.home("work")
        serverID = try h.keygen("server")
        clientID = try h.keygen(clientName)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: SyncFiles.parent(upstream), withIntermediateDirectories: true)
        try SyncGit.git(["init", "-q", "--bare", upstream], in: h.root.path)
        try SyncGit.git(["init", "-q", "."], in: work)
        try SyncGit.git(["remote", "add", "--mirror=push", "upstream", upstream], in: work)
    }

    /// A second repository on the same server and client as `other` (no work tree;
    /// build it with `addBigCommit` or git on `upstream`).
    init(_ h: Harness, repoName: String, reuseServerHome other: SyncFixture) throws {
        self.h = h
        self.repoName = repoName
        serverHome = other.serverHome
        clientHome = other.clientHome
        work = h.home("work-" + repoName.replacingOccurrences(of: "/", with: "-"))
        serverID = other.serverID
        clientID = other.clientID
        if !SyncFiles.exists(upstream + "/objects") {
            try FileManager.default.createDirectory(atPath: SyncFiles.parent(upstream), withIntermediateDirectories: true)
            try SyncGit.git(["init", "-q", "--bare", upstream], in: h.root.path)
        }
    }

    /// Commits everything in the work tree with a fresh timestamp.
    @discardableResult
    func commit(_ message: String, files: [String: String] = [:]) throws -> String {
        for (path, text) in files { try SyncFiles.write(work + "/" + path, text) }
        clock += 60
        try SyncGit.git(["add", "-A"], in: work)
        try SyncGit.git(["commit", "-q", "--allow-empty", "-m", message], in: work, date: clock)
        return try SyncGit.git(["rev-parse", "HEAD"], in: work).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func gitWork(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        clock += 1
        try SyncGit.git(args, in: work, date: clock, file: file, line: line)
    }

    /// Mirrors the work tree's refs into the upstream bare repository.
    func push() throws {
        try SyncGit.git(["push", "-q", "upstream"], in: work)
    }

    /// A history worth mirroring: a growing file (delta material), nested directories,
    /// an executable, a symlink, an empty file, a side branch and a merge, an annotated
    /// tag, a tag of a tag, a lightweight tag and a tag naming a blob. The upstream is
    /// then repacked, so serving reuses stored deltas.
    func buildHistory(commits: Int = 12) throws {
        try commit("empty root")
        var lines: [String] = []
        for i in 0..<commits {
            for k in 0..<30 { lines.append("line \(i) \(k) " + String(repeating: "abcdefgh", count: (i + k) % 7)) }
            var files = ["big.txt": lines.joined(separator: "\n") + "\n", "dir\(i % 3)/sub/file\(i % 4).txt": "content \(i)\n"]
            if i == 1 {
                files["with space.txt"] = "space\n"
                files["ünïcødé.txt"] = "unicode\n"
                files["empty"] = ""
                files["run.sh"] = "#!/bin/sh\necho hi\n"
            }
            for (p, t) in files { try SyncFiles.write(work + "/" + p, t) }
            if i == 1 {
                chmod(work + "/run.sh", 0o755)
                symlink("big.txt", work + "/link")
            }
            try commit("commit \(i)\n\nbody \(i)")
        }
        try gitWork(["checkout", "-q", "-b", "side", "HEAD~3"])
        try commit("side work", files: ["side.txt": "side\n"])
        try gitWork(["checkout", "-q", "main"])
        try gitWork(["merge", "-q", "--no-ff", "-m", "merge side", "side"])
        try gitWork(["tag", "-a", "v1.0", "-m", "release 1.0"])
        try gitWork(["tag", "-a", "v1.0-signed-off", "-m", "tag of a tag", "v1.0"])
        try gitWork(["tag", "light", "HEAD~1"])
        let blob = try SyncGit.git(["rev-parse", "HEAD:side.txt"], in: work).text.trimmingCharacters(in: .whitespacesAndNewlines)
        try gitWork(["tag", "blob-tag", blob])
        try push()
        try SyncGit.bare(upstream, ["repack", "-q", "-a", "-d", "--depth=20", "--window=20"])
    }

    /// Commits `blobs` incompressible blobs of `size` bytes straight into the upstream,
    /// as loose objects (so serving them compresses afresh: a slow, steady stream), on
    /// `branch`. Returns the new commit.
    @discardableResult
    func addBigCommit(branch: String, blobs: Int, size: Int, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        var listing = ""
        for i in 0..<blobs {
            let tmp = h.root.appendingPathComponent("blob-\(UUID().uuidString)").path
            try SyncFiles.write(tmp, bytes: SyncFiles.random(size))
            let id = try SyncGit.bare(upstream, ["hash-object", "-w", tmp], file: file, line: line).text
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try? FileManager.default.removeItem(atPath: tmp)
            listing += "100644 blob \(id)\tbig-\(clock)-\(i).bin\n"
        }
        let tree = try SyncGit.bare(upstream, ["mktree"], input: Data(listing.utf8), file: file, line: line).text
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let parent = try SyncGit.bare(upstream, ["rev-parse", "-q", "--verify", "refs/heads/\(branch)"], check: false).text
            .trimmingCharacters(in: .whitespacesAndNewlines)
        clock += 60
        let commit = try SyncGit.bare(upstream, ["commit-tree", tree, "-m", "big \(clock)"] + (parent.isEmpty ? [] : ["-p", parent]),
                                      file: file, line: line).text.trimmingCharacters(in: .whitespacesAndNewlines)
        try SyncGit.bare(upstream, ["update-ref", "refs/heads/\(branch)", commit], file: file, line: line)
        return commit
    }

    /// Waits until a sync's quarantined `incoming.pack` under `dir` holds at least
    /// `bytes`; false if `process` ended first or nothing grew within `timeout`.
    func waitForIncomingPack(under dir: String, bytes: Int, while process: Harness.Running, timeout: Double = 60) -> Bool {
        var grown = false
        eventually(timeout: timeout, every: 0.002) {
            grown = SyncFiles.find("incoming.pack", under: dir).contains { SyncFiles.size($0) >= bytes }
            return grown || !process.process.isRunning
        }
        return grown
    }

    func startServer(_ extra: [String] = []) throws {
        let (r, line) = try h.listen("server", extra)
        listener = r
        peer = line
    }

    func stopServer() {
        guard let l = listener else { return }
        l.signal(SIGKILL)
        _ = l.wait(timeout: 10)
        listener = nil
    }

    struct SyncResult {
        let status: Int32
        let stdout: String
        let stderr: String
        let json: [String: Any]
    }

    /// `guts --home <client> [--json] sync REPO --peer ... <extra>`.
    func sync(peers: [String]? = nil, home: String? = nil, name: String? = nil, json: Bool = true, extra: [String] = [],
              timeout: Double = 90, file: StaticString = #filePath, line: UInt = #line) throws -> SyncResult {
        var args = ["--home", home ?? clientHome]
        if json { args.append("--json") }
        args += ["sync", name ?? repoName]
        for p in peers ?? [peer] { args += ["--peer", p] }
        args += extra
        let r = try h.run(args, timeout: timeout, file: file, line: line)
        var object: [String: Any] = [:]
        if json, let first = r.stdout.split(separator: "\n").first,
           let parsed = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] {
            object = parsed
        }
        return SyncResult(status: r.status, stdout: r.stdout, stderr: r.stderr, json: object)
    }

    /// `sync` with the client's CPU time and peak memory measured (see `Harness.runMeasured`).
    func syncMeasured(peers: [String]? = nil, home: String? = nil, json: Bool = true, extra: [String] = [],
                      timeout: Double = 90, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Measured {
        var args = ["--home", home ?? clientHome]
        if json { args.append("--json") }
        args += ["sync", repoName]
        for p in peers ?? [peer] { args += ["--peer", p] }
        args += extra
        return try h.runMeasured(args, timeout: timeout, file: file, line: line)
    }

    /// The mirror has exactly the upstream's refs and HEAD, and passes git fsck.
    func assertMirrorsUpstream(_ mirrorPath: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let m = mirrorPath ?? mirror
        XCTAssertEqual(try SyncGit.refs(m), try SyncGit.refs(upstream), "refs differ", file: file, line: line)
        XCTAssertEqual(try SyncGit.head(m), try SyncGit.head(upstream), "HEAD differs", file: file, line: line)
        try SyncGit.assertFsckClean(m, file: file, line: line)
        XCTAssertFalse(SyncFiles.exists(m + ".lock"), "lock file left behind", file: file, line: line)
        XCTAssertTrue(SyncFiles.tree(m + "/objects").filter { $0.contains("incoming-") }.isEmpty, "quarantine left behind",
                      file: file, line: line)
    }

    /// `guts objects verify` on the mirror exits 0.
    func assertVerifies(_ path: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try h.run(["--home", clientHome, "objects", "verify", path ?? mirror], file: file, line: line)
        XCTAssertEqual(r.status, 0, "objects verify: \(r.stdout) \(r.stderr)", file: file, line: line)
    }
}

/// A UDP socket bound to `ip` (an IPv4 literal) on a port the kernel picks: its
/// descriptor (the caller closes it) and the port, or nil.
func boundUDPSocket(_ ip: String) -> (fd: Int32, port: Int)? {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr(ip)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else {
        close(fd)
        return nil
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
func syncUnusedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// A SyncServer in the test process, behind a real Listener, with settings `guts listen`
/// does not expose (transfer limit, stall timeout). Its log lines are kept.
final class InProcessSyncServer: @unchecked Sendable {
    let identity = Identity.generate()
    let server: SyncServer
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var listener: Listener?
    private(set) var peer = ""

    init(roots: [String], maxTransfers: Int, stallTimeout: Double) throws {
        let box = LogBox()
        server = SyncServer(catalog: RepositoryCatalog(roots: roots), maxTransfers: maxTransfers, stallTimeout: stallTimeout) { box.append($0) }
        logBox = box
        var config = SessionConfig(identity: identity.keyPair, noiseStatic: .generate(),
                                   capabilities: Capabilities.default + SyncServer.capabilities, agent: "in-process/1",
                                   protocols: MessageRegistry([SyncProtocol()]))
        config.idleTimeout = 60
        let server = self.server
        let listener = Listener(group: group, config: config, options: .init(maxConnections: 16)) { connection in
            connection.setConnectionHandler { conn, message in server.handle(message, from: conn) }
        }
        let address = try listener.bind(host: "127.0.0.1", port: 0)
        self.listener = listener
        peer = "\(identity.peerID)@127.0.0.1:\(address.port ?? 0)"
    }

    private let logBox: LogBox
    var log: [String] { logBox.lines }

    final class LogBox: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [String] = []
        func append(_ s: String) { lock.withLock { items.append(s) } }
        var lines: [String] { lock.withLock { items } }
    }

    func shutdown() {
        listener?.shutdown(timeout: 1)
        listener = nil
        server.shutdown()
        try? group.syncShutdownGracefully()
    }
}

/// With --json, a failed command's stdout is exactly one JSON error object whose code is
/// its exit status (guts(1), JSON ERRORS).
func assertOnlyErrorObject(_ stdout: String, status: Int32, file: StaticString = #filePath, line: UInt = #line) {
    let lines = stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 1, stdout, file: file, line: line)
    let object = lines.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    let error = object?["error"] as? [String: Any]
    XCTAssertEqual(error?["code"] as? Int, Int(status), stdout, file: file, line: line)
    XCTAssertNotNil(error?["message"] as? String, stdout, file: file, line: line)
}
