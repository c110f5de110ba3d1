import Foundation
import XCTest

/// Ways for a test to wait for something without sleeping in its place.
///
/// - A process's exit is an event: `ExitSignal` turns Foundation's termination callback
///   into a readable pipe, so a wait can block on it with `poll`.
/// - Output is an event: `FileWatch` wakes on every write to a process's output files
///   (inotify), so a wait for a log line or an answer re-reads only when something changed.
/// - What has no event to wait on (a command that succeeds once the network has
///   converged, a counter inside another object) is asked again with `eventually`, whose
///   pause between attempts is the only sleep and is named as such.

/// A pipe that becomes readable once its process has exited. The termination handler
/// keeps the pipe alive, so a late callback never writes into a descriptor since reused.
final class ExitSignal: @unchecked Sendable {
    private let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) != 0 { fds = [-1, -1] }
        for fd in fds where fd >= 0 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        if readFD >= 0 { close(readFD) }
        if writeFD >= 0 { close(writeFD) }
    }

    /// Installs the callback on `process`; call before `run()`.
    func attach(to process: Process) {
        process.terminationHandler = { [self] _ in
            var byte: UInt8 = 1
            _ = write(self.writeFD, &byte, 1)
        }
    }

    /// The descriptor to poll for readability (the pipe is never drained).
    var descriptor: Int32 { readFD }

    /// Blocks until the process has exited or `timeout` seconds passed; true if it exited.
    func wait(timeout: Double) -> Bool {
        var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let ms = Int32(max(0, min(Double(Int32.max), deadline.timeIntervalSinceNow * 1000)).rounded(.up))
            let r = poll(&pfd, 1, ms)
            if r > 0 { return true }
            if r == 0 || (r < 0 && errno != EINTR) { return false }
        }
    }
}

/// Wakes whenever one of some files is written (inotify, IN_MODIFY).
final class FileWatch {
    private let fd: Int32

    /// Watches `paths`; the watch is in place when this returns, so a check made after it
    /// cannot miss a write that follows.
    init(_ paths: [String]) {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        for path in paths where fd >= 0 { _ = inotify_add_watch(fd, path, UInt32(IN_MODIFY)) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Blocks until a watched file is written, `alsoReadable` becomes readable, or
    /// `deadline`; drains the pending notifications. Without inotify it returns after a
    /// short pause, so callers still terminate (and poll, as before).
    func wait(until deadline: Date, alsoReadable other: Int32 = -1) {
        var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0), pollfd(fd: other, events: Int16(POLLIN), revents: 0)]
        let ms = Int32(max(0, min(Double(Int32.max), deadline.timeIntervalSinceNow * 1000)).rounded(.up))
        guard fd >= 0 else {
            _ = poll(&fds[1], 1, min(ms, 20))
            return
        }
        if poll(&fds, other >= 0 ? 2 : 1, ms) > 0, fds[0].revents & Int16(POLLIN) != 0 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while read(fd, &buffer, buffer.count) > 0 {}
        }
    }
}

/// Asks `condition` until it holds or `timeout` seconds pass, pausing `every` seconds
/// between attempts; for conditions that have no event to wait on (see above).
/// Returns whether it held.
@discardableResult
func eventually(timeout: Double = 10, every: Double = 0.02, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(useconds_t(every * 1_000_000))
    }
    return try condition()
}
