import GutsSupport
import GutsWire
@testable import GutsQUIC

/// What a QUIC peer hands us before and after the handshake: its certificate (checked
/// inside the TLS handshake, before any stream opens) and the bytes of its streams.
///
/// Input: the first byte picks the part; the rest is its input.
/// - 0: a certificate (DER). Property: one that verifies in network "fuzz" never verifies
///   in another network, since the identity's signature covers the network ID.
/// - 1: a stream. The second byte sets the size of the pieces the stream arrives in.
///   Property: the messages decoded, and where decoding fails, do not depend on how the
///   stream was cut into pieces (one piece against pieces of 1 to 256 bytes).
func fuzzQuic(_ data: [UInt8]) {
    var r = FuzzReader(data)
    switch r.u8() % 2 {
    case 0:
        let der = r.rest()
        guard (try? QUICCertificate.verify(der, networkID: "fuzz", now: 1_700_000_000)) != nil else { return }
        fuzzCheck((try? QUICCertificate.verify(der, networkID: "other", now: 1_700_000_000)) == nil,
                  "a certificate verified in two networks")
    default:
        let piece = Int(r.u8()) + 1
        let stream = r.rest()
        let whole = decodeQUICStream([stream])
        let pieces = stride(from: 0, to: stream.count, by: piece).map { Array(stream[$0..<min($0 + piece, stream.count)]) }
        fuzzCheck(decodeQUICStream(pieces) == whole, "a stream decoded differently when cut into pieces of \(piece) bytes")
    }
}

/// The messages a stream decoder yields from `pieces`, and whether it failed.
private func decodeQUICStream(_ pieces: [[UInt8]]) -> QUICStreamOutcome {
    var decoder = StreamDecoder()
    var outcome = QUICStreamOutcome()
    for p in pieces {
        decoder.append(p)
        while true {
            do {
                guard let item = try decoder.next(fuzzRegistry) else { break }
                if case let .message(m) = item { outcome.messages.append(m) }
            } catch {
                outcome.failed = true
                return outcome
            }
        }
    }
    return outcome
}

private struct QUICStreamOutcome: Equatable {
    var messages: [Message] = []
    var failed = false
}
