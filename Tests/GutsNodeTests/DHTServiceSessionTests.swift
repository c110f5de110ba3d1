import GutsAddress
import GutsCrypto
import GutsDHT
import GutsIdentity
import GutsNode
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

/// A link that records what is sent on it (no socket).
final class RecordingLink: PeerLink {
    let remoteAddress: String
    let inbound: Bool
    let peer: PeerInfo?
    let loop: EventLoop
    private let state = NIOLockedValueBox<(sent: [Message], closed: Bool)>(([], false))
    private let closing: EventLoopPromise<SessionClose>
    private let established: EventLoopPromise<PeerInfo>

    init(key: Ed25519KeyPair, address: String, inbound: Bool, capabilities: [String], loop: EventLoop) throws {
        remoteAddress = address
        self.inbound = inbound
        let info = PeerInfo(peerID: try PeerID(publicKey: key.publicKey), version: 1, capabilities: capabilities, agent: "test", handshakeSeconds: 0)
        peer = info
        self.loop = loop
        closing = loop.makePromise()
        established = loop.makePromise()
        established.succeed(info)
    }

    var sent: [Message] { state.withLockedValue { $0.sent } }
    var dhtSent: [DHTMessage] { sent.compactMap(\.dhtMessage) }
    var establishedFuture: EventLoopFuture<PeerInfo> { established.futureResult }
    var closeFuture: EventLoopFuture<SessionClose> { closing.futureResult }
    var isClosed: Bool { state.withLockedValue { $0.closed } }
    @discardableResult func send(_ message: Message) -> EventLoopFuture<Void> {
        state.withLockedValue { $0.sent.append(message) }
        return loop.makeSucceededVoidFuture()
    }
    func close(_ code: ReasonCode, _ reason: String) {
        let first = state.withLockedValue { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        if first { closing.succeed(.localGoodbye(Goodbye(code: code, reason: reason))) }
    }
    func abort() { close(.shutdown, "aborted") }
    func pendingOutboundBytes() -> EventLoopFuture<Int> { loop.makeSucceededFuture(0) }
    var isWritable: Bool { true }
    func setMessageHandler(_ handler: @escaping @Sendable (any PeerLink, Message) -> Bool) {}
    func nextMessage(timeout: Double) -> EventLoopFuture<Message> { loop.makeFailedFuture(SessionClose.connectionLost("test")) }
    func beginRequests() {}
    func endRequests() {}
    var expectsAnswers: Bool { false }
    var openedAt: Double { 0 }
    var bytesReceived: UInt64 { 0 }
    var bytesSent: UInt64 { 0 }
    var lastRoundTrip: Double? { nil }
    func measureRoundTrip(timeout: Double) -> EventLoopFuture<Double?> { loop.makeSucceededFuture(nil) }
    var discardedAnswers: Int { 0 }
    var transportName: String { "tcp" }
}

/// The DHT service's session handling with recorded links: observed addresses are told and
/// learned, a client that learned an address is dialed back on its PutPeer, and traffic
/// moves to another session with a peer when one closes.
final class DHTServiceSessionTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!
    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 1) }
    override func tearDown() { try? group.syncShutdownGracefully() }

    func key(_ n: UInt8) throws -> Ed25519KeyPair { try Ed25519KeyPair(seed: [UInt8](repeating: n, count: 32)) }

    /// A service whose dials are recorded and fail.
    func service(_ identity: Ed25519KeyPair, dials: NIOLockedValueBox<[(Endpoint, Bool)]>) -> DHTService {
        let loop = group.next()
        let hooks = DHTService.Hooks(dial: { endpoint, keep in
            dials.withLockedValue { $0.append((endpoint, keep)) }
            return loop.makeFailedFuture(SessionClose.connectionLost("test"))
        }, penalize: { _, _, _ in }, save: nil, log: NodeLog(info: { _ in }, debug: { _ in }))
        return DHTService(loop: loop, identity: identity, seed: 1, hooks: hooks)
    }

    /// Runs what was queued on the service's loop.
    func settle(_ s: DHTService) throws { try s.loop.submit {}.wait() }

    func testObservedAddressesAreToldAndLearnedThenPutPeerIsSent() throws {
        let dials = NIOLockedValueBox<[(Endpoint, Bool)]>([])
        let s = service(try key(1), dials: dials)
        s.start(addresses: [], learnPort: 7000, saved: [])
        var links: [RecordingLink] = []
        for n in 2...4 {
            let link = try RecordingLink(key: try key(UInt8(n)), address: "127.0.0.1:\(40000 + n)", inbound: true,
                                         capabilities: ["dht", "gossip"], loop: s.loop)
            s.connected(link)
            try settle(s)
            // Each DHT peer is told the address its session comes from.
            XCTAssertTrue(link.dhtSent.contains(.observedAddress(ObservedAddress(address: try XCTUnwrap(DHTAddress("127.0.0.1:\(40000 + n)"))))),
                          "\(link.dhtSent)")
            links.append(link)
        }
        // A client without `dht` is told nothing, and its report does not count.
        let client = try RecordingLink(key: try key(9), address: "127.0.0.1:41000", inbound: true, capabilities: ["ping"], loop: s.loop)
        s.connected(client)
        let reported = Message.dht(.observedAddress(ObservedAddress(address: try XCTUnwrap(DHTAddress("127.0.0.1:50000")))))
        XCTAssertTrue(s.handle(reported, from: client))
        try settle(s)
        XCTAssertTrue(client.dhtSent.isEmpty)
        // Three DHT peers report: the address is adopted with the listening port.
        for (i, link) in links.enumerated() {
            XCTAssertTrue(s.handle(reported, from: link))
            try settle(s)
            let status = try s.status().wait()
            XCTAssertEqual(status.addresses.map(\.description), i < 2 ? [] : ["127.0.0.1:7000"])
        }
        // Every DHT session hears of the new peer record at once.
        for link in links {
            let puts = link.dhtSent.compactMap { m -> PeerRecord? in if case let .putPeer(p) = m { return p.record } else { return nil } }
            XCTAssertEqual(puts.last?.addresses.map(\.description), ["127.0.0.1:7000"], "\(link.dhtSent)")
        }
        s.stop().whenComplete { _ in }
        for l in links + [client] { l.close(.shutdown, "done") }
    }

    func testAClientsPutPeerTriggersOneDialBack() throws {
        let dials = NIOLockedValueBox<[(Endpoint, Bool)]>([])
        let s = service(try key(1), dials: dials)
        s.start(addresses: [try XCTUnwrap(DHTAddress("127.0.0.1:7000"))], saved: [])
        let peerKey = try key(2)
        let link = try RecordingLink(key: peerKey, address: "127.0.0.1:45000", inbound: true, capabilities: ["dht", "gossip"], loop: s.loop)
        s.connected(link)
        try settle(s)
        // Its first probe found no record (a client); then it learned an address.
        let record = PeerRecord.signed(sequence: 1, addresses: [try XCTUnwrap(DHTAddress("127.0.0.1:9100"))],
                                       expires: UInt64(unixTime()) + 3600, key: peerKey)
        for _ in 0..<3 {
            XCTAssertTrue(s.handle(.dht(.putPeer(PutPeer(record: record))), from: link))
            try settle(s)
        }
        let backs = dials.withLockedValue { $0 }.filter { !$0.1 }
        XCTAssertEqual(backs.map { "\($0.0.host):\($0.0.port)" }, ["127.0.0.1:9100"], "once per session, at the record's address")
        XCTAssertEqual(backs.first?.0.peer, try PeerID(publicKey: peerKey.publicKey))
        s.stop().whenComplete { _ in }
        link.close(.shutdown, "done")
    }

    func testTrafficMovesToTheRemainingSession() throws {
        let dials = NIOLockedValueBox<[(Endpoint, Bool)]>([])
        let s = service(try key(1), dials: dials)
        s.start(addresses: [try XCTUnwrap(DHTAddress("127.0.0.1:7000"))], saved: [])
        let peerKey = try key(2)
        let outbound = try RecordingLink(key: peerKey, address: "127.0.0.1:9200", inbound: false, capabilities: ["dht", "gossip"], loop: s.loop)
        let inbound = try RecordingLink(key: peerKey, address: "127.0.0.1:46000", inbound: true, capabilities: ["dht", "gossip"], loop: s.loop)
        // The peer's dial-back of this node (no `dht`) never displaces a DHT session.
        let probe = try RecordingLink(key: peerKey, address: "127.0.0.1:46001", inbound: true, capabilities: ["ping"], loop: s.loop)
        s.connected(outbound)
        s.connected(inbound)
        s.connected(probe)
        try settle(s)
        // The simultaneous-dial rule drops the later session: lookups go out on the other.
        inbound.close(.shutdown, "duplicate")
        s.disconnected(inbound)
        try settle(s)
        let before = outbound.dhtSent.count
        let done = NIOLockedValueBox(false)
        s.lookup(.node(NodeID(publicKey: [7]))) { _ in done.withLockedValue { $0 = true } }
        try settle(s)
        XCTAssertGreaterThan(outbound.dhtSent.count, before, "\(outbound.dhtSent)")
        XCTAssertTrue(probe.dhtSent.isEmpty)
        XCTAssertTrue(dials.withLockedValue { $0 }.isEmpty, "no dial: a session is open")
        s.stop().whenComplete { _ in }
        for l in [outbound, probe] { l.close(.shutdown, "done") }
    }

    /// An inbound session that did not announce `dht` (a command run with a peer's key) is
    /// served, its requests answered on it, but never tracked: the service does not hop to
    /// its loop for it, and never sends its own requests on it, dialing the peer instead.
    func testAnInboundSessionWithoutDHTIsAnsweredButNotUsed() throws {
        let dials = NIOLockedValueBox<[(Endpoint, Bool)]>([])
        let s = service(try key(1), dials: dials)
        s.start(addresses: [try XCTUnwrap(DHTAddress("127.0.0.1:7000"))], saved: [])
        let peerKey = try key(2)
        // The peer becomes a contact through a session this node dialed, which then ends.
        let outbound = try RecordingLink(key: peerKey, address: "127.0.0.1:9300", inbound: false, capabilities: ["dht", "gossip"], loop: s.loop)
        s.connected(outbound)
        try settle(s)
        XCTAssertEqual(try s.status().wait().contacts, 1)
        outbound.close(.shutdown, "done")
        s.disconnected(outbound)
        // A command run with the peer's key connects.
        let client = try RecordingLink(key: peerKey, address: "127.0.0.1:46100", inbound: true, capabilities: ["ping"], loop: s.loop)
        s.connected(client)
        try settle(s)
        XCTAssertTrue(client.dhtSent.isEmpty, "\(client.dhtSent)")
        XCTAssertTrue(s.handle(.dht(.findNode(FindNode(requestID: 5, target: NodeID(publicKey: [7])))), from: client))
        try settle(s)
        XCTAssertEqual(client.dhtSent.count, 1)
        guard case let .nodes(answer)? = client.dhtSent.first else { return XCTFail("\(client.dhtSent)") }
        XCTAssertEqual(answer.requestID, 5)
        // This node's own lookup reaches the contact by dialing it, not over the command's session.
        s.lookup(.node(NodeID(publicKey: [8]))) { _ in }
        try settle(s)
        XCTAssertEqual(client.dhtSent.count, 1, "\(client.dhtSent)")
        XCTAssertEqual(dials.withLockedValue { $0 }.map { "\($0.0.host):\($0.0.port) \($0.1)" }, ["127.0.0.1:9300 true"])
        s.disconnected(client)
        s.stop().whenComplete { _ in }
        client.close(.shutdown, "done")
    }
}
