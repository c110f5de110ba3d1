import Foundation
import GutsAddress
import GutsCrypto
import GutsDHT
import GutsIdentity
import GutsNode
import GutsSupport
import GutsTransport
import GutsWire
import NIOPosix

/// DHT figures on real local nodes: N `guts listen` processes on loopback joined through
/// one bootstrap node. Lookups of the nodes' peer records are timed from an in-process
/// client that joins through the bootstrap node (as `guts find` without a node does), and
/// through a running node's control socket (`guts find` as a process).
enum DHTBench {
    static func run(arguments: [String]) -> Int32 {
        let n = min(100, max(3, Int(ChannelBench.value(after: "--nodes", in: arguments) ?? "") ?? 30))
        let lookups = max(1, Int(ChannelBench.value(after: "--lookups", in: arguments) ?? "") ?? 300)
        let cliLookups = max(1, Int(ChannelBench.value(after: "--cli-lookups", in: arguments) ?? "") ?? 20)
        // Nodes answer one peer 20 DHT requests a second (bursts of 60) and one address
        // group 60: a client faster than that is answered busy, which is not what this
        // measures.
        let rate = max(0.1, Double(ChannelBench.value(after: "--rate", in: arguments) ?? "") ?? 20)
        print("== dht: \(n) real nodes on loopback joined through one bootstrap node; \(lookups) peer lookups in process (\(formatRate(rate)) a second), \(cliLookups) with `guts find` through a node")

        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let guts = dir.appendingPathComponent("guts").path
        let root = NSTemporaryDirectory() + "guts-dht-bench-\(UUID().uuidString.prefix(8))"
        var processes: [Process] = []
        defer {
            for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
            for p in processes { p.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: root)
        }
        var lines: [String] = []
        let started = Date()
        for i in 0..<n {
            let home = "\(root)/n\(i)"
            guard Processes.run([guts, "--home", home, "-q", "keygen"], env: nil) == 0 else {
                print("cannot run \(guts)")
                return 1
            }
            var args = ["--home", home, "listen", "--listen", "127.0.0.1:0"]
            if i > 0 { args += ["--bootstrap", lines[0]] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: guts)
            p.arguments = args
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            guard (try? p.run()) != nil else { return 1 }
            processes.append(p)
            var line = ""
            while !line.contains("\n") {
                let d = out.fileHandleForReading.availableData
                if d.isEmpty { break }
                line += String(decoding: d, as: UTF8.self)
            }
            lines.append(line.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let peers = lines.compactMap { PeerID(String($0.split(separator: "@").first ?? "")) }
        guard peers.count == n else {
            print("a node did not start")
            return 1
        }
        print("started \(n) nodes in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let log = NodeLog(info: { _ in }, debug: { _ in })
        let session = SessionConfig(identity: Ed25519KeyPair.generate(), noiseStatic: .generate(), capabilities: ["ping"],
                                    agent: "guts-bench", protocols: .control)
        // Wait until the network has settled: every node's record is found.
        let settle = Date()
        var missing = n
        while Date().timeIntervalSince(settle) < 30 {
            let probe = DHTClient(session: session, group: group, connectTimeout: 5, log: log)
            guard let boot = try? Endpoint.parse(lines[0]), (try? probe.join([boot]).wait()) == 1 else {
                probe.close()
                print("cannot reach the bootstrap node")
                return 1
            }
            missing = 0
            for p in peers {
                let r = try? probe.find(.peer(NodeID(publicKey: p.publicKey)), timeout: 10).wait()
                if r?.found != true { missing += 1 }
            }
            probe.close()
            if missing == 0 { break }
            usleep(500_000)
        }
        print("every peer record found after \(String(format: "%.1f", Date().timeIntervalSince(settle))) s" + (missing > 0 ? " (\(missing) still missing)" : ""))

        // In-process lookups from one client joined through the bootstrap node.
        let client = DHTClient(session: session, group: group, connectTimeout: 5, log: log)
        guard let boot = try? Endpoint.parse(lines[0]), (try? client.join([boot]).wait()) == 1 else {
            client.close()
            return 1
        }
        var latencies: [Double] = []
        var hops: [Double] = []
        var messages: [Double] = []
        var failures = 0
        var rng = SystemRandomNumberGenerator()
        let paced = Instant.now()
        for i in 0..<lookups {
            let due = paced.adding(seconds: Double(i) / rate)
            let now = Instant.now()
            if due > now { usleep(UInt32(min(10_000_000, (due.nanoseconds - now.nanoseconds) / 1000))) }
            let target = peers[Int.random(in: 1..<n, using: &rng)]
            let t0 = Instant.now()
            guard let r = try? client.find(.peer(NodeID(publicKey: target.publicKey)), timeout: 30).wait() else {
                failures += 1
                continue
            }
            let ms = Instant.now().seconds(since: t0) * 1000
            if r.found {
                latencies.append(ms)
                hops.append(Double(r.hops))
                messages.append(Double(r.messages))
            } else {
                failures += 1
            }
        }
        client.close()
        report("in-process client", latencies, failures: failures, total: lookups)
        print(String(format: "  hops median %.0f, max %.0f; requests per lookup median %.0f, max %.0f",
                     Statistics.median(hops), hops.max() ?? 0, Statistics.median(messages), messages.max() ?? 0))

        // `guts find PEERID` through a running node (a process each: startup included).
        var cli: [Double] = []
        var cliFailures = 0
        for i in 0..<cliLookups {
            let asker = 1 + i % (n - 1)
            let target = peers[(asker + 1 + Int.random(in: 0..<(n - 2), using: &rng)) % n]
            let t0 = Instant.now()
            let rc = Processes.run([guts, "--home", "\(root)/n\(asker)", "find", target.description], env: nil)
            let ms = Instant.now().seconds(since: t0) * 1000
            if rc == 0 { cli.append(ms) } else { cliFailures += 1 }
        }
        report("`guts find` via a node", cli, failures: cliFailures, total: cliLookups)
        return failures == 0 && cliFailures == 0 ? 0 : 1
    }

    static func formatRate(_ r: Double) -> String { r == r.rounded() ? String(Int(r)) : String(format: "%.1f", r) }

    static func report(_ what: String, _ values: [Double], failures: Int, total: Int) {
        let s = values.sorted()
        func pct(_ p: Double) -> Double { s.isEmpty ? 0 : s[min(s.count - 1, Int(Double(s.count) * p))] }
        print(String(format: "%@: %d/%d found; latency p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
                     what, total - failures, total, pct(0.5), pct(0.9), pct(0.99), s.last ?? 0))
    }
}
