@testable import GutsQUIC
import GutsSync
import GutsWire
import XCTest

/// One QUIC stream's messages (guts-protocol(7), QUIC, Streams).
final class FramingTests: XCTestCase {
    let registry = MessageRegistry([SyncProtocol()])

    func messages(_ items: [StreamDecoder.Item]) -> [Message] {
        items.compactMap { if case let .message(m) = $0 { return m } else { return nil } }
    }

    /// With no request outstanding, an answer announcing more than 64 KiB is skipped from
    /// its header as over TCP (ADMISSION AND LIMITS): its body is never buffered, and the
    /// message after it is read.
    func testLargeUnsolicitedAnswerIsSkippedFromItsHeader() throws {
        let big = try MessageCodec.encode(.sync(.objects(Objects(requestID: 9, final: false, data: [UInt8](repeating: 7, count: 1 << 20)))))
        let ping = try MessageCodec.encode(.ping(nonce: 5))
        var decoder = StreamDecoder()
        var items: [StreamDecoder.Item] = []
        var stream = big + ping
        var sizes = [5, 1000, 70_000]  // the header, then pieces of the body and what follows
        while !stream.isEmpty {
            let n = min(stream.count, sizes.isEmpty ? 300_000 : sizes.removeFirst())
            decoder.append(Array(stream.prefix(n)))
            stream.removeFirst(n)
            while let item = try decoder.next(registry, skipLargeAnswers: true) { items.append(item) }
            XCTAssertLessThan(decoder.bufferedBytes, 300_000, "the skipped body is not buffered")
        }
        guard case let .skipped(type, bytes) = items.first else { return XCTFail("\(items)") }
        XCTAssertEqual(type, 0x13)
        XCTAssertEqual(bytes, big.count - 5)
        XCTAssertEqual(messages(items), [.ping(nonce: 5)])
        XCTAssertTrue(decoder.isEmpty)

        // A stream that ends inside the skipped body ends inside a message.
        var cut = StreamDecoder()
        cut.append(Array(big.prefix(100_000)))
        XCTAssertNotNil(try cut.next(registry, skipLargeAnswers: true))
        XCTAssertFalse(cut.isEmpty)
    }

    /// Expected answers, small unsolicited ones and requests are read whole.
    func testOtherMessagesAreRead() throws {
        let big = try MessageCodec.encode(.sync(.objects(Objects(requestID: 9, final: true, data: [UInt8](repeating: 7, count: 100_000)))))
        let small = try MessageCodec.encode(.sync(.objects(Objects(requestID: 9, final: true, data: [1, 2, 3]))))
        let request = try MessageCodec.encode(.sync(.getRefs(GetRefs(requestID: 1, repository: "a"))))
        var expecting = StreamDecoder()
        expecting.append(big)
        XCTAssertEqual(messages([try XCTUnwrap(try expecting.next(registry, skipLargeAnswers: false))]).count, 1)
        var unsolicited = StreamDecoder()
        unsolicited.append(small + request)
        var items: [StreamDecoder.Item] = []
        while let item = try unsolicited.next(registry, skipLargeAnswers: true) { items.append(item) }
        XCTAssertEqual(messages(items).count, 2)
    }
}
