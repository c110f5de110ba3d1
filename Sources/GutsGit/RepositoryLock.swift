#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Why a repository lock was not taken.
public enum RepositoryLockError: Error, Equatable, CustomStringConvertible, Sendable {
    /// Another process held the lock for longer than the caller would wait (`waited`
    /// seconds; 0 when it would not wait at all).
    case busy(repository: String, lockPath: String, holder: Int32?, waited: Double)
    /// The caller's `interrupted` check said to stop waiting.
    case interrupted(repository: String)
    /// The lock file could not be created or locked.
    case io(String)

    public var description: String {
        switch self {
        case let .busy(repository, lockPath, holder, waited):
            let who = holder.map { "process \($0)" } ?? "another process"
            let after = waited > 0 ? "; gave up after waiting \(Self.seconds(waited)) s" : ""
            return "\(repository) is locked by \(who) (a sync, a mirroring node or maintenance holds \(lockPath))\(after)"
        case let .interrupted(repository):
            return "interrupted while waiting for the lock of \(repository)"
        case let .io(message):
            return message
        }
    }

    static func seconds(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }
}

/// The one lock of a repository that guts writes: every sync, every mirroring by a
/// node, and any maintenance takes it, so one of them at a time changes the repository.
///
/// It is an exclusive flock(2) on `<repository>.lock`, a file *beside* the repository
/// (`alice/proj.git.lock` next to `alice/proj.git`), so it also guards the moment the
/// repository does not exist yet: a first sync builds the repository beside the target
/// and renames it into place while holding it, and a second first sync waits and then
/// finds the result. The kernel drops the lock when the holder exits or is killed; the
/// file records the holder's PID for messages only and is removed on release.
///
/// Missing parent directories of the repository are created to hold the lock file, and
/// removed again on release when they are still empty (a first sync that failed leaves
/// nothing behind).
public final class RepositoryLock: @unchecked Sendable {
    public let repositoryPath: String
    public let lockPath: String
    private let lock: FileLock
    /// Directories this acquisition created, deepest first.
    private let createdDirectories: [String]
    private let released = HeapMutex()
    private var done = false

    private init(repositoryPath: String, lockPath: String, lock: FileLock, createdDirectories: [String]) {
        self.repositoryPath = repositoryPath
        self.lockPath = lockPath
        self.lock = lock
        self.createdDirectories = createdDirectories
    }

    deinit { release() }

    /// `path` without a trailing slash.
    public static func normalize(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// The lock file of the repository at `repositoryPath`.
    public static func lockPath(for repositoryPath: String) -> String { normalize(repositoryPath) + ".lock" }

    /// Takes the lock of the repository at `repositoryPath` (which need not exist),
    /// waiting up to `wait` seconds for the holder to finish (0: fail at once). `waiting`
    /// is called once, with the holder's recorded PID, if the lock is held on the first
    /// attempt; `interrupted` is polled while waiting.
    public static func acquire(repositoryPath: String, wait: Double,
                               waiting: ((Int32?) -> Void)? = nil,
                               interrupted: () -> Bool = { false }) throws -> RepositoryLock {
        let path = normalize(repositoryPath)
        let lockPath = lockPath(for: path)
        let started = Instant.now()
        var created: [String] = []
        var announced = false
        var vanished = 0
        while true {
            do {
                created += try makeParents(of: path)
            } catch {
                throw RepositoryLockError.io("cannot create the directory of \(path): \(error)")
            }
            let left = max(0, wait - Instant.now().seconds(since: started))
            let lock: FileLock?
            do {
                lock = try FileLock.acquire(lockPath, mode: .exclusive, timeout: announced ? left : 0,
                                            removeOnRelease: true, interrupted: interrupted)
            } catch let e as FileError where e.code == ENOENT && vanished < 100 {
                // The holder removed the (empty) parent directory on release: make it again.
                vanished += 1
                continue
            } catch {
                removeEmpty(created)
                throw RepositoryLockError.io("cannot lock \(path): \(error)")
            }
            if let lock {
                lock.writeInfo("\(getpid())\n")
                return RepositoryLock(repositoryPath: path, lockPath: lockPath, lock: lock, createdDirectories: created)
            }
            if !announced && wait > 0 && !interrupted() {
                announced = true
                waiting?(FileLock.recordedPID(lockPath))
                continue
            }
            let holder = FileLock.recordedPID(lockPath)
            removeEmpty(created)
            if interrupted() { throw RepositoryLockError.interrupted(repository: path) }
            throw RepositoryLockError.busy(repository: path, lockPath: lockPath, holder: holder,
                                           waited: wait > 0 ? Instant.now().seconds(since: started) : 0)
        }
    }

    /// Whether this object still holds the lock.
    public var isHeld: Bool { released.locked { !done } && lock.isHeld }

    /// Releases the lock (idempotent): the lock file is removed while still locked (see
    /// `FileLock`), then the parent directories this acquisition created are removed if
    /// empty. A waiter that finds them gone creates them again.
    public func release() {
        let first = released.locked { () -> Bool in
            defer { done = true }
            return !done
        }
        guard first else { return }
        lock.release()
        Self.removeEmpty(createdDirectories)
    }

    /// Creates the missing ancestors of `path`; returns those it created, deepest first.
    static func makeParents(of path: String) throws -> [String] {
        var missing: [String] = []
        var dir = Files.directoryName(path)
        while !dir.isEmpty && dir != "/" && dir != "." && !Files.exists(dir) {
            missing.append(dir)
            dir = Files.directoryName(dir)
        }
        if let deepest = missing.first { try Files.makeDirectories(deepest) }
        return missing.filter { Files.isDirectory($0) }
    }

    /// rmdir for each of `dirs` (deepest first); non-empty ones stay.
    static func removeEmpty(_ dirs: [String]) {
        for d in dirs { rmdir(d) }
    }
}
