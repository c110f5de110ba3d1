import GutsCrypto
import GutsGit
import GutsIdentity
import GutsSupport

/// One delegate's signed statement of its refs (guts-identity(5), SIGNED REFS): the
/// `signed-refs` blob.
///
///     guts-signed-refs 1
///     repository <repository ID>
///     delegate <peer ID>
///     sequence <n>                 1, 2, 3, ... one more at every signing
///     time <unix seconds>
///     <40 hex digits> <ref name>   one line per ref, sorted by name (bytes), distinct
///     signature <128 hex digits>   Ed25519 by the delegate
///
/// The signature covers `guts-signed-refs-v1`, a zero byte, then every byte before the
/// `signature` line. Ref names start with `refs/`, pass git's ref-format rules and lie
/// outside the reserved `refs/guts/` and `refs/namespaces/`.
public struct SignedRefs: Equatable, Sendable {
    public static let header = "guts-signed-refs 1"
    public static let signatureDomain = Array("guts-signed-refs-v1".utf8) + [0]

    public var repository: RepositoryID
    public var delegate: PeerID
    public var sequence: UInt64
    public var time: Int64
    /// Sorted by name (bytes), distinct.
    public var refs: [(name: String, id: ObjectID)]
    public var signature: [UInt8]

    public init(repository: RepositoryID, delegate: PeerID, sequence: UInt64, time: Int64,
                refs: [(name: String, id: ObjectID)], signature: [UInt8] = []) {
        self.repository = repository
        self.delegate = delegate
        self.sequence = sequence
        self.time = time
        self.refs = refs.sorted { Refs.byteOrder($0.name, $1.name) }
        self.signature = signature
    }

    public static func == (a: SignedRefs, b: SignedRefs) -> Bool {
        a.repository == b.repository && a.delegate == b.delegate && a.sequence == b.sequence && a.time == b.time
            && a.refs.map { "\($0.name) \($0.id)" } == b.refs.map { "\($0.name) \($0.id)" } && a.signature == b.signature
    }

    /// The refs as a dictionary.
    public var refMap: [String: ObjectID] { Dictionary(refs.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a }) }

    /// Everything the signature covers (without the domain prefix).
    public var payload: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128 + refs.count * 64)
        out += Array("\(Self.header)\nrepository \(repository)\ndelegate \(delegate)\nsequence \(sequence)\ntime \(time)\n".utf8)
        for r in refs {
            out += Array(r.id.hex.utf8)
            out.append(0x20)
            out += Array(r.name.utf8)
            out.append(0x0A)
        }
        return out
    }

    public var signingMessage: [UInt8] { Self.signatureDomain + payload }

    /// The blob's bytes.
    public func serialized() -> [UInt8] { payload + Array("signature \(Hex.encode(signature))\n".utf8) }

    /// Signs with the delegate's key (which must be `delegate`'s).
    public mutating func sign(with key: Ed25519KeyPair) {
        signature = key.sign(signingMessage)
    }

    public var isSignatureValid: Bool {
        Ed25519.verify(signature: signature, message: signingMessage, publicKey: delegate.publicKey)
    }

    /// Whether a ref may be signed: under `refs/`, well formed, not reserved.
    public static func isSignable(_ name: String) -> Bool {
        name.hasPrefix("refs/") && name.utf8.count <= TrustLimits.maxRefNameBytes && !TrustLayout.isReserved(name)
            && Refs.checkRefFormat(name)
    }

    /// Parses the blob (format only; the signature is checked by `isSignatureValid`).
    public static func parse(_ bytes: [UInt8]) throws -> SignedRefs {
        func bad(_ why: String) -> TrustError { TrustError(.malformed, "signed refs: \(why)") }
        guard bytes.count <= TrustLimits.maxSignedRefsBytes else { throw bad("larger than \(TrustLimits.maxSignedRefsBytes) bytes") }
        guard bytes.last == 0x0A else { throw bad("must end with a newline") }
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        for i in 0..<bytes.count where bytes[i] == 0x0A {
            lines.append(bytes[start..<i])
            start = i + 1
            if lines.count > TrustLimits.maxSignedRefs + 7 { throw bad("more than \(TrustLimits.maxSignedRefs) refs") }
        }
        guard lines.count >= 6 else { throw bad("truncated") }
        func text(_ l: ArraySlice<UInt8>) -> String? { decodeUTF8(l) }
        func value(_ index: Int, _ key: String) throws -> String {
            guard let line = text(lines[index]), line.hasPrefix(key + " ") else { throw bad("expected '\(key)' on line \(index + 1)") }
            return String(line.dropFirst(key.count + 1))
        }
        guard text(lines[0]) == header else { throw bad("must start with '\(header)'") }
        let ridText = try value(1, "repository")
        guard let rid = RepositoryID(ridText), rid.description == ridText else { throw bad("bad repository ID") }
        let peerText = try value(2, "delegate")
        guard let delegate = PeerID(peerText), delegate.description == peerText else { throw bad("bad delegate") }
        guard let sequence = IdentityDocument.parseNumber(try value(3, "sequence")), sequence >= 1 else { throw bad("bad sequence") }
        guard let time = IdentityDocument.parseNumber(try value(4, "time")), time <= UInt64(Int64.max) else { throw bad("bad time") }
        let sigText = try value(lines.count - 1, "signature")
        guard sigText.utf8.count == 128, let signature = Hex.decode(sigText), Hex.encode(signature) == sigText else {
            throw bad("bad signature line")
        }
        var refs: [(name: String, id: ObjectID)] = []
        refs.reserveCapacity(lines.count - 6)
        var previous: [UInt8]?
        for line in lines[5..<(lines.count - 1)] {
            guard line.count > 42, line[line.startIndex + 40] == 0x20,
                  let id = line.prefix(40).withUnsafeBytes({ ObjectID(hexBytes: $0) }) else { throw bad("bad ref line") }
            let nameBytes = Array(line.dropFirst(41))
            guard let name = decodeUTF8(nameBytes), isSignable(name) else {
                throw bad("ref name '\(Escape.text(String(decoding: nameBytes.prefix(100), as: UTF8.self)))' may not be signed")
            }
            if let previous, !previous.lexicographicallyPrecedes(nameBytes) { throw bad("refs not sorted or listed twice ('\(Escape.text(name))')") }
            previous = nameBytes
            refs.append((name, id))
        }
        // No repository can hold both `a` and `a/b`: such a state could never be installed.
        let names = Set(refs.map(\.name))
        for r in refs {
            var prefix = ""
            for component in r.name.split(separator: "/").dropLast() {
                prefix += (prefix.isEmpty ? "" : "/") + component
                if names.contains(prefix) { throw bad("'\(Escape.text(r.name))' conflicts with the signed ref '\(Escape.text(prefix))'") }
            }
        }
        let parsed = SignedRefs(repository: rid, delegate: delegate, sequence: sequence, time: Int64(time), refs: refs, signature: signature)
        guard parsed.serialized() == bytes else { throw bad("not in canonical form (hex case, spacing)") }
        return parsed
    }
}
