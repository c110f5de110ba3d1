import Foundation
import GutsAddress
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOPosix

/// Gossip figures on real local nodes: N `guts listen` processes in a sparse random
/// topology; an in-process client subscribed at every node records when each message
/// arrives there. Prints propagation latency percentiles and full copies per node.
enum GossipBench {
    static func run(arguments: [String]) -> Int32 {
        let n = min(50, max(2, Int(ChannelBench.value(after: "--nodes", in: arguments) ?? "") ?? 20))
        let messages = max(1, Int(ChannelBench.value(after: "--messages", in: arguments) ?? "") ?? 30)
        let degree = max(1, Int(ChannelBench.value(after: "--links", in: arguments) ?? "") ?? 2)
        let spacing = Double(ChannelBench.value(after: "--spacing", in: arguments) ?? "") ?? 0.05
        let topic = "bench/gossip"
        print("== gossip: \(n) real nodes, each dialling up to \(degree) random earlier nodes; \(messages) messages, \(Int(spacing * 1000)) ms apart")

        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let guts = dir.appendingPathComponent("guts").path
        let root = NSTemporaryDirectory() + "guts-gossip-bench-\(UUID().uuidString.prefix(8))"
        var processes: [Process] = []
        var logs: [String] = []
        defer {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL) }
            try? FileManager.default.removeItem(atPath: root)
        }
        var rng = SystemRandomNumberGenerator()
        var lines: [String] = []
        var links = 0
        for i in 0..<n {
            let home = "\(root)/n\(i)"
            let keygen = Process()
            keygen.executableURL = URL(fileURLWithPath: guts)
            keygen.arguments = ["--home", home, "-q", "keygen"]
            keygen.standardOutput = FileHandle.nullDevice
            guard (try? keygen.run()) != nil else {
                print("cannot run \(guts)")
                return 1
            }
            keygen.waitUntilExit()
            var args = ["--home", home, "listen", "--listen", "127.0.0.1:0", "--topic", topic]
            if i > 0 {
                let targets = Set((0..<min(degree, i)).map { _ in Int.random(in: 0..<i, using: &rng) })
                links += targets.count
                for t in targets { args += ["--bootstrap", lines[t]] }
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: guts)
            p.arguments = args
            let out = Pipe()
            let log = "\(home).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardOutput = out
            p.standardError = FileHandle(forWritingAtPath: log)
            guard (try? p.run()) != nil else { return 1 }
            processes.append(p)
            logs.append(log)
            var line = ""
            while !line.contains("\n") {
                let d = out.fileHandleForReading.availableData
                if d.isEmpty { break }
                line += String(decoding: d, as: UTF8.self)
            }
            lines.append(line.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        // Wait until every node logged its bootstrap connections.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let up = logs.reduce(0) { total, log in
                total + ((try? String(contentsOfFile: log, encoding: .utf8))?.components(separatedBy: "(bootstrap").count ?? 1) - 1
            }
            if up >= links { break }
            usleep(50_000)
        }

        // One subscribed client per node records arrival times.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let identity = Ed25519KeyPair.generate()
        let clientConfig = SessionConfig(identity: identity, noiseStatic: .generate(), capabilities: ["ping", "gossip-client"],
                                         agent: "guts-bench", protocols: MessageRegistry([GossipProtocol()]))
        let arrivals = NIOLockedValueBox([[UInt8]: [Instant]]())
        var clients: [PeerConnection] = []
        for line in lines {
            guard let endpoint = try? Endpoint.parse(line),
                  let c = try? Dialer.dial(endpoint, config: clientConfig, group: group, connectTimeout: 5).wait() else {
                print("cannot connect to \(line)")
                return 1
            }
            c.setMessageHandler { _, message in
                if case let .gossip(g)? = message.gossipMessage {
                    let now = Instant.now()
                    arrivals.withLockedValue { $0[g.id, default: []].append(now) }
                    return true
                }
                return false
            }
            _ = try? c.send(.gossip(.subscribe(Subscribe(subscribe: true, topics: [topic])))).wait()
            clients.append(c)
        }
        usleep(300_000)

        var sent: [[UInt8]: Instant] = [:]
        var sequence: UInt64 = 0
        for m in 0..<messages {
            sequence += 1
            var g = Gossip(topic: topic, origin: identity.publicKey, sequence: sequence,
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000), data: Array("message \(m)".utf8), signature: [])
            g.signature = identity.sign(g.signedBytes)
            let client = clients[Int.random(in: 0..<clients.count, using: &rng)]
            sent[g.id] = Instant.now()
            client.send(.gossip(.gossip(g)))
            usleep(UInt32(spacing * 1e6))
        }
        // Wait for every delivery (bounded).
        let wait = Date().addingTimeInterval(15)
        while Date() < wait {
            let complete = arrivals.withLockedValue { map in sent.keys.allSatisfy { (map[$0]?.count ?? 0) >= n } }
            if complete { break }
            usleep(50_000)
        }
        var latencies: [Double] = []
        var missing = 0
        arrivals.withLockedValue { map in
            for (id, t0) in sent {
                let got = map[id] ?? []
                missing += max(0, n - got.count)
                latencies += got.map { $0.seconds(since: t0) * 1000 }
            }
        }
        for c in clients { c.close(.shutdown, "bench done") }

        // Stop the nodes; each logs its gossip counters.
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
        for p in processes { p.waitUntilExit() }
        var received = 0
        var duplicates = 0
        for log in logs {
            guard let text = try? String(contentsOfFile: log, encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix("gossip: received ") }) else { continue }
            let numbers = line.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
            if numbers.count >= 2 {
                received += numbers[0]
                duplicates += numbers[1]
            }
        }
        latencies.sort()
        func pct(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        let deliveries = messages * n
        print("delivered \(deliveries - missing) of \(deliveries) (message x node)")
        print(String(format: "propagation latency: p50 %.2f ms, p99 %.2f ms, max %.2f ms", pct(0.5), pct(0.99), latencies.last ?? 0))
        print(String(format: "full copies received per node per message (all nodes; the entry node gets none): %.2f (%.2f duplicates); %d links",
                     Double(received) / Double(deliveries), Double(duplicates) / Double(deliveries), links))
        return missing == 0 ? 0 : 1
    }
}
