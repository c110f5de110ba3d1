import Foundation
import Glibc
import GutsCrypto
import GutsQUIC
import GutsSupport
import GutsSync
import GutsWire
import NIOConcurrencyHelpers
import XCTest

/// The QUIC listener's handshake defences against a real attacker: a flood of genuine
/// client Initials (each a new connection ID, from many source ports) that never finish
/// their handshakes. Past the Retry threshold the listener must answer with stateless
/// Retry packets instead of keeping state, so its memory stays flat, and a legitimate
/// `guts ping` / `guts dial` over QUIC (which echoes the Retry token) is still served.
final class QUICDefenceTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Many half-open QUIC handshakes: answered with Retry, bounded memory, legitimate
    /// clients served throughout.
    func testInitialFloodIsAnsweredWithRetryAndLegitimateClientsAreServed() throws {
        try flood(echoRetry: false)
    }

    /// The attacker proves its address (echoes each Retry token) and still never finishes:
    /// its address group's cap of validated handshakes (8) holds, the rest is refused, and a
    /// legitimate client from another address is served.
    func testValidatedHalfOpenHandshakesAreCappedPerAddressGroup() throws {
        try flood(echoRetry: true)
    }

    private func flood(echoRetry: Bool) throws {
        _ = try h.keygen("node")
        let (node, line) = try h.listen("node")
        let port = port(of: line)
        let flood = InitialFlood(port: port, sockets: 32, echoRetry: echoRetry)
        let stop = NIOLockedValueBox(false)
        let flooder = Thread {
            while !stop.withLockedValue({ $0 }) { flood.sendOne() }
        }
        flooder.start()
        defer { stop.withLockedValue { $0 = true } }

        // Past the listener's Retry threshold (16 pending) plus margin: every further
        // Initial costs the listener no connection state.
        XCTAssertTrue(flood.waitUntil(sent: 200, timeout: 20), "the flood did not get going: \(flood.summary)")
        let before = ChurnTests.rss(node.process.processIdentifier)
        let sentBefore = flood.summary.sent

        for _ in 0..<3 {
            let ping = try h.run(["--home", h.home("legit"), "ping", "--ephemeral", "--transport", "quic", "-c", "1", "-W", "5", line])
            XCTAssertEqual(ping.status, 0, "legitimate ping during the flood: \(ping.stderr) (\(flood.summary))")
        }
        let dial = try h.run(["--home", h.home("legit"), "--json", "dial", "--ephemeral", "--transport", "quic", line])
        XCTAssertEqual(dial.status, 0, "legitimate dial during the flood: \(dial.stderr) (\(flood.summary))")
        XCTAssertTrue(dial.stdout.contains("\"transport\":\"quic\""), dial.stdout)

        // Some thousands more half-open handshakes must not grow the listener: each kept
        // one would hold an ngtcp2 connection and a TLS session (tens of KiB).
        XCTAssertTrue(flood.waitUntil(sent: sentBefore + 2000, timeout: 30), "the flood stalled: \(flood.summary)")
        stop.withLockedValue { $0 = true }
        let after = ChurnTests.rss(node.process.processIdentifier)
        let s = flood.summary
        print("QUIC Initial flood: \(s), listener RSS \(before / 1024) KiB -> \(after / 1024) KiB")
        XCTAssertLessThan(after - before, 24 << 20, "listener memory grew under the flood: \(before) -> \(after) bytes (\(s))")
        // The listener answered the flood with Retry packets, not handshakes.
        XCTAssertGreaterThan(s.retries, s.sent / 2, "too few Retry answers: \(s)")
        // Unproven: the first 16 (Retry threshold); proven: 8 more at most (the group's cap).
        XCTAssertLessThanOrEqual(s.handshakes, 2 * QUICTuning.retryThreshold, "the listener kept too many handshakes: \(s)")
        if echoRetry { XCTAssertGreaterThan(s.echoed, 100, "the attacker echoed few Retry tokens: \(s)") }
        XCTAssertTrue(node.process.isRunning, "the listener died under the flood")
    }
}

/// Sends genuine QUIC client Initials (fresh connection IDs, real ClientHello) from a set
/// of UDP sockets on 127.0.0.2 and never answers; counts what the listener sends back.
final class InitialFlood: @unchecked Sendable {
    struct Summary: CustomStringConvertible {
        var sent = 0, retries = 0, echoed = 0, handshakes = 0, other = 0
        var description: String {
            "\(sent) Initials sent, \(retries) Retry answers, \(echoed) Initials with a token, \(handshakes) handshakes begun, \(other) other packets"
        }
    }

    private let lock = NSLock()
    private var counts = Summary()
    private var fds: [Int32] = []
    private var locals: [QUICSocketAddress] = []
    private var next = 0
    private let remote: QUICSocketAddress
    private var target = sockaddr_in()
    private let config: QUICConfig
    /// Destination connection IDs of handshake packets already counted (one per connection).
    private var seen = Set<[UInt8]>()

    /// Whether the attacker echoes Retry tokens (proving its address, 127.0.0.2) before
    /// abandoning the handshake.
    private let echoRetry: Bool
    /// Client connections awaiting a Retry, by their source connection ID (bounded).
    private var waiting: [[UInt8]: (engine: QUICEngine, socket: Int)] = [:]
    private var waitingOrder: [[UInt8]] = []

    init(port: Int, sockets: Int, echoRetry: Bool = false) {
        self.echoRetry = echoRetry
        remote = QUICSocketAddress(ip: "127.0.0.1", port: port)!
        let me = Ed25519KeyPair.generate()
        config = QUICConfig(identity: me, certificate: .make(identity: me, networkID: "", now: Int64(Date().timeIntervalSince1970)), networkID: "")
        target.sin_family = sa_family_t(AF_INET)
        target.sin_addr.s_addr = inet_addr("127.0.0.1")
        target.sin_port = in_port_t(UInt16(port).bigEndian)
        for _ in 0..<sockets {
            guard let (fd, port) = boundUDPSocket("127.0.0.2") else { continue }
            guard let local = QUICSocketAddress(ip: "127.0.0.2", port: port) else {
                close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            fds.append(fd)
            locals.append(local)
        }
    }

    deinit { for fd in fds { close(fd) } }

    var summary: Summary { lock.withLock { counts } }

    /// One new connection's Initial from the next socket; then whatever came back.
    func sendOne() {
        guard !fds.isEmpty else { return }
        let i = next % fds.count
        next += 1
        drain(fds[i])
        guard let engine = try? QUICEngine.client(config: config, local: locals[i], remote: remote, now: .now()) else { return }
        for d in engine.flush(now: .now()) {
            if send(d.bytes, on: i) { lock.withLock { counts.sent += 1 } }
            if echoRetry, let scid = Self.sourceID(of: d.bytes) {
                waiting[scid] = (engine, i)
                waitingOrder.append(scid)
                if waitingOrder.count > 512 { waiting[waitingOrder.removeFirst()] = nil }
            }
        }
    }

    private func send(_ bytes: [UInt8], on i: Int) -> Bool {
        let n = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &target) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fds[i], b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            } }
        }
        return n > 0
    }

    /// The source connection ID of a long-header packet.
    static func sourceID(of packet: [UInt8]) -> [UInt8]? {
        guard packet.count > 6, packet[0] & 0x80 != 0 else { return nil }
        let dlen = Int(packet[5])
        guard dlen <= 20, packet.count > 7 + dlen else { return nil }
        let slen = Int(packet[6 + dlen])
        guard slen <= 20, packet.count >= 7 + dlen + slen else { return nil }
        return Array(packet[(7 + dlen)..<(7 + dlen + slen)])
    }

    /// The destination connection ID of a long-header packet.
    static func destinationID(of packet: [UInt8]) -> [UInt8]? {
        guard packet.count > 6, packet[0] & 0x80 != 0 else { return nil }
        let dlen = Int(packet[5])
        guard dlen <= 20, packet.count >= 6 + dlen else { return nil }
        return Array(packet[6..<(6 + dlen)])
    }

    /// Answers a Retry as a client would (its Initial again, with the token), then abandons it.
    private func echo(_ retry: [UInt8]) {
        guard let dcid = Self.destinationID(of: retry), let (engine, i) = waiting.removeValue(forKey: dcid) else { return }
        _ = engine.receive(retry, from: remote, to: locals[i], now: .now())
        for d in engine.flush(now: .now()) where send(d.bytes, on: i) {
            lock.withLock { counts.echoed += 1 }
        }
    }

    private func drain(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 2048)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            let first = buffer[0]
            if echoRetry, first & 0xB0 == 0xB0 { echo(Array(buffer[0..<n])) }
            lock.withLock {
                if first & 0x80 == 0 {
                    counts.other += 1
                } else if first & 0x30 == 0x30 {
                    counts.retries += 1  // long header, type Retry (QUIC v1)
                } else if n > 6, Int(buffer[5]) <= 20, n > 6 + Int(buffer[5]) {
                    // Initial/Handshake from the server: count each connection once by its DCID.
                    let dcid = Array(buffer[6..<(6 + Int(buffer[5]))])
                    if seen.insert(dcid).inserted { counts.handshakes += 1 }
                } else {
                    counts.other += 1
                }
            }
        }
    }

    /// Waits until `sent` Initials have gone out (the flood runs on its own thread).
    func waitUntil(sent: Int, timeout: Double) -> Bool {
        eventually(timeout: timeout, every: 0.01) { summary.sent >= sent }
    }
}

/// Streams against a real `guts listen`: a peer with a valid certificate that opens far
/// more request streams than the node allows, fills them with GetObjects, and then stops
/// reading.
final class QUICStreamDefenceTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Attackers on 127.0.0.2 each ask for 200 streams: QUIC's MAX_STREAMS lets each open
    /// 16 at once (its control stream included), no more, as long as they are open; each
    /// carries a GetObjects of a 4 MiB branch (incompressible). Then the attackers stop reading (and
    /// acknowledging). The node's memory stays bounded (its transfer slots and QUIC's
    /// flow-control windows bound what it holds), and a legitimate `guts ping` and
    /// `guts sync` over QUIC from 127.0.0.1 are served meanwhile.
    func testStreamFloodIsCappedByMaxStreamsAndLegitimatePeersAreServed() throws {
        let f = try SyncFixture(h)
        try f.buildHistory()
        let big = try f.addBigCommit(branch: "big", blobs: 4, size: 1 << 20)
        try f.startServer()
        let node = try XCTUnwrap(f.listener)
        let port = port(of: f.peer)
        let want = try XCTUnwrap(Hex.decode(big).flatMap { WireOID($0) })
        // The same sync without an attack, into another client, for comparison.
        _ = try h.keygen("baseline")
        let quiet = Date()
        let baseline = try f.sync(home: h.home("baseline"), extra: ["--transport", "quic"])
        XCTAssertEqual(baseline.status, 0, baseline.stderr)
        let baselineSeconds = Date().timeIntervalSince(quiet)
        let before = ChurnTests.rss(node.process.processIdentifier)

        var attackers: [StreamAttacker] = []
        // Every attacker keeps reading and acknowledging while the others work (one that
        // stops is cut off, see below).
        func pumpAll(_ seconds: Double, until done: () -> Bool = { false }) {
            let end = Date().addingTimeInterval(seconds)
            repeat {
                for a in attackers { a.pump(seconds: 0.005) }
            } while Date() < end && !done()
        }
        for n in 0..<3 {
            let a = try XCTUnwrap(StreamAttacker(port: port, source: "127.0.0.2"))
            attackers.append(a)
            pumpAll(10) { a.established }
            XCTAssertTrue(a.established, "attacker \(n) did not complete the QUIC handshake")
            let control = try XCTUnwrap(a.openStream())
            a.engine.write(try MessageCodec.encode(.hello(Hello(capabilities: ["ping"], agent: "attacker"))), stream: control)
            pumpAll(10) { a.received[control, default: 0] > 0 }
            XCTAssertEqual(a.firstByte[control], 0x02, "attacker \(n): no HelloAck (\(a.closedWith.map { "\($0)" } ?? "open"))")
            var opened: [Int64] = []
            var refused = 0
            for i in 0..<200 {
                guard let s = a.openStream() else {
                    refused += 1
                    continue
                }
                opened.append(s)
                let request = GetObjects(requestID: UInt32(n * 1000 + i + 1), repository: f.repoName, wants: [want], haves: [])
                a.engine.write(try MessageCodec.encode(.sync(.getObjects(request))), stream: s, fin: true)
            }
            // 16 bidirectional streams at once, the control stream included: the rest are
            // refused by QUIC itself (no stream ID to use), not buffered by the node.
            XCTAssertEqual(opened.count, Int(QUICTuning.maxStreams) - 1, "attacker \(n)")
            XCTAssertEqual(refused, 200 - opened.count)
            XCTAssertEqual(a.engine.streamsLeft, 0)
            pumpAll(0.3)
        }
        // The node answers on the streams (busy beyond its transfer slots: the attackers'
        // address group holds at most 4), and each stream it finished may be replaced by a
        // new one: never more than 16 open at once.
        let cycleEnd = Date().addingTimeInterval(2)
        var replaced = 0
        while Date() < cycleEnd {
            pumpAll(0.1)
            for (n, a) in attackers.enumerated() {
                while let s = a.openStream() {
                    replaced += 1
                    let request = GetObjects(requestID: UInt32(100_000 + n * 10_000 + replaced), repository: f.repoName, wants: [want], haves: [])
                    a.engine.write(try MessageCodec.encode(.sync(.getObjects(request))), stream: s, fin: true)
                }
            }
        }
        for (n, a) in attackers.enumerated() {
            XCTAssertNil(a.closedWith, "the node closed attacker \(n), which kept to the limits")
            XCTAssertLessThanOrEqual(a.maxOpen, Int(QUICTuning.maxStreams), "attacker \(n)")
        }
        // From now on the attackers neither read nor acknowledge: what the node queued for
        // them waits, bounded by flow control and the congestion window, until the node
        // gives up on peers that acknowledge nothing.
        let started = Date()
        for _ in 0..<2 {
            let ping = try h.run(["--home", h.home("legit"), "ping", "--ephemeral", "--transport", "quic", "-c", "1", "-W", "5", f.peer])
            XCTAssertEqual(ping.status, 0, "legitimate ping during the attack: \(ping.stderr)")
        }
        let pinged = Date()
        let sync = try f.sync(extra: ["--transport", "quic"])
        XCTAssertEqual(sync.status, 0, "legitimate sync during the attack: \(sync.stderr)")
        let syncSeconds = Date().timeIntervalSince(pinged)
        print("QUIC stream attack: pings \(Int(pinged.timeIntervalSince(started) * 1000)) ms, sync \(Int(syncSeconds * 1000)) ms (\(Int(baselineSeconds * 1000)) ms without the attack)")
        // Served, not starved: the attackers' transfers share the CPU with it (4 at most,
        // their address group's share) until the node cuts them off, so on a busy machine
        // it may take a few times as long, never the attack's whole duration.
        XCTAssertLessThan(syncSeconds, 10 * baselineSeconds + 30, "the attack starved a legitimate sync")
        try f.assertMirrorsUpstream()
        let after = ChurnTests.rss(node.process.processIdentifier)
        let answered = attackers.map(\.requestsAnswered).reduce(0, +)
        print("QUIC stream attack: 3 attackers x 16 streams, \(replaced) streams replaced, \(answered) requests answered before they stopped reading; legitimate ping+sync took \(Int(Date().timeIntervalSince(started) * 1000)) ms; node RSS \(before / 1024) KiB -> \(after / 1024) KiB")
        XCTAssertGreaterThan(replaced, 0, "no stream was ever finished and replaced")
        // 45 stalled 4 MiB transfers buffered would be 180 MiB; the node holds what its
        // transfer slots and windows allow.
        XCTAssertLessThan(after - before, 48 << 20, "the node's memory grew under the stream attack: \(before) -> \(after) bytes")
        XCTAssertTrue(node.process.isRunning, "the node died under the stream attack")
        // An attacker that stopped acknowledging while the node had answers in flight was
        // cut off (timeout) and its state freed; one with nothing outstanding is merely
        // quiet (the idle timeout applies). None was closed for anything else.
        var cut = 0
        for (n, a) in attackers.enumerated() {
            a.pump(seconds: 0.5) { a.closedWith != nil }
            switch a.closedWith {
            case nil: break
            case let .remoteClose(code, _)? where code == UInt64(ReasonCode.timeout.rawValue): cut += 1
            case let other?: XCTFail("attacker \(n) closed for another reason: \(other)")
            }
        }
        print("QUIC stream attack: \(cut) of \(attackers.count) attackers cut off for acknowledging nothing")
    }
}

extension QUICStreamDefenceTests {
    /// The control stream is stream 0 (guts-protocol(7)): a client that skips it and sends
    /// Hello on its second stream is closed with protocol-violation, unanswered; the node
    /// serves a legitimate ping afterwards.
    func testHelloOffStreamZeroIsAProtocolViolation() throws {
        _ = try h.keygen("node")
        let (node, line) = try h.listen("node")
        let a = try XCTUnwrap(StreamAttacker(port: port(of: line), source: "127.0.0.2"))
        a.pump(seconds: 10) { a.established }
        XCTAssertTrue(a.established, "no QUIC handshake")
        let skipped = try XCTUnwrap(a.openStream())
        let second = try XCTUnwrap(a.openStream())
        XCTAssertEqual([skipped, second], [0, 4])
        a.engine.write(try MessageCodec.encode(.hello(Hello(capabilities: ["ping"], agent: "off-stream"))), stream: second)
        a.pump(seconds: 10) { a.closedWith != nil }
        XCTAssertNil(a.firstByte[second], "the node answered a Hello off the control stream")
        guard case let .remoteClose(code, reason)? = a.closedWith else {
            return XCTFail("expected a close by the node, got \(a.closedWith.map { "\($0)" } ?? "none")")
        }
        XCTAssertEqual(code, UInt64(ReasonCode.protocolViolation.rawValue), reason)
        XCTAssertTrue(reason.contains("control stream"), reason)
        let ping = try h.run(["--home", h.home("legit"), "ping", "--ephemeral", "--transport", "quic", "-c", "1", "-W", "5", line])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        XCTAssertTrue(node.process.isRunning)
    }
}

/// An in-process QUIC client with a valid certificate of its own fresh identity, driven
/// by hand over a UDP socket on `source`: it does what the test says, and reads only while
/// pumped.
final class StreamAttacker {
    let fd: Int32
    let engine: QUICEngine
    let server: QUICSocketAddress
    private var target = sockaddr_in()
    private(set) var established = false
    private(set) var closedWith: QUICClose?
    /// Bytes received per stream, and the first byte (the first message's type).
    private(set) var received: [Int64: Int] = [:]
    private(set) var firstByte: [Int64: UInt8] = [:]
    /// Streams open now (opened here, not yet closed in both directions), and the most ever.
    private var live = 0
    private(set) var maxOpen = 0
    private(set) var requestsAnswered = 0

    init?(port: Int, source: String) {
        guard let (fd, localPort) = boundUDPSocket(source) else { return nil }
        guard let local = QUICSocketAddress(ip: source, port: localPort),
              let server = QUICSocketAddress(ip: "127.0.0.1", port: port) else {
            Glibc.close(fd)
            return nil
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let me = Ed25519KeyPair.generate()
        let config = QUICConfig(identity: me, certificate: .make(identity: me, networkID: "", now: Int64(Date().timeIntervalSince1970)),
                                networkID: "")
        guard let engine = try? QUICEngine.client(config: config, local: local, remote: server, now: .now()) else {
            Glibc.close(fd)
            return nil
        }
        self.fd = fd
        self.engine = engine
        self.server = server
        target.sin_family = sa_family_t(AF_INET)
        target.sin_addr.s_addr = inet_addr("127.0.0.1")
        target.sin_port = in_port_t(UInt16(port).bigEndian)
    }

    deinit { Glibc.close(fd) }

    /// Sends what the engine has, reads what arrives, runs its timers: for `seconds` or
    /// until `done`.
    func pump(seconds: Double, until done: () -> Bool = { false }) {
        let end = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            for d in engine.flush(now: .now()) {
                _ = d.bytes.withUnsafeBufferPointer { b in
                    withUnsafePointer(to: &target) { p in
                        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
            }
            handle(engine.takePendingEvents())
            if done() || Date() >= end || closedWith != nil { return }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 5)
            while true {
                let n = recv(fd, &buffer, buffer.count, 0)
                guard n > 0 else { break }
                handle(engine.receive(Array(buffer[0..<n]), from: server, now: .now()))
            }
            if let t = engine.nextDeadline, t <= .now() { handle(engine.handleTimeout(now: .now())) }
        }
    }

    private func handle(_ events: [QUICEvent]) {
        for e in events {
            switch e {
            case .established: established = true
            case let .streamData(s, bytes, fin):
                if received[s] == nil, let b = bytes.first { firstByte[s] = b }
                received[s, default: 0] += bytes.count
                if fin { requestsAnswered += 1 }
            case let .closed(why): closedWith = why
            case let .streamClosed(s, _) where s & 1 == 0: live -= 1
            default: break
            }
        }
    }

    /// Opens a stream if the node's MAX_STREAMS allows one now.
    func openStream() -> Int64? {
        guard let s = engine.openStream() else { return nil }
        live += 1
        maxOpen = max(maxOpen, live)
        return s
    }

    func close() {
        engine.close(code: 1, reason: "done", now: .now())
        pump(seconds: 0.2)
    }
}
