import Foundation
import GutsSupport
import XCTest

final class LogSinkTests: XCTestCase {
    override func setUp() {
        signal(SIGPIPE, SIG_IGN)  // a write to a closed pipe must fail, not end the test process
    }

    /// A pipe with the smallest buffer the kernel allows (one page), so a few lines fill it.
    func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw NSError(domain: "pipe", code: Int(errno)) }
        _ = fcntl(fds[1], 1031 /* F_SETPIPE_SZ */, 4096)
        let flags = fcntl(fds[0], F_GETFL)
        _ = fcntl(fds[0], F_SETFL, flags | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    /// Reads what is available now (non-blocking).
    func readAvailable(_ fd: Int32) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return out
    }

    func testProducerNeverBlocksOnAnUnreadPipeCountsDropsAndReportsThem() throws {
        let (r, w) = try makePipe()
        defer {
            close(r)
            close(w)
        }
        let sink = LogSink(fd: w, maxBytes: 64 << 10, maxLines: 100)
        let total = 2000
        let line = String(repeating: "x", count: 80)

        // The producer runs on its own thread so a regression (a blocking write) fails
        // the test instead of hanging it.
        let done = DispatchSemaphore(value: 0)
        let started = Date()
        Thread {
            for i in 0..<total { sink.write("line \(i) \(line)") }
            done.signal()
        }.start()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "the producer blocked on a full pipe")
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertLessThan(elapsed, 5)
        let dropped = sink.droppedLines
        XCTAssertGreaterThan(dropped, total / 2, "a 4 KiB pipe and a 100-line queue cannot hold 2000 lines")

        // The reader comes back: everything accepted is written in order, then the drop
        // count, then the next line.
        var output: [UInt8] = []
        XCTAssertTrue(eventually {
            output += readAvailable(r)
            return sink.flush(timeout: 0.01)
        }, "the queue never drained")
        sink.write("after the drops")
        XCTAssertTrue(eventually {
            output += readAvailable(r)
            return String(decoding: output, as: UTF8.self).hasSuffix("after the drops\n")
        })
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        // Drops are reported where they happened in the stream, each report counting those
        // since the previous one. Usually that is one report at the end; when the writer
        // thread starts late, the queue overflows before the pipe fills and earlier reports
        // precede the rest (11 + 1,880 once under load).
        let reports = lines.filter { $0.hasSuffix(" log lines dropped)") }
        let counts = reports.compactMap { Int($0.dropFirst().split(separator: " ")[0]) }
        XCTAssertEqual(counts.count, reports.count, "\(reports)")
        XCTAssertEqual(counts.reduce(0, +), dropped, "every drop is reported once: \(reports)")
        XCTAssertEqual(lines.last, "after the drops")
        XCTAssertTrue(lines.dropLast().last?.hasSuffix(" log lines dropped)") ?? false, "the last drops are reported before the next line")
        let written = lines.filter { $0.hasPrefix("line ") }
        XCTAssertEqual(written.count + dropped, total, "every line is either written or counted")
        let numbers = written.compactMap { Int($0.split(separator: " ")[1]) }
        XCTAssertEqual(numbers, numbers.sorted(), "order is kept")
        XCTAssertEqual(numbers.first, 0)
        XCTAssertEqual(sink.droppedLines, dropped, "the total does not change")
        XCTAssertTrue(sink.close(timeout: 5))
    }

    func testCloseFlushesAndIsBoundedWhenNobodyReads() throws {
        let (r, w) = try makePipe()
        defer {
            close(r)
            close(w)
        }
        // Read side drained: everything arrives.
        let sink = LogSink(fd: w)
        sink.write("one")
        sink.write("two")
        XCTAssertTrue(sink.close(timeout: 5))
        XCTAssertEqual(String(decoding: readAvailable(r), as: UTF8.self), "one\ntwo\n")
        sink.write("after close")
        usleep(50_000)
        XCTAssertEqual(readAvailable(r), [], "the writer has ended")

        // Nobody reads: close gives up after its timeout.
        let stuck = LogSink(fd: w)
        for i in 0..<200 { stuck.write("filler \(i) " + String(repeating: "y", count: 100)) }
        let started = Date()
        XCTAssertFalse(stuck.close(timeout: 0.3))
        let waited = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(waited, 0.25)
        XCTAssertLessThan(waited, 3)
        // Drain, so the writer thread ends before the pipe is closed.
        XCTAssertTrue(eventually {
            _ = readAvailable(r)
            return stuck.flush(timeout: 0.01)
        })
    }

    func testLongLinesAreCutAtACharacterBoundary() throws {
        let (r, w) = try makePipe()
        defer {
            close(r)
            close(w)
        }
        let sink = LogSink(fd: w, maxLineBytes: 40)
        sink.write(String(repeating: "é", count: 100))
        XCTAssertTrue(sink.close(timeout: 5))
        let text = try XCTUnwrap(decodeUTF8(readAvailable(r)), "still valid UTF-8")
        XCTAssertTrue(text.hasSuffix(" [truncated]\n"), text)
        XCTAssertLessThanOrEqual(text.utf8.count, 41)
    }

    func testLogFormatsCarryTimeAndLevel() throws {
        let t = 1_764_612_329.123  // 2025-12-01T18:05:29.123Z
        XCTAssertEqual(LogFormat.rfc3339(t), "2025-12-01T18:05:29.123Z")
        XCTAssertEqual(LogFormat.rfc3339(0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(LogFormat.render(.text, level: "info", "hello", now: t), "hello", "one-shot diagnostics stay plain")
        XCTAssertEqual(LogFormat.render(.text, level: "info", "hello", stamped: true, now: t), "2025-12-01T18:05:29.123Z info hello")
        let json = LogFormat.render(.json, level: "error", "a \"quoted\"\nline", fields: ["command": "sync"], now: t)
        XCTAssertEqual(json, #"{"time":"2025-12-01T18:05:29.123Z","level":"error","message":"a \"quoted\"\nline","fields":{"command":"sync"}}"#)
        let parsed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        XCTAssertEqual(parsed["message"] as? String, "a \"quoted\"\nline")
        XCTAssertEqual((parsed["fields"] as? [String: String])?["command"], "sync")
    }
}
