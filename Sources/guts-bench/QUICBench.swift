import Foundation
import GutsNetSim
import GutsAddress
import GutsCrypto
import GutsIdentity
import GutsQUIC
import GutsSupport
import GutsSync
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// QUIC beside TCP, in one run: handshakes per second, one connection's bulk
/// throughput, ping latency while a 100 MB transfer runs on the same connection
/// (through a relay shaping both transports to 100 Mbit/s and 10 ms each way), and the
/// time of a jq-sized sync between real processes.
///
///     guts-bench quic [--seconds S] [--megabytes N] [--transfer-megabytes N] [--repo PATH] [--rounds N]
///                     [--bulk-only | --latency-only] [--verbose]
enum QUICBench {
    static func run(arguments: [String]) -> Int32 {
        let seconds = Double(ChannelBench.value(after: "--seconds", in: arguments) ?? "") ?? 2
        let megabytes = Int(ChannelBench.value(after: "--megabytes", in: arguments) ?? "") ?? 512
        let transferMB = Int(ChannelBench.value(after: "--transfer-megabytes", in: arguments) ?? "") ?? 100
        let rounds = Int(ChannelBench.value(after: "--rounds", in: arguments) ?? "") ?? 3
        let repo = ChannelBench.value(after: "--repo", in: arguments) ?? "/work/.mirror/jqlang+jq/repo"
        print("== QUIC beside TCP ==")
        print("machine: \(System.coreCount) cores")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        BulkServer.verbose = arguments.contains("--verbose")
        guard let server = BulkServer(group: group) else {
            print("cannot start the in-process server")
            return 1
        }
        defer { server.stop() }
        let config = SessionConfig(identity: .generate(), noiseStatic: .generate(), agent: "guts-bench",
                                   protocols: MessageRegistry([SyncProtocol()]))
        @Sendable func endpoint(_ kind: TransportKind, port: Int) -> Endpoint {
            Endpoint(host: "127.0.0.1", port: port, peer: server.peer, transport: kind)
        }
        @Sendable func dial(_ kind: TransportKind, port: Int) -> (any PeerLink)? {
            try? LinkDialer.dial(endpoint(kind, port: port), choice: .auto, config: config, group: group, connectTimeout: 5).wait()
        }

        // 1. Handshakes per second (16 in flight, client and server in this process).
        let latencyOnly = arguments.contains("--latency-only")
        for kind in TransportKind.allCases where !arguments.contains("--bulk-only") && !latencyOnly {
            let rate = handshakes(seconds: seconds, concurrency: 16) { dial(kind, port: server.port) }
            print("handshakes/s \(kind.rawValue): \(Int(rate)) (dial, authenticate, Hello, close; 16 in flight)")
        }

        // 2. Bulk throughput of one connection.
        var bulk: [TransportKind: Double] = [:]
        for kind in TransportKind.allCases where !latencyOnly {
            guard let link = dial(kind, port: server.port) else { return 1 }
            var samples: [Double] = []
            for _ in 0..<rounds {
                if let t = transfer(link, megabytes: megabytes, requestID: UInt32(samples.count + 1)) { samples.append(Double(megabytes) / t) }
            }
            if let q = link as? QUICLink, arguments.contains("--verbose"), let st = try? q.transportStatistics().wait() { print("  client: \(st)") }
            link.close(.shutdown, "done")
            bulk[kind] = Statistics.median(samples)
            print("bulk \(kind.rawValue): \(Int(bulk[kind] ?? 0)) MiB/s (\(megabytes) MiB on one connection, median of \(samples.count))")
        }
        if let q = bulk[.quic], let t = bulk[.tcp], t > 0 {
            print("  QUIC/TCP bulk: \(String(format: "%.2f", q / t)) (target at least 0.5)")
        }
        if arguments.contains("--bulk-only") { return 0 }

        // 3. Ping while a transfer runs, through 100 Mbit/s and 10 ms each way.
        let rate = 100e6, delay = 0.010, queue = 256 << 10
        print("path: \(Int(rate / 1e6)) Mbit/s and \(Int(delay * 1000)) ms each way, a drop-tail buffer of \(queue >> 10) KiB waiting for the link (about one bandwidth-delay product; bytes in the delay line not counted), the same for TCP (a full buffer stops reading) and QUIC (it drops)")
        for kind in TransportKind.allCases {
            var relayPort = 0
            var stop: () -> Void = {}
            var relayStats: () -> String = { "" }
            switch kind {
            case .tcp:
                guard let s = TCPShaper.start(targetPort: server.port, rate: rate, delay: delay, queueBytes: queue) else { return 1 }
                relayPort = s.port
                stop = { s.stop() }
            case .quic:
                var o = UDPRelay.Options()
                o.rate = rate
                o.delay = delay
                o.queueBytes = queue
                guard let r = UDPRelay.start(targetPort: server.port, options: o, seed: 1) else { return 1 }
                relayPort = r.port
                stop = { r.stop() }
                relayStats = { "relay forwarded \(r.forwarded), dropped \(r.dropped)" }
            }
            defer { stop() }
            guard let link = dial(kind, port: relayPort) else {
                print("cannot connect through the relay over \(kind.rawValue)")
                return 1
            }
            let idle = pings(link, count: 50, interval: 0.02, while: nil)
            let busy = pings(link, count: 10_000, interval: 0.02) {
                let started = Instant.now()
                _ = transfer(link, megabytes: transferMB, requestID: 99)
                return Instant.now().seconds(since: started)
            }
            if arguments.contains("--verbose") {
                if let q = link as? QUICLink, let st = try? q.transportStatistics().wait() { print("  client: \(st)") }
                print("  \(relayStats())")
            }
            link.close(.shutdown, "done")
            let idle99 = percentile(idle.rtts, 0.99), busy99 = percentile(busy.rtts, 0.99)
            print("ping \(kind.rawValue) via 100 Mbit/s, 10 ms each way: idle p50 \(ms(percentile(idle.rtts, 0.5))) p99 \(ms(idle99)) ms; during a \(transferMB) MB transfer (\(String(format: "%.1f", busy.work ?? 0)) s) p50 \(ms(percentile(busy.rtts, 0.5))) p99 \(ms(busy99)) ms (\(busy.rtts.count) pings, \(busy.lost) unanswered); p99 ratio \(String(format: "%.2f", idle99 > 0 ? busy99 / idle99 : 0))\(kind == .quic ? " (target at most 2)" : "")")
        }

        if latencyOnly { return 0 }
        // 4. A jq-sized sync between real processes.
        jqSync(repo: repo, rounds: rounds)
        return 0
    }

    static func ms(_ s: Double) -> String { String(format: "%.1f", s * 1000) }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        return s[min(s.count - 1, Int((Double(s.count - 1) * p).rounded()))]
    }

    /// Dials in a loop from `concurrency` threads for `seconds`; completed dials per second.
    static func handshakes(seconds: Double, concurrency: Int, dial: @escaping @Sendable () -> (any PeerLink)?) -> Double {
        let count = NIOLockedValueBox(0)
        let start = Instant.now()
        // Threads of their own: concurrentPerform would run only one per core.
        let finished = NIOLockedValueBox(0)
        for _ in 0..<concurrency {
            Thread {
                while Instant.now().seconds(since: start) < seconds {
                    guard let link = dial() else { continue }
                    link.close(.shutdown, "bench")
                    _ = try? link.closeFuture.wait()
                    count.withLockedValue { $0 += 1 }
                }
                finished.withLockedValue { $0 += 1 }
            }.start()
        }
        while finished.withLockedValue({ $0 }) < concurrency { usleep(5000) }
        return Double(count.withLockedValue { $0 }) / Instant.now().seconds(since: start)
    }

    /// Asks the server for `megabytes` MiB as Objects answers; seconds until the final one.
    static func transfer(_ link: any PeerLink, megabytes: Int, requestID: UInt32) -> Double? {
        let started = Instant.now()
        link.beginRequests()
        defer { link.endRequests() }
        guard (try? link.send(.app(SyncMessage.getObjects(GetObjects(requestID: requestID, repository: "bulk/\(megabytes)", wants: [], haves: [])))).wait()) != nil else { return nil }
        while true {
            guard let m = try? link.nextMessage(timeout: 60).wait() else { return nil }
            if case let .app(a) = m, let s = a as? SyncMessage, case let .objects(o) = s, o.requestID == requestID, o.final { break }
        }
        return Instant.now().seconds(since: started)
    }

    /// Round trips of Pings every `interval` seconds, while `work` runs (or `count` times).
    static func pings(_ link: any PeerLink, count: Int, interval: Double, while work: (@Sendable () -> Double)?) -> (rtts: [Double], lost: Int, work: Double?) {
        let done = NIOLockedValueBox<Double?>(nil)
        if let work {
            Thread {
                let seconds = work()
                done.withLockedValue { $0 = seconds }
            }.start()
        }
        var rtts: [Double] = []
        var lost = 0
        for _ in 0..<count {
            if work != nil, done.withLockedValue({ $0 }) != nil { break }
            if let r = (try? link.measureRoundTrip(timeout: 5).wait()) ?? nil { rtts.append(r) } else { lost += 1 }
            usleep(UInt32(interval * 1e6))
        }
        while work != nil, done.withLockedValue({ $0 }) == nil { usleep(10000) }
        return (rtts, lost, done.withLockedValue { $0 })
    }

    /// `guts sync` of the jq repository over each transport, fresh client each round.
    static func jqSync(repo: String, rounds: Int) {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let guts = dir.appendingPathComponent("guts").path
        let base = NSTemporaryDirectory() + "guts-bench-quic-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let serverHome = base + "/server"
        guard Processes.run(["/usr/bin/git", "clone", "--mirror", "--quiet", repo, serverHome + "/repos/jqlang/jq.git"], env: nil) == 0,
              Processes.run([guts, "--home", serverHome, "-q", "keygen"], env: nil) == 0 else {
            print("jq sync: cannot prepare \(repo)")
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: guts)
        p.arguments = ["--home", serverHome, "-q", "listen", "--listen", "127.0.0.1:0"]
        let pipe = Pipe()
        p.standardOutput = pipe
        guard (try? p.run()) != nil else { return }
        defer {
            p.terminate()
            p.waitUntilExit()
        }
        var line = ""
        while !line.contains("\n") {
            let d = pipe.fileHandleForReading.availableData
            if d.isEmpty { break }
            line += String(decoding: d, as: UTF8.self)
        }
        let peer = line.trimmingCharacters(in: .whitespacesAndNewlines)
        var times: [TransportKind: [Double]] = [:]
        for round in 0..<rounds {
            for kind in TransportKind.allCases {
                let home = base + "/client-\(kind.rawValue)-\(round)"
                let started = Instant.now()
                let rc = Processes.run([guts, "--home", home, "-q", "sync", "jqlang/jq", "--ephemeral", "--peer", peer, "--transport", kind.rawValue], env: nil)
                let t = Instant.now().seconds(since: started)
                if rc == 0 { times[kind, default: []].append(t) } else { print("jq sync over \(kind.rawValue) failed (exit \(rc))") }
                try? FileManager.default.removeItem(atPath: home)
            }
        }
        let tcp = Statistics.median(times[.tcp] ?? []), quic = Statistics.median(times[.quic] ?? [])
        print("jq first sync (\(repo)), median of \(rounds): tcp \(String(format: "%.2f", tcp)) s, quic \(String(format: "%.2f", quic)) s, QUIC/TCP \(String(format: "%.2f", tcp > 0 ? quic / tcp : 0)) (target at most 1.2)")
    }
}

/// Answers GetObjects "bulk/N" with N MiB of Objects chunks, over TCP and QUIC on one port.
final class BulkServer: @unchecked Sendable {
    nonisolated(unsafe) static var verbose = false
    let tcp: Listener
    let quic: QUICListener
    let port: Int
    let peer: PeerID

    init?(group: EventLoopGroup) {
        let identity = Ed25519KeyPair.generate()
        guard let id = try? PeerID(publicKey: identity.publicKey) else { return nil }
        peer = id
        let config = SessionConfig(identity: identity, noiseStatic: .generate(), agent: "guts-bench-server",
                                   protocols: MessageRegistry([SyncProtocol()]))
        var options = Listener.Options(maxConnections: 100_000)
        options.admission.maxPendingPerGroup = 100_000
        options.admission.maxPending = 100_000
        options.admission.groupRate = nil
        let handle: @Sendable (any PeerLink) -> Void = { link in
            link.setMessageHandler { link, message in
                guard case let .app(a) = message, let s = a as? SyncMessage, case let .getObjects(g) = s else { return false }
                let megabytes = Int(g.repository.split(separator: "/").last ?? "") ?? 1
                DispatchQueue.global().async { BulkServer.serve(link, id: g.requestID, megabytes: megabytes) }
                return true
            }
        }
        tcp = Listener(group: group, config: config, options: options) { handle($0) }
        quic = QUICListener(group: group, config: config, options: options) { handle($0) }
        var bound: Int?
        for _ in 0..<20 where bound == nil {
            guard let a = try? tcp.bind(host: "127.0.0.1", port: 0), let p = a.port else { continue }
            if (try? quic.bind(host: "127.0.0.1", port: p)) != nil { bound = p }
        }
        guard let bound else { return nil }
        port = bound
    }

    static func serve(_ link: any PeerLink, id: UInt32, megabytes: Int) {
        let chunk = [UInt8](repeating: 0x5a, count: SyncLimits.maxObjectsChunk - 64)
        var remaining = megabytes << 20
        var inflight: [EventLoopFuture<Void>] = []
        while remaining > 0 {
            let n = min(remaining, chunk.count)
            remaining -= n
            inflight.append(link.send(.app(SyncMessage.objects(Objects(requestID: id, final: false, data: n == chunk.count ? chunk : Array(chunk.prefix(n)))))))
            if inflight.count >= 4 { guard (try? inflight.removeFirst().wait()) != nil else { return } }
        }
        inflight.append(link.send(.app(SyncMessage.objects(Objects(requestID: id, final: true, data: [])))))
        for f in inflight { _ = try? f.wait() }
        if BulkServer.verbose, let q = link as? QUICLink, let st = try? q.transportStatistics().wait() { print("  server: \(st)") }
    }

    func stop() {
        quic.shutdown(timeout: 1)
        tcp.shutdown(timeout: 1)
    }
}
