import GutsSupport

/// Everything that can go wrong in the object layer, with a stable kind for callers
/// and a one-line human message.
public struct GitError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Broad categories callers branch on.
    public enum Kind: String, Sendable, Equatable {
        /// The path is not a git repository.
        case notARepository = "not-a-repository"
        /// A repository feature this implementation does not handle (e.g. SHA-256).
        case unsupported
        /// An object that was asked for does not exist.
        case notFound = "not-found"
        /// Stored bytes are malformed (zlib, headers, delta, pack or index structure).
        case corrupt
        /// A declared size exceeds a configured limit.
        case tooLarge = "too-large"
        /// A hash does not match the content.
        case hashMismatch = "hash-mismatch"
        /// A delta's base is absent.
        case missingBase = "missing-base"
        /// Delta entries refer to each other in a loop, or a chain is too deep.
        case deltaCycle = "delta-cycle"
        /// An object's content breaks git's rules (fsck).
        case invalidObject = "invalid-object"
        /// A ref name breaks `git check-ref-format` rules.
        case invalidRefName = "invalid-ref-name"
        /// A ref's old value differed from what the caller expected, or it is locked.
        case refConflict = "ref-conflict"
        /// A file-system call failed.
        case io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    static func io(_ error: any Error) -> GitError {
        if let g = error as? GitError { return g }
        return GitError(.io, String(describing: error))
    }
}

/// Bounds applied to untrusted input before any allocation. Every size read from disk
/// or from a peer is checked against these first.
public struct ObjectLimits: Sendable, Equatable {
    /// Largest object (inflated body) accepted, in bytes.
    public var maxObjectSize: Int
    /// Longest delta chain followed before giving up (also stops cycles).
    public var maxDeltaDepth: Int
    /// Most objects a single pack may declare.
    public var maxPackObjects: Int
    /// Most entries accepted in one tree.
    public var maxTreeEntries: Int
    /// Largest loose ref or `packed-refs` file read.
    public var maxRefFileSize: Int
    /// Bytes of resolved delta bases kept in memory while resolving a pack.
    public var deltaBaseBudget: Int

    public init(maxObjectSize: Int = 1 << 30, maxDeltaDepth: Int = 10_000, maxPackObjects: Int = 50_000_000,
                maxTreeEntries: Int = 1_000_000, maxRefFileSize: Int = 256 << 20, deltaBaseBudget: Int = 256 << 20) {
        self.maxObjectSize = maxObjectSize
        self.maxDeltaDepth = maxDeltaDepth
        self.maxPackObjects = maxPackObjects
        self.maxTreeEntries = maxTreeEntries
        self.maxRefFileSize = maxRefFileSize
        self.deltaBaseBudget = deltaBaseBudget
    }

    /// The defaults: 1 GiB objects, 10,000-deep chains, 50 million objects per pack.
    public static let `default` = ObjectLimits()
}
