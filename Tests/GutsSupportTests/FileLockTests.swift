import Foundation
import GutsSupport
import XCTest

/// A fresh temporary directory per test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "guts-support-" + UUID().uuidString.prefix(8)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Spawns `argv` with posix_spawn (no file actions: the child inherits every descriptor
/// not marked close-on-exec). Returns the PID.
func spawn(_ argv: [String]) throws -> pid_t {
    var pid: pid_t = 0
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for p in cArgs { free(p) } }
    let rc = posix_spawn(&pid, argv[0], nil, nil, &cArgs, environ)
    guard rc == 0 else { throw NSError(domain: "spawn", code: Int(rc)) }
    return pid
}

func killAndReap(_ pid: pid_t) {
    kill(pid, SIGKILL)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
}

/// Polls `condition` every 10 ms for up to `timeout` seconds.
func eventually(_ timeout: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

final class FileLockTests: TemporaryDirectoryTestCase {
    var path: String { dir + "/test.lock" }

    func testTwoDescriptorsInOneProcessConflict() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        XCTAssertTrue(a.isHeld)
        XCTAssertNil(try FileLock.tryAcquire(path), "a second open file description must not get an exclusive lock")
        XCTAssertNil(try FileLock.tryAcquire(path, mode: .shared), "nor a shared one")
        a.release()
        XCTAssertFalse(a.isHeld)
        a.release()  // idempotent

        let s1 = try XCTUnwrap(try FileLock.tryAcquire(path, mode: .shared))
        let s2 = try XCTUnwrap(try FileLock.tryAcquire(path, mode: .shared), "shared locks coexist")
        XCTAssertNil(try FileLock.tryAcquire(path, mode: .exclusive))
        s1.release()
        XCTAssertNil(try FileLock.tryAcquire(path, mode: .exclusive), "one shared holder is still there")
        s2.release()
        XCTAssertNotNil(try FileLock.tryAcquire(path, mode: .exclusive))
    }

    func testDeinitReleases() throws {
        do {
            let held = try FileLock.tryAcquire(path)
            XCTAssertNotNil(held)
        }
        XCTAssertNotNil(try FileLock.tryAcquire(path), "dropping the object releases the lock")
    }

    func testTimedAcquireWaitsForTheHolder() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        let started = Date()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { a.release() }
        let b = try FileLock.acquire(path, timeout: 10)
        let waited = Date().timeIntervalSince(started)
        XCTAssertNotNil(b)
        XCTAssertGreaterThanOrEqual(waited, 0.15)
        XCTAssertLessThan(waited, 5, "polling backoff is short")
    }

    func testTimedAcquireGivesUp() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        let started = Date()
        XCTAssertNil(try FileLock.acquire(path, timeout: 0.3))
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(waited, 0.29)
        XCTAssertLessThan(waited, 3)
        withExtendedLifetime(a) {}
    }

    func testInterruptedWaitEndsEarly() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        var polls = 0
        let started = Date()
        XCTAssertNil(try FileLock.acquire(path, timeout: 60, interrupted: {
            polls += 1
            return polls >= 3
        }))
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(polls, 3)
        withExtendedLifetime(a) {}
    }

    /// Another process holds the lock: we cannot take it until that process dies, and
    /// then we can at once, with no stale state to clean up. The child is one process
    /// throughout: sh opens the file as fd 9, flock(1) locks that open file, and sh
    /// becomes sleep (same PID), keeping fd 9.
    func testLockHeldByAChildProcessVanishesWhenItIsKilled() throws {
        let flockTool = "/usr/bin/flock"
        guard FileManager.default.isExecutableFile(atPath: flockTool) else { throw XCTSkip("no \(flockTool)") }
        let child = try spawn(["/bin/sh", "-c", "exec 9>\"$0\" && \(flockTool) --exclusive 9 && exec /bin/sleep 60", path])
        var killed = false
        defer { if !killed { killAndReap(child) } }
        XCTAssertTrue(try eventually { try FileLock.tryAcquire(path) == nil }, "the child never took the lock")
        XCTAssertNil(try FileLock.acquire(path, timeout: 0.2))

        killAndReap(child)
        killed = true
        XCTAssertNotNil(try FileLock.tryAcquire(path), "the kernel released the dead holder's lock")
    }

    /// The descriptor is close-on-exec: a program started while the lock is held does not
    /// keep it after the holder releases it.
    func testChildrenDoNotInheritTheLock() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        let child = try spawn(["/bin/sleep", "60"])
        defer { killAndReap(child) }
        // posix_spawn returns once the child's exec has replaced its memory, which the
        // kernel does just before it closes the close-on-exec descriptors: wait for that,
        // so a slow child (the suite runs in parallel) is not taken for an inheriting one.
        XCTAssertTrue(Self.holdsDescriptor(getpid(), to: path), "this process's own descriptor is seen")
        XCTAssertTrue(eventually { !Self.holdsDescriptor(child, to: path) }, "the child kept the lock's descriptor after exec")
        a.release()
        XCTAssertNotNil(try FileLock.tryAcquire(path), "the child must not hold an inherited descriptor")
    }

    /// Whether process `pid` has a descriptor open on `path` (from /proc/PID/fd).
    static func holdsDescriptor(_ pid: pid_t, to path: String) -> Bool {
        let dir = "/proc/\(pid)/fd"
        guard let fds = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return false }
        return fds.contains { (try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0)) == path }
    }

    func testRemoveOnReleaseAndWaitersFollowTheNewFile() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path, removeOnRelease: true))
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        // A waiter opens the current file and polls it; the holder removes it on release.
        let box = LockBox()
        let path = self.path
        let waiter = Thread {
            box.set(try? FileLock.acquire(path, timeout: 10))
        }
        waiter.start()
        usleep(100_000)
        a.release()
        XCTAssertTrue(eventually { box.get() != nil }, "the waiter never got the lock")
        let b = try XCTUnwrap(box.get())
        XCTAssertTrue(b.isHeld)
        // The waiter holds the file that the path names now, so a third party conflicts.
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        XCTAssertNil(try FileLock.tryAcquire(path))
        b.release()
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "b was not asked to remove it")
    }

    func testRecordedPID() throws {
        let a = try XCTUnwrap(try FileLock.tryAcquire(path))
        XCTAssertNil(FileLock.recordedPID(path))
        a.writeInfo("\(getpid())\n")
        XCTAssertEqual(FileLock.recordedPID(path), getpid())
        a.writeInfo("12\n")
        XCTAssertEqual(FileLock.recordedPID(path), 12, "rewritten, not appended")
        a.writeInfo("not a pid\n")
        XCTAssertNil(FileLock.recordedPID(path))
        XCTAssertNil(FileLock.recordedPID(dir + "/missing.lock"))
    }

    func testSymbolicLinkIsNotFollowed() throws {
        let target = dir + "/target"
        XCTAssertTrue(FileManager.default.createFile(atPath: target, contents: Data("keep".utf8)))
        symlink(target, path)
        XCTAssertThrowsError(try FileLock.tryAcquire(path))
        XCTAssertEqual(try String(contentsOfFile: target, encoding: .utf8), "keep")
    }
}

final class LockBox: @unchecked Sendable {
    private let mutex = HeapMutex()
    private var value: FileLock?
    func set(_ v: FileLock?) { mutex.locked { value = v } }
    func get() -> FileLock? { mutex.locked { value } }
}

final class HeapMutexTests: XCTestCase {
    func testMutualExclusionAcrossThreads() {
        final class Counter: @unchecked Sendable {
            let mutex = HeapMutex()
            var value = 0
        }
        let counter = Counter()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            for _ in 0..<10_000 { counter.mutex.locked { counter.value += 1 } }
        }
        XCTAssertEqual(counter.value, 80_000)
    }

    func testConditionTimedWait() {
        let mutex = HeapMutex()
        let condition = HeapCondition()
        let started = Instant.now()
        let signalled = mutex.locked { condition.wait(mutex, until: started.adding(seconds: 0.1)) }
        XCTAssertFalse(signalled)
        XCTAssertGreaterThanOrEqual(Instant.now().seconds(since: started), 0.09)
    }
}
