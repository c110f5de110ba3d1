import GutsControl
import GutsCrypto
import GutsGit
import GutsGossip
import GutsNode
import GutsNoise
import GutsDHT
import GutsSync
import GutsTrust
import GutsIdentity
import GutsWire

/// The seed inputs of the targets whose inputs are protocol bytes, made with the real
/// encoders and keys (Fuzz/make-corpus.sh writes them to Fuzz/Corpus/<target>/seed-<name>;
/// the git targets' seeds come from git itself, in that script).
enum FuzzSeeds {
    static func oid(_ fill: UInt8, _ length: Int = 20) -> WireOID {
        guard let id = WireOID([UInt8](repeating: fill, count: length)) else { fuzzFail("oid") }
        return id
    }

    /// One message of every type, with non-trivial fields.
    static var messages: [(String, Message)] {
        [
            ("hello", .hello(Hello(minVersion: 1, maxVersion: 3, capabilities: ["ping", "refs"], agent: "guts/0.1 ü"))),
            ("hello-ack", .helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "guts/0.1"))),
            ("ping", .ping(nonce: 0x0102_0304_0506_0708)),
            ("pong", .pong(nonce: 7)),
            ("goodbye", .goodbye(Goodbye(code: .tooManyConnections, reason: "full"))),
            ("error", .error(ErrorReply(requestID: 7, code: .notFound, message: "no such repository"))),
            ("get-refs", .sync(.getRefs(GetRefs(requestID: 1, repository: "alice/project", prefix: "refs/heads/")))),
            ("refs", .sync(.refs(Refs(requestID: 1, head: "refs/heads/main", refs: [
                RefEntry(name: "refs/heads/main", id: oid(0xaa)), RefEntry(name: "refs/tags/v1", id: oid(0xbb, 32)),
            ])))),
            ("get-objects", .sync(.getObjects(GetObjects(requestID: 2, repository: "alice/project", wants: [oid(1), oid(2)],
                                                         haves: [oid(3)])))),
            ("objects", .sync(.objects(Objects(requestID: 2, final: true, data: Array("PACK".utf8) + [0, 0, 0, 2, 0, 0, 0, 0])))),
            ("list-repositories", .sync(.listRepositories(ListRepositories(requestID: 3, after: "alice/a")))),
            ("repositories", .sync(.repositories(Repositories(requestID: 3, repositories: [
                RepositoryEntry(name: "alice/b", id: [UInt8](repeating: 5, count: 32), restricted: true, head: "refs/heads/main",
                                headID: oid(0xaa)),
                RepositoryEntry(name: "bob", head: "", headID: nil),
            ], more: true)))),
            ("dht-find-node", .app(DHTMessage.findNode(FindNode(requestID: 4, target: dhtID(0x31))))),
            ("dht-nodes", .app(DHTMessage.nodes(Nodes(requestID: 4, contacts: dhtContacts)))),
            ("dht-get-providers", .app(DHTMessage.getProviders(GetProviders(requestID: 5, repository: dhtID(0x11))))),
            ("dht-providers", .app(DHTMessage.providers(Providers(requestID: 5, records: [dhtProvider], closer: dhtContacts)))),
            ("dht-add-provider", .app(DHTMessage.addProvider(AddProvider(record: dhtProvider)))),
            ("dht-get-peer", .app(DHTMessage.getPeer(GetPeer(requestID: 6, target: dhtID(0x32))))),
            ("dht-peer-record", .app(DHTMessage.peerRecord(PeerRecordAnswer(requestID: 6, record: nil, closer: dhtContacts)))),
            ("refs-changed", .app(Announcement.refsChanged(RefsChanged(repository: "alice/project",
                                                                      refsHash: [UInt8](repeating: 0x5a, count: 32))))),
            ("new-repository", .app(Announcement.newRepository(NewRepository(repository: "bob/tools")))),
            ("gossip", .gossip(.gossip(signedGossip))),
            ("subscribe", .gossip(.subscribe(Subscribe(subscribe: true, topics: ["guts/commits", "chat"])))),
            ("unsubscribe", .gossip(.subscribe(Subscribe(subscribe: false, topics: ["chat"])))),
            ("ihave", .gossip(.iHave(IHave(topic: "chat", ids: [[UInt8](repeating: 1, count: 32), [UInt8](repeating: 2, count: 32)])))),
            ("iwant", .gossip(.iWant(IWant(ids: [[UInt8](repeating: 3, count: 32)])))),
            ("prune", .gossip(.prune(Prune(topic: "chat")))),
        ]
    }

    /// A gossip message carrying an announcement, signed by identity 2.
    static var signedGossip: Gossip {
        let key = fuzzEd25519(2)
        let data = (try? Announcement.newRepository(NewRepository(repository: "bob/tools")).encoded()) ?? []
        var g = Gossip(topic: "guts/repositories", origin: key.publicKey, sequence: 3, timestamp: 1_700_000_000_000,
                       data: data, signature: [])
        g.signature = key.sign(g.signedBytes)
        return g
    }

    static func encode(_ m: Message) -> [UInt8] {
        guard let bytes = try? MessageCodec.encode(m) else { fuzzFail("encode \(m.typeName)") }
        return bytes
    }

    /// The header a large unsolicited answer starts with (its body is skipped as it arrives).
    static let largeObjectsHeader: [UInt8] = [0x13, 0, 0x10, 0, 0, 0, 0, 0, 9, 1]

    static var all: [(target: String, name: String, bytes: [UInt8])] {
        var seeds: [(String, String, [UInt8])] = []
        // wire-message: type byte then body; announcements whole (gossip data).
        // (The QUIC advertisements only here: `messages` also feeds established sessions.)
        let quicAdvertising: [(String, Message)] = [
            ("hello-quic", .hello(Hello(minVersion: 1, maxVersion: 1, capabilities: ["ping", "dht"], agent: "guts/0.1", quicPort: 9000))),
            ("hello-ack-quic", .helloAck(HelloAck(version: 1, capabilities: ["ping"], agent: "guts/0.1", quicPort: 9001))),
            ("dht-put-peer-quic", .app(DHTMessage.putPeer(PutPeer(record: dhtPeerWithQUIC)))),
        ]
        for (name, m) in messages + quicAdvertising {
            let e = encode(m)
            seeds.append(("wire-message", name, [e[0]] + e[5...]))
            if case .app(let a) = m, a is Announcement { seeds.append(("wire-message", name + "-data", e)) }
        }
        // wire-frames: flags, read size, raw bytes.
        var hs = fuzzPeerHandshake(.initiator, network: "")
        let m1 = (try? hs.writeMessage(payload: [])) ?? []
        seeds.append(("wire-frames", "responder-message-1", [0, 0] + fuzzFrame(m1)))
        seeds.append(("wire-frames", "responder-message-1-split", [0, 3] + fuzzFrame(m1) + fuzzFrame([UInt8](repeating: 7, count: 96))))
        seeds.append(("wire-frames", "initiator-message-2", [1, 0] + fuzzFrame([UInt8](repeating: 9, count: 193))))
        seeds.append(("wire-frames", "oversized", [0, 0, 0xff, 0xff] + [UInt8](repeating: 1, count: 64)))
        seeds.append(("wire-frames", "eof", [3, 1] + fuzzFrame(Array(m1.prefix(16)))))
        // noise-handshake: flags, frame size, read size, then proof bytes or plaintext.
        let ping = encode(.ping(nonce: 1))
        let sample = encode(.sync(.getRefs(GetRefs(requestID: 1, repository: "alice/project"))))
        for (name, flags) in [("responder-honest", 0x80), ("initiator-honest", 0x81), ("initiator-expects-a", 0xA1),
                              ("initiator-expects-b", 0xC1), ("responder-self", 0x84), ("initiator-self", 0x85),
                              ("responder-mismatch", 0x82), ("initiator-mismatch", 0x83), ("responder-raw", 0x10),
                              ("initiator-raw", 0x11)] {
            seeds.append(("noise-handshake", name, [UInt8(flags), 0, 0] + ping + sample))
        }
        let strangerProof = IdentityProof.make(identity: fuzzEd25519(9), handshakeHash: [UInt8](repeating: 0, count: 64),
                                               noiseStatic: fuzzX25519(0x49).publicKey)
        seeds.append(("noise-handshake", "responder-any-proof", [0x88, 0, 0, 0, UInt8(strangerProof.count)] + strangerProof + ping))
        seeds.append(("noise-handshake", "initiator-any-proof", [0x89, 0, 0, 0, UInt8(strangerProof.count)] + strangerProof + ping))
        for variant: UInt8 in 0..<3 {
            seeds.append(("noise-handshake", "responder-tampered-\(variant)", [0x8C, 0, 0, variant, 40, 1] + ping))
            seeds.append(("noise-handshake", "initiator-tampered-\(variant)", [0x8D, 0, 0, variant, 40, 1] + ping))
        }
        // session-stream: flags, frame size, read size, then the plaintext stream.
        let traffic = [encode(.ping(nonce: 5)), encode(.pong(nonce: 6))] + messages.dropFirst(5).map { encode($0.1) }
        let stream = traffic.reduce([], +)
        seeds.append(("session-stream", "responder-hello", [0, 0xff, 0] + encode(messages[0].1) + stream))
        seeds.append(("session-stream", "responder-established", [1, 0xff, 0] + stream))
        seeds.append(("session-stream", "initiator-hello-ack", [2, 0xff, 0] + encode(messages[1].1) + stream))
        seeds.append(("session-stream", "initiator-established", [3, 0xff, 0] + stream))
        seeds.append(("session-stream", "small-frames", [1, 6, 1] + stream))
        seeds.append(("session-stream", "goodbye", [3, 0xff, 0] + encode(.goodbye(Goodbye(code: .shutdown, reason: "bye"))) + stream))
        seeds.append(("session-stream", "unsolicited-answer", [1, 0xff, 0] + largeObjectsHeader + stream))
        seeds.append(("session-stream", "expected-answer", [5, 0xff, 0] + largeObjectsHeader + stream))
        seeds.append(("session-stream", "forged", [9, 0xff, 0] + stream))
        seeds.append(("session-stream", "keepalive", [0x31, 0xff, 0] + stream))
        // pack-indexer, assembled by the harness: a blob, an OFS and a REF delta on it, a REF
        // delta on a thin-pack base, a tree and a commit.
        let blob = Array(String(repeating: "hello fuzz\n", count: 5).utf8)
        let blobID = ObjectID.compute(type: .blob, body: blob)
        let thinBlob = fuzzThinBases.objects.values.first { $0.type == .blob }?.body ?? []
        let thinIndex = fuzzThinBases.objects.keys.sorted().firstIndex(of: ObjectID.compute(type: .blob, body: thinBlob)) ?? 0
        func varint(_ value: Int) -> [UInt8] {
            var out: [UInt8] = []
            var n = value
            repeat {
                out.append(UInt8(n & 0x7F) | (n > 0x7F ? 0x80 : 0))
                n >>= 7
            } while n > 0
            return out
        }
        // Copy the whole base (offset 0, two size bytes), then insert "extra\n".
        func delta(_ base: [UInt8]) -> [UInt8] {
            varint(base.count) + varint(base.count + 6) + [0xB0, UInt8(base.count & 0xff), UInt8(base.count >> 8), 6]
                + Array("extra\n".utf8)
        }
        func entry(_ kind: UInt8, _ data: [UInt8], _ extra: [UInt8] = []) -> [UInt8] {
            [kind, UInt8(data.count >> 8), UInt8(data.count & 0xff)] + data + extra
        }
        let tree = Array("100644 a.txt".utf8) + [0] + blobID.bytes
        let commit = Array("tree \(ObjectID.compute(type: .tree, body: tree).hex)\nauthor A <a@b> 1 +0000\ncommitter C <c@d> 1 +0000\n\nmsg\n".utf8)
        let entries = entry(3, blob) + entry(6, delta(blob), [0]) + entry(7, delta(blob), [3]) + entry(2, tree) + entry(1, commit)
        seeds.append(("pack-indexer", "assembled", [4] + entries))
        seeds.append(("pack-indexer", "assembled-thin", [6] + entries + entry(7, delta(thinBlob), [UInt8(thinIndex)])))
        // control-codec and json: request and response lines as the codec writes them.
        let requests: [(String, ControlRequest)] = [("status", .status), ("peers", .peers),
                                                    ("publish", .publish(topic: "chat", data: Array("hi\n".utf8))),
                                                    ("subscribe", .subscribe(topics: ["chat", "guts/commits"]))]
        let status = NodeStatus(peerID: fuzzOwnID.description, agent: "guts/0.1", pid: 4242, listening: ["127.0.0.1:9000"],
                                repositories: ["alice/project"], startedAt: 1_700_000_000.25, uptimeSeconds: 12.5,
                                inbound: 1, outbound: 2, open: 3)
        let peer = PeerSummary(peerID: fuzzPeerA.description, direction: .outbound, address: "127.0.0.1:9001", agent: "guts/0.1",
                               isClient: false, roundTrip: 0.0021, connectedSince: 1_700_000_001.5, bytesIn: 10, bytesOut: 20, transport: "quic")
        let responses: [(String, ControlResponse)] = [
            ("status", .status(status)), ("peers", .peers([peer])),
            ("published", .published(PublishReceipt(id: [UInt8](repeating: 0xab, count: 32), topic: "chat",
                                                    origin: fuzzOwnID.description, bytes: 3))),
            ("subscribed", .subscribed(topics: ["chat"])),
            ("gossip", .gossip(GossipDelivery(topic: "chat", origin: fuzzPeerA.description, id: [UInt8](repeating: 1, count: 32),
                                              timestampMillis: 1_700_000_000_000, data: Array("hello".utf8)))),
            ("failure", .failure(ControlError(.badRequest, "publish needs \"topic\" (a string)"))),
        ]
        for (i, (name, r)) in requests.enumerated() {
            let line = Array(ControlCodec.encode(r, id: i + 1).dropLast())
            seeds.append(("control-codec", "request-" + name, line))
            seeds.append(("json", "request-" + name, line))
        }
        for (name, r) in responses {
            let line = Array(ControlCodec.encode(r, id: name == "gossip" ? nil : 1).dropLast())
            seeds.append(("control-codec", "response-" + name, line))
            seeds.append(("json", "response-" + name, line))
        }
        seeds.append(("json", "values", Array(#" {"a":[1,-0,2.5,-3e2,1E+3,true,false,null],"s":"\u00e9\ud83d\ude00\n\"\\","o":{}} "#.utf8)))
        // trust: the format byte, then a valid document, signatures blob, signed refs and
        // proposal made with the harness keys.
        seeds += trustSeeds.map { ("trust", $0.0, $0.1) }
        // quic: a stream of messages cut into 7-byte pieces. (Fuzz/Corpus/quic/valid-certificate
        // is a certificate of the harness key in network "fuzz", made once: certificates
        // carry a random serial number, so it cannot be regenerated byte for byte.)
        var quicStream: [UInt8] = []
        for m in [Message.ping(nonce: 7), .pong(nonce: 7), .goodbye(Goodbye(code: .shutdown, reason: "done"))] {
            quicStream += (try? MessageCodec.encode(m)) ?? []
        }
        seeds.append(("quic", "stream", [1, 6] + quicStream))
        return seeds
    }

    /// One valid value of each trust format, prefixed with the harness's format byte.
    static var trustSeeds: [(String, [UInt8])] {
        let a = fuzzEd25519(3), b = fuzzEd25519(4)
        guard let pa = try? PeerID(publicKey: a.publicKey), let pb = try? PeerID(publicKey: b.publicKey) else { fuzzFail("peer IDs") }
        let doc = IdentityDocument(name: "alice/project", description: "fuzz seed", delegates: [pa, pb])
        guard let rid = RepositoryID(bytes: doc.hash) else { fuzzFail("repository ID") }
        let sigs = DocumentSignatures([pa: a.sign(doc.signingMessage)])
        var refs = SignedRefs(repository: rid, delegate: pa, sequence: 2, time: 1_700_000_000,
                              refs: [("refs/heads/main", ObjectID.compute(type: .blob, body: [1])),
                                     ("refs/tags/v1", ObjectID.compute(type: .blob, body: [2]))])
        refs.sign(with: a)
        var next = doc
        next.version = 2
        next.previous = doc.hash
        next.threshold = 2
        let proposal = IdentityProposal(repository: rid, document: next, signatures: DocumentSignatures([pb: b.sign(next.signingMessage)]))
        return [("document", [0] + doc.serialized()), ("signatures", [1] + sigs.serialized()),
                ("signed-refs", [2] + refs.serialized()), ("proposal", [3] + proposal.serialized())]
    }

    static func dhtID(_ fill: UInt8) -> NodeID {
        guard let id = NodeID(bytes: [UInt8](repeating: fill, count: 32)) else { fuzzFail("node ID") }
        return id
    }

    /// Two contacts, one IPv4 and one IPv6, with the harness keys.
    static var dhtContacts: [DHTContact] {
        guard let a4 = DHTAddress("192.0.2.1:9000"), let a6 = DHTAddress("[2001:db8::1]:9000"),
              let c1 = DHTContact(publicKey: fuzzEd25519(5).publicKey, address: a4),
              let c2 = DHTContact(publicKey: fuzzEd25519(6).publicKey, address: a6) else { fuzzFail("contacts") }
        return [c1, c2]
    }

    /// A provider record with a signature of the right length (the codec does not verify it).
    /// A peer record with TCP and QUIC addresses (families 4, 0x84, 0x86).
    static var dhtPeerWithQUIC: PeerRecord {
        guard let a = DHTAddress("192.0.2.1:9000"), let q = DHTAddress("quic/192.0.2.1:9001"),
              let q6 = DHTAddress("quic/[2001:db8::1]:9000") else { fuzzFail("address") }
        return PeerRecord(publisher: fuzzEd25519(5).publicKey, sequence: 5, expires: 1_800_000_000,
                          addresses: [a, q, q6], signature: [UInt8](repeating: 0x44, count: 64))
    }

    static var dhtProvider: ProviderRecord {
        guard let a = DHTAddress("192.0.2.1:9000") else { fuzzFail("address") }
        return ProviderRecord(repository: dhtID(0x11), publisher: fuzzEd25519(5).publicKey, expires: 1_800_000_000,
                              addresses: [a], signature: [UInt8](repeating: 0x33, count: 64))
    }
}
