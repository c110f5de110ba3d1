import Foundation
import GutsAddress
import GutsCrypto
import GutsIdentity
import GutsSupport
import GutsSync
import GutsTransport
import GutsWire
import NIOCore
import NIOPosix

/// Secure-channel figures: raw AEAD speed, handshakes per second against one real
/// `guts listen`, and bulk throughput of one encrypted connection into it.
enum ChannelBench {
    static func run(arguments: [String]) -> Int32 {
        let seconds = Double(value(after: "--seconds", in: arguments) ?? "") ?? 2
        let rounds = Int(value(after: "--rounds", in: arguments) ?? "") ?? 3
        let megabytes = Int(value(after: "--megabytes", in: arguments) ?? "") ?? 2048
        let concurrency = Int(value(after: "--concurrency", in: arguments) ?? "") ?? 32

        print("== secure channel (Noise_XX_25519_ChaChaPoly_BLAKE2b) ==")
        print("machine: \(System.coreCount) cores")
        let raw = (0..<rounds).map { _ in rawAEAD(seconds: seconds / 2) }
        let rawEnc = Statistics.median(raw.map(\.encrypt)), rawDec = Statistics.median(raw.map(\.decrypt))
        let rawEncCPU = Statistics.median(raw.map(\.encryptPerCPU)), rawDecCPU = Statistics.median(raw.map(\.decryptPerCPU))
        print("libsodium chacha20poly1305-ietf, 65519-byte messages, one core: encrypt \(gb(rawEnc)) GB/s, decrypt \(gb(rawDec)) GB/s (median of \(rounds)); per CPU-second of that thread \(gb(rawEncCPU)) and \(gb(rawDecCPU))")

        guard let node = startListener() else { return 1 }
        defer {
            node.process.terminate()
            node.process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: node.home)
        }
        let clientThreads = Int(value(after: "--client-threads", in: arguments) ?? "") ?? 1
        let group = MultiThreadedEventLoopGroup(numberOfThreads: clientThreads)
        defer { try? group.syncShutdownGracefully() }
        guard let endpoint = try? Endpoint.parse(node.line) else {
            print("cannot parse listener address '\(node.line)'")
            return 1
        }
        let config = SessionConfig(identity: .generate(), noiseStatic: .generate(), capabilities: arguments.contains("--as-client") ? ["ping", "gossip-client"] : ["ping"], agent: "guts-bench")

        // Each round measures the listener, then the crypto limit on this machine right
        // after, so the ratio compares figures taken under the same load.
        var rates: [Double] = []
        var perCore: [Double] = []
        var limits: [Double] = []
        var fullLimits: [Double] = []
        var ratios: [Double] = []
        var fullRatios: [Double] = []
        // The floor: the same Session on blocking sockets with no framework (see
        // MinimalResponder), dialed the same way in each round.
        let minimal = MinimalResponder()
        defer { minimal?.stop() }
        var floorRatios: [Double] = []
        var sessionRatios: [Double] = []
        var toFloor: [Double] = []
        // The kernel's share of each responder's CPU, and the ratio per user CPU-second.
        var listenerSystemShares: [Double] = []
        var userRatios: [Double] = []
        var floorSystemShares: [Double] = []
        var floorUserRatios: [Double] = []
        for _ in 0..<rounds {
            let timesBefore = cpuTimes(of: node.process.processIdentifier)
            let cpuBefore = timesBefore.map { $0.user + $0.system }
            let started = Instant.now()
            let rate = handshakes(endpoint: endpoint, config: config, group: group, seconds: seconds, concurrency: concurrency)
            let elapsed = Instant.now().seconds(since: started)
            let timesAfter = cpuTimes(of: node.process.processIdentifier)
            let cpuAfter = timesAfter.map { $0.user + $0.system }
            rates.append(rate)
            let limit = cryptoLimit(seconds: seconds / 4)
            let full = cryptoLimit(seconds: seconds / 4, symmetric: true)
            limits.append(limit)
            fullLimits.append(full)
            if let b = timesBefore, let a = timesAfter, a.user > b.user {
                listenerSystemShares.append((a.system - b.system) / (a.user + a.system - b.user - b.system))
                userRatios.append(rate * elapsed / (a.user - b.user) / limit)
            }
            if let before = cpuBefore, let after = cpuAfter, after > before {
                let own = rate * elapsed / (after - before)
                perCore.append(own)
                ratios.append(own / limit)
                fullRatios.append(own / full)
                sessionRatios.append(MinimalResponder.sessionLimit(seconds: seconds / 4) / limit)
                if let minimal, let floorEndpoint = try? Endpoint.parse(minimal.endpoint) {
                    let before = minimal.totals
                    _ = handshakes(endpoint: floorEndpoint, config: config, group: group, seconds: seconds, concurrency: concurrency)
                    let after = minimal.totals
                    if after.cpuSeconds > before.cpuSeconds, after.completed > before.completed {
                        let floor = Double(after.completed - before.completed) / (after.cpuSeconds - before.cpuSeconds)
                        floorRatios.append(floor / limit)
                        toFloor.append(own / floor)
                        let cpu = after.cpuSeconds - before.cpuSeconds, system = after.systemSeconds - before.systemSeconds
                        if cpu > system {
                            floorSystemShares.append(system / cpu)
                            floorUserRatios.append(Double(after.completed - before.completed) / (cpu - system) / limit)
                        }
                    }
                }
            }
        }
        print("handshakes/s against one guts listen (client and listener on this machine, \(concurrency) in flight): median \(Int(Statistics.median(rates))) [\(rates.map { String(Int($0)) }.joined(separator: ", "))], target 3000")
        let limit = Statistics.median(limits)
        let fullLimit = Statistics.median(fullLimits)
        print("crypto limit of one responder handshake (4 X25519 + 1 Ed25519 sign + 1 verify, libsodium, one core): \(Int(limit)) per CPU-second (median of \(rounds))")
        print("  the same with the handshake's BLAKE2b (8 MixHash, 4 HKDF) and ChaCha20-Poly1305 (4 handshake payloads, Hello, HelloAck), which the line above leaves out: \(Int(fullLimit)) per CPU-second")
        if !perCore.isEmpty {
            let achieved = Statistics.median(perCore)
            print("  the listener's own cost: \(Int(achieved)) handshakes per CPU-second of guts listen (median), so one core of its own serves that many per second")
            print("  ratio to the crypto limit: \(String(format: "%.2f", Statistics.median(ratios))) (target 0.85; median of the rounds' ratios [\(ratios.map { String(format: "%.2f", $0) }.joined(separator: ", "))]); to the limit with BLAKE2b and ChaCha20-Poly1305: \(String(format: "%.2f", Statistics.median(fullRatios)))")
        }
        if !sessionRatios.isEmpty {
            print("  the responder's Session alone (no sockets; its crypto, Noise, proofs, Hello codec): ratio to the crypto limit \(String(format: "%.2f", Statistics.median(sessionRatios))) [\(sessionRatios.map { String(format: "%.2f", $0) }.joined(separator: ", "))]")
        }
        if !floorRatios.isEmpty {
            print("  floor, a responder with no framework (one thread, blocking sockets, the same Session; per CPU-second of that thread): ratio to the crypto limit \(String(format: "%.2f", Statistics.median(floorRatios))) [\(floorRatios.map { String(format: "%.2f", $0) }.joined(separator: ", "))]; guts listen reaches \(String(format: "%.2f", Statistics.median(toFloor))) of it [\(toFloor.map { String(format: "%.2f", $0) }.joined(separator: ", "))]")
        }
        if !listenerSystemShares.isEmpty {
            func pct(_ v: [Double]) -> String { "\(Int((Statistics.median(v) * 100).rounded()))%" }
            print("  kernel (system) time: \(pct(listenerSystemShares)) of guts listen's CPU\(floorSystemShares.isEmpty ? "" : ", \(pct(floorSystemShares)) of the floor's"); per user CPU-second the ratio to the crypto limit is \(String(format: "%.2f", Statistics.median(userRatios))) for guts listen\(floorUserRatios.isEmpty ? "" : " and \(String(format: "%.2f", Statistics.median(floorUserRatios))) for the floor") (medians)")
        }

        var speeds: [Double] = []
        var receiverPerCPU: [Double] = []
        var senderPerCPU: [Double] = []
        var floorSpeeds: [Double] = []
        for _ in 0..<rounds {
            let listenerBefore = cpuSeconds(of: node.process.processIdentifier)
            let selfBefore = processCPUSeconds()
            guard let s = bulk(endpoint: endpoint, config: config, group: group, megabytes: megabytes) else { return 1 }
            speeds.append(s)
            let bytes = Double(megabytes * SyncLimits.maxObjectsChunk)
            if let before = listenerBefore, let after = cpuSeconds(of: node.process.processIdentifier), after > before {
                receiverPerCPU.append(bytes / (after - before))
            }
            let selfAfter = processCPUSeconds()
            if selfAfter > selfBefore { senderPerCPU.append(bytes / (selfAfter - selfBefore)) }
            if let floor = MinimalBulk.run(megabytes: megabytes) { floorSpeeds.append(floor) }
        }
        let m = Statistics.median(speeds)
        print("bulk throughput, one encrypted connection into guts listen, \(megabytes) MiB of 1 MiB Objects messages: median \(gb(m)) GB/s [\(speeds.map(gb).joined(separator: ", "))], target 1.0")
        print("ratio to raw libsodium decrypt on one core: \(String(format: "%.2f", m / rawDec)) (target 0.85)")
        if !floorSpeeds.isEmpty {
            let f = Statistics.median(floorSpeeds)
            print("  floor, the same bytes as bare Noise frames between two threads on blocking loopback sockets (no framework, no messages): \(gb(f)) GB/s [\(floorSpeeds.map(gb).joined(separator: ", "))], \(String(format: "%.2f", f / rawDec)) of raw decrypt; guts reaches \(String(format: "%.2f", m / f)) of it")
        }
        // Wall-clock throughput needs both ends to get a core at once; on a shared machine
        // the bytes per CPU-second of each end show what each costs.
        if !receiverPerCPU.isEmpty, !senderPerCPU.isEmpty {
            let r = Statistics.median(receiverPerCPU), w = Statistics.median(senderPerCPU)
            print("  per CPU-second: receiver (guts listen) \(gb(r)) GB/s, \(String(format: "%.2f", r / rawDecCPU)) of raw decrypt; sender (this process) \(gb(w)) GB/s, \(String(format: "%.2f", w / rawEncCPU)) of raw encrypt (medians, raw per CPU-second too)")
        }
        return 0
    }

    /// User plus system CPU seconds a process has used, from /proc/PID/stat.
    static func cpuSeconds(of pid: Int32) -> Double? {
        cpuTimes(of: pid).map { $0.user + $0.system }
    }

    /// User and system CPU seconds a process has used, from /proc/PID/stat.
    static func cpuTimes(of pid: Int32) -> (user: Double, system: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (user / tick, system / tick)
    }

    /// System (kernel) CPU seconds the calling thread has used.
    static func threadSystemSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD
        return Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    }

    static func value(after flag: String, in args: [String]) -> String? {
        guard let i = args.firstIndex(of: flag), i + 1 < args.count else { return nil }
        return args[i + 1]
    }

    static func gb(_ bytesPerSecond: Double) -> String { String(format: "%.2f", bytesPerSecond / 1e9) }

    /// Handshakes per CPU-second that a responder's public-key operations alone allow: an
    /// ephemeral key pair and three Diffie-Hellman operations (XX: ee, es, se), signing
    /// this node's identity proof and verifying the peer's. Measured on the calling thread.
    /// With `symmetric`, also the responder's BLAKE2b and ChaCha20-Poly1305 work, call for
    /// call as GutsNoise and the session make it: MixHash of the prologue, re, the empty
    /// first payload, e, and each ciphertext; HKDF for ee, es, se and Split; the sealed
    /// static key and proof in message 2, the opened ones in message 3, Hello and HelloAck.
    static func cryptoLimit(seconds: Double, symmetric: Bool = false) -> Double {
        let identity = Ed25519KeyPair.generate()
        let peer = Ed25519KeyPair.generate()
        let staticKey = X25519KeyPair.generate()
        let remoteEphemeral = X25519KeyPair.generate().publicKey
        let remoteStatic = X25519KeyPair.generate().publicKey
        // The signed identity proof: domain (22 bytes), handshake hash (64), Noise static key (32).
        let transcript = Random.bytes(22 + 64 + 32)
        let peerProof = peer.sign(transcript)
        let key = Random.bytes(32)
        let ad = Random.bytes(64)
        var h = Random.bytes(64)
        var ck = Random.bytes(64)
        let prologue = WireProtocol.prologue(networkID: "")
        let proofPayload = Random.bytes(IdentityProof.length)
        let sealedStatic = ChaChaPoly.seal(key: key, nonce: 0, ad: ad, plaintext: remoteStatic)
        let sealedProof = ChaChaPoly.seal(key: key, nonce: 1, ad: ad, plaintext: proofPayload)
        let hello = ChaChaPoly.seal(key: key, nonce: 0, ad: [], plaintext: Random.bytes(48))
        let helloAck = Random.bytes(96)
        var count = 0
        let started = threadCPUSeconds()
        while threadCPUSeconds() - started < seconds {
            for _ in 0..<16 {
                let e = X25519KeyPair.generate()
                let ee = try? e.sharedSecret(with: remoteEphemeral)
                let es = try? staticKey.sharedSecret(with: remoteEphemeral)
                let se = try? e.sharedSecret(with: remoteStatic)
                let proof = identity.sign(transcript)
                let ok = Ed25519.verify(signature: peerProof, message: transcript, publicKey: peer.publicKey)
                precondition(ee != nil && es != nil && se != nil && proof.count == 64 && ok, "bench: crypto must work")
                if symmetric {
                    // MixHash: prologue; message 1: re, empty payload; message 2: e, sealed s,
                    // sealed proof; message 3: sealed s, sealed proof.
                    for data in [prologue, remoteEphemeral, [], e.publicKey, sealedStatic, sealedProof, sealedStatic, sealedProof] {
                        h = BLAKE2b.hash(h, data)
                    }
                    // MixKey for ee, es, se, then Split.
                    for ikm in [ee ?? [], es ?? [], se ?? [], []] { ck = BLAKE2b.hkdf(chainingKey: ck, inputKeyMaterial: ikm, outputs: 2)[0] }
                    let s1 = ChaChaPoly.seal(key: key, nonce: 0, ad: ad, plaintext: staticKey.publicKey)
                    let s2 = ChaChaPoly.seal(key: key, nonce: 1, ad: ad, plaintext: proofPayload)
                    let o1 = try? ChaChaPoly.open(key: key, nonce: 0, ad: ad, ciphertext: sealedStatic)
                    let o2 = try? ChaChaPoly.open(key: key, nonce: 1, ad: ad, ciphertext: sealedProof)
                    let o3 = try? ChaChaPoly.open(key: key, nonce: 0, ad: [], ciphertext: hello)
                    let s3 = ChaChaPoly.seal(key: key, nonce: 0, ad: [], plaintext: helloAck)
                    precondition(s1.count + s2.count + s3.count > 0 && o1 != nil && o2 != nil && o3 != nil, "bench: crypto must work")
                }
                count += 1
            }
        }
        return Double(count) / (threadCPUSeconds() - started)
    }

    /// User plus system CPU seconds of this whole process.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// CPU seconds the calling thread has used: a per-CPU-second figure that other
    /// processes on a busy machine do not distort.
    static func threadCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
    }

    /// Bytes per second of in-place encrypt and decrypt of Noise-sized messages, per
    /// wall-clock second and per CPU-second of the measuring thread.
    static func rawAEAD(seconds: Double) -> (encrypt: Double, decrypt: Double, encryptPerCPU: Double, decryptPerCPU: Double) {
        let key = Random.bytes(32)
        let size = 65519
        var buffer = [UInt8](repeating: 7, count: size + 16)
        var sealed: [[UInt8]] = []
        var bytes = 0
        var start = Instant.now()
        var cpu = threadCPUSeconds()
        var n: UInt64 = 0
        key.withUnsafeBytes { k in
            buffer.withUnsafeMutableBytes { b in
                while Instant.now().seconds(since: start) < seconds {
                    for _ in 0..<64 {
                        ChaChaPoly.seal(key: k, nonce: n, ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                        plaintext: b.baseAddress!, plaintextCount: size, output: b.baseAddress!)
                        n += 1
                        bytes += size
                    }
                }
            }
        }
        let enc = Double(bytes) / Instant.now().seconds(since: start)
        let encCPU = Double(bytes) / (threadCPUSeconds() - cpu)
        for i in 0..<64 { sealed.append(ChaChaPoly.seal(key: key, nonce: UInt64(i), ad: [], plaintext: [UInt8](repeating: 1, count: size))) }
        var out = [UInt8](repeating: 0, count: size)
        bytes = 0
        start = Instant.now()
        cpu = threadCPUSeconds()
        key.withUnsafeBytes { k in
            out.withUnsafeMutableBytes { o in
                while Instant.now().seconds(since: start) < seconds {
                    for i in 0..<64 {
                        let ok = sealed[i].withUnsafeBytes { c in
                            ChaChaPoly.open(key: k, nonce: UInt64(i), ad: UnsafeRawBufferPointer(start: nil, count: 0),
                                            ciphertext: c.baseAddress!, ciphertextCount: c.count, output: o.baseAddress)
                        }
                        precondition(ok, "bench: self-made ciphertext must open")
                        bytes += size
                    }
                }
            }
        }
        return (enc, Double(bytes) / Instant.now().seconds(since: start), encCPU, Double(bytes) / (threadCPUSeconds() - cpu))
    }

    struct Node {
        let process: Process
        let home: String
        let line: String
    }

    /// Starts `guts listen` (the binary next to this one) with a fresh identity.
    static func startListener() -> Node? {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let guts = dir.appendingPathComponent("guts").path
        let home = NSTemporaryDirectory() + "guts-bench-\(UUID().uuidString.prefix(8))"
        let keygen = Process()
        keygen.executableURL = URL(fileURLWithPath: guts)
        keygen.arguments = ["--home", home, "-q", "keygen"]
        keygen.standardOutput = FileHandle.nullDevice
        do { try keygen.run() } catch {
            print("cannot run \(guts): \(error)")
            return nil
        }
        keygen.waitUntilExit()
        // The bench is one client dialling as fast as it can: lift the per-address and
        // per-identity limits that would rightly stop such a client in the wild.
        try? "handshake-rate = 0\nmax-pending-per-address = 100000\nmax-pending-handshakes = 100000\nmax-sessions-per-peer = 100000\npeer-byte-rate = 1e12\npeer-byte-burst = 1e12\npeer-message-rate = 1e9\npeer-message-burst = 1e9\n"
            .write(toFile: home + "/config", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: guts)
        p.arguments = ["--home", home, "-q", "listen", "--listen", "127.0.0.1:0", "--max-connections", "100000"]
        let pipe = Pipe()
        p.standardOutput = pipe
        do { try p.run() } catch { return nil }
        var line = ""
        let handle = pipe.fileHandleForReading
        while !line.contains("\n") {
            let d = handle.availableData
            if d.isEmpty { break }
            line += String(decoding: d, as: UTF8.self)
        }
        return Node(process: p, home: home, line: line.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Complete handshakes (TCP connect, Noise XX, identity proofs, Hello) per second.
    static func handshakes(endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup, seconds: Double, concurrency: Int) -> Double {
        let loops = Array(group.makeIterator())
        let start = Instant.now()
        // One driver per event loop, each with its share of the dials in flight.
        let results = loops.map { loop in
            runDriver(loop: loop, endpoint: endpoint, config: config, start: start, seconds: seconds,
                      concurrency: max(1, concurrency / loops.count))
        }
        var count = 0
        var failures = 0
        for r in results {
            let (c, f) = (try? r.wait()) ?? (0, 0)
            count += c
            failures += f
        }
        let elapsed = Instant.now().seconds(since: start)
        if failures > 0 { print("  (\(failures) handshakes failed)") }
        return Double(count) / elapsed
    }

    static func runDriver(loop: EventLoop, endpoint: Endpoint, config: SessionConfig, start: Instant,
                          seconds: Double, concurrency: Int) -> EventLoopFuture<(Int, Int)> {
        final class Counter: @unchecked Sendable {
            var completed = 0
            var active = 0
            var failures = 0
        }
        let done = loop.makePromise(of: (Int, Int).self)
        let c = Counter()
        @Sendable func launch() {
            if Instant.now().seconds(since: start) >= seconds {
                if c.active == 0 { done.succeed((c.completed, c.failures)) }
                return
            }
            c.active += 1
            Dialer.dial(endpoint, config: config, group: loop, connectTimeout: 5).hop(to: loop).whenComplete { result in
                c.active -= 1
                switch result {
                case let .success(conn):
                    c.completed += 1
                    conn.channel.close(promise: nil)
                case .failure:
                    c.failures += 1
                }
                launch()
            }
        }
        loop.execute { for _ in 0..<concurrency { launch() } }
        return done.futureResult
    }

    /// Sends `megabytes` MiB as 1 MiB Objects messages, then a Ping; the Pong proves the
    /// listener decrypted and parsed everything before it. Returns payload bytes per second.
    static func bulk(endpoint: Endpoint, config: SessionConfig, group: EventLoopGroup, megabytes: Int) -> Double? {
        guard let conn = try? Dialer.dial(endpoint, config: config, group: group, connectTimeout: 5).wait() else {
            print("bulk: cannot connect")
            return nil
        }
        defer { conn.channel.close(promise: nil) }
        let chunk = [UInt8](repeating: 0x5a, count: SyncLimits.maxObjectsChunk)
        let start = Instant.now()
        var inflight: [EventLoopFuture<Void>] = []
        for i in 0..<megabytes {
            inflight.append(conn.send(.sync(.objects(Objects(requestID: 1, final: i == megabytes - 1, data: chunk)))))
            if inflight.count >= 8 {
                _ = try? inflight.removeFirst().wait()
            }
        }
        for f in inflight { _ = try? f.wait() }
        _ = try? conn.send(.ping(nonce: 99)).wait()
        while true {
            guard let m = try? conn.nextMessage(timeout: 60).wait() else {
                print("bulk: no pong")
                return nil
            }
            if case .pong(99) = m { break }
        }
        return Double(megabytes * SyncLimits.maxObjectsChunk) / Instant.now().seconds(since: start)
    }
}
