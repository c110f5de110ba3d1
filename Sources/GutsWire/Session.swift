import GutsCrypto
import GutsIdentity
import GutsNoise
import GutsSupport

/// Settings of one connection's session.
public struct SessionConfig: Sendable {
    public var identity: Ed25519KeyPair
    /// The node's Noise static key. Its binding to `identity` is proven in the handshake.
    public var noiseStatic: X25519KeyPair
    public var networkID: String
    public var capabilities: [String]
    public var agent: String
    /// Initiator only: refuse any other remote identity.
    public var expectedPeer: PeerID?
    /// Seconds from start until Hello/HelloAck must be done.
    public var handshakeTimeout: Double
    /// Seconds without receiving anything after which the connection is closed.
    public var idleTimeout: Double
    /// Seconds without receiving anything after which a keepalive Ping is sent.
    public var keepaliveInterval: Double
    /// Responder only: when set, answer Hello with this Goodbye instead of HelloAck
    /// (a clean, explained refusal such as too-many-connections).
    public var refusal: Goodbye?
    /// Responder only: asked when Hello arrives, with the peer's proven identity and what
    /// it announced; a Goodbye refuses the session in place of HelloAck (limits, bans,
    /// eviction are decided here, after authentication and before any request).
    public var admit: (@Sendable (PeerID, Hello) -> Goodbye?)?
    /// The protocols this session decodes besides the control messages. A message whose
    /// type code no family owns closes the session with unknown-message-type.
    public var protocols: MessageRegistry
    /// The UDP port this side serves QUIC on, advertised in Hello/HelloAck (nil or 0:
    /// none). Asked when the Hello is sent, so a node can set it once its sockets are bound.
    public var quicPort: (@Sendable () -> UInt16)?

    public init(identity: Ed25519KeyPair, noiseStatic: X25519KeyPair, networkID: String = "",
                capabilities: [String] = Capabilities.default, agent: String = "guts",
                expectedPeer: PeerID? = nil, handshakeTimeout: Double = 10,
                idleTimeout: Double = 90, keepaliveInterval: Double = 30,
                protocols: MessageRegistry = .control) {
        self.protocols = protocols
        self.identity = identity
        self.noiseStatic = noiseStatic
        self.networkID = networkID
        self.capabilities = capabilities
        self.agent = agent
        self.expectedPeer = expectedPeer
        self.handshakeTimeout = handshakeTimeout
        self.idleTimeout = idleTimeout
        self.keepaliveInterval = keepaliveInterval
    }
}

/// Capability strings announced in Hello/HelloAck.
public enum Capabilities {
    /// Answers Ping with Pong.
    public static let ping = "ping"
    public static let `default` = [ping]
}

/// What the remote side is, once the session is established.
public struct PeerInfo: Equatable, Sendable {
    public let peerID: PeerID
    public let version: UInt16
    public let capabilities: [String]
    public let agent: String
    /// Seconds from session start to established.
    public let handshakeSeconds: Double
    /// The UDP port the peer advertised for QUIC in its Hello/HelloAck (0: none).
    public let quicPort: UInt16

    public init(peerID: PeerID, version: UInt16, capabilities: [String], agent: String, handshakeSeconds: Double,
                quicPort: UInt16 = 0) {
        self.peerID = peerID
        self.version = version
        self.capabilities = capabilities
        self.agent = agent
        self.handshakeSeconds = handshakeSeconds
        self.quicPort = quicPort
    }
}

/// Why a session ended.
public enum SessionClose: Error, Equatable, Sendable, CustomStringConvertible {
    /// The Noise handshake or identity proof failed.
    case handshakeFailed(String)
    /// The remote identity is not the one asked for.
    case identityMismatch(expected: PeerID, actual: PeerID)
    /// The remote node is this node.
    case selfConnection
    /// The peer said Goodbye.
    case remoteGoodbye(Goodbye)
    /// This side closed with a Goodbye (sent before closing when possible).
    case localGoodbye(Goodbye)
    /// The connection ended (EOF) without Goodbye.
    case connectionLost(String)
    /// A timeout fired.
    case timeout(String)

    public var description: String {
        switch self {
        case let .handshakeFailed(why): return "handshake failed: \(why)"
        case let .identityMismatch(expected, actual): return "remote identity is \(actual), expected \(expected)"
        case .selfConnection: return "connected to itself (same peer ID)"
        case let .remoteGoodbye(g): return "peer closed the connection (\(g.code)): \(g.reason)"
        case let .localGoodbye(g): return "closed (\(g.code)): \(g.reason)"
        case let .connectionLost(why): return "connection lost: \(why)"
        case let .timeout(why): return "timeout: \(why)"
        }
    }
}

/// Output of the session state machine.
public enum SessionEvent: Equatable, Sendable {
    /// Bytes to write to the connection, in order.
    case send([UInt8])
    /// Handshake and Hello exchange done; application messages may flow.
    case established(PeerInfo)
    /// An application message from the peer (Ping is answered internally and not surfaced;
    /// Pong is surfaced so callers can measure round trips).
    case message(Message)
    /// The session is over: flush preceding `.send` events, then close the connection.
    case closed(SessionClose)
    /// A large answer arrived while no request of this side was waiting for one; its body
    /// was skipped as it arrived, never buffered (see `answersExpected`).
    case discarded(typeName: String, bytes: Int)
}

/// One connection's protocol state machine (guts-protocol(7)): Noise XX handshake with
/// identity proofs, then Hello/HelloAck, then framed, encrypted application messages.
///
/// Sans-I/O: it never touches sockets or clocks. Feed it received bytes with
/// `receive(_:now:)`, call `tick(now:)` at `nextDeadline`, and perform the events.
public struct Session: Sendable {
    public enum Role: Sendable { case initiator, responder }

    enum Phase: Sendable {
        case handshake(HandshakeState)
        case awaitingHello(TransportState)
        case awaitingHelloAck(TransportState)
        case established(TransportState)
        case closed
    }

    public let role: Role
    let config: SessionConfig
    var phase: Phase
    var startedAt: Instant
    var lastReceived: Instant
    var keepaliveSentAt: Instant?
    var keepaliveNonce: UInt64 = 0
    public private(set) var peerID: PeerID?
    public private(set) var peer: PeerInfo?

    /// Received bytes not yet forming a whole Noise message.
    var inbox: [UInt8] = []
    /// Decrypted application stream not yet forming a whole message.
    var stream: [UInt8] = []
    var streamStart = 0
    /// Body bytes of a discarded message still to skip.
    var skipRemaining = 0

    /// Whether this side has requests outstanding, so answers (Refs, Objects) are
    /// expected. The shell keeps it current. While false, an answer whose header
    /// announces more than `unsolicitedAnswerLimit` bytes is skipped from its header on.
    public var answersExpected = false
    /// Largest answer buffered when no request is outstanding.
    public static let unsolicitedAnswerLimit = 64 << 10
    /// Largest handshake message accepted (XX messages here are at most 193 bytes).
    static let maxHandshakeMessage = 1024

    public init(role: Role, config: SessionConfig, now: Instant) {
        self.role = role
        self.config = config
        self.startedAt = now
        self.lastReceived = now
        let noiseRole: NoiseRole = role == .initiator ? .initiator : .responder
        self.phase = .handshake(HandshakeState(role: noiseRole, prologue: WireProtocol.prologue(networkID: config.networkID),
                                               localStatic: config.noiseStatic))
    }

    public var isEstablished: Bool {
        if case .established = phase { return true }
        return false
    }

    public var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    /// Call when the connection is up: the handshake deadline counts from `now`.
    /// Returns the initiator's first bytes (Noise message 1); responders get [].
    public mutating func start(now: Instant) -> [SessionEvent] {
        startedAt = now
        lastReceived = now
        guard role == .initiator, case var .handshake(hs) = phase else { return [] }
        do {
            let m1 = try hs.writeMessage(payload: [])
            phase = .handshake(hs)
            return [.send(Self.frame(m1))]
        } catch {
            phase = .closed
            return [.closed(.handshakeFailed("\(error)"))]
        }
    }

    /// The moment `tick` next needs to run.
    public var nextDeadline: Instant? {
        switch phase {
        case .handshake, .awaitingHello, .awaitingHelloAck:
            return startedAt.adding(seconds: config.handshakeTimeout)
        case .established:
            if keepaliveSentAt == nil { return lastReceived.adding(seconds: config.keepaliveInterval) }
            return lastReceived.adding(seconds: config.idleTimeout)
        case .closed:
            return nil
        }
    }

    /// Applies timeouts: handshake deadline, keepalive pings, idle timeout.
    public mutating func tick(now: Instant) -> [SessionEvent] {
        switch phase {
        case .closed:
            return []
        case .handshake, .awaitingHello, .awaitingHelloAck:
            if now.seconds(since: startedAt) >= config.handshakeTimeout {
                return fail(.timeout, "handshake not completed within \(Self.seconds(config.handshakeTimeout)) s")
            }
            return []
        case .established:
            let quiet = now.seconds(since: lastReceived)
            if quiet >= config.idleTimeout {
                return fail(.timeout, "nothing received for \(Self.seconds(quiet)) s")
            }
            if quiet >= config.keepaliveInterval && keepaliveSentAt == nil {
                keepaliveSentAt = now
                keepaliveNonce = Random.uint64()
                if let bytes = try? seal(.ping(nonce: keepaliveNonce)) { return [.send(bytes)] }
            }
            return []
        }
    }

    /// Encrypts and frames one application message. Only legal once established.
    public mutating func send(_ message: Message) throws -> [UInt8] {
        guard case .established = phase else { throw SessionClose.connectionLost("session is not established") }
        return try seal(message)
    }

    /// A Goodbye to send before closing (empty when no transport keys exist yet).
    public mutating func goodbye(_ code: ReasonCode, _ reason: String) -> [UInt8] {
        let bytes: [UInt8]
        switch phase {
        case .established, .awaitingHello, .awaitingHelloAck:
            bytes = (try? seal(.goodbye(Goodbye(code: code, reason: String(reason.utf8.prefix(Limits.maxReasonLength)) ?? "")))) ?? []
        default:
            bytes = []
        }
        phase = .closed
        return bytes
    }

    /// The peer took bytes this side wrote: while its input is not read (backpressure),
    /// that is the sign of life that keeps the idle timeout from firing.
    public mutating func noteProgress(now: Instant) {
        guard case .established = phase, now > lastReceived else { return }
        lastReceived = now
        keepaliveSentAt = nil
    }

    /// The remote end closed the connection.
    public mutating func receiveEOF() -> [SessionEvent] {
        if case .closed = phase { return [] }
        let wasEstablished = isEstablished
        phase = .closed
        return [.closed(.connectionLost(wasEstablished ? "connection closed by peer" : "connection closed during handshake"))]
    }

    // MARK: - Receiving

    /// Feeds received bytes; returns what to do.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer, now: Instant) -> [SessionEvent] {
        if case .closed = phase { return [] }
        lastReceived = now
        keepaliveSentAt = nil
        var events: [SessionEvent] = []
        var input = bytes[...]
        // Fast path: no partial frame pending, process frames straight from the input.
        if inbox.isEmpty {
            while input.count >= 2 {
                let length = Int(input[input.startIndex]) << 8 | Int(input[input.startIndex + 1])
                guard input.count >= 2 + length else { break }
                let frame = UnsafeRawBufferPointer(rebasing: input[(input.startIndex + 2)..<(input.startIndex + 2 + length)])
                input = input[(input.startIndex + 2 + length)...]
                if !handleFrame(frame, now: now, into: &events) { return events }
            }
            inbox.append(contentsOf: input)
        } else {
            inbox.append(contentsOf: input)
            var consumed = 0
            while inbox.count - consumed >= 2 {
                let length = Int(inbox[consumed]) << 8 | Int(inbox[consumed + 1])
                guard inbox.count - consumed >= 2 + length else { break }
                let ok = inbox.withUnsafeBytes { raw in
                    handleFrame(UnsafeRawBufferPointer(rebasing: raw[(consumed + 2)..<(consumed + 2 + length)]), now: now, into: &events)
                }
                consumed += 2 + length
                if !ok { return events }
            }
            inbox.removeFirst(consumed)
        }
        if case .handshake = phase, inbox.count > 2 + Self.maxHandshakeMessage {
            events += fail(.protocolViolation, "oversized handshake message")
        }
        return events
    }

    public mutating func receive(_ bytes: [UInt8], now: Instant) -> [SessionEvent] {
        bytes.withUnsafeBytes { receive($0, now: now) }
    }

    /// Handles one Noise message. Returns false when the session closed.
    mutating func handleFrame(_ frame: UnsafeRawBufferPointer, now: Instant, into events: inout [SessionEvent]) -> Bool {
        switch phase {
        case .closed:
            return false
        case var .handshake(hs):
            guard frame.count <= Self.maxHandshakeMessage else {
                events += fail(.protocolViolation, "oversized handshake message")
                return false
            }
            do {
                try handshakeStep(&hs, Array(frame), now: now, into: &events)
            } catch let close as SessionClose {
                phase = .closed
                events.append(.closed(close))
                return false
            } catch {
                phase = .closed
                events.append(.closed(.handshakeFailed(Self.explain(error, role: role))))
                return false
            }
            return !isClosed
        case var .awaitingHello(ts), var .awaitingHelloAck(ts), var .established(ts):
            // Decrypt straight from the receive buffer onto the end of the stream.
            compactStream()
            let base = stream.count
            let room = max(0, frame.count - ChaChaPoly.tagLength)
            stream.append(contentsOf: repeatElement(0, count: room))
            let plain: Int
            do {
                plain = try stream.withUnsafeMutableBytes { raw in
                    try ts.receiver.decrypt(frame, into: raw.baseAddress.map { $0 + base })
                }
            } catch {
                phase = .closed
                events.append(.closed(.localGoodbye(Goodbye(code: .protocolViolation, reason: "transport message failed authentication"))))
                return false
            }
            if plain < room { stream.removeLast(room - plain) }
            setTransport(ts)
            return drainStream(now: now, into: &events)
        }
    }

    mutating func setTransport(_ ts: TransportState) {
        switch phase {
        case .awaitingHello: phase = .awaitingHello(ts)
        case .awaitingHelloAck: phase = .awaitingHelloAck(ts)
        case .established: phase = .established(ts)
        default: break
        }
    }

    var transport: TransportState? {
        switch phase {
        case let .awaitingHello(ts), let .awaitingHelloAck(ts), let .established(ts): return ts
        default: return nil
        }
    }

    mutating func compactStream() {
        if streamStart > 0 && (streamStart >= stream.count || streamStart > 1 << 20) {
            stream.removeFirst(streamStart)
            streamStart = 0
        }
    }

    /// Parses whole application messages out of the decrypted stream.
    mutating func drainStream(now: Instant, into events: inout [SessionEvent]) -> Bool {
        if skipRemaining > 0 {
            let n = min(skipRemaining, stream.count - streamStart)
            streamStart += n
            skipRemaining -= n
        }
        while skipRemaining == 0, stream.count - streamStart >= WireProtocol.headerLength {
            let h = streamStart
            let typeByte = stream[h]
            let length = Int(stream[h + 1]) << 24 | Int(stream[h + 2]) << 16 | Int(stream[h + 3]) << 8 | Int(stream[h + 4])
            guard let limit = config.protocols.maxBodySize(type: typeByte) else {
                events += fail(.unknownMessageType, "unknown message type \(DecodeError.hex(typeByte))")
                return false
            }
            guard length <= limit else {
                events += fail(.messageTooLarge, "\(Self.typeName(typeByte, config.protocols)) message of \(length) bytes exceeds the limit of \(limit)")
                return false
            }
            if !answersExpected, length > Self.unsolicitedAnswerLimit,
               config.protocols.family(for: typeByte)?.isAnswer(type: typeByte) == true {
                // Refuse it from its header: skip the body as it arrives instead of buffering it.
                let available = min(length, stream.count - h - WireProtocol.headerLength)
                streamStart = h + WireProtocol.headerLength + available
                skipRemaining = length - available
                events.append(.discarded(typeName: Self.typeName(typeByte, config.protocols), bytes: length))
                continue
            }
            guard stream.count - h - WireProtocol.headerLength >= length else { break }
            let bodyStart = h + WireProtocol.headerLength
            streamStart = bodyStart + length
            let message: Message
            do {
                message = try MessageCodec.decode(type: typeByte, body: stream[bodyStart..<(bodyStart + length)],
                                                  registry: config.protocols)
            } catch {
                events += fail(.protocolViolation, "malformed \(Self.typeName(typeByte, config.protocols)) message: \(error)")
                return false
            }
            if !handleMessage(message, now: now, into: &events) { return false }
        }
        if streamStart == stream.count {
            stream.removeAll(keepingCapacity: stream.capacity <= 4 << 20)
            streamStart = 0
        }
        return true
    }

    /// A type code's name for reasons: the control name, else the family and the code.
    static func typeName(_ type: UInt8, _ registry: MessageRegistry) -> String {
        if let k = ControlKind(rawValue: type) { return k.name }
        return "\(registry.family(for: type)?.name ?? "unknown") \(DecodeError.hex(type))"
    }

    mutating func handleMessage(_ message: Message, now: Instant, into events: inout [SessionEvent]) -> Bool {
        if case let .goodbye(g) = message {
            phase = .closed
            events.append(.closed(.remoteGoodbye(g)))
            return false
        }
        switch phase {
        case .awaitingHello:
            guard case let .hello(hello) = message else {
                events += fail(.protocolViolation, "expected Hello, got \(message.typeName)")
                return false
            }
            if let refusal = config.refusal {
                events += fail(refusal.code, refusal.reason)
                return false
            }
            if let admit = config.admit, let id = peerID, let refusal = admit(id, hello) {
                events += fail(refusal.code, refusal.reason)
                return false
            }
            let version = min(hello.maxVersion, WireProtocol.maxVersion)
            guard version >= hello.minVersion, version >= WireProtocol.minVersion else {
                events += fail(.unsupportedVersion,
                               "peer speaks protocol versions \(hello.minVersion)-\(hello.maxVersion), this node \(WireProtocol.minVersion)-\(WireProtocol.maxVersion)")
                return false
            }
            guard let ack = try? seal(.helloAck(HelloAck(version: version, capabilities: config.capabilities, agent: config.agent, quicPort: config.quicPort?() ?? 0))),
                  let id = peerID else {
                events += fail(.internalError, "cannot encode HelloAck")
                return false
            }
            events.append(.send(ack))
            let info = PeerInfo(peerID: id, version: version, capabilities: hello.capabilities, agent: hello.agent,
                                handshakeSeconds: now.seconds(since: startedAt), quicPort: hello.quicPort)
            peer = info
            if let ts = transport { phase = .established(ts) }
            events.append(.established(info))
            return true
        case .awaitingHelloAck:
            guard case let .helloAck(ack) = message else {
                events += fail(.protocolViolation, "expected HelloAck, got \(message.typeName)")
                return false
            }
            guard ack.version >= WireProtocol.minVersion, ack.version <= WireProtocol.maxVersion, let id = peerID else {
                events += fail(.unsupportedVersion, "peer chose protocol version \(ack.version), this node speaks \(WireProtocol.minVersion)-\(WireProtocol.maxVersion)")
                return false
            }
            let info = PeerInfo(peerID: id, version: ack.version, capabilities: ack.capabilities, agent: ack.agent,
                                handshakeSeconds: now.seconds(since: startedAt), quicPort: ack.quicPort)
            peer = info
            if let ts = transport { phase = .established(ts) }
            events.append(.established(info))
            return true
        case .established:
            switch message {
            case .hello, .helloAck:
                events += fail(.protocolViolation, "unexpected \(message.typeName) after the session was established")
                return false
            case let .ping(nonce):
                if let pong = try? seal(.pong(nonce: nonce)) { events.append(.send(pong)) }
                return true
            case let .pong(nonce) where nonce == keepaliveNonce && keepaliveNonce != 0:
                keepaliveNonce = 0
                return true
            default:
                events.append(.message(message))
                return true
            }
        case .handshake, .closed:
            return false
        }
    }

    // MARK: - Handshake

    mutating func handshakeStep(_ hs: inout HandshakeState, _ message: [UInt8], now: Instant, into events: inout [SessionEvent]) throws {
        guard !hs.isMyTurn else {
            throw SessionClose.handshakeFailed("peer sent a handshake message out of turn")
        }
        let hashBefore = hs.handshakeHash
        switch role {
        case .responder where hs.remoteEphemeralKey == nil:
            // Message 1: -> e. The payload must be empty.
            guard message.count == 32 else {
                throw SessionClose.handshakeFailed("first handshake message is \(message.count) bytes, expected 32 (not a guts node?)")
            }
            _ = try hs.readMessage(message)
            let proof = IdentityProof.make(identity: config.identity, handshakeHash: hs.handshakeHash,
                                           noiseStatic: config.noiseStatic.publicKey)
            let m2 = try hs.writeMessage(payload: proof)
            phase = .handshake(hs)
            events.append(.send(Self.frame(m2)))
        case .responder:
            // Message 3: -> s, se with the initiator's identity proof.
            let payload = try hs.readMessage(message)
            let id = try verifyProof(payload, hashBefore: hashBefore, hs: hs)
            peerID = id
            let ts = try hs.intoTransport()
            phase = .awaitingHello(ts)
        case .initiator:
            // Message 2: <- e, ee, s, es with the responder's identity proof.
            let payload = try hs.readMessage(message)
            let id = try verifyProof(payload, hashBefore: hashBefore, hs: hs)
            if let expected = config.expectedPeer, expected != id {
                throw SessionClose.identityMismatch(expected: expected, actual: id)
            }
            peerID = id
            let proof = IdentityProof.make(identity: config.identity, handshakeHash: hs.handshakeHash,
                                           noiseStatic: config.noiseStatic.publicKey)
            let m3 = try hs.writeMessage(payload: proof)
            var ts = try hs.intoTransport()
            var out = Self.frame(m3)
            let hello = Hello(capabilities: config.capabilities, agent: config.agent, quicPort: config.quicPort?() ?? 0)
            out += try Self.seal(.hello(hello), with: &ts)
            phase = .awaitingHelloAck(ts)
            events.append(.send(out))
        }
    }

    func verifyProof(_ payload: [UInt8], hashBefore: [UInt8], hs: HandshakeState) throws -> PeerID {
        guard let remoteStatic = hs.remoteStaticKey else { throw SessionClose.handshakeFailed("no remote static key") }
        let id: PeerID
        do {
            id = try IdentityProof.verify(payload, handshakeHash: hashBefore, remoteNoiseStatic: remoteStatic)
        } catch {
            throw SessionClose.handshakeFailed("\(error)")
        }
        if id.publicKey == config.identity.publicKey { throw SessionClose.selfConnection }
        return id
    }

    static func seconds(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String((v * 1000).rounded() / 1000)
    }

    static func explain(_ error: Error, role: Role) -> String {
        if let n = error as? NoiseError, n == .decryptionFailed {
            return role == .initiator
                ? "could not decrypt the responder's handshake (different network ID, or not a guts node)"
                : "could not decrypt the initiator's handshake (different network ID, or corrupted data)"
        }
        return "\(error)"
    }

    // MARK: - Sending

    /// Closes with a Goodbye: returns the Goodbye bytes (when keys exist) and the close event.
    mutating func fail(_ code: ReasonCode, _ reason: String) -> [SessionEvent] {
        let bytes = goodbye(code, reason)
        let g = Goodbye(code: code, reason: reason)
        return (bytes.isEmpty ? [] : [.send(bytes)]) + [.closed(code == .timeout ? .timeout(reason) : .localGoodbye(g))]
    }

    mutating func seal(_ message: Message) throws -> [UInt8] {
        guard var ts = transport else { throw SessionClose.connectionLost("no transport keys") }
        let out = try Self.seal(message, with: &ts)
        setTransport(ts)
        return out
    }

    /// Encodes a message and splits the stream bytes into framed, encrypted Noise messages.
    static func seal(_ message: Message, with ts: inout TransportState) throws -> [UInt8] {
        let plain = try MessageCodec.encode(message)
        return try sealStream(plain, with: &ts)
    }

    static func sealStream(_ plain: [UInt8], with ts: inout TransportState) throws -> [UInt8] {
        let total = sealedLength(plaintextCount: plain.count)
        return try [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            initialized = try sealStream(plain, with: &ts, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Bytes on the wire for `plaintextCount` bytes of application stream.
    public static func sealedLength(plaintextCount: Int) -> Int {
        let frames = max(1, (plaintextCount + WireProtocol.maxChunk - 1) / WireProtocol.maxChunk)
        return plaintextCount + frames * (2 + ChaChaPoly.tagLength)
    }

    /// Splits stream bytes into framed Noise messages, encrypting from `plain` straight into `out`.
    static func sealStream(_ plain: [UInt8], with ts: inout TransportState, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        let chunk = WireProtocol.maxChunk
        let frames = max(1, (plain.count + chunk - 1) / chunk)
        guard let o = out.baseAddress, out.count >= sealedLength(plaintextCount: plain.count) else {
            preconditionFailure("sealStream: output buffer too small")
        }
        return try plain.withUnsafeBytes { p in
            var src = 0
            var dst = 0
            for _ in 0..<frames {
                let n = min(chunk, plain.count - src)
                let total = n + ChaChaPoly.tagLength
                o.storeBytes(of: UInt8(total >> 8), toByteOffset: dst, as: UInt8.self)
                o.storeBytes(of: UInt8(total & 0xff), toByteOffset: dst + 1, as: UInt8.self)
                let slice = UnsafeRawBufferPointer(start: p.baseAddress.map { $0 + src }, count: n)
                _ = try ts.sender.encrypt(slice, into: o + dst + 2)
                src += n
                dst += 2 + total
            }
            return dst
        }
    }

    /// An encoded application message waiting to be encrypted (see `seal(_:into:)`).
    public struct Prepared: Sendable {
        let plaintext: [UInt8]
        /// Exact number of bytes `seal(_:into:)` writes.
        public let sealedLength: Int
    }

    /// Encodes a message for `seal(_:into:)`. Only legal once established.
    public func prepare(_ message: Message) throws -> Prepared {
        guard case .established = phase else { throw SessionClose.connectionLost("session is not established") }
        let plain = try MessageCodec.encode(message)
        return Prepared(plaintext: plain, sealedLength: Self.sealedLength(plaintextCount: plain.count))
    }

    /// Encrypts a prepared message straight into caller memory (e.g. a socket buffer), so
    /// the shell avoids copying. `out` must hold `prepared.sealedLength` bytes. Messages must
    /// be sealed in the order they are sent.
    public mutating func seal(_ prepared: Prepared, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        guard case var .established(ts) = phase else { throw SessionClose.connectionLost("session is not established") }
        let n = try Self.sealStream(prepared.plaintext, with: &ts, into: out)
        phase = .established(ts)
        return n
    }

    /// Prefixes a Noise message with its 16-bit big-endian length.
    static func frame(_ message: [UInt8]) -> [UInt8] {
        [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
    }
}
