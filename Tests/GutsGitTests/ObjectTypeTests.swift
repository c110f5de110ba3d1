import XCTest
import GutsGit

final class ObjectTypeTests: XCTestCase {
    func testNamesRoundTrip() {
        for t in ObjectType.allCases { XCTAssertEqual(ObjectType(name: t.name), t) }
        XCTAssertNil(ObjectType(name: "ofs-delta"))
    }
}
