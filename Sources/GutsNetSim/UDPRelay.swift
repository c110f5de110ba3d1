import Glibc
import Synchronization

/// A UDP relay between QUIC clients and one server port, for the integration tests and
/// guts-bench (a network simulator, not part of `guts`): it drops, reorders, delays and
/// rate-limits datagrams, all from a seeded generator. Clients send to `port`; the server
/// sees the relay's second socket as its client. Loopback only.
public final class UDPRelay: @unchecked Sendable {
    public struct Options: Sendable {
        public var dropPercent = 0.0
        public var reorderPercent = 0.0
        /// One-way delay in seconds, each direction.
        public var delay = 0.0
        /// Bits per second each direction (nil: unlimited). A router's buffer before the
        /// link: a datagram that would find more than `queueBytes` still waiting to go onto
        /// the link is dropped (tail drop). Bytes already on the link, in the `delay`
        /// part of the path, do not count against it (a router holds no copy of them).
        public var rate: Double?
        public var queueBytes = 1 << 20

        public init() {}
    }

    public let port: Int
    public let seed: UInt64
    private let front: Int32
    /// The socket that talks to the server; `rebind` replaces it (the old ones stay open
    /// and are still read, so the server's late packets are relayed).
    private var back: Int32
    private var oldBacks: [Int32] = []
    private var target = sockaddr_in()
    private var client: sockaddr_in?
    private let options: Options
    /// Whether the relay thread goes on, and what it counted (read from other threads).
    private let shared = Mutex(Shared())
    private var thread: pthread_t?
    private var rng: UInt64
    private struct Shared {
        var running = true
        /// A source address to move to (`rebind`), taken by the relay thread.
        var rebind: String?
        var rebound = 0
        var dropped = 0
        var reordered = 0
        var forwarded = 0
    }

    /// Datagrams dropped (at random or by the queue limit), held back to be reordered, and sent on.
    public var dropped: Int { shared.withLock { $0.dropped } }
    public var reordered: Int { shared.withLock { $0.reordered } }
    public var forwarded: Int { shared.withLock { $0.forwarded } }

    private struct Pending {
        var at: Double
        var bytes: [UInt8]
        var toServer: Bool
    }
    private var queue: [Pending] = []
    private var held: [Pending] = []
    /// The longest a datagram held back for reordering waits for one to overtake it.
    static let maxHold = 0.02
    /// When each direction's link finishes sending what it has taken (before the delay).
    private var linkFree: [Bool: Double] = [true: 0, false: 0]

    private init?(targetPort: Int, options: Options, seed: UInt64) {
        self.options = options
        self.seed = seed
        rng = seed
        front = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        back = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard front >= 0, back >= 0 else { return nil }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        for fd in [front, back] {
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard ok == 0 else { return nil }
            var size: Int32 = 4 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let frontFD = front
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(frontFD, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
        target.sin_family = sa_family_t(AF_INET)
        target.sin_addr.s_addr = inet_addr("127.0.0.1")
        target.sin_port = in_port_t(UInt16(targetPort).bigEndian)
    }

    /// A relay to 127.0.0.1:`targetPort`, already forwarding.
    public static func start(targetPort: Int, options: Options, seed: UInt64) -> UDPRelay? {
        guard let relay = UDPRelay(targetPort: targetPort, options: options, seed: seed) else { return nil }
        let context = Unmanaged.passRetained(relay).toOpaque()
        var id = pthread_t()
        let created = pthread_create(&id, nil, { context in
            guard let context else { return nil }
            Unmanaged<UDPRelay>.fromOpaque(context).takeRetainedValue().run()
            return nil
        }, context)
        guard created == 0 else {
            Unmanaged<UDPRelay>.fromOpaque(context).release()
            close(relay.front)
            close(relay.back)
            return nil
        }
        relay.thread = id
        return relay
    }

    /// Stops forwarding (within 10 ms) and closes its sockets.
    public func stop() {
        shared.withLock { $0.running = false }
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
            close(front)
            close(back)
            for fd in oldBacks { close(fd) }
        }
    }

    /// From now on, sends to the server from a new socket on `host` (a loopback address such
    /// as 127.0.0.2): the server sees its client move, as after a NAT rebinding or a
    /// connection migration; the client does not notice. Returns once the relay moved.
    public func rebind(to host: String, timeout: Double = 5) -> Bool {
        let before = shared.withLock { s -> Int in
            s.rebind = host
            return s.rebound
        }
        let deadline = Self.now() + timeout
        while Self.now() < deadline {
            if shared.withLock({ $0.rebound }) > before { return true }
            usleep(1000)
        }
        return false
    }

    private func moveBack(to host: String) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { return }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr(host)
        addr.sin_port = 0
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else {
            close(fd)
            return
        }
        oldBacks.append(back)
        back = fd
    }

    private func random() -> Double {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return Double((z ^ (z >> 31)) >> 11) / Double(1 << 53)
    }

    private static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let (running, move) = shared.withLock { s -> (Bool, String?) in
                defer { s.rebind = nil }
                return (s.running, s.rebind)
            }
            if !running { return }
            if let move {
                moveBack(to: move)
                shared.withLock { $0.rebound += 1 }
            }
            var fds = [pollfd(fd: front, events: Int16(POLLIN), revents: 0), pollfd(fd: back, events: Int16(POLLIN), revents: 0)]
                + oldBacks.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let now0 = Self.now()
            let next = (queue.map(\.at) + held.map { $0.at + Self.maxHold }).min()
            // Wait until the next datagram is due: poll counts whole milliseconds, so a
            // shorter wait sleeps in slices of at most 0.2 ms (spinning would take a core).
            let wait = next.map { max(0, min(0.01, $0 - now0)) } ?? 0.01
            if wait < 0.001 {
                var slice = timespec(tv_sec: 0, tv_nsec: Int(min(wait, 0.0002) * 1e9))
                if wait > 0 { nanosleep(&slice, nil) }
                _ = poll(&fds, nfds_t(fds.count), 0)
            } else {
                _ = poll(&fds, nfds_t(fds.count), Int32(wait * 1000))
            }
            if fds[0].revents & Int16(POLLIN) != 0 {
                var from = sockaddr_in()
                var len = socklen_t(MemoryLayout<sockaddr_in>.size)
                let n = withUnsafeMutablePointer(to: &from) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(front, &buffer, buffer.count, 0, $0, &len) }
                }
                if n > 0 {
                    client = from
                    admit(Array(buffer[0..<n]), toServer: true)
                }
            }
            for f in fds.dropFirst() where f.revents & Int16(POLLIN) != 0 {
                let n = recv(f.fd, &buffer, buffer.count, 0)
                if n > 0 { admit(Array(buffer[0..<n]), toServer: false) }
            }
            let now = Self.now()
            let due = queue.filter { $0.at <= now }
            queue.removeAll { $0.at <= now }
            for d in due { send(d) }
            // A held datagram no later one overtook in time goes anyway (a reordering
            // path delays a datagram; it does not keep it until the sender's next one).
            let overdue = held.filter { $0.at + Self.maxHold <= now }
            held.removeAll { $0.at + Self.maxHold <= now }
            for d in overdue { send(d) }
        }
    }

    private func admit(_ bytes: [UInt8], toServer: Bool) {
        if random() * 100 < options.dropPercent {
            shared.withLock { $0.dropped += 1 }
            return
        }
        let now = Self.now()
        var at = now
        if let rate = options.rate {
            let free = linkFree[toServer] ?? 0
            let waiting = free > now ? Int((free - now) * rate / 8) : 0
            if waiting + bytes.count > options.queueBytes {
                shared.withLock { $0.dropped += 1 }
                return
            }
            at = max(now, free) + Double(bytes.count * 8) / rate
            linkFree[toServer] = at
        }
        at += options.delay
        let packet = Pending(at: at, bytes: bytes, toServer: toServer)
        if random() * 100 < options.reorderPercent {
            // Held back and released just after the next datagram of this direction, or
            // `maxHold` late when none follows.
            shared.withLock { $0.reordered += 1 }
            held.append(packet)
            return
        }
        queue.append(packet)
        let later = held.filter { $0.toServer == toServer }
        held.removeAll { $0.toServer == toServer }
        for var h in later {
            h.at = at + 0.0001
            queue.append(h)
        }
    }

    private func send(_ d: Pending) {
        shared.withLock { $0.forwarded += 1 }
        if d.toServer {
            _ = d.bytes.withUnsafeBufferPointer { b in
                withUnsafePointer(to: &target) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(back, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        } else if var c = client {
            _ = d.bytes.withUnsafeBufferPointer { b in
                withUnsafePointer(to: &c) { p in
                    p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(front, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        }
    }
}
