import XCTest
import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport
@testable import GutsTrust

/// Identity documents, their chain, signed refs and canonical refs, on real repositories.
final class TrustTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = "/tmp/guts-trust-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Files.makeDirectories(dir)
    }

    override func tearDown() { Files.removeTree(dir) }

    /// Deterministic keys: seed bytes all `n`.
    func key(_ n: UInt8) throws -> Ed25519KeyPair { try Ed25519KeyPair(seed: [UInt8](repeating: n, count: 32)) }
    func peer(_ k: Ed25519KeyPair) throws -> PeerID { try PeerID(publicKey: k.publicKey) }

    func repo(_ name: String = "r.git") throws -> Repository { try Repository.create(bare: dir + "/" + name) }

    /// A commit with one file, on top of `parent`.
    func commit(_ repo: Repository, _ text: String, parent: ObjectID? = nil, time: Int64 = 1_700_000_000) throws -> ObjectID {
        let blob = try repo.writeLoose(type: .blob, body: Array(text.utf8))
        let tree = try repo.writeLoose(type: .tree, body: Tree(entries: [TreeEntry(mode: 0o100644, name: Array("f".utf8), id: blob)]).serialized())
        let sig = Signature(name: "T", email: "t@example.com", time: time, timezone: "+0000")
        return try repo.writeLoose(type: .commit, body: Commit(tree: tree, parents: parent.map { [$0] } ?? [], author: sig, committer: sig,
                                                             message: Array((text + "\n").utf8)).serialized())
    }

    // MARK: Repository IDs

    func testRepositoryIDTextRoundTripsAndCatchesTypos() throws {
        let rid = try XCTUnwrap(RepositoryID(bytes: [UInt8](repeating: 7, count: 32)))
        let text = rid.description
        XCTAssertEqual(text.count, 58)
        XCTAssertTrue(text.hasPrefix("gr"))
        XCTAssertEqual(RepositoryID(text), rid)
        XCTAssertEqual(RepositoryID(text.uppercased()), rid, "either case")
        var typo = Array(text)
        typo[10] = typo[10] == "a" ? "b" : "a"
        XCTAssertNil(RepositoryID(String(typo)))
        // A peer ID's text never parses as a repository ID, nor the other way round.
        let p = try peer(key(1))
        XCTAssertNil(RepositoryID("gr" + p.description.dropFirst(2)))
        XCTAssertNil(PeerID("gt" + text.dropFirst(2)))
    }

    // MARK: Documents

    func testDocumentIsCanonicalAndStrict() throws {
        let a = try peer(key(1)), b = try peer(key(2))
        let doc = IdentityDocument(name: "demo/app", description: "A demo", defaultBranch: "main", threshold: 1, delegates: [b, a])
        let bytes = doc.serialized()
        XCTAssertEqual(try IdentityDocument.parse(bytes), doc)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("guts-identity 1\nversion 1\nname demo/app\ndescription A demo\ndefault-branch main\nthreshold 1\ndelegate "))
        for bad in [
            text.replacingOccurrences(of: "threshold 1", with: "threshold 01"),
            text.replacingOccurrences(of: "threshold 1", with: "threshold 3"),
            text.replacingOccurrences(of: "name demo/app", with: "name ../etc"),
            text.replacingOccurrences(of: "\n", with: "\r\n"),
            text + "extra line\n",
            String(text.dropLast()),
            text.replacingOccurrences(of: "version 1\n", with: "version 1\nprevious \(String(repeating: "ab", count: 32))\n"),
        ] {
            XCTAssertThrowsError(try IdentityDocument.parse(Array(bad.utf8)), bad)
        }
        // Delegates out of order are not canonical.
        let lines = text.split(separator: "\n")
        let swapped = (lines.dropLast(2) + [lines[lines.count - 1], lines[lines.count - 2]]).joined(separator: "\n") + "\n"
        XCTAssertThrowsError(try IdentityDocument.parse(Array(swapped.utf8)))
    }

    // MARK: The chain

    func testChainOfThresholdSignedVersions() throws {
        let r = try repo()
        let ka = try key(1), kb = try key(2), kc = try key(3)
        let a = try peer(ka), b = try peer(kb), c = try peer(kc)
        let v1 = try TrustStore.create(r, document: IdentityDocument(name: "demo/app", delegates: [a]), key: ka)
        XCTAssertEqual(v1.id.bytes, BLAKE2b.hash(v1.versions[0].document.serialized(), outputLength: 32))
        XCTAssertEqual(try TrustStore.identity(of: r), v1)
        // A adds B and C and raises the threshold to 2: A's signature alone meets version 1's threshold.
        let doc2 = TrustStore.nextVersion(of: v1) { $0.delegates += [b, c]; $0.threshold = 2 }
        let v2 = try TrustStore.append(r, to: v1, document: doc2, signatures: DocumentSignatures([a: ka.sign(doc2.signingMessage)]), key: ka)
        XCTAssertEqual(v2.id, v1.id, "the ID survives delegate changes")
        XCTAssertEqual(v2.current.version, 2)
        // Version 3 with only one signature does not meet version 2's threshold of 2.
        let doc3 = TrustStore.nextVersion(of: v2) { $0.description = "changed" }
        XCTAssertThrowsError(try TrustStore.append(r, to: v2, document: doc3, signatures: DocumentSignatures([a: ka.sign(doc3.signingMessage)]), key: ka)) {
            XCTAssertEqual(($0 as? TrustError)?.kind, .threshold, "\($0)")
        }
        // A signature by a stranger does not count either.
        let stranger = try key(9)
        XCTAssertThrowsError(try TrustStore.append(r, to: v2, document: doc3,
                                                   signatures: DocumentSignatures([a: ka.sign(doc3.signingMessage), try peer(stranger): stranger.sign(doc3.signingMessage)]),
                                                   key: ka)) {
            XCTAssertEqual(($0 as? TrustError)?.kind, .notDelegate, "\($0)")
        }
        // A forged signature (over other bytes) does not count.
        XCTAssertThrowsError(try TrustStore.append(r, to: v2, document: doc3,
                                                   signatures: DocumentSignatures([a: ka.sign(doc3.signingMessage), b: kb.sign(doc2.signingMessage)]),
                                                   key: ka))
        let v3 = try TrustStore.append(r, to: v2, document: doc3,
                                       signatures: DocumentSignatures([a: ka.sign(doc3.signingMessage), c: kc.sign(doc3.signingMessage)]), key: ka)
        XCTAssertEqual(try TrustStore.identity(of: r)?.current.description, "changed")
        XCTAssertTrue(v1.isPrefix(of: v3))
        XCTAssertFalse(v3.isPrefix(of: v1))
    }

    func testProposalCollectsSignaturesUntilTheThreshold() throws {
        let r = try repo()
        let ka = try key(1), kb = try key(2), kc = try key(3)
        let a = try peer(ka), b = try peer(kb), c = try peer(kc)
        let v1 = try TrustStore.create(r, document: IdentityDocument(name: "demo/app", delegates: [a]), key: ka)
        let doc2 = TrustStore.nextVersion(of: v1) { $0.delegates += [b]; $0.threshold = 2 }
        let v2 = try TrustStore.append(r, to: v1, document: doc2, signatures: DocumentSignatures([a: ka.sign(doc2.signingMessage)]), key: ka)
        let doc3 = TrustStore.nextVersion(of: v2) { $0.delegates += [c] }
        var proposal = IdentityProposal(repository: v2.id, document: doc3, signatures: DocumentSignatures([a: ka.sign(doc3.signingMessage)]))
        // The text form round-trips exactly and only in its canonical spelling.
        let bytes = proposal.serialized()
        XCTAssertEqual(try IdentityProposal.parse(bytes), proposal)
        XCTAssertTrue(String(decoding: bytes, as: UTF8.self).hasPrefix("guts-identity-proposal 1\nrepository \(v2.id)\nguts-identity 1\nversion 3\n"))
        XCTAssertThrowsError(try IdentityProposal.parse(bytes + [0x0A]))
        XCTAssertThrowsError(try IdentityProposal.parse(Array(bytes.dropLast(3))))
        XCTAssertThrowsError(try IdentityProposal.parse([UInt8](repeating: 0x41, count: IdentityProposal.maxBytes + 1)))
        try proposal.check(against: v2)
        XCTAssertEqual(proposal.validSigners(v2), [a])
        // Not for version 1, nor for another repository's chain.
        XCTAssertThrowsError(try proposal.check(against: v1)) { XCTAssertEqual(($0 as? TrustError)?.kind, .chain) }
        let other = try TrustStore.create(try repo("o.git"), document: IdentityDocument(name: "other/app", delegates: [a]), key: ka)
        XCTAssertThrowsError(try proposal.check(against: other)) { XCTAssertEqual(($0 as? TrustError)?.kind, .mismatch) }
        // A stranger's signature or one over other bytes spoils the proposal.
        var spoiled = proposal
        spoiled.signatures.entries[c] = kc.sign(doc3.signingMessage)
        XCTAssertThrowsError(try spoiled.check(against: v2)) { XCTAssertEqual(($0 as? TrustError)?.kind, .notDelegate) }
        spoiled = proposal
        spoiled.signatures.entries[b] = kb.sign(doc2.signingMessage)
        XCTAssertThrowsError(try spoiled.check(against: v2)) { XCTAssertEqual(($0 as? TrustError)?.kind, .badSignature) }
        // One signature is below the threshold; with B's it is published.
        XCTAssertThrowsError(try TrustStore.append(r, to: v2, document: doc3, signatures: proposal.signatures, key: ka))
        proposal.signatures.entries[b] = kb.sign(doc3.signingMessage)
        let parsed = try IdentityProposal.parse(proposal.serialized())
        try parsed.check(against: v2)
        let v3 = try TrustStore.append(r, to: v2, document: parsed.document, signatures: parsed.signatures, key: kb)
        XCTAssertEqual(v3.current.delegates.count, 3)
    }

    func testUnchangedRefsAreSignedAgainAfterTheRefreshInterval() throws {
        let r = try repo()
        let ka = try key(1)
        let chain = try TrustStore.create(r, document: IdentityDocument(name: "demo/app", delegates: [try peer(ka)]), key: ka)
        try r.updateRef("refs/heads/main", to: try commit(r, "one"))
        XCTAssertEqual(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 1_000, refreshAfter: 100)?.sequence, 1)
        XCTAssertNil(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 1_050, refreshAfter: 100), "unchanged and fresh")
        XCTAssertNil(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 5_000), "no refresh asked")
        XCTAssertNil(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 5_000, refreshAfter: 0), "0 never refreshes")
        XCTAssertEqual(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 1_100, refreshAfter: 100)?.sequence, 2)
        let state = try XCTUnwrap(try TrustStore.installedStates(r, identity: chain)[try peer(ka)])
        XCTAssertEqual(state.refs.time, 1_100)
        XCTAssertEqual(state.refs.refs.count, 1)
    }

    func testFirstVersionMustBeSignedByItsOwnDelegates() throws {
        let r = try repo()
        let ka = try key(1), kb = try key(2)
        // A document naming B, written by A: B never signed it.
        let doc = IdentityDocument(name: "x", delegates: [try peer(kb)])
        XCTAssertThrowsError(try TrustStore.create(r, document: doc, key: ka))
        XCTAssertNil(try r.resolveRef(TrustLayout.identityRef), "nothing published")
    }

    // MARK: Signed refs

    func testSignedRefsSignAndVerify() throws {
        let r = try repo()
        let ka = try key(1), kb = try key(2)
        let a = try peer(ka), b = try peer(kb)
        let chain = try TrustStore.create(r, document: IdentityDocument(name: "demo/app", delegates: [a]), key: ka)
        let c1 = try commit(r, "one")
        try r.updateRef("refs/heads/main", to: c1)
        let s1 = try XCTUnwrap(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 100))
        XCTAssertEqual(s1.sequence, 1)
        XCTAssertNil(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 101), "nothing changed, nothing signed")
        let c2 = try commit(r, "two", parent: c1)
        try r.updateRef("refs/heads/main", to: c2)
        try r.updateRef("refs/tags/v1", to: c1)
        let s2 = try XCTUnwrap(try RefSigner.signIfChanged(r, identity: chain, key: ka, time: 102))
        XCTAssertEqual(s2.sequence, 2)
        let states = try TrustStore.installedStates(r, identity: chain)
        XCTAssertEqual(states[a]?.sequence, 2)
        XCTAssertEqual(states[a]?.refs.refMap, ["refs/heads/main": c2, "refs/tags/v1": c1])
        XCTAssertEqual(try r.resolveRef("refs/namespaces/\(a)/refs/heads/main"), c2)
        XCTAssertEqual(try r.resolveRef(TrustLayout.sigrefsRef(a)), s2.commit)
        // The blob round-trips, and any change to it breaks the signature.
        var signed = try XCTUnwrap(states[a]).refs
        XCTAssertEqual(try SignedRefs.parse(signed.serialized()), signed)
        XCTAssertNoThrow(try TrustStore.verify(signed, repository: chain.id, delegate: a, identity: chain.current))
        signed.refs[0].id = c1
        XCTAssertThrowsError(try TrustStore.verify(signed, repository: chain.id, delegate: a, identity: chain.current)) {
            XCTAssertEqual(($0 as? TrustError)?.kind, .badSignature)
        }
        // A non-delegate's own, validly signed refs are not accepted.
        var other = SignedRefs(repository: chain.id, delegate: b, sequence: 9, time: 1, refs: [("refs/heads/main", c1)])
        other.sign(with: kb)
        XCTAssertThrowsError(try TrustStore.verify(other, repository: chain.id, delegate: b, identity: chain.current)) {
            XCTAssertEqual(($0 as? TrustError)?.kind, .notDelegate)
        }
        // Reserved names may not be signed.
        var reserved = SignedRefs(repository: chain.id, delegate: a, sequence: 3, time: 1, refs: [("refs/guts/id", c1)])
        reserved.sign(with: ka)
        XCTAssertThrowsError(try SignedRefs.parse(reserved.serialized()))
        // A ref and a ref below it can never both exist.
        var conflict = SignedRefs(repository: chain.id, delegate: a, sequence: 3, time: 1,
                                  refs: [("refs/heads/x", c1), ("refs/heads/x-y", c1), ("refs/heads/x/y", c2)])
        conflict.sign(with: ka)
        XCTAssertThrowsError(try SignedRefs.parse(conflict.serialized()))
        // Uppercase hex is not canonical.
        let text = String(decoding: s2Blob(r, s2.commit), as: UTF8.self)
        XCTAssertThrowsError(try SignedRefs.parse(Array(text.replacingOccurrences(of: c2.hex, with: c2.hex.uppercased()).utf8)))
    }

    func s2Blob(_ r: Repository, _ commit: ObjectID) -> [UInt8] {
        (try? TrustStore.files(r, commit: commit, ["signed-refs"], "x").1[0]) ?? []
    }

    // MARK: Canonical refs

    func testCanonicalRefsFollowTheThreshold() throws {
        let r = try repo()
        let ka = try key(1), kb = try key(2), kc = try key(3)
        let a = try peer(ka), b = try peer(kb), c = try peer(kc)
        let rid = try XCTUnwrap(RepositoryID(bytes: [UInt8](repeating: 1, count: 32)))
        let c1 = try commit(r, "one")
        let c2 = try commit(r, "two", parent: c1)
        let c3 = try commit(r, "three", parent: c2)
        let side = try commit(r, "side", parent: c1)
        func state(_ p: PeerID, _ refs: [(String, ObjectID)]) -> SignedRefs {
            SignedRefs(repository: rid, delegate: p, sequence: 1, time: 1, refs: refs)
        }
        let main = "refs/heads/main"
        // Threshold 1: the most advanced of agreeing histories wins.
        var d = Canonical.compute(states: [a: state(a, [(main, c2)]), b: state(b, [(main, c3)])], threshold: 1, current: [:], store: r)
        XCTAssertEqual(d.refs[main], c3)
        // Threshold 2: only what both have reached.
        d = Canonical.compute(states: [a: state(a, [(main, c2)]), b: state(b, [(main, c3)])], threshold: 2, current: [main: c1], store: r)
        XCTAssertEqual(d.refs[main], c2)
        // Threshold 2 with one delegate ahead alone: nothing moves.
        d = Canonical.compute(states: [a: state(a, [(main, c3)]), b: state(b, [(main, c1)])], threshold: 2, current: [main: c1], store: r)
        XCTAssertEqual(d.refs[main], c1)
        // Threshold 1, diverged histories: the current value stays and it is reported.
        d = Canonical.compute(states: [a: state(a, [(main, c3)]), b: state(b, [(main, side)])], threshold: 1, current: [main: c1], store: r)
        XCTAssertEqual(d.refs[main], c1)
        XCTAssertEqual(d.diverged, [main])
        // Two of three agree on a tag; the third's differs.
        d = Canonical.compute(states: [a: state(a, [("refs/tags/v1", c2)]), b: state(b, [("refs/tags/v1", c2)]), c: state(c, [("refs/tags/v1", c3)])],
                              threshold: 2, current: [:], store: r)
        XCTAssertEqual(d.refs["refs/tags/v1"], c2)
        // A branch every delegate dropped goes; one only some dropped stays.
        d = Canonical.compute(states: [a: state(a, []), b: state(b, [])], threshold: 2, current: [main: c1], store: r)
        XCTAssertNil(d.refs[main])
        d = Canonical.compute(states: [a: state(a, [])], threshold: 2, current: [main: c1], store: r)
        XCTAssertEqual(d.refs[main], c1)
    }
}
