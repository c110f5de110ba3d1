#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Why talking to the node over its control socket failed.
public enum ControlClientError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No socket, or nobody listening on it: no node runs for that state directory.
    case notRunning(path: String)
    /// The socket belongs to another user.
    case permissionDenied(path: String)
    case timeout(String)
    /// The node closed the connection without answering.
    case closed
    /// The node sent something that is not the documented protocol.
    case malformed(String)
    case system(ControlSystemError)

    public var description: String {
        switch self {
        case let .notRunning(path): return "no node is listening on \(path)"
        case let .permissionDenied(path): return "permission denied connecting to \(path) (the node runs as another user)"
        case let .timeout(what): return "timed out \(what)"
        case .closed: return "the node closed the control connection"
        case let .malformed(what): return "unexpected answer from the node: \(what)"
        case let .system(e): return e.description
        }
    }
}

/// A blocking client for the control socket, for one thread (the CLI's). Every wait is
/// bounded by the timeout given; `interrupt` may be called from any thread.
public final class ControlClient: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private var buffer: [UInt8] = []
    /// How much of `buffer` is known to hold no newline (so a long line is scanned once).
    private var scanned = 0
    private var nextID = 1
    /// Guards `closed` (heap-allocated, so the mutex never moves).
    private let mutex = HeapMutex()
    private var closed = false

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit {
        close()
    }

    /// Connects to the node serving `directory` (its state directory).
    public static func connect(directory: String, timeout: Double) throws(ControlClientError) -> ControlClient {
        let dir = SocketDirectory(path: directory)
        let path = dir.display(ControlSocket.fileName)
        let address: (sockaddr_un, socklen_t)
        do {
            address = try dir.address(of: ControlSocket.fileName)
        } catch {
            if error.code == ENOENT || error.code == ENOTDIR { throw .notRunning(path: path) }
            if error.code == EACCES { throw .permissionDenied(path: path) }
            throw .system(error)
        }
        switch connectUnix(address, timeout: timeout) {
        case let .connected(fd):
            return ControlClient(fd: fd, path: path)
        case .failed(ENOENT), .failed(ECONNREFUSED), .failed(ENOTDIR):
            throw .notRunning(path: path)
        case .failed(EACCES), .failed(EPERM):
            throw .permissionDenied(path: path)
        case .failed(EAGAIN):
            throw .timeout("connecting to \(path)")
        case let .failed(code):
            throw .system(ControlSystemError("connect", path, code))
        }
    }

    /// Sends `request`; returns the id it carries. When the node has already closed the
    /// connection (as it does after refusing it), this succeeds anyway: the next `next`
    /// returns the node's explanation, or throws `.closed`.
    @discardableResult
    public func send(_ request: ControlRequest, timeout: Double) throws(ControlClientError) -> Int {
        let id = nextID
        nextID += 1
        let bytes = ControlCodec.encode(request, id: id)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw .timeout("sending a request to the node") }
                if errno == EPIPE || errno == ECONNRESET { break }
                throw .system(ControlSystemError("send", path, errno))
            }
            offset += n
        }
        return id
    }

    /// What `next` returns.
    public enum Event: Equatable, Sendable {
        /// A line for request `id` (nil: the node could not tell which, or the whole
        /// connection is meant, e.g. a refusal).
        case line(id: Int?, ControlResponse)
        /// `watch` hung up: e.g. whoever read standard output went away.
        case hangup
    }

    /// Waits up to `timeout` seconds (nil: no limit) for the next line and decodes it as
    /// answering `request` (or an event of its subscription). Returns `.hangup` as soon
    /// as descriptor `watch` reports an error or hang-up, even without any line.
    public func next(answering request: ControlRequest, timeout: Double?, watch: Int32? = nil) throws(ControlClientError) -> Event {
        let deadline = timeout.map { Instant.now().adding(seconds: $0) }
        while true {
            if let newline = buffer[scanned...].firstIndex(of: 0x0a) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                scanned = 0
                do {
                    let (id, response) = try ControlCodec.decodeResponse(line, answering: request)
                    return .line(id: id, response)
                } catch {
                    throw .malformed(error.message)
                }
            }
            scanned = buffer.count
            guard buffer.count <= ControlSocket.maxResponseLine else {
                throw .malformed("a line longer than \(ControlSocket.maxResponseLine) bytes")
            }
            var wait: Int32 = -1
            if let deadline {
                let left = deadline.seconds(since: .now())
                if left <= 0 { throw .timeout("waiting for the node's answer") }
                wait = Int32(min(left * 1000 + 1, 3_600_000))
            }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if let watch { fds.append(pollfd(fd: watch, events: 0, revents: 0)) }
            let rc = poll(&fds, nfds_t(fds.count), wait)
            if rc < 0 {
                if errno == EINTR { continue }
                throw .system(ControlSystemError("poll", path, errno))
            }
            if fds.count > 1, fds[1].revents & Int16(POLLERR | POLLHUP | POLLNVAL) != 0 { return .hangup }
            if fds[0].revents == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                if errno == ECONNRESET { throw .closed }
                throw .system(ControlSystemError("recv", path, errno))
            }
            if n == 0 { throw .closed }
            buffer.append(contentsOf: chunk[..<n])
        }
    }

    /// Sends `request` and waits for its answer (or for a refusal of the whole
    /// connection). An error answer is returned as `.failure`, not thrown.
    public func call(_ request: ControlRequest, timeout: Double) throws(ControlClientError) -> ControlResponse {
        let deadline = Instant.now().adding(seconds: timeout)
        let id = try send(request, timeout: timeout)
        while true {
            let event = try next(answering: request, timeout: max(0.001, deadline.seconds(since: .now())))
            guard case let .line(lineID, response) = event else { continue }
            if lineID == id { return response }
            if lineID == nil, case .failure = response { return response }
        }
    }

    /// Makes a waiting `next` end (with `.closed`) from another thread, e.g. on a signal.
    public func interrupt() {
        mutex.locked {
            if !closed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    public func close() {
        mutex.locked {
            if !closed {
                closed = true
                Glibc.close(fd)
            }
        }
    }
}
