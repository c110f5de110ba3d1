#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A lock that stayed held by another process for longer than the caller would wait.
public struct LockBusy: Error, CustomStringConvertible, Sendable {
    /// The lock file.
    public let path: String
    public let waited: Double
    /// The PID the holder recorded in the lock file, when it did (information only).
    public let holder: Int32?

    public init(path: String, waited: Double, holder: Int32?) {
        self.path = path
        self.waited = waited
        self.holder = holder
    }

    public var description: String {
        let who = holder.map { "process \($0)" } ?? "another process"
        return "\(path) is held by \(who)" + (waited > 0 ? " (waited \(formatWait(waited)) s)" : "")
    }
}

func formatWait(_ seconds: Double) -> String {
    let r = (seconds * 10).rounded() / 10
    return r == r.rounded() ? String(Int(r)) : String(r)
}

/// Shared state files written by one-shot commands (the identity key today).
///
/// Each file has one writer at a time: an update takes an exclusive flock on
/// `<file>.lock`, reads the current contents, computes the new ones, writes them to a
/// temporary file, fsyncs it, renames it over the file and fsyncs the directory. Two
/// commands updating the same file take turns, and each sees the other's result; a
/// crash leaves the old file or the new one, never a mix. The `.lock` file exists only
/// while an update runs (or after its process was killed; the next update reuses it).
public enum StateFile {
    /// The lock file guarding `path`.
    public static func lockPath(for path: String) -> String { path + ".lock" }

    /// Runs `body` holding the exclusive lock of `path`, waiting up to `timeout` seconds
    /// for another writer to finish (then `LockBusy`).
    public static func withLock<T>(_ path: String, timeout: Double = 10, _ body: () throws -> T) throws -> T {
        let lockPath = lockPath(for: path)
        guard let lock = try FileLock.acquire(lockPath, mode: .exclusive, timeout: timeout, removeOnRelease: true,
                                              permissions: 0o600) else {
            throw LockBusy(path: lockPath, waited: timeout, holder: FileLock.recordedPID(lockPath))
        }
        defer { lock.release() }
        lock.writeInfo("\(getpid())\n")
        return try body()
    }

    /// Replaces the contents of `path` with `transform(old)` under its lock. `old` is nil
    /// when the file does not exist; a nil result leaves the file as it is. Returns
    /// whether the file was written. Files larger than `limit` are refused.
    @discardableResult
    public static func update(_ path: String, mode: mode_t = 0o644, limit: Int = 1 << 20, timeout: Double = 10,
                              _ transform: ([UInt8]?) throws -> [UInt8]?) throws -> Bool {
        try withLock(path, timeout: timeout) {
            let old: [UInt8]? = Files.exists(path) ? try Files.read(path, limit: limit) : nil
            guard let new = try transform(old) else { return false }
            try Files.writeAtomically(path, new, mode: mode)
            return true
        }
    }
}
