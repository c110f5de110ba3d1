import GutsWire

/// Splits one QUIC stream's bytes into messages: each is the header the TCP application
/// stream uses (type, 4-byte big-endian body length) and the body, with no encryption
/// layer (QUIC's TLS replaces Noise). Limits are checked from the header before the body
/// is buffered, so a stream holds at most one message body plus what flow control lets in.
struct StreamDecoder {
    private var buffer: [UInt8] = []
    private var start = 0
    /// Body bytes of a skipped message still to discard as they arrive.
    private var skipRemaining = 0

    enum Failure: Error {
        case unknownType(UInt8)
        case tooLarge(UInt8, Int, Int)
        case malformed(UInt8, String)
    }

    /// Bytes held for messages not yet whole.
    var bufferedBytes: Int { buffer.count - start }

    /// Whether the stream ends between messages (a skipped body counts as inside one).
    var isEmpty: Bool { start == buffer.count && skipRemaining == 0 }

    mutating func append(_ bytes: [UInt8]) {
        var bytes = bytes[...]
        if skipRemaining > 0 {
            let n = min(skipRemaining, bytes.count)
            skipRemaining -= n
            bytes = bytes.dropFirst(n)
        }
        if start > 0 && (start == buffer.count || start > 1 << 20) {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// What `next` found.
    enum Item {
        case message(Message)
        /// An answer over `Session.unsolicitedAnswerLimit` bytes that `skipLargeAnswers`
        /// refused from its header: its body is discarded as it arrives, never buffered.
        case skipped(type: UInt8, bytes: Int)
    }

    /// The next whole message, nil when more bytes are needed. With `skipLargeAnswers`
    /// (no request outstanding), an answer whose header announces more than
    /// `Session.unsolicitedAnswerLimit` bytes is skipped as over TCP (guts-protocol(7),
    /// ADMISSION AND LIMITS).
    mutating func next(_ registry: MessageRegistry, skipLargeAnswers: Bool = false) throws(Failure) -> Item? {
        let available = buffer.count - start
        guard available >= WireProtocol.headerLength else { return nil }
        let type = buffer[start]
        let length = Int(buffer[start + 1]) << 24 | Int(buffer[start + 2]) << 16 | Int(buffer[start + 3]) << 8 | Int(buffer[start + 4])
        guard let limit = registry.maxBodySize(type: type) else { throw .unknownType(type) }
        guard length <= limit else { throw .tooLarge(type, length, limit) }
        if skipLargeAnswers, length > Session.unsolicitedAnswerLimit, registry.family(for: type)?.isAnswer(type: type) == true {
            let here = min(length, available - WireProtocol.headerLength)
            start += WireProtocol.headerLength + here
            skipRemaining = length - here
            if start == buffer.count {
                buffer.removeAll(keepingCapacity: buffer.capacity <= 4 << 20)
                start = 0
            }
            return .skipped(type: type, bytes: length)
        }
        guard available - WireProtocol.headerLength >= length else { return nil }
        let bodyStart = start + WireProtocol.headerLength
        start = bodyStart + length
        do {
            let message = try MessageCodec.decode(type: type, body: buffer[bodyStart..<(bodyStart + length)], registry: registry)
            if start == buffer.count {
                buffer.removeAll(keepingCapacity: buffer.capacity <= 4 << 20)
                start = 0
            }
            return .message(message)
        } catch {
            throw .malformed(type, "\(error)")
        }
    }
}
