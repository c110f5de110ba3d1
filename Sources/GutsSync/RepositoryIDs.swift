import GutsGit
import GutsSupport
import GutsTrust
import NIOConcurrencyHelpers

/// Finds served repositories by repository ID. Each repository's ID is the hash of the
/// root of its identity chain, so it is read once per identity tip and cached by path.
public final class RepositoryIDIndex: Sendable {
    struct Entry: Sendable {
        var tip: ObjectID
        var id: RepositoryID
    }

    private let cache = NIOLockedValueBox([String: Entry]())

    public init() {}

    /// The repository ID of the repository at `path`, nil when it has no identity or one
    /// that does not verify.
    public func id(of path: String) -> RepositoryID? {
        guard let repo = try? Repository.open(path), let tip = try? repo.resolveRef(TrustLayout.identityRef) else { return nil }
        if let hit = cache.withLockedValue({ $0[path] }), hit.tip == tip { return hit.id }
        guard let chain = try? TrustStore.loadChain(repo, tip: tip) else { return nil }
        cache.withLockedValue { $0[path] = Entry(tip: tip, id: chain.id) }
        return chain.id
    }

    /// The first served repository whose identity has `id`, with its local name.
    public func locate(_ id: RepositoryID, in catalog: RepositoryCatalog) -> (name: RepositoryName, path: String)? {
        for name in catalog.all() {
            guard let path = catalog.locate(name) else { continue }
            if self.id(of: path) == id { return (name, path) }
        }
        return nil
    }
}

/// `REPO` as a user or a peer writes it: a repository name or a repository ID.
public enum RepositoryRef: Hashable, Sendable, CustomStringConvertible {
    case name(RepositoryName)
    case id(RepositoryID)

    /// An ID when the text is one (right prefix, length and checksum), else a name.
    public init?(_ text: String) {
        if let id = RepositoryID(text) {
            self = .id(id)
        } else if let name = RepositoryName(text) {
            self = .name(name)
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case let .name(n): return n.value
        case let .id(i): return i.description
        }
    }
}
