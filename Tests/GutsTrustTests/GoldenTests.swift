import XCTest
import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport
@testable import GutsTrust

/// The worked examples of guts-identity(5), byte for byte: if one of these changes, the
/// manual page is wrong.
final class GoldenTests: XCTestCase {
    func key(_ n: UInt8) throws -> Ed25519KeyPair { try Ed25519KeyPair(seed: [UInt8](repeating: n, count: 32)) }

    func example() throws -> (IdentityDocument, Ed25519KeyPair) {
        let k = try key(1)
        let doc = IdentityDocument(name: "demo/app", description: "", defaultBranch: "main", threshold: 1,
                                   delegates: [try PeerID(publicKey: k.publicKey)])
        return (doc, k)
    }

    func testIdentityDocumentExample() throws {
        let (doc, k) = try example()
        let peer = try PeerID(publicKey: k.publicKey)
        XCTAssertEqual(peer.description, "gtrkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5omlyq2")
        XCTAssertEqual(String(decoding: doc.serialized(), as: UTF8.self),
                       "guts-identity 1\nversion 1\nname demo/app\ndescription \ndefault-branch main\nthreshold 1\n"
                           + "delegate gtrkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5omlyq2\n")
        XCTAssertEqual(Hex.encode(doc.hash), "e227f5601c73b3f5d53b34b472fb670408b0b51d0e17b0e425739fa4324f61e4")
        let rid = try XCTUnwrap(RepositoryID(bytes: doc.hash))
        XCTAssertEqual(rid.description, "gr4it7kya4ooz7lvj3gs2hf63haqelbni5byl3bzbfoop2imspmhshxk6g")
        XCTAssertEqual(Hex.encode(k.sign(doc.signingMessage)),
                       "ac4373ed5d48fa6d31c019407a57339aacf09047075b767e35fa9f9a66641b50"
                           + "43712e2189e0cbb4da25fcb73e9400ac4dfd6bf867f4633133cba7005b6bb006")
    }

    func testSignedRefsExample() throws {
        let (doc, k) = try example()
        let rid = try XCTUnwrap(RepositoryID(bytes: doc.hash))
        let main = try XCTUnwrap(ObjectID(hex: "c5c88232bbfea4188882679c1cbaff523ffc512e"))
        var s = SignedRefs(repository: rid, delegate: try PeerID(publicKey: k.publicKey), sequence: 1, time: 1_700_000_000,
                           refs: [("refs/heads/main", main)])
        s.sign(with: k)
        XCTAssertEqual(String(decoding: s.serialized(), as: UTF8.self), """
            guts-signed-refs 1
            repository gr4it7kya4ooz7lvj3gs2hf63haqelbni5byl3bzbfoop2imspmhshxk6g
            delegate gtrkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5omlyq2
            sequence 1
            time 1700000000
            c5c88232bbfea4188882679c1cbaff523ffc512e refs/heads/main
            signature 1787f0d3abeccb796f34e98acbe013f321a6489ca7c48483c5188505b32ad3d7c3ce19b5836bab3de5f7f8ac041373aec2b8820a8c8fdf2b2f7a74051f3ecd0b

            """)
        XCTAssertTrue(s.isSignatureValid)
    }
}
