import GutsCrypto
import GutsDHT
import GutsPolicy
import GutsSupport
import GutsWire
import XCTest

/// Fixed points on both clocks for unit tests.
let monotonicStart: UInt64 = 1_000_000_000_000
let unixStart: UInt64 = 1_800_000_000

/// Both clocks `seconds` after the start.
func at(_ seconds: Double) -> DHTTime {
    DHTTime(monotonic: Instant(nanoseconds: monotonicStart + UInt64(seconds * 1e9)), unixSeconds: unixStart + UInt64(seconds))
}

/// A deterministic key pair: the seed is `n` as 4 big-endian bytes, then 0xA5 bytes.
func keyPair(_ n: Int) -> Ed25519KeyPair {
    var seed = [UInt8](repeating: 0xA5, count: 32)
    seed[0] = UInt8(truncatingIfNeeded: n >> 24)
    seed[1] = UInt8(truncatingIfNeeded: n >> 16)
    seed[2] = UInt8(truncatingIfNeeded: n >> 8)
    seed[3] = UInt8(truncatingIfNeeded: n)
    guard let kp = try? Ed25519KeyPair(seed: seed) else { preconditionFailure("32-byte seed") }
    return kp
}

func address(_ text: String) -> DHTAddress {
    guard let a = DHTAddress(text) else { preconditionFailure("bad test address \(text)") }
    return a
}

func contact(_ key: Ed25519KeyPair, _ addressText: String) -> DHTContact {
    guard let c = DHTContact(publicKey: key.publicKey, address: address(addressText)) else { preconditionFailure("key") }
    return c
}

/// Bytes from hex with spaces and newlines ignored (golden layouts are written field by field).
func hex(_ text: String) -> [UInt8] {
    let digits = text.filter { !$0.isWhitespace }
    guard let bytes = Hex.decode(digits) else { preconditionFailure("bad hex in test") }
    return bytes
}

func repeated(_ byte: UInt8, _ n: Int) -> [UInt8] { [UInt8](repeating: byte, count: n) }

/// Keys (by seed number, starting at `from`) whose node IDs fall into bucket `bucket` of
/// `local`; at most `count`.
func keys(inBucket bucket: Int, of local: NodeID, count: Int, from: Int = 1000) -> [Ed25519KeyPair] {
    var out: [Ed25519KeyPair] = []
    var n = from
    while out.count < count, n < from + 200_000 {
        let k = keyPair(n)
        if NodeID(publicKey: k.publicKey).commonPrefixLength(with: local) == bucket { out.append(k) }
        n += 1
    }
    return out
}

/// Sends of one kind among actions.
func sends(_ actions: [DHTAction]) -> [(DHTContact, DHTMessage)] {
    actions.compactMap {
        if case let .send(c, m) = $0 { return (c, m) }
        return nil
    }
}

func replies(_ actions: [DHTAction]) -> [DHTMessage] {
    actions.compactMap {
        if case let .reply(_, m) = $0 { return m }
        return nil
    }
}

/// A synchronous in-memory network of engines for convergence tests: messages are delivered
/// in order, instantly, through the codec; an answer counts as a verified contact for the
/// node that asked, a request from a listening node for the node asked.
struct TestNetwork {
    var engines: [NodeID: DHTEngine] = [:]
    var contacts: [NodeID: DHTContact] = [:]
    var finished: [NodeID: [LookupID: LookupResult]] = [:]
    var messages = 0
    var time = at(0)

    mutating func add(_ key: Ed25519KeyPair, _ addressText: String, config: DHTConfig, seed: UInt64) -> NodeID {
        let c = contact(key, addressText)
        var engine = DHTEngine(config: config, identity: key, seed: seed, now: time.monotonic)
        _ = engine.setAddresses([c.address], now: time)
        engines[c.id] = engine
        contacts[c.id] = c
        return c.id
    }

    mutating func run(_ actions: [DHTAction], at origin: NodeID) throws {
        var queue: [(NodeID, [DHTAction])] = [(origin, actions)]
        while !queue.isEmpty {
            let (node, list) = queue.removeFirst()
            for action in list {
                var target: NodeID?
                var message: DHTMessage?
                switch action {
                case let .send(c, m): (target, message) = (c.id, m)
                case let .reply(id, m): (target, message) = (id, m)
                default: break
                }
                if let target, let message {
                    guard var engine = engines[target], let sender = contacts[node] else { continue }
                    let decoded = try DHTProtocol.decodeMessage(try MessageCodec.encode(message))
                    XCTAssertEqual(decoded, message)
                    messages += 1
                    var out: [DHTAction] = []
                    if decoded.kind.isAnswer { out += engine.peerVerified(sender, now: time) }
                    out += engine.receive(decoded, from: sender, now: time)
                    if !decoded.kind.isAnswer { out += engine.peerVerified(sender, now: time) }
                    engines[target] = engine
                    queue.append((target, out))
                    continue
                }
                switch action {
                case let .lookupFinished(id, result):
                    finished[node, default: [:]][id] = result
                case let .ping(c):
                    let alive = engines[c.id] != nil
                    engines[node]?.pingAnswered(c.id, alive: alive, now: time)
                default:
                    break
                }
            }
        }
    }
}
