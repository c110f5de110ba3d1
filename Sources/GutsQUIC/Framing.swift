import GutsWire

/// Splits one QUIC stream's bytes into messages: each is the header the TCP application
/// stream uses (type, 4-byte big-endian body length) and the body, with no encryption
/// layer (QUIC's TLS replaces Noise). Limits are checked from the header before the body
/// is buffered, so a stream holds at most one message body plus what flow control lets in.
struct StreamDecoder {
    private var buffer: [UInt8] = []
    private var start = 0

    enum Failure: Error {
        case unknownType(UInt8)
        case tooLarge(UInt8, Int, Int)
        case malformed(UInt8, String)
    }

    var isEmpty: Bool { start == buffer.count }

    mutating func append(_ bytes: [UInt8]) {
        if start > 0 && (start == buffer.count || start > 1 << 20) {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// The next whole message, nil when more bytes are needed.
    mutating func next(_ registry: MessageRegistry) throws(Failure) -> Message? {
        let available = buffer.count - start
        guard available >= WireProtocol.headerLength else { return nil }
        let type = buffer[start]
        let length = Int(buffer[start + 1]) << 24 | Int(buffer[start + 2]) << 16 | Int(buffer[start + 3]) << 8 | Int(buffer[start + 4])
        guard let limit = registry.maxBodySize(type: type) else { throw .unknownType(type) }
        guard length <= limit else { throw .tooLarge(type, length, limit) }
        guard available - WireProtocol.headerLength >= length else { return nil }
        let bodyStart = start + WireProtocol.headerLength
        start = bodyStart + length
        do {
            let message = try MessageCodec.decode(type: type, body: buffer[bodyStart..<(bodyStart + length)], registry: registry)
            if start == buffer.count {
                buffer.removeAll(keepingCapacity: buffer.capacity <= 4 << 20)
                start = 0
            }
            return message
        } catch {
            throw .malformed(type, "\(error)")
        }
    }
}
