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
        /// An object's SHA-1 computation shows a known collision attack (`SHA1DC`).
        case collisionAttack = "sha1-collision"
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
        /// Processing the input would take more work than its size justifies (see
        /// `WorkBudget`), or ran past its deadline.
        case overBudget = "over-budget"
        /// A file-system call failed.
        case io
    }

    public let kind: Kind
    public let message: String
    /// The configured limit that was crossed, when that is why this failed (object
    /// size, delta depth, work budget...). Callers use it to tell a peer that sent
    /// more than the limits allow apart from one that sent broken data.
    public let limit: ResourceLimit?

    public init(_ kind: Kind, _ message: String, limit: ResourceLimit? = nil) {
        self.kind = kind
        self.message = message
        self.limit = limit
    }

    public var description: String { message }

    /// The same error with `prefix` before its message (kind and limit kept).
    func prefixed(_ prefix: String) -> GitError {
        GitError(kind, prefix + message, limit: limit)
    }

    static func io(_ error: any Error) -> GitError {
        if let g = error as? GitError { return g }
        return GitError(.io, String(describing: error))
    }
}

/// The limits on untrusted input that can be crossed. The raw values are the option
/// and config key names (`--max-object-size`, `max-object-size = ...`) that raise them.
public enum ResourceLimit: String, Sendable, Equatable, CaseIterable {
    /// `ObjectLimits.maxObjectSize`: an object (or a delta) declares a larger size.
    case objectSize = "max-object-size"
    /// `ObjectLimits.maxDeltaDepth`: a delta chain is longer.
    case deltaDepth = "max-delta-depth"
    /// `ObjectLimits.maxPackObjects`: a pack declares more objects.
    case packObjects = "max-pack-objects"
    /// The work budget for inflating (`ObjectLimits.workFactor`, `maxWork`).
    case inflatedBytes = "inflated-bytes"
    /// The work budget for applying deltas (`ObjectLimits.workFactor`, `maxWork`).
    case deltaBytes = "delta-bytes"
    /// A sync's pack is larger than its configured maximum (`--max-pack-size`).
    case packSize = "max-pack-size"
    /// The overall deadline passed (`--deadline`).
    case deadline

    /// The setting that raises this limit, as an option and config key name.
    public var setting: String {
        switch self {
        case .objectSize, .deltaDepth, .packObjects, .packSize: return rawValue
        case .inflatedBytes, .deltaBytes: return "work-factor"
        case .deadline: return "deadline"
        }
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
    /// Bytes of resolved delta bases kept in memory while resolving a pack (shared
    /// by the worker threads); bases beyond it are dropped and rebuilt when needed.
    public var deltaBaseBudget: Int
    /// Work allowed per byte of input: inflating and applying deltas may each produce
    /// at most `workFactor` times the size of the pack (never of sizes it declares),
    /// plus `workAllowance`, and never more than `maxWork`. 0 turns the budget off.
    public var workFactor: Int
    /// Work every pack may do whatever its size (room for one large object sent as a
    /// small pack).
    public var workAllowance: Int
    /// Absolute cap on each of inflated and delta-produced bytes per pack.
    public var maxWork: Int

    public init(maxObjectSize: Int = 100 << 20, maxDeltaDepth: Int = 64, maxPackObjects: Int = 50_000_000,
                maxTreeEntries: Int = 1_000_000, maxRefFileSize: Int = 256 << 20, deltaBaseBudget: Int = 64 << 20,
                workFactor: Int = ObjectLimits.defaultWorkFactor, workAllowance: Int = ObjectLimits.defaultWorkAllowance,
                maxWork: Int = ObjectLimits.defaultMaxWork) {
        self.maxObjectSize = maxObjectSize
        self.maxDeltaDepth = maxDeltaDepth
        self.maxPackObjects = maxPackObjects
        self.maxTreeEntries = maxTreeEntries
        self.maxRefFileSize = maxRefFileSize
        self.deltaBaseBudget = deltaBaseBudget
        self.workFactor = workFactor
        self.workAllowance = workAllowance
        self.maxWork = maxWork
    }

    /// Source histories packed by git need 3-15 times their pack size of each kind of
    /// work (measured with `guts-bench hostile --calibrate`); 64 leaves room for more
    /// delta-heavy ones. A file edited in every commit (a ChangeLog) can need far more.
    public static let defaultWorkFactor = 64
    public static let defaultWorkAllowance = 8 << 20
    public static let defaultMaxWork = 64 << 30

    /// The defaults for data from peers and for `objects verify`: 100 MiB objects,
    /// 64-deep delta chains (git writes at most 50 unless told otherwise), 50 million
    /// objects per pack, and the work budget.
    public static let `default` = ObjectLimits()

    /// For reading repositories this node keeps itself (serving, announcing, local
    /// bases): the structural checks stay, but objects up to 1 GiB, chains of any
    /// realistic depth (`git gc --aggressive` once wrote 250) and no work budget.
    public static let localStore = ObjectLimits(maxObjectSize: 1 << 30, maxDeltaDepth: 10_000, deltaBaseBudget: 256 << 20,
                                                workFactor: 0)
}
