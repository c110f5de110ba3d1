import Foundation
import GutsAddress
import GutsCrypto
import GutsGit
import GutsNode
import GutsGossip
import GutsSync
import GutsIdentity
import GutsTransport
import GutsWire
import NIOCore
import NIOPosix

/// A peer that speaks the real protocol (Noise session, Hello, GetRefs/Refs,
/// GetObjects/Objects) from a real repository, but lies in one chosen way. It runs in
/// the test process; `guts sync` talks to it as to any node.
///
/// Packs are written afresh with `PackWriter` (whole objects, no deltas), so each lie
/// targets exactly one object or one part of the stream.
final class MaliciousServer: @unchecked Sendable {
    enum Behavior: Sendable {
        /// Tells the truth (sanity check of the double itself).
        case honest
        /// Flips one byte inside the compressed data of the largest blob and recomputes
        /// the pack trailer, so only that object is damaged.
        case corruptByte
        /// Replaces the largest blob's content (validly compressed): the pack is sound but
        /// the object it carries has another ID, so the advertised one is missing.
        case alteredBlob
        /// Advertises every ref except `hiddenRef`, and answers with the objects of
        /// `hiddenRef` instead of the ones asked for.
        case otherRef(String)
        /// The right objects plus one unrelated blob nobody asked for.
        case extraBlob
        /// Sends half the chunks, then says Goodbye and closes.
        case closeMidStream
        /// Sends half the chunks, then nothing more.
        case silentMidStream
        /// Sends the first half of the pack, the last piece marked final.
        case truncatedFinal
        /// Advertises a ref with an invalid name.
        case badRefName
        /// Never answers GetRefs.
        case silentRefs
        /// Answers GetRefs with a stream of unrelated messages (one every 200 ms), never Refs.
        case chatterInsteadOfRefs
        /// Advertises `refs/heads/main/x` next to `refs/heads/main`, which no repository can hold.
        case conflictingRefs
        /// Advertises these refs too, on the tip of main (names no check would stop, or that
        /// only git's rules stop: terminal escapes and the like).
        case extraRefs([String])

        // Hostile packs: the pack sent instead of the objects asked for. Object names in
        // them are made up (the client never gets far enough to check them).

        /// A base blob (`zeros`: of zero bytes, which compress to almost nothing; else
        /// incompressible) and a chain of `depth` OFS_DELTAs on it, each link rebuilding
        /// the whole base, each link also the base of a leaf delta when `leaves`.
        case deltaChain(baseSize: Int, zeros: Bool, depth: Int, leaves: Bool)
        /// One incompressible base and `count` deltas on it, each declaring and building a
        /// `resultSize`-byte result by copying the base over and over.
        case deltaFan(baseSize: Int, count: Int, resultSize: Int)
        /// One blob of `size` zero bytes: megabytes inflated from a few kilobytes.
        case zeroBlob(size: Int)
        /// A pack that never ends: `chunk` bytes every `interval` seconds, never final.
        case neverFinal(chunk: Int, interval: Double)
        /// Empty, non-final Objects messages every `interval` seconds, forever.
        case emptyDrip(interval: Double)
        /// Answers every ListRepositories with the same page, saying more follow.
        case endlessListing
        /// Lists a repository name that is not one (a path out of the root, escapes).
        case badListing
    }

    let repositoryPath: String
    let behavior: Behavior
    /// The agent string of its Hello.
    let agent: String
    let identity = Identity.generate()
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var listener: Listener?
    private let queue = DispatchQueue(label: "malicious-server")
    private let lock = NSLock()
    private var _events: [String] = []
    private var _victim: String?
    private var stopped = false
    private let scratch: String

    /// `PEERID@127.0.0.1:PORT`.
    private(set) var peer = ""
    var peerID: String { identity.peerID.description }

    /// Whether it also speaks gossip (as a node would), so it can announce.
    let gossips: Bool

    init(repository: String, behavior: Behavior, agent: String = "malicious/1", gossips: Bool = false) throws {
        repositoryPath = repository
        self.behavior = behavior
        self.agent = agent
        self.gossips = gossips
        scratch = NSTemporaryDirectory() + "guts-malicious-" + UUID().uuidString
        try start()
    }

    private func start() throws {
        var config = SessionConfig(identity: identity.keyPair, noiseStatic: .generate(),
                                   capabilities: Capabilities.default + ["refs", "objects"] + (gossips ? ["gossip"] : []), agent: agent,
                                   protocols: MessageRegistry(gossips ? [SyncProtocol(), GossipProtocol()] : [SyncProtocol()]))
        config.idleTimeout = 60
        let listener = Listener(group: group, config: config, options: .init(maxConnections: 16)) { [weak self] connection in
            guard let server = self else { return }
            connection.setConnectionHandler { [weak server] conn, message in
                guard let server else { return true }
                server.queue.async { server.handle(message, from: conn) }
                return true
            }
        }
        let address = try listener.bind(host: "127.0.0.1", port: 0)
        self.listener = listener
        peer = "\(identity.peerID)@127.0.0.1:\(address.port ?? 0)"
    }

    func shutdown() {
        lock.withLock { stopped = true }
        queue.sync {}  // let a running answer notice and finish before the loop goes away
        listener?.shutdown(timeout: 1)
        listener = nil
        try? group.syncShutdownGracefully()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// Announces (signed, on guts/commits) that the unsigned `repository` changed, to
    /// every connected peer, as its origin: followers that named this peer will sync.
    func announceRefsChanged(_ repository: String) throws {
        let data = try Announcement.refsChanged(RefsChanged(repository: repository, refsHash: [UInt8](repeating: 7, count: 32))).encoded()
        var g = Gossip(topic: "guts/commits", origin: identity.keyPair.publicKey, sequence: UInt64.random(in: 1...(1 << 62)),
                       timestamp: UInt64(Date().timeIntervalSince1970 * 1000), data: data, signature: [])
        g.signature = identity.keyPair.sign(g.signedBytes)
        for c in listener?.activeConnections ?? [] where c.peer != nil {
            try c.send(.gossip(.gossip(g))).wait()
        }
    }

    /// What the server did, in order (for failure messages).
    var events: [String] { lock.withLock { _events } }
    /// The object the lie was about (corrupted, altered or extra), once known.
    var victim: String? { lock.withLock { _victim } }

    private func note(_ s: String) { lock.withLock { _events.append(s) } }

    private func handle(_ message: Message, from connection: PeerConnection) {
        do {
            switch message.syncMessage {
            case let .getRefs(request)?:
                note("GetRefs \(request.repository)")
                if case .silentRefs = behavior { return }
                if case .chatterInsteadOfRefs = behavior {
                    for i in 0..<300 {
                        guard !lock.withLock({ stopped }) else { break }
                        guard (try? connection.send(.pong(nonce: UInt64(i))).wait()) != nil else { break }
                        Thread.sleep(forTimeInterval: 0.2)
                    }
                    return
                }
                connection.send(.sync(.refs(try refs(requestID: request.requestID))))
            case let .listRepositories(request)?:
                note("ListRepositories after '\(request.after)'")
                let head = WireOID([UInt8](repeating: 0xab, count: 20))
                switch behavior {
                case .endlessListing:
                    let page = (0..<256).map { RepositoryEntry(name: "loop/r\($0 + 100)", head: "refs/heads/main", headID: head) }
                    connection.send(.sync(.repositories(Repositories(requestID: request.requestID, repositories: page, more: true))))
                case .badListing:
                    let entries = [RepositoryEntry(name: "../../etc/passwd", head: "", headID: nil),
                                   RepositoryEntry(name: "x\u{1B}]0;owned\u{7}", head: "", headID: nil)]
                    connection.send(.sync(.repositories(Repositories(requestID: request.requestID, repositories: entries, more: false))))
                default:
                    let entries = [RepositoryEntry(name: "alice/proj", head: "refs/heads/main", headID: head)]
                    connection.send(.sync(.repositories(Repositories(requestID: request.requestID, repositories: entries, more: false))))
                }
            case let .getObjects(request)?:
                note("GetObjects wants=\(request.wants.count) haves=\(request.haves.count)")
                try serveObjects(request, connection)
            default:
                break
            }
        } catch {
            note("failed: \(error)")
            connection.send(.error(ErrorReply(requestID: 0, code: .internalError, message: "test double failed: \(error)")))
        }
    }

    private func refs(requestID: UInt32) throws -> GutsSync.Refs {
        let repo = try Repository.open(repositoryPath)
        var head = ""
        if case let .symbolic(target, _) = try repo.head() { head = target }
        var entries: [RefEntry] = []
        for r in try repo.listRefs() where r.symbolicTarget == nil {
            if case let .otherRef(hidden) = behavior, r.name == hidden { continue }
            guard let oid = WireOID(r.id.bytes) else { continue }
            entries.append(RefEntry(name: r.name, id: oid))
        }
        if case .badRefName = behavior, let first = entries.first {
            entries.append(RefEntry(name: "refs/heads/bad..name", id: first.id))
        }
        if case .conflictingRefs = behavior, let main = entries.first(where: { $0.name == "refs/heads/main" }) {
            entries.append(RefEntry(name: "refs/heads/main/x", id: main.id))
        }
        if case let .extraRefs(names) = behavior, let main = entries.first(where: { $0.name == "refs/heads/main" }) {
            for n in names { entries.append(RefEntry(name: n, id: main.id)) }
        }
        return GutsSync.Refs(requestID: requestID, head: head, refs: entries)
    }

    private var isStopped: Bool { lock.withLock { stopped } }

    private func serveObjects(_ request: GetObjects, _ connection: PeerConnection) throws {
        switch behavior {
        case let .neverFinal(chunk, interval):
            var header = Array("PACK".utf8) + [0, 0, 0, 2, 0, 0, 0x10, 0]
            var sent = 0
            var rng = SystemRandomNumberGenerator()
            while !isStopped {
                let data = header + (0..<chunk).map { _ in UInt8.random(in: 0...255, using: &rng) }
                header = []
                guard (try? connection.send(.sync(.objects(Objects(requestID: request.requestID, final: false, data: data)))).wait()) != nil else { break }
                sent += data.count
                if interval > 0 { Thread.sleep(forTimeInterval: interval) }
            }
            note("endless stream stopped after \(sent) bytes")
            return
        case let .emptyDrip(interval):
            var sent = 0
            while !isStopped {
                guard (try? connection.send(.sync(.objects(Objects(requestID: request.requestID, final: false, data: [])))).wait()) != nil else { break }
                sent += 1
                Thread.sleep(forTimeInterval: interval)
            }
            note("drip stopped after \(sent) empty messages")
            return
        case .deltaChain, .deltaFan, .zeroBlob:
            let pack = try hostilePack()
            note("hostile pack of \(pack.count) bytes")
            for start in stride(from: 0, to: pack.count, by: 64 << 10) {
                let piece = Array(pack[start..<min(pack.count, start + (64 << 10))])
                guard (try? connection.send(.sync(.objects(Objects(requestID: request.requestID, final: false, data: piece)))).wait()) != nil else { return }
            }
            try connection.send(.sync(.objects(Objects(requestID: request.requestID, final: true, data: [])))).wait()
            note("sent final")
            return
        default:
            break
        }
        let repo = try Repository.open(repositoryPath)
        var wants = request.wants.compactMap { ObjectID(bytes: $0.bytes) }
        let haves = request.haves.compactMap { ObjectID(bytes: $0.bytes) }.filter { repo.contains($0) }
        if case let .otherRef(hidden) = behavior {
            guard let tip = try repo.resolveRef(hidden) else { throw GitError(.notFound, "no \(hidden)") }
            wants = [tip]
        }
        let objects = try ObjectWalk(store: repo).objects(reachableFrom: wants, excluding: haves).objects
        var pack = try writePack(objects, from: repo)
        note("pack of \(objects.count) objects, \(pack.count) bytes")

        var chunk = 64 << 10
        switch behavior {
        case .closeMidStream, .silentMidStream, .truncatedFinal:
            chunk = max(16, pack.count / 8)  // several chunks even for a small pack
        default: break
        }
        var pieces: [[UInt8]] = stride(from: 0, to: pack.count, by: chunk).map { Array(pack[$0..<min(pack.count, $0 + chunk)]) }
        switch behavior {
        case .closeMidStream, .silentMidStream:
            pieces = Array(pieces.prefix(pieces.count / 2))
        case .truncatedFinal:
            pack = Array(pack.prefix(pack.count / 2))
            pieces = stride(from: 0, to: pack.count, by: chunk).map { Array(pack[$0..<min(pack.count, $0 + chunk)]) }
        default: break
        }
        for (i, piece) in pieces.enumerated() {
            let final: Bool
            if case .truncatedFinal = behavior { final = i == pieces.count - 1 } else { final = false }
            try connection.send(.sync(.objects(Objects(requestID: request.requestID, final: final, data: piece)))).wait()
        }
        note("sent \(pieces.count) chunks")
        switch behavior {
        case .closeMidStream:
            connection.close(.shutdown, "going away mid-stream")
            note("closed")
        case .silentMidStream, .truncatedFinal:
            break
        default:
            try connection.send(.sync(.objects(Objects(requestID: request.requestID, final: true, data: [])))).wait()
            note("sent final")
        }
    }

    /// The hostile pack for the behaviours that send one (see `Behavior`).
    private func hostilePack() throws -> [UInt8] {
        let writer = try PackWriter(directory: scratch + "/" + UUID().uuidString)
        var names = 0
        func name() -> ObjectID {  // made up, distinct
            names += 1
            return ObjectID.compute(type: .blob, body: Array("name \(names)".utf8))
        }
        func random(_ n: Int) -> [UInt8] {
            var rng = SystemRandomNumberGenerator()
            return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        switch behavior {
        case let .deltaChain(baseSize, zeros, depth, leaves):
            let base = zeros ? [UInt8](repeating: 0, count: baseSize) : random(baseSize)
            var previous = name()
            try writer.add(type: .blob, body: base, id: previous)
            for i in 1...depth {
                let link = name()
                try writer.addDelta(id: link, base: previous, delta: HostileDelta.copyThenInsert(baseSize: baseSize, prefix: baseSize - 1, literal: [UInt8(i & 0xFF)]))
                if leaves {
                    try writer.addDelta(id: name(), base: link, delta: HostileDelta.copyThenInsert(baseSize: baseSize, prefix: baseSize - 2, literal: [0xAA, UInt8(i & 0xFF)]))
                }
                previous = link
            }
        case let .deltaFan(baseSize, count, resultSize):
            let baseID = name()
            try writer.add(type: .blob, body: random(baseSize), id: baseID)
            for i in 0..<count {
                try writer.addDelta(id: name(), base: baseID, delta: HostileDelta.repeating(baseSize: baseSize, resultSize: resultSize, last: UInt8(i & 0xFF)))
            }
        case let .zeroBlob(size):
            try writer.add(type: .blob, body: [UInt8](repeating: 0, count: size), id: name())
        default:
            throw GitError(.corrupt, "no hostile pack for \(behavior)")
        }
        let result = try writer.finish()
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: result.packPath)))
    }

    /// The pack bytes for `objects`, with the chosen lie applied.
    private func writePack(_ objects: [ObjectID], from repo: Repository) throws -> [UInt8] {
        let dir = scratch + "/" + UUID().uuidString
        let writer = try PackWriter(directory: dir)
        var largestBlob: (id: ObjectID, size: Int)?
        for id in objects {
            guard let object = try repo.read(id) else { throw GitError(.notFound, "\(id) missing") }
            if object.type == .blob, object.body.count > (largestBlob?.size ?? -1) { largestBlob = (id, object.body.count) }
            if case .alteredBlob = behavior, object.type == .blob, object.body.count >= 64, victim == nil {
                let forged = try writer.add(type: .blob, body: object.body + Array("and something else\n".utf8))
                lock.withLock { _victim = id.hex }
                note("altered \(id) into \(forged)")
                continue
            }
            try writer.add(type: object.type, body: object.body, id: id)
        }
        if case .extraBlob = behavior {
            let extra = try writer.add(type: .blob, body: Array("nobody asked for this \(UUID())\n".utf8))
            lock.withLock { _victim = extra.hex }
        }
        let result = try writer.finish()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: result.packPath)))
        if case .corruptByte = behavior {
            guard let target = largestBlob, target.size >= 64 else { throw GitError(.notFound, "no blob worth corrupting") }
            let reader = try PackReader(packPath: result.packPath, indexPath: result.indexPath)
            guard var offset = reader.offset(of: target.id) else { throw GitError(.notFound, "blob not in pack") }
            while bytes[offset] & 0x80 != 0 { offset += 1 }  // the entry header's size varint
            offset += 1
            bytes[offset + 2 + 3] ^= 0x20  // past the 2-byte zlib header, inside the deflate data
            let digest = SHA1.hash(Array(bytes[0..<(bytes.count - 20)]))
            bytes.replaceSubrange((bytes.count - 20)..., with: digest)
            lock.withLock { _victim = target.id.hex }
            note("corrupted \(target.id) at \(offset + 5)")
        }
        return bytes
    }
}

/// A client that asks for objects and then stops reading (TCP-level: the socket is
/// never drained), so the serving node's writes back up. It keeps the connection open.
/// With `readEvery`, it reads one socket buffer that often: slow, but never stuck.
final class StalledReader: @unchecked Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let connection: PeerConnection

    /// Connects to `peer` (`PEERID@HOST:PORT`) and asks for everything reachable from `want`.
    init(peer: String, repository: String, want: String, readEvery: Double? = nil) throws {
        let endpoint = try Endpoint.parse(peer)
        let config = SessionConfig(identity: Identity.generate().keyPair, noiseStatic: .generate(), agent: "stalled/1",
                                   protocols: MessageRegistry([SyncProtocol()]))
        connection = try Dialer.dial(endpoint, config: config, group: group, connectTimeout: 5).wait()
        try connection.channel.setOption(ChannelOptions.autoRead, value: false).wait()
        let oid = try XCTUnwrapOID(want)
        try connection.send(.sync(.getObjects(GetObjects(requestID: 7, repository: repository, wants: [oid], haves: [])))).wait()
        if let readEvery {
            let channel = connection.channel
            let every = TimeAmount.nanoseconds(Int64(readEvery * 1e9))
            channel.eventLoop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in channel.read() }
        }
    }

    func shutdown() {
        connection.channel.close(promise: nil)
        try? group.syncShutdownGracefully()
    }
}

private func XCTUnwrapOID(_ hex: String) throws -> WireOID {
    guard let id = ObjectID(hex: hex), let oid = WireOID(id.bytes) else { throw GitError(.invalidObject, "bad id \(hex)") }
    return oid
}

/// Deltas in git's format, for hostile packs.
enum HostileDelta {
    static func varint(_ v: Int) -> [UInt8] {
        var out: [UInt8] = []
        var v = v
        repeat {
            var c = UInt8(v & 0x7F)
            v >>= 7
            if v > 0 { c |= 0x80 }
            out.append(c)
        } while v > 0
        return out
    }

    /// One copy instruction: `size` bytes (at most 0xFFFFFF) from `offset` of the base.
    static func copy(offset: Int, size: Int) -> [UInt8] {
        var op: UInt8 = 0x80
        var tail: [UInt8] = []
        for k in 0..<4 where (offset >> (8 * k)) & 0xFF != 0 {
            op |= 1 << k
            tail.append(UInt8((offset >> (8 * k)) & 0xFF))
        }
        for k in 0..<3 where (size >> (8 * k)) & 0xFF != 0 {
            op |= 0x10 << k
            tail.append(UInt8((size >> (8 * k)) & 0xFF))
        }
        return [op] + tail
    }

    /// The first `prefix` bytes of the base, then `literal` (at most 127 bytes).
    static func copyThenInsert(baseSize: Int, prefix: Int, literal: [UInt8]) -> [UInt8] {
        var d = varint(baseSize) + varint(prefix + literal.count)
        var at = 0
        while at < prefix {
            let n = min(prefix - at, 0xFF_FF00)
            d += copy(offset: at, size: n)
            at += n
        }
        return d + [UInt8(literal.count)] + literal
    }

    /// `resultSize` bytes: the whole base again and again, the last byte `last`.
    static func repeating(baseSize: Int, resultSize: Int, last: UInt8) -> [UInt8] {
        var d = varint(baseSize) + varint(resultSize)
        var left = resultSize - 1
        while left > 0 {
            let n = min(left, baseSize, 0xFF_FF00)
            d += copy(offset: 0, size: n)
            left -= n
        }
        return d + [1, last]
    }
}
