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

/// One sample of every control message, with non-trivial field values.
let controlSamples: [Message] = [
    .hello(Hello(minVersion: 1, maxVersion: 3, capabilities: ["ping", "refs"], agent: "guts/test ü")),
    .helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "other-agent")),
    .ping(nonce: 0x0102_0304_0506_0708),
    .pong(nonce: .max),
    .goodbye(Goodbye(code: .tooManyConnections, reason: "full")),
    .error(ErrorReply(requestID: 7, code: .notFound, message: "no such repository")),
]

/// A protocol of the tests' own (type 0x70: an opaque blob of up to 1 MiB), so session
/// tests exercise dispatch by type range without depending on a real protocol module.
struct Blob: WireMessage, Equatable {
    var data: [UInt8]
    /// Sent as an answer (type 0x71) rather than unasked (0x70).
    var answer = false
    var typeCode: UInt8 { answer ? 0x71 : 0x70 }
    var typeName: String { answer ? "BlobAnswer" : "Blob" }
    var maxBodySize: Int { BlobProtocol.limit }
    func encodeBody(into w: inout ByteWriter) throws { w.bytes32(data) }
}

struct BlobProtocol: MessageFamily {
    static let limit = 4 + (1 << 20)
    var name: String { "blob" }
    var typeCodes: ClosedRange<UInt8> { 0x70...0x7F }
    func maxBodySize(type: UInt8) -> Int? { type == 0x70 || type == 0x71 ? Self.limit : nil }
    func isAnswer(type: UInt8) -> Bool { type == 0x71 }
    func decode(type: UInt8, body: ArraySlice<UInt8>) throws -> any WireMessage {
        guard type == 0x70 || type == 0x71 else { throw DecodeError.unknownType(type) }
        var r = ByteReader(slice: body)
        let data = try r.bytes32("data", limit: 1 << 20)
        try r.expectEnd()
        return Blob(data: data, answer: type == 0x71)
    }
}

let blobRegistry = MessageRegistry([BlobProtocol()])

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
        var ac = SessionConfig(identity: aIdentity, noiseStatic: .generate(), networkID: aNetwork, agent: "a",
                               protocols: blobRegistry)
        ac.expectedPeer = expected
        var bc = SessionConfig(identity: bIdentity, noiseStatic: .generate(), networkID: bNetwork, agent: "b",
                               protocols: blobRegistry)
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
