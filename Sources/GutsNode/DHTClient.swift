import GutsAddress
import GutsCrypto
import GutsDHT
import GutsPolicy
import GutsSupport
import GutsTransport
import GutsWire
import NIOConcurrencyHelpers
import NIOCore

/// A one-shot DHT client for commands run without a node: a `DHTService` that dials the
/// contacts its engine asks for itself. It does not list `dht` in Hello and advertises no
/// address, so nodes answer it but never store it.
public final class DHTClient: Sendable {
    public let service: DHTService
    private let links = NIOLockedValueBox<[any PeerLink]>([])
    private let session: SessionConfig
    private let group: EventLoopGroup
    private let connectTimeout: Double

    /// `session`'s protocols are replaced by the DHT's family; `dht` is removed from its
    /// capabilities.
    public init(session: SessionConfig, group: EventLoopGroup, connectTimeout: Double, log: NodeLog,
                config: DHTConfig = DHTConfig(), seed: UInt64 = Random.uint64()) {
        var s = session
        s.capabilities.removeAll { $0 == DHTProtocol.capability }
        s.protocols = MessageRegistry([DHTProtocol()])
        self.session = s
        self.group = group
        self.connectTimeout = connectTimeout
        let links = self.links
        let box = NIOLockedValueBox<DHTService?>(nil)
        let sessionConfig = s
        let dial: @Sendable (Endpoint, Bool) -> EventLoopFuture<any PeerLink> = { endpoint, keep in
            Dialer.dial(endpoint, config: sessionConfig, group: group, connectTimeout: connectTimeout).map { (c: PeerConnection) -> any PeerLink in
                links.withLockedValue { $0.append(c) }
                if keep, let service = box.withLockedValue({ $0 }) { DHTClient.attach(c, to: service) }
                return c
            }
        }
        let hooks = DHTService.Hooks(dial: dial, penalize: { link, _, reason in log.debug("dht: \(link.remoteAddress): \(reason)") },
                                     save: nil, log: log)
        var limits = DHTService.Limits()
        limits.maxSavedDials = 0
        service = DHTService(loop: group.next(), identity: session.identity, config: config, limits: limits, seed: seed, hooks: hooks)
        box.withLockedValue { $0 = service }
        service.start(addresses: [], saved: [])
    }

    static func attach(_ link: any PeerLink, to service: DHTService) {
        link.setMessageHandler { conn, message in
            if case let .error(e) = message, e.code == .busy { service.busy(from: conn) }
            _ = service.handle(message, from: conn)
            return true
        }
        link.closeFuture.whenComplete { _ in service.disconnected(link) }
        service.connected(link)
    }

    /// Dials the bootstrap endpoints; completes with how many answered.
    public func join(_ endpoints: [Endpoint]) -> EventLoopFuture<Int> {
        let loop = group.next()
        let dials = endpoints.map { e in
            Dialer.dial(e, config: session, group: group, connectTimeout: connectTimeout).map { (c: PeerConnection) -> Bool in
                self.links.withLockedValue { $0.append(c) }
                DHTClient.attach(c, to: self.service)
                return true
            }
        }
        return EventLoopFuture.whenAllComplete(dials, on: loop).flatMap { results in
            // `connected` runs on the service's loop: let it register the sessions first.
            self.service.loop.submit { results.filter { (try? $0.get()) == true }.count }
        }
    }

    /// Runs one lookup; fails after `timeout` seconds.
    public func find(_ query: DHTService.Query, timeout: Double) -> EventLoopFuture<LookupResult> {
        let promise = service.loop.makePromise(of: LookupResult.self)
        let done = NIOLockedValueBox(false)
        let deadline = service.loop.scheduleTask(in: .nanoseconds(Int64(max(0.1, timeout) * 1e9))) {
            guard !done.withLockedValue({ d in defer { d = true }; return d }) else { return }
            promise.fail(ChannelError.connectTimeout(.seconds(Int64(timeout))))
        }
        service.lookup(query) { result in
            deadline.cancel()
            guard !done.withLockedValue({ d in defer { d = true }; return d }) else { return }
            promise.succeed(result)
        }
        return promise.futureResult
    }

    /// Closes every session this client opened.
    public func close() {
        _ = try? service.stop().wait()
        service.waitForDials()
        let all = links.withLockedValue { $0 }
        for l in all { l.close(.shutdown, "lookup done") }
        for l in all { _ = try? l.closeFuture.wait() }
        // The close callbacks hop to the service's loop: let them run before the loops stop.
        _ = try? service.loop.submit {}.wait()
        _ = try? service.loop.submit {}.wait()
    }
}
