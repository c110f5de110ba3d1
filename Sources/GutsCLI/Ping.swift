import GutsAddress
import GutsCrypto
import GutsIdentity
import GutsSupport
import GutsTransport
import GutsWire
import NIOPosix

/// `guts ping`: round trips over an authenticated session, reported as ping(8) does.
enum PingCommand: Command {
    static let name = "ping"
    static let summary = "measure round-trip time to a node over an authenticated connection"
    static let synopsis = "ping [-c COUNT] [-i SECONDS] [-W SECONDS] [-w DEADLINE] [-q] [--network ID] [--ephemeral] [--known-peers MODE] [--transport tcp|quic] [PEERID@]ADDR|ALIAS|PEERID"
    static let options = [
        OptionSpec("count", short: "c", value: "COUNT", help: "stop after COUNT pings (default: until interrupted)"),
        OptionSpec("interval", short: "i", value: "SECONDS", help: "wait SECONDS between pings (default 1)"),
        OptionSpec("timeout", short: "W", value: "SECONDS", help: "wait SECONDS for each pong, for the TCP connect and for the handshake (default 5)"),
        OptionSpec("deadline", short: "w", value: "DEADLINE", help: "stop after DEADLINE seconds in all, however many pings were sent or answered"),
        OptionSpec("network", value: "ID", help: "network ID to connect within (default: network from config, empty)"),
        Network.ephemeralOption,
        PeerResolver.option,
        PeerResolver.transportOption,
        DHTLookup.bootstrapOption,
    ]

    struct Stats {
        var transmitted = 0
        var rtts: [Double] = []

        var received: Int { rtts.count }
        var loss: Double { transmitted == 0 ? 0 : Double(transmitted - received) * 100 / Double(transmitted) }
        var min: Double { rtts.min() ?? 0 }
        var max: Double { rtts.max() ?? 0 }
        var avg: Double { rtts.isEmpty ? 0 : rtts.reduce(0, +) / Double(rtts.count) }
        /// Mean deviation as ping(8) reports it: sqrt(mean(x^2) - mean(x)^2).
        var mdev: Double {
            guard !rtts.isEmpty else { return 0 }
            let mean = avg
            let sq = rtts.reduce(0) { $0 + $1 * $1 } / Double(rtts.count)
            return (Swift.max(0, sq - mean * mean)).squareRoot()
        }
    }

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count == 1 else { throw UsageError("ping needs exactly one address: [PEERID@]HOST[:PORT], an alias, or a PEERID to look up in the DHT") }
        let count = try args.int("count", in: 1...Int(Int32.max))
        let interval = try args.seconds("interval", in: 0.001...3600) ?? 1
        let timeout = try args.seconds("timeout", in: 0.001...3600) ?? 5
        let deadline = try args.seconds("deadline", in: 0.001...31_536_000)
        // -q: the summary only (as ping(8) -q).
        let quiet = context.quiet
        var config = try NodeConfig.load(home: context.homePath)
        config.connectTimeout = timeout
        config.handshakeTimeout = timeout
        try Network.applyNetworkOption(args, to: &config)
        let peers = try PeerResolver(args, config: config, context: context)
        let target = try DHTLookup.resolveTarget(args.positionals[0], peers, context, args)
        let endpoint = target.endpoint
        let identity = try Network.clientIdentity(context, args)

        let signals = SignalWatcher.install()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let connection = try peers.dial(target, config: Network.sessionConfig(identity: identity, config: config),
                                        group: group, connectTimeout: timeout, context)
        guard let peer = connection.peer else { throw CommandError(.protocolError, "session not established") }
        signals.onSignal { _ in connection.close(.shutdown, "ping interrupted") }
        // Ends promptly when standard output's reader goes away (`| head -3`).
        let hangup = StdoutWatcher.start { connection.close(.shutdown, "ping output closed") }
        defer { hangup.stop() }
        func stopping() -> Bool { signals.received != 0 || hangup.fired }

        if !context.json && !quiet {
            context.out("PING \(peer.peerID)@\(connection.remoteAddress): handshake \(Network.ms(peer.handshakeSeconds)) ms")
        }
        var stats = Stats()
        let started = Instant.now()
        func left() -> Double? { deadline.map { $0 - Instant.now().seconds(since: started) } }
        var seq = 0
        var failure: CommandError?
        loop: while count.map({ seq < $0 }) ?? true {
            if stopping() { break }
            if let l = left(), l <= 0 { break }
            seq += 1
            let nonce = Random.uint64()
            let sentAt = Instant.now()
            stats.transmitted += 1
            do {
                try connection.send(.ping(nonce: nonce)).wait()
            } catch {
                if !stopping() { failure = Network.describe(error, endpoint: endpoint) }
                break
            }
            // Wait for the matching pong; other messages are ignored.
            var rtt: Double?
            while rtt == nil {
                var remaining = timeout - Instant.now().seconds(since: sentAt)
                if let l = left() { remaining = min(remaining, l) }
                if remaining <= 0 { break }
                do {
                    let message = try connection.nextMessage(timeout: remaining).wait()
                    if case let .pong(n) = message, n == nonce { rtt = Instant.now().seconds(since: sentAt) }
                } catch TransportError.timeout {
                    break
                } catch {
                    if !stopping() { failure = Network.describe(error, endpoint: endpoint) }
                    break loop
                }
            }
            if let rtt {
                stats.rtts.append(rtt)
                if quiet {
                    // -q: the summary only
                } else if context.json {
                    context.out(JSON.object(["type": .string("pong"), "seq": .int(seq), "peer_id": .string(peer.peerID.description),
                                             "rtt_ms": .double(rtt * 1000)]))
                } else {
                    context.out("pong from \(peer.peerID.short): seq=\(seq) time=\(Network.ms(rtt)) ms")
                }
            } else if let l = left(), l <= 0 {
                break  // the deadline ended the wait: lost, as ping(8) counts it
            } else if !quiet {
                if context.json {
                    context.out(JSON.object(["type": .string("timeout"), "seq": .int(seq), "timeout_ms": .double(timeout * 1000)]))
                } else {
                    context.out("no pong for seq=\(seq) within \(formatNumber(timeout)) s")
                }
            }
            if let count, seq >= count { break }
            var wait = interval - Instant.now().seconds(since: sentAt)
            if let l = left() {
                if l <= 0 { break }
                wait = min(wait, l)
            }
            if wait > 0, signals.sleep(wait) { break }
        }
        connection.close(.shutdown, "ping finished")
        _ = try? connection.closeFuture.wait()
        let elapsedMs = Int((Instant.now().seconds(since: started) * 1000).rounded())
        if context.json {
            context.out(JSON.object([
                "type": .string("summary"), "peer_id": .string(peer.peerID.description),
                "transmitted": .int(stats.transmitted), "received": .int(stats.received),
                "loss_percent": .double(stats.loss), "time_ms": .int(elapsedMs),
                "min_ms": .double(stats.min * 1000), "avg_ms": .double(stats.avg * 1000),
                "max_ms": .double(stats.max * 1000), "mdev_ms": .double(stats.mdev * 1000),
            ]))
        } else {
            if !quiet { context.out("") }
            context.out("--- \(endpoint.address) guts ping statistics ---")
            let loss = stats.loss == stats.loss.rounded() ? String(Int(stats.loss)) : format3(stats.loss)
            context.out("\(stats.transmitted) pings transmitted, \(stats.received) received, \(loss)% loss, time \(elapsedMs)ms")
            if stats.received > 0 {
                context.out("rtt min/avg/max/mdev = \(Network.ms(stats.min))/\(Network.ms(stats.avg))/\(Network.ms(stats.max))/\(Network.ms(stats.mdev)) ms")
            }
        }
        if let failure, stats.received == 0 { throw failure }
        if let failure { context.error(failure.message) }
        return stats.received > 0 ? .ok : .noReply
    }
}
