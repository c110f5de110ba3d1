import NIOConcurrencyHelpers
import NIOPosix

/// A bounded pool for blocking work (disk, CPU, a sync that waits on the network): a fixed
/// number of threads and a fixed number of jobs admitted at once, running or queued. A
/// job beyond that is refused at once (`submit` returns false), never queued without
/// bound; no job ever runs on an event loop.
final class BlockingExecutor: Sendable {
    let name: String
    let limit: Int
    private let pool: NIOThreadPool
    private let admitted = NIOLockedValueBox(0)

    init(name: String, threads: Int, limit: Int) {
        self.name = name
        self.limit = max(1, limit)
        pool = NIOThreadPool(numberOfThreads: max(1, threads))
        pool.start()
    }

    /// Jobs admitted (queued or running).
    var load: Int { admitted.withLockedValue { $0 } }

    /// Runs `job` on a pool thread; false when `limit` jobs are already admitted.
    @discardableResult
    func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        let ok = admitted.withLockedValue { n -> Bool in
            guard n < limit else { return false }
            n += 1
            return true
        }
        guard ok else { return false }
        pool.submit { [admitted] state in
            defer { admitted.withLockedValue { $0 -= 1 } }
            if state == .active { job() }
        }
        return true
    }

    func shutdown() { try? pool.syncShutdownGracefully() }
}
