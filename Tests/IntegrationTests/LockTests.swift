import Foundation
import GutsGit
import GutsSupport
import XCTest

/// One node per state directory, and one writer per state file.
final class NodeLockTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testSecondNodeOnTheSameHomeExits3AndTheLockDiesWithItsHolder() throws {
        _ = try h.keygen("node")
        let home = h.home("node")
        let (first, address) = try h.listen("node")
        XCTAssertFalse(address.isEmpty)
        let pid = first.process.processIdentifier
        XCTAssertEqual(FileLock.recordedPID(home + "/node.lock"), pid)

        let second = try h.run(["--home", home, "listen", "--listen", "127.0.0.1:0"], timeout: 10)
        XCTAssertEqual(second.status, 3, second.stderr)
        XCTAssertTrue(second.stdout.isEmpty, second.stdout)
        XCTAssertTrue(second.stderr.contains("a node is already running with state directory \(home) (process \(pid)"), second.stderr)
        XCTAssertTrue(first.process.isRunning, "the running node is not disturbed")
        XCTAssertEqual(FileLock.recordedPID(home + "/node.lock"), pid, "the loser does not overwrite the holder's PID")

        // Killed: the file stays (naming a dead process) but nobody holds the lock.
        first.signal(SIGKILL)
        _ = first.wait()
        XCTAssertTrue(FileManager.default.fileExists(atPath: home + "/node.lock"))
        let (third, line) = try h.listen("node")
        XCTAssertFalse(line.isEmpty, third.stderr)
        XCTAssertEqual(FileLock.recordedPID(home + "/node.lock"), third.process.processIdentifier)

        // A clean stop removes it.
        third.signal(SIGTERM)
        XCTAssertEqual(third.wait(), 0, third.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/node.lock"))
    }

    /// Concurrent `keygen`s on a fresh home: one creates the identity, the others find it,
    /// and identity.pub matches the key that was written.
    func testConcurrentKeygensCreateOneIdentity() throws {
        let home = h.home("race")
        let runs = try (0..<4).map { _ in try h.start(["--home", home, "keygen"]) }
        let statuses = runs.map { $0.wait(timeout: 20) }
        XCTAssertEqual(statuses.filter { $0 == 0 }.count, 1, "\(statuses) \(runs.map(\.stderr))")
        XCTAssertEqual(statuses.filter { $0 == 3 }.count, 3, "\(statuses)")
        for r in runs where r.process.terminationStatus == 3 {
            XCTAssertTrue(r.stderr.contains("an identity already exists"), r.stderr)
        }
        let winner = try XCTUnwrap(runs.first { $0.process.terminationStatus == 0 })
        let peerID = winner.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(try String(contentsOfFile: home + "/identity.pub", encoding: .utf8), peerID + "\n")
        let shown = try h.run(["--home", home, "keygen", "--show"])
        XCTAssertEqual(shown.stdout, peerID + "\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: home).sorted(), ["identity.key", "identity.pub"],
                       "no lock or temporary file left")
    }

    /// A node whose stderr is a pipe nobody reads (and the peers who make it log): its
    /// event loops never wait for stderr, so a legitimate client is still served, and it
    /// still stops promptly on SIGTERM.
    func testNodeWithAnUnreadStderrKeepsServing() throws {
        signal(SIGPIPE, SIG_IGN)
        _ = try h.keygen("node")
        _ = try h.keygen("client")
        let out = h.root.appendingPathComponent("node.out").path
        XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
        let stderrPipe = Pipe()
        // The smallest pipe buffer (one page): a few dozen log lines fill it.
        _ = fcntl(stderrPipe.fileHandleForWriting.fileDescriptor, 1031 /* F_SETPIPE_SZ */, 4096)
        let node = Process()
        node.executableURL = URL(fileURLWithPath: Harness.binary)
        node.arguments = ["--home", h.home("node"), "-v", "listen", "--listen", "127.0.0.1:0", "--handshake-timeout", "1"]
        node.standardInput = FileHandle.nullDevice
        node.standardOutput = FileHandle(forWritingAtPath: out)
        node.standardError = stderrPipe
        try node.run()
        defer {
            if node.isRunning {
                kill(node.processIdentifier, SIGKILL)
                node.waitUntilExit()
            }
        }
        try stderrPipe.fileHandleForWriting.close()
        XCTAssertTrue(eventually { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("\n") })
        let address = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        let nodePort = port(of: address)
        XCTAssertGreaterThan(nodePort, 0, address)

        // Peers that fail the handshake: each makes the node log a line or two, far more
        // than the pipe holds.
        for i in 0..<150 {
            guard let s = RawSocket(port: nodePort, from: "127.0.0.2") else { return XCTFail("connect \(i)") }
            s.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + [UInt8](repeating: 0xff, count: 3000))
            // A node whose event loops wait for stderr stops here after a few dozen.
            guard s.closedByPeer(within: 5) else { return XCTFail("garbage connection \(i) was not dropped: the node is stuck") }
        }
        // A legitimate client is served at once.
        let started = Date()
        let dial = try h.run(["--home", h.home("client"), "dial", "--timeout", "5", address], timeout: 20)
        XCTAssertEqual(dial.status, 0, dial.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)

        // SIGTERM with stderr still unread: shutdown waits for the log a bounded time only.
        let stopping = Date()
        kill(node.processIdentifier, SIGTERM)
        XCTAssertTrue(eventually(timeout: 15) { !node.isRunning }, "the node did not stop with a full stderr")
        XCTAssertLessThan(Date().timeIntervalSince(stopping), 15)
        XCTAssertEqual(node.terminationStatus, 0)
        let log = String(decoding: stderrPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(log.contains("listening on"), log)
        XCTAssertTrue(log.contains("rejected"), log)
    }
}

/// `guts sync` takes the repository lock (`<repo>.lock`, beside it) and waits for it.
final class SyncLockTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func fixture() throws -> SyncFixture {
        let f = try SyncFixture(h)
        try f.buildHistory(commits: 3)
        try f.startServer()
        return f
    }

    func startSync(_ f: SyncFixture, peer: String? = nil, _ extra: [String] = []) throws -> Harness.Running {
        try h.start(["--home", f.clientHome, "--json", "sync", f.repoName, "--peer", peer ?? f.peer] + extra)
    }

    func json(_ r: Harness.Running) -> [String: Any] {
        guard let first = r.stdout.split(separator: "\n").first,
              let object = try? JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any] else { return [:] }
        return object
    }

    /// Two first syncs of one repository started together take turns: one creates the
    /// mirror, the other then finds it complete and transfers nothing.
    func testOverlappingFirstSyncsTakeTurns() throws {
        let f = try fixture()
        let objectCount = try SyncGit.bare(f.upstream, ["rev-list", "--objects", "--all"]).text.split(separator: "\n").count
        // The test holds the lock until both have started and are waiting for it.
        let held = try RepositoryLock.acquire(repositoryPath: f.mirror, wait: 0)
        let a = try startSync(f)
        let b = try startSync(f)
        for r in [a, b] {
            r.waitFor("the sync to wait for the lock") { _, err in
                err.contains("\(f.mirror) is locked by process \(getpid()); waiting up to 600 s")
            }
        }
        XCTAssertFalse(SyncFiles.exists(f.mirror))
        held.release()
        let statuses = [a.wait(timeout: 60), b.wait(timeout: 60)]
        let results = [json(a), json(b)]
        XCTAssertEqual(statuses, [0, 0], "\(a.stderr) \(b.stderr)")
        let creator = try XCTUnwrap(results.firstIndex { $0["created"] as? Bool == true }, "\(a.stdout) \(b.stdout)")
        let other = 1 - creator
        XCTAssertEqual(statuses[other], 0, "the second finds the mirror up to date: \([a, b][other].stderr)")
        XCTAssertEqual(results[creator]["created"] as? Bool, true)
        XCTAssertEqual(results[creator]["objects"] as? Int, objectCount)
        XCTAssertEqual(results[other]["status"] as? String, "up-to-date")
        XCTAssertEqual(results[other]["created"] as? Bool, false)
        XCTAssertEqual(results[other]["objects"] as? Int, 0)
        XCTAssertEqual(results[other]["bytes"] as? Int, 0)
        try f.assertMirrorsUpstream()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: f.clientHome + "/repos/alice"), ["proj.git"],
                       "no staging directory or lock file left")
    }

    func testNoWaitExitsAtOnceAndWaitGivesUp() throws {
        let f = try fixture()
        let held = try RepositoryLock.acquire(repositoryPath: f.mirror, wait: 0)

        let started = Date()
        let noWait = try f.sync(extra: ["--no-wait"])
        XCTAssertEqual(noWait.status, 10, noWait.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "no wait, no connection")
        assertOnlyErrorObject(noWait.stdout, status: noWait.status)
        XCTAssertTrue(noWait.stderr.contains("\(f.mirror) is locked by process \(getpid())"), noWait.stderr)
        XCTAssertTrue(noWait.stderr.contains("nothing was done (--no-wait given)"), noWait.stderr)
        XCTAssertFalse(noWait.stderr.contains("waiting up to"), noWait.stderr)
        XCTAssertFalse(SyncFiles.exists(f.mirror))

        let waitStarted = Date()
        let expired = try f.sync(extra: ["--wait", "1"])
        let waited = Date().timeIntervalSince(waitStarted)
        XCTAssertEqual(expired.status, 10, expired.stderr)
        XCTAssertGreaterThanOrEqual(waited, 1)
        XCTAssertLessThan(waited, 10)
        XCTAssertTrue(expired.stderr.contains("waiting up to 1 s"), expired.stderr)
        XCTAssertTrue(expired.stderr.contains("gave up after waiting 1"), expired.stderr)
        XCTAssertTrue(expired.stderr.contains("wait longer with --wait SECONDS"), expired.stderr)

        let both = try f.sync(extra: ["--wait", "1", "--no-wait"])
        XCTAssertEqual(both.status, 2, both.stderr)

        // The server never saw any of them.
        XCTAssertFalse(f.listener?.stderr.contains("peer connected") ?? true, f.listener?.stderr ?? "")

        held.release()
        let free = try f.sync(extra: ["--no-wait"])
        XCTAssertEqual(free.status, 0, free.stderr)
        try f.assertMirrorsUpstream()
    }

    /// The holder is SIGKILLed while it holds the lock (stuck waiting for refs from a
    /// silent peer): the waiting sync proceeds at once, with no stale lock to clear.
    func testLockIsReleasedWhenTheHolderIsKilled() throws {
        let f = try fixture()
        let silent = try MaliciousServer(repository: f.upstream, behavior: .silentRefs)
        defer { silent.shutdown() }
        let holder = try startSync(f, peer: silent.peer, ["--timeout", "120"])
        let holderPID = holder.process.processIdentifier
        XCTAssertTrue(eventually { FileLock.recordedPID(f.mirror + ".lock") == holderPID }, holder.stderr)

        let waiter = try startSync(f)
        waiter.waitFor("the second sync to wait") { _, err in err.contains("is locked by process \(holderPID)") }
        let busy = try f.sync(extra: ["--no-wait"])
        XCTAssertEqual(busy.status, 10, busy.stderr)

        holder.signal(SIGKILL)
        _ = holder.wait()
        XCTAssertEqual(waiter.wait(timeout: 60), 0, waiter.stderr)
        XCTAssertEqual(json(waiter)["created"] as? Bool, true)
        try f.assertMirrorsUpstream()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: f.clientHome + "/repos/alice"), ["proj.git"])
    }

    /// A first sync that fails leaves nothing, not even the directories it made to hold
    /// the lock file.
    func testFailedFirstSyncLeavesNoDirectoriesBehind() throws {
        let f = try fixture()
        let before = SyncFiles.tree(f.clientHome)
        let r = try f.sync(name: "alice/missing")
        XCTAssertEqual(r.status, 9, r.stderr)
        XCTAssertEqual(SyncFiles.tree(f.clientHome), before)
    }
}
