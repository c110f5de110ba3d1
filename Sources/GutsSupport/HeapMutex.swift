#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex that lives on the heap, allocated once and never moved.
///
/// A `pthread_mutex_t` must not change address while in use, and Swift gives no such
/// guarantee for a value stored inline in a struct or class (`&storedProperty` may be a
/// temporary copy). This class owns a pointer allocated in `init` and destroyed in
/// `deinit`, so the mutex stays where pthread put it.
public final class HeapMutex: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        pointer = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pointer.initialize(to: pthread_mutex_t())
        pthread_mutex_init(pointer, nil)
    }

    deinit {
        pthread_mutex_destroy(pointer)
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    public func lock() { pthread_mutex_lock(pointer) }
    public func unlock() { pthread_mutex_unlock(pointer) }

    /// Runs `body` with the mutex held.
    @discardableResult
    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(pointer)
        defer { pthread_mutex_unlock(pointer) }
        return try body()
    }
}

/// A pthread condition variable on the heap (see `HeapMutex`), used with one `HeapMutex`.
public final class HeapCondition: @unchecked Sendable {
    private let pointer: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        pointer = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        pointer.initialize(to: pthread_cond_t())
        // Timed waits measure against CLOCK_MONOTONIC, so wall-clock jumps do not shorten
        // or stretch them.
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(pointer, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(pointer)
        pointer.deinitialize(count: 1)
        pointer.deallocate()
    }

    /// Waits for a signal; `mutex` must be held, and is held again on return.
    public func wait(_ mutex: HeapMutex) {
        pthread_cond_wait(pointer, mutex.pointer)
    }

    /// Waits for a signal until the monotonic clock reaches `deadline`; false on timeout.
    @discardableResult
    public func wait(_ mutex: HeapMutex, until deadline: Instant) -> Bool {
        var ts = timespec(tv_sec: Int(deadline.nanoseconds / 1_000_000_000), tv_nsec: Int(deadline.nanoseconds % 1_000_000_000))
        return pthread_cond_timedwait(pointer, mutex.pointer, &ts) != ETIMEDOUT
    }

    public func signal() { pthread_cond_signal(pointer) }
    public func broadcast() { pthread_cond_broadcast(pointer) }
}
