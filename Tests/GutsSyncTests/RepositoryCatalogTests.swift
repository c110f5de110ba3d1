import Foundation
import GutsIdentity
import GutsSupport
import GutsSync
import XCTest

/// Which repositories a node serves, and to whom (the `guts-allow` file).
final class RepositoryCatalogTests: XCTestCase {
    var base = ""

    override func setUpWithError() throws {
        base = NSTemporaryDirectory() + "guts-catalog-" + UUID().uuidString
        try Files.makeDirectories(base)
    }

    override func tearDown() { Files.removeTree(base) }

    func peer(_ n: UInt8) -> PeerID { try! PeerID(publicKey: [UInt8](repeating: n, count: 32)) }

    /// A directory that looks like a bare repository to the catalog.
    func repo(_ path: String) throws {
        try Files.makeDirectories(base + "/" + path + "/objects")
    }

    func write(_ path: String, _ text: String) throws {
        try Files.writeAtomically(base + "/" + path, string: text)
    }

    func testAllListsServableRepositoriesOnceSorted() throws {
        try repo("r1/top.git")
        try repo("r1/alice/proj.git")
        try repo("r1/alice/Zeta.git")
        try repo("r1/bob/tool.git")
        try repo("r2/alice/proj.git")      // same name in a later root: listed once
        try repo("r2/carol/x.y_z-1.git")
        try Files.makeDirectories(base + "/r1/alice/noobjects.git")      // not a repository
        try repo("r1/alice/.hidden.git")  // not a valid name
        try repo("r1/deep/er/three.git")  // too deep
        try repo("r1/plain")              // no .git suffix
        try repo("r1/alice/plain")
        try write("r1/file.git", "not a directory\n")
        let catalog = RepositoryCatalog(roots: [base + "/r1", base + "/r2", base + "/missing"])
        XCTAssertEqual(catalog.all().map(\.value), ["alice/Zeta", "alice/proj", "bob/tool", "carol/x.y_z-1", "top"])
        XCTAssertEqual(RepositoryCatalog(roots: []).all(), [])
    }

    func testLocateUsesTheFirstRootThatHasIt() throws {
        try repo("r1/alice/a.git")
        try repo("r2/alice/a.git")
        try repo("r2/alice/b.git")
        try Files.makeDirectories(base + "/r1/alice/c.git")  // no objects: skipped
        try repo("r2/alice/c.git")
        let catalog = RepositoryCatalog(roots: [base + "/r1", base + "/r2"])
        XCTAssertEqual(catalog.locate(RepositoryName("alice/a")!), base + "/r1/alice/a.git")
        XCTAssertEqual(catalog.locate(RepositoryName("alice/b")!), base + "/r2/alice/b.git")
        XCTAssertEqual(catalog.locate(RepositoryName("alice/c")!), base + "/r2/alice/c.git")
        XCTAssertNil(catalog.locate(RepositoryName("alice/none")!))
    }

    func testNoAllowFileMeansPublic() throws {
        try repo("r/p.git")
        let catalog = RepositoryCatalog(roots: [base + "/r"])
        XCTAssertEqual(catalog.access(base + "/r/p.git", for: peer(1)), .allowed)
    }

    func testAllowFileListsWhoMayRead() throws {
        try repo("r/p.git")
        let path = base + "/r/p.git"
        try write("r/p.git/guts-allow", """
            # readers of p
            \(peer(1))
               \(peer(2))\t # with a comment

            #\(peer(3)) commented out
            \(peer(4))#tight comment
            """)
        let catalog = RepositoryCatalog(roots: [base + "/r"])
        XCTAssertEqual(catalog.access(path, for: peer(1)), .allowed)
        XCTAssertEqual(catalog.access(path, for: peer(2)), .allowed)
        XCTAssertEqual(catalog.access(path, for: peer(3)), .denied)
        XCTAssertEqual(catalog.access(path, for: peer(4)), .allowed)
        XCTAssertEqual(catalog.access(path, for: peer(5)), .denied)
    }

    func testEmptyAllowFileDeniesEveryone() throws {
        try repo("r/p.git")
        try write("r/p.git/guts-allow", "# nobody yet\n\n")
        XCTAssertEqual(RepositoryCatalog(roots: [base + "/r"]).access(base + "/r/p.git", for: peer(1)), .denied)
    }

    func testMalformedAllowFileShutsEveryoneOut() throws {
        try repo("r/p.git")
        let path = base + "/r/p.git"
        let catalog = RepositoryCatalog(roots: [base + "/r"])
        for bad in ["not-a-peer-id", String(peer(1).description.dropLast()), peer(1).description + "x", "\(peer(1)) \(peer(2))"] {
            // Wherever the bad line is, before or after a listed peer.
            for text in ["\(peer(1))\n\(bad)\n", "\(bad)\n\(peer(1))\n"] {
                try write("r/p.git/guts-allow", text)
                guard case let .broken(why) = catalog.access(path, for: peer(1)) else {
                    XCTFail("\(text.debugDescription) should be broken")
                    continue
                }
                XCTAssertTrue(why.contains("guts-allow"), why)
                XCTAssertEqual(catalog.access(path, for: peer(9)), catalog.access(path, for: peer(1)))
            }
        }
    }

    func testUnreadableAllowFileShutsEveryoneOut() throws {
        try repo("r/p.git")
        try Files.makeDirectories(base + "/r/p.git/guts-allow")  // a directory cannot be read as a list
        guard case .broken = RepositoryCatalog(roots: [base + "/r"]).access(base + "/r/p.git", for: peer(1)) else {
            return XCTFail("expected broken")
        }
    }

    func testAllowFileWithCRLFLineEnds() throws {
        try repo("r/p.git")
        let path = base + "/r/p.git"
        try write("r/p.git/guts-allow", "# edited on Windows\r\n\(peer(1))\r\n\(peer(2)) # two\r\n")
        let catalog = RepositoryCatalog(roots: [base + "/r"])
        XCTAssertEqual(catalog.access(path, for: peer(1)), .allowed)
        XCTAssertEqual(catalog.access(path, for: peer(2)), .allowed)
        XCTAssertEqual(catalog.access(path, for: peer(3)), .denied)
    }

    /// Symbolic links: one inside the root that points inside it is followed; one that
    /// leaves the root (the repository itself, its owner directory, or its objects, pack
    /// or refs inside) makes the repository absent, unless links are to be followed.
    func testSymlinksThatLeaveTheRootAreNotServed() throws {
        try repo("r/alice/real.git")
        try repo("outside/secret.git")
        try repo("outside/owner/hidden.git")
        try repo("r/alice/objects-out.git")
        try repo("outside/objects-store")
        try repo("r/alice/pack-out.git")
        try Files.makeDirectories(base + "/outside/pack")
        try write("outside/pack/pack-1.pack", "secret")
        symlink(base + "/r/alice/real.git", base + "/r/alice/alias.git")  // inside, absolute
        symlink("real.git", base + "/r/alice/relative.git")  // inside, relative
        symlink(base + "/outside/secret.git", base + "/r/alice/secret.git")
        symlink(base + "/outside/owner", base + "/r/bob")
        Files.removeTree(base + "/r/alice/objects-out.git/objects")
        symlink(base + "/outside/objects-store/objects", base + "/r/alice/objects-out.git/objects")
        try Files.makeDirectories(base + "/r/alice/pack-out.git/objects/pack")
        symlink(base + "/outside/pack/pack-1.pack", base + "/r/alice/pack-out.git/objects/pack/pack-1.pack")

        let catalog = RepositoryCatalog(roots: [base + "/r"])
        XCTAssertEqual(catalog.all().map(\.value), ["alice/alias", "alice/real", "alice/relative"])
        XCTAssertNotNil(catalog.locate(RepositoryName("alice/alias")!))
        XCTAssertNotNil(catalog.locate(RepositoryName("alice/relative")!))
        for name in ["alice/secret", "bob/hidden", "alice/objects-out", "alice/pack-out"] {
            XCTAssertNil(catalog.locate(RepositoryName(name)!), name)
        }
        // The root itself may be reached through a link.
        symlink(base + "/r", base + "/root-link")
        XCTAssertEqual(RepositoryCatalog(roots: [base + "/root-link"]).all().map(\.value), ["alice/alias", "alice/real", "alice/relative"])
        // Opting in serves them all.
        let following = RepositoryCatalog(roots: [base + "/r"], followExternalLinks: true)
        XCTAssertEqual(following.all().map(\.value),
                       ["alice/alias", "alice/objects-out", "alice/pack-out", "alice/real", "alice/relative", "alice/secret", "bob/hidden"])
        XCTAssertNotNil(following.locate(RepositoryName("alice/secret")!))
    }
}
