import Foundation

// guts-bench: figures for the issue notes. Build with `swift build -c release` and run
// `.build/release/guts-bench [SUITE] [options]`. Each suite prints guts' figures beside
// the reference implementation measured in the same run.
let suites: [(name: String, summary: String, run: ([String]) -> Int32)] = [
    ("channel", "handshakes/s and encrypted bulk throughput vs raw libsodium", ChannelBench.run),
    ("git", "objects verify vs git fsck --full, SHA-1 vs sha1sum", GitBench.run),
    ("sha1", "SHA-1 and collision-detecting SHA-1 (object names) vs sha1sum", SHA1Bench.run),
    ("index", "the receiver's pack indexer in-process on a copy of a pack (for profiling)", IndexBench.run),
    ("sync", "first mirror and incremental sync vs git over git daemon", SyncBench.run),
    ("gossip", "gossip propagation latency and duplicates on real local nodes", GossipBench.run),
    ("hostile", "CPU and memory of hostile packs vs benign packs of the same size", HostileBench.run),
    ("flood", "a legitimate client's service under single-source attacks on one node", FloodBench.run),
    ("dht-sim", "simulated DHT of 10,000 nodes: lookups under churn and hostile nodes", DHTSimBench.run),
    ("dht", "DHT lookup latency p50/p99 on 30 real local nodes", DHTBench.run),
    ("quic", "QUIC beside TCP: handshakes/s, bulk, ping p99 during a transfer, jq sync", QUICBench.run),
]
let args = Array(CommandLine.arguments.dropFirst())
if args.first == "-h" || args.first == "--help" || args.first == "help" {
    print("usage: guts-bench [all | \(suites.map(\.name).joined(separator: " | "))] [suite options]")
    for s in suites { print("  \(s.name.padding(toLength: 8, withPad: " ", startingAt: 0)) \(s.summary)") }
    exit(0)
}
let selected = args.first.flatMap { $0.hasPrefix("-") ? nil : $0 } ?? "all"
let rest = args.first == selected ? Array(args.dropFirst()) : args
var status: Int32 = 0
if selected == "all" {
    for s in suites {
        let rc = s.run(rest)
        if rc != 0 { status = rc }
        print("")
    }
} else if let s = suites.first(where: { $0.name == selected }) {
    status = s.run(rest)
} else {
    FileHandle.standardError.write(Data("guts-bench: unknown suite '\(selected)' (try --help)\n".utf8))
    status = 2
}
exit(status)
