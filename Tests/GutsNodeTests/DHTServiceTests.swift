import GutsControl
import GutsCrypto
import GutsDHT
import GutsIdentity
import GutsNode
import GutsTrust
import XCTest

/// The pure parts of the DHT's node shell: keys as text, and lookup results for the
/// control socket and `guts find`.
final class DHTServiceTests: XCTestCase {
    func key(_ n: UInt8) throws -> Ed25519KeyPair { try Ed25519KeyPair(seed: [UInt8](repeating: n, count: 32)) }

    func testKeysAreReadAsPeerOrRepositoryIDs() throws {
        let k = try key(1)
        let peer = try PeerID(publicKey: k.publicKey)
        XCTAssertEqual(DHTService.query(peer.description), .peer(NodeID(publicKey: k.publicKey)))
        let repo = try XCTUnwrap(RepositoryID(bytes: [UInt8](repeating: 9, count: 32)))
        XCTAssertEqual(DHTService.query(repo.description), .providers(try XCTUnwrap(NodeID(bytes: repo.bytes))))
        for bad in ["", "demo/app", "gt", String(peer.description.dropLast()) + "a", "gr" + String(repeating: "a", count: 56)] {
            XCTAssertNil(DHTService.query(bad), bad)
        }
    }

    func testResultsMergeLocalProvidersOncePerPublisher() throws {
        let repo = NodeID(publicKey: Array("repo".utf8))
        let a = try key(2), b = try key(3)
        let address = try XCTUnwrap(DHTAddress("127.0.0.1:9000"))
        let other = try XCTUnwrap(DHTAddress("[::1]:9001"))
        let ra = ProviderRecord.signed(repository: repo, addresses: [address], expires: 2_000_000_000, key: a)
        let rb = ProviderRecord.signed(repository: repo, addresses: [other], expires: 2_000_000_100, key: b)
        let lookup = LookupResult(kind: .providers(repo), closest: [], providers: [ra], peerRecord: nil, found: true,
                                  hops: 2, messages: 5, duration: 0.5)
        let r = DHTService.findResult(lookup, key: "gr-key", local: [ra, rb])
        XCTAssertEqual(r.kind, "repository")
        XCTAssertTrue(r.found)
        XCTAssertEqual(r.providers.map(\.peerID), [try PeerID(publicKey: a.publicKey).description, try PeerID(publicKey: b.publicKey).description])
        XCTAssertEqual(r.providers.map(\.addresses), [["127.0.0.1:9000"], ["[::1]:9001"]])
        XCTAssertEqual(r.providers.map(\.expires), [2_000_000_000, 2_000_000_100])
        XCTAssertEqual(r.hops, 2)
        XCTAssertEqual(r.messages, 5)
        // Found only through this node's own store still counts as found.
        let empty = LookupResult(kind: .providers(repo), closest: [], providers: [], peerRecord: nil, found: false,
                                 hops: 1, messages: 3, duration: 0.1)
        XCTAssertTrue(DHTService.findResult(empty, key: "k", local: [rb]).found)
        XCTAssertFalse(DHTService.findResult(empty, key: "k", local: []).found)
    }

    func testPeerResultsCarryTheRecordsAddresses() throws {
        let a = try key(4)
        let id = NodeID(publicKey: a.publicKey)
        let record = PeerRecord.signed(sequence: 7, addresses: [try XCTUnwrap(DHTAddress("10.0.0.1:9000"))], expires: 2_000_000_000, key: a)
        let found = LookupResult(kind: .peer(id), closest: [], providers: [], peerRecord: record, found: true, hops: 1, messages: 2, duration: 0.01)
        let r = DHTService.findResult(found, key: "gt-key", local: [])
        XCTAssertEqual(r.kind, "peer")
        XCTAssertEqual(r.addresses, ["10.0.0.1:9000"])
        XCTAssertTrue(r.found)
        XCTAssertTrue(r.providers.isEmpty)
    }

    func testAnnouncersMergeOnceAndEverythingIsOrderedByScore() throws {
        let a = try PeerID(publicKey: try key(5).publicKey), b = try PeerID(publicKey: try key(6).publicKey)
        let c = try PeerID(publicKey: try key(7).publicKey)
        let dht = FindResult(kind: "repository", key: "gr-key", found: true, addresses: [],
                             providers: [FoundProvider(peerID: a.description, addresses: ["127.0.0.1:1"], expires: 10)],
                             hops: 1, messages: 1, seconds: 0.1)
        let seen = [FoundProvider(peerID: a.description, addresses: ["127.0.0.1:9"], expires: 20),
                    FoundProvider(peerID: b.description, addresses: ["127.0.0.1:2"], expires: 30),
                    FoundProvider(peerID: b.description, addresses: ["127.0.0.1:3"], expires: 30),
                    FoundProvider(peerID: c.description, addresses: [], expires: 30)]
        // Equal scores: DHT providers first, then announcers as seen; no repeats, none without address.
        let plain = DHTService.merge(dht, announcers: seen, score: { _ in 0 })
        XCTAssertEqual(plain.providers.map(\.peerID), [a.description, b.description])
        XCTAssertEqual(plain.providers.map(\.addresses), [["127.0.0.1:1"], ["127.0.0.1:2"]])
        // The better-scored announcer first.
        let scored = DHTService.merge(dht, announcers: seen, score: { $0 == b ? 5 : -1 })
        XCTAssertEqual(scored.providers.map(\.peerID), [b.description, a.description])
        // Found through announcements alone.
        let none = FindResult(kind: "repository", key: "k", found: false, addresses: [], providers: [], hops: 1, messages: 3, seconds: 0)
        XCTAssertTrue(DHTService.merge(none, announcers: seen, score: { _ in 0 }).found)
        XCTAssertFalse(DHTService.merge(none, announcers: [], score: { _ in 0 }).found)
    }
}
