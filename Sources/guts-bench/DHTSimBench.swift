import Foundation
import GutsDHT

/// The DHT simulation (GutsDHT.DHTSimulation) at full size: N nodes in one process with a
/// virtual clock, 20% churn and 10% hostile nodes. Prints lookup success, hops and messages
/// per lookup, and provider-record availability after churn and after one republish
/// interval; exits 1 when a target of issue 12 is missed.
enum DHTSimBench {
    static func run(arguments: [String]) -> Int32 {
        var options = DHTSimulation.Options()
        options.nodes = max(50, Int(ChannelBench.value(after: "--nodes", in: arguments) ?? "") ?? 10_000)
        options.seed = UInt64(ChannelBench.value(after: "--seed", in: arguments) ?? "") ?? 1
        options.disjointPaths = max(1, Int(ChannelBench.value(after: "--paths", in: arguments) ?? "") ?? 1)
        options.repositories = max(1, Int(ChannelBench.value(after: "--repositories", in: arguments) ?? "") ?? 200)
        options.nodeLookups = max(1, Int(ChannelBench.value(after: "--lookups", in: arguments) ?? "") ?? 1000)
        options.peerLookups = max(1, options.nodeLookups / 3)
        if let h = ChannelBench.value(after: "--hostile", in: arguments).flatMap(Double.init) { options.hostileFraction = h }
        if let c = ChannelBench.value(after: "--churn", in: arguments).flatMap(Double.init) { options.churnFraction = c }
        print("== dht-sim: \(options.nodes) nodes, \(Int(options.hostileFraction * 100))% hostile, "
            + "\(Int(options.churnFraction * 100))% churn over \(Int(options.churnDuration)) s, seed \(options.seed), "
            + "\(options.disjointPaths) path(s)")
        let start = Date()
        var sim = DHTSimulation(options: options)
        let figures = sim.run()
        print(sim.report())
        print(String(format: "  wall time %.1f s", Date().timeIntervalSince(start)))
        let node = figures[.node], providers = figures[.providersAfterRepublish]
        var ok = true
        if let f = node, f.successRate < 0.99 { print("  MISSED: FindNode success below 99%"); ok = false }
        if let f = node, f.medianHops > 5 { print("  MISSED: median hops above 5"); ok = false }
        if let f = providers, f.successRate < 0.99 { print("  MISSED: provider records found below 99%"); ok = false }
        return ok ? 0 : 1
    }
}
