import Foundation
import GutsAddress
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// Attacks on a real `guts listen`, each followed by a legitimate peer that must still be
/// served. Attackers come from 127.0.0.2 and above, the legitimate peer from 127.0.0.1,
/// unless the test is about sharing an address (a NAT).
final class DefenceTests: XCTestCase {
    var h: Harness!
    var group: MultiThreadedEventLoopGroup!

    override func setUpWithError() throws {
        h = try Harness()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        h.cleanup()
    }

    func node(_ extra: [String] = [], config: String = "") throws -> (Harness.Running, String) {
        _ = try h.keygen("node")
        if !config.isEmpty { try config.write(toFile: h.home("node") + "/config", atomically: true, encoding: .utf8) }
        return try h.listen("node", extra)
    }

    /// One legitimate ping from 127.0.0.1 with a fresh identity.
    func legitimatePing(_ line: String, _ file: StaticString = #filePath, _ fileLine: UInt = #line) throws {
        let r = try h.run(["--home", h.home("legit"), "ping", "--ephemeral", "-c", "1", "-W", "5", line])
        XCTAssertEqual(r.status, 0, "legitimate ping: \(r.stderr)", file: file, line: fileLine)
    }

    func session(_ identity: Ed25519KeyPair = .generate(), caps: [String] = ["ping"], protocols: MessageRegistry = .control) -> SessionConfig {
        SessionConfig(identity: identity, noiseStatic: .generate(), capabilities: caps, agent: "attacker", protocols: protocols)
    }

    func dial(_ line: String, _ config: SessionConfig, from source: String = "127.0.0.2") throws -> PeerConnection {
        try Dialer.dial(try Endpoint.parse(line), config: config, group: group, connectTimeout: 5, source: source).wait()
    }

    // MARK: Before any cryptography

    /// 200 sockets that never send a byte, from another address and from the very
    /// address the legitimate peer uses: the handshake caps evict them, never the newcomer.
    func testIdleSocketsCannotHoldTheSlots() throws {
        // About holding slots, not about the accept rate (tested below): no rate limit here.
        let (node, line) = try node(config: "handshake-rate = 0\n")
        let port = port(of: line)
        var held: [RawSocket] = []
        for i in 0..<200 { if let s = RawSocket(port: port, from: i % 2 == 0 ? "127.0.0.2" : "127.0.0.1") { held.append(s) } }
        XCTAssertGreaterThan(held.count, 150)
        for _ in 0..<5 { try legitimatePing(line) }
        XCTAssertTrue(node.process.isRunning)
        withExtendedLifetime(held) {}
    }

    /// Sockets that trickle a byte at a time are not silent, and are evicted all the same.
    func testTricklingHandshakesCannotHoldTheSlots() throws {
        let (_, line) = try node()
        let port = port(of: line)
        var trickle: [RawSocket] = []
        for _ in 0..<100 { if let s = RawSocket(port: port, from: "127.0.0.3") { trickle.append(s) } }
        for round in 0..<3 {
            for s in trickle { s.send([UInt8(round)]) }
            try legitimatePing(line)
        }
    }

    /// A flood of first handshake messages from one address is throttled before any
    /// Diffie-Hellman is done; a peer from another address is served meanwhile.
    func testHandshakeFloodFromOneAddressIsThrottled() throws {
        let (node, line) = try node()
        let port = port(of: line)
        let stop = NIOLockedValueBox(false)
        let flooder = Thread {
            let message1 = [UInt8(0), 32] + [UInt8](repeating: 9, count: 32)
            while !stop.withLockedValue({ $0 }) {
                guard let s = RawSocket(port: port, from: "127.0.0.4") else { continue }
                s.send(message1)
            }
        }
        flooder.start()
        defer { stop.withLockedValue { $0 = true } }
        let cpuBefore = Self.cpuSeconds(node.process.processIdentifier)
        let started = Date()
        var pings = 0
        while Date().timeIntervalSince(started) < 4 || pings < 5 {
            try legitimatePing(line)
            pings += 1
            usleep(300_000)  // a legitimate peer's own pace, under its address's accept rate
        }
        stop.withLockedValue { $0 = true }
        let wall = Date().timeIntervalSince(started)
        let cpu = Self.cpuSeconds(node.process.processIdentifier) - cpuBefore
        print("handshake flood: node CPU \(cpu) s over \(wall) s")
        XCTAssertLessThan(cpu / wall, 0.9, "the flooded node keeps most of a core free")
    }

    static func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    // MARK: After authentication

    /// A third session of one identity is refused; the legitimate peer is served.
    func testOneIdentityHoldsAtMostTwoSessions() throws {
        let (_, line) = try node()
        let me = Ed25519KeyPair.generate()
        let a = try dial(line, session(me))
        let b = try dial(line, session(me), from: "127.0.0.5")
        XCTAssertThrowsError(try dial(line, session(me), from: "127.0.0.6")) { error in
            XCTAssertTrue("\(error)".contains("too-many-connections"), "\(error)")
        }
        try legitimatePing(line)
        a.close(.shutdown, "done")
        b.close(.shutdown, "done")
    }

    /// A burst of GetRefs followed by a disconnect: the overflow is answered busy, the
    /// rest is dropped with the connection, and a legitimate sync is served at once.
    func testRefsBurstThenDisconnectDoesNotBlockOthers() throws {
        let f = try SyncFixture(h)
        try f.commit("c", files: ["a.txt": "a\n"])
        try f.push()
        let server = try h.listen("server")
        let attacker = try dial(server.1, session(protocols: MessageRegistry([SyncProtocol()])))
        for i in 0..<200 {
            attacker.send(.sync(.getRefs(GetRefs(requestID: UInt32(i + 1), repository: "alice/proj"))))
        }
        attacker.abort()
        let started = Date()
        let r = try f.sync(peers: [server.1])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }

    /// A peer that reads nothing while it floods Pings: the node stops reading it once its
    /// replies back up, its memory stays bounded, and others are served.
    func testNonReadingPeerCannotGrowTheNodesMemory() throws {
        let (node, line) = try node()
        let pid = node.process.processIdentifier
        let before = ChurnTests.rss(pid)
        let attacker = try dial(line, session())
        try attacker.channel.setOption(ChannelOptions.autoRead, value: false).wait()
        var sent = 0
        let deadline = Date().addingTimeInterval(8)
        // Stop when our own side backs up too: the node no longer reads.
        while Date() < deadline, sent < 1_000_000 {
            var batch: [EventLoopFuture<Void>] = []
            for _ in 0..<2000 { batch.append(attacker.send(.ping(nonce: UInt64(sent)))); sent += 1 }
            if !attacker.channel.isWritable {
                let pending = try attacker.pendingOutboundBytes().wait()
                if pending > 64 << 20 { break }
            }
            _ = batch.last.map { try? $0.wait() }
        }
        let after = ChurnTests.rss(pid)
        print("non-reading ping flood: \(sent) pings sent, node RSS \(before / 1024) KiB -> \(after / 1024) KiB")
        XCTAssertLessThan(after - before, 64 << 20, "RSS grew \((after - before) / 1024) KiB")
        try legitimatePing(line)
        attacker.abort()
    }

    /// One identity asking for every transfer slot gets two; a legitimate sync still runs.
    func testOnePeerCannotTakeEveryTransferSlot() throws {
        let f = try SyncFixture(h)
        try f.commit("c", files: ["a.txt": String(repeating: "x", count: 100_000)])
        try f.push()
        let tip = try SyncGit.bare(f.upstream, ["rev-parse", "refs/heads/main"]).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try h.listen("server", ["--max-transfers", "8"])
        let attacker = try dial(server.1, session(protocols: MessageRegistry([SyncProtocol()])))
        try attacker.channel.setOption(ChannelOptions.autoRead, value: false).wait()
        guard let want = WireOID(Hex.decode(tip) ?? []) else { return XCTFail("tip") }
        for i in 0..<8 {
            attacker.send(.sync(.getObjects(GetObjects(requestID: UInt32(i + 1), repository: "alice/proj", wants: [want], haves: []))))
        }
        let r = try f.sync(peers: [server.1])
        XCTAssertEqual(r.status, 0, r.stderr)
        attacker.abort()
    }

    // MARK: Gossip

    /// A client publishing as fast as it can is limited, scored down and finally banned;
    /// a legitimate publisher's message is still delivered.
    func testGossipPublishFloodIsLimitedAndTheOffenderShutOut() throws {
        // Overruns are scored once a second; a heavier weight makes the ban come in seconds.
        let (node, line) = try node(config: "score.rate-limit-overrun.weight = -20\n")
        let flooder = Ed25519KeyPair.generate()
        let client = try dial(line, session(flooder, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])))
        let started = Date()
        let busy = NIOLockedValueBox(0)
        client.setMessageHandler { _, message in
            if case let .error(e) = message, e.code == .busy { busy.withLockedValue { $0 += 1 } }
            return true
        }
        for i in 0..<20_000 where !client.isClosed {
            var g = Gossip(topic: "flood", origin: flooder.publicKey, sequence: UInt64(i + 1),
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000), data: [UInt8](repeating: 1, count: 1000), signature: [])
            g.signature = flooder.sign(g.signedBytes)
            _ = try? client.send(.gossip(.gossip(g))).wait()
            if i % 100 == 99 { usleep(50_000) }  // about 2,000 a second, for a few seconds
        }
        let rejected = busy.withLockedValue { $0 }
        node.waitFor("the flooder to be disconnected or banned", timeout: 30) { _, err in
            err.contains("score: banning") || err.contains("score: disconnecting")
        }
        print("publish flood: \(rejected) publishes answered busy; disconnected after \(Date().timeIntervalSince(started)) s")
        XCTAssertGreaterThan(rejected, 0)
        // It may not come straight back: the same identity is refused at once.
        XCTAssertThrowsError(try dial(line, session(flooder, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])),
                                      from: "127.0.0.7"))
        // A legitimate client publishes and a subscriber receives it.
        let sub = try h.start(["--home", h.home("sub"), "-v", "--json", "gossip", "subscribe", "--ephemeral", "--topic", "news", "--peer", line,
                               "--count", "1", "--timeout", "20"])
        sub.waitFor("the subscription to be in place") { _, err in err.contains("subscribed to") }
        let pub = try h.run(["--home", h.home("pub"), "gossip", "publish", "--ephemeral", "--topic", "news", "--peer", line, "--data", "hello"])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        XCTAssertEqual(sub.wait(timeout: 20), 0, sub.stderr)
    }

    /// A client that asks for a hundred thousand topics gets 64; a bystander peer sees a
    /// bounded number of Subscribe messages.
    func testTopicFloodIsCapped() throws {
        let (node, line) = try node()
        let bystander = try dial(line, session(caps: ["ping", "gossip"], protocols: MessageRegistry([GossipProtocol()])), from: "127.0.0.8")
        let client = try dial(line, session(caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])))
        for batch in 0..<(100_000 / 64) {
            let topics = (0..<64).map { "t/\(batch)/\($0)" }
            client.send(.gossip(.subscribe(Subscribe(subscribe: true, topics: topics))))
        }
        _ = try client.send(.ping(nonce: 1)).wait()
        var subscribed = Set<String>()
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            guard let m = try? bystander.nextMessage(timeout: 0.5).wait() else { continue }
            if case let .subscribe(s)? = m.gossipMessage, s.subscribe { subscribed.formUnion(s.topics.filter { $0.hasPrefix("t/") }) }
        }
        XCTAssertLessThanOrEqual(subscribed.count, 64, "the node carries at most 64 topics for one client")
        XCTAssertTrue(node.process.isRunning)
        try legitimatePing(line)
    }

    /// Sends forged gossip (a victim's origin, the forger's signature) over fresh sessions
    /// until the node refuses the forger; returns how many sessions it got.
    func forge(_ line: String, _ config: SessionConfig, limit: Int = 20) -> Int {
        let victim = Ed25519KeyPair.generate()
        var attempts = 0
        while attempts < limit {
            guard let client = try? dial(line, config) else { break }  // refused
            attempts += 1
            var g = Gossip(topic: "news", origin: victim.publicKey, sequence: UInt64(attempts),
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000), data: Array("forged".utf8), signature: [])
            g.signature = config.identity.sign(g.signedBytes)
            client.send(.gossip(.gossip(g)))
            _ = try? client.nextMessage(timeout: 5).wait()  // the rejection (or the close)
            client.abort()
        }
        return attempts
    }

    /// Forged gossip from a client costs its score (-20 each): at the third it is below the
    /// disconnect threshold (-50), disconnected, and refused until its score recovers, which
    /// the peer book keeps across a restart. Being refused is not a further offence, and
    /// nothing bans its address: another identity from there is served.
    func testForgingClientIsDisconnectedAndRefusedAcrossARestart() throws {
        let (node, line) = try node()
        let forger = Ed25519KeyPair.generate()
        let config = session(forger, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()]))
        let forgerID = try PeerID(publicKey: forger.publicKey).description
        XCTAssertEqual(forge(line, config), 3, node.stderr)
        node.waitFor("the forger to be disconnected") { _, err in err.contains("score: disconnecting \(forgerID.prefix(12))") }
        XCTAssertFalse(node.stderr.contains("score: banning"), node.stderr)
        XCTAssertThrowsError(try dial(line, config, from: "127.0.0.9")) { error in
            XCTAssertTrue("\(error)".contains("score is too low"), "\(error)")
        }
        let other = try dial(line, session(caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])))
        other.abort()
        node.signal(SIGTERM)
        XCTAssertEqual(node.wait(timeout: 10), 0)
        let scores = try h.run(["--home", h.home("node"), "--json", "peers", "score", forgerID])
        XCTAssertEqual(scores.status, 0, scores.stderr)
        let entry = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(scores.stdout.utf8)) as? [String: Any], scores.stdout)
        XCTAssertEqual(entry["state"] as? String, "disconnect", scores.stdout)
        XCTAssertLessThan(entry["score"] as? Double ?? 0, -59, scores.stdout)
        let (_, again) = try h.listen("node")
        XCTAssertThrowsError(try dial(again, config)) { error in
            XCTAssertTrue("\(error)".contains("score is too low"), "\(error)")
        }
        try legitimatePing(again)
    }

    /// A message whose timestamp is outside the window is what an honest peer with a skewed
    /// clock sends: it costs a fifth of a forgery (the gossip engine's 5 points against 25),
    /// so four of them leave a client connected and in good standing, where four forgeries
    /// would have disconnected it.
    func testStaleGossipCostsAFifthOfAForgery() throws {
        let (_, line) = try node()
        let skewed = Ed25519KeyPair.generate()
        let client = try dial(line, session(skewed, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])))
        for i in 0..<4 {
            var g = Gossip(topic: "news", origin: skewed.publicKey, sequence: UInt64(i + 1),
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000) - 600_000, data: Array("late".utf8), signature: [])
            g.signature = skewed.sign(g.signedBytes)
            client.send(.gossip(.gossip(g)))
            let reply = try client.nextMessage(timeout: 5).wait()
            guard case let .error(e) = reply else { return XCTFail("expected an Error, got \(reply)") }
            XCTAssertTrue(e.message.contains("timestamp too old"), e.message)
        }
        client.send(.ping(nonce: 7))
        let pong = try client.nextMessage(timeout: 5).wait()
        guard case .pong(nonce: 7) = pong else { return XCTFail("expected Pong 7, got \(pong)") }
        let id = try PeerID(publicKey: skewed.publicKey).description
        let scores = try h.run(["--home", h.home("node"), "--json", "peers", "score", id])
        XCTAssertEqual(scores.status, 0, scores.stderr)
        let entry = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(scores.stdout.utf8)) as? [String: Any], scores.stdout)
        let charged = try XCTUnwrap((entry["components"] as? [String: Double])?["invalid-gossip"], scores.stdout)
        XCTAssertEqual(charged, -16, accuracy: 0.1, scores.stdout)
        XCTAssertEqual(entry["state"] as? String, "ok", scores.stdout)
        client.abort()
    }

    /// The gossip engine disconnects a peer whose gossip points reach 100 (here about twenty
    /// stale messages on a topic the node carries). Each was already charged to the peer's
    /// score; the disconnect is their verdict and costs nothing more: with invalid gossip
    /// weighted -1, the peer ends near -4 and in good standing, not -64 and refused.
    func testTheGossipEnginesDisconnectIsNotChargedAgain() throws {
        let (node, line) = try node(config: "score.invalid-gossip.weight = -1\n")
        let skewed = Ed25519KeyPair.generate()
        let config = session(skewed, caps: ["ping", "gossip"], protocols: MessageRegistry([GossipProtocol()]))
        let peer = try dial(line, config)
        // 5 points each, forgiven at 1 a second: the 21st or 22nd reaches 100.
        for i in 0..<22 {
            var g = Gossip(topic: Topic.commits, origin: skewed.publicKey, sequence: UInt64(i + 1),
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000) - 600_000, data: Array("late".utf8), signature: [])
            g.signature = skewed.sign(g.signedBytes)
            peer.send(.gossip(.gossip(g)))
        }
        node.waitFor("the gossip engine to disconnect the peer") { _, err in err.contains("gossip: disconnecting") }
        XCTAssertNoThrow(try peer.nextMessage(timeout: 5).wait())
        let id = try PeerID(publicKey: skewed.publicKey).description
        let scores = try h.run(["--home", h.home("node"), "--json", "peers", "score", id])
        XCTAssertEqual(scores.status, 0, scores.stderr)
        let entry = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(scores.stdout.utf8)) as? [String: Any], scores.stdout)
        let components = try XCTUnwrap(entry["components"] as? [String: Double], scores.stdout)
        XCTAssertEqual(components["invalid-gossip"] ?? 0, -4.2, accuracy: 0.25, scores.stdout)
        XCTAssertEqual(components["protocol-violation"] ?? 0, 0, scores.stdout)
        XCTAssertEqual(entry["state"] as? String, "ok", scores.stdout)
        // It may come back at once.
        try dial(line, config).abort()
    }

    /// With forgeries weighted past the ban threshold (-110 each), one forgery bans the
    /// identity and its address; the ban survives a restart of the node.
    func testForgingClientIsBannedAndTheBanSurvivesARestart() throws {
        let (node, line) = try node(config: "score.invalid-gossip.weight = -110\n")
        let forger = Ed25519KeyPair.generate()
        let config = session(forger, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()]))
        XCTAssertEqual(forge(line, config), 1, node.stderr)
        node.waitFor("the forger to be banned") { _, err in err.contains("score: banning") }
        // Restart: the ban is in the peer book.
        node.signal(SIGTERM)
        XCTAssertEqual(node.wait(timeout: 10), 0)
        let book = (try? String(contentsOfFile: h.home("node") + "/peers", encoding: .utf8)) ?? ""
        XCTAssertTrue(book.contains("ban"), book)
        let (_, again) = try h.listen("node")
        // The identity is refused from anywhere, and its address for up to an hour.
        XCTAssertThrowsError(try dial(again, config, from: "127.0.0.9")) { error in
            XCTAssertTrue("\(error)".contains("banned"), "\(error)")
        }
        XCTAssertThrowsError(try dial(again, session(caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()]))))
        try legitimatePing(again)
    }
}
