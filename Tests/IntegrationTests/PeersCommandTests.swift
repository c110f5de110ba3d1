import Foundation
import GutsAddress
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsTransport
import GutsWire
import NIOPosix
import XCTest

/// `guts peers score`, `peers ban`, `peers unban` and the peer book as `guts sync` uses
/// it, against real `guts listen` processes: live through the control socket, and from
/// the file when no node runs. Strangers come from 127.0.0.2 and above; the legitimate
/// peer from 127.0.0.1.
final class PeersCommandTests: XCTestCase {
    var h: Harness!
    var group: MultiThreadedEventLoopGroup!

    override func setUpWithError() throws {
        h = try Harness()
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
        h.cleanup()
    }

    var home: String { h.home("node") }

    /// `guts --home <node> ARGS`.
    func guts(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        try h.run(["--home", home] + args, file: file, line: line)
    }

    func startNode() throws -> (Harness.Running, String) {
        if !FileManager.default.fileExists(atPath: home + "/identity.key") { _ = try h.keygen("node") }
        return try h.listen("node")
    }

    func stop(_ node: Harness.Running, file: StaticString = #filePath, line: UInt = #line) {
        node.signal(SIGTERM)
        XCTAssertEqual(node.wait(timeout: 10), 0, node.stderr, file: file, line: line)
    }

    func session(_ identity: Ed25519KeyPair = .generate(), caps: [String] = ["ping"], protocols: MessageRegistry = .control) -> SessionConfig {
        SessionConfig(identity: identity, noiseStatic: .generate(), capabilities: caps, agent: "stranger", protocols: protocols)
    }

    func dial(_ line: String, _ config: SessionConfig, from source: String = "127.0.0.2") throws -> PeerConnection {
        try Dialer.dial(try Endpoint.parse(line), config: config, group: group, connectTimeout: 5, source: source).wait()
    }

    func legitimatePing(_ line: String, file: StaticString = #filePath, fileLine: UInt = #line) throws {
        let r = try h.run(["--home", h.home("legit"), "ping", "--ephemeral", "-c", "1", "-W", "5", line])
        XCTAssertEqual(r.status, 0, "legitimate ping: \(r.stderr)", file: file, line: fileLine)
    }

    func peerID(_ key: Ed25519KeyPair) throws -> String { try PeerID(publicKey: key.publicKey).description }

    func jsonLines(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        text.split(separator: "\n").compactMap { l in
            let v = try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any]
            XCTAssertNotNil(v, "not a JSON object: \(l)", file: file, line: line)
            return v
        }
    }

    /// True once `connection` is closed, waiting up to `timeout` seconds.
    func closes(_ connection: PeerConnection, within timeout: Double) -> Bool {
        eventually(timeout: timeout) { connection.isClosed }
    }

    func book() -> String { (try? String(contentsOfFile: home + "/peers", encoding: .utf8)) ?? "" }

    // MARK: Scores

    /// A gossip client that forges two messages is graylisted; `peers score` shows it with
    /// its components live, `peers` shows its score, and after the node stops the same
    /// score is read from the peer book.
    func testScoresLiveAndFromThePeerBookShowAPenalisedClient() throws {
        let (node, line) = try startNode()
        let forger = Ed25519KeyPair.generate()
        let victim = Ed25519KeyPair.generate()
        let forgerID = try peerID(forger)
        let client = try dial(line, session(forger, caps: ["ping", "gossip-client"], protocols: MessageRegistry([GossipProtocol()])))
        for seq in 1...2 {
            var g = Gossip(topic: "news", origin: victim.publicKey, sequence: UInt64(seq),
                           timestamp: UInt64(Date().timeIntervalSince1970 * 1000), data: Array("forged".utf8), signature: [])
            g.signature = forger.sign(g.signedBytes)
            _ = try client.send(.gossip(.gossip(g))).wait()
        }
        node.waitFor("two invalid-gossip penalties") { _, err in err.components(separatedBy: " invalid-gossip (").count - 1 >= 2 }

        let live = try guts(["--json", "peers", "score"])
        XCTAssertEqual(live.status, 0, live.stderr)
        XCTAssertTrue(live.stderr.contains("scores from the running node"), live.stderr)
        let entry = try XCTUnwrap(jsonLines(live.stdout).first { $0["peer_id"] as? String == forgerID }, live.stdout)
        XCTAssertEqual(entry["state"] as? String, "graylisted")
        XCTAssertEqual(entry["score"] as? Double ?? 0, -40, accuracy: 0.1)
        XCTAssertEqual((entry["components"] as? [String: Double])?["invalid-gossip"] ?? 0, -40, accuracy: 0.1)
        XCTAssertEqual((entry["components"] as? [String: Any])?.count, 9)
        XCTAssertEqual(entry["connected"] as? Bool, true)
        XCTAssertTrue((entry["addresses"] as? [String])?.first?.hasPrefix("127.0.0.2:") ?? false, "\(entry)")
        XCTAssertNotNil(entry["last_seen"] as? Double)

        let text = try guts(["peers", "score"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.hasPrefix("PEER "), text.stdout)
        let row = try XCTUnwrap(text.stdout.split(separator: "\n").first { $0.hasPrefix(forgerID) }, text.stdout)
        XCTAssertTrue(row.contains(" graylisted ") && row.contains("invalid-gossip=-40"), String(row))

        let one = try guts(["--json", "peers", "score", forgerID])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssertEqual(jsonLines(one.stdout).count, 1, one.stdout)

        let peers = try guts(["peers"])
        XCTAssertEqual(peers.status, 0, peers.stderr)
        XCTAssertTrue(peers.stdout.hasPrefix("PEER ") && peers.stdout.contains(" SCORE "), peers.stdout)
        let peerRow = try XCTUnwrap(peers.stdout.split(separator: "\n").first { $0.hasPrefix(forgerID) }, peers.stdout)
        XCTAssertTrue(peerRow.split(separator: " ").contains("-40"), String(peerRow))
        let peersJSON = try guts(["--json", "peers"])
        XCTAssertEqual(jsonLines(peersJSON.stdout).first?["score"] as? Double ?? 0, -40, accuracy: 0.1)

        client.abort()
        stop(node)
        let offline = try guts(["--json", "peers", "score"])
        XCTAssertEqual(offline.status, 0, offline.stderr)
        XCTAssertTrue(offline.stderr.contains("scores from the peer book, no node is running"), offline.stderr)
        let saved = try XCTUnwrap(jsonLines(offline.stdout).first { $0["peer_id"] as? String == forgerID }, offline.stdout)
        XCTAssertEqual(saved["state"] as? String, "graylisted")
        XCTAssertEqual(saved["score"] as? Double ?? 0, -40, accuracy: 0.1)
        XCTAssertEqual(saved["connected"] as? Bool, false)
    }

    /// Hostile scores/ban/unban/report requests on the control socket of a real node: each
    /// is answered bad-request without changing anything (what only the node can check, a
    /// peer ID's checksum or an address's syntax, included), and the connection and the
    /// node keep serving.
    func testHostileScoreAndBanRequestsAreBadRequests() throws {
        let (node, line) = try startNode()
        let c = try XCTUnwrap(UnixClient(path: home + "/control.sock"))
        let good = try peerID(.generate())
        // Same form, wrong checksum: only the node can tell.
        var badSum = Array(good.utf8)
        badSum[57] = badSum[57] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
        let wrongChecksum = String(decoding: badSum, as: UTF8.self)
        let hostile = [
            #"{"id":1,"cmd":"scores","peers":[""# + wrongChecksum + #""]}"#,
            #"{"id":2,"cmd":"scores","peers":"all"}"#,
            #"{"id":3,"cmd":"scores","peers":[""# + good + #"",7]}"#,
            #"{"id":4,"cmd":"ban","target":""# + wrongChecksum + #"","seconds":60}"#,
            #"{"id":5,"cmd":"ban","target":"127.0.0.2/33","seconds":60}"#,
            #"{"id":6,"cmd":"ban","target":"10.1.2.3/24","seconds":null}"#,
            #"{"id":7,"cmd":"ban","target":"fe80::1%eth0","seconds":null}"#,
            #"{"id":8,"cmd":"ban","target":"127.0.0.2","seconds":-1}"#,
            #"{"id":9,"cmd":"ban","target":"127.0.0.2","seconds":1e400}"#,
            #"{"id":10,"cmd":"ban","target":"127.0.0.2"}"#,
            #"{"id":11,"cmd":"ban","target":["127.0.0.2"],"seconds":null}"#,
            #"{"id":12,"cmd":"unban","target":"localhost"}"#,
            #"{"id":13,"cmd":"report","peer":""# + good + #"","event":"uptime","reason":"buy a good score"}"#,
            #"{"id":14,"cmd":"report","peer":""# + good + #"","event":"no-such-event","reason":""}"#,
            #"{"id":15,"cmd":"report","peer":""# + wrongChecksum + #"","event":"stall","reason":""}"#,
            #"{"id":16,"cmd":"report","peer":""# + good + #"","event":"stall","reason":""# + String(repeating: "r", count: 600) + #""}"#,
        ]
        for text in hostile {
            c.send(Array((text + "\n").utf8))
            let answer = try XCTUnwrap(c.readJSON(), "no answer to \(text.prefix(60))")
            XCTAssertEqual(answer["ok"] as? Bool, false, text)
            XCTAssertEqual((answer["error"] as? [String: Any])?["code"] as? String, "bad-request", "\(text.prefix(80)): \(answer)")
        }
        // Nothing was banned or scored, and the same connection answers a good request.
        c.send(Array(#"{"id":99,"cmd":"scores"}"#.utf8) + [0x0a])
        let scores = try XCTUnwrap(c.readJSON())
        XCTAssertEqual(scores["ok"] as? Bool, true)
        XCTAssertEqual((scores["scores"] as? [Any])?.count, 0, "\(scores)")
        XCTAssertEqual((scores["address_bans"] as? [Any])?.count, 0, "\(scores)")
        XCTAssertTrue(node.process.isRunning)
        try legitimatePing(line)
    }

    /// A peer book at its limits (10,000 peers with 8 addresses each, 4,096 address bans)
    /// is listed whole, offline and live: the scores answer (about 5 MB on one line) fits
    /// the client's line limit, and is read in time.
    func testAFullPeerBookIsListedOfflineAndLive() throws {
        _ = try h.keygen("node")
        let now = Int(Date().timeIntervalSince1970)
        var text = "guts-peers 1\n"
        text.reserveCapacity(3 << 20)
        for i in 0..<10_000 {
            let id = try peerID(.generate())
            let addresses = (0..<8).map { "10.\($0).\(i / 256).\(i % 256):9000" }.joined(separator: ",")
            text += "peer \(id) \(now) -12.5 1 - \(now) protocol-violation=0.1,stall=1,rate-limit-overrun=3,uptime=60,answered-ping=10 \(addresses)\n"
        }
        for i in 0..<4_096 { text += "ban 172.\(16 + i / 65_536).\(i / 256 % 256).\(i % 256) manual:permanent\n" }
        try text.write(toFile: home + "/peers", atomically: true, encoding: .utf8)

        var started = Date()
        let offline = try guts(["--json", "peers", "score"])
        print("full peer book, offline: \(String(format: "%.2f", Date().timeIntervalSince(started))) s, \(offline.stdout.utf8.count) bytes")
        XCTAssertEqual(offline.status, 0, offline.stderr)
        XCTAssertEqual(offline.stdout.split(separator: "\n").count, 14_096)

        let (node, _) = try startNode()
        started = Date()
        let live = try guts(["--json", "peers", "score"])
        print("full peer book, live: \(String(format: "%.2f", Date().timeIntervalSince(started))) s, \(live.stdout.utf8.count) bytes")
        XCTAssertEqual(live.status, 0, live.stderr)
        XCTAssertTrue(live.stderr.contains("from the running node"), live.stderr)
        XCTAssertEqual(live.stdout.split(separator: "\n").count, 14_096)
        stop(node)
    }

    // MARK: Bans by hand

    /// A ban of an identity closes its session at once, keeps it out (from any address),
    /// survives a restart, and `unban` lifts it.
    func testBanOfAnIdentityAppliesAtOnceAndSurvivesARestart() throws {
        let (node, line) = try startNode()
        let stranger = Ed25519KeyPair.generate()
        let id = try peerID(stranger)
        let connection = try dial(line, session(stranger))
        let ban = try guts(["peers", "ban", id])
        XCTAssertEqual(ban.status, 0, ban.stderr)
        XCTAssertEqual(ban.stdout, "banned \(id) until unbanned\n")
        XCTAssertTrue(ban.stderr.contains("applied by the running node"), ban.stderr)
        XCTAssertTrue(closes(connection, within: 5), "the banned peer's session stays open")
        XCTAssertThrowsError(try dial(line, session(stranger), from: "127.0.0.3")) { error in
            XCTAssertTrue("\(error)".contains("banned"), "\(error)")
        }
        try legitimatePing(line)

        stop(node)
        XCTAssertTrue(book().contains("peer \(id) ") && book().contains(" manual:permanent "), book())
        let (_, again) = try startNode()
        XCTAssertThrowsError(try dial(again, session(stranger), from: "127.0.0.4"))
        let score = try guts(["--json", "peers", "score", id])
        let entry = try XCTUnwrap(jsonLines(score.stdout).first, score.stdout)
        XCTAssertEqual(entry["state"] as? String, "banned")
        XCTAssertEqual(entry["permanent"] as? Bool, true)
        try legitimatePing(again)

        let unban = try guts(["peers", "unban", id])
        XCTAssertEqual(unban.status, 0, unban.stderr)
        XCTAssertTrue(unban.stdout.hasPrefix("unbanned \(id)"), unban.stdout)
        let back = try dial(again, session(stranger), from: "127.0.0.4")
        XCTAssertFalse(back.isClosed)
        back.close(.shutdown, "done")
        let twice = try guts(["peers", "unban", id])
        XCTAssertEqual(twice.status, 1, "nothing to unban: \(twice.stdout) \(twice.stderr)")
        XCTAssertEqual(twice.stdout, "\(id) is not banned; nothing changed\n")
    }

    /// An address ban closes that address's sessions, refuses its sockets before any
    /// cryptography, and leaves 127.0.0.1 and other addresses served; `unban` lifts it.
    func testAddressBanRefusesThatAddressOnly() throws {
        let (_, line) = try startNode()
        let port = port(of: line)
        let before = try dial(line, session())
        let ban = try guts(["peers", "ban", "127.0.0.2"])
        XCTAssertEqual(ban.status, 0, ban.stderr)
        XCTAssertTrue(closes(before, within: 5), "a session from the banned address stays open")
        XCTAssertThrowsError(try dial(line, session()))
        let socket = try XCTUnwrap(RawSocket(port: port, from: "127.0.0.2"))
        XCTAssertTrue(socket.closedByPeer(within: 5), "a raw socket from the banned address is kept open")
        try legitimatePing(line)
        let other = try dial(line, session(), from: "127.0.0.3")
        XCTAssertFalse(other.isClosed)

        // A ban for a time, and both listed.
        let timed = try guts(["--json", "peers", "ban", "127.0.0.4", "--for", "1h"])
        XCTAssertEqual(timed.status, 0, timed.stderr)
        let now = Date().timeIntervalSince1970
        XCTAssertEqual(jsonLines(timed.stdout).first?["banned_until"] as? Double ?? 0, now + 3600, accuracy: 30)
        let list = try guts(["--json", "peers", "score"])
        let bans = jsonLines(list.stdout).filter { $0["prefix"] != nil }
        XCTAssertEqual(bans.map { $0["prefix"] as? String }, ["127.0.0.2", "127.0.0.4"], list.stdout)
        XCTAssertEqual(bans.first?["permanent"] as? Bool, true)
        XCTAssertEqual(bans.first?["automatic"] as? Bool, false)
        XCTAssertEqual(bans.last?["banned_until"] as? Double ?? 0, now + 3600, accuracy: 30)
        XCTAssertThrowsError(try dial(line, session(), from: "127.0.0.4"))

        let unban = try guts(["peers", "unban", "127.0.0.2"])
        XCTAssertEqual(unban.status, 0, unban.stderr)
        let back = try dial(line, session())
        XCTAssertFalse(back.isClosed)
        back.close(.shutdown, "done")
        // A network ban covers its addresses; unbanning one address inside it changes nothing.
        let inside = try dial(line, session(), from: "127.0.0.9")
        XCTAssertEqual(try guts(["peers", "ban", "127.0.0.8/29"]).status, 0)
        XCTAssertTrue(closes(inside, within: 5))
        XCTAssertEqual(try guts(["peers", "unban", "127.0.0.9"]).status, 1)
        XCTAssertThrowsError(try dial(line, session(), from: "127.0.0.14"))
        try legitimatePing(line)
    }

    /// With no node running, `ban` and `unban` edit the peer book (under the locks, which
    /// they leave behind them), and a node started afterwards honours the result.
    func testOfflineBanAndUnbanAreHonouredByTheNextNode() throws {
        _ = try h.keygen("node")
        let stranger = Ed25519KeyPair.generate()
        let id = try peerID(stranger)
        let ban = try guts(["peers", "ban", id])
        XCTAssertEqual(ban.status, 0, ban.stderr)
        XCTAssertTrue(ban.stderr.contains("no node is running"), ban.stderr)
        let timed = try guts(["peers", "ban", "127.0.0.2", "--for", "10m"])
        XCTAssertEqual(timed.status, 0, timed.stderr)
        XCTAssertTrue(book().hasPrefix("guts-peers 1\n"), book())
        XCTAssertTrue(book().contains("peer \(id) ") && book().contains(" manual:permanent "), book())
        XCTAssertTrue(book().contains("ban 127.0.0.2 manual:"), book())
        for leftover in ["node.lock", "peers.lock"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/" + leftover), leftover)
        }
        var st = stat()
        XCTAssertEqual(stat(home + "/peers", &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let score = try guts(["--json", "peers", "score"])
        XCTAssertTrue(score.stderr.contains("from the peer book, no node is running"), score.stderr)
        let lines = jsonLines(score.stdout)
        XCTAssertEqual(lines.first { $0["peer_id"] as? String == id }?["state"] as? String, "banned", score.stdout)
        XCTAssertEqual(lines.first { $0["prefix"] as? String == "127.0.0.2" }?["permanent"] as? Bool, false, score.stdout)

        let (node, line) = try startNode()
        XCTAssertThrowsError(try dial(line, session(stranger), from: "127.0.0.3"))
        XCTAssertThrowsError(try dial(line, session()))
        try legitimatePing(line)
        stop(node)

        XCTAssertEqual(try guts(["peers", "unban", id]).status, 0)
        XCTAssertEqual(try guts(["peers", "unban", "127.0.0.2"]).status, 0)
        XCTAssertEqual(try guts(["peers", "unban", "127.0.0.2"]).status, 1)
        let (_, again) = try startNode()
        let back = try dial(again, session(stranger))
        XCTAssertFalse(back.isClosed)
        back.close(.shutdown, "done")
    }

    /// Malformed targets and durations are usage errors (2); a damaged peer book is a
    /// local error (3) and is left as it was; `peers` itself takes no argument.
    func testMalformedTargetsAndADamagedBook() throws {
        _ = try h.keygen("node")
        for args in [["peers", "ban", "10.1.2.3/24"], ["peers", "ban", "gt" + String(repeating: "a", count: 56)], ["peers", "ban", "host.example"],
                     ["peers", "ban", "127.0.0.2", "--for", "0"], ["peers", "ban", "127.0.0.2", "--for", "5y"],
                     ["peers", "ban", "127.0.0.2", "--for", "-5m"], ["peers", "ban"], ["peers", "unban", "a", "b"],
                     ["peers", "unban", "127.0.0.2", "--for", "1h"], ["peers", "score", "gtnope"], ["peers", "bogus"]] {
            let r = try guts(args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: home + "/peers"))
        let damaged = "guts-peers 1\npeer nonsense\n"
        try damaged.write(toFile: home + "/peers", atomically: true, encoding: .utf8)
        for args in [["peers", "score"], ["peers", "ban", "127.0.0.2"], ["peers", "unban", "127.0.0.2"]] {
            let r = try guts(args)
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("line 2"), r.stderr)
        }
        XCTAssertEqual(book(), damaged)
    }

    // MARK: guts sync and the peer book

    /// Banned peers are skipped without being dialled (by peer ID and by address), and of
    /// two that serve the repository the better-scored one is used, whatever the order.
    func testSyncSkipsBannedPeersAndPrefersTheBetterScored() throws {
        let f = try SyncFixture(h)
        try f.commit("c", files: ["a.txt": "a\n"])
        try f.push()
        try f.startServer()
        let secondID = try h.keygen("server2")
        let (second, secondLine) = try h.listen("server2", ["--repos", f.serverHome + "/repos"])
        defer { second.signal(SIGKILL) }
        let banned = try peerID(.generate())
        let now = Int(Date().timeIntervalSince1970)
        // The first server stalled once (-5); the unknown second one is neutral (0).
        let text = """
            guts-peers 1
            peer \(f.serverID) \(now) -5 0 - \(now) stall=1 -
            peer \(banned) \(now) 0 0 manual:permanent \(now) - -
            ban 127.0.0.5 manual:permanent

            """
        try text.write(toFile: f.clientHome + "/peers", atomically: true, encoding: .utf8)
        let bannedLine = "\(banned)@127.0.0.1:\(syncUnusedPort())"
        let addressLine = "127.0.0.5:\(port(of: f.peer))"
        let r = try f.sync(peers: [bannedLine, addressLine, f.peer, secondLine], extra: ["-v"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual((r.json["peer"] as? String)?.hasPrefix(secondID), true, "\(r.json) \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("skipping \(bannedLine): its peer ID is banned until unbanned (in the peer book)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("skipping \(addressLine): its address is banned until unbanned"), r.stderr)
        XCTAssertTrue(r.stderr.contains("peers by score"), r.stderr)
        // Only banned peers: nothing is done.
        let none = try f.sync(peers: [bannedLine, addressLine])
        XCTAssertEqual(none.status, 3, none.stderr)
        XCTAssertTrue(none.stderr.contains("every peer given is banned"), none.stderr)
    }

    /// A sync that receives a corrupt pack records bad-objects against the peer: in the
    /// peer book when no node runs, through the node when one does (which then holds the
    /// peer in lower regard); the next sync prefers an honest peer.
    func testSyncThatReceivesBadDataRecordsItInThePeerBook() throws {
        let f = try SyncFixture(h)
        try f.commit("c", files: ["a.txt": String(repeating: "payload\n", count: 200)])
        try f.push()
        try f.startServer()
        let liar = try MaliciousServer(repository: f.upstream, behavior: .corruptByte)
        defer { liar.shutdown() }

        let first = try f.sync(peers: [liar.peer])
        XCTAssertEqual(first.status, 6, first.stderr)
        XCTAssertTrue(first.stderr.contains("recorded bad-objects in the peer book \(f.clientHome)/peers; score now -30 (graylisted)"), first.stderr)
        let book = (try? String(contentsOfFile: f.clientHome + "/peers", encoding: .utf8)) ?? ""
        XCTAssertTrue(book.contains("peer \(liar.peerID) ") && book.contains(" bad-objects="), book)

        // With the client's own node running, the next offence goes through it.
        let (clientNode, _) = try h.listen("client")
        let second = try f.sync(peers: [liar.peer])
        XCTAssertEqual(second.status, 6, second.stderr)
        // Two offences: the node disconnects and refuses it until its score recovers.
        XCTAssertTrue(second.stderr.contains("reported bad-objects to the running node; score now -"), second.stderr)
        XCTAssertTrue(second.stderr.contains("(disconnected)"), second.stderr)
        clientNode.waitFor("the node to count it") { _, err in err.contains("bad-objects (reported: guts sync:") }
        let score = try h.run(["--home", f.clientHome, "--json", "peers", "score", liar.peerID])
        let entry = try XCTUnwrap(jsonLines(score.stdout).first, score.stdout)
        XCTAssertEqual((entry["components"] as? [String: Double])?["bad-objects"] ?? 0, -60, accuracy: 0.1)

        // The honest server is preferred, whatever the order given.
        let asked = liar.events.count
        let third = try f.sync(peers: [liar.peer, f.peer])
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertEqual((third.json["peer"] as? String)?.hasPrefix(f.serverID), true, "\(third.json)")
        XCTAssertEqual(liar.events.count, asked, "the liar was asked again: \(liar.events)")
        stop(clientNode)
    }

    // MARK: Documentation

    /// Every option each command's --help lists is in its man page and in each completion
    /// file (bash, zsh, fish).
    func testEveryOptionIsDocumentedAndCompleted() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        func read(_ path: String) throws -> String { try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8) }
        let bash = try read("Completions/guts.bash"), zsh = try read("Completions/_guts"), fish = try read("Completions/guts.fish")
        let main = try h.run(["help"])
        let commands = main.stdout.components(separatedBy: "commands:\n").last?.components(separatedBy: "\n\n").first?
            .split(separator: "\n").compactMap { $0.trimmingCharacters(in: .whitespaces).components(separatedBy: "  ").first }
            .filter { $0 != "help" && $0 != "version" } ?? []
        XCTAssertTrue(commands.contains("peers score") && commands.contains("peers ban") && commands.contains("peers unban"), "\(commands)")
        func has(_ text: String, _ pattern: String) -> Bool { text.range(of: pattern, options: .regularExpression) != nil }
        for command in commands {
            let help = try h.run(["help"] + command.split(separator: " ").map(String.init))
            XCTAssertEqual(help.status, 0, command)
            let options = help.stdout.components(separatedBy: "\noptions:\n").dropFirst().first?.components(separatedBy: "\n\n").first ?? ""
            let man = try read("Man/guts-\(command.split(separator: " ")[0]).1")
            for line in options.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard let long = words.first(where: { $0.hasPrefix("--") }).map({ String($0.dropFirst(2)).trimmingCharacters(in: .punctuationCharacters) })
                else { continue }
                let roff = "\\-\\-" + long.replacingOccurrences(of: "-", with: "\\-")
                XCTAssertTrue(man.contains(roff), "guts-\(command) man page lacks --\(long)")
                let word = NSRegularExpression.escapedPattern(for: "--" + long) + "([^a-z-]|$)"
                XCTAssertTrue(has(bash, "(^|[^a-z-])" + word), "bash completion lacks --\(long) (\(command))")
                XCTAssertTrue(has(zsh, "(^|[^a-z-])" + word), "zsh completion lacks --\(long) (\(command))")
                XCTAssertTrue(has(fish, "-l " + NSRegularExpression.escapedPattern(for: long) + "( |$)"), "fish completion lacks --\(long) (\(command))")
                if let short = words.first(where: { $0.count == 3 && $0.hasPrefix("-") && $0.hasSuffix(",") }).map({ String($0.dropFirst().dropLast()) }) {
                    XCTAssertTrue(man.contains("\\-" + short), "guts-\(command) man page lacks -\(short)")
                    XCTAssertTrue(has(fish, "-s \(short) "), "fish completion lacks -\(short) (\(command))")
                    XCTAssertTrue(has(bash, "(^|[^a-z-])-\(short)([^a-zA-Z]|$)"), "bash completion lacks -\(short) (\(command))")
                    XCTAssertTrue(has(zsh, "[{(]-\(short)[,+ ]"), "zsh completion lacks -\(short) (\(command))")
                }
            }
        }
        // The new words are completed too.
        for text in [bash, zsh, fish] {
            XCTAssertTrue(text.contains("score") && text.contains("unban"), "peers subcommands missing from a completion file")
        }
    }
}
