#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Log lines written to a file descriptor by a thread of their own, so that whoever
/// logs never waits for the descriptor.
///
/// A node logs what its peers make it do. If its standard error is a pipe that nobody
/// reads (or a slow terminal), a blocking write there would stall the thread that
/// logged, and with it the event loop serving every other peer. Here producers only
/// append to a bounded in-memory queue under a short lock; a dedicated writer thread
/// drains the queue with blocking writes. When the queue is full, new lines are dropped
/// and counted, and the next line that gets in is preceded by `(N log lines dropped)`.
public final class LogSink: @unchecked Sendable {
    public let fd: Int32
    /// Most bytes held in memory at once (queued plus being written).
    public let maxBytes: Int
    /// Most lines held in memory at once (queued plus being written).
    public let maxLines: Int
    /// Longer lines are cut to this many bytes.
    public let maxLineBytes: Int

    private let mutex = HeapMutex()
    private let work = HeapCondition()
    private let drained = HeapCondition()
    // Everything below is guarded by `mutex`.
    private var queue: [[UInt8]] = []
    private var queuedBytes = 0
    private var inFlightBytes = 0
    private var inFlightLines = 0
    private var unreported = 0
    private var dropped = 0
    private var writing = false
    private var closing = false
    private var finished = false

    /// Starts the writer thread for `fd` (which the sink does not close).
    public init(fd: Int32, maxBytes: Int = 4 << 20, maxLines: Int = 10_000, maxLineBytes: Int = 16 << 10) {
        self.fd = fd
        self.maxBytes = max(1, maxBytes)
        self.maxLines = max(1, maxLines)
        self.maxLineBytes = max(16, maxLineBytes)
        // The thread owns a reference until it ends, so the sink outlives its queue.
        // Without a thread, lines are still accepted and counted, never written.
        if let thread = Threads.start({ self.drain() }) { pthread_detach(thread) }
    }

    /// Queues `line` (a newline is added) without waiting for the descriptor; drops and
    /// counts it when the queue is full. Never blocks beyond a short lock.
    public func write(_ line: String) {
        var bytes = Array(line.utf8)
        if bytes.count > maxLineBytes { bytes = Self.truncated(bytes, to: maxLineBytes) }
        bytes.append(UInt8(ascii: "\n"))
        mutex.locked {
            guard !closing else { return }
            var note: [UInt8] = []
            if unreported > 0 { note = Self.dropNote(unreported) }
            guard fits(lines: note.isEmpty ? 1 : 2, bytes: bytes.count + note.count) else {
                unreported += 1
                dropped += 1
                return
            }
            if !note.isEmpty {
                enqueue(note)
                unreported = 0
            }
            enqueue(bytes)
            work.signal()
        }
    }

    /// Lines dropped so far because the queue was full.
    public var droppedLines: Int { mutex.locked { dropped } }

    /// Waits up to `timeout` seconds for every queued line to be written (a pending
    /// drop count is queued first); true when the queue is empty.
    @discardableResult
    public func flush(timeout: Double) -> Bool {
        let deadline = Instant.now().adding(seconds: timeout)
        return mutex.locked {
            if unreported > 0 {
                // Reported even when the queue is full: the count is small and final.
                enqueue(Self.dropNote(unreported))
                unreported = 0
                work.signal()
            }
            while (!queue.isEmpty || writing) && !finished {
                if !drained.wait(mutex, until: deadline) && Instant.now() >= deadline { break }
            }
            return queue.isEmpty && !writing
        }
    }

    /// Flushes (bounded by `timeout`) and lets the writer thread end once the queue is
    /// empty; lines written after `close` are discarded. True when everything was written.
    @discardableResult
    public func close(timeout: Double) -> Bool {
        let done = flush(timeout: timeout)
        mutex.locked {
            closing = true
            work.signal()
        }
        return done
    }

    // MARK: - Internals (mutex held)

    private func fits(lines: Int, bytes: Int) -> Bool {
        queue.count + inFlightLines + lines <= maxLines && queuedBytes + inFlightBytes + bytes <= maxBytes
    }

    private func enqueue(_ bytes: [UInt8]) {
        queue.append(bytes)
        queuedBytes += bytes.count
    }

    static func dropNote(_ n: Int) -> [UInt8] {
        Array("(\(n) log line\(n == 1 ? "" : "s") dropped)\n".utf8)
    }

    /// The first `limit` bytes (cut back to a character boundary) and a marker.
    static func truncated(_ bytes: [UInt8], to limit: Int) -> [UInt8] {
        let marker = Array(" [truncated]".utf8)
        var end = max(0, limit - marker.count)
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }
        return Array(bytes[..<end]) + marker
    }

    // MARK: - Writer thread

    private func drain() {
        mutex.lock()
        while true {
            while queue.isEmpty && !closing { work.wait(mutex) }
            if queue.isEmpty { break }
            let batch = queue
            queue = []
            inFlightBytes = queuedBytes
            inFlightLines = batch.count
            queuedBytes = 0
            writing = true
            mutex.unlock()

            var buffer: [UInt8] = []
            buffer.reserveCapacity(batch.reduce(0) { $0 + $1.count })
            for line in batch { buffer += line }
            // Errors (EPIPE: the reader is gone) lose the lines; there is nowhere to say so.
            Files.writeAll(fd, buffer)

            mutex.lock()
            inFlightBytes = 0
            inFlightLines = 0
            writing = false
            if queue.isEmpty { drained.broadcast() }
        }
        finished = true
        drained.broadcast()
        mutex.unlock()
    }
}

/// How log lines look on standard error (`--log-format`, guts(1) LOGGING).
public enum LogFormat: String, Sendable, CaseIterable {
    /// Text: a long-running command's log lines start with the time (RFC 3339, UTC)
    /// and the level; a one-shot command's diagnostics are plain lines.
    case text
    /// One JSON object per line: {"time", "level", "message", "fields"}.
    case json

    /// A log line in `format`. `stamped` adds the time and level to a text line.
    public static func render(_ format: LogFormat, level: String, _ message: String, stamped: Bool = false,
                              fields: KeyValuePairs<String, String> = [:], now: Double = unixTime()) -> String {
        switch format {
        case .text:
            return stamped ? "\(rfc3339(now)) \(level) \(message)" : message
        case .json:
            var f = "{"
            for (i, (k, v)) in fields.enumerated() { f += (i == 0 ? "" : ",") + JSON.quote(k) + ":" + JSON.quote(v) }
            f += "}"
            return "{\"time\":\(JSON.quote(rfc3339(now))),\"level\":\(JSON.quote(level)),\"message\":\(JSON.quote(message)),\"fields\":\(f)}"
        }
    }

    /// `seconds` since the Unix epoch as RFC 3339 UTC with milliseconds:
    /// 2026-12-01T18:05:29.123Z.
    public static func rfc3339(_ seconds: Double) -> String {
        let ms = UInt64(max(0, seconds * 1000))
        return rfc3339(milliseconds: ms)
    }

    public static func rfc3339(milliseconds ms: UInt64) -> String {
        var t = time_t(ms / 1000)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func pad(_ v: Int32, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(tmv.tm_year + 1900, 4))-\(pad(tmv.tm_mon + 1, 2))-\(pad(tmv.tm_mday, 2))T\(pad(tmv.tm_hour, 2)):\(pad(tmv.tm_min, 2)):\(pad(tmv.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }
}
