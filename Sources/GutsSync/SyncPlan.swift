import GutsGit
import GutsWire

/// One ref change a sync makes.
public struct RefChange: Equatable, Sendable {
    public let name: String
    public let old: ObjectID?
    public let new: ObjectID?

    public enum Kind: String, Sendable { case created, updated, deleted }
    public var kind: Kind { old == nil ? .created : (new == nil ? .deleted : .updated) }
}

/// What a sync has to do, computed from the remote's refs and the local state alone
/// (pure: no I/O). One round of negotiation: every local tip is offered as a "have",
/// so the number of round trips does not grow with history.
public struct SyncPlan: Equatable, Sendable {
    /// Remote refs the local repository will hold afterwards (a mirror: exactly these).
    public let remoteRefs: [(name: String, id: ObjectID)]
    /// Symbolic HEAD of the remote ("" when detached or absent).
    public let remoteHead: String
    /// Objects to ask for: remote tips not present locally.
    public let wants: [ObjectID]
    /// Local tips to offer.
    public let haves: [ObjectID]
    /// Every ref that changes.
    public let changes: [RefChange]
    /// Whether HEAD must be repointed.
    public let headChanges: Bool

    public var isUpToDate: Bool { changes.isEmpty && !headChanges }

    public static func == (a: SyncPlan, b: SyncPlan) -> Bool {
        a.remoteRefs.map { "\($0.name) \($0.id)" } == b.remoteRefs.map { "\($0.name) \($0.id)" }
            && a.remoteHead == b.remoteHead && a.wants == b.wants && a.haves == b.haves
            && a.changes == b.changes && a.headChanges == b.headChanges
    }

    public enum Invalid: Error, Equatable, CustomStringConvertible, Sendable {
        case badRefName(String)
        case badObjectID(String)
        case duplicateRef(String)
        case badHead(String)
        /// A ref below another ref (`a/b` next to `a`): no repository can hold both.
        case refConflict(String, String)

        public var description: String {
            switch self {
            case let .badRefName(n): return "peer sent an invalid ref name '\(n)'"
            case let .badObjectID(n): return "peer sent a ref '\(n)' with an object ID of the wrong kind"
            case let .duplicateRef(n): return "peer sent ref '\(n)' twice"
            case let .badHead(h): return "peer sent an invalid HEAD target '\(h)'"
            case let .refConflict(n, other): return "peer sent ref '\(n)', which conflicts with '\(other)' (no repository can hold both)"
            }
        }
    }

    /// Validates the peer's refs and computes the plan. `has` says whether the local
    /// repository stores an object; `localHead` is the current symbolic HEAD target.
    public static func make(remote: Refs, local: [Ref], localHead: String?, has: (ObjectID) -> Bool) throws -> SyncPlan {
        var remoteRefs: [(name: String, id: ObjectID)] = []
        var seen = Set<String>()
        for entry in remote.refs {
            guard entry.name.hasPrefix("refs/"), GutsGit.Refs.checkRefFormat(entry.name) else { throw Invalid.badRefName(entry.name) }
            guard let id = ObjectID(bytes: entry.id.bytes), id.algorithm == .sha1 else { throw Invalid.badObjectID(entry.name) }
            guard seen.insert(entry.name).inserted else { throw Invalid.duplicateRef(entry.name) }
            remoteRefs.append((entry.name, id))
        }
        // Peers send refs sorted: sorted here only when they are not.
        if !zip(remoteRefs, remoteRefs.dropFirst()).allSatisfy({ GutsGit.Refs.byteOrder($0.name, $1.name) }) {
            remoteRefs.sort { GutsGit.Refs.byteOrder($0.name, $1.name) }
        }
        // Refused now, as the peer's fault, rather than by the ref update after the transfer.
        for r in remoteRefs {
            var prefix = Substring()
            for component in r.name.split(separator: "/").dropLast() {
                prefix = prefix.isEmpty ? component : r.name[r.name.startIndex..<component.endIndex]
                if seen.contains(String(prefix)) { throw Invalid.refConflict(r.name, String(prefix)) }
            }
        }
        if !remote.head.isEmpty {
            guard remote.head.hasPrefix("refs/"), GutsGit.Refs.checkRefFormat(remote.head) else { throw Invalid.badHead(remote.head) }
        }
        var wantSet = Set<ObjectID>()
        var wants: [ObjectID] = []
        for r in remoteRefs where !has(r.id) && wantSet.insert(r.id).inserted { wants.append(r.id) }

        let localDirect = local.filter { $0.symbolicTarget == nil }
        var haveSet = Set<ObjectID>()
        var haves: [ObjectID] = []
        for r in localDirect where haveSet.insert(r.id).inserted && haves.count < SyncLimits.maxHaves { haves.append(r.id) }

        let before = Dictionary(localDirect.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(remoteRefs.map { ($0.name, $0.id) }, uniquingKeysWith: { a, _ in a })
        var changes: [RefChange] = []
        var names = Array(before.keys)
        for r in remoteRefs where before[r.name] == nil { names.append(r.name) }
        for name in names.sorted(by: GutsGit.Refs.byteOrder) {
            if before[name] != after[name] { changes.append(RefChange(name: name, old: before[name], new: after[name])) }
        }
        let headChanges = !remote.head.isEmpty && after[remote.head] != nil && remote.head != localHead
        return SyncPlan(remoteRefs: remoteRefs, remoteHead: remote.head, wants: wants, haves: haves,
                        changes: changes, headChanges: headChanges)
    }
}
