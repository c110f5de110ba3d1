import GutsCrypto
import GutsNoise
import GutsWire

/// The identity proof the harness puts in its handshake message. 0: a valid proof of
/// A; 1: a valid proof of the session's own identity; 2: any bytes; 3: a proof of A that
/// is subtly wrong (a flipped byte, a valid signature over another Noise static key, or
/// over another handshake hash).
func fuzzHandshakeProof(kind: UInt8, hash: [UInt8], noiseStatic: [UInt8], input: inout FuzzReader) -> [UInt8] {
    switch kind {
    case 0: return IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: hash, noiseStatic: noiseStatic)
    case 1: return IdentityProof.make(identity: fuzzEd25519(1), handshakeHash: hash, noiseStatic: noiseStatic)
    case 2: return input.chunk()
    default:
        let variant = input.u8()
        switch variant % 3 {
        case 0:
            var p = IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: hash, noiseStatic: noiseStatic)
            p[Int(input.u8()) % p.count] ^= max(1, input.u8())
            return p
        case 1:
            return IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: hash, noiseStatic: fuzzX25519(0x43).publicKey)
        default:
            var other = hash
            other[Int(input.u8()) % other.count] ^= max(1, input.u8())
            return IdentityProof.make(identity: fuzzEd25519(2), handshakeHash: other, noiseStatic: noiseStatic)
        }
    }
}

/// The Noise XX handshake with identity proofs, from both sides, against a harness that
/// plays the peer with fixed keys: it completes the handshake honestly up to the message
/// the fuzzer controls, then sends adversarial bytes, or a well-formed message carrying
/// an adversarial identity proof, under a matching or mismatched network ID, then Hello
/// or HelloAck and fuzzer plaintext encrypted under the resulting transport keys.
///
/// Input: flags (bit 0: the session is the initiator; bit 1: the harness uses another
/// network ID; bits 2-3: proof kind, see `fuzzHandshakeProof`; bit 4: raw bytes instead of
/// the harness's next handshake message; bits 5-6: whom an initiator expects (none, A,
/// B); bit 7: send Hello/HelloAck), the plaintext frame size, the read size, the proof's
/// variant bytes, then the rest (raw bytes or plaintext).
///
/// Properties: a session is established only with a peer that proved identity A (never
/// with a bad proof, its own identity, the wrong network, or an unexpected peer); an honest
/// peer always gets through; the session's own proof always verifies; and every byte it
/// sends is a whole frame, and once keys exist, authentic and well-formed.
func fuzzNoiseHandshake(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    let mismatch = flags & 2 != 0
    let proofKind = (flags >> 2) & 3
    let raw = flags & 0x10 != 0
    let expected = Int((flags >> 5) & 3) % 3
    let sendHello = flags & 0x80 != 0
    let frameSize = Int(input.u8()) * 64 + 1
    let step = Int(input.u8())
    let honest = !raw && !mismatch && proofKind == 0
    var session: Session
    var events: [SessionEvent]

    if flags & 1 == 0 {
        // The session is the responder; the harness sends message 3.
        let start = fuzzResponderStarts[mismatch ? 1 : 0]
        session = start.session
        events = start.events
        var hs = start.peer
        guard !raw, start.peerReadMessage2 else {
            events += fuzzDeliver(input.rest(), to: &session, step: step)
            fuzzCheckEvents(events, session)
            fuzzCheck(fuzzEstablished(events) == nil, "established after a raw message 3")
            return
        }
        let proof = fuzzHandshakeProof(kind: proofKind, hash: hs.handshakeHash, noiseStatic: hs.localStaticPublicKey, input: &input)
        guard let m3 = try? hs.writeMessage(payload: proof), var ts = try? hs.intoTransport() else { return }
        var wire = fuzzFrame(m3)
        if sendHello { wire += fuzzSeal(.hello(Hello(capabilities: ["ping"], agent: "fuzz")), with: &ts) }
        wire += fuzzSeal(input.rest(), chunk: frameSize, with: &ts)
        let before = events.count
        events += fuzzDeliver(wire, to: &session, step: step)
        fuzzOpen(fuzzSent(Array(events[before...])), with: &ts)
        if !raw && !mismatch && proofKind == 1 {
            fuzzCheck(fuzzClose(events) == .selfConnection, "a proof of its own identity gave \(String(describing: fuzzClose(events)))")
        }
    } else {
        // The session is the initiator; the harness sends message 2.
        let start = fuzzInitiatorStarts[expected]
        session = start.session
        events = start.events
        if raw {
            events += fuzzDeliver(input.rest(), to: &session, step: step)
            fuzzCheckEvents(events, session)
            fuzzCheck(fuzzEstablished(events) == nil, "established after a raw message 2")
            return
        }
        var hs = fuzzPeerHandshake(.responder, network: mismatch ? "other" : "")
        guard (try? hs.readMessage(start.message1)) != nil else { fuzzFail("message 1 unreadable") }
        let proof = fuzzHandshakeProof(kind: proofKind, hash: hs.handshakeHash, noiseStatic: hs.localStaticPublicKey, input: &input)
        guard let m2 = try? hs.writeMessage(payload: proof) else { return }
        var before = events.count
        events += session.receive(fuzzFrame(m2), now: fuzzNow)
        let reply = fuzzSent(Array(events[before...]))
        if !session.isClosed {
            // It accepted message 2: it answers with message 3 and Hello.
            let frames = fuzzUnframe(reply)
            fuzzCheck(frames.count >= 2, "no message 3 and Hello")
            let hashBefore = hs.handshakeHash
            guard let payload = try? hs.readMessage(frames[0]), let rs = hs.remoteStaticKey,
                  let id = try? IdentityProof.verify(payload, handshakeHash: hashBefore, remoteNoiseStatic: rs),
                  var ts = try? hs.intoTransport() else {
                fuzzFail("the initiator's message 3 or identity proof is not valid")
            }
            fuzzCheck(id == fuzzOwnID, "the initiator proved \(id)")
            let hello = fuzzOpen(Array(reply.dropFirst(2 + frames[0].count)), with: &ts)
            fuzzCheck(hello.count == 1 && hello.first.map { if case .hello = $0 { true } else { false } } == true, "no Hello")
            var wire: [UInt8] = []
            if sendHello { wire += fuzzSeal(.helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "fuzz")), with: &ts) }
            wire += fuzzSeal(input.rest(), chunk: frameSize, with: &ts)
            before = events.count
            events += fuzzDeliver(wire, to: &session, step: step)
            fuzzOpen(fuzzSent(Array(events[before...])), with: &ts)
        } else {
            fuzzCheck(reply.isEmpty, "sent something while refusing message 2")
        }
        if !raw && !mismatch && proofKind == 0 && expected == 2 {
            fuzzCheck(fuzzClose(events) == .identityMismatch(expected: fuzzPeerB, actual: fuzzPeerA), "an unexpected peer was not refused")
        }
        if !raw && !mismatch && proofKind == 1 {
            fuzzCheck(fuzzClose(events) == .selfConnection, "a proof of its own identity gave \(String(describing: fuzzClose(events)))")
        }
    }

    fuzzCheckEvents(events, session)
    let acceptable = honest && !(flags & 1 == 1 && expected == 2)
    if let info = fuzzEstablished(events) {
        fuzzCheck(acceptable, "established with flags \(flags): a bad proof, network or peer got through")
        fuzzCheck(info.peerID == fuzzPeerA, "established with \(info.peerID), but A made the proof")
    }
    if acceptable && sendHello {
        fuzzCheck(fuzzEstablished(events) != nil, "an honest peer was refused: \(String(describing: fuzzClose(events)))")
    }
}
