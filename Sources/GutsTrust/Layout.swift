import GutsGit
import GutsIdentity

/// Where identity and signed refs live inside a repository (guts-identity(5), STORAGE).
/// Everything guts reserves is below `refs/guts/` and `refs/namespaces/`, which `git
/// clone` of branches and tags never fetches.
public enum TrustLayout {
    /// The identity chain: a commit per document version, each the child of the previous.
    public static let identityRef = "refs/guts/id"
    public static let reservedPrefix = "refs/guts/"
    public static let namespacesPrefix = "refs/namespaces/"

    /// `refs/namespaces/<peer>/`: one delegate's refs, exactly as it signed them.
    public static func namespace(_ delegate: PeerID) -> String { namespacesPrefix + delegate.description + "/" }

    /// `refs/namespaces/<peer>/refs/guts/sigrefs`: the delegate's newest signed refs.
    public static func sigrefsRef(_ delegate: PeerID) -> String { namespace(delegate) + "refs/guts/sigrefs" }

    /// The delegate whose sigrefs ref `name` is, if it is one.
    public static func sigrefsDelegate(_ name: String) -> PeerID? {
        guard name.hasPrefix(namespacesPrefix), name.hasSuffix("/refs/guts/sigrefs") else { return nil }
        let middle = name.dropFirst(namespacesPrefix.count).dropLast("/refs/guts/sigrefs".count)
        guard let peer = PeerID(middle), peer.description == middle else { return nil }
        return peer
    }

    /// Refs only guts writes, from verified state: never signed, never mirrored blindly.
    public static func isReserved(_ name: String) -> Bool {
        name.hasPrefix(reservedPrefix) || name.hasPrefix(namespacesPrefix)
    }

    /// Refs that become canonical (top-level) in a mirror: branches and tags.
    public static func isCanonicalKind(_ name: String) -> Bool {
        name.hasPrefix("refs/heads/") || name.hasPrefix("refs/tags/")
    }
}

/// Bounds on identity documents and signed refs, checked before anything is allocated.
public enum TrustLimits {
    public static let maxDocumentBytes = 16 << 10
    public static let maxDelegates = 32
    public static let maxNameBytes = 255
    public static let maxDescriptionBytes = 1024
    /// Versions followed back from an identity tip before giving up.
    public static let maxVersions = 10_000
    public static let maxSignaturesBytes = 64 * 200
    /// Refs one delegate may sign (the sync protocol's own limit).
    public static let maxSignedRefs = 200_000
    public static let maxSignedRefsBytes = 48 << 20
    public static let maxRefNameBytes = 1024
    /// Commits walked to decide whether one commit descends from another.
    public static let maxAncestryWalk = 1_000_000
    /// How far in the future (seconds, by the local clock) a signed-refs time may lie:
    /// a statement dated later would look fresh for longer than it is (freeze defence).
    public static let maxClockSkew: Int64 = 3600
}

/// Why an identity or a signed-refs is not accepted. `kind` is stable for callers.
public struct TrustError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The bytes break the format (guts-identity(5)).
        case malformed
        /// A signature does not verify.
        case badSignature = "bad-signature"
        /// Signed by a key that is not a delegate.
        case notDelegate = "not-delegate"
        /// Fewer valid signatures than the threshold requires.
        case threshold
        /// A version does not follow from the previous one.
        case chain
        /// Older than what is already installed (rollback or replay).
        case stale
        /// Another identity than the one pinned or asked for.
        case mismatch
        /// An object or ref that must exist does not.
        case missing
        /// Reading or writing the repository failed.
        case io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
