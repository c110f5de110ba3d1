import Foundation
import GutsNetSim
import XCTest

/// The protocol over QUIC with real processes: the same node serves TCP and QUIC on one
/// port number, both transports sync the same repository, pinning holds, and a lossy,
/// reordering path still completes a verified sync and keeps ping answering. (Every other
/// integration test dials without --transport, so it races both and mostly runs on QUIC.)
final class QUICTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testBothTransportsSyncPingAndPin() throws {
        let f = try SyncFixture(h)
        try f.buildHistory()
        try f.startServer()
        let (id, address) = (String(f.peer.split(separator: "@")[0]), String(f.peer.split(separator: "@")[1]))

        // dial says which transport connected; each can be forced.
        for (args, expected) in [([String](), "quic"), (["--transport", "tcp"], "tcp"), (["--transport", "quic"], "quic")] {
            let d = try h.run(["--home", h.home("client"), "--json", "dial"] + args + [f.peer])
            XCTAssertEqual(d.status, 0, d.stderr)
            XCTAssertTrue(d.stdout.contains("\"transport\":\"\(expected)\""), "\(args): \(d.stdout)")
        }
        // GUTS_TRANSPORT, then the config's transport key, give the default; --transport wins.
        let fromEnvironment = try h.run(["--home", h.home("client"), "--json", "dial", f.peer], environment: ["GUTS_TRANSPORT": "tcp"])
        XCTAssertTrue(fromEnvironment.stdout.contains("\"transport\":\"tcp\""), fromEnvironment.stdout + fromEnvironment.stderr)
        _ = try h.keygen("configured")
        let configured = h.home("configured")
        try "transport = tcp\n".write(toFile: configured + "/config", atomically: true, encoding: .utf8)
        let fromConfig = try h.run(["--home", configured, "--json", "dial", "--known-peers", "off", f.peer], environment: ["GUTS_TRANSPORT": ""])
        XCTAssertTrue(fromConfig.stdout.contains("\"transport\":\"tcp\""), fromConfig.stdout + fromConfig.stderr)
        let forced = try h.run(["--home", configured, "--json", "dial", "--known-peers", "off", "--transport", "quic", f.peer],
                               environment: ["GUTS_TRANSPORT": "tcp"])
        XCTAssertTrue(forced.stdout.contains("\"transport\":\"quic\""), forced.stdout + forced.stderr)
        let invalid = try h.run(["--home", configured, "dial", f.peer], environment: ["GUTS_TRANSPORT": "carrier-pigeon"])
        XCTAssertEqual(invalid.status, 2, invalid.stderr)
        let tcpOnly = try h.run(["--home", h.home("client"), "--json", "dial", "\(id)@tcp/\(address)"])
        XCTAssertTrue(tcpOnly.stdout.contains("\"transport\":\"tcp\""), tcpOnly.stdout)

        // First sync over TCP, the incremental one over QUIC: same mirror, verified.
        let first = try f.sync(extra: ["--transport", "tcp"])
        XCTAssertEqual(first.status, 0, first.stderr)
        try f.assertMirrorsUpstream()
        _ = try f.commit("over quic", files: ["quic.txt": "quic\n"])
        try f.push()
        let second = try f.sync(peers: ["\(id)@quic/\(address)"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(second.json["objects"] as? Int, 3, second.stdout)
        try f.assertMirrorsUpstream()
        try f.assertVerifies()

        let ping = try h.run(["--home", h.home("client"), "ping", "-c", "3", "-i", "0.1", "\(id)@quic/\(address)"])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        XCTAssertTrue(ping.stdout.contains("3 received"), ping.stdout)

        // Another identity at that address: refused over QUIC as over TCP (exit 5).
        let other = try h.keygen("other")
        for target in ["\(other)@quic/\(address)", "\(other)@\(address)"] {
            let wrong = try h.run(["--home", h.home("client"), "dial", "--known-peers", "off", target])
            XCTAssertEqual(wrong.status, 5, "\(target): \(wrong.stderr)")
            XCTAssertTrue(wrong.stderr.contains("expected \(other)"), wrong.stderr)
        }
        // Another network: the certificate's identity signature does not verify.
        let network = try h.run(["--home", h.home("client"), "dial", "--known-peers", "off", "--network", "elsewhere", "quic/\(address)"])
        XCTAssertEqual(network.status, 5, network.stderr)
    }

    func testLossyReorderingPathStillSyncsAndPings() throws {
        let seed = UInt64.random(in: 0...UInt64.max)
        let f = try SyncFixture(h)
        try f.buildHistory()
        try f.startServer()
        let (id, address) = (String(f.peer.split(separator: "@")[0]), String(f.peer.split(separator: "@")[1]))
        let serverPort = Int(address.split(separator: ":").last ?? "") ?? 0
        var options = UDPRelay.Options()
        options.dropPercent = 5
        options.reorderPercent = 5
        options.delay = 0.002
        let relay = try XCTUnwrap(UDPRelay.start(targetPort: serverPort, options: options, seed: seed))
        defer { relay.stop() }
        let via = "\(id)@quic/127.0.0.1:\(relay.port)"
        let sync = try f.sync(peers: [via], timeout: 120)
        XCTAssertEqual(sync.status, 0, "seed \(seed): \(sync.stderr)")
        try f.assertMirrorsUpstream()
        try f.assertVerifies()
        let ping = try h.run(["--home", h.home("client"), "ping", "-c", "10", "-i", "0.1", via])
        // A dropped Ping or Pong is retransmitted by QUIC: every ping is answered.
        XCTAssertEqual(ping.status, 0, "seed \(seed): \(ping.stderr)")
        XCTAssertTrue(ping.stdout.contains("10 received"), "seed \(seed): \(ping.stdout)")
        XCTAssertGreaterThan(relay.dropped, 0, "seed \(seed): the relay dropped nothing")
        XCTAssertGreaterThan(relay.reordered, 0, "seed \(seed): the relay reordered nothing")
    }
}
