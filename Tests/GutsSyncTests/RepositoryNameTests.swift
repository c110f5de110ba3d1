import GutsSync
import XCTest

final class RepositoryNameTests: XCTestCase {
    func testNamesCannotEscapeTheRoot() {
        for ok in ["guts", "alice/guts", "a.b_c-d/x1", "A/B"] { XCTAssertNotNil(RepositoryName(ok), ok) }
        for bad in ["", "/", "a/", "/a", "a//b", "..", "a/..", "../a", ".hidden", "a/.x", "a/b/c", "a b", "a\\b",
                    "x.git", "a/x.lock", "-flag", "ü", String(repeating: "a", count: 101)] {
            XCTAssertNil(RepositoryName(bad), bad)
        }
        XCTAssertEqual(RepositoryName("alice/guts")?.path(in: "/srv"), "/srv/alice/guts.git")
    }
}
