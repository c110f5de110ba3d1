#if canImport(Glibc)
import Glibc
#endif

/// An fsync running on a thread of its own, so the caller can go on with what does
/// not need the file durable yet (a received pack is indexed and checked while the
/// disk catches up), and asks `wait()` before anything that does (installing it).
public final class BackgroundFsync: @unchecked Sendable {
    private let mutex = HeapMutex()
    private var thread: pthread_t?
    private var code: Int32 = 0
    private let fd: Int32

    /// Starts `fsync(fd)` and takes `fd`, which is closed once synced. When no thread
    /// can be started the fsync runs here and now.
    public init(fd: Int32) {
        self.fd = fd
        if let t = Threads.start({ self.run() }) {
            mutex.locked { thread = t }
        } else {
            run()
        }
    }

    private func run() {
        let result = fsync(fd) == 0 ? 0 : errno
        close(fd)
        mutex.locked { code = result }
    }

    /// Waits for the fsync; 0 when it succeeded, else its errno.
    public func wait() -> Int32 {
        let t = mutex.locked { () -> pthread_t? in
            let t = thread
            thread = nil
            return t
        }
        if let t { pthread_join(t, nil) }
        return mutex.locked { code }
    }

    deinit {
        // Never waited for (the sync failed first): the thread ends by itself.
        if let thread { pthread_detach(thread) }
    }
}
