import GutsControl
import GutsSupport
import XCTest

final class ControlCodecTests: XCTestCase {
    func line(_ bytes: [UInt8]) -> [UInt8] {
        XCTAssertEqual(bytes.last, 0x0a, "a line ends with a newline")
        XCTAssertFalse(bytes.dropLast().contains(0x0a), "one line only")
        return Array(bytes.dropLast())
    }

    func decode(_ text: String) -> (Int?, Result<ControlRequest, ControlError>) {
        let (id, r) = ControlCodec.decodeRequest(Array(text.utf8))
        return (id, r)
    }

    func assertError(_ text: String, _ code: ControlError.Code, id: Int? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let (gotID, result) = decode(text)
        XCTAssertEqual(gotID, id, file: file, line: line)
        guard case let .failure(e) = result else { return XCTFail("accepted \(text)", file: file, line: line) }
        XCTAssertEqual(e.code, code, e.message, file: file, line: line)
    }

    func testRequestsRoundTrip() {
        let requests: [ControlRequest] = [
            .status, .peers, .publish(topic: "chat/room", data: [0, 1, 2, 255, 10]), .publish(topic: "t", data: []),
            .subscribe(topics: ["a", "b/c"]),
        ]
        for (i, r) in requests.enumerated() {
            let (id, decoded) = ControlCodec.decodeRequest(line(ControlCodec.encode(r, id: i + 40)))
            XCTAssertEqual(id, i + 40)
            XCTAssertEqual(try decoded.get(), r)
        }
    }

    func testDocumentedRequestForms() {
        XCTAssertEqual(try decode(#"{"id":1,"cmd":"status"}"#).1.get(), .status)
        XCTAssertEqual(try decode(#"{"cmd":"peers"}"#).1.get(), .peers)
        XCTAssertNil(decode(#"{"cmd":"peers"}"#).0)
        XCTAssertEqual(try decode(#"{"id":3,"cmd":"publish","topic":"chat","data":"aGVsbG8="}"#).1.get(),
                       .publish(topic: "chat", data: Array("hello".utf8)))
        XCTAssertEqual(try decode(#"{"id":4,"cmd":"subscribe","topics":["chat","chat","news"]}"#).1.get(),
                       .subscribe(topics: ["chat", "news"]))
        // Members a command does not use are ignored.
        XCTAssertEqual(try decode(#"{"id":5,"cmd":"status","verbose":true}"#).1.get(), .status)
    }

    func testBadRequestsAreExplainedUnderTheirID() {
        assertError("", .badRequest)
        assertError("not json", .badRequest)
        assertError("[1,2]", .badRequest)
        assertError(#"{"id":"1","cmd":"status"}"#, .badRequest)
        assertError(#"{"id":1.5,"cmd":"status"}"#, .badRequest)
        assertError(#"{"id":7}"#, .badRequest, id: 7)
        assertError(#"{"id":7,"cmd":5}"#, .badRequest, id: 7)
        assertError(#"{"id":8,"cmd":"reboot"}"#, .unknownCommand, id: 8)
        assertError(#"{"id":9,"cmd":"publish","topic":"t"}"#, .badRequest, id: 9)
        assertError(#"{"id":9,"cmd":"publish","data":"aGk="}"#, .badRequest, id: 9)
        assertError(#"{"id":9,"cmd":"publish","topic":"t","data":"not base64!"}"#, .badRequest, id: 9)
        assertError(#"{"id":10,"cmd":"subscribe","topics":[]}"#, .badRequest, id: 10)
        assertError(#"{"id":10,"cmd":"subscribe","topics":"chat"}"#, .badRequest, id: 10)
        assertError(#"{"id":10,"cmd":"subscribe","topics":["a",1]}"#, .badRequest, id: 10)
        let many = (0...ControlSocket.maxTopics).map { "\"t\($0)\"" }.joined(separator: ",")
        assertError(#"{"id":11,"cmd":"subscribe","topics":["# + many + "]}", .badRequest, id: 11)
        assertError(#"{"id":12,"cmd":"status","cmd":"peers"}"#, .badRequest)
    }

    func testHostileRequestsAreRefusedCheaply() {
        let deep = "{\"id\":1,\"cmd\":\"status\",\"x\":" + String(repeating: "[", count: 100_000) + "}"
        assertError(deep, .badRequest)
        let huge = [UInt8](repeating: UInt8(ascii: " "), count: ControlSocket.maxRequestLine + 1)
        guard case let .failure(e) = ControlCodec.decodeRequest(huge).1 else { return XCTFail("accepted") }
        XCTAssertEqual(e.code, .badRequest)
        assertError("{\"id\":1,\"cmd\":\"st\u{0}atus\"}", .badRequest)
        guard case .failure = ControlCodec.decodeRequest([0x7b, 0xff, 0xfe, 0x7d]).1 else { return XCTFail("accepted") }
    }

    func testResponsesRoundTrip() throws {
        let status = NodeStatus(peerID: "gtabc", agent: "guts/0.1.0", pid: 4242, listening: ["127.0.0.1:9000", "[::1]:9000"],
                                repositories: ["a", "team/b"], startedAt: 1_700_000_000.25, uptimeSeconds: 12.5,
                                inbound: 2, outbound: 1, open: 4)
        let peers = [
            PeerSummary(peerID: "gtp1", direction: .inbound, address: "127.0.0.1:5000", agent: "guts/0.1.0", isClient: false,
                        roundTrip: 0.001234, connectedSince: 1_700_000_001.5, bytesIn: 1234, bytesOut: 5678, transport: "tcp"),
            PeerSummary(peerID: "gtp2", direction: .outbound, address: "[::1]:9001", agent: "guts/0.2.0", isClient: true,
                        roundTrip: nil, connectedSince: 1_700_000_002, bytesIn: 0, bytesOut: UInt64(Int.max), transport: "quic"),
        ]
        let cases: [(ControlRequest, ControlResponse)] = [
            (.status, .status(status)),
            (.peers, .peers(peers)),
            (.peers, .peers([])),
            (.publish(topic: "t", data: [1]), .published(PublishReceipt(id: [0xab, 0xcd], topic: "t", origin: "gtme", bytes: 1))),
            (.subscribe(topics: ["t"]), .subscribed(topics: ["t", "u"])),
            (.subscribe(topics: ["t"]), .gossip(GossipDelivery(topic: "t", origin: "gtyou", id: [1, 2, 3], timestampMillis: 1_700_000_000_123,
                                                               data: [0, 0x0a, 0xff]))),
            (.status, .failure(ControlError(.forbidden, "go away \"now\""))),
            (.peers, .failure(ControlError(ControlError.Code(rawValue: "future-code"), "newer node"))),
        ]
        for (request, response) in cases {
            for id in [nil, 0, 99] as [Int?] {
                let (gotID, got) = try ControlCodec.decodeResponse(line(ControlCodec.encode(response, id: id)), answering: request)
                XCTAssertEqual(gotID, id)
                XCTAssertEqual(got, response)
            }
        }
    }

    func testDocumentedResponseForms() throws {
        let error = String(decoding: ControlCodec.encode(.failure(ControlError(.tooLarge, "too long")), id: nil), as: UTF8.self)
        XCTAssertEqual(error, #"{"id":null,"ok":false,"error":{"code":"too-large","message":"too long"}}"# + "\n")
        let event = String(decoding: ControlCodec.encode(.gossip(GossipDelivery(topic: "t", origin: "gto", id: [0xff], timestampMillis: 5,
                                                                                data: Array("hi".utf8))), id: 4), as: UTF8.self)
        XCTAssertEqual(event, #"{"id":4,"event":"gossip","topic":"t","origin":"gto","msg_id":"ff","timestamp_ms":5,"data":"aGk="}"# + "\n")
    }

    func testMalformedResponsesThrow() {
        for bad in ["", "{}", "[]", #"{"id":1}"#, #"{"id":1,"ok":false}"#, #"{"id":1,"ok":true}"#,
                    #"{"id":1,"event":"other"}"#, #"{"id":1,"ok":true,"peers":[{"peer_id":"x"}]}"#] {
            XCTAssertThrowsError(try ControlCodec.decodeResponse(Array(bad.utf8), answering: .peers), bad)
        }
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array(#"{"id":1,"ok":true,"peer_id":"x"}"#.utf8), answering: .status))
    }

    // MARK: Scores and bans

    let peerID = "gt" + String(repeating: "a", count: 56)

    func testPeerRequestsRoundTrip() {
        let requests: [ControlRequest] = [
            .scores(peers: []), .scores(peers: [peerID]), .ban(target: peerID, seconds: 3600), .ban(target: "10.0.0.0/8", seconds: nil),
            .ban(target: "::1", seconds: 1.5), .unban(target: "127.0.0.2"),
            .report(peer: peerID, event: "bad-objects", reason: "sent a \"corrupt\" pack\n"),
        ]
        for (i, r) in requests.enumerated() {
            let (id, decoded) = ControlCodec.decodeRequest(line(ControlCodec.encode(r, id: i)))
            XCTAssertEqual(id, i)
            XCTAssertEqual(try decoded.get(), r)
        }
    }

    func testDocumentedPeerRequestForms() {
        XCTAssertEqual(try decode(#"{"id":1,"cmd":"scores"}"#).1.get(), .scores(peers: []))
        XCTAssertEqual(try decode(#"{"id":1,"cmd":"scores","peers":null}"#).1.get(), .scores(peers: []))
        XCTAssertEqual(try decode(#"{"id":1,"cmd":"scores","peers":[]}"#).1.get(), .scores(peers: []))
        XCTAssertEqual(try decode(#"{"cmd":"scores","peers":[""# + peerID + #"",""# + peerID + #""]}"#).1.get(), .scores(peers: [peerID]))
        XCTAssertEqual(try decode(#"{"cmd":"ban","target":"127.0.0.2","seconds":null}"#).1.get(), .ban(target: "127.0.0.2", seconds: nil))
        XCTAssertEqual(try decode(#"{"cmd":"ban","target":"127.0.0.2","seconds":60}"#).1.get(), .ban(target: "127.0.0.2", seconds: 60))
        XCTAssertEqual(try decode(#"{"cmd":"unban","target":"10.0.0.0/8"}"#).1.get(), .unban(target: "10.0.0.0/8"))
        XCTAssertEqual(try decode(#"{"cmd":"report","peer":""# + peerID + #"","event":"stall","reason":""}"#).1.get(),
                       .report(peer: peerID, event: "stall", reason: ""))
    }

    func testHostilePeerRequestsAreBadRequests() {
        let tooMany = (0...ControlSocket.maxScorePeers).map { _ in "\"" + peerID + "\"" }.joined(separator: ",")
        let bad = [
            #"{"id":1,"cmd":"scores","peers":"gtaaa"}"#, #"{"id":1,"cmd":"scores","peers":[1]}"#,
            #"{"id":1,"cmd":"scores","peers":["gtaaa"]}"#, #"{"id":1,"cmd":"scores","peers":[null]}"#,
            #"{"id":1,"cmd":"scores","peers":[""# + peerID + #"x"]}"#,
            #"{"id":1,"cmd":"scores","peers":[""# + peerID.replacingOccurrences(of: "aaaa", with: "a1a!") + #""]}"#,
            #"{"id":1,"cmd":"scores","peers":{"a":1}}"#, #"{"id":1,"cmd":"scores","peers":["# + tooMany + "]}",
            #"{"id":1,"cmd":"ban"}"#, #"{"id":1,"cmd":"ban","target":"1.2.3.4"}"#, #"{"id":1,"cmd":"ban","seconds":5}"#,
            #"{"id":1,"cmd":"ban","target":"","seconds":5}"#, #"{"id":1,"cmd":"ban","target":5,"seconds":5}"#,
            #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":"5"}"#, #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":0}"#,
            #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":-60}"#, #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":0.5}"#,
            #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":1e300}"#, #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":true}"#,
            #"{"id":1,"cmd":"ban","target":"1.2.3.4","seconds":[5]}"#, #"{"id":1,"cmd":"ban","target":"1.2.3.4 ","seconds":5}"#,
            #"{"id":1,"cmd":"ban","target":"1.2.3.4\n","seconds":5}"#, #"{"id":1,"cmd":"ban","target":"é","seconds":5}"#,
            #"{"id":1,"cmd":"ban","target":""# + String(repeating: "1", count: 101) + #"","seconds":5}"#,
            #"{"id":1,"cmd":"unban"}"#, #"{"id":1,"cmd":"unban","target":null}"#,
            #"{"id":1,"cmd":"report","peer":""# + peerID + #"","event":"stall"}"#,
            #"{"id":1,"cmd":"report","peer":"gtaaa","event":"stall","reason":""}"#,
            #"{"id":1,"cmd":"report","peer":""# + peerID + #"","event":"STALL","reason":""}"#,
            #"{"id":1,"cmd":"report","peer":""# + peerID + #"","event":"","reason":""}"#,
            #"{"id":1,"cmd":"report","peer":""# + peerID + #"","event":"stall","reason":5}"#,
            #"{"id":1,"cmd":"report","peer":""# + peerID + #"","event":"stall","reason":""# + String(repeating: "x", count: 513) + #""}"#,
        ]
        for text in bad { assertError(text, .badRequest, id: 1) }
    }

    func testScoreResponsesRoundTrip() throws {
        let info = PeerScoreInfo(peerID: peerID, score: -62.5, components: [.init(name: "protocol-violation", value: -60),
                                                                            .init(name: "stall", value: -2.5), .init(name: "uptime", value: 0)],
                                 state: "banned", bannedUntil: 1_800_000_000, permanent: false, addresses: ["127.0.0.1:9000"],
                                 lastSeen: 1_799_999_000.5, connected: true)
        var other = info
        other.bannedUntil = nil
        other.permanent = true
        other.lastSeen = nil
        other.addresses = []
        let bans = [AddressBanInfo(prefix: "127.0.0.2", bannedUntil: nil, automatic: false),
                    AddressBanInfo(prefix: "10.0.0.0/8", bannedUntil: 1_800_000_000, automatic: true)]
        let cases: [(ControlRequest, ControlResponse)] = [
            (.scores(peers: []), .scores(PeerScores(peers: [info, other], addressBans: bans))),
            (.scores(peers: [peerID]), .scores(PeerScores(peers: [], addressBans: []))),
            (.ban(target: "x", seconds: nil), .changed(true)), (.unban(target: "x"), .changed(false)),
            (.report(peer: peerID, event: "stall", reason: ""), .reported(info)),
        ]
        for (request, response) in cases {
            let (gotID, got) = try ControlCodec.decodeResponse(line(ControlCodec.encode(response, id: 3)), answering: request)
            XCTAssertEqual(gotID, 3)
            XCTAssertEqual(got, response)
        }
        let text = String(decoding: ControlCodec.encode(.changed(true), id: 6), as: UTF8.self)
        XCTAssertEqual(text, #"{"id":6,"ok":true,"changed":true}"# + "\n")
        for bad in [#"{"id":1,"ok":true}"#, #"{"id":1,"ok":true,"scores":[]}"#, #"{"id":1,"ok":true,"scores":[{"peer_id":"x"}],"address_bans":[]}"#,
                    #"{"id":1,"ok":true,"scores":[],"address_bans":[{"prefix":1}]}"#] {
            XCTAssertThrowsError(try ControlCodec.decodeResponse(Array(bad.utf8), answering: .scores(peers: [])), bad)
        }
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array(#"{"id":1,"ok":true}"#.utf8), answering: .ban(target: "x", seconds: nil)))
    }

    // MARK: find

    static let peer = "gt" + String(repeating: "a", count: 56)
    static let repo = "gr" + String(repeating: "b", count: 56)

    func testFindRequestRoundTripAndGoldenForm() {
        for key in [Self.peer, Self.repo] {
            let bytes = ControlCodec.encode(.find(key: key), id: 12)
            XCTAssertEqual(String(decoding: line(bytes), as: UTF8.self), #"{"id":12,"cmd":"find","key":""# + key + #""}"#)
            XCTAssertEqual(try ControlCodec.decodeRequest(line(bytes)).request.get(), .find(key: key))
        }
        assertError(#"{"id":3,"cmd":"find"}"#, .badRequest, id: 3)
        assertError(#"{"id":3,"cmd":"find","key":5}"#, .badRequest, id: 3)
        assertError(#"{"id":3,"cmd":"find","key":"demo/app"}"#, .badRequest, id: 3)
        assertError(#"{"id":3,"cmd":"find","key":"gx"# + String(repeating: "a", count: 56) + #""}"#, .badRequest, id: 3)
        assertError(#"{"id":3,"cmd":"find","key":"gr"# + String(repeating: "1", count: 56) + #""}"#, .badRequest, id: 3)
    }

    func testFindResponseRoundTripAndGoldenForm() throws {
        let result = FindResult(kind: "repository", key: Self.repo, found: true, addresses: [],
                                providers: [FoundProvider(peerID: Self.peer, addresses: ["127.0.0.1:9000", "[::1]:9001"], expires: 1_800_000_000)],
                                hops: 2, messages: 7, seconds: 0.25)
        let bytes = ControlCodec.encode(.found(result), id: 4)
        XCTAssertEqual(String(decoding: line(bytes), as: UTF8.self),
                       #"{"id":4,"ok":true,"kind":"repository","key":""# + Self.repo + #"","found":true,"addresses":[],"providers":[{"peer_id":""#
                       + Self.peer + #"","addresses":["127.0.0.1:9000","[::1]:9001"],"expires":1800000000}],"hops":2,"messages":7,"seconds":0.25}"#)
        let decoded = try ControlCodec.decodeResponse(line(bytes), answering: .find(key: Self.repo))
        XCTAssertEqual(decoded.id, 4)
        XCTAssertEqual(decoded.response, .found(result))
        let peer = FindResult(kind: "peer", key: Self.peer, found: false, addresses: [], providers: [], hops: 0, messages: 3, seconds: 5)
        XCTAssertEqual(try ControlCodec.decodeResponse(line(ControlCodec.encode(.found(peer), id: 5)), answering: .find(key: Self.peer)).response,
                       .found(peer))
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array(#"{"id":4,"ok":true,"kind":"peer"}"#.utf8), answering: .find(key: Self.peer)))
        XCTAssertThrowsError(try ControlCodec.decodeResponse(Array((#"{"id":4,"ok":true,"kind":"peer","key":"k","found":true,"addresses":[],"#
            + #""providers":[{"peer_id":"p","addresses":[],"expires":-1}],"hops":1,"messages":1,"seconds":1}"#).utf8), answering: .find(key: Self.peer)))
    }
}
