import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport

/// One version of a repository's identity document (guts-identity(5), IDENTITY DOCUMENT).
///
/// Canonical text, one `key value` line each, LF line ends, in exactly this order:
///
///     guts-identity 1
///     version <n>
///     previous <64 hex digits: BLAKE2b-256 of the previous version>   (not in version 1)
///     name <repository name>
///     description <text, may be empty>
///     default-branch <branch>
///     threshold <t>
///     delegate <peer ID>        (1 to 32 lines, sorted, distinct)
///
/// A document is accepted only in this exact spelling (parse and re-serialise must give
/// the same bytes), so every document has exactly one hash.
public struct IdentityDocument: Equatable, Sendable {
    public static let header = "guts-identity 1"
    /// What delegates sign: this, a zero byte, then the document bytes.
    public static let signatureDomain = Array("guts-identity-v1".utf8) + [0]

    public var version: UInt64
    /// BLAKE2b-256 of the previous version's bytes; nil exactly in version 1.
    public var previous: [UInt8]?
    public var name: String
    public var description: String
    public var defaultBranch: String
    public var threshold: Int
    /// Sorted by text form, distinct.
    public var delegates: [PeerID]

    public init(version: UInt64 = 1, previous: [UInt8]? = nil, name: String, description: String = "",
                defaultBranch: String = "main", threshold: Int = 1, delegates: [PeerID]) {
        self.version = version
        self.previous = previous
        self.name = name
        self.description = description
        self.defaultBranch = defaultBranch
        self.threshold = threshold
        self.delegates = delegates.sorted { $0.description < $1.description }
    }

    /// The canonical bytes. Call `validate()` first when the fields come from a user.
    public func serialized() -> [UInt8] {
        var s = Self.header + "\n"
        s += "version \(version)\n"
        if let previous { s += "previous \(Hex.encode(previous))\n" }
        s += "name \(name)\n"
        s += "description \(description)\n"
        s += "default-branch \(defaultBranch)\n"
        s += "threshold \(threshold)\n"
        for d in delegates.sorted(by: { $0.description < $1.description }) { s += "delegate \(d)\n" }
        return Array(s.utf8)
    }

    /// BLAKE2b-256 of the canonical bytes.
    public var hash: [UInt8] { BLAKE2b.hash(serialized(), outputLength: 32) }

    /// The bytes a delegate signs.
    public var signingMessage: [UInt8] { Self.signatureDomain + serialized() }

    /// Checks every field against the format's rules.
    public func validate() throws {
        func bad(_ why: String) -> TrustError { TrustError(.malformed, "identity document: \(why)") }
        guard version >= 1 else { throw bad("version must be at least 1") }
        guard (version == 1) == (previous == nil) else {
            throw bad(version == 1 ? "version 1 has no previous version" : "version \(version) must name its previous version")
        }
        if let previous, previous.count != 32 { throw bad("previous must be 32 bytes") }
        guard Self.isValidName(name) else { throw bad("invalid name '\(Escape.text(String(name.prefix(100))))'") }
        guard description.utf8.count <= TrustLimits.maxDescriptionBytes else {
            throw bad("description longer than \(TrustLimits.maxDescriptionBytes) bytes")
        }
        guard Self.isPrintable(description) else { throw bad("description contains control characters") }
        guard !defaultBranch.isEmpty, Refs.checkRefFormat("refs/heads/" + defaultBranch) else {
            throw bad("invalid default branch '\(Escape.text(String(defaultBranch.prefix(100))))'")
        }
        guard (1...TrustLimits.maxDelegates).contains(delegates.count) else {
            throw bad("needs 1 to \(TrustLimits.maxDelegates) delegates, has \(delegates.count)")
        }
        guard Set(delegates).count == delegates.count else { throw bad("a delegate is listed twice") }
        guard (1...delegates.count).contains(threshold) else {
            throw bad("threshold \(threshold) must be from 1 to the number of delegates (\(delegates.count))")
        }
    }

    /// `NAME` or `OWNER/NAME`, each part 1 to 100 of `A-Z a-z 0-9 . _ -`, starting with a
    /// letter or digit, not ending in `.git` or `.lock` (the repository name grammar).
    public static func isValidName(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        for part in parts {
            guard (1...100).contains(part.utf8.count), let first = part.utf8.first, isAlnum(first),
                  part.utf8.allSatisfy({ isAlnum($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }),
                  !part.hasSuffix(".git"), !part.hasSuffix(".lock") else { return false }
        }
        return true
    }

    static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39)
    }

    /// No C0 controls and no DEL.
    static func isPrintable(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7F && !(0x80...0x9F).contains($0.value) }
    }

    /// Parses and validates canonical document bytes.
    public static func parse(_ bytes: [UInt8]) throws -> IdentityDocument {
        func bad(_ why: String) -> TrustError { TrustError(.malformed, "identity document: \(why)") }
        guard bytes.count <= TrustLimits.maxDocumentBytes else { throw bad("larger than \(TrustLimits.maxDocumentBytes) bytes") }
        guard let text = decodeUTF8(bytes) else { throw bad("not UTF-8") }
        guard text.hasSuffix("\n") else { throw bad("must end with a newline") }
        var lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.first == header else { throw bad("must start with '\(header)'") }
        lines.removeFirst()
        var i = 0
        func field(_ key: String, optional: Bool = false) throws -> String? {
            guard i < lines.count, lines[i].hasPrefix(key + " ") else {
                if optional { return nil }
                throw bad("expected '\(key)' on line \(i + 2)")
            }
            defer { i += 1 }
            return String(lines[i].dropFirst(key.count + 1))
        }
        guard let versionText = try field("version"), let version = parseNumber(versionText) else { throw bad("bad version") }
        var previous: [UInt8]?
        if let p = try field("previous", optional: true) {
            guard p.utf8.count == 64, let raw = Hex.decode(p), p == Hex.encode(raw) else { throw bad("previous must be 64 lowercase hex digits") }
            previous = raw
        }
        let name = try field("name") ?? ""
        let description = try field("description") ?? ""
        let branch = try field("default-branch") ?? ""
        guard let t = try field("threshold"), let threshold = parseNumber(t), threshold <= UInt64(TrustLimits.maxDelegates) else {
            throw bad("bad threshold")
        }
        var delegates: [PeerID] = []
        while i < lines.count {
            guard let d = try field("delegate") else { break }
            guard let peer = PeerID(d), peer.description == d else { throw bad("'\(Escape.text(String(d.prefix(80))))' is not a peer ID") }
            guard delegates.count < TrustLimits.maxDelegates else { throw bad("more than \(TrustLimits.maxDelegates) delegates") }
            delegates.append(peer)
        }
        let doc = IdentityDocument(version: version, previous: previous, name: name, description: description,
                                   defaultBranch: branch, threshold: Int(threshold), delegates: delegates)
        try doc.validate()
        guard doc.serialized() == bytes else { throw bad("not in canonical form (order, spacing or sorting)") }
        return doc
    }

    /// A decimal number without sign or leading zeros.
    static func parseNumber(_ s: String) -> UInt64? {
        guard !s.isEmpty, s.utf8.count <= 19, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              s == "0" || s.utf8.first != 0x30 else { return nil }
        return UInt64(s)
    }
}

/// Delegates' signatures over one document version: the `signatures` blob, one line per
/// signer, `<peer ID> <128 hex digits>`, sorted by peer ID, each signer once.
public struct DocumentSignatures: Equatable, Sendable {
    public var entries: [PeerID: [UInt8]]

    public init(_ entries: [PeerID: [UInt8]] = [:]) { self.entries = entries }

    public func serialized() -> [UInt8] {
        var s = ""
        for (peer, sig) in entries.sorted(by: { $0.key.description < $1.key.description }) {
            s += "\(peer) \(Hex.encode(sig))\n"
        }
        return Array(s.utf8)
    }

    public static func parse(_ bytes: [UInt8]) throws -> DocumentSignatures {
        func bad(_ why: String) -> TrustError { TrustError(.malformed, "identity signatures: \(why)") }
        guard bytes.count <= TrustLimits.maxSignaturesBytes else { throw bad("too large") }
        guard let text = decodeUTF8(bytes) else { throw bad("not UTF-8") }
        var out: [PeerID: [UInt8]] = [:]
        if !text.isEmpty {
            guard text.hasSuffix("\n") else { throw bad("must end with a newline") }
            for line in text.dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, let peer = PeerID(parts[0]), peer.description == parts[0],
                      parts[1].utf8.count == 128, let sig = Hex.decode(parts[1]), Hex.encode(sig) == parts[1] else {
                    throw bad("bad line '\(Escape.text(String(line.prefix(80))))'")
                }
                guard out[peer] == nil else { throw bad("\(peer) signed twice") }
                out[peer] = sig
            }
        }
        let result = DocumentSignatures(out)
        guard result.serialized() == bytes else { throw bad("not in canonical form (sorting)") }
        return result
    }

    /// Signers among `delegates` whose signature over `document` verifies.
    public func validSigners(of document: IdentityDocument, among delegates: [PeerID]) -> Set<PeerID> {
        let message = document.signingMessage
        var ok = Set<PeerID>()
        for d in delegates {
            if let sig = entries[d], Ed25519.verify(signature: sig, message: message, publicKey: d.publicKey) { ok.insert(d) }
        }
        return ok
    }
}
