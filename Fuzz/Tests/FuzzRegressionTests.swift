import Foundation
import XCTest

/// Replays every input of Fuzz/Corpus/<target>/ (the seed corpus the fuzzer starts from)
/// and Fuzz/Regressions/<target>/ (every input that ever crashed a target) through the
/// same harness functions the libFuzzer binaries run (Fuzz/build.sh). A property failure
/// traps, naming the input.
final class FuzzRegressionTests: XCTestCase {
    static let fuzzDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    static let targets: [(name: String, harness: @Sendable ([UInt8]) -> Void)] = [
        ("wire-message", fuzzWireMessage),
        ("wire-frames", fuzzWireFrames),
        ("noise-handshake", fuzzNoiseHandshake),
        ("session-stream", fuzzSessionStream),
        ("pack-indexer", fuzzPackIndexer),
        ("pack-reader", fuzzPackReader),
        ("delta", fuzzDelta),
        ("object-checker", fuzzObjectChecker),
        ("refs", fuzzRefs),
        ("config", fuzzConfig),
        ("json", fuzzJSON),
        ("control-codec", fuzzControlCodec),
        ("trust", fuzzTrust),
        ("quic", fuzzQuic),
    ]

    override class func tearDown() {
        fuzzRemoveScratch()
        super.tearDown()
    }

    static func files(_ kind: String, _ target: String) -> [URL] {
        let dir = fuzzDirectory.appendingPathComponent(kind).appendingPathComponent(target)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().map { dir.appendingPathComponent($0) }
    }

    func replay(_ target: String) throws {
        guard let harness = Self.targets.first(where: { $0.name == target })?.harness else {
            return XCTFail("no harness for \(target)")
        }
        let corpus = Self.files("Corpus", target)
        XCTAssertFalse(corpus.isEmpty, "Fuzz/Corpus/\(target) has no seeds")
        for url in corpus + Self.files("Regressions", target) {
            fuzzReplaying = url.path
            harness([UInt8](try Data(contentsOf: url)))
        }
        fuzzReplaying = nil
    }

    func testWireMessage() throws { try replay("wire-message") }
    func testWireFrames() throws { try replay("wire-frames") }
    func testNoiseHandshake() throws { try replay("noise-handshake") }
    func testSessionStream() throws { try replay("session-stream") }
    func testPackIndexer() throws { try replay("pack-indexer") }
    func testPackReader() throws { try replay("pack-reader") }
    func testDelta() throws { try replay("delta") }
    func testObjectChecker() throws { try replay("object-checker") }
    func testRefs() throws { try replay("refs") }
    func testConfig() throws { try replay("config") }
    func testJSON() throws { try replay("json") }
    func testControlCodec() throws { try replay("control-codec") }
    func testTrust() throws { try replay("trust") }
    func testQUIC() throws { try replay("quic") }

    /// Every harness in Fuzz/Targets is replayed here (a new target cannot be forgotten).
    func testEveryTargetIsReplayed() throws {
        let dir = Self.fuzzDirectory.appendingPathComponent("Targets")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }
        XCTAssertEqual(Set(files.map { String($0.dropLast(6)) }), Set(Self.targets.map(\.name)))
    }

    /// The protocol seeds in the corpus are what today's encoders produce (a layout change
    /// shows up here: run Fuzz/make-corpus.sh). With GUTS_FUZZ_WRITE_SEEDS=1 this writes them.
    func testProtocolSeedsAreCurrent() throws {
        let write = ProcessInfo.processInfo.environment["GUTS_FUZZ_WRITE_SEEDS"] == "1"
        for seed in FuzzSeeds.all {
            let dir = Self.fuzzDirectory.appendingPathComponent("Corpus").appendingPathComponent(seed.target)
            let url = dir.appendingPathComponent("seed-" + seed.name)
            if write {
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                try Data(seed.bytes).write(to: url)
            } else {
                XCTAssertEqual((try? Data(contentsOf: url)).map { [UInt8]($0) }, seed.bytes,
                               "Fuzz/Corpus/\(seed.target)/seed-\(seed.name) is stale: run Fuzz/make-corpus.sh")
            }
        }
    }
}
