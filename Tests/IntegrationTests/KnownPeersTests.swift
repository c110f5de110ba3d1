import Foundation
import XCTest

/// known_peers and aliases (guts-known-peers(5)) with real processes: first use records,
/// a changed identity at a known address is refused until forgotten, strict and off
/// modes, aliases, and which peer ID wins.
final class KnownPeersIntegrationTests: XCTestCase {
    var h: Harness!

    override func setUpWithError() throws { h = try Harness() }
    override func tearDown() { h.cleanup() }

    func guts(_ home: String, _ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> Harness.Result {
        try h.run(["--home", h.home(home)] + args, timeout: 30, file: file, line: line)
    }

    func knownPeers(_ home: String) -> String {
        (try? String(contentsOfFile: h.home(home) + "/known_peers", encoding: .utf8)) ?? ""
    }

    /// `PEERID@ADDR` split.
    func split(_ line: String) -> (id: String, address: String) {
        let parts = line.split(separator: "@", maxSplits: 1).map(String.init)
        return (parts.first ?? "", parts.count > 1 ? parts[1] : "")
    }

    /// `guts listen` on a given address (another node's, once it stopped).
    func listen(_ name: String, at address: String) throws -> (Harness.Running, String) {
        let r = try h.start(["--home", h.home(name), "listen", "--listen", address])
        r.waitFor("listen to print its address") { out, _ in out.contains("\n") }
        return (r, r.stdout.split(separator: "\n").first.map(String.init) ?? "")
    }

    func stop(_ r: Harness.Running) {
        r.signal(SIGTERM)
        XCTAssertNotNil(r.wait(timeout: 15))
    }

    func testFirstUseRecordsAndAChangedIdentityIsRefusedUntilForgotten() throws {
        _ = try h.keygen("client")
        let aID = try h.keygen("a")
        let bID = try h.keygen("b")
        let (a, aLine) = try h.listen("a")
        let address = split(aLine).address
        XCTAssertEqual(split(aLine).id, aID)

        // First use: recorded, with the time.
        let first = try guts("client", ["dial", address])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stderr.contains("learned \(aID) at \(address) (first use"), first.stderr)
        let recorded = knownPeers("client")
        XCTAssertTrue(recorded.hasPrefix("\(address) \(aID) 20"), recorded)
        XCTAssertEqual(recorded.split(separator: "\n").count, 1)
        // Later uses are verified against it and change nothing.
        let again = try guts("client", ["dial", address])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("\(aID) (verified: known_peers)"), again.stdout)
        XCTAssertEqual(knownPeers("client"), recorded)

        // Another node answers at the same address.
        stop(a)
        let (b, bLine) = try listen("b", at: address)
        XCTAssertEqual(bLine, "\(bID)@\(address)")
        for args in [["dial", address], ["ping", "-c", "1", address], ["sync", "alice/proj", "--peer", address]] {
            let refused = try guts("client", args)
            XCTAssertEqual(refused.status, 5, "\(args): \(refused.stderr)")
            XCTAssertTrue(refused.stderr.contains("has changed"), refused.stderr)
            XCTAssertTrue(refused.stderr.contains("known_peers:1 records \(aID) for \(address), but it presented \(bID)"), refused.stderr)
            XCTAssertTrue(refused.stderr.contains("peers forget \(address)"), refused.stderr)
            XCTAssertEqual(refused.stdout, "")
        }
        XCTAssertEqual(knownPeers("client"), recorded, "a refusal changes nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.home("client") + "/repos/alice/proj.git"))

        // The command printed forgets the entry; the next dial records the new identity.
        let refused = try guts("client", ["dial", address])
        let command = try XCTUnwrap(refused.stderr.components(separatedBy: "forget the old entry with: ").last?
            .split(separator: "\n").first).split(separator: " ").map(String.init)
        XCTAssertEqual(command.first, "guts")
        let forgot = try h.run(Array(command.dropFirst()))
        XCTAssertEqual(forgot.status, 0, forgot.stderr)
        XCTAssertEqual(forgot.stdout, "forgot \(address) \(aID)\n")
        XCTAssertEqual(knownPeers("client"), "")
        let forgotAgain = try h.run(Array(command.dropFirst()))
        XCTAssertEqual(forgotAgain.status, 1, "nothing left to forget")
        let fresh = try guts("client", ["dial", address])
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertTrue(knownPeers("client").hasPrefix("\(address) \(bID) "), knownPeers("client"))
        stop(b)
    }

    func testStrictAndOffModes() throws {
        _ = try h.keygen("client")
        let aID = try h.keygen("a")
        let other = try h.keygen("other")
        let (a, aLine) = try h.listen("a")
        let address = split(aLine).address

        // strict: an unknown address without a peer ID is refused, and nothing is recorded.
        let strict = try guts("client", ["dial", "--known-peers", "strict", address])
        XCTAssertEqual(strict.status, 5, strict.stderr)
        XCTAssertTrue(strict.stderr.contains("not in"), strict.stderr)
        XCTAssertEqual(knownPeers("client"), "")
        // With the peer ID it connects and is recorded; then the bare address is known.
        let named = try guts("client", ["dial", "--known-peers", "strict", aLine])
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertTrue(knownPeers("client").hasPrefix("\(address) \(aID)"))
        let known = try guts("client", ["ping", "-c", "1", "--known-peers", "strict", address])
        XCTAssertEqual(known.status, 0, known.stderr)
        // The config key sets the default; the option overrides it.
        try "known-peers = strict\n".write(toFile: h.home("client") + "/config", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: h.home("client") + "/known_peers")
        XCTAssertEqual(try guts("client", ["dial", address]).status, 5)
        XCTAssertEqual(try guts("client", ["dial", "--known-peers", "accept-new", address]).status, 0)

        // off: a wrong entry is neither checked nor corrected, and nothing is recorded.
        let wrong = "# hand-written\n\(address) \(other)\n"
        try wrong.write(toFile: h.home("client") + "/known_peers", atomically: true, encoding: .utf8)
        XCTAssertEqual(try guts("client", ["dial", "--known-peers", "accept-new", address]).status, 5)
        let off = try guts("client", ["dial", "--known-peers", "off", address])
        XCTAssertEqual(off.status, 0, off.stderr)
        XCTAssertFalse(off.stdout.contains("verified"), off.stdout)
        try "known-peers = off\n".write(toFile: h.home("client") + "/config", atomically: true, encoding: .utf8)
        XCTAssertEqual(try guts("client", ["dial", address]).status, 0)
        XCTAssertEqual(knownPeers("client"), wrong)

        // A broken file is an error naming its line, not ignored.
        try FileManager.default.removeItem(atPath: h.home("client") + "/config")
        try "\(address) \(aID)\nnonsense\n".write(toFile: h.home("client") + "/known_peers", atomically: true, encoding: .utf8)
        let broken = try guts("client", ["dial", address])
        XCTAssertEqual(broken.status, 3, broken.stderr)
        XCTAssertTrue(broken.stderr.contains("known_peers:2:"), broken.stderr)
        stop(a)
    }

    func testAliasesAndPrecedence() throws {
        let fixture = try SyncFixture(h)
        try fixture.commit("one", files: ["a": "1\n"])
        try fixture.push()
        try fixture.startServer()
        let serverAddress = split(fixture.peer).address
        let otherID = try h.keygen("other")
        let config = """
        alias.alice = \(fixture.peer)
        alias.bare = \(serverAddress)
        alias.liar = \(otherID)@\(serverAddress)
        """
        try config.write(toFile: fixture.clientHome + "/config", atomically: true, encoding: .utf8)

        // An alias works wherever a peer is accepted.
        let dial = try guts("client", ["dial", "alice"])
        XCTAssertEqual(dial.status, 0, dial.stderr)
        XCTAssertTrue(dial.stdout.contains("\(fixture.serverID) (verified)"), dial.stdout)
        XCTAssertEqual(try guts("client", ["ping", "-c", "1", "alice"]).status, 0)
        let sync = try fixture.sync(peers: ["alice"])
        XCTAssertEqual(sync.status, 0, sync.stderr)
        try fixture.assertMirrorsUpstream()
        // The alias's peer ID was recorded for its address.
        XCTAssertTrue(knownPeers("client").hasPrefix("\(serverAddress) \(fixture.serverID)"), knownPeers("client"))
        // An alias without a peer ID gets it from known_peers.
        let bare = try guts("client", ["dial", "bare"])
        XCTAssertEqual(bare.status, 0, bare.stderr)
        XCTAssertTrue(bare.stdout.contains("(verified: known_peers)"), bare.stdout)

        // Precedence: the alias's peer ID beats known_peers (here it is wrong, so refused)...
        let liar = try guts("client", ["dial", "liar"])
        XCTAssertEqual(liar.status, 5, liar.stderr)
        XCTAssertTrue(liar.stderr.contains("expected \(otherID)"), liar.stderr)
        // ... and a peer ID on the command line beats the alias.
        let overridden = try guts("client", ["dial", "\(fixture.serverID)@liar"])
        XCTAssertEqual(overridden.status, 0, overridden.stderr)
        // A command-line peer ID beats known_peers too: with a wrong entry, the named peer
        // is still reached; the entry is left as it is, and the user hears of it.
        let wrong = "\(serverAddress) \(otherID)\n"
        try wrong.write(toFile: fixture.clientHome + "/known_peers", atomically: true, encoding: .utf8)
        XCTAssertEqual(try guts("client", ["dial", serverAddress]).status, 5)
        let explicit = try guts("client", ["dial", fixture.peer])
        XCTAssertEqual(explicit.status, 0, explicit.stderr)
        XCTAssertTrue(explicit.stderr.contains("records \(otherID)"), explicit.stderr)
        XCTAssertEqual(knownPeers("client"), wrong)
        // Forgetting by alias removes its address's entry.
        XCTAssertEqual(try guts("client", ["peers", "forget", "bare"]).status, 0)
        XCTAssertEqual(knownPeers("client"), "")
        fixture.stopServer()
    }

    func testBootstrapRecordsTheFirstIdentityAndRefusesAnother() throws {
        _ = try h.keygen("node")
        let aID = try h.keygen("a")
        let bID = try h.keygen("b")
        let (a, aLine) = try h.listen("a")
        let address = split(aLine).address
        let (node, _) = try h.listen("node", ["--bootstrap", address])
        node.waitFor("the bootstrap peer to be recorded", timeout: 15) { _, err in err.contains("learned \(aID) at \(address)") }
        XCTAssertTrue(knownPeers("node").hasPrefix("\(address) \(aID) "), knownPeers("node"))
        // Another identity at the address: the node's redials are refused.
        stop(a)
        let (b, _) = try listen("b", at: address)
        node.waitFor("the changed identity to be refused", timeout: 20) { _, err in
            err.contains("identity has changed") && err.contains("presented \(bID)") && err.contains("peers forget \(address)")
        }
        XCTAssertFalse(node.stderr.contains("peer connected: \(bID)"), node.stderr)
        stop(node)
        // A restarted node reads the entry: the bootstrap is pinned from the start.
        let (again, _) = try h.listen("node", ["--bootstrap", address])
        again.waitFor("the changed identity to be refused after a restart", timeout: 20) { _, err in
            err.contains("identity has changed") && err.contains("presented \(bID)")
        }
        stop(again)
        stop(b)
        XCTAssertTrue(knownPeers("node").hasPrefix("\(address) \(aID) "), knownPeers("node"))
    }

    func testConcurrentFirstUsesLoseNoEntry() throws {
        _ = try h.keygen("client")
        var nodes: [(Harness.Running, String)] = []
        for i in 0..<4 {
            _ = try h.keygen("n\(i)")
            nodes.append(try h.listen("n\(i)"))
        }
        // Every dial records its node at once: they take turns on the file's lock.
        let dials = try nodes.map { try h.start(["--home", h.home("client"), "dial", split($0.1).address]) }
        for d in dials { XCTAssertEqual(d.wait(timeout: 30), 0, d.stderr) }
        let lines = Set(knownPeers("client").split(separator: "\n").map { $0.split(separator: " ").prefix(2).joined(separator: "@") })
        XCTAssertEqual(lines, Set(nodes.map { line in "\(split(line.1).address)@\(split(line.1).id)" }))
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.home("client") + "/known_peers.lock"))
        for n in nodes { stop(n.0) }
    }
}
