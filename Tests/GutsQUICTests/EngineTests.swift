import GutsCrypto
import GutsIdentity
@testable import GutsQUIC
import GutsSupport
import XCTest

/// Two engines joined by an in-memory network with a virtual clock.
final class QUICPair {
    /// Where the server sees the client's datagrams come from (a test moves it to simulate
    /// a migration or NAT rebinding; the client does not notice).
    var clientAddress = QUICSocketAddress(ip: "127.0.0.1", port: 40000)!
    let serverAddress = QUICSocketAddress(ip: "127.0.0.1", port: 7000)!
    var now = Instant(nanoseconds: 1_000_000_000)
    let client: QUICEngine
    var server: QUICEngine?
    let serverConfig: QUICConfig
    var clientEvents: [QUICEvent] = []
    var serverEvents: [QUICEvent] = []
    /// One-way delay of the virtual link.
    var delay = 0.005
    /// Drops a datagram when it returns true.
    var drop: ([UInt8]) -> Bool = { _ in false }
    var inFlight: [(at: Instant, toServer: Bool, bytes: [UInt8])] = []
    var requireRetry = false
    /// Both sides lay packets back to back as for segmentation offload; delivery cuts them.
    var coalesce = false
    /// Datagrams that carried more than one packet.
    var coalesced = 0
    let tokenSecret = Random.bytes(32)
    var retries = 0

    init(clientConfig: QUICConfig, serverConfig: QUICConfig) throws {
        self.serverConfig = serverConfig
        client = try QUICEngine.client(config: clientConfig, local: clientAddress, remote: serverAddress, now: now)
    }

    static func configs(network: String = "net", clientNetwork: String? = nil, expected: PeerID? = nil,
                        serverIdentity: Ed25519KeyPair = .generate()) -> (QUICConfig, QUICConfig) {
        let ci = Ed25519KeyPair.generate()
        let now = Int64(unixTime())
        let c = QUICConfig(identity: ci, certificate: .make(identity: ci, networkID: clientNetwork ?? network, now: now),
                           networkID: clientNetwork ?? network, expectedPeer: expected, unixNow: { now })
        let s = QUICConfig(identity: serverIdentity, certificate: .make(identity: serverIdentity, networkID: network, now: now),
                           networkID: network, unixNow: { now })
        return (c, s)
    }

    private func emit(_ datagrams: [QUICDatagram], toServer: Bool) {
        for d in datagrams {
            // The kernel cuts a coalesced datagram into packets of `segmentSize`.
            var packets: [[UInt8]] = [d.bytes]
            if let size = d.segmentSize {
                coalesced += 1
                packets = stride(from: 0, to: d.bytes.count, by: size).map { Array(d.bytes[$0..<min(d.bytes.count, $0 + size)]) }
            }
            for p in packets where !drop(p) { inFlight.append((now.adding(seconds: delay), toServer, p)) }
        }
    }

    /// Runs the network until nothing is in flight and no timer is due before `until` seconds pass.
    func run(seconds: Double, until done: () -> Bool = { false }) {
        let end = now.adding(seconds: seconds)
        emit(client.flush(now: now, coalesce: coalesce), toServer: true)
        while now < end && !done() {
            // Next event: a delivery or a timer.
            var next = end
            if let d = inFlight.map(\.at).min(), d < next { next = d }
            if let t = client.nextDeadline, t < next { next = t }
            if let t = server?.nextDeadline, t < next { next = t }
            if next > now { now = next }
            let due = inFlight.filter { $0.at <= now }
            inFlight.removeAll { $0.at <= now }
            for d in due {
                if d.toServer {
                    if let server {
                        serverEvents += server.receive(d.bytes, from: clientAddress, now: now)
                    } else {
                        switch QUICEngine.accept(d.bytes, config: serverConfig, local: serverAddress, remote: clientAddress, now: now,
                                                 requireRetry: requireRetry, tokenSecret: tokenSecret) {
                        case let .accepted(engine, _):
                            server = engine
                            serverEvents += engine.receive(d.bytes, from: clientAddress, now: now)
                        case let .retry(packet):
                            retries += 1
                            inFlight.append((now.adding(seconds: delay), false, packet))
                        case .drop:
                            break
                        }
                    }
                } else {
                    clientEvents += client.receive(d.bytes, from: serverAddress, now: now)
                }
            }
            if let t = client.nextDeadline, t <= now { clientEvents += client.handleTimeout(now: now) }
            if let s = server, let t = s.nextDeadline, t <= now { serverEvents += s.handleTimeout(now: now) }
            emit(client.flush(now: now, coalesce: coalesce), toServer: true)
            if let server { emit(server.flush(now: now, coalesce: coalesce), toServer: false) }
            if inFlight.isEmpty && client.nextDeadline == nil && server?.nextDeadline == nil { break }
        }
    }

    func established(_ events: [QUICEvent]) -> PeerID? {
        for case let .established(id) in events { return id }
        return nil
    }

    func closed(_ events: [QUICEvent]) -> QUICClose? {
        for case let .closed(why) in events { return why }
        return nil
    }

    func data(_ events: [QUICEvent], stream: Int64) -> ([UInt8], Bool) {
        var out: [UInt8] = []
        var fin = false
        for case let .streamData(id, bytes, f) in events where id == stream {
            out += bytes
            fin = fin || f
        }
        return (out, fin)
    }
}

final class QUICEngineTests: XCTestCase {
    /// Packets laid back to back for segmentation offload arrive whole and in order.
    func testCoalescedPacketsCarryAStream() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.coalesce = true
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        let stream = try XCTUnwrap(pair.client.openStream())
        var rng = SplitMix64(seed: 11)
        let big = (0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        pair.client.write(big, stream: stream, fin: true)
        pair.run(seconds: 60) { pair.data(pair.serverEvents, stream: stream).1 }
        let got = pair.data(pair.serverEvents, stream: stream)
        XCTAssertTrue(got.1)
        XCTAssertTrue(got.0 == big)
        XCTAssertGreaterThan(pair.coalesced, 10)
    }

    /// Control bytes written after a bulk transfer leave before the rest of it.
    func testPriorityStreamGoesFirst() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        let control = try XCTUnwrap(pair.client.openStream())
        let bulk = try XCTUnwrap(pair.client.openStream())
        pair.client.priorityStream = control
        pair.client.write([UInt8](repeating: 7, count: 2 << 20), stream: bulk, fin: true)
        pair.client.write(Array("ping".utf8), stream: control)
        pair.run(seconds: 30) { pair.data(pair.serverEvents, stream: control).0.count == 4 }
        XCTAssertEqual(pair.data(pair.serverEvents, stream: control).0, Array("ping".utf8))
        // Most of the bulk stream was still to come when the control bytes arrived.
        XCTAssertLessThan(pair.data(pair.serverEvents, stream: bulk).0.count, 1 << 20)
    }

    /// The in-flight cap follows the acknowledged rate: it stays at its floor until bytes
    /// are acknowledged, then allows the rate times (minimum RTT + allowance).
    func testDelayGuardCapFollowsAcknowledgedRate() {
        var guardState = QUICEngine.DelayGuard()
        let rtt: UInt64 = 20_000_000
        var now = Instant(nanoseconds: 1_000_000_000)
        XCTAssertEqual(guardState.cap(minRTT: rtt, now: now), UInt64(QUICEngine.DelayGuard.floor))
        // 12.5 MB/s (100 Mbit/s) acknowledged over a few round trips.
        for _ in 0..<5 {
            now = now.adding(seconds: 0.02)
            guardState.acked += 250_000
            _ = guardState.cap(minRTT: rtt, now: now)
        }
        let cap = Double(guardState.cap(minRTT: rtt, now: now))
        XCTAssertEqual(cap, 12.5e6 * 0.025, accuracy: 12.5e6 * 0.025 * 0.05)
        // No RTT sample yet: no cap.
        var fresh = QUICEngine.DelayGuard()
        XCTAssertEqual(fresh.cap(minRTT: 0, now: now), UInt64.max)
    }

    func testHandshakeVerifiesBothCertificates() throws {
        let serverIdentity = Ed25519KeyPair.generate()
        let (c, s) = QUICPair.configs(serverIdentity: serverIdentity)
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.clientEvents) != nil && pair.established(pair.serverEvents) != nil }
        XCTAssertEqual(pair.established(pair.clientEvents), try PeerID(publicKey: serverIdentity.publicKey))
        XCTAssertEqual(pair.established(pair.serverEvents), try PeerID(publicKey: c.identity.publicKey))
    }

    func testStreamsAndCloseAndFlowControl() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        let control = try XCTUnwrap(pair.client.openStream())
        let request = try XCTUnwrap(pair.client.openStream())
        XCTAssertNotEqual(control, request)
        pair.client.write(Array("hello".utf8), stream: control)
        // 5 MiB on one stream: more than the 4 MiB stream window, so flow control must reopen it.
        var rng = SplitMix64(seed: 7)
        let big = (0..<(5 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        pair.client.write(big, stream: request, fin: true)
        pair.run(seconds: 60) { pair.data(pair.serverEvents, stream: request).1 }
        XCTAssertEqual(pair.data(pair.serverEvents, stream: control).0, Array("hello".utf8))
        let got = pair.data(pair.serverEvents, stream: request)
        XCTAssertTrue(got.1)
        XCTAssertEqual(got.0.count, big.count)
        XCTAssertTrue(got.0 == big)
        // The server answers on the client's stream and ends it.
        pair.server?.write(Array("answer".utf8), stream: request, fin: true)
        pair.run(seconds: 5) { pair.data(pair.clientEvents, stream: request).1 }
        XCTAssertEqual(pair.data(pair.clientEvents, stream: request).0, Array("answer".utf8))
        pair.run(seconds: 1)
        XCTAssertEqual(pair.client.unacknowledgedBytes, 0)
        // Close with an application code: the peer sees it.
        pair.client.close(code: 1, reason: "bye", now: pair.now)
        pair.run(seconds: 2) { pair.closed(pair.serverEvents) != nil }
        XCTAssertEqual(pair.closed(pair.serverEvents), .remoteClose(code: 1, reason: "bye"))
    }

    func testWrongNetworkNeverConnects() throws {
        let (c, s) = QUICPair.configs(network: "a", clientNetwork: "b")
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.closed(pair.clientEvents) != nil }
        XCTAssertNil(pair.established(pair.clientEvents))
        XCTAssertNil(pair.established(pair.serverEvents))
        guard case .handshakeFailed = pair.closed(pair.clientEvents) else { return XCTFail("\(pair.clientEvents)") }
        // The client refused the server's certificate with CONNECTION_CLOSE type 0x1c, code
        // 0x0100 + alert bad_certificate (42): 0x012a (guts-protocol(7), QUIC, Closing).
        pair.run(seconds: 5) { pair.closed(pair.serverEvents) != nil }
        XCTAssertEqual(pair.closed(pair.serverEvents), .handshakeFailed("TLS alert bad_certificate"))
    }

    /// A close's reason phrase is the reason, cut to at most 200 bytes at a character
    /// boundary: the peer reads valid UTF-8 (guts-protocol(7), QUIC, Closing).
    func testCloseReasonIsCutAtACharacterBoundary() throws {
        XCTAssertEqual(QUICEngine.reasonPhrase("short"), Array("short".utf8))
        let long = "x" + String(repeating: "\u{e9}", count: 150)  // 301 bytes; byte 200 is inside a character
        XCTAssertEqual(QUICEngine.reasonPhrase(long), Array(("x" + String(repeating: "\u{e9}", count: 99)).utf8))
        XCTAssertEqual(QUICEngine.reasonPhrase(String(repeating: "y", count: 300)).count, 200)
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        pair.client.close(code: 2, reason: long, now: pair.now)
        pair.run(seconds: 2) { pair.closed(pair.serverEvents) != nil }
        XCTAssertEqual(pair.closed(pair.serverEvents), .remoteClose(code: 2, reason: "x" + String(repeating: "\u{e9}", count: 99)))
    }

    /// A client offering another ALPN protocol is refused in the TLS handshake with
    /// no_application_protocol (guts-protocol(7), QUIC, Closing: code 0x0178).
    func testOtherALPNIsRefusedWithNoApplicationProtocol() throws {
        var (c, s) = QUICPair.configs()
        c.alpn = "h3"
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.closed(pair.clientEvents) != nil && pair.closed(pair.serverEvents) != nil }
        XCTAssertNil(pair.established(pair.clientEvents))
        XCTAssertNil(pair.established(pair.serverEvents))
        // The client heard code 0x0178 (0x0100 + alert 120).
        XCTAssertEqual(pair.closed(pair.clientEvents), .handshakeFailed("TLS alert no_application_protocol"))
        XCTAssertEqual(pair.closed(pair.serverEvents), .handshakeFailed("TLS: no_application_protocol"))
    }

    func testPinnedIdentityMismatchRefused() throws {
        let other = try PeerID(publicKey: Ed25519KeyPair.generate().publicKey)
        let (c, s) = QUICPair.configs(expected: other)
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.closed(pair.clientEvents) != nil }
        guard case let .identityMismatch(expected, _) = pair.closed(pair.clientEvents) else { return XCTFail("\(pair.clientEvents)") }
        XCTAssertEqual(expected, other)
        XCTAssertNil(pair.established(pair.serverEvents))
        // Refused as a certificate is (guts-protocol(7), QUIC, Certificate).
        pair.run(seconds: 5) { pair.closed(pair.serverEvents) != nil }
        XCTAssertEqual(pair.closed(pair.serverEvents), .handshakeFailed("TLS alert bad_certificate"))
    }

    func testSelfConnectionRefused() throws {
        let me = Ed25519KeyPair.generate()
        let (c0, s) = QUICPair.configs(serverIdentity: me)
        let c = QUICConfig(identity: me, certificate: .make(identity: me, networkID: "net", now: Int64(unixTime())), networkID: "net")
        _ = c0
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.closed(pair.clientEvents) != nil }
        XCTAssertEqual(pair.closed(pair.clientEvents), .selfConnection)
    }

    func testRetryValidatesAddressFirst() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.requireRetry = true
        pair.run(seconds: 5) { pair.established(pair.clientEvents) != nil && pair.established(pair.serverEvents) != nil }
        XCTAssertEqual(pair.retries, 1)
        XCTAssertNotNil(pair.established(pair.clientEvents))
    }

    func testIdleTimeout() throws {
        var (c, s) = QUICPair.configs()
        c.idleTimeout = 3
        c.keepaliveInterval = 0
        s.idleTimeout = 3
        s.keepaliveInterval = 0
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        XCTAssertNotNil(pair.established(pair.clientEvents))
        pair.run(seconds: 10) { pair.closed(pair.clientEvents) != nil && pair.closed(pair.serverEvents) != nil }
        XCTAssertEqual(pair.closed(pair.clientEvents), .idleTimeout)
    }

    func testKeepaliveHoldsIdleConnection() throws {
        var (c, s) = QUICPair.configs()
        c.idleTimeout = 3
        c.keepaliveInterval = 1
        s.idleTimeout = 3
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        pair.run(seconds: 20) { pair.closed(pair.clientEvents) != nil }
        XCTAssertNil(pair.closed(pair.clientEvents))
        XCTAssertNil(pair.closed(pair.serverEvents))
    }

    func testLossyLinkStillDelivers() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        let seed = UInt64.random(in: 0...UInt64.max)
        var rng = SplitMix64(seed: seed)
        pair.drop = { _ in rng.next() % 100 < 5 }
        pair.run(seconds: 20) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        let stream = try XCTUnwrap(pair.client.openStream(), "seed \(seed)")
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        pair.client.write(payload, stream: stream, fin: true)
        pair.run(seconds: 60) { pair.data(pair.serverEvents, stream: stream).1 }
        XCTAssertTrue(pair.data(pair.serverEvents, stream: stream).0 == payload, "seed \(seed)")
    }

    func testStreamCapEnforced() throws {
        var (c, s) = QUICPair.configs()
        s.maxStreams = 3
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        var opened: [Int64] = []
        while let id = pair.client.openStream() {
            opened.append(id)
            if opened.count > 10 { break }
        }
        XCTAssertEqual(opened.count, 3)
        // Finishing one in both directions lets the client open another.
        pair.client.write([1], stream: opened[0], fin: true)
        pair.run(seconds: 2) { pair.data(pair.serverEvents, stream: opened[0]).1 }
        pair.server?.write([2], stream: opened[0], fin: true)
        pair.run(seconds: 2) { pair.client.streamsLeft > 0 }
        XCTAssertNotNil(pair.client.openStream())
    }

    /// The client's datagrams start coming from another address: the server validates the
    /// new path (PATH_CHALLENGE answered from there), reports the migration once, sends
    /// there, and the connection goes on.
    func testMigrationIsReportedOnceThePathIsValidated() throws {
        let (c, s) = QUICPair.configs()
        let pair = try QUICPair(clientConfig: c, serverConfig: s)
        pair.run(seconds: 5) { pair.established(pair.serverEvents) != nil && pair.established(pair.clientEvents) != nil }
        let server = try XCTUnwrap(pair.server)
        let stream = try XCTUnwrap(pair.client.openStream())
        pair.client.write([1, 2, 3], stream: stream)
        pair.run(seconds: 1) { pair.data(pair.serverEvents, stream: stream).0.count == 3 }
        XCTAssertFalse(pair.serverEvents.contains { if case .migrated = $0 { return true } else { return false } })
        let moved = try XCTUnwrap(QUICSocketAddress(ip: "127.0.0.2", port: 40001))
        pair.clientAddress = moved
        pair.client.write([4, 5], stream: stream)
        pair.run(seconds: 3) { pair.serverEvents.contains(.migrated(moved)) }
        XCTAssertEqual(pair.serverEvents.filter { $0 == .migrated(moved) }.count, 1)
        XCTAssertEqual(server.remote, moved)
        XCTAssertEqual(pair.data(pair.serverEvents, stream: stream).0, [1, 2, 3, 4, 5])
        XCTAssertNil(pair.closed(pair.serverEvents))
        // Answers still reach the client.
        server.write([9], stream: stream, fin: true)
        pair.run(seconds: 2) { pair.data(pair.clientEvents, stream: stream).1 }
        XCTAssertEqual(pair.data(pair.clientEvents, stream: stream).0, [9])
    }

    func testStatelessResetForUnknownConnection() {
        var packet: [UInt8] = [0x40] + Random.bytes(18) + Random.bytes(40)
        packet[0] = 0x41
        XCTAssertNotNil(QUICEngine.statelessReset(for: packet, secret: Random.bytes(32)))
        XCTAssertNil(QUICEngine.statelessReset(for: [0xc0] + Random.bytes(60), secret: Random.bytes(32)))
    }
}
