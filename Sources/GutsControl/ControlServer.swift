#if canImport(Glibc)
import Glibc
#endif
import GutsSupport
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Why the control server could not start.
public enum ControlServerError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A node answers on the socket already.
    case nodeRunning(path: String)
    /// Something other than a socket has the socket's name.
    case notASocket(path: String)
    case system(ControlSystemError)

    public var description: String {
        switch self {
        case let .nodeRunning(path): return "a node is already running (it answers on \(path))"
        case let .notASocket(path): return "\(path) exists and is not a socket; remove it"
        case let .system(e): return e.description
        }
    }
}

/// Serves the control protocol on `<directory>/control.sock` (mode 0600) to processes of
/// the node's own user, checked with SO_PEERCRED. One event loop thread of its own.
///
/// Limits: a request line of `maxRequestLine` bytes; `maxConnections` at once (a newcomer
/// evicts the connection idle the longest, and is refused only when every slot is busy or
/// subscribed); a subscriber that falls `maxSubscriberBacklog` bytes behind is cut off.
/// A client that stops reading answers is simply not read from until it does.
public final class ControlServer: @unchecked Sendable {
    public struct Options: Sendable {
        public var maxConnections = 64
        public var maxRequestLine = ControlSocket.maxRequestLine
        public var maxSubscriberBacklog = 1 << 20
        public init() {}
    }

    public let directory: String
    let options: Options
    let log: @Sendable (String) -> Void
    private let socketDirectory: SocketDirectory
    private let lock = NIOLock()
    private var group: MultiThreadedEventLoopGroup?
    private var channel: Channel?
    /// The bound and listening socket, until NIO takes it over in `start`.
    private var boundSocket: Int32 = -1
    private var handlerBox: (any ControlHandler)?
    /// Device and inode of the socket file this server bound, so `stop` removes only its own.
    private var boundFile: (dev_t, ino_t)?
    let connections = NIOLockedValueBox(Registry())

    public init(directory: String, options: Options = Options(), log: @escaping @Sendable (String) -> Void) {
        self.directory = directory
        self.options = options
        self.log = log
        self.socketDirectory = SocketDirectory(path: directory)
    }

    /// The socket's path.
    public var path: String { socketDirectory.display(ControlSocket.fileName) }

    /// Claims the socket: binds and listens (clients connecting now wait in the backlog
    /// until `start`). A socket left by a node that died is replaced; one a node still
    /// answers on is not (`.nodeRunning`). Call it before building what `start` serves,
    /// to fail early when another node runs.
    public func bind() throws(ControlServerError) {
        if lock.withLock({ boundSocket >= 0 || group != nil }) { return }
        let name = ControlSocket.fileName
        let address: (sockaddr_un, socklen_t)
        do {
            address = try socketDirectory.address(of: name)
            if let st = try socketDirectory.stat(name) {
                guard st.st_mode & S_IFMT == S_IFSOCK else { throw ControlServerError.notASocket(path: path) }
                switch connectUnix(address, timeout: 2) {
                case let .connected(fd):
                    close(fd)
                    throw ControlServerError.nodeRunning(path: path)
                case .failed(ECONNREFUSED):
                    // Nobody listens: the node that made it died without removing it.
                    guard unlink(path) == 0 || errno == ENOENT else { throw ControlSystemError("unlink", path, errno) }
                    log("removed a stale control socket \(path)")
                case .failed(EAGAIN):
                    throw ControlServerError.nodeRunning(path: path)  // listening, backlog full
                case let .failed(code):
                    throw ControlSystemError("connect", path, code)
                }
            }
        } catch let e as ControlServerError {
            throw e
        } catch let e as ControlSystemError {
            throw .system(e)
        } catch {
            throw .system(ControlSystemError("start", path, EINVAL))
        }

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .system(ControlSystemError("socket", path, errno)) }
        // The file bind creates takes the socket inode's mode (less the umask): 0600 from
        // the first instant, no window in which others could connect.
        fchmod(fd, 0o600)
        var addr = address.0
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, address.1) }
        }
        if rc != 0 {
            let code = errno
            close(fd)
            if code == EADDRINUSE { throw .nodeRunning(path: path) }
            throw .system(ControlSystemError("bind", path, code))
        }
        var st = stat()
        guard chmod(path, 0o600) == 0, lstat(path, &st) == 0, listen(fd, 128) == 0 else {
            let code = errno
            close(fd)
            unlink(path)
            throw .system(ControlSystemError("listen", path, code))
        }
        lock.withLock {
            boundSocket = fd
            boundFile = (st.st_dev, st.st_ino)
        }
    }

    /// Binds (unless `bind` did) and serves `handler`.
    public func start(handler: any ControlHandler) throws(ControlServerError) {
        try bind()
        let fd: Int32 = lock.withLock {
            handlerBox = handler
            defer { boundSocket = -1 }
            return boundSocket
        }
        guard fd >= 0 else { return }  // already started
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 << 10, high: max(64 << 10, options.maxSubscriberBacklog)))
            .childChannelInitializer { [self] channel in accept(channel) }
        do {
            let ch = try bootstrap.withBoundSocket(fd).wait()
            lock.withLock {
                self.group = group
                self.channel = ch
            }
        } catch {
            close(fd)
            removeSocketFile()
            try? group.syncShutdownGracefully()
            throw .system(ControlSystemError("listen", path, (error as? IOError)?.errnoCode ?? EINVAL))
        }
    }

    /// Closes every connection (ending subscriptions), stops accepting and removes the
    /// socket file if it is still the one this server bound.
    public func stop() {
        let (group, channel, fd) = lock.withLock { () -> (MultiThreadedEventLoopGroup?, Channel?, Int32) in
            defer {
                self.group = nil
                self.channel = nil
                self.boundSocket = -1
            }
            return (self.group, self.channel, self.boundSocket)
        }
        if fd >= 0 { close(fd) }
        if let group {
            try? channel?.close().wait()
            let open = connections.withLockedValue { $0.entries.values.map(\.channel) }
            for c in open { try? c.close().wait() }
            try? group.syncShutdownGracefully()
        }
        removeSocketFile()
    }

    /// Unlinks the socket file if it is still the one this server bound.
    private func removeSocketFile() {
        guard let bound = lock.withLock({ () -> (dev_t, ino_t)? in
            defer { boundFile = nil }
            return boundFile
        }) else { return }
        var st = stat()
        if lstat(path, &st) == 0, st.st_dev == bound.0, st.st_ino == bound.1 {
            unlink(path)
        }
    }

    // MARK: - Connections

    /// What each connection is doing, for the connection limit.
    struct Registry {
        enum Activity { case idle, busy, streaming }
        struct Entry {
            let channel: Channel
            var activity: Activity
            /// When it last became idle (for eviction: the longest idle goes first).
            var idleSince: Instant
            let connection: ControlConnection
        }
        var entries: [ObjectIdentifier: Entry] = [:]
    }

    func setActivity(_ connection: ControlConnection, _ activity: Registry.Activity) {
        connections.withLockedValue { r in
            let key = ObjectIdentifier(connection)
            guard r.entries[key] != nil else { return }
            if activity == .idle, r.entries[key]?.activity != .idle { r.entries[key]?.idleSince = .now() }
            r.entries[key]?.activity = activity
        }
    }

    func remove(_ connection: ControlConnection) {
        _ = connections.withLockedValue { $0.entries.removeValue(forKey: ObjectIdentifier(connection)) }
    }

    /// Checks the client's user, then admits the connection (evicting the longest idle
    /// one when full) or refuses it with an explained error.
    private func accept(_ channel: Channel) -> EventLoopFuture<Void> {
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let future: EventLoopFuture<PeerCredentials> = provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SO_PEERCRED)
        return future.flatMapThrowing { [self] cred in
            // Set by `start` before NIO accepts anything.
            let handler = lock.withLock { handlerBox }
            let connection = ControlConnection(server: self, handler: handler, loop: channel.eventLoop)
            let me = geteuid()
            if handler == nil {
                connection.refusal = ControlError(.unavailable, "the node is starting")
            } else if cred.uid != me {
                log("control: refused a connection from uid \(cred.uid) (pid \(cred.pid)): only uid \(me) may use \(path)")
                connection.refusal = ControlError(.forbidden, "this node runs as uid \(me) and answers only that user; you are uid \(cred.uid)")
            } else {
                let (admitted, evicted) = connections.withLockedValue { r -> (Bool, ControlConnection?) in
                    var victim: ControlConnection?
                    if r.entries.count >= options.maxConnections {
                        guard let oldest = r.entries.values.filter({ $0.activity == .idle }).min(by: { $0.idleSince < $1.idleSince }) else {
                            return (false, nil)
                        }
                        r.entries[ObjectIdentifier(oldest.connection)] = nil
                        victim = oldest.connection
                    }
                    r.entries[ObjectIdentifier(connection)] = .init(channel: channel, activity: .idle, idleSince: .now(), connection: connection)
                    return (true, victim)
                }
                if let evicted {
                    evicted.end(with: ControlError(.evicted, "closed to make room: \(options.maxConnections) control connections are open and this one was idle longest"))
                }
                if !admitted {
                    log("control: refused a connection: all \(options.maxConnections) slots are busy or subscribed")
                    connection.refusal = ControlError(.busy, "all \(options.maxConnections) control connections are in use; try again later")
                }
            }
            try channel.pipeline.syncOperations.addHandler(connection)
        }
    }
}

/// One client connection: reads request lines (one at a time, so a pipelining or
/// non-reading client cannot make the node queue unbounded work), answers each, and
/// streams events after `subscribe`. Runs on the server's single event loop.
final class ControlConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A received line, or the place of one that was too long.
    enum Line {
        case complete([UInt8])
        case tooLong
    }

    private let server: ControlServer
    private let handler: (any ControlHandler)?
    private let loop: EventLoop
    /// Set before the channel is active: answer this and close.
    var refusal: ControlError?
    private var context: ChannelHandlerContext?
    /// The partial line being received.
    private var partial: [UInt8] = []
    /// Skipping the rest of an over-long line.
    private var discarding = false
    /// Lines not handled yet.
    private var lines: [Line] = []
    private var busy = false
    private var inputClosed = false
    private var subscription: (any ControlSubscription)?
    private var streaming = false
    private var ended = false

    init(server: ControlServer, handler: (any ControlHandler)?, loop: EventLoop) {
        self.server = server
        self.handler = handler
        self.loop = loop
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal {
            end(with: refusal)
            return
        }
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        ended = true
        subscription?.cancel()
        subscription = nil
        server.remove(self)
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            finishIfDone()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        readIfReady()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if streaming || ended { return }  // a subscriber's connection carries only events
        unwrapInboundIn(data).withUnsafeReadableBytes { split($0) }
        process()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readIfReady()
    }

    /// Cuts `bytes` into lines. A line longer than the limit (its newline included) is
    /// noted as such as soon as it passes the limit and the rest of it is skipped, never
    /// buffered.
    private func split(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        let limit = server.options.maxRequestLine
        var start = 0
        while start < bytes.count {
            let newline = memchr(base + start, 0x0a, bytes.count - start).map { base.distance(to: UnsafeRawPointer($0)) }
            let end = newline ?? bytes.count
            if discarding {
                if newline != nil { discarding = false }
            } else if partial.count + (end - start) + 1 > limit {
                partial = []
                discarding = newline == nil
                lines.append(.tooLong)
            } else {
                partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
                if newline != nil {
                    lines.append(.complete(partial))
                    partial = []
                }
            }
            start = end + 1
        }
    }

    private func process() {
        while !busy, !streaming, !ended, !lines.isEmpty {
            switch lines.removeFirst() {
            case .tooLong:
                write(.failure(ControlError(.tooLarge, "request line longer than \(server.options.maxRequestLine) bytes; skipped")), id: nil)
            case let .complete(line):
                handle(line)
            }
        }
        finishIfDone()
        readIfReady()
    }

    private func handle(_ raw: [UInt8]) {
        var line = raw
        if line.last == 0x0d { line.removeLast() }
        if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }  // blank lines are ignored
        let (id, decoded) = ControlCodec.decodeRequest(line)
        let request: ControlRequest
        switch decoded {
        case let .failure(e):
            write(.failure(e), id: id)
            return
        case let .success(r):
            request = r
        }
        guard let handler else { return }
        let loop = self.loop
        switch request {
        case .status:
            write(.status(handler.status()), id: id)
        case .peers:
            begin()
            handler.peers { list in loop.execute { self.complete(.peers(list), id: id) } }
        case let .publish(topic, data):
            begin()
            handler.publish(topic: topic, data: data) { result in
                loop.execute {
                    switch result {
                    case let .success(receipt): self.complete(.published(receipt), id: id)
                    case let .failure(e): self.complete(.failure(e), id: id)
                    }
                }
            }
        case let .scores(peers):
            write(answer(handler.scores(peers: peers), ControlResponse.scores), id: id)
        case let .ban(target, seconds):
            write(answer(handler.ban(target: target, seconds: seconds), ControlResponse.changed), id: id)
        case let .unban(target):
            write(answer(handler.unban(target: target), ControlResponse.changed), id: id)
        case let .report(peer, event, reason):
            write(answer(handler.report(peer: peer, event: event, reason: reason), ControlResponse.reported), id: id)
        case let .find(key):
            begin()
            handler.find(key: key) { result in
                loop.execute {
                    switch result {
                    case let .success(r): self.complete(.found(r), id: id)
                    case let .failure(e): self.complete(.failure(e), id: id)
                    }
                }
            }
        case let .subscribe(topics):
            guard let channel = context?.channel else { return }
            begin()
            let sink = StreamSink(channel: channel, id: id, backlog: server.options.maxSubscriberBacklog, log: server.log)
            handler.subscribe(topics: topics, deliver: { sink.deliver($0) }) { result in
                loop.execute { self.subscribed(result, topics: topics, id: id) }
            }
        }
    }

    private func answer<T>(_ result: Result<T, ControlError>, _ success: (T) -> ControlResponse) -> ControlResponse {
        switch result {
        case let .success(v): return success(v)
        case let .failure(e): return .failure(e)
        }
    }

    private func begin() {
        busy = true
        server.setActivity(self, .busy)
    }

    private func complete(_ response: ControlResponse, id: Int?) {
        busy = false
        guard !ended else { return }
        server.setActivity(self, .idle)
        write(response, id: id)
        process()
    }

    private func subscribed(_ result: Result<any ControlSubscription, ControlError>, topics: [String], id: Int?) {
        busy = false
        switch result {
        case let .success(s):
            if ended {
                s.cancel()
                return
            }
            subscription = s
            streaming = true
            lines = []
            server.setActivity(self, .streaming)
            write(.subscribed(topics: topics), id: id)
            readIfReady()  // keep reading, to notice the client closing
        case let .failure(e):
            guard !ended else { return }
            server.setActivity(self, .idle)
            write(.failure(e), id: id)
            process()
        }
    }

    private func write(_ response: ControlResponse, id: Int?) {
        guard let context, !ended else { return }
        let bytes = ControlCodec.encode(response, id: id)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
    }

    /// Asks for more input when this connection can take it: nothing in progress or
    /// queued, and the client reading its answers. Subscribers are read (and their input
    /// dropped) only to notice when they close.
    private func readIfReady() {
        guard let context, !ended, !inputClosed else { return }
        if streaming || (!busy && lines.isEmpty && context.channel.isWritable) {
            context.read()
        }
    }

    /// After the client half-closed: close once every request has been answered.
    private func finishIfDone() {
        guard inputClosed, !busy, lines.isEmpty, !streaming, let context else { return }
        context.close(promise: nil)
    }

    /// Sends `error` and closes (refused, evicted). Safe from any thread.
    func end(with error: ControlError) {
        loop.execute { [self] in
            guard let context, !ended else { return }
            ended = true
            subscription?.cancel()
            subscription = nil
            let channel = context.channel
            let bytes = ControlCodec.encode(.failure(error), id: nil)
            context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(bytes: bytes))).whenComplete { _ in
                channel.close(promise: nil)
            }
            // A client that reads nothing cannot hold the connection open.
            channel.eventLoop.scheduleTask(in: .seconds(2)) { channel.close(promise: nil) }
        }
    }
}

/// Delivers events to a subscriber's channel from the node's threads; cuts off a
/// subscriber whose unsent backlog passes the write-buffer high watermark.
final class StreamSink: Sendable {
    let channel: Channel
    let id: Int?
    let backlog: Int
    let log: @Sendable (String) -> Void

    init(channel: Channel, id: Int?, backlog: Int, log: @escaping @Sendable (String) -> Void) {
        self.channel = channel
        self.id = id
        self.backlog = backlog
        self.log = log
    }

    func deliver(_ delivery: GossipDelivery) -> Bool {
        guard channel.isActive else { return false }
        guard channel.isWritable else {
            log("control: cut off a subscriber more than \(backlog) bytes behind")
            channel.close(promise: nil)
            return false
        }
        let bytes = ControlCodec.encode(.gossip(delivery), id: id)
        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
        return true
    }
}
