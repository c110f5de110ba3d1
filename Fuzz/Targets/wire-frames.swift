import GutsCrypto
import GutsGossip
import GutsIdentity
import GutsNode
import GutsSync
import GutsWire

/// The frame layer: raw bytes from the network into a fresh session (responder or
/// initiator) before any keys exist: 16-bit length-prefixed Noise messages, oversized
/// and out-of-turn handshake messages, split across reads in any way.
///
/// Input: flags (bit 0: initiator), the read size (0: one read), then the bytes.
func fuzzWireFrames(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    let step = Int(input.u8())
    let role: Session.Role = flags & 1 == 0 ? .responder : .initiator
    var session = Session(role: role, config: fuzzSessionConfig(1), now: fuzzNow)
    var events = session.start(now: fuzzNow)
    events += fuzzDeliver(input.rest(), to: &session, step: step)
    if flags & 2 != 0 { events += session.receiveEOF() }
    fuzzCheckEvents(events, session)
    fuzzCheck(!session.isEstablished, "established from bytes no one could have encrypted")
    if session.isClosed {
        fuzzCheck(session.receive([0, 0], now: fuzzNow).isEmpty, "a closed session still reacts")
    }
}
