import Foundation
import GutsAddress
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Attacks on one real `guts listen` (default settings), each from a single source while
/// a legitimate client measures what it gets: ping round trips on an open session (p50,
/// p99), fresh connections that succeed, and a small `guts sync`; plus the listener's RSS
/// and CPU. The listener runs on core 0 and the attacker on core 1 when the machine has two.
enum FloodBench {
    struct Figures {
        var p50 = 0.0, p99 = 0.0
        var fresh = 0, freshOK = 0
        var sync = 0.0
        var syncOK = false
        var rss = 0
        var cpu = 0.0
    }

    static func run(arguments: [String]) -> Int32 {
        let seconds = Double(ChannelBench.value(after: "--seconds", in: arguments) ?? "") ?? 5
        print("== flood: a legitimate client under single-source attacks (default limits) ==")
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let guts = dir.appendingPathComponent("guts").path
        let root = NSTemporaryDirectory() + "guts-flood-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: root) }
        guard let node = startNode(guts: guts, root: root) else { return 1 }
        defer { Processes.stop(node.pid) }
        pin(toCPU: 1)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        // The attackers have a loop of their own, so their sends never delay the client's.
        let attackerGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? attackerGroup.syncShutdownGracefully() }
        guard let endpoint = try? Endpoint.parse(node.line) else { return 1 }

        let attacks: [(String, @Sendable (Endpoint, EventLoopGroup, NIOLockedValueBox<Bool>) -> Void)] = [
            ("none (baseline)", { _, _, _ in }),
            ("1,000 idle sockets", idleSockets),
            ("handshake flood (message 1 over and over)", handshakeFlood),
            ("non-reading peer flooding Pings", pingFlood),
            ("gossip client publishing as fast as it can", publishFlood),
            ("10,000 churned connections, 1,000 open at most", churn),
        ]
        print("attack | ping p50 ms | ping p99 ms | fresh connections ok | small sync s | listener RSS MB | listener CPU s")
        var baseline = Figures()
        for (name, attack) in attacks {
            let stop = NIOLockedValueBox(false)
            let attacker = Thread { attack(endpoint, attackerGroup, stop) }
            let cpu0 = ChannelBench.cpuSeconds(of: node.pid) ?? 0
            attacker.start()
            usleep(500_000)
            var f = measure(endpoint: endpoint, group: group, guts: guts, root: root, seconds: seconds)
            stop.withLockedValue { $0 = true }
            f.cpu = (ChannelBench.cpuSeconds(of: node.pid) ?? 0) - cpu0
            f.rss = rss(node.pid)
            if name.hasPrefix("none") { baseline = f }
            let bound = max(3 * baseline.p99, baseline.p99 + 0.010)
            let measured = f.fresh > 0 && f.p99 > 0
            let verdict = measured && f.p99 <= bound && Double(f.freshOK) >= 0.99 * Double(f.fresh) && f.syncOK && f.rss < 150 << 20 ? "ok" : "MISSED"
            print("\(name) | \(ms(f.p50)) | \(ms(f.p99)) | \(f.freshOK)/\(f.fresh) | \(f.syncOK ? String(format: "%.3f", f.sync) : "failed") | \(f.rss >> 20) | \(String(format: "%.2f", f.cpu)) | \(verdict)")
            sleep(2)  // let the attack's leftovers drain before the next one
        }
        print("targets: p99 <= max(3x baseline, baseline + 10 ms), >= 99% fresh connections, every sync, RSS < 150 MB")
        return 0
    }

    struct Node { let pid: pid_t; let line: String; let home: String }

    static func startNode(guts: String, root: String) -> Node? {
        let home = root + "/node"
        try? FileManager.default.createDirectory(atPath: home + "/repos/bench", withIntermediateDirectories: true)
        Processes.run([guts, "--home", home, "-q", "keygen"], env: nil)
        // A small repository to sync.
        let repo = home + "/repos/bench/small.git"
        Processes.run(["/usr/bin/git", "init", "-q", "--bare", repo], env: nil)
        let work = root + "/work"
        Processes.run(["/usr/bin/git", "init", "-q", work], env: nil)
        for i in 0..<20 { try? "file \(i)\n".write(toFile: work + "/f\(i).txt", atomically: true, encoding: .utf8) }
        let env = ["GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b", "HOME": root]
        Processes.run(["/usr/bin/git", "-C", work, "add", "."], env: env)
        Processes.run(["/usr/bin/git", "-C", work, "commit", "-qm", "small"], env: env)
        Processes.run(["/usr/bin/git", "-C", work, "push", "-q", repo, "HEAD:refs/heads/main"], env: env)
        let out = root + "/node.out"
        var argv = [guts, "--home", home, "-q", "listen", "--listen", "127.0.0.1:0"]
        if System.coreCount >= 2 { argv = ["/usr/bin/taskset", "-c", "0"] + argv }
        guard let pid = Processes.launch(argv, env: nil, stdout: out, stderr: root + "/node.err") else { return nil }
        for _ in 0..<500 {
            if let text = try? String(contentsOfFile: out, encoding: .utf8), let line = text.split(separator: "\n").first {
                return Node(pid: pid, line: String(line), home: home)
            }
            usleep(10_000)
        }
        return nil
    }

    /// Pins this process (the attacker and the measuring client) to one core.
    static func pin(toCPU cpu: Int) {
        guard System.coreCount >= 2 else { return }
        Processes.run(["/usr/bin/taskset", "-a", "-p", "-c", String(cpu), String(getpid())], env: nil)
    }

    static func rss(_ pid: pid_t) -> Int {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb * 1024
    }

    static func ms(_ s: Double) -> String { String(format: "%.2f", s * 1000) }

    /// The legitimate client, from 127.0.0.1: pings on one session, fresh connections
    /// (each a new identity, a few a second as a person would), one small sync.
    static func measure(endpoint: Endpoint, group: EventLoopGroup, guts: String, root: String, seconds: Double) -> Figures {
        var f = Figures()
        let config = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "legit")
        var rtts: [Double] = []
        if let c = try? Dialer.dial(endpoint, config: config, group: group, connectTimeout: 5).wait() {
            let started = Instant.now()
            var nonce: UInt64 = 1
            while Instant.now().seconds(since: started) < seconds {
                let t0 = Instant.now()
                c.send(.ping(nonce: nonce))
                while let m = try? c.nextMessage(timeout: 2).wait() {
                    if case let .pong(n) = m, n == nonce { break }
                }
                rtts.append(Instant.now().seconds(since: t0))
                nonce += 1
                usleep(20_000)
                if Int(Instant.now().seconds(since: started) * 4) > f.fresh {
                    f.fresh += 1
                    let fresh = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "legit-fresh")
                    if let d = try? Dialer.dial(endpoint, config: fresh, group: group, connectTimeout: 5).wait() {
                        f.freshOK += 1
                        d.close(.shutdown, "done")
                    }
                }
            }
            c.close(.shutdown, "done")
        }
        rtts.sort()
        if !rtts.isEmpty {
            f.p50 = rtts[rtts.count / 2]
            f.p99 = rtts[min(rtts.count - 1, rtts.count * 99 / 100)]
        }
        let client = root + "/client-\(UUID().uuidString.prefix(6))"
        let t0 = Instant.now()
        f.syncOK = Processes.run([guts, "--home", client, "-q", "sync", "--ephemeral", "bench/small", "--peer", endpoint.description, "-W", "10"], env: nil) == 0
        f.sync = Instant.now().seconds(since: t0)
        return f
    }

    // MARK: Attacks (all from 127.0.0.2 and above, one core)

    static func idleSockets(_ e: Endpoint, _ g: EventLoopGroup, _ stop: NIOLockedValueBox<Bool>) {
        var held: [Int32] = []
        for _ in 0..<1000 { if let fd = rawConnect(e.port, from: "127.0.0.2") { held.append(fd) } }
        while !stop.withLockedValue({ $0 }) { usleep(50_000) }
        for fd in held { close(fd) }
    }

    static func handshakeFlood(_ e: Endpoint, _ g: EventLoopGroup, _ stop: NIOLockedValueBox<Bool>) {
        let message1 = [UInt8(0), 32] + [UInt8](repeating: 9, count: 32)
        while !stop.withLockedValue({ $0 }) {
            guard let fd = rawConnect(e.port, from: "127.0.0.3") else { continue }
            _ = message1.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
        }
    }

    static func pingFlood(_ e: Endpoint, _ g: EventLoopGroup, _ stop: NIOLockedValueBox<Bool>) {
        let config = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "flood")
        guard let c = try? Dialer.dial(e, config: config, group: g, connectTimeout: 5, source: "127.0.0.4").wait() else { return }
        _ = try? c.channel.setOption(ChannelOptions.autoRead, value: false).wait()
        var n: UInt64 = 0
        while !stop.withLockedValue({ $0 }) {
            if c.isWritable {
                for _ in 0..<500 { c.send(.ping(nonce: n)); n += 1 }
            } else {
                usleep(10_000)
            }
        }
        c.abort()
    }

    static func publishFlood(_ e: Endpoint, _ g: EventLoopGroup, _ stop: NIOLockedValueBox<Bool>) {
        let key = Ed25519KeyPair.generate()
        let config = SessionConfig(identity: key, noiseStatic: .generate(), capabilities: ["ping", "gossip-client"], agent: "flood",
                                   protocols: MessageRegistry([GossipProtocol()]))
        guard let c = try? Dialer.dial(e, config: config, group: g, connectTimeout: 5, source: "127.0.0.5").wait() else { return }
        c.setMessageHandler { _, _ in true }
        let started = Instant.now()
        var seq: UInt64 = 0
        while !stop.withLockedValue({ $0 }), !c.isClosed {
            seq += 1
            var m = Gossip(topic: "flood", origin: key.publicKey, sequence: seq, timestamp: UInt64(unixTime() * 1000),
                           data: [UInt8](repeating: 7, count: 60_000), signature: [])
            m.signature = key.sign(m.signedBytes)
            if c.isWritable { c.send(.gossip(.gossip(m))) } else { usleep(5_000) }
        }
        if c.isClosed { print("  (the publishing flooder was cut off after \(String(format: "%.1f", Instant.now().seconds(since: started))) s)") }
        c.abort()
    }

    static func churn(_ e: Endpoint, _ g: EventLoopGroup, _ stop: NIOLockedValueBox<Bool>) {
        var open: [Int32] = []
        var made = 0
        var source = 10
        while !stop.withLockedValue({ $0 }), made < 10_000 {
            // Rotating source addresses: one /32 each on loopback, so the per-address
            // accept rate does not hide the memory question.
            source = source == 250 ? 10 : source + 1
            if let fd = rawConnect(e.port, from: "127.0.0.\(source)") {
                open.append(fd)
                made += 1
            }
            if open.count >= 1000 {
                for fd in open.prefix(500) { close(fd) }
                open.removeFirst(500)
            }
        }
        for fd in open { close(fd) }
    }

    static func rawConnect(_ port: Int, from source: String) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &local) { l in
            l.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0 && withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
        if !ok {
            close(fd)
            return nil
        }
        return fd
    }
}
