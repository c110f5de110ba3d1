import Foundation
import GutsSupport
import XCTest

final class StateFileTests: TemporaryDirectoryTestCase {
    func testUpdateCreatesReplacesAndLeavesNoLockFile() throws {
        let path = dir + "/counter"
        XCTAssertTrue(try StateFile.update(path, mode: 0o600) { old in
            XCTAssertNil(old)
            return Array("1\n".utf8)
        })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "1\n")
        XCTAssertEqual(Files.permissions(path), 0o600)
        XCTAssertFalse(try StateFile.update(path) { old in
            XCTAssertEqual(old, Array("1\n".utf8))
            return nil  // no change
        })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "1\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: StateFile.lockPath(for: path)))
        XCTAssertEqual(Files.list(dir), ["counter"], "no temporary or lock file left")
    }

    func testErrorsLeaveTheFileAlone() throws {
        struct Refused: Error {}
        let path = dir + "/state"
        try Files.writeAtomically(path, string: "old\n")
        XCTAssertThrowsError(try StateFile.update(path) { _ in throw Refused() })
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old\n")
        XCTAssertEqual(Files.list(dir), ["state"])
    }

    /// Writers in several threads (separate lock descriptors, so they conflict like
    /// processes do) take turns: no increment is lost.
    func testConcurrentUpdatesTakeTurns() throws {
        let path = dir + "/counter"
        let writers = 4
        let rounds = 10
        DispatchQueue.concurrentPerform(iterations: writers) { _ in
            for _ in 0..<rounds {
                do {
                    try StateFile.update(path) { old in
                        let n = old.flatMap { Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
                        return Array("\(n + 1)\n".utf8)
                    }
                } catch {
                    XCTFail("\(error)")
                }
            }
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "\(writers * rounds)\n")
    }

    func testBusyLockTimesOutNamingTheHolder() throws {
        let path = dir + "/state"
        let held = try XCTUnwrap(try FileLock.tryAcquire(StateFile.lockPath(for: path)))
        held.writeInfo("4242\n")
        XCTAssertThrowsError(try StateFile.update(path, timeout: 0.2) { _ in [1] }) { error in
            guard let busy = error as? LockBusy else { return XCTFail("\(error)") }
            XCTAssertEqual(busy.holder, 4242)
            XCTAssertTrue(busy.description.contains("held by process 4242"), busy.description)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }
}
