import CZlib
#if canImport(Glibc)
import Glibc
#endif

/// A reusable zlib inflate stream. The `z_stream` lives at a fixed address (zlib keeps
/// a pointer back to it), and `reset` reuses its window, so inflating many small
/// objects costs no allocation per object. Not thread-safe: one per thread.
final class Inflater {
    private let stream: UnsafeMutablePointer<z_stream>
    private var initialized = false

    init() {
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        initialized = inflateInit_(stream, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
    }

    deinit {
        if initialized { inflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Starts a new stream reading from `input` (which must outlive the calls).
    func begin(_ input: UnsafeRawBufferPointer) throws {
        guard initialized else { throw GitError(.io, "zlib: cannot initialise inflate") }
        guard inflateReset(stream) == Z_OK else { throw GitError(.io, "zlib: reset failed") }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
        stream.pointee.avail_in = UInt32(clamping: input.count)
        pendingInput = input.count - Int(stream.pointee.avail_in)
    }

    /// Input beyond what fits in zlib's 32-bit counter, fed as the stream drains.
    private var pendingInput = 0

    /// Compressed bytes consumed since `begin`.
    var consumed: Int { Int(stream.pointee.total_in) }

    /// Inflates into `output`; returns how many bytes were produced and whether the
    /// stream ended. Throws on corrupt data; returns `ended == false` with fewer bytes
    /// than room when input ran out (truncation).
    func inflate(into output: UnsafeMutableRawBufferPointer) throws -> (produced: Int, ended: Bool) {
        var produced = 0
        while true {
            if stream.pointee.avail_in == 0 && pendingInput > 0 {
                let more = UInt32(clamping: pendingInput)
                stream.pointee.avail_in = more
                pendingInput -= Int(more)
            }
            let room = output.count - produced
            let chunk = UInt32(clamping: room)
            stream.pointee.next_out = output.baseAddress.map { ($0 + produced).assumingMemoryBound(to: Bytef.self) }
            stream.pointee.avail_out = chunk
            let rc = CZlib.inflate(stream, Z_NO_FLUSH)
            produced += Int(chunk - stream.pointee.avail_out)
            switch rc {
            case Z_STREAM_END:
                return (produced, true)
            case Z_OK:
                if produced == output.count { return (produced, false) }
                continue
            case Z_BUF_ERROR:
                // No progress possible: output full or input exhausted.
                if produced == output.count && output.count > 0 { return (produced, false) }
                if stream.pointee.avail_in == 0 && pendingInput == 0 { return (produced, false) }
                if chunk == 0 { return (produced, false) }
                throw GitError(.corrupt, "zlib: stream stalled")
            case Z_NEED_DICT:
                throw GitError(.corrupt, "zlib: stream needs a preset dictionary")
            case Z_MEM_ERROR:
                throw GitError(.io, "zlib: out of memory")
            default:
                let msg = stream.pointee.msg.map { String(cString: $0) } ?? "error \(rc)"
                throw GitError(.corrupt, "zlib: \(msg)")
            }
        }
    }

    /// Inflates a whole stream that must produce exactly `size` bytes. Returns the
    /// bytes and how much input the stream used. Output beyond `size` is refused after
    /// one extra byte; above 16 MiB the buffer grows with the output actually produced,
    /// so a header that lies about a huge size costs little memory.
    func inflateExactly(_ input: UnsafeRawBufferPointer, size: Int) throws -> (bytes: [UInt8], consumed: Int) {
        try begin(input)
        let direct = 16 << 20
        if size <= direct {
            var failure: (any Error)?
            var ended = false
            let bytes = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
                do {
                    let r = try inflate(into: UnsafeMutableRawBufferPointer(buf))
                    count = r.produced
                    ended = r.ended
                } catch {
                    failure = error
                    count = 0
                }
            }
            if let failure { throw failure }
            try finish(produced: bytes.count, ended: ended, size: size)
            return (bytes, consumed)
        }
        var capacity = direct
        guard var storage = malloc(capacity) else { throw GitError(.io, "out of memory") }
        defer { free(storage) }
        var filled = 0
        var ended = false
        while true {
            let r = try inflate(into: UnsafeMutableRawBufferPointer(start: storage + filled, count: capacity - filled))
            filled += r.produced
            ended = r.ended
            if ended || filled < capacity || capacity == size { break }
            let next = min(size, capacity * 2)
            guard let grown = realloc(storage, next) else { throw GitError(.io, "out of memory") }
            storage = grown
            capacity = next
        }
        try finish(produced: filled, ended: ended, size: size)
        let bytes = [UInt8](unsafeUninitializedCapacity: filled) { buf, count in
            buf.baseAddress!.update(from: storage.assumingMemoryBound(to: UInt8.self), count: filled)
            count = filled
        }
        return (bytes, consumed)
    }

    /// Checks that a stream which produced `produced` bytes is exactly `size` long.
    func finish(produced: Int, ended: Bool, size: Int) throws {
        if ended {
            guard produced == size else {
                throw GitError(.corrupt, "inflated to \(produced) bytes, declared \(size)")
            }
            return
        }
        guard produced == size else {
            throw GitError(.corrupt, "zlib stream ends early: \(produced) of \(size) bytes (truncated or size lies)")
        }
        var one: UInt8 = 0
        let r = try withUnsafeMutableBytes(of: &one) { try inflate(into: $0) }
        if r.produced > 0 {
            throw GitError(.corrupt, "inflates to more than its declared size \(size)")
        }
        if !r.ended {
            throw GitError(.corrupt, "zlib stream truncated after \(size) bytes")
        }
    }

    /// Inflates and throws away output, returning the input length of the stream and
    /// the output size. Refuses streams producing more than `limit` bytes.
    func skip(_ input: UnsafeRawBufferPointer, expectedSize: Int, scratch: UnsafeMutableRawBufferPointer) throws -> Int {
        try begin(input)
        var total = 0
        while true {
            let r = try inflate(into: scratch)
            total += r.produced
            if total > expectedSize {
                throw GitError(.corrupt, "entry is larger than its declared size \(expectedSize)")
            }
            if r.ended { break }
            if r.produced < scratch.count {
                throw GitError(.corrupt, "zlib: stream truncated")
            }
        }
        guard total == expectedSize else {
            throw GitError(.corrupt, "entry has \(total) bytes, declared \(expectedSize)")
        }
        return consumed
    }
}

/// One-shot compression and checksums.
enum Zlib {
    /// zlib-compresses `input` (a complete stream, as git stores objects).
    static func deflate(_ input: UnsafeRawBufferPointer, level: Int32 = 1) throws -> [UInt8] {
        var stream = z_stream()
        guard deflateInit_(&stream, level, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw GitError(.io, "zlib: cannot initialise deflate")
        }
        defer { deflateEnd(&stream) }
        guard input.count < Int(UInt32.max) else { throw GitError(.tooLarge, "object too large to compress") }
        let bound = Int(deflateBound(&stream, uLong(input.count)))
        var rc = Z_OK
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, count in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = UInt32(input.count)
            stream.next_out = buf.baseAddress
            stream.avail_out = UInt32(clamping: bound)
            rc = CZlib.deflate(&stream, Z_FINISH)
            count = rc == Z_STREAM_END ? Int(stream.total_out) : 0
        }
        guard rc == Z_STREAM_END else { throw GitError(.io, "zlib: deflate failed (\(rc))") }
        return out
    }

    static func deflate(_ input: [UInt8], level: Int32 = 1) throws -> [UInt8] {
        try input.withUnsafeBytes { try deflate($0, level: level) }
    }

    /// CRC-32 (as in zlib, gzip and pack index v2).
    static func crc32(_ buffer: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = buffer.baseAddress else { return seed }
        var crc = uLong(seed)
        var p = base.assumingMemoryBound(to: Bytef.self)
        var n = buffer.count
        while n > 0 {
            let chunk = min(n, 1 << 30)
            crc = CZlib.crc32(crc, p, uInt(chunk))
            p += chunk
            n -= chunk
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}
