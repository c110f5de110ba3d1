import Foundation
import Glibc
import GutsCrypto
import GutsIdentity
import GutsSupport
import GutsWire

/// The floor for handshakes per CPU-second with one TCP connection per handshake: a
/// responder with no framework at all. One thread, blocking sockets, and the same
/// sans-I/O `Session` that `guts listen` runs (Noise XX, identity proofs, Hello and
/// HelloAck), so it does the same crypto and the same TCP work, and nothing else: no event
/// loop, no pipeline, no node. `guts-bench channel` dials it exactly as it dials the node,
/// and compares what each serves per CPU-second of its own.
///
/// Its CPU is that thread's (user and system, CLOCK_THREAD_CPUTIME_ID). On loopback the
/// receiving side's TCP work runs in the sender's context for both responders alike.
final class MinimalResponder: @unchecked Sendable {
    let endpoint: String
    private let listenFD: Int32
    private let config: SessionConfig
    private let lock = NSLock()
    private var completed = 0
    private var failed = 0
    private var cpuSeconds = 0.0
    private var systemSeconds = 0.0
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    init?() {
        let identity = Ed25519KeyPair.generate()
        guard let peerID = try? PeerID(publicKey: identity.publicKey) else { return nil }
        config = SessionConfig(identity: identity, noiseStatic: .generate(), agent: "guts-bench minimal responder")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in
                bind(fd, s, length) == 0 && listen(fd, 4096) == 0 && getsockname(fd, s, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            return nil
        }
        listenFD = fd
        endpoint = "\(peerID)@127.0.0.1:\(UInt16(bigEndian: address.sin_port))"
        let thread = Thread { [self] in serve() }
        thread.start()
    }

    /// Handshakes completed, failed, and the serving thread's CPU seconds so far (all of
    /// them, and the part spent in the kernel).
    var totals: (completed: Int, failed: Int, cpuSeconds: Double, systemSeconds: Double) {
        lock.lock()
        defer { lock.unlock() }
        return (completed, failed, cpuSeconds, systemSeconds)
    }

    /// Stops accepting and waits for the thread to end.
    func stop() {
        lock.lock()
        stopping = true
        lock.unlock()
        shutdown(listenFD, Int32(SHUT_RDWR))
        finished.wait()
        close(listenFD)
    }

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        var one: Int32 = 1
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                break
            }
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let ok = handshake(fd, &buffer)
            close(fd)
            let cpu = ChannelBench.threadCPUSeconds()
            let system = ChannelBench.threadSystemSeconds()
            lock.lock()
            if ok { completed += 1 } else { failed += 1 }
            cpuSeconds = cpu
            systemSeconds = system
            let stop = stopping
            lock.unlock()
            if stop { break }
        }
        finished.signal()
    }

    /// One responder session up to HelloAck; true if it was established.
    private func handshake(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var session = Session(role: .responder, config: config, now: .now())
        _ = session.start(now: .now())
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return false }
            for event in session.receive(Array(buffer[0..<n]), now: .now()) {
                switch event {
                case let .send(bytes):
                    guard writeAll(fd, bytes) else { return false }
                case .established:
                    return true
                case .closed:
                    return false
                case .message, .discarded:
                    break
                }
            }
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { p -> Int in
                guard let base = p.baseAddress else { return 0 }
                return write(fd, base + offset, p.count - offset)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }
}

extension MinimalResponder {
    /// Handshakes per CPU-second of the responder's `Session` alone, with no sockets: an
    /// initiator and a responder pass their bytes to each other in memory, and only the
    /// responder's calls are timed (thread CPU). Between the crypto limit and the minimal
    /// responder, this separates what the session code costs from what TCP costs.
    static func sessionLimit(seconds: Double) -> Double {
        let server = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "guts-bench")
        let client = SessionConfig(identity: .generate(), noiseStatic: .generate(), capabilities: ["ping"], agent: "guts-bench")
        var count = 0
        var spent = 0.0
        let started = ChannelBench.threadCPUSeconds()
        while ChannelBench.threadCPUSeconds() - started < seconds * 2 && spent < seconds {
            let now = Instant.now()
            var initiator = Session(role: .initiator, config: client, now: now)
            var toResponder = initiator.start(now: now).sentBytes
            var t0 = ChannelBench.threadCPUSeconds()
            var responder = Session(role: .responder, config: server, now: now)
            _ = responder.start(now: now)
            spent += ChannelBench.threadCPUSeconds() - t0
            var established = false
            for _ in 0..<4 where !established && !toResponder.isEmpty {
                t0 = ChannelBench.threadCPUSeconds()
                let out = responder.receive(toResponder, now: now)
                spent += ChannelBench.threadCPUSeconds() - t0
                established = out.contains { if case .established = $0 { true } else { false } }
                toResponder = initiator.receive(out.sentBytes, now: now).sentBytes
            }
            guard established else { return 0 }
            count += 1
        }
        return spent > 0 ? Double(count) / spent : 0
    }
}

private extension Array where Element == SessionEvent {
    /// The bytes of the `.send` events, in order.
    var sentBytes: [UInt8] {
        var bytes: [UInt8] = []
        for case let .send(b) in self { bytes += b }
        return bytes
    }
}

/// The floor for bulk throughput of one encrypted TCP connection on this machine: a
/// sender thread that seals 65,519-byte Noise frames (ChaCha20-Poly1305, in place, 2-byte
/// length headers) sixteen at a time into one buffer and writes it, and a receiver thread
/// that reads and opens them in place. Blocking sockets, no framework, no messages inside
/// the frames. Returns payload bytes per wall-clock second, or nil if the sockets fail.
enum MinimalBulk {
    static func run(megabytes: Int) -> Double? {
        let frame = 65519, batch = 16
        let frames = max(1, megabytes * (1 << 20) / frame)
        guard let (a, b) = loopbackPair() else { return nil }
        defer {
            close(a)
            close(b)
        }
        let key = Random.bytes(32)
        let done = DispatchSemaphore(value: 0)
        final class Outcome: @unchecked Sendable { var ok = false }
        let received = Outcome()
        let receiver = Thread {
            received.ok = receive(fd: b, frames: frames, frame: frame, key: key)
            done.signal()
        }
        let start = Instant.now()
        receiver.start()
        var buffer = [UInt8](repeating: 0x5a, count: batch * (frame + 18))
        var nonce: UInt64 = 0
        var sent = 0
        var ok = true
        key.withUnsafeBytes { k in
            buffer.withUnsafeMutableBytes { out in
                guard let base = out.baseAddress else { return ok = false }
                while sent < frames && ok {
                    let n = min(batch, frames - sent)
                    for i in 0..<n {
                        let at = base + i * (frame + 18)
                        at.storeBytes(of: UInt16(frame + 16).bigEndian, as: UInt16.self)
                        ChaChaPoly.seal(key: k, nonce: nonce, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                        plaintext: at + 2, plaintextCount: frame, output: at + 2)
                        nonce += 1
                    }
                    ok = writeAll(a, base, n * (frame + 18))
                    sent += n
                }
            }
        }
        done.wait()
        guard ok, received.ok else { return nil }
        return Double(frames * frame) / Instant.now().seconds(since: start)
    }

    private static func receive(fd: Int32, frames: Int, frame: Int, key: [UInt8]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var have = 0
        var nonce: UInt64 = 0
        var opened = 0
        return key.withUnsafeBytes { k in
            buffer.withUnsafeMutableBytes { raw in
                guard let base = raw.baseAddress else { return false }
                while opened < frames {
                    let n = read(fd, base + have, raw.count - have)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { return false }
                    have += n
                    var at = 0
                    while have - at >= 2 {
                        let length = Int(UInt16(bigEndian: (base + at).loadUnaligned(as: UInt16.self)))
                        guard have - at >= 2 + length else { break }
                        guard ChaChaPoly.open(key: k, nonce: nonce, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                              ciphertext: base + at + 2, ciphertextCount: length, output: base + at + 2) else { return false }
                        nonce += 1
                        opened += 1
                        at += 2 + length
                    }
                    if at > 0 {
                        memmove(base, base + at, have - at)
                        have -= at
                    }
                }
                return true
            }
        }
    }

    private static func writeAll(_ fd: Int32, _ base: UnsafeMutableRawPointer, _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let n = write(fd, base + offset, count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            offset += n
        }
        return true
    }

    /// A connected TCP pair on 127.0.0.1, both with TCP_NODELAY.
    private static func loopbackPair() -> (Int32, Int32)? {
        let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard l >= 0 else { return nil }
        defer { close(l) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let a = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in
                bind(l, s, length) == 0 && listen(l, 1) == 0 && getsockname(l, s, &length) == 0 && connect(a, s, length) == 0
            }
        }
        let b = connected ? accept(l, nil, nil) : -1
        guard a >= 0, b >= 0 else {
            if a >= 0 { close(a) }
            return nil
        }
        var one: Int32 = 1
        for fd in [a, b] { _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size)) }
        return (a, b)
    }
}
