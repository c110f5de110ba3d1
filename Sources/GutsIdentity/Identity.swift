import GutsCrypto
import GutsSupport
#if canImport(Glibc)
import Glibc
#endif

/// Why the node identity could not be loaded or stored.
public enum IdentityError: Error, Equatable, CustomStringConvertible, Sendable {
    case missing(path: String)
    case exists(path: String)
    case unprotected(path: String, mode: UInt32)
    case malformed(path: String, reason: String)
    case io(String)

    public var description: String {
        switch self {
        case let .missing(path):
            return "no identity at \(path); create one with 'guts keygen'"
        case let .exists(path):
            return "an identity already exists at \(path); use 'guts keygen --force' to replace it (the old peer ID is lost)"
        case let .unprotected(path, mode):
            return "permissions \(String(mode, radix: 8)) for \(path) are too open: the key file must not be accessible by group or others (chmod 600 \(path))"
        case let .malformed(path, reason):
            return "malformed identity file \(path): \(reason)"
        case let .io(message):
            return message
        }
    }
}

/// The node's long-term identity: an Ed25519 key pair stored in the state directory.
///
/// Files (in the state directory):
///   identity.key  mode 0600: `guts-ed25519-seed-v1 <64 hex digits>` and a newline
///   identity.pub  mode 0644: the peer ID and a newline (informational)
public struct Identity: Sendable {
    public static let secretFileName = "identity.key"
    public static let publicFileName = "identity.pub"
    static let header = "guts-ed25519-seed-v1"

    public let keyPair: Ed25519KeyPair
    public var peerID: PeerID {
        // A 32-byte Ed25519 public key is always a valid PeerID.
        guard let id = try? PeerID(publicKey: keyPair.publicKey) else { preconditionFailure("unreachable") }
        return id
    }

    public init(keyPair: Ed25519KeyPair) { self.keyPair = keyPair }

    public static func generate() -> Identity { Identity(keyPair: .generate()) }

    /// The text written to identity.key.
    public var secretFileContents: String { "\(Self.header) \(Hex.encode(keyPair.seed))\n" }

    /// Parses identity.key contents.
    public static func parse(_ text: String, path: String) throws -> Identity {
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" })
        guard fields.count == 2, fields[0] == Self.header else {
            throw IdentityError.malformed(path: path, reason: "expected '\(Self.header) <64 hex digits>'")
        }
        guard let seed = Hex.decode(fields[1]), seed.count == 32, let kp = try? Ed25519KeyPair(seed: seed) else {
            throw IdentityError.malformed(path: path, reason: "the seed must be 64 hex digits")
        }
        return Identity(keyPair: kp)
    }

    /// Loads the identity from `home`, refusing key files readable by group or others.
    public static func load(home: String) throws -> Identity {
        if let problem = Files.stateDirectoryProblem(home) { throw IdentityError.io(problem) }
        let path = home + "/" + secretFileName
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw IdentityError.missing(path: path) }
            throw IdentityError.io("cannot read the identity \(path): \(Files.reason(code))")
        }
        if st.st_uid != geteuid() {
            throw IdentityError.io("cannot use the identity \(path): it is owned by uid \(st.st_uid), not by this user (uid \(geteuid()))")
        }
        let mode = st.st_mode & 0o7777
        if mode & 0o077 != 0 { throw IdentityError.unprotected(path: path, mode: UInt32(mode)) }
        let text: String
        do {
            text = try Files.readString(path, limit: 4096)
        } catch let e as FileError {
            throw IdentityError.io("cannot read the identity \(path): \(Files.reason(e.code))")
        } catch {
            throw IdentityError.io("cannot read the identity \(path): \(error)")
        }
        return try parse(text, path: path)
    }

    /// Writes the identity into `home` atomically (key 0600). Refuses to replace an
    /// existing key unless `force`. Holds the key's state-file lock (`identity.key.lock`)
    /// from the existence check to the last write, so of two concurrent `keygen`s exactly
    /// one creates the key, and identity.pub always matches the key written last.
    public func save(home: String, force: Bool) throws {
        let path = home + "/" + Self.secretFileName
        do {
            try StateFile.withLock(path) {
                if !force && Files.exists(path) { throw IdentityError.exists(path: path) }
                try Files.writeAtomically(path, string: secretFileContents, mode: 0o600)
                try Files.writeAtomically(home + "/" + Self.publicFileName, string: "\(peerID)\n", mode: 0o644)
            }
        } catch let e as IdentityError {
            throw e
        } catch {
            throw IdentityError.io("\(error)")
        }
    }
}
