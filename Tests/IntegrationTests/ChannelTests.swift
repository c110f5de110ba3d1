import Foundation
import XCTest

/// keygen, listen, dial and ping as a user runs them, on 127.0.0.1 with port 0.
final class ChannelTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func testKeygenListenDialPing() throws {
        let serverID = try h.keygen("server")
        XCTAssertTrue(serverID.hasPrefix("gt") && serverID.count == 58, serverID)
        _ = try h.keygen("client")
        let (listener, line) = try h.listen("server")
        XCTAssertTrue(line.hasPrefix(serverID + "@127.0.0.1:"), line)

        let dial = try h.run(["--home", h.home("client"), "dial", line])
        XCTAssertEqual(dial.status, 0, dial.stderr)
        XCTAssertTrue(dial.stdout.contains("peer         \(serverID) (verified)"), dial.stdout)
        XCTAssertTrue(dial.stdout.contains("protocol     1"))
        XCTAssertTrue(dial.stdout.contains("address      127.0.0.1:\(port(of: line))"), dial.stdout)
        XCTAssertTrue(dial.stdout.contains("capabilities ping"))

        let json = try h.run(["--home", h.home("client"), "--json", "dial", line])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["peer_id"] as? String, serverID)
        XCTAssertEqual(object?["protocol_version"] as? Int, 1)
        XCTAssertEqual(object?["address"] as? String, "127.0.0.1:\(port(of: line))")
        XCTAssertNotNil(object?["handshake_ms"] as? Double)

        let ping = try h.run(["--home", h.home("client"), "ping", "-c", "3", "-i", "0.05", line])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        let lines = ping.stdout.split(separator: "\n")
        XCTAssertTrue(lines.first?.hasPrefix("PING \(serverID)@127.0.0.1:") ?? false, ping.stdout)
        XCTAssertEqual(lines.filter { $0.contains("pong from") }.count, 3)
        XCTAssertTrue(ping.stdout.contains("seq=3 time="))
        XCTAssertTrue(ping.stdout.contains("3 pings transmitted, 3 received, 0% loss"))
        XCTAssertTrue(ping.stdout.contains("rtt min/avg/max/mdev = "))

        let pingJSON = try h.run(["--home", h.home("client"), "--json", "ping", "-c", "2", "-i", "0.05", line])
        XCTAssertEqual(pingJSON.status, 0)
        let objects = try pingJSON.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(objects.count, 3)
        XCTAssertEqual(objects[0]?["type"] as? String, "pong")
        XCTAssertEqual(objects[2]?["received"] as? Int, 2)

        // The listener logged the sessions on stderr, not stdout.
        XCTAssertTrue(listener.stderr.contains("peer connected: "), listener.stderr)
        XCTAssertEqual(listener.stdout.split(separator: "\n").count, 1, "stdout carries only the address line")
    }

    func testDialWithoutIdentityUsesOneTimeKeyAndAddressWithoutPeerID() throws {
        _ = try h.keygen("server")
        let (_, line) = try h.listen("server")
        let address = String(line.split(separator: "@")[1])
        let r = try h.run(["--home", h.home("nobody"), "dial", "--ephemeral", address])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("(verified)"))
    }

    func testPeerIDMismatchIsRefused() throws {
        _ = try h.keygen("server")
        let other = try h.keygen("other")
        let (_, line) = try h.listen("server")
        let address = String(line.split(separator: "@")[1])
        let r = try h.run(["--home", h.home("other"), "dial", "\(other)@\(address)"])
        XCTAssertEqual(r.status, 5, "authentication exit code; stderr: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("expected \(other)"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)
        let ping = try h.run(["ping", "-c", "1", "\(other)@\(address)"], environment: ["GUTS_HOME": h.home("other")])
        XCTAssertEqual(ping.status, 5)
    }

    func testUnreachableAndTimeoutExitCodes() throws {
        // A port nothing listens on: connection refused.
        let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(probe, $0, &len) } }
        let freePort = Int(UInt16(bigEndian: addr.sin_port))
        close(probe)
        let refused = try h.run(["--home", h.home("c"), "dial", "--ephemeral", "127.0.0.1:\(freePort)"])
        XCTAssertEqual(refused.status, 4, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("cannot connect"), refused.stderr)

        // A TCP server that accepts and never speaks: the handshake times out.
        let server = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(server) }
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(server, 4)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(server, $0, &len) } }
        let silentPort = Int(UInt16(bigEndian: addr.sin_port))
        let start = Date()
        let timeout = try h.run(["--home", h.home("c"), "dial", "--ephemeral", "--timeout", "1", "127.0.0.1:\(silentPort)"])
        XCTAssertEqual(timeout.status, 7, timeout.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        let badAddress = try h.run(["dial", "not a host:99999"])
        XCTAssertEqual(badAddress.status, 2)
    }

    /// Garbage, a truncated handshake and a silent connection are dropped; the listener
    /// still answers a proper ping afterwards.
    func testListenerSurvivesHostileClients() throws {
        _ = try h.keygen("server")
        let (listener, line) = try h.listen("server", ["--handshake-timeout", "1"])
        let p = port(of: line)

        let garbage = try XCTUnwrap(RawSocket(port: p))
        garbage.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8) + [UInt8](repeating: 0xff, count: 3000))
        XCTAssertTrue(garbage.closedByPeer(within: 5), "garbage connection must be dropped")

        let truncated = try XCTUnwrap(RawSocket(port: p))
        truncated.send([0, 32] + [UInt8](repeating: 7, count: 20))  // half of message 1
        let silent = try XCTUnwrap(RawSocket(port: p))
        XCTAssertTrue(truncated.closedByPeer(within: 5), "half a handshake is dropped at the handshake timeout")
        XCTAssertTrue(silent.closedByPeer(within: 5), "a silent client is dropped at the handshake timeout")

        let ping = try h.run(["--home", h.home("client"), "ping", "--ephemeral", "-c", "1", line])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        XCTAssertTrue(ping.stdout.contains("1 received"))
        XCTAssertTrue(listener.process.isRunning)
        XCTAssertTrue(listener.stderr.contains("rejected"), listener.stderr)
    }

    func testMaxConnectionsIsEnforcedWithAnExplanation() throws {
        _ = try h.keygen("server")
        let (listener, line) = try h.listen("server", ["--max-connections", "1"])
        // One long-running ping holds the only slot; a peer alone is always protected from
        // eviction, so the newcomer is refused in place of HelloAck.
        let holder = try h.start(["--home", h.home("c0"), "ping", "--ephemeral", "-i", "0.2", line])
        holder.waitFor("a pong") { out, _ in out.contains("pong from") }
        let refused = try h.run(["--home", h.home("c9"), "dial", "--ephemeral", line])
        XCTAssertEqual(refused.status, 9, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("too-many-connections"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("at most 1"), refused.stderr)
        // Freeing the slot lets the next one in.
        holder.signal(SIGINT)
        XCTAssertEqual(holder.wait(), 0)
        XCTAssertTrue(holder.stdout.contains("guts ping statistics"), "ping prints its summary on SIGINT")
        // The node frees the slot when it sees the connection close, just after ping exits.
        let admitted = try eventually(timeout: 10, every: 0.1) {
            try h.run(["--home", h.home("c9"), "dial", "--ephemeral", line]).status == 0
        }
        XCTAssertTrue(admitted, listener.stderr)
    }

    /// When the node is full, a newcomer evicts the least valuable inbound peer (the
    /// youngest of the busiest address group, as Bitcoin Core does) instead of being refused.
    func testFullNodeEvictsTheLeastValuablePeerForANewcomer() throws {
        _ = try h.keygen("server")
        let (listener, line) = try h.listen("server", ["--max-connections", "3"])
        let holders = try (0..<3).map { i -> Harness.Running in
            let p = try h.start(["--home", h.home("c\(i)"), "ping", "--ephemeral", "-i", "0.2", line])
            p.waitFor("a pong") { out, _ in out.contains("pong from") }
            return p
        }
        let newcomer = try h.run(["--home", h.home("c9"), "dial", "--ephemeral", line])
        XCTAssertEqual(newcomer.status, 0, newcomer.stderr)
        listener.waitFor("an eviction") { _, err in err.contains("evicting") }
        // Exactly one holder was told why it was dropped.
        eventually { holders.contains { !$0.process.isRunning } }
        let evicted = holders.filter { !$0.process.isRunning }
        XCTAssertEqual(evicted.count, 1, listener.stderr)
        XCTAssertTrue(evicted.first?.stderr.contains("evicted") ?? false, evicted.first?.stderr ?? "")
        for h in holders { h.signal(SIGINT) }
    }

    func testGracefulShutdownSaysGoodbye() throws {
        _ = try h.keygen("server")
        let (listener, line) = try h.listen("server")
        let client = try h.start(["--home", h.home("c"), "ping", "--ephemeral", "-i", "0.1", line])
        client.waitFor("a pong") { out, _ in out.contains("pong from") }
        listener.signal(SIGTERM)
        XCTAssertEqual(listener.wait(timeout: 10), 0)
        XCTAssertTrue(listener.stderr.contains("received SIGTERM, shutting down"), listener.stderr)
        XCTAssertTrue(listener.stderr.contains("stopped"))
        // The client learns why the connection ended and stops with its summary.
        XCTAssertEqual(client.wait(timeout: 10), 0)
        XCTAssertTrue(client.stderr.contains("shutdown"), client.stderr)
        XCTAssertTrue(client.stdout.contains("guts ping statistics"))
    }

    func testBootstrapPeersConnectAndReconnect() throws {
        _ = try h.keygen("a")
        _ = try h.keygen("b")
        let (a, aLine) = try h.listen("a")
        let (b, _) = try h.listen("b", ["--bootstrap", aLine])
        b.waitFor("b to connect to its bootstrap peer") { _, err in err.contains("(bootstrap") }
        a.waitFor("a to see b") { _, err in err.contains("peer connected") }
        // Restart a on the same port: b reconnects by itself.
        a.signal(SIGTERM)
        XCTAssertEqual(a.wait(), 0)
        b.waitFor("b to notice") { _, err in err.contains("reconnecting") }
        let port = aLine.split(separator: ":").last.map(String.init) ?? ""
        let a2 = try h.start(["--home", h.home("a"), "listen", "--listen", "127.0.0.1:\(port)"])
        a2.waitFor("b to reconnect to the restarted a", timeout: 20) { _, err in err.contains("peer connected") }
    }

    func testIPv6AndHostNames() throws {
        _ = try h.keygen("server")
        let r = try h.start(["--home", h.home("server"), "listen", "--listen", "[::1]:0"])
        r.waitFor("listen on ::1 to answer") { out, _ in out.contains("\n") || !r.process.isRunning }
        guard r.process.isRunning, let line = r.stdout.split(separator: "\n").first.map(String.init) else {
            throw XCTSkip("no IPv6 loopback on this machine: \(r.stderr)")
        }
        XCTAssertTrue(line.contains("@[::1]:"), line)
        let dial = try h.run(["--home", h.home("c"), "dial", "--ephemeral", line])
        XCTAssertEqual(dial.status, 0, dial.stderr)
        XCTAssertTrue(dial.stdout.contains("address      [::1]:"), dial.stdout)
        // A host name that resolves to the loopback (the listener on 127.0.0.1).
        _ = try h.keygen("v4")
        let (_, v4) = try h.listen("v4")
        let hostPort = "localhost:" + String(port(of: v4))
        let byName = try h.run(["--home", h.home("c"), "ping", "--ephemeral", "-c", "1", hostPort])
        XCTAssertEqual(byName.status, 0, byName.stderr)
    }
}
