import GutsSupport
import GutsTrust

/// The repository-trust formats read from peers' git objects and from proposal files
/// (guts-identity(5)): identity documents, their signatures blob, signed refs and
/// identity proposals.
///
/// Input: the first byte picks the format; the rest is the text.
///
/// Properties: whatever parses is canonical (serialising it gives the input bytes back,
/// so every accepted value has exactly one spelling and one hash), and a repository ID's
/// text form parses back to the same ID.
func fuzzTrust(_ data: [UInt8]) {
    var r = FuzzReader(data)
    let kind = r.u8() % 4
    let text = r.rest()
    switch kind {
    case 0:
        guard let doc = try? IdentityDocument.parse(text) else { return }
        fuzzCheck(doc.serialized() == text, "an identity document parsed from other bytes than it serialises to")
        fuzzCheck((try? doc.validate()) != nil, "a parsed identity document does not validate")
        guard let id = RepositoryID(bytes: doc.hash) else { fuzzFail("a document hash is not a repository ID") }
        fuzzCheck(RepositoryID(id.description) == id, "a repository ID does not survive its text form")
    case 1:
        guard let sigs = try? DocumentSignatures.parse(text) else { return }
        fuzzCheck(sigs.serialized() == text, "a signatures blob parsed from other bytes than it serialises to")
    case 2:
        guard let refs = try? SignedRefs.parse(text) else { return }
        fuzzCheck(refs.serialized() == text, "signed refs parsed from other bytes than they serialise to")
        _ = refs.isSignatureValid
    default:
        guard let proposal = try? IdentityProposal.parse(text) else { return }
        fuzzCheck(proposal.serialized() == text, "a proposal parsed from other bytes than it serialises to")
    }
}
