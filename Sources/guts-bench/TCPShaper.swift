import Foundation
import Glibc

/// A TCP relay with the UDP relay's shaping (rate, one-way delay, bounded queue), so
/// the two transports cross the same kind of path: each direction is released at most
/// at `rate` bits per second, `delay` seconds after it was read. As in the UDP relay,
/// `queueBytes` bounds the bytes waiting for the link (not those in the delay line); a
/// full queue stops reading, and TCP's own flow control pushes back to the sender.
final class TCPShaper: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let targetPort: Int
    private let rate: Double
    private let delay: Double
    private let queueBytes: Int
    private let lock = NSLock()
    private var running = true
    private var threads: [Thread] = []
    private var sockets: [Int32] = []

    init?(targetPort: Int, rate: Double, delay: Double, queueBytes: Int) {
        self.targetPort = targetPort
        self.rate = rate
        self.delay = delay
        self.queueBytes = queueBytes
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { return nil }
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let fd = listener
        guard withUnsafePointer(to: &addr, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }) == 0,
              listen(fd, 16) == 0 else { return nil }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    static func start(targetPort: Int, rate: Double, delay: Double, queueBytes: Int) -> TCPShaper? {
        guard let s = TCPShaper(targetPort: targetPort, rate: rate, delay: delay, queueBytes: queueBytes) else { return nil }
        let t = Thread { s.acceptLoop() }
        s.threads.append(t)
        t.start()
        return s
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    func stop() {
        lock.lock()
        running = false
        let all = sockets
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        for s in all { shutdown(s, Int32(SHUT_RDWR)) }
        while threads.contains(where: { !$0.isFinished }) { usleep(1000) }
        close(listener)
        for s in all { close(s) }
    }

    private func acceptLoop() {
        while isRunning {
            var fds = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, 1, 50) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = in_port_t(UInt16(targetPort).bigEndian)
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard ok == 0 else {
                close(client)
                close(server)
                continue
            }
            var one: Int32 = 1
            for s in [client, server] { setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
            lock.lock()
            sockets += [client, server]
            lock.unlock()
            for (from, to) in [(client, server), (server, client)] {
                let t = Thread { [self] in pump(from: from, to: to) }
                lock.lock()
                threads.append(t)
                lock.unlock()
                t.start()
            }
        }
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private func pump(from: Int32, to: Int32) {
        var queue: [(at: Double, bytes: [UInt8])] = []
        var lastRelease = 0.0
        var buffer = [UInt8](repeating: 0, count: 16384)
        var open = true
        while isRunning && (open || !queue.isEmpty) {
            let now0 = Self.now()
            let due = queue.first.map { max(0, min(0.02, $0.at - now0)) } ?? 0.02
            if due > 0 && due < 0.001 {
                // poll counts whole milliseconds: sleep the rest rather than spin a core.
                var slice = timespec(tv_sec: 0, tv_nsec: Int(due * 1e9))
                nanosleep(&slice, nil)
            }
            let wait = Int(due * 1000)
            let waiting = lastRelease > now0 ? Int((lastRelease - now0) * rate / 8) : 0
            // Full: poll again when the link has taken a little.
            let full = waiting >= queueBytes
            var fds = [pollfd(fd: from, events: Int16(open && !full ? POLLIN : 0), revents: 0)]
            _ = poll(&fds, 1, Int32(full ? min(1, wait) : wait))
            if fds[0].revents & Int16(POLLIN | POLLHUP) != 0 {
                let n = read(from, &buffer, min(buffer.count, max(1, queueBytes - waiting)))
                if n <= 0 {
                    open = false
                } else {
                    let now = Self.now()
                    let start = max(now, lastRelease)
                    lastRelease = start + Double(n * 8) / rate
                    queue.append((lastRelease + delay, Array(buffer[0..<n])))
                }
            }
            let now = Self.now()
            while let first = queue.first, first.at <= now {
                queue.removeFirst()
                var sent = 0
                while sent < first.bytes.count {
                    let m = first.bytes[sent...].withUnsafeBufferPointer { write(to, $0.baseAddress, $0.count) }
                    if m <= 0 { return }
                    sent += m
                }
            }
        }
        shutdown(to, Int32(SHUT_WR))
    }
}
