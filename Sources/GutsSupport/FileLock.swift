#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An advisory lock on a file with flock(2).
///
/// The lock belongs to the open file description, so the kernel drops it when the
/// holder closes the file or dies in any way (SIGKILL included): there is no stale
/// lock to detect and no PID to trust. Two descriptors opened separately conflict even
/// inside one process. The descriptor is opened with O_CLOEXEC, so programs the holder
/// starts do not inherit (and prolong) the lock.
///
/// The lock file may be removed by its exclusive holder on release
/// (`removeOnRelease`). Every acquirer therefore checks, once it holds the lock, that
/// the path still names the file it locked, and starts over when it does not; so two
/// processes can never both hold "the" lock through two different files.
public final class FileLock: @unchecked Sendable {
    public enum Mode: Sendable {
        case exclusive
        case shared
    }

    public let path: String
    public let mode: Mode
    private let state = HeapMutex()
    private var fd: Int32
    private let removeOnRelease: Bool

    private init(path: String, mode: Mode, fd: Int32, removeOnRelease: Bool) {
        self.path = path
        self.mode = mode
        self.fd = fd
        self.removeOnRelease = removeOnRelease
    }

    deinit { release() }

    /// Takes the lock at once or not at all: nil when another open file holds a
    /// conflicting lock. Throws when the file cannot be opened or locked.
    public static func tryAcquire(_ path: String, mode: Mode = .exclusive, removeOnRelease: Bool = false,
                                  permissions: mode_t = 0o644) throws -> FileLock? {
        try acquire(path, mode: mode, timeout: 0, removeOnRelease: removeOnRelease, permissions: permissions)
    }

    /// Takes the lock, waiting up to `timeout` seconds for a holder to release it:
    /// nil when it is still held when the time is up, or when `interrupted` returns true
    /// (checked between attempts). Waiting polls a non-blocking flock with a backoff from
    /// 1 ms up to 50 ms, so the wait is bounded and interruptible without signals.
    /// `removeOnRelease` (exclusive only): unlink the file when releasing.
    public static func acquire(_ path: String, mode: Mode = .exclusive, timeout: Double,
                               removeOnRelease: Bool = false, permissions: mode_t = 0o644,
                               interrupted: () -> Bool = { false }) throws -> FileLock? {
        let deadline = Instant.now().adding(seconds: timeout)
        var pause: UInt32 = 1000  // microseconds
        var replaced = 0
        while true {
            let fd = try openLockFile(path, permissions: permissions)
            var keep = false
            defer { if !keep { close(fd) } }
            if try lockNonBlocking(fd, mode, path: path) {
                if namesSameFile(fd, path) {
                    keep = true
                    return FileLock(path: path, mode: mode, fd: fd, removeOnRelease: removeOnRelease && mode == .exclusive)
                }
                // The file was removed (or replaced) by its previous holder after we opened
                // it: the lock on it is worthless. Open the path again at once (a file
                // that keeps being replaced ends the wait at the deadline).
                replaced += 1
                if replaced < 100 || Instant.now() < deadline { continue }
                return nil
            }
            if interrupted() { return nil }
            let now = Instant.now()
            if now >= deadline { return nil }
            let left = UInt64(deadline.nanoseconds - now.nanoseconds) / 1000
            usleep(UInt32(min(UInt64(pause), left)))
            pause = min(pause * 2, 50_000)
        }
    }

    /// Whether this object still holds the lock.
    public var isHeld: Bool { state.locked { fd >= 0 } }

    /// Releases the lock (idempotent). With `removeOnRelease` the file is unlinked first,
    /// while the lock is still held, so no one can lock the old file and see it named.
    public func release() {
        state.locked {
            guard fd >= 0 else { return }
            if removeOnRelease && Self.namesSameFile(fd, path) { unlink(path) }
            close(fd)  // closing the only descriptor of the open file drops the flock
            fd = -1
        }
    }

    /// Replaces the file's contents with `text` (information for people and error
    /// messages, such as the holder's PID; never trusted for locking). Exclusive holders only.
    public func writeInfo(_ text: String) {
        state.locked {
            guard fd >= 0, mode == .exclusive else { return }
            _ = ftruncate(fd, 0)
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        }
    }

    /// What the holder wrote with `writeInfo` (at most 256 bytes), or nil.
    public static func readInfo(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return decodeUTF8(buffer[0..<n])
    }

    /// The PID a holder recorded with `writeInfo("<pid>\n")`, for messages only.
    public static func recordedPID(_ path: String) -> Int32? {
        guard let text = readInfo(path) else { return nil }
        let digits = text.prefix(while: { $0 != "\n" }).trimmingASCIISpaces
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int32(digits)
    }

    // MARK: - System calls

    static func openLockFile(_ path: String, permissions: mode_t) throws -> Int32 {
        while true {
            // O_NOFOLLOW: a symbolic link planted at the lock path cannot redirect the
            // truncate in `writeInfo` to another file.
            var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, permissions)
            if fd < 0 && (errno == EACCES || errno == EROFS) {
                // A lock file we may only read still takes a lock.
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            }
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw FileError(path: path, operation: "open lock file", code: errno)
        }
    }

    /// True when the lock was taken, false when another open file holds it.
    static func lockNonBlocking(_ fd: Int32, _ mode: Mode, path: String) throws -> Bool {
        let operation = (mode == .exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB
        while true {
            if flock(fd, operation) == 0 { return true }
            switch errno {
            case EINTR: continue
            case EWOULDBLOCK: return false
            default: throw FileError(path: path, operation: "flock", code: errno)
            }
        }
    }

    /// Whether `path` (not following a final symbolic link) is the file open on `fd`.
    static func namesSameFile(_ fd: Int32, _ path: String) -> Bool {
        var open = stat()
        var named = stat()
        guard fstat(fd, &open) == 0, lstat(path, &named) == 0 else { return false }
        return open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and carriage returns.
    var trimmingASCIISpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return String(s)
    }
}
