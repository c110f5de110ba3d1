#if canImport(Glibc)
import CMalloc
import Glibc
#endif

/// Memory profiling aid: with `GUTS_MEMTRACE` set in the environment, `mark` writes
/// the process's current and peak resident memory (anonymous and file-backed, from
/// /proc/self/status) to stderr with a label, so the phase that holds memory can be
/// found without a heap profiler. Costs one getenv per call otherwise.
public enum MemoryTrace {
    /// Returns the heap's free memory to the system (glibc's malloc_trim, through the
    /// CMalloc shim: the Glibc module does not export it): for long-lived processes after a large piece of
    /// work, so what it freed does not stay resident.
    public static func releaseFreeHeap() {
        #if canImport(Glibc)
        _ = malloc_trim(0)
        #endif
    }

    /// Fixes glibc's mmap threshold at 256 KiB. By default it rises to the size of the
    /// largest mapped block freed (up to 32 MiB), after which the 1 MiB transfer chunks
    /// and large object bodies are carved from the heap, where they fragment it and stay
    /// resident: a listener's memory grew by several MB with each transfer, a syncing
    /// client's peak by about 3 MB. Blocks this large are few, so mapping each costs
    /// little. Called once at start-up, before any threads.
    public static func configureAllocator() {
        #if canImport(Glibc)
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 10)
        #endif
    }

    public static let enabled: Bool = getenv("GUTS_MEMTRACE") != nil
    private static let traceLock = HeapMutex()
    private final class Start: @unchecked Sendable { var start: Instant? }
    private static let traceStart = Start()

    public static func mark(_ label: @autoclosure () -> String) {
        guard enabled else { return }
        let fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return }
        var fields: [String] = []
        for line in String(decoding: buffer[0..<n], as: UTF8.self).split(separator: "\n") {
            for key in ["VmHWM:", "VmRSS:", "RssAnon:", "RssFile:"] where line.hasPrefix(key) {
                let value = line.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? ""
                fields.append("\(key.dropLast())=\(value)")
            }
        }
        // Seconds since the first mark, so a trace is also a time breakdown.
        let now = Instant.now()
        let t = traceLock.locked { () -> Double in
            let start = traceStart.start ?? now
            traceStart.start = start
            return now.seconds(since: start)
        }
        let ms = Int(t * 1000)
        let text = "memtrace \(label()): \(fields.joined(separator: " ")) kB t=\(ms / 1000).\(String(ms % 1000 + 1000).dropFirst())s\n"
        _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }
}
