import GutsAddress
import GutsCrypto
import GutsIdentity
import GutsNetSim
import GutsPolicy
@testable import GutsQUIC
import GutsSync
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XCTest

final class QUICLinkTests: XCTestCase {
    var group: MultiThreadedEventLoopGroup!

    override func setUp() { group = MultiThreadedEventLoopGroup(numberOfThreads: 2) }
    override func tearDown() { try? group.syncShutdownGracefully() }

    func session(_ identity: Ed25519KeyPair = .generate(), network: String = "test") -> SessionConfig {
        SessionConfig(identity: identity, noiseStatic: X25519KeyPair.generate(), networkID: network, handshakeTimeout: 5,
                      protocols: MessageRegistry([SyncProtocol()]))
    }

    func startListener(_ config: SessionConfig, onLink: @escaping @Sendable (QUICLink) -> Void = { _ in }) throws -> (QUICListener, Int) {
        let listener = QUICListener(group: group, config: config, options: .init(maxConnections: 8), onConnection: onLink)
        let address = try listener.bind(host: "127.0.0.1", port: 0)
        return (listener, address.port ?? 0)
    }

    func testDialPingAndRequestStreams() throws {
        let serverIdentity = Ed25519KeyPair.generate()
        let serverID = try PeerID(publicKey: serverIdentity.publicKey)
        let (listener, port) = try startListener(session(serverIdentity)) { link in
            // Answers each GetObjects with three chunks on the request's stream.
            link.setMessageHandler { link, message in
                guard case let .app(m) = message, let sync = m as? SyncMessage, case let .getObjects(g) = sync else { return false }
                for i in 0..<3 {
                    link.send(.app(SyncMessage.objects(Objects(requestID: g.requestID, final: i == 2, data: [UInt8](repeating: UInt8(i), count: 100_000)))))
                }
                return true
            }
        }
        defer { listener.shutdown() }
        let endpoint = try Endpoint.parse("\(serverID)@quic/127.0.0.1:\(port)")
        XCTAssertEqual(endpoint.transport, .quic)
        let link = try QUICDialer.dial(endpoint, config: session(), group: group, connectTimeout: 5).wait()
        XCTAssertEqual(link.peer?.peerID, serverID)
        XCTAssertNotNil(try link.measureRoundTrip(timeout: 5).wait())
        link.beginRequests()
        for id in UInt32(1)...UInt32(4) {
            try link.send(.app(SyncMessage.getObjects(GetObjects(requestID: id, repository: "r", wants: [], haves: [])))).wait()
        }
        var got: [UInt32: Int] = [:]
        var finals = 0
        while finals < 4 {
            let m = try link.nextMessage(timeout: 5).wait()
            guard case let .app(a) = m, let sync = a as? SyncMessage, case let .objects(o) = sync else { return XCTFail("\(m)") }
            got[o.requestID, default: 0] += o.data.count
            if o.final { finals += 1 }
        }
        link.endRequests()
        XCTAssertEqual(got, [1: 300_000, 2: 300_000, 3: 300_000, 4: 300_000])
        link.close(.shutdown, "done")
        let reason = try link.closeFuture.wait()
        guard case .localGoodbye = reason else { return XCTFail("\(reason)") }
    }

    func testPinnedMismatchAndWrongNetworkRefused() throws {
        let (listener, port) = try startListener(session(network: "a"))
        defer { listener.shutdown() }
        let other = try PeerID(publicKey: Ed25519KeyPair.generate().publicKey)
        XCTAssertThrowsError(try QUICDialer.dial(try Endpoint.parse("\(other)@quic/127.0.0.1:\(port)"), config: session(network: "a"),
                                                 group: group, connectTimeout: 5).wait()) { error in
            guard case let .closed(.identityMismatch(expected, _))? = error as? TransportError else { return XCTFail("\(error)") }
            XCTAssertEqual(expected, other)
        }
        XCTAssertThrowsError(try QUICDialer.dial(try Endpoint.parse("quic/127.0.0.1:\(port)"), config: session(network: "b"),
                                                 group: group, connectTimeout: 5).wait()) { error in
            guard case .closed(.handshakeFailed)? = error as? TransportError else { return XCTFail("\(error)") }
        }
    }

    func testNothingListeningFailsFast() throws {
        // A bound-then-closed UDP port: ICMP port unreachable ends the dial at once.
        let probe = try DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = probe.localAddress?.port ?? 1
        try probe.close().wait()
        let started = Instant.now()
        XCTAssertThrowsError(try QUICDialer.dial(try Endpoint.parse("quic/127.0.0.1:\(port)"), config: session(), group: group, connectTimeout: 5).wait())
        XCTAssertLessThan(Instant.now().seconds(since: started), 2)
    }

    func testRaceFallsBackToTCP() throws {
        // Only TCP listens: auto tries QUIC, is refused, and TCP wins.
        let config = session()
        let tcp = Listener(group: group, config: config, options: .init(maxConnections: 4)) { _ in }
        let address = try tcp.bind(host: "127.0.0.1", port: 0)
        defer { tcp.shutdown() }
        let link = try LinkDialer.dial(try Endpoint.parse("127.0.0.1:\(address.port ?? 0)"), choice: .auto, config: session(),
                                       group: group, connectTimeout: 5).wait()
        XCTAssertTrue(link is PeerConnection)
        link.close(.shutdown, "done")
        _ = try link.closeFuture.wait()
    }

    func testRacePrefersQUIC() throws {
        let (listener, port) = try startListener(session())
        defer { listener.shutdown() }
        let link = try LinkDialer.dial(try Endpoint.parse("127.0.0.1:\(port)"), choice: .auto, config: session(),
                                       group: group, connectTimeout: 5).wait()
        XCTAssertTrue(link is QUICLink)
        link.close(.shutdown, "done")
        _ = try link.closeFuture.wait()
    }

    /// Waits (bounded) for `condition`.
    func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Instant.now().adding(seconds: seconds)
        while Instant.now() < deadline {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    /// A move into an address group at its cap of validated handshakes in progress is
    /// refused as a new connection from there would be: too-many-connections.
    func testMigrationIntoAFullAddressGroupIsRefused() throws {
        let serverIdentity = Ed25519KeyPair.generate()
        let serverID = try PeerID(publicKey: serverIdentity.publicKey)
        let listener = QUICListener(group: group, config: session(serverIdentity), options: .init(maxConnections: 8)) { _ in }
        let port = try listener.bind(host: "127.0.0.1", port: 0).port ?? 0
        defer { listener.shutdown() }
        let full = try XCTUnwrap(IPAddress("127.0.0.4")).group
        try listener.holdValidatedHandshakes(full, Listener.Options(maxConnections: 8).admission.maxPendingPerGroup)
        let relay = try XCTUnwrap(UDPRelay.start(targetPort: port, options: UDPRelay.Options(), seed: 2))
        defer { relay.stop() }
        let link = try QUICDialer.dial(try Endpoint.parse("\(serverID)@quic/127.0.0.1:\(relay.port)"), config: session(), group: group,
                                       connectTimeout: 5).wait()
        XCTAssertNotNil(try link.measureRoundTrip(timeout: 5).wait())
        XCTAssertTrue(relay.rebind(to: "127.0.0.4"))
        _ = try? link.measureRoundTrip(timeout: 2).wait()
        XCTAssertTrue(eventually { link.isClosed })
        guard case let .remoteGoodbye(goodbye)? = try? link.closeFuture.wait() else {
            return XCTFail("not closed by the listener: \(String(describing: try? link.closeFuture.wait()))")
        }
        XCTAssertEqual(goodbye.code, ReasonCode.tooManyConnections)
    }

    /// A client whose packets start coming from another address (the relay moves its
    /// socket, as a NAT rebinding would): once ngtcp2 validated the new path, the server's
    /// link reports the new address; a move to a banned address is refused as a new
    /// connection from there would be, with CONNECTION_CLOSE identity-rejected.
    func testMigrationIsFollowedAndABannedNewAddressIsRefused() throws {
        let serverIdentity = Ed25519KeyPair.generate()
        let serverID = try PeerID(publicKey: serverIdentity.publicKey)
        var hooks = Listener.Hooks()
        let banned = try XCTUnwrap(IPAddress("127.0.0.3"))
        hooks.isBanned = { $0 == banned }
        let refusals = NIOLockedValueBox<[String]>([])
        hooks.refused = { address, why in refusals.withLockedValue { $0.append("\(address): \(why)") } }
        let links = NIOLockedValueBox<[QUICLink]>([])
        let listener = QUICListener(group: group, config: session(serverIdentity), options: .init(maxConnections: 8), hooks: hooks) { link in
            links.withLockedValue { $0.append(link) }
        }
        let port = try listener.bind(host: "127.0.0.1", port: 0).port ?? 0
        defer { listener.shutdown() }
        let relay = try XCTUnwrap(UDPRelay.start(targetPort: port, options: UDPRelay.Options(), seed: 1))
        defer { relay.stop() }
        let link = try QUICDialer.dial(try Endpoint.parse("\(serverID)@quic/127.0.0.1:\(relay.port)"), config: session(), group: group,
                                       connectTimeout: 5).wait()
        XCTAssertNotNil(try link.measureRoundTrip(timeout: 5).wait())
        let served = try XCTUnwrap(links.withLockedValue { $0.first })
        XCTAssertTrue(served.remoteAddress.hasPrefix("127.0.0.1:"), served.remoteAddress)

        // A move to an address that is not banned: followed, and the session goes on.
        XCTAssertTrue(relay.rebind(to: "127.0.0.2"))
        XCTAssertNotNil(try link.measureRoundTrip(timeout: 5).wait())
        XCTAssertTrue(eventually { served.remoteAddress.hasPrefix("127.0.0.2:") }, served.remoteAddress)
        XCTAssertFalse(link.isClosed)

        // A move to a banned address: the connection is closed with the ban's reason.
        XCTAssertTrue(relay.rebind(to: "127.0.0.3"))
        _ = try? link.measureRoundTrip(timeout: 2).wait()
        XCTAssertTrue(eventually { link.isClosed })
        XCTAssertEqual(try link.closeFuture.wait(),
                       .remoteGoodbye(Goodbye(code: .identityRejected, reason: "this address is banned on this node")))
        XCTAssertTrue(refusals.withLockedValue { $0 }.contains { $0.hasPrefix("127.0.0.3:") && $0.contains("migrated") },
                      "\(refusals.withLockedValue { $0 })")
    }
}
