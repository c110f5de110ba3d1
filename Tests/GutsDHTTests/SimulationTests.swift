import GutsDHT
import XCTest

/// The targets on a simulated network small enough for the debug-build test suite
/// (`guts-bench dht-sim` runs the same scenario at 10,000 nodes): 20% churn during the run,
/// 10% hostile nodes; at least 99% of lookups succeed, median hops at most 5, and provider
/// records are found at least 99% of the time one republish interval after churn.
final class SimulationTests: XCTestCase {
    private func run(nodes: Int, paths: Int, seed: UInt64) -> (DHTSimulation, [DHTSimulation.Category: DHTSimulation.Figures]) {
        var options = DHTSimulation.Options()
        options.nodes = nodes
        options.seed = seed
        options.disjointPaths = paths
        options.repositories = 40
        options.nodeLookups = 150
        options.peerLookups = 50
        // Every node re-announcing its peer record after an hour would double the traffic
        // (and the debug-build time); joiners still publish theirs, and the bench keeps it.
        options.config.peerRepublishInterval = 4 * 3600
        var sim = DHTSimulation(options: options)
        let figures = sim.run()
        return (sim, figures)
    }

    private func assertTargets(_ sim: DHTSimulation, _ figures: [DHTSimulation.Category: DHTSimulation.Figures],
                               file: StaticString = #filePath, line: UInt = #line) {
        let context = "seed \(sim.options.seed)\n\(sim.report())"
        for category in [DHTSimulation.Category.node, .peer, .providersAfterRepublish] {
            guard let f = figures[category] else { return XCTFail("no figures for \(category); \(context)", file: file, line: line) }
            XCTAssertGreaterThan(f.lookups, 20, context, file: file, line: line)
            XCTAssertGreaterThanOrEqual(f.successRate, 0.99, "\(category): \(context)", file: file, line: line)
            XCTAssertLessThanOrEqual(f.medianHops, 5, "\(category): \(context)", file: file, line: line)
        }
        XCTAssertEqual(sim.joined, sim.options.nodes / 5, context, file: file, line: line)
        XCTAssertEqual(sim.left, sim.options.nodes / 5, context, file: file, line: line)
        XCTAssertGreaterThan(sim.decodeFailures, 0, "hostile nodes sent garbage: \(context)", file: file, line: line)
    }

    func testThousandNodesWithChurnAndHostileNodes() {
        let (sim, figures) = run(nodes: 1000, paths: 1, seed: 12)
        print(sim.report())
        assertTargets(sim, figures)
    }

    func testDisjointPathsMeetTheTargetsToo() {
        let (sim, figures) = run(nodes: 300, paths: 3, seed: 13)
        print(sim.report())
        assertTargets(sim, figures)
    }

    func testTheSameSeedGivesTheSameRun() {
        let (a, fa) = run(nodes: 150, paths: 1, seed: 99)
        let (b, fb) = run(nodes: 150, paths: 1, seed: 99)
        XCTAssertEqual(a.report(), b.report())
        XCTAssertEqual(fa[.node]?.hops, fb[.node]?.hops)
        XCTAssertEqual(a.messagesDelivered, b.messagesDelivered)
    }
}
