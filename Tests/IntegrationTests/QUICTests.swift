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
        // A dropped Ping or Pong is retransmitted by QUIC: every ping is answered. A small
        // sync may cross the relay in few enough datagrams that none was held back (5%
        // each), so pings go on, ten at a time, until the relay has done both.
        for _ in 0..<10 {
            let ping = try h.run(["--home", h.home("client"), "ping", "-c", "10", "-i", "0.1", via])
            XCTAssertEqual(ping.status, 0, "seed \(seed): \(ping.stderr)")
            XCTAssertTrue(ping.stdout.contains("10 received"), "seed \(seed): \(ping.stdout)")
            if relay.dropped > 0 && relay.reordered > 0 { break }
        }
        XCTAssertGreaterThan(relay.dropped, 0, "seed \(seed): the relay dropped nothing")
        XCTAssertGreaterThan(relay.reordered, 0, "seed \(seed): the relay reordered nothing")
    }
}

/// What a node advertises for QUIC (guts-protocol(7), QUIC, Addresses and advertising).
final class QUICAdvertisingTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// A UDP socket on 127.0.0.1 that never answers, bound before a node listens on its port
    /// number, so the node's QUIC side cannot bind; it counts what arrives.
    final class SilentUDP {
        let fd: Int32
        let port: Int
        init?() {
            guard let (fd, port) = boundUDPSocket("127.0.0.1") else { return nil }
            self.fd = fd
            self.port = port
        }
        /// Datagrams received so far (read without waiting).
        func drain() -> Int { drainConnections().count }

        /// The QUIC connections the datagrams received so far belong to (source connection
        /// ID of each long-header packet; an empty ID for anything else), one per datagram.
        func drainConnections() -> [[UInt8]] {
            var out: [[UInt8]] = []
            var buffer = [UInt8](repeating: 0, count: 2048)
            while true {
                let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                guard n >= 0 else { return out }
                out.append(InitialFlood.sourceID(of: Array(buffer[0..<n])) ?? [])
            }
        }
        deinit { close(fd) }
    }

    /// Starts `guts listen` on a port whose UDP side the test holds (so the node serves TCP
    /// only); returns it, the socket, and its `PEERID@ADDR` line.
    func listenWithoutQUIC(_ name: String, _ extra: [String], port: Int? = nil,
                           holding socket: SilentUDP? = nil) throws -> (Harness.Running, SilentUDP, String) {
        for _ in 0..<10 {
            guard let u = socket ?? SilentUDP() else { continue }
            let r = try h.start(["--home", h.home(name), "listen", "--listen", "127.0.0.1:\(u.port)"] + extra)
            r.waitFor("listen to print its address or fail") { out, _ in out.contains("\n") || !r.process.isRunning }
            if r.process.isRunning { return (r, u, r.stdout.split(separator: "\n").first.map(String.init) ?? "") }
            if socket != nil { break }
        }
        throw XCTSkip("no free TCP port beside a taken UDP port")
    }

    /// A node learns from a bootstrap peer's HelloAck that it serves no QUIC: when the peer
    /// restarts, the node dials it again over TCP only, without one datagram to its port.
    func testHelloAckWithoutQUICMakesRedialsTCPOnly() throws {
        let id = try h.keygen("n1")
        _ = try h.keygen("n2")
        let (n1, silent, line) = try listenWithoutQUIC("n1", ["--no-dht"])
        let n2 = try h.start(["--home", h.home("n2"), "listen", "--listen", "127.0.0.1:0", "--no-dht", "--bootstrap", line])
        n2.waitFor("n2 to connect to n1") { _, err in err.contains("peer connected: \(id)") }
        // The first dial knew nothing of n1 but its address: it tried QUIC there too (and its
        // QUIC attempt may go on retransmitting its Initial until it gives up).
        let firstDial = Set(silent.drainConnections())
        n1.signal(SIGTERM)
        XCTAssertEqual(n1.wait(), 0, n1.stderr)
        n2.waitFor("n2 to see n1 go") { _, err in err.contains("peer disconnected: \(id)") }
        let (again, _, _) = try listenWithoutQUIC("n1", ["--no-dht"], holding: silent)
        n2.waitFor("n2 to dial n1 again", timeout: 20) { _, err in err.components(separatedBy: "peer connected: \(id)").count > 2 }
        XCTAssertTrue(n2.stderr.contains("(bootstrap, "), n2.stderr)
        let later = Set(silent.drainConnections())
        XCTAssertTrue(later.isSubset(of: firstDial), "n2 tried QUIC again on a peer whose HelloAck advertised none: \(later.count) connections")
        again.signal(SIGTERM)
        _ = again.wait()
    }

    /// A node whose UDP port is taken advertises no QUIC: its DHT record lists its TCP
    /// address only, and `guts dial`/`guts ping PEERID` reach it over TCP at once, without
    /// one QUIC datagram sent to its port; a node serving QUIC lists its QUIC address.
    func testNodeWithoutQUICAdvertisesNoneAndIsDialedOverTCPOnly() throws {
        let bootID = try h.keygen("n0")
        let id = try h.keygen("n1")
        _ = try h.keygen("client")
        let (_, bootLine) = try h.listen("n0", [])
        let (n1, silent, line) = try listenWithoutQUIC("n1", ["--bootstrap", bootLine])
        XCTAssertEqual(line, "\(id)@127.0.0.1:\(silent.port)")
        // Logs go through a writer thread: the line may follow the address on stdout.
        n1.waitFor("the node to log that QUIC is off") { _, err in err.contains("QUIC disabled") }

        // Its peer record, found through the bootstrap node: the TCP address only.
        var found: Harness.Result?
        try eventually(timeout: 20, every: 0.1) {
            found = try h.run(["--home", h.home("n0"), "--json", "find", id])
            return found?.status == 0
        }
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((found?.stdout ?? "").utf8)) as? [String: Any],
                                   found?.stderr ?? "")
        XCTAssertEqual(object["addresses"] as? [String], ["127.0.0.1:\(silent.port)"], found?.stdout ?? "")
        // The bootstrap node serves QUIC: its record lists both.
        let boot = try h.run(["--home", h.home("n1"), "find", bootID])
        let bootAddress = String(bootLine.split(separator: "@")[1])
        XCTAssertEqual(boot.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       "\(bootID)@\(bootAddress)\n\(bootID)@quic/\(bootAddress)", boot.stderr)

        // By peer ID, through the DHT: over TCP, at once, and nothing is sent to the UDP port.
        let before = silent.drain()
        let started = Date()
        let dial = try h.run(["--home", h.home("client"), "--json", "dial", "--ephemeral", "--bootstrap", bootLine, id])
        XCTAssertEqual(dial.status, 0, dial.stderr)
        XCTAssertTrue(dial.stdout.contains("\"transport\":\"tcp\""), dial.stdout)
        let ping = try h.run(["--home", h.home("client"), "ping", "--ephemeral", "-c", "1", "--bootstrap", bootLine, id])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "two commands waited for something")
        XCTAssertEqual(silent.drain(), 0, "a dialer sent QUIC datagrams to a port the node does not serve")
        XCTAssertEqual(before, 0, "the bootstrap node sent QUIC datagrams to a node that advertised none")
    }
}
