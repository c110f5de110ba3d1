#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport

/// The limits a sync puts on the transfer itself, as a pure state machine: time in,
/// decisions out. `SyncClient` feeds it the clock, each chunk's size and the free disk
/// space; tests feed it made-up ones.
///
/// - No progress: only pack bytes count. Empty Objects messages and unrelated messages
///   do not move the clock, so a peer cannot keep a sync alive by talking.
/// - Deadline: the whole sync (refs, transfer, verification) ends by then, whatever
///   the peer does.
/// - Pack size: at most `maxPackBytes`, checked as bytes arrive.
/// - Disk: at least `minFreeBytes` stay free, checked before the transfer and after
///   every `diskCheckInterval` bytes written.
public struct TransferGuard: Sendable {
    public let noProgressTimeout: Double
    public let deadline: Instant?
    /// The deadline in seconds from the start (for messages).
    public let deadlineSeconds: Double?
    public let maxPackBytes: Int
    public let minFreeBytes: Int
    public let diskCheckInterval: Int
    public private(set) var bytes = 0
    public private(set) var lastProgress: Instant
    private var sinceDiskCheck = 0

    public init(noProgressTimeout: Double, deadlineSeconds: Double?, started: Instant, maxPackBytes: Int,
                minFreeBytes: Int, diskCheckInterval: Int = 8 << 20) {
        self.noProgressTimeout = noProgressTimeout
        self.deadlineSeconds = deadlineSeconds
        deadline = deadlineSeconds.map { started.adding(seconds: $0) }
        self.maxPackBytes = maxPackBytes
        self.minFreeBytes = minFreeBytes
        self.diskCheckInterval = max(1, diskCheckInterval)
        lastProgress = started
    }

    /// The transfer starts now (the request was sent): the no-progress clock starts.
    public mutating func start(at now: Instant) {
        lastProgress = now
        bytes = 0
        sinceDiskCheck = 0
    }

    /// How long to wait for the next message at `now`, or the failure when no time is
    /// left: the deadline passed, or no pack bytes came for `noProgressTimeout`.
    public func waitLimit(at now: Instant, waitingFor what: String) throws -> Double {
        if let failure = SyncClient.deadlineFailure(deadline, deadlineSeconds, at: now, doing: "waiting for \(what)") {
            throw failure
        }
        let left = noProgressTimeout - now.seconds(since: lastProgress)
        guard left > 0 else {
            throw SyncFailure.timeout("no pack data for \(SyncClient.formatSeconds(noProgressTimeout)) s while waiting for \(what)"
                                      + (bytes > 0 ? " (\(bytes) bytes received)" : ""))
        }
        if let deadline { return min(left, max(0.001, deadline.seconds(since: now))) }
        return left
    }

    /// Records a chunk of `count` pack bytes at `now`. Throws when the pack grows past
    /// its limit; returns true when the free disk space should be checked now.
    public mutating func received(_ count: Int, at now: Instant) throws -> Bool {
        guard count > 0 else { return false }
        bytes += count
        lastProgress = now
        guard bytes <= maxPackBytes else {
            throw SyncFailure.budget(limit: .packSize, "peer sent more than \(maxPackBytes) bytes of objects (the most one sync accepts)")
        }
        sinceDiskCheck += count
        if sinceDiskCheck >= diskCheckInterval {
            sinceDiskCheck = 0
            return true
        }
        return false
    }

    /// Checks free space (`free` bytes available; nil when unknown: not checked) at
    /// `path`, before or during the transfer.
    public func checkDisk(free: Int?, path: String) throws {
        guard let free, free < minFreeBytes else { return }
        let during = bytes > 0 ? " after receiving \(bytes) bytes" : ""
        throw SyncFailure.local("only \(free) bytes free on the file system of \(path)\(during); a sync keeps at least \(minFreeBytes) free (min-free-disk)")
    }

    /// Bytes available to unprivileged users on the file system holding `path`.
    public static func freeBytes(_ path: String) -> Int? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        let (total, overflow) = Int(s.f_bavail).multipliedReportingOverflow(by: Int(s.f_frsize))
        return overflow ? Int.max : total
    }
}
