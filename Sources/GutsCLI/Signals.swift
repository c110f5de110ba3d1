#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Turns SIGINT/SIGTERM into an orderly stop. The signals are blocked in every thread
/// (call `install()` before any thread starts, so event-loop threads inherit the mask)
/// and a dedicated thread receives them with sigwait(3).
final class SignalWatcher: @unchecked Sendable {
    private let mutex = HeapMutex()
    private let cond = HeapCondition()
    private var signal: Int32 = 0
    private var handlers: [@Sendable (Int32) -> Void] = []

    static func install() -> SignalWatcher {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let watcher = SignalWatcher()
        var tid = pthread_t()
        let arg = Unmanaged.passRetained(watcher).toOpaque()
        pthread_create(&tid, nil, { raw in
            guard let raw else { return nil }
            let w = Unmanaged<SignalWatcher>.fromOpaque(raw).takeRetainedValue()
            w.loop()
            return nil
        }, arg)
        pthread_detach(tid)
        return watcher
    }

    private init() {}

    private func loop() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        while true {
            var sig: Int32 = 0
            guard sigwait(&set, &sig) == 0 else { continue }
            let hs = mutex.locked {
                if signal == 0 { signal = sig }
                cond.broadcast()
                return handlers
            }
            for h in hs { h(sig) }
        }
    }

    /// The first signal received, or 0.
    var received: Int32 { mutex.locked { signal } }

    /// Runs `handler` on the signal thread when a signal arrives (immediately if one already has).
    func onSignal(_ handler: @escaping @Sendable (Int32) -> Void) {
        let already = mutex.locked {
            handlers.append(handler)
            return signal
        }
        if already != 0 { handler(already) }
    }

    /// Blocks until a signal arrives; returns it.
    func wait() -> Int32 {
        mutex.locked {
            while signal == 0 { cond.wait(mutex) }
            return signal
        }
    }

    /// Sleeps up to `seconds`, returning early (true) if a signal arrives.
    func sleep(_ seconds: Double) -> Bool {
        let deadline = Instant.now().adding(seconds: seconds)
        return mutex.locked {
            while signal == 0 && Instant.now() < deadline { cond.wait(mutex, until: deadline) }
            return signal != 0
        }
    }
}

/// Watches standard output for its reader going away (a closed pipe reports POLLERR,
/// a hung-up terminal POLLHUP) and calls a handler once, so streaming commands end
/// promptly rather than at their next write.
final class StdoutWatcher: @unchecked Sendable {
    private let mutex = HeapMutex()
    private var stopped = false
    private var hungUp = false
    private let handler: @Sendable () -> Void

    private init(handler: @escaping @Sendable () -> Void) { self.handler = handler }

    /// Starts the watching thread.
    static func start(_ handler: @escaping @Sendable () -> Void) -> StdoutWatcher {
        let watcher = StdoutWatcher(handler: handler)
        var tid = pthread_t()
        let arg = Unmanaged.passRetained(watcher).toOpaque()
        let rc = pthread_create(&tid, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<StdoutWatcher>.fromOpaque(raw).takeRetainedValue().loop()
            return nil
        }, arg)
        if rc == 0 { pthread_detach(tid) } else { Unmanaged<StdoutWatcher>.fromOpaque(arg).release() }
        return watcher
    }

    /// Whether the reader went away.
    var fired: Bool { mutex.locked { hungUp } }

    /// Stops watching (within a poll interval).
    func stop() { mutex.locked { stopped = true } }

    private func loop() {
        while !mutex.locked({ stopped }) {
            var fds = [pollfd(fd: 1, events: 0, revents: 0)]
            let rc = poll(&fds, 1, 200)
            if rc < 0 && errno != EINTR { return }
            if rc > 0, fds[0].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 {
                let go = mutex.locked { () -> Bool in
                    guard !stopped else { return false }
                    hungUp = true
                    return true
                }
                if go { handler() }
                return
            }
        }
    }
}
