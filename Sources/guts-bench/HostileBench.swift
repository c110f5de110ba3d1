#if canImport(Glibc)
import Glibc
#endif
import Foundation
import GutsGit
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTransport
import GutsWire
import NIOCore
import NIOPosix

/// `guts-bench hostile`: what hostile packs cost `guts sync` next to benign packs of the
/// same size, measured in the same run.
///
///     guts-bench hostile [--runs N] [--stream-mb N] [--client GUTS] [--keep]
///     guts-bench hostile --calibrate REPO...
///
/// An in-process test peer serves each case; the client is the `guts` binary next to
/// this one (or `--client GUTS`, e.g. an older build, to compare), run with its default limits (except where a case says otherwise) in a fresh
/// state directory each time. For every run the client's CPU time (user + system) and
/// peak RSS are read from `wait4` on that child. Each hostile case is set beside a
/// benign pack of about the same size (a generated source history packed by git, or for
/// the streams a history of binary files), served the same way.
///
/// Targets: every hostile case ends within 5 s of CPU, at most 2x the CPU of the benign
/// pack of the same size, and under 300 MB of RSS.
///
/// `--calibrate` indexes the packs of existing repositories without a budget and prints
/// the work each needed per pack byte: where the default work factor comes from.
enum HostileBench {
    struct Options {
        var runs = 3
        var streamMB = 64
        var keep = false
        /// Another guts binary to measure (e.g. an older build); default: the sibling.
        var client: String?
    }

    static func run(arguments: [String]) -> Int32 {
        var o = Options()
        var i = 0
        func value() -> String? {
            i += 1
            return i < arguments.count ? arguments[i] : nil
        }
        while i < arguments.count {
            switch arguments[i] {
            case "--calibrate": return calibrate(Array(arguments[(i + 1)...]))
            case "--runs": o.runs = max(1, value().flatMap { Int($0) } ?? o.runs)
            case "--stream-mb": o.streamMB = max(1, value().flatMap { Int($0) } ?? o.streamMB)
            case "--keep": o.keep = true
            case "--client": o.client = value()
            case "hostile": break
            default:
                print("usage: guts-bench hostile [--runs N] [--stream-mb N] [--client GUTS] [--keep] | --calibrate REPO...")
                return 2
            }
            i += 1
        }
        let bench = Bench(o)
        defer { bench.cleanUp() }
        return bench.run()
    }

    // MARK: Cases

    /// What the test peer does when asked for objects.
    enum Serve {
        /// Sends these bytes (a whole pack), then final.
        case pack([UInt8])
        /// Sends pack-like bytes forever, never final.
        case endless
        /// Sends empty, non-final Objects messages every 0.5 s, forever.
        case drip
    }

    /// One row of the table.
    struct Case {
        var name: String
        var serve: Serve
        /// Options added to `guts sync`.
        var extra: [String] = []
        /// The exit status expected.
        var exit: Int32
        /// Bytes the client receives (the benign pack of "the same size" is this large).
        var bytes: Int
        /// The benign comparison is a history of binary files (for the streams).
        var binaryBenign = false
        /// The repository the peer advertises (made up for hostile cases).
        var refs: GutsSync.Refs
    }

    /// A repository name per case, and what the peer sends for it.
    final class Catalog: @unchecked Sendable {
        private let lock = NSLock()
        private var cases: [String: Case] = [:]
        func add(_ name: String, _ c: Case) { lock.withLock { cases[name] = c } }
        func get(_ name: String) -> Case? { lock.withLock { cases[name] } }
    }

    /// The test peer: answers GetRefs and GetObjects from `catalog`.
    final class Peer: @unchecked Sendable {
        let identity = Identity.generate()
        let catalog = Catalog()
        private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        private let queue = DispatchQueue(label: "hostile-peer", attributes: .concurrent)
        private var listener: Listener?
        private let stopLock = NSLock()
        private var stopped = false
        private(set) var address = ""

        init() throws {
            var config = SessionConfig(identity: identity.keyPair, noiseStatic: .generate(),
                                       capabilities: Capabilities.default + ["refs", "objects"], agent: "guts-bench-hostile/1",
                                       protocols: MessageRegistry([SyncProtocol()]))
            config.idleTimeout = 600
            let listener = Listener(group: group, config: config, options: .init(maxConnections: 64)) { [weak self] connection in
                connection.setConnectionHandler { [weak self] conn, message in
                    guard let self else { return true }
                    self.queue.async { self.handle(message, conn) }
                    return true
                }
            }
            let bound = try listener.bind(host: "127.0.0.1", port: 0)
            self.listener = listener
            address = "\(identity.peerID)@127.0.0.1:\(bound.port ?? 0)"
        }

        var isStopped: Bool { stopLock.withLock { stopped } }

        func shutdown() {
            stopLock.withLock { stopped = true }
            listener?.shutdown(timeout: 1)
            listener = nil
            try? group.syncShutdownGracefully()
        }

        private func handle(_ message: Message, _ connection: PeerConnection) {
            switch message.syncMessage {
            case let .getRefs(r)?:
                guard var c = catalog.get(r.repository)?.refs else {
                    connection.send(.error(ErrorReply(requestID: r.requestID, code: .notFound, message: "no such case")))
                    return
                }
                c.requestID = r.requestID
                connection.send(.sync(.refs(c)))
            case let .getObjects(r)?:
                guard let c = catalog.get(r.repository) else { return }
                func send(_ data: [UInt8], final: Bool) -> Bool {
                    (try? connection.send(.sync(.objects(Objects(requestID: r.requestID, final: final, data: data)))).wait()) != nil
                }
                switch c.serve {
                case let .pack(bytes):
                    var at = 0
                    while at < bytes.count {
                        let n = min(bytes.count - at, 1 << 20)
                        guard send(Array(bytes[at..<(at + n)]), final: false) else { return }
                        at += n
                    }
                    _ = send([], final: true)
                case .endless:
                    var chunk = [UInt8](repeating: 0, count: 1 << 20)
                    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
                    for k in 0..<chunk.count {
                        x ^= x << 13
                        x ^= x >> 7
                        x ^= x << 17
                        chunk[k] = UInt8(truncatingIfNeeded: x)
                    }
                    guard send(Array("PACK".utf8) + [0, 0, 0, 2, 0, 0x10, 0, 0], final: false) else { return }
                    while !isStopped, send(chunk, final: false) {}
                case .drip:
                    while !isStopped, send([], final: false) { usleep(500_000) }
                }
            default:
                break
            }
        }
    }

    /// Made-up object names.
    static func fakeID(_ n: Int) -> ObjectID {
        ObjectID.compute(type: .blob, body: Array("hostile \(n)".utf8))
    }

    static func fakeRefs() -> GutsSync.Refs {
        GutsSync.Refs(requestID: 0, head: "refs/heads/main",
                      refs: [RefEntry(name: "refs/heads/main", id: WireOID(fakeID(0).bytes) ?? WireOID(Array(repeating: 1, count: 20))!)])
    }

    /// Builds a pack with `PackWriter` in `dir` and returns its bytes.
    static func pack(in dir: String, _ build: (PackWriter) throws -> Void) throws -> [UInt8] {
        let writer = try PackWriter(directory: dir)
        try build(writer)
        let result = try writer.finish()
        defer {
            Files.remove(result.packPath)
            Files.remove(result.indexPath)
        }
        return try Files.read(result.packPath, limit: 1 << 32)
    }

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

    /// A delta: the first `prefix` bytes of a `baseSize` base, then `literal`.
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

    /// A delta: `resultSize` bytes of the base repeated, the last byte `last`.
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

    static func random(_ n: Int, seed: UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var x = seed | 1
        for k in 0..<n {
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            out[k] = UInt8(truncatingIfNeeded: x)
        }
        return out
    }

    /// A chain of `depth` deltas on a base, each link rebuilding the whole base, each
    /// with a leaf delta when `leaves` (OFS_DELTAs, made-up names).
    static func chain(in dir: String, base: [UInt8], depth: Int, leaves: Bool) throws -> [UInt8] {
        try pack(in: dir) { w in
            var names = 1
            var previous = fakeID(names)
            try w.add(type: .blob, body: base, id: previous)
            for i in 1...depth {
                names += 1
                let link = fakeID(names)
                try w.addDelta(id: link, base: previous, delta: copyThenInsert(baseSize: base.count, prefix: base.count - 1, literal: [UInt8(i & 0xFF)]))
                if leaves {
                    names += 1
                    try w.addDelta(id: fakeID(names), base: link, delta: copyThenInsert(baseSize: base.count, prefix: base.count - 2, literal: [0xAA, UInt8(i & 0xFF)]))
                }
                previous = link
            }
        }
    }

    /// `count` deltas on one base, each building `resultSize` bytes by copying it.
    static func fan(in dir: String, base: [UInt8], count: Int, resultSize: Int) throws -> [UInt8] {
        try pack(in: dir) { w in
            let baseID = fakeID(1)
            try w.add(type: .blob, body: base, id: baseID)
            for i in 0..<count {
                try w.addDelta(id: fakeID(2 + i), base: baseID, delta: repeating(baseSize: base.count, resultSize: resultSize, last: UInt8(i & 0xFF)))
            }
        }
    }

    static func hostileCases(scratch: String, streamMB: Int) throws -> [Case] {
        let zeros32 = [UInt8](repeating: 0, count: 32 << 20)
        let oneMiB = random(1 << 20, seed: 7)
        var cases: [Case] = []
        func add(_ name: String, _ bytes: [UInt8], exit: Int32 = 6) {
            cases.append(Case(name: name, serve: .pack(bytes), exit: exit, bytes: bytes.count, refs: fakeRefs()))
        }
        add("issue: 32 MiB base, 45-deep chain, leaves", try chain(in: scratch, base: zeros32, depth: 45, leaves: true))
        add("issue: 100-deep chain of 32 MiB objects", try chain(in: scratch, base: zeros32, depth: 100, leaves: false))
        add("issue: 6 deltas declaring 1020 MiB", try fan(in: scratch, base: oneMiB, count: 6, resultSize: 1020 << 20))
        add("zlib bomb: 100 MiB of zeros", try pack(in: scratch) { w in
            try w.add(type: .blob, body: [UInt8](repeating: 0, count: 100 << 20), id: fakeID(1))
        })
        add("budget-filling: 64-deep chain of 1 MiB, leaves", try chain(in: scratch, base: oneMiB, depth: 64, leaves: true))
        add("fan of 99 MiB deltas on 1 MiB (over budget at once)", try fan(in: scratch, base: oneMiB, count: 64, resultSize: 99 << 20))
        add("budget-filling: fan of 8 MiB deltas on 1 MiB", try fan(in: scratch, base: oneMiB, count: 64, resultSize: 8 << 20))
        add("budget-filling: 64-deep chain of 8 MiB, leaves", try chain(in: scratch, base: random(8 << 20, seed: 11), depth: 64, leaves: true))
        cases.append(Case(name: "never-final stream (--max-pack-size \(streamMB)M)", serve: .endless, extra: ["--max-pack-size", "\(streamMB)M"],
                          exit: 6, bytes: streamMB << 20, binaryBenign: true, refs: fakeRefs()))
        cases.append(Case(name: "empty messages every 0.5 s (-W 5)", serve: .drip, extra: ["--timeout", "5"], exit: 7, bytes: 0, refs: fakeRefs()))
        return cases
    }

    // MARK: The run

    final class Bench {
        let o: Options
        var temp = ""
        var guts = ""
        var peer: Peer?
        var rows: [(Case, [Sample], benign: (bytes: Int, samples: [Sample])?)] = []

        init(_ o: Options) { self.o = o }

        func cleanUp() {
            peer?.shutdown()
            peer = nil
            if !temp.isEmpty {
                if o.keep { print("kept \(temp)") } else { Files.removeTree(temp) }
            }
        }

        func run() -> Int32 {
            print("== hostile: guts sync against hostile packs vs benign packs of the same size ==")
            guard let binary = o.client ?? GitBench.siblingBinary("guts") else {
                print("no guts binary next to guts-bench: build with `swift build -c release --product guts`")
                return 3
            }
            guts = binary
            var template = Array("/tmp/guts-bench-hostile-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return 3 }
            temp = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            do {
                let p = try Peer()
                peer = p
                print("building hostile packs ...")
                let cases = try HostileBench.hostileCases(scratch: temp + "/scratch", streamMB: o.streamMB)
                var benignBySize: [Int: (name: String, bytes: Int)] = [:]
                for (k, c) in cases.enumerated() {
                    p.catalog.add("bench/hostile-\(k)", c)
                    let target = max(c.bytes, 16 << 10)
                    if benignBySize[target] == nil || c.binaryBenign {
                        let b = try benign(bytes: target, binary: c.binaryBenign, index: k)
                        p.catalog.add("bench/benign-\(k)", b)
                        benignBySize[target] = ("bench/benign-\(k)", b.bytes)
                    }
                }
                for (k, c) in cases.enumerated() {
                    let target = max(c.bytes, 16 << 10)
                    let benignName = c.binaryBenign ? "bench/benign-\(k)" : benignBySize[target]?.name ?? ""
                    var hostile: [Sample] = []
                    var good: [Sample] = []
                    for _ in 0..<o.runs {
                        hostile.append(measure("bench/hostile-\(k)", extra: c.extra, expect: c.exit))
                        good.append(measure(benignName, extra: [], expect: 0))
                    }
                    rows.append((c, hostile, (benignBySize[target]?.bytes ?? 0, good)))
                    print("  \(c.name): done")
                }
            } catch {
                print("failed: \(error)")
                return 1
            }
            return report()
        }

        struct Sample {
            var status: Int32
            var cpu: Double
            var rssKB: Int
            var seconds: Double
        }

        /// Runs `guts sync` for `name` in a fresh state directory.
        func measure(_ name: String, extra: [String], expect: Int32) -> Sample {
            let home = temp + "/client-\(UUID().uuidString.prefix(8))"
            defer { Files.removeTree(home) }
            let argv = [guts, "--home", home, "-q", "sync", "--ephemeral", name, "--peer", peer?.address ?? ""] + extra
            let err = temp + "/client.err"
            let s = HostileBench.runMeasured(argv, stderr: err)
            if s.status != expect {
                let text = (try? Files.readString(err, limit: 4096)) ?? ""
                print("  \(name): exit \(s.status), expected \(expect): \(text)")
            }
            return s
        }

        /// A benign repository whose pack is about `bytes` long, registered as a case.
        func benign(bytes: Int, binary: Bool, index: Int) throws -> Case {
            let dir = temp + "/benign-\(index).git"
            let pack: [UInt8]
            if binary {
                pack = try HostileBench.binaryHistory(at: dir, bytes: bytes, scratch: temp)
            } else {
                pack = try HostileBench.sourceHistory(at: dir, bytes: bytes, scratch: temp)
            }
            let tip = Processes.capture([SyncBench.git, "--git-dir", dir, "rev-parse", "refs/heads/main"]).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let id = ObjectID(hex: tip), let oid = WireOID(id.bytes) else { throw GitError(.corrupt, "no tip in \(dir)") }
            let refs = GutsSync.Refs(requestID: 0, head: "refs/heads/main", refs: [RefEntry(name: "refs/heads/main", id: oid)])
            return Case(name: "benign", serve: .pack(pack), exit: 0, bytes: pack.count, refs: refs)
        }

        func report() -> Int32 {
            print("")
            print("client: \(guts) (default limits unless noted); \(o.runs) runs each, median CPU (user+system), largest peak RSS")
            print("")
            let header = ["case", "pack", "exit", "CPU s", "RSS MB", "benign pack", "CPU s", "RSS MB", "CPU ratio", "targets"]
            var table: [[String]] = [header]
            var failures = 0
            for (c, hostile, benign) in rows {
                let cpu = Statistics.median(hostile.map(\.cpu))
                let rss = Double(hostile.map(\.rssKB).max() ?? 0) / 1024
                let bcpu = Statistics.median(benign?.samples.map(\.cpu) ?? [])
                let brss = Double(benign?.samples.map(\.rssKB).max() ?? 0) / 1024
                let ratio = bcpu > 0 ? cpu / bcpu : 0
                let exits = Set(hostile.map(\.status)).sorted().map(String.init).joined(separator: ",")
                var verdict: [String] = []
                if cpu > 5 { verdict.append("CPU>5s") }
                if ratio > 2 { verdict.append("ratio>2") }
                if rss >= 300 { verdict.append("RSS>=300MB") }
                if hostile.contains(where: { $0.status != c.exit }) { verdict.append("exit!=\(c.exit)") }
                if !verdict.isEmpty { failures += 1 }
                table.append([c.name, size(c.bytes), exits, fmt(cpu, 3), fmt(rss, 1), size(benign?.bytes ?? 0) + (c.binaryBenign ? " (binary)" : ""),
                              fmt(bcpu, 3), fmt(brss, 1), fmt(ratio, 2) + "x", verdict.isEmpty ? "ok" : verdict.joined(separator: " ")])
            }
            let widths = (0..<header.count).map { col in table.map { $0[col].count }.max() ?? 0 }
            for (n, row) in table.enumerated() {
                print(row.enumerated().map { i, cell in i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[i] - cell.count) + cell }.joined(separator: "  "))
                if n == 0 { print(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
            }
            print("")
            print(failures == 0 ? "all hostile cases within the targets (CPU <= 5 s, <= 2x benign, RSS < 300 MB)"
                  : "\(failures) case(s) outside the targets")
            return failures == 0 ? 0 : 1
        }

        func fmt(_ v: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", v) }

        func size(_ n: Int) -> String {
            n >= 1 << 20 ? fmt(Double(n) / 1048576, 1) + " MiB" : n >= 1024 ? fmt(Double(n) / 1024, 1) + " KiB" : "\(n) B"
        }
    }

    // MARK: Benign repositories

    /// A source history (files edited a little in each commit, packed by git with
    /// deltas) whose pack is about `bytes` long; returns the pack.
    static func sourceHistory(at path: String, bytes: Int, scratch: String) throws -> [UInt8] {
        var commits = 40
        var best: [UInt8] = []
        // Fewer files for small packs: the first commit alone holds all of them.
        let files = max(4, min(60, bytes / 4000))
        for _ in 0..<6 {
            Files.removeTree(path)
            try importHistory(at: path, scratch: scratch) { emit in sourceCommits(commits, files: files, emit) }
            best = try packOf(path)
            let ratio = Double(bytes) / Double(max(1, best.count))
            if abs(ratio - 1) < 0.1 { break }
            commits = max(1, Int(Double(commits) * ratio))
        }
        return best
    }

    /// A history of binary files (1 MiB of random bytes per commit) of about `bytes`.
    static func binaryHistory(at path: String, bytes: Int, scratch: String) throws -> [UInt8] {
        try importHistory(at: path, scratch: scratch) { emit in
            for c in 0..<max(1, bytes >> 20) {
                var s = "commit refs/heads/main\nmark :\(c + 1)\ncommitter Dev <dev@example.com> \(1_600_000_000 + c * 60) +0000\ndata 7\nasset \(c % 10)\n"
                if c > 0 { s += "from :\(c)\n" }
                let blob = random(1 << 20, seed: UInt64(c + 1) &* 0x9E37_79B9)
                s += "M 100644 inline assets/a\(c).bin\ndata \(blob.count)\n"
                emit(Array(s.utf8) + blob + [0x0A, 0x0A])
            }
        }
        return try packOf(path)
    }

    /// `commits` commits over `files` source-like files, 1 to 3 edited a little each time.
    static func sourceCommits(_ commits: Int, files fileCount: Int, _ emit: ([UInt8]) -> Void) {
        var rng: UInt64 = 0x5EED
        func next() -> Int {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: rng >> 33)
        }
        let words = ["let", "var", "func", "return", "guard", "value", "count", "index", "buffer", "result", "error", "try", "self", "data", "offset", "size"]
        func line() -> String { (0..<(4 + next() % 8)).map { _ in words[next() % words.count] }.joined(separator: " ") + "\n" }
        var files: [[String]] = (0..<fileCount).map { _ in (0..<(20 + next() % 150)).map { _ in line() } }
        for c in 0..<commits {
            var s = "commit refs/heads/main\nmark :\(c + 1)\ncommitter Dev <dev@example.com> \(1_600_000_000 + c * 60) +0000\n"
            let msg = "change \(c)\n"
            s += "data \(msg.utf8.count)\n\(msg)"
            if c > 0 { s += "from :\(c)\n" }
            for f in c == 0 ? Array(0..<fileCount) : (0..<(1 + next() % 3)).map({ _ in next() % fileCount }) {
                if c > 0 { files[f][next() % files[f].count] = line() }
                let body = files[f].joined()
                s += "M 100644 inline src/m\(f % 6)/f\(f).swift\ndata \(body.utf8.count)\n\(body)"
            }
            emit(Array((s + "\n").utf8))
        }
    }

    /// Imports a fast-import stream into a new bare repository and packs it like git gc.
    static func importHistory(at path: String, scratch: String, _ body: (([UInt8]) -> Void) -> Void) throws {
        let git = SyncBench.git
        guard Processes.run([git, "init", "-q", "--bare", "--initial-branch=main", path], env: nil) == 0 else {
            throw GitError(.io, "git init failed")
        }
        let script = scratch + "/import-\(getpid()).txt"
        let fd = open(script, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw GitError(.io, "cannot write \(script)") }
        body { Files.writeAll(fd, $0) }
        close(fd)
        defer { Files.remove(script) }
        guard Processes.run([git, "--git-dir", path, "fast-import", "--quiet"], env: nil, stdin: script) == 0,
              Processes.run([git, "--git-dir", path, "repack", "-adfq", "--depth=50", "--window=10"], env: nil) == 0 else {
            throw GitError(.io, "git fast-import or repack failed")
        }
    }

    static func packOf(_ repo: String) throws -> [UInt8] {
        guard let name = Files.list(repo + "/objects/pack").first(where: { $0.hasSuffix(".pack") }) else {
            throw GitError(.io, "no pack in \(repo)")
        }
        return try Files.read(repo + "/objects/pack/" + name, limit: 1 << 34)
    }

    // MARK: Measuring a child

    /// Runs `argv` and returns its exit status, CPU time and peak RSS from `wait4`.
    /// The bench's own peak is reset first (Linux starts a child's `ru_maxrss` at the
    /// parent's peak); VmHWM sampled while it runs covers a child below that.
    static func runMeasured(_ argv: [String], stderr: String) -> Bench.Sample {
        let clear = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        if clear >= 0 {
            _ = write(clear, "5", 1)
            close(clear)
        }
        let parentPeak = SyncBench.peak(getpid()) ?? Int.max
        let start = Instant.now()
        guard let pid = Processes.launch(argv, env: nil, stderr: stderr) else { return Bench.Sample(status: -1, cpu: 0, rssKB: 0, seconds: 0) }
        var status: Int32 = 0
        var usage = rusage()
        var sampled = 0
        while true {
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if let hwm = SyncBench.peak(pid) { sampled = max(sampled, hwm) }
            usleep(2_000)
        }
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        let maxrss = Int(usage.ru_maxrss)
        return Bench.Sample(status: (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F), cpu: cpu,
                            rssKB: maxrss > parentPeak ? maxrss : sampled, seconds: Instant.now().seconds(since: start))
    }

    // MARK: Calibration

    /// Indexes every pack of the given repositories without a budget and prints the
    /// work each did per pack byte: the figures the default work factor comes from.
    static func calibrate(_ repos: [String]) -> Int32 {
        print("repository  pack bytes  objects  inflated/pack  delta-output/pack  index s")
        for repo in repos {
            let dir = repo + "/objects/pack"
            for name in Files.list(dir) where name.hasSuffix(".pack") {
                let tmp = "/tmp/guts-calibrate-\(getpid())"
                try? Files.makeDirectories(tmp)
                defer { Files.removeTree(tmp) }
                guard let bytes = try? Files.read(dir + "/" + name, limit: 1 << 34),
                      (try? Files.writeAtomically(tmp + "/in.pack", bytes)) != nil else { continue }
                let budget = WorkBudget(unlimitedUntil: nil)
                let start = Instant.now()
                do {
                    let r = try PackIndexer.index(packPath: tmp + "/in.pack", outputDirectory: tmp, limits: .localStore, budget: budget)
                    let n = Double(bytes.count)
                    print("\(Files.baseName(repo))  \(bytes.count)  \(r.count)  \(String(format: "%.1f", Double(budget.inflated) / n))  "
                          + "\(String(format: "%.1f", Double(budget.deltaProduced) / n))  \(String(format: "%.2f", Instant.now().seconds(since: start)))")
                } catch {
                    print("\(repo): \(error)")
                }
            }
        }
        return 0
    }
}
