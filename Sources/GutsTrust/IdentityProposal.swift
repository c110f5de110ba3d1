import GutsIdentity
import GutsSupport

/// A proposed next version of an identity document with the signatures collected so far
/// (guts-identity(5), PROPOSALS). Delegates pass it around as a file until a threshold of
/// the current version's delegates has signed; then any of them publishes it.
///
///     guts-identity-proposal 1
///     repository <repository ID>
///     <the document's canonical bytes, every line>
///     signatures
///     <peer ID> <128 hex digits>     zero or more, sorted by peer ID (the signatures blob)
///
/// The document ends at the line `signatures` (no document line is spelled that way:
/// each has a key, a space and a value). Only this exact spelling is accepted.
public struct IdentityProposal: Equatable, Sendable {
    public static let header = "guts-identity-proposal 1"
    static let separator = "signatures"

    public var repository: RepositoryID
    public var document: IdentityDocument
    public var signatures: DocumentSignatures

    public init(repository: RepositoryID, document: IdentityDocument, signatures: DocumentSignatures = DocumentSignatures()) {
        self.repository = repository
        self.document = document
        self.signatures = signatures
    }

    public func serialized() -> [UInt8] {
        Array("\(Self.header)\nrepository \(repository)\n".utf8) + document.serialized()
            + Array("\(Self.separator)\n".utf8) + signatures.serialized()
    }

    /// Largest proposal accepted: a maximal document and a full set of signatures.
    public static var maxBytes: Int { 256 + TrustLimits.maxDocumentBytes + TrustLimits.maxSignaturesBytes }

    public static func parse(_ bytes: [UInt8]) throws -> IdentityProposal {
        func bad(_ why: String) -> TrustError { TrustError(.malformed, "identity proposal: \(why)") }
        guard bytes.count <= maxBytes else { throw bad("larger than \(maxBytes) bytes") }
        let head = Array("\(header)\nrepository ".utf8)
        guard bytes.starts(with: head) else { throw bad("must start with '\(header)' and a 'repository' line") }
        guard let idEnd = bytes[head.count...].firstIndex(of: 0x0A),
              let idText = decodeUTF8(Array(bytes[head.count..<idEnd])), let repository = RepositoryID(idText),
              repository.description == idText else {
            throw bad("bad repository ID")
        }
        // The document runs to the first line that is exactly "signatures".
        let marker = Array("\n\(separator)\n".utf8)
        let docStart = idEnd + 1
        var cut: Int?
        var i = docStart
        while i + marker.count <= bytes.count {
            if bytes[i] == 0x0A, bytes[i..<(i + marker.count)].elementsEqual(marker) { cut = i; break }
            i += 1
        }
        guard let cut else { throw bad("no 'signatures' line") }
        let document = try IdentityDocument.parse(Array(bytes[docStart...cut]))
        let signatures = try DocumentSignatures.parse(Array(bytes[(cut + marker.count)...]))
        let proposal = IdentityProposal(repository: repository, document: document, signatures: signatures)
        guard proposal.serialized() == bytes else { throw bad("not in canonical form") }
        return proposal
    }

    /// Checks that the proposal is the next version of `chain`.
    public func check(against chain: IdentityChain) throws {
        guard repository == chain.id else {
            throw TrustError(.mismatch, "the proposal is for repository \(repository), not \(chain.id)")
        }
        let current = chain.current
        guard document.version == current.version + 1 else {
            if document.version <= current.version {
                throw TrustError(.chain, "the proposal is for version \(document.version), but version \(current.version) is already published")
            }
            throw TrustError(.chain, "the proposal is for version \(document.version), but this copy has only version \(current.version); sync the repository first")
        }
        guard document.previous == chain.versions[chain.versions.count - 1].hash else {
            throw TrustError(.chain, "the proposal does not follow version \(current.version) of \(chain.id)")
        }
        for (peer, _) in signatures.entries where !current.delegates.contains(peer) {
            throw TrustError(.notDelegate, "the proposal carries a signature of \(peer), who is not a delegate of version \(current.version)")
        }
        let valid = signatures.validSigners(of: document, among: current.delegates)
        guard valid.count == signatures.entries.count else {
            let badOnes = Set(signatures.entries.keys).subtracting(valid).map(\.description).sorted()
            throw TrustError(.badSignature, "the proposal carries signatures that do not verify: \(badOnes.joined(separator: ", "))")
        }
    }

    /// Signers among the current delegates whose signatures verify.
    public func validSigners(_ chain: IdentityChain) -> Set<PeerID> {
        signatures.validSigners(of: document, among: chain.current.delegates)
    }
}
