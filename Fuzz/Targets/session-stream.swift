import GutsNoise
import GutsWire

/// What a session should make of a decrypted application stream, computed the plain way
/// (the whole stream at hand, no buffers, no compaction): the reference the session's
/// incremental parser is compared with.
struct FuzzStreamModel {
    var messages: [Message] = []
    var discarded = 0
    var established = false
    var closed = false

    init(_ plain: [UInt8], awaiting: Bool, responder: Bool, answersExpected: Bool) {
        var awaiting = awaiting
        var i = 0
        while !closed, plain.count - i >= 5 {
            let type = plain[i]
            let length = Int(plain[i + 1]) << 24 | Int(plain[i + 2]) << 16 | Int(plain[i + 3]) << 8 | Int(plain[i + 4])
            guard let limit = fuzzRegistry.maxBodySize(type: type), length <= limit else {
                closed = true
                break
            }
            if !answersExpected, length > Session.unsolicitedAnswerLimit, fuzzRegistry.family(for: type)?.isAnswer(type: type) == true {
                discarded += 1
                i += 5 + length
                continue
            }
            guard plain.count - i - 5 >= length else { break }
            guard let message = try? MessageCodec.decode(type: type, body: plain[(i + 5)..<(i + 5 + length)], registry: fuzzRegistry) else {
                closed = true
                break
            }
            i += 5 + length
            if case .goodbye = message {
                closed = true
            } else if awaiting {
                switch (message, responder) {
                case let (.hello(h), true) where min(h.maxVersion, 1) >= h.minVersion && h.maxVersion >= 1:
                    established = true
                    awaiting = false
                case let (.helloAck(a), false) where a.version == 1:
                    established = true
                    awaiting = false
                default:
                    closed = true
                }
            } else {
                switch message {
                case .hello, .helloAck: closed = true
                case .ping: break
                default: messages.append(message)
                }
            }
        }
    }
}

/// The session's application stream, past decryption: the fuzzer's bytes are encrypted
/// under the transport keys of an honest handshake (the harness is the peer), so they reach
/// the stream parser of a session awaiting Hello or HelloAck, or established, as responder
/// or initiator. Frames of any size, reads split anywhere, a forged last frame, an empty
/// transport message, answers expected or not.
///
/// Input: flags (bits 0-1: which session, see `fuzzTransportPairs`; bit 2: answers expected;
/// bit 3: forge the last frame's tag; bit 4: end with an empty transport message; bit 5:
/// run the keepalive timer afterwards), the plaintext frame size, the read size, then the
/// plaintext.
///
/// Properties: the session surfaces exactly the messages, discards and outcome of the
/// reference model; it establishes only from the right Hello/HelloAck; everything it sends
/// decrypts and decodes on the peer's side.
func fuzzSessionStream(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    let which = Int(flags & 3)
    var pair = fuzzTransportPairs[which]
    pair.session.answersExpected = flags & 4 != 0
    let sizeByte = input.u8()
    let frameSize = sizeByte >= 0xF0 ? TransportState.maxPlaintextLength >> Int(sizeByte & 0x0F) : Int(sizeByte) + 1
    let step = Int(input.u8()) * 7
    let plain = input.rest()
    let forge = flags & 8 != 0 && !plain.isEmpty
    let chunk = max(1, frameSize)
    var wire = fuzzSeal(plain, chunk: chunk, with: &pair.peer)
    // Bytes of plaintext the session can authenticate (all but a forged last frame).
    var authentic = plain.count
    if forge {
        wire[wire.count - 1] ^= 1
        authentic -= (plain.count - 1) % chunk + 1
    }
    if flags & 16 != 0 && !forge {
        guard let empty = try? pair.peer.encrypt([]) else { fuzzFail("encrypt") }
        wire += fuzzFrame(empty)
    }
    var session = pair.session
    var events = fuzzDeliver(wire, to: &session, step: step)
    if flags & 32 != 0 { events += session.tick(now: fuzzNow.adding(seconds: 31)) }
    fuzzCheckEvents(events, session)
    fuzzOpen(fuzzSent(events), with: &pair.peer)

    let model = FuzzStreamModel(Array(plain[..<authentic]), awaiting: which == 0 || which == 2, responder: which < 2,
                                answersExpected: flags & 4 != 0)
    var surfaced: [Message] = []
    var discarded = 0
    for event in events {
        if case let .message(m) = event { surfaced.append(m) }
        if case .discarded = event { discarded += 1 }
    }
    fuzzCheck(surfaced == model.messages, "surfaced \(surfaced.map(\.typeName)), the model \(model.messages.map(\.typeName))")
    fuzzCheck(discarded == model.discarded, "discarded \(discarded), the model \(model.discarded)")
    fuzzCheck((fuzzEstablished(events) != nil) == model.established, "established differs from the model")
    if let info = fuzzEstablished(events) { fuzzCheck(info.peerID == fuzzPeerA, "established with \(info.peerID)") }
    let closedByStream = fuzzClose(events).map { if case .timeout = $0 { false } else { true } } ?? false
    fuzzCheck(closedByStream == (model.closed || forge), "closed \(String(describing: fuzzClose(events))), the model \(model.closed), forged \(forge)")
}
