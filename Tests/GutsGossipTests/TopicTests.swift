import GutsGossip
import XCTest

final class TopicTests: XCTestCase {
    func testTopicNames() {
        for ok in ["guts/commits", "chat", "a.b_c-d/e1"] { XCTAssertTrue(Topic.isValid(ok), ok) }
        for bad in ["", "/x", "x/", "Chat", "a b", String(repeating: "a", count: 256), "ü"] { XCTAssertFalse(Topic.isValid(bad), bad) }
    }
}
