import Foundation
import GutsAddress
import GutsControl
import GutsCrypto
import GutsDHT
import GutsIdentity
import GutsNode
import GutsTransport
import GutsTrust
import GutsWire
import NIOPosix
import XCTest

/// The DHT with real processes: nodes on loopback joined through one bootstrap node find
/// each other and the providers of repositories by ID alone; restricted repositories are
/// never provided; a peer sending garbage DHT traffic is scored while lookups go on.
final class DHTTests: XCTestCase {
    var h: Harness!
    var clock = 1_700_000_000

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    /// Nodes in the network test (GUTS_DHT_NODES overrides; the issue asks for 30).
    static var nodeCount: Int { ProcessInfo.processInfo.environment["GUTS_DHT_NODES"].flatMap { Int($0) } ?? 30 }

    /// `guts find`'s lines for a node serving QUIC: its TCP address, then the QUIC address
    /// on the same port number.
    func withQUIC(_ line: String) -> String {
        line + "\n" + line.replacingOccurrences(of: "@", with: "@quic/")
    }

    func guts(_ home: String, _ args: [String], timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        try h.run(["--home", h.home(home)] + args, timeout: timeout, file: file, line: line)
    }

    @discardableResult
    func git(_ args: [String], in dir: String) throws -> String {
        clock += 60
        return try SyncGit.git(args, in: dir, date: clock).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// A bare repository `<home>/repos/<name>.git` with one commit; returns its head.
    @discardableResult
    func makeRepository(_ home: String, _ name: String) throws -> String {
        let repo = h.home(home) + "/repos/" + name + ".git"
        try FileManager.default.createDirectory(atPath: repo, withIntermediateDirectories: true)
        try git(["init", "-q", "--bare", "."], in: repo)
        let work = h.root.appendingPathComponent("work-\(home)-\(name.replacingOccurrences(of: "/", with: "-"))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try git(["init", "-q", "."], in: work)
        try git(["remote", "add", "origin", repo], in: work)
        try (name + "\n").write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try git(["add", "file"], in: work)
        try git(["commit", "-q", "-m", name], in: work)
        try git(["push", "-q", "origin", "HEAD:main"], in: work)
        return try git(["rev-parse", "HEAD"], in: work)
    }

    func repoInit(_ home: String, _ name: String) throws -> String {
        let r = try guts(home, ["repo", "init", name])
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs `guts find` from a home without a node until it succeeds (the providers'
    /// announcements travel after the nodes join), or fails after `timeout`.
    func findEventually(_ key: String, boot: String, timeout: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        var last: Harness.Result?
        let found = try eventually(timeout: timeout, every: 0.2) {
            last = try guts("client", ["find", "--ephemeral", "--bootstrap", boot, key], file: file, line: line)
            return last?.status == 0
        }
        if found, let last { return last }
        XCTFail("\(key) not found within \(timeout) s: \(last?.stderr ?? "")", file: file, line: line)
        return try XCTUnwrap(last)
    }

    /// The bootstrap node and `n - 1` nodes joined through it; `n1` serves a public and a
    /// restricted repository with identities.
    func testNodesFindEachOtherAndSyncByIDAlone() throws {
        let n = max(4, Self.nodeCount)
        let started = Date()
        var ids: [String] = []
        for i in 0..<n { ids.append(try h.keygen("n\(i)")) }
        _ = try h.keygen("client")
        let head = try makeRepository("n1", "demo/app")
        let rid = try repoInit("n1", "demo/app")
        try makeRepository("n1", "demo/secret")
        let secret = try repoInit("n1", "demo/secret")
        try "\(ids[2])\n".write(toFile: h.home("n1") + "/repos/demo/secret.git/guts-allow", atomically: true, encoding: .utf8)

        let (boot, bootLine) = try h.listen("n0", [])
        var lines = [bootLine]
        var nodes = [boot]
        for i in 1..<n {
            let (node, line) = try h.listen("n\(i)", ["--bootstrap", bootLine, "--announce-interval", "0.2"])
            nodes.append(node)
            lines.append(line)
        }
        let originAddress = String(lines[1].split(separator: "@")[1])

        // Providers by repository ID, through the bootstrap peer (no node runs for "client").
        let found = try findEventually(rid, boot: bootLine)
        XCTAssertTrue(found.stdout.contains("\(ids[1])@\(originAddress)"), found.stdout)
        let json = try guts("client", ["--json", "find", "--ephemeral", "--bootstrap", bootLine, rid])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], json.stdout)
        XCTAssertEqual(object["kind"] as? String, "repository")
        XCTAssertEqual(object["found"] as? Bool, true)
        let providers = try XCTUnwrap(object["providers"] as? [[String: Any]])
        XCTAssertEqual(providers.first?["peer_id"] as? String, ids[1], json.stdout)
        // The provider record lists the node's QUIC address beside its TCP address.
        XCTAssertEqual(providers.first?["addresses"] as? [String], [originAddress, "quic/" + originAddress], json.stdout)

        // The restricted repository is never provided (it was scanned with the public one).
        let hidden = try guts("client", ["find", "--ephemeral", "--bootstrap", bootLine, secret])
        XCTAssertEqual(hidden.status, 1, "restricted repository found: \(hidden.stdout) \(hidden.stderr)")
        XCTAssertEqual(hidden.stdout, "")

        // A sync by ID alone, without --peer.
        let sync = try guts("client", ["sync", "--bootstrap", bootLine, rid])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        XCTAssertEqual(try SyncGit.revParse(h.home("client") + "/repos/demo/app.git", "refs/heads/main"), head)

        // A running node answers `find` for its CLI (through the control socket).
        let last = n - 1
        let viaNode = try guts("n\(last)", ["find", ids[1]])
        XCTAssertEqual(viaNode.status, 0, viaNode.stderr)
        XCTAssertEqual(viaNode.stdout.trimmingCharacters(in: .whitespacesAndNewlines), withQUIC(lines[1]))

        // `ping PEERID` and `dial PEERID` resolve the peer through the DHT.
        let ping = try guts("client", ["ping", "--ephemeral", "-c", "1", "--bootstrap", bootLine, ids[last]])
        XCTAssertEqual(ping.status, 0, ping.stderr)
        XCTAssertTrue(ping.stdout.contains("pong from"), ping.stdout)
        let dial = try guts("client", ["dial", "--ephemeral", "--bootstrap", bootLine, ids[2]])
        XCTAssertEqual(dial.status, 0, dial.stderr)

        // A name nothing pins here cannot be looked up: its own exit code.
        let name = try guts("client", ["sync", "--bootstrap", bootLine, "demo/other"])
        XCTAssertEqual(name.status, 11, name.stderr)
        XCTAssertTrue(name.stderr.contains("give its repository ID"), name.stderr)
        // A pinned name resolves to its ID (the mirror made above).
        let pinned = try guts("client", ["sync", "--bootstrap", bootLine, "demo/app"])
        XCTAssertEqual(pinned.status, 0, pinned.stderr)

        // The routing table is saved at shutdown.
        nodes[last].signal(SIGTERM)
        XCTAssertEqual(nodes[last].wait(), 0)
        let table = try String(contentsOfFile: h.home("n\(last)") + "/dht-routing", encoding: .utf8)
        XCTAssertTrue(table.hasPrefix(RoutingTableText.header), table)
        XCTAssertGreaterThan(table.split(separator: "\n").count, 1, table)
        // Restarted without --bootstrap, the node rejoins through its saved contacts.
        let (again, _) = try h.listen("n\(last)", [])
        var rejoined: Harness.Result?
        try eventually(timeout: 20, every: 0.2) {
            let r = try guts("n\(last)", ["find", rid])
            if r.status == 0 { rejoined = r }
            return rejoined != nil
        }
        XCTAssertTrue(rejoined?.stdout.contains("\(ids[1])@\(originAddress)") ?? false, "no provider found after the restart: \(again.stderr)")
        print("DHT network of \(n) nodes: test took \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
    }

    /// A peer that sends invalid records and floods requests is penalised (and answered
    /// busy), while a legitimate client's lookups through the same node succeed.
    func testGarbageDHTTrafficIsPenalisedAndLookupsGoOn() throws {
        var ids: [String] = []
        for i in 0..<4 { ids.append(try h.keygen("n\(i)")) }
        _ = try h.keygen("client")
        try makeRepository("n1", "demo/app")
        let rid = try repoInit("n1", "demo/app")
        let (boot, bootLine) = try h.listen("n0", [])
        for i in 1..<4 { _ = try h.listen("n\(i)", ["--bootstrap", bootLine, "--announce-interval", "0.2"]) }
        _ = try findEventually(rid, boot: bootLine)

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let attacker = Ed25519KeyPair.generate()
        let attackerID = try PeerID(publicKey: attacker.publicKey).description
        let config = SessionConfig(identity: attacker, noiseStatic: .generate(), capabilities: ["ping", DHTProtocol.capability],
                                   agent: "attacker", protocols: MessageRegistry([DHTProtocol()]))
        let link = try Dialer.dial(try Endpoint.parse(bootLine), config: config, group: group, connectTimeout: 5, source: "127.0.0.2").wait()
        let target = try XCTUnwrap(NodeID(bytes: [UInt8](repeating: 7, count: 32)))
        // A flood of requests: over the burst they are answered busy and scored.
        for i in 0..<150 {
            link.send(.app(DHTMessage.findNode(FindNode(requestID: UInt32(i + 1), target: target))))
        }
        boot.waitFor("the flood to be scored") { _, err in err.contains("rate-limit-overrun (dht: DHT requests over the rate limit)") }
        var busy = false
        for _ in 0..<400 {
            guard let m = try? link.nextMessage(timeout: 2).wait() else { break }
            if case let .error(e) = m, e.code == .busy, e.message.hasPrefix("retry-after=") { busy = true; break }
        }
        XCTAssertTrue(busy, "no busy answer to the flood")
        var scores = try guts("n0", ["--json", "peers", "score", attackerID])
        XCTAssertEqual(scores.status, 0, scores.stderr)
        var entry = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(scores.stdout.utf8)) as? [String: Any], scores.stdout)
        XCTAssertLessThan((entry["components"] as? [String: Double])?["rate-limit-overrun"] ?? 0, 0, scores.stdout)

        // A provider record with a bad signature, from a second attacker (the first one's
        // requests are over the rate, so its record would be dropped unread): a forgery,
        // a protocol violation (-60), which disconnects it at once.
        let forger = Ed25519KeyPair.generate()
        let forgerID = try PeerID(publicKey: forger.publicKey).description
        var forgerConfig = config
        forgerConfig.identity = forger
        let forgerLink = try Dialer.dial(try Endpoint.parse(bootLine), config: forgerConfig, group: group, connectTimeout: 5, source: "127.0.0.3").wait()
        let address = try XCTUnwrap(DHTAddress("127.0.0.3:9"))
        let forged = ProviderRecord(repository: target, publisher: forger.publicKey, expires: UInt64(Date().timeIntervalSince1970) + 3600,
                                    addresses: [address], signature: [UInt8](repeating: 0, count: 64))
        forgerLink.send(.app(DHTMessage.addProvider(AddProvider(record: forged))))
        boot.waitFor("the forged record to be penalised") { _, err in err.contains("protocol-violation (dht: invalid DHT record: bad signature)") }
        boot.waitFor("the forger to be disconnected") { _, err in err.contains("score: disconnecting \(String(forgerID.prefix(12)))") }
        scores = try guts("n0", ["--json", "peers", "score", forgerID])
        entry = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(scores.stdout.utf8)) as? [String: Any], scores.stdout)
        XCTAssertEqual(entry["state"] as? String, "disconnect", scores.stdout)

        // Legitimate lookups through the same node still succeed.
        let again = try guts("client", ["find", "--ephemeral", "--bootstrap", bootLine, rid])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains(ids[1]), again.stdout)
        for l in [link, forgerLink] {
            l.abort()
            _ = try? l.closeFuture.wait()
        }
    }

    /// `--no-dht`: the node does not list `dht`, and `guts find` through it falls back to
    /// the bootstrap peers (none configured here: status 3).
    func testNoDHTNodeTakesNoPart() throws {
        let id = try h.keygen("plain")
        let (node, line) = try h.listen("plain", ["--no-dht"])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let config = SessionConfig(identity: Ed25519KeyPair.generate(), noiseStatic: .generate(), capabilities: ["ping"],
                                   agent: "probe", protocols: .control)
        let link = try Dialer.dial(try Endpoint.parse(line), config: config, group: group, connectTimeout: 5).wait()
        XCTAssertFalse(link.peer?.capabilities.contains(DHTProtocol.capability) ?? true, "\(link.peer?.capabilities ?? [])")
        link.close(.shutdown, "done")
        _ = try? link.closeFuture.wait()
        let find = try guts("plain", ["find", id])
        XCTAssertEqual(find.status, 3, find.stderr)
        XCTAssertTrue(find.stderr.contains("no bootstrap peer is configured"), find.stderr)
        node.signal(SIGTERM)
        XCTAssertEqual(node.wait(), 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.home("plain") + "/dht-routing"))
    }

    /// A node listening on an unspecified address without --announce-address starts as a
    /// client only. Two hostile peers flood it with reports of a wrong address: each counts
    /// once (and the flood is rate-limited). Once three honest peers (its bootstrap peer and
    /// two that dial it; on loopback, each peer is its own prefix) report the address their
    /// sessions come from, it advertises that IP address with its listening port, its
    /// bootstrap peer dials it back, and it is found by peer ID.
    func testUnannouncedNodeLearnsItsAddressFromThreePeers() throws {
        let id = try h.keygen("wild")
        _ = try h.keygen("p0")
        let (_, p0Line) = try h.listen("p0", [])
        // Its bootstrap peer sees it as a client until it learns its address.
        let wild = try h.start(["--home", h.home("wild"), "listen", "--listen", "0.0.0.0:0", "--bootstrap", p0Line])
        defer { wild.signal(SIGTERM) }
        XCTAssertTrue(wild.waitFor("listen to print its address") { out, _ in out.contains("\n") }, wild.stderr)
        let port = try XCTUnwrap(wild.stdout.split(separator: "\n").first?.split(separator: ":").last.map(String.init), wild.stdout)
        let learned = "127.0.0.1:\(port)"
        let wildLine = "\(id)@\(learned)"

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let wrong = try XCTUnwrap(DHTAddress("127.0.0.66:1"))
        var liars: [PeerConnection] = []
        for source in ["127.0.0.2", "127.0.0.3"] {
            let config = SessionConfig(identity: Ed25519KeyPair.generate(), noiseStatic: .generate(), capabilities: ["ping", DHTProtocol.capability],
                                       agent: "liar", protocols: MessageRegistry([DHTProtocol()]))
            let link = try Dialer.dial(try Endpoint.parse(wildLine), config: config, group: group, connectTimeout: 5, source: source).wait()
            for _ in 0..<100 { link.send(.app(DHTMessage.observedAddress(ObservedAddress(address: wrong)))) }
            liars.append(link)
        }
        XCTAssertTrue(wild.waitFor("the flood to be rate-limited") { _, err in err.contains("rate-limit-overrun (dht: DHT requests over the rate limit)") },
                      wild.stderr)
        for i in 1..<3 {
            _ = try h.keygen("p\(i)")
            _ = try h.listen("p\(i)", ["--bootstrap", wildLine])
        }
        XCTAssertTrue(wild.waitFor("the address to be adopted", timeout: 20) { _, err in err.contains("advertising \(learned)") },
                      wild.stderr)
        XCTAssertFalse(wild.stderr.contains("127.0.0.66"), wild.stderr)
        // The bootstrap peer it was a client of dials it back on its new peer record...
        XCTAssertTrue(wild.waitFor("the dial-back", timeout: 10) { _, err in err.contains("dial-back done") }, wild.stderr)
        // ...and finds it by peer ID, at the learned address.
        var last: Harness.Result?
        try eventually(timeout: 20, every: 0.2) {
            last = try guts("p0", ["find", id])
            return last?.status == 0
        }
        XCTAssertEqual(last?.stdout.trimmingCharacters(in: .whitespacesAndNewlines), withQUIC(wildLine), last?.stderr ?? "")
        for l in liars {
            l.abort()
            _ = try? l.closeFuture.wait()
        }
    }

    /// A repository announced through gossip by a node outside the DHT (--no-dht) is found
    /// through a node that saw the announcement, also after a hostile announcer flooded it
    /// with 70 repositories (it keeps 64 of them), and `guts sync REPO-ID` through that node
    /// syncs it without --peer. A bare name nothing pins prints the identities peers serve
    /// under it (text and JSON), pins nothing, and exits 11.
    func testAnnouncersAreProvidersAndBareNamesListIdentities() throws {
        let originID = try h.keygen("o")
        _ = try h.keygen("n")
        _ = try h.keygen("client")
        try makeRepository("o", "demo/app")
        let rid = try repoInit("o", "demo/app")
        try makeRepository("o", "demo/lib")
        let lib = try repoInit("o", "demo/lib")
        let (origin, originLine) = try h.listen("o", ["--no-dht", "--announce-interval", "0.2"])
        // A hostile announcer the node is also connected to.
        let floodID = try h.keygen("x")
        let (_, floodLine) = try h.listen("x", ["--no-dht"])
        let (node, _) = try h.listen("n", ["--bootstrap", originLine, "--bootstrap", floodLine])
        XCTAssertTrue(node.waitFor("the bootstrap sessions") { _, err in err.components(separatedBy: "(bootstrap").count > 2 }, node.stderr)
        // A push: the origin signs it and announces SignedRefs by gossip.
        let work = h.root.appendingPathComponent("work-o-demo-app").path
        try "v2\n".write(toFile: work + "/file", atomically: true, encoding: .utf8)
        try git(["commit", "-q", "-am", "second"], in: work)
        try git(["push", "-q", "origin", "HEAD:main"], in: work)
        let head = try git(["rev-parse", "HEAD"], in: work)
        XCTAssertTrue(origin.waitFor("the push to be signed", timeout: 20) { _, err in err.contains("signed demo/app: sequence 2") }, origin.stderr)
        var found: Harness.Result?
        try eventually(timeout: 20, every: 0.1) {
            found = try guts("n", ["find", rid])
            return found?.status == 0
        }
        XCTAssertEqual(found?.stdout.trimmingCharacters(in: .whitespacesAndNewlines), withQUIC(originLine), found?.stderr ?? "")
        // The hostile announcer floods announcements of 70 repositories: it keeps at most 64
        // entries (its oldest make way), and the genuine announcer is still found.
        let control = try ControlClient.connect(directory: h.home("x"), timeout: 5)
        var flooded: [String] = []
        for i in 0..<70 {
            var bytes = [UInt8](repeating: 0xEE, count: 32)
            bytes[0] = UInt8(i)
            let fake = try XCTUnwrap(RepositoryID(bytes: bytes))
            flooded.append(fake.description)
            let data = try Announcement.signedRefs(SignedRefsUpdate(repository: fake, delegate: try XCTUnwrap(PeerID(floodID)), sequence: 1,
                                                                    signedRefs: try XCTUnwrap(WireOID([UInt8](repeating: 1, count: 20))))).encoded()
            guard case .published = try control.call(.publish(topic: "guts/commits", data: data), timeout: 5) else {
                return XCTFail("publish \(i) refused")
            }
        }
        control.close()
        var last: Harness.Result?
        try eventually(timeout: 20, every: 0.1) {
            last = try guts("n", ["find", flooded[69]])
            return last?.status == 0
        }
        XCTAssertEqual(last?.stdout.trimmingCharacters(in: .whitespacesAndNewlines), withQUIC(floodLine), last?.stderr ?? "")
        let oldest = try guts("n", ["find", flooded[0]])
        XCTAssertEqual(oldest.status, 1, "the flood's oldest entry was kept: \(oldest.stdout)")
        let still = try guts("n", ["find", rid])
        XCTAssertEqual(still.stdout.trimmingCharacters(in: .whitespacesAndNewlines), withQUIC(originLine), still.stderr)

        let sync = try guts("n", ["sync", rid])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        XCTAssertEqual(try SyncGit.revParse(h.home("n") + "/repos/demo/app.git", "refs/heads/main"), head)

        // A bare name: the identities under it, from the bootstrap peer; nothing pinned.
        let name = try guts("client", ["sync", "--ephemeral", "--bootstrap", originLine, "demo/app"])
        XCTAssertEqual(name.status, 11, name.stderr)
        XCTAssertEqual(name.stdout, "\(rid)\t\(originLine)\n", name.stderr)
        XCTAssertTrue(name.stderr.contains("1 identity found under that name"), name.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.home("client") + "/repos/demo/app.git"))
        let json = try guts("client", ["--json", "sync", "--ephemeral", "--bootstrap", originLine, "demo/app"])
        XCTAssertEqual(json.status, 11, json.stderr)
        // One object per offer, then the error object (as every command under --json).
        let first = String(json.stdout.split(separator: "\n").first ?? "")
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any], json.stdout)
        XCTAssertEqual(object["id"] as? String, rid)
        XCTAssertEqual(object["peer"] as? String, originLine)
        XCTAssertEqual(object["name"] as? String, "demo/app")
        XCTAssertTrue(json.stdout.contains("\"kind\":\"unresolved\""), json.stdout)
        // Through a running node: its outbound peers are asked.
        let viaNode = try guts("n", ["sync", "demo/lib"])
        XCTAssertEqual(viaNode.status, 11, viaNode.stderr)
        XCTAssertEqual(viaNode.stdout, "\(lib)\t\(originLine)\n", viaNode.stderr)
        XCTAssertTrue(originLine.hasPrefix(originID), originLine)
    }


    /// Two nodes that bootstrap from each other hold a session each way for a moment; both
    /// close the same one and keep the session dialed by the lower peer ID.
    func testNodesThatDialEachOtherKeepOneSession() throws {
        let a = try h.keygen("a"), b = try h.keygen("b")
        // Each node must know the other's port before either starts, so the ports are
        // picked up front; another test running in parallel may take one in between, and
        // then both start again on new ports.
        var started: (Harness.Running, Harness.Running)?
        for _ in 0..<5 where started == nil {
            let pa = syncUnusedPort()
            var pb = syncUnusedPort()
            while pb == pa { pb = syncUnusedPort() }
            let na = try h.start(["--home", h.home("a"), "listen", "--listen", "127.0.0.1:\(pa)", "--bootstrap", "\(b)@127.0.0.1:\(pb)"])
            let nb = try h.start(["--home", h.home("b"), "listen", "--listen", "127.0.0.1:\(pb)", "--bootstrap", "\(a)@127.0.0.1:\(pa)"])
            // Each prints its address once listening, or exits if its port was taken.
            eventually(timeout: 20) {
                !na.process.isRunning || !nb.process.isRunning || (na.stdout.contains("@") && nb.stdout.contains("@"))
            }
            if na.process.isRunning, nb.process.isRunning, na.stdout.contains("@"), nb.stdout.contains("@") {
                started = (na, nb)
            } else {
                for n in [na, nb] { n.signal(SIGTERM); _ = n.wait() }
            }
        }
        let (na, nb) = try XCTUnwrap(started, "the nodes could not be started on free ports")
        // Both dial at start, so at least one node holds two sessions and closes one. The other
        // may never see its own duplicate: its dial can complete just after the first node
        // closed it. What must hold on both sides is the end state below.
        eventually(timeout: 20) { [na, nb].contains { $0.stderr.contains("(simultaneous dial)") } }
        XCTAssertTrue([na, nb].contains(where: { $0.stderr.contains("(simultaneous dial)") }), na.stderr + nb.stderr)
        let lower = try XCTUnwrap(PeerID(a)) < XCTUnwrap(PeerID(b)) ? "a" : "b"
        for (home, other) in [("a", b), ("b", a)] {
            var sessions: [[String: Any]] = []
            try eventually(every: 0.1) {
                let r = try guts(home, ["--json", "peers"])
                XCTAssertEqual(r.status, 0, r.stderr)
                sessions = r.stdout.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }.filter { $0["peer_id"] as? String == other }
                return sessions.count == 1
            }
            XCTAssertEqual(sessions.count, 1, "\(home): \(sessions)")
            XCTAssertEqual(sessions.first?["direction"] as? String, home == lower ? "outbound" : "inbound", "\(home): \(sessions)")
        }
    }
}
