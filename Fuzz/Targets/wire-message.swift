import GutsGossip
import GutsNode
import GutsSync
import GutsWire

/// The message decoders: the first byte is the type code, the rest the body, decoded with
/// the registry of every family (control, sync, announcements, gossip). Also the
/// announcement decoder for gossip data (header and body), fed the whole input.
///
/// Properties: whatever a decoder accepts re-encodes (the encoder never refuses what the
/// decoder let in), to the very same bytes (the layout is canonical, so a field read in one
/// order and written in another cannot pass), except that Hello and HelloAck drop duplicate
/// capabilities on receipt.
func fuzzWireMessage(_ data: [UInt8]) {
    if let announcement = Announcement.decode(data) {
        guard let again = try? announcement.encoded() else { fuzzFail("accepted \(announcement.typeName) does not re-encode") }
        fuzzCheck(again == data, "announcement re-encodes differently")
    }
    guard let type = data.first else { return }
    let body = data[1...]
    guard let message = try? MessageCodec.decode(type: type, body: body, registry: fuzzRegistry) else { return }
    fuzzCheck(message.typeCode == type, "type \(type) decoded as \(message.typeName)")
    let encoded: [UInt8]
    do {
        encoded = try MessageCodec.encode(message)
    } catch {
        fuzzFail("accepted \(message.typeName) does not re-encode: \(error)")
    }
    fuzzCheck(encoded.count >= 5 && encoded[0] == type, "re-encoded header")
    let length = Int(encoded[1]) << 24 | Int(encoded[2]) << 16 | Int(encoded[3]) << 8 | Int(encoded[4])
    fuzzCheck(length == encoded.count - 5, "header length \(length) for a body of \(encoded.count - 5)")
    switch message {
    case .hello, .helloAck:
        let again = try? MessageCodec.decode(type: type, body: encoded[5...], registry: fuzzRegistry)
        fuzzCheck(again == message, "\(message.typeName) does not survive re-encoding")
    default:
        fuzzCheck(encoded[5...].elementsEqual(body), "\(message.typeName) re-encodes to different bytes")
    }
}
