#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGINT/SIGTERM into an orderly stop. The signals are blocked in every thread
/// (call `install()` before any thread starts, so event-loop threads inherit the mask)
/// and a dedicated thread receives them with sigwait(3).
final class SignalWatcher: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
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

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
    }

    private func loop() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        while true {
            var sig: Int32 = 0
            guard sigwait(&set, &sig) == 0 else { continue }
            pthread_mutex_lock(&mutex)
            if signal == 0 { signal = sig }
            let hs = handlers
            pthread_cond_broadcast(&cond)
            pthread_mutex_unlock(&mutex)
            for h in hs { h(sig) }
        }
    }

    /// The first signal received, or 0.
    var received: Int32 {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return signal
    }

    /// Runs `handler` on the signal thread when a signal arrives (immediately if one already has).
    func onSignal(_ handler: @escaping @Sendable (Int32) -> Void) {
        pthread_mutex_lock(&mutex)
        handlers.append(handler)
        let already = signal
        pthread_mutex_unlock(&mutex)
        if already != 0 { handler(already) }
    }

    /// Blocks until a signal arrives; returns it.
    func wait() -> Int32 {
        pthread_mutex_lock(&mutex)
        while signal == 0 { pthread_cond_wait(&cond, &mutex) }
        let s = signal
        pthread_mutex_unlock(&mutex)
        return s
    }

    /// Sleeps up to `seconds`, returning early (true) if a signal arrives.
    func sleep(_ seconds: Double) -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let total = Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9 + max(0, seconds)
        var deadline = timespec(tv_sec: Int(total), tv_nsec: Int((total - Double(Int(total))) * 1e9))
        pthread_mutex_lock(&mutex)
        while signal == 0 {
            if pthread_cond_timedwait(&cond, &mutex, &deadline) == ETIMEDOUT { break }
        }
        let s = signal
        pthread_mutex_unlock(&mutex)
        return s != 0
    }
}
