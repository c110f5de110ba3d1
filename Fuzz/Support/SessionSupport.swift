// Session helpers shared by the wire and Noise harnesses.
import GutsDHT
import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsNode
import GutsNoise
import GutsSync
import GutsWire

/// Every message family a node decodes, as a node registers them.
let fuzzRegistry = MessageRegistry([SyncProtocol(), AnnouncementProtocol(), GossipProtocol(), DHTProtocol()])

/// Session settings with fixed keys (identity `fill`, Noise static `fill + 0x40`).
func fuzzSessionConfig(_ fill: UInt8, network: String = "", expected: PeerID? = nil) -> SessionConfig {
    SessionConfig(identity: fuzzEd25519(fill), noiseStatic: fuzzX25519(fill &+ 0x40), networkID: network,
                  agent: "fuzz", expectedPeer: expected, protocols: fuzzRegistry)
}

/// Checks what a session reported: nothing after it closed, and the close reported once.
func fuzzCheckEvents(_ events: [SessionEvent], _ session: Session) {
    var closed = false
    for event in events {
        fuzzCheck(!closed, "event \(event) after the session closed")
        switch event {
        case .closed: closed = true
        case let .discarded(_, bytes): fuzzCheck(bytes > Session.unsolicitedAnswerLimit, "discarded only \(bytes) bytes")
        case .send(let bytes): fuzzCheck(!bytes.isEmpty, "empty send")
        default: break
        }
    }
    fuzzCheck(closed == session.isClosed, "closed event \(closed), session closed \(session.isClosed)")
}

/// Delivers `bytes` to `session` in pieces of `step` bytes (all at once when 0), as a
/// socket might split them; returns every event.
func fuzzDeliver(_ bytes: [UInt8], to session: inout Session, step: Int) -> [SessionEvent] {
    var events: [SessionEvent] = []
    var i = 0
    while i < bytes.count {
        let n = step == 0 ? bytes.count - i : min(step, bytes.count - i)
        let out = session.receive(Array(bytes[i..<(i + n)]), now: fuzzNow)
        if session.isClosed && out.isEmpty { break }
        events += out
        i += n
    }
    return events
}

/// Prefixes a Noise message with its 16-bit big-endian length, as on the wire.
func fuzzFrame(_ message: [UInt8]) -> [UInt8] {
    [UInt8((message.count >> 8) & 0xff), UInt8(message.count & 0xff)] + message
}

/// Splits wire bytes into Noise messages; fails the property when they are not whole frames
/// (a session only ever sends whole frames).
func fuzzUnframe(_ bytes: [UInt8]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var i = 0
    while i < bytes.count {
        fuzzCheck(bytes.count - i >= 2, "a session sent half a frame header")
        let n = Int(bytes[i]) << 8 | Int(bytes[i + 1])
        fuzzCheck(bytes.count - i - 2 >= n, "a session sent a truncated frame")
        out.append(Array(bytes[(i + 2)..<(i + 2 + n)]))
        i += 2 + n
    }
    return out
}

/// Encrypts application stream bytes into framed transport messages of at most `chunk`
/// plaintext bytes each, as a peer holding the transport keys would.
func fuzzSeal(_ plain: [UInt8], chunk: Int, with ts: inout TransportState) -> [UInt8] {
    let size = max(1, min(chunk, TransportState.maxPlaintextLength))
    var out: [UInt8] = []
    var i = 0
    while i < plain.count {
        let n = min(size, plain.count - i)
        guard let sealed = try? ts.encrypt(Array(plain[i..<(i + n)])) else { fuzzFail("encrypt") }
        out += fuzzFrame(sealed)
        i += n
    }
    return out
}

/// Encodes and encrypts one message as a peer would.
func fuzzSeal(_ message: Message, with ts: inout TransportState) -> [UInt8] {
    guard let plain = try? MessageCodec.encode(message) else { fuzzFail("encode \(message.typeName)") }
    return fuzzSeal(plain, chunk: TransportState.maxPlaintextLength, with: &ts)
}

/// Decrypts and decodes what a session sent once transport keys exist. Every byte a
/// session sends must be a whole, authentic, well-formed message.
@discardableResult
func fuzzOpen(_ wire: [UInt8], with ts: inout TransportState) -> [Message] {
    var plain: [UInt8] = []
    for frame in fuzzUnframe(wire) {
        guard let p = try? ts.decrypt(frame) else { fuzzFail("a session sent a transport message its peer cannot decrypt") }
        plain += p
    }
    var messages: [Message] = []
    var i = 0
    while i < plain.count {
        fuzzCheck(plain.count - i >= 5, "a session sent half a message header")
        let type = plain[i]
        let n = Int(plain[i + 1]) << 24 | Int(plain[i + 2]) << 16 | Int(plain[i + 3]) << 8 | Int(plain[i + 4])
        fuzzCheck(plain.count - i - 5 >= n, "a session sent a truncated message")
        do {
            messages.append(try MessageCodec.decode(type: type, body: plain[(i + 5)..<(i + 5 + n)], registry: fuzzRegistry))
        } catch {
            fuzzFail("a session sent a malformed message: \(error)")
        }
        i += 5 + n
    }
    return messages
}

/// The bytes of every `.send` event, in order.
func fuzzSent(_ events: [SessionEvent]) -> [UInt8] {
    events.reduce(into: []) { out, e in if case let .send(b) = e { out += b } }
}

/// The peer a session reported as established, if it did.
func fuzzEstablished(_ events: [SessionEvent]) -> PeerInfo? {
    for case let .established(info) in events { return info }
    return nil
}

/// How the session closed, if it did.
func fuzzClose(_ events: [SessionEvent]) -> SessionClose? {
    for case let .closed(c) in events { return c }
    return nil
}

// MARK: - Fixed parties and cached handshake starts

/// The session under test is identity 1; the harness plays identity 2 ("A"); identity 3
/// ("B") is a third party a session may expect instead.
let fuzzOwnID = fuzzPeerID(fuzzEd25519(1))
let fuzzPeerA = fuzzPeerID(fuzzEd25519(2))
let fuzzPeerB = fuzzPeerID(fuzzEd25519(3))

/// The harness's side of a handshake: identity A's Noise static key and a fixed ephemeral
/// key, so everything the harness sends is reproducible.
func fuzzPeerHandshake(_ role: NoiseRole, network: String) -> HandshakeState {
    HandshakeState(role: role, prologue: WireProtocol.prologue(networkID: network),
                   localStatic: fuzzX25519(0x42), localEphemeral: fuzzX25519(0x62))
}

/// A responder session that has answered an honest message 1 (with its proof in message
/// 2), and the harness's initiator state after reading that answer. Computed once per
/// process (the session's ephemeral key is random), then copied for every input: both
/// are values, so each run starts from the same state.
struct FuzzResponderStart: Sendable {
    var session: Session
    var events: [SessionEvent]
    var peer: HandshakeState
    /// False when the harness could not read message 2 (different network IDs).
    var peerReadMessage2: Bool
}

func fuzzMakeResponderStart(network: String) -> FuzzResponderStart {
    var session = Session(role: .responder, config: fuzzSessionConfig(1), now: fuzzNow)
    var events = session.start(now: fuzzNow)
    var peer = fuzzPeerHandshake(.initiator, network: network)
    guard let m1 = try? peer.writeMessage(payload: []) else { fuzzFail("write message 1") }
    events += session.receive(fuzzFrame(m1), now: fuzzNow)
    let frames = fuzzUnframe(fuzzSent(events))
    fuzzCheck(frames.count == 1 && !session.isClosed, "the responder did not answer message 1")
    let hashBefore = peer.handshakeHash
    guard let payload = try? peer.readMessage(frames[0]) else {
        fuzzCheck(!network.isEmpty, "message 2 unreadable with the same network ID")
        return FuzzResponderStart(session: session, events: events, peer: peer, peerReadMessage2: false)
    }
    guard let rs = peer.remoteStaticKey,
          let id = try? IdentityProof.verify(payload, handshakeHash: hashBefore, remoteNoiseStatic: rs) else {
        fuzzFail("the responder's identity proof does not verify")
    }
    fuzzCheck(id == fuzzOwnID, "the responder proved \(id)")
    return FuzzResponderStart(session: session, events: events, peer: peer, peerReadMessage2: true)
}

/// Index 0: same network ID; 1: the harness uses another one.
let fuzzResponderStarts = [fuzzMakeResponderStart(network: ""), fuzzMakeResponderStart(network: "other")]

/// An initiator session that has sent message 1.
struct FuzzInitiatorStart: Sendable {
    var session: Session
    var events: [SessionEvent]
    var message1: [UInt8]
}

func fuzzMakeInitiatorStart(expected: PeerID?) -> FuzzInitiatorStart {
    var session = Session(role: .initiator, config: fuzzSessionConfig(1, expected: expected), now: fuzzNow)
    let events = session.start(now: fuzzNow)
    let frames = fuzzUnframe(fuzzSent(events))
    fuzzCheck(frames.count == 1 && frames[0].count == 32, "message 1 is not one 32-byte ephemeral key")
    return FuzzInitiatorStart(session: session, events: events, message1: frames[0])
}

/// Index 0: no expected peer; 1: expects A (the harness); 2: expects B (someone else).
let fuzzInitiatorStarts = [fuzzMakeInitiatorStart(expected: nil), fuzzMakeInitiatorStart(expected: fuzzPeerA),
                           fuzzMakeInitiatorStart(expected: fuzzPeerB)]

// MARK: - Cached sessions with transport keys

/// A session under test with transport keys, and the harness's transport state that
/// talks to it (identity A, proven).
struct FuzzTransportPair: Sendable {
    var session: Session
    var peer: TransportState
}

/// Completes an honest handshake with the responder; with `hello`, also the Hello
/// exchange (the session is then established).
func fuzzMakeResponderPair(hello: Bool) -> FuzzTransportPair {
    let start = fuzzResponderStarts[0]
    var session = start.session
    var hs = start.peer
    let proof = IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: hs.handshakeHash, noiseStatic: hs.localStaticPublicKey)
    guard let m3 = try? hs.writeMessage(payload: proof), var ts = try? hs.intoTransport() else { fuzzFail("message 3") }
    var events = session.receive(fuzzFrame(m3), now: fuzzNow)
    if hello {
        events += session.receive(fuzzSeal(.hello(Hello(capabilities: ["ping"], agent: "fuzz")), with: &ts), now: fuzzNow)
        fuzzCheck(session.isEstablished, "an honest Hello did not establish the session")
        fuzzCheck(fuzzOpen(fuzzSent(events), with: &ts).first.map { if case .helloAck = $0 { true } else { false } } == true,
                  "the responder did not answer Hello with HelloAck")
    } else {
        fuzzCheck(events.isEmpty && !session.isClosed, "message 3 was not accepted quietly")
    }
    return FuzzTransportPair(session: session, peer: ts)
}

/// Completes an honest handshake with the initiator (reading its message 3 and Hello);
/// with `helloAck`, also answers (the session is then established).
func fuzzMakeInitiatorPair(helloAck: Bool) -> FuzzTransportPair {
    let start = fuzzInitiatorStarts[0]
    var session = start.session
    var hs = fuzzPeerHandshake(.responder, network: "")
    guard (try? hs.readMessage(start.message1)) != nil else { fuzzFail("read message 1") }
    let proof = IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: hs.handshakeHash, noiseStatic: hs.localStaticPublicKey)
    guard let m2 = try? hs.writeMessage(payload: proof) else { fuzzFail("write message 2") }
    let events = session.receive(fuzzFrame(m2), now: fuzzNow)
    let sent = fuzzSent(events)
    let frames = fuzzUnframe(sent)
    fuzzCheck(frames.count >= 2, "the initiator did not send message 3 and Hello")
    guard (try? hs.readMessage(frames[0])) != nil, var ts = try? hs.intoTransport() else { fuzzFail("read message 3") }
    let hello = fuzzOpen(Array(sent.dropFirst(2 + frames[0].count)), with: &ts)
    fuzzCheck(hello.count == 1 && hello.first.map { if case .hello = $0 { true } else { false } } == true,
              "the initiator did not send Hello")
    if helloAck {
        _ = session.receive(fuzzSeal(.helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "fuzz")), with: &ts), now: fuzzNow)
        fuzzCheck(session.isEstablished, "an honest HelloAck did not establish the session")
    }
    return FuzzTransportPair(session: session, peer: ts)
}

/// 0: responder awaiting Hello; 1: responder established; 2: initiator awaiting HelloAck;
/// 3: initiator established.
let fuzzTransportPairs = [fuzzMakeResponderPair(hello: false), fuzzMakeResponderPair(hello: true),
                          fuzzMakeInitiatorPair(helloAck: false), fuzzMakeInitiatorPair(helloAck: true)]
