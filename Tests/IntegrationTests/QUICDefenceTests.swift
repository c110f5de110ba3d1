import Foundation
import Glibc
import GutsCrypto
import GutsQUIC
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
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            guard fd >= 0 else { continue }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.2")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
            }
            guard ok, let local = QUICSocketAddress(ip: "127.0.0.2", port: Int(UInt16(bigEndian: addr.sin_port))) else {
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
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if summary.sent >= sent { return true }
            usleep(10_000)  // polling a counter, not standing in for an event
        }
        return summary.sent >= sent
    }
}
