import Foundation
import GutsAddress
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsTransport
import GutsWire
import NIOPosix
import XCTest

/// Gossip across real `guts listen` processes.
final class GossipTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Starts `count` nodes on topic `t`; node i bootstraps to `links(i)` earlier nodes.
    func startNetwork(_ count: Int, topic: String, links: (Int) -> [Int]) throws -> [(Harness.Running, String)] {
        var nodes: [(Harness.Running, String)] = []
        for i in 0..<count {
            _ = try h.keygen("n\(i)")
            // Every node of the test network dials from 127.0.0.1, one address group that on
            // a real network would be `count` groups: without this, a node's per-group
            // handshake cap (8 pending, 10 a second) may evict a subscriber's handshake while
            // the others dial it (seen under load). DefenceTests exercise those caps.
            try "handshake-rate = 0\nmax-pending-per-address = 64\n".write(toFile: h.home("n\(i)") + "/config", atomically: true, encoding: .utf8)
            let boot = links(i).flatMap { ["--bootstrap", nodes[$0].1] }
            nodes.append(try h.listen("n\(i)", ["--topic", topic] + boot))
        }
        // Wait until every bootstrap link is up on the dialling side.
        for i in 0..<count {
            let expected = links(i).count
            nodes[i].0.waitFor("node \(i) to connect to its \(expected) bootstrap peers", timeout: 20) { _, err in
                err.components(separatedBy: "(bootstrap").count - 1 >= expected
            }
        }
        return nodes
    }

    func subscribe(_ node: String, topic: String, count: Int, timeout: Double = 30) throws -> Harness.Running {
        let s = try h.start(["--home", h.home("sub"), "-v", "--json", "gossip", "subscribe", "--ephemeral", "--topic", topic, "--peer", node,
                             "--count", String(count), "--timeout", String(timeout)])
        return s
    }

    func publish(_ node: String, topic: String, data: String) throws -> String {
        let r = try h.run(["--home", h.home("pub"), "gossip", "publish", "--ephemeral", "--topic", topic, "--peer", node, "--data", data])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Full copies each node received, from the stats line it logs when it stops.
    func receivedCopies(_ node: Harness.Running) -> Int? {
        node.signal(SIGTERM)
        _ = node.wait(timeout: 10)
        // Node log lines start with the time and level.
        guard let line = node.stderr.split(separator: "\n").first(where: { $0.contains(" info gossip: received ") }),
              let range = line.range(of: " info gossip: received ") else { return nil }
        return Int(line[range.upperBound...].prefix(while: { $0.isNumber }))
    }

    func payloads(_ subscriber: Harness.Running) -> [String] {
        subscriber.stdout.split(separator: "\n").compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["payload"] as? String
        }
    }

    func testFullMeshOfFiveDeliversEverythingWithFewDuplicates() throws {
        let topic = "test/mesh"
        let nodes = try startNetwork(5, topic: topic) { Array(0..<$0) }
        let messages = 10
        let subs = try nodes.map { try subscribe($0.1, topic: topic, count: messages) }
        for s in subs { s.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") } }
        var ids: [String] = []
        for m in 0..<messages {
            ids.append(try publish(nodes[m % 5].1, topic: topic, data: "mesh message \(m)"))
        }
        XCTAssertEqual(Set(ids).count, messages)
        for (i, s) in subs.enumerated() {
            XCTAssertEqual(s.wait(timeout: 20), 0, "subscriber \(i): \(s.stderr)")
            XCTAssertEqual(Set(payloads(s)), Set((0..<messages).map { "mesh message \($0)" }), "subscriber on node \(i)")
        }
        // Copies received per node per message, over the nodes that did not publish it.
        var total = 0
        for (i, n) in nodes.enumerated() {
            let copies = try XCTUnwrap(receivedCopies(n.0), "node \(i) stats")
            total += copies
        }
        let perNodePerMessage = Double(total) / Double(messages * 4)
        print("5-node full mesh: \(messages) messages, \(total) copies received, \(perNodePerMessage) copies per node per message")
        XCTAssertLessThanOrEqual(perNodePerMessage, 2.0)
    }

    func testSparseNetworkOfTwentyDeliversToAll() throws {
        let topic = "test/sparse"
        // Seeded so a failing topology can be replayed: set GUTS_TEST_SEED to the printed seed.
        let seed = ProcessInfo.processInfo.environment["GUTS_TEST_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)
        var rng = TestRandom(seed: seed)
        var linkTable: [[Int]] = [[]]
        for i in 1..<20 {
            // One or two random earlier nodes: connected, sparse.
            var links = [Int.random(in: 0..<i, using: &rng)]
            if i > 2, Bool.random(using: &rng) { links.append(Int.random(in: 0..<i, using: &rng)) }
            linkTable.append(Array(Set(links)))
        }
        let nodes = try startNetwork(20, topic: topic) { linkTable[$0] }
        let subs = try nodes.map { try subscribe($0.1, topic: topic, count: 3, timeout: 40) }
        for s in subs { s.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") } }
        for m in 0..<3 { _ = try publish(nodes[(m * 7) % 20].1, topic: topic, data: "sparse \(m)") }
        for (i, s) in subs.enumerated() {
            XCTAssertEqual(s.wait(timeout: 40), 0, "subscriber on node \(i) (links \(linkTable[i]), seed \(seed)): \(s.stderr)")
            XCTAssertEqual(Set(payloads(s)), ["sparse 0", "sparse 1", "sparse 2"], "node \(i), seed \(seed)")
        }
    }

    /// Forged and tampered messages, handed in both as a client and as a peer, reach nobody.
    func testForgedAndTamperedMessagesAreNotDelivered() throws {
        let topic = "test/forge"
        let nodes = try startNetwork(3, topic: topic) { Array(0..<$0) }
        let subs = try nodes.map { try subscribe($0.1, topic: topic, count: 1, timeout: 15) }
        for s in subs { s.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") } }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let victim = Ed25519KeyPair.generate()
        let attacker = Ed25519KeyPair.generate()
        func message(_ text: String, signer: Ed25519KeyPair, origin: [UInt8]) -> Gossip {
            var g = Gossip(topic: topic, origin: origin, sequence: 1, timestamp: UInt64(Date().timeIntervalSince1970 * 1000),
                           data: Array(text.utf8), signature: [])
            g.signature = signer.sign(g.signedBytes)
            return g
        }
        // Claims to come from the victim but is signed by the attacker.
        let forged = message("forged", signer: attacker, origin: victim.publicKey)
        // Genuinely signed, then altered in transit.
        var tampered = message("original", signer: victim, origin: victim.publicKey)
        tampered.data = Array("tampered".utf8)

        let endpoint = try Endpoint.parse(nodes[0].1)
        // As a gossip client: the node refuses with an explanation.
        var clientConfig = SessionConfig(identity: attacker, noiseStatic: .generate(), capabilities: ["ping", "gossip-client"],
                                         protocols: MessageRegistry([GossipProtocol()]))
        clientConfig.agent = "forger"
        let client = try Dialer.dial(endpoint, config: clientConfig, group: group, connectTimeout: 5).wait()
        for g in [forged, tampered] {
            try client.send(.gossip(.gossip(g))).wait()
            let reply = try client.nextMessage(timeout: 5).wait()
            guard case let .error(e) = reply else { return XCTFail("expected a rejection, got \(reply)") }
            XCTAssertTrue(e.message.contains("bad signature"), e.message)
        }
        // As a peer relaying them: dropped and the sender penalised.
        let relayConfig = SessionConfig(identity: .generate(), noiseStatic: .generate(), capabilities: ["ping", "gossip"],
                                        protocols: MessageRegistry([GossipProtocol()]))
        let peer = try Dialer.dial(endpoint, config: relayConfig, group: group,
                                   connectTimeout: 5).wait()
        try peer.send(.gossip(.subscribe(Subscribe(subscribe: true, topics: [topic])))).wait()
        try peer.send(.gossip(.gossip(forged))).wait()
        try peer.send(.gossip(.gossip(tampered))).wait()
        nodes[0].0.waitFor("the node to penalise the relay") { _, err in err.contains("penalised") }

        // A genuine message still flows, and it is the only thing anyone delivers.
        _ = try publish(nodes[2].1, topic: topic, data: "genuine")
        for (i, s) in subs.enumerated() {
            XCTAssertEqual(s.wait(timeout: 20), 0, s.stderr)
            XCTAssertEqual(payloads(s), ["genuine"], "node \(i) delivered only the genuine message")
        }
    }

    func testPublishValidatesItsInput() throws {
        _ = try h.keygen("n")
        let (_, line) = try h.listen("n")
        let badTopic = try h.run(["gossip", "publish", "--topic", "Bad Topic", "--peer", line, "--data", "x"])
        XCTAssertEqual(badTopic.status, 2)
        let tooBig = String(repeating: "x", count: 70_000)
        let big = try h.run(["gossip", "publish", "--topic", "ok", "--peer", line, "--data", tooBig])
        XCTAssertEqual(big.status, 2)
        let none = try h.run(["--home", h.home("s"), "gossip", "subscribe", "--ephemeral", "--topic", "quiet", "--peer", line, "--timeout", "0.5"])
        XCTAssertEqual(none.status, 1, "nothing received before the timeout")
    }
}

/// SplitMix64, so random topologies are reproducible from a printed seed.
struct TestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
