#if canImport(Glibc)
import Glibc
#endif

/// Starting a POSIX thread that runs a closure: the one place Sources do it.
public enum Threads {
    /// Starts `body` on a new thread and returns it (to join or detach), or nil when no
    /// thread could be started, in which case `body` has not run and is released.
    public static func start(_ body: @escaping () -> Void) -> pthread_t? {
        final class Box: @unchecked Sendable {
            let body: () -> Void
            init(_ body: @escaping () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            guard let raw else { return nil }
            Unmanaged<Box>.fromOpaque(raw).takeRetainedValue().body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return nil
        }
        return thread
    }
}
