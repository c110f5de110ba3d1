import GutsCrypto
import GutsIdentity
import GutsSupport
@testable import GutsWire

/// Deterministic PRNG (SplitMix64) so fuzz cases are reproducible from the seed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
}

func oid(_ fill: UInt8, _ length: Int = 20) -> WireOID {
    guard let id = WireOID([UInt8](repeating: fill, count: length)) else { preconditionFailure("test oid") }
    return id
}

/// One sample of every message kind, with non-trivial field values.
let sampleMessages: [Message] = [
    .hello(Hello(minVersion: 1, maxVersion: 3, capabilities: ["ping", "refs"], agent: "guts/test ü")),
    .helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "other-agent")),
    .ping(nonce: 0x0102_0304_0506_0708),
    .pong(nonce: .max),
    .goodbye(Goodbye(code: .tooManyConnections, reason: "full")),
    .error(ErrorReply(requestID: 7, code: .notFound, message: "no such repository")),
    .getRefs(GetRefs(requestID: 1, repository: "alice/project", prefix: "refs/heads/")),
    .refs(Refs(requestID: 1, head: "refs/heads/main", refs: [
        RefEntry(name: "refs/heads/main", id: oid(0xaa)),
        RefEntry(name: "refs/tags/v1", id: oid(0xbb, 32)),
    ])),
    .getObjects(GetObjects(requestID: 2, repository: "alice/project", wants: [oid(1), oid(2)], haves: [oid(3)])),
    .objects(Objects(requestID: 2, final: true, data: Array(0..<255))),
    .newCommit(NewCommit(repository: "alice/project", ref: "refs/heads/main", old: nil, new: oid(9))),
    .newCommit(NewCommit(repository: "alice/project", ref: "refs/heads/main", old: oid(8), new: oid(9))),
    .newRepository(NewRepository(repository: "bob/tools")),
    .gossip(Gossip(topic: "guts/commits", origin: [UInt8](repeating: 4, count: 32), sequence: 5, timestamp: 1_700_000_000_000,
                   data: Array("hello".utf8), signature: [UInt8](repeating: 6, count: 64))),
    .subscribe(Subscribe(subscribe: true, topics: ["guts/commits", "chat"])),
    .iHave(IHave(topic: "chat", ids: [[UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)])),
    .iWant(IWant(ids: [[UInt8](repeating: 3, count: 32)])),
    .prune(Prune(topic: "chat")),
]

/// Two sessions wired back to back in memory, with a virtual clock.
struct Pair {
    var a: Session  // initiator
    var b: Session  // responder
    var now: Instant
    var aEvents: [SessionEvent] = []
    var bEvents: [SessionEvent] = []
    let aIdentity: Ed25519KeyPair
    let bIdentity: Ed25519KeyPair

    init(expected: PeerID? = nil, aNetwork: String = "", bNetwork: String = "", refusal: Goodbye? = nil,
         aIdentity: Ed25519KeyPair = .generate(), bIdentity: Ed25519KeyPair = .generate()) {
        now = Instant(nanoseconds: 1_000_000_000)
        self.aIdentity = aIdentity
        self.bIdentity = bIdentity
        var ac = SessionConfig(identity: aIdentity, noiseStatic: .generate(), networkID: aNetwork, agent: "a")
        ac.expectedPeer = expected
        var bc = SessionConfig(identity: bIdentity, noiseStatic: .generate(), networkID: bNetwork, agent: "b")
        bc.refusal = refusal
        a = Session(role: .initiator, config: ac, now: now)
        b = Session(role: .responder, config: bc, now: now)
    }

    /// Runs the handshake: delivers all bytes both ways until quiet.
    mutating func connect() {
        pump(a.start(now: now), fromA: true)
    }

    /// Delivers `.send` events to the other side, recursively, recording all other events.
    mutating func pump(_ events: [SessionEvent], fromA: Bool) {
        var queue: [(SessionEvent, Bool)] = events.map { ($0, fromA) }
        while !queue.isEmpty {
            let (event, origin) = queue.removeFirst()
            if origin { aEvents.append(event) } else { bEvents.append(event) }
            if case let .send(bytes) = event {
                let out = origin ? b.receive(bytes, now: now) : a.receive(bytes, now: now)
                queue += out.map { ($0, !origin) }
            }
        }
    }

    var aClose: SessionClose? { aEvents.compactMap { if case let .closed(c) = $0 { return c } else { return nil } }.first }
    var bClose: SessionClose? { bEvents.compactMap { if case let .closed(c) = $0 { return c } else { return nil } }.first }
    var aMessages: [Message] { aEvents.compactMap { if case let .message(m) = $0 { return m } else { return nil } } }
    var bMessages: [Message] { bEvents.compactMap { if case let .message(m) = $0 { return m } else { return nil } } }
}
