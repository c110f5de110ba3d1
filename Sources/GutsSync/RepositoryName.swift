#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsIdentity
import GutsSupport

/// A repository name as peers and users write it: `NAME` or `OWNER/NAME`, each part
/// 1 to 100 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit, not
/// ending in `.git` or `.lock`. It maps to `<root>/<name>.git` and can never leave
/// `<root>` (no `..`, no absolute paths, no other separators).
public struct RepositoryName: Hashable, Sendable, CustomStringConvertible, Comparable {
    public let value: String

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return nil }
        for part in parts {
            guard (1...100).contains(part.utf8.count), let first = part.utf8.first,
                  Self.isAlphanumeric(first),
                  part.utf8.allSatisfy({ Self.isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }),
                  !part.hasSuffix(".git"), !part.hasSuffix(".lock") else { return nil }
        }
        value = text
    }

    static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    /// `<root>/<name>.git`.
    public func path(in root: String) -> String { root + "/" + value + ".git" }

    public var description: String { value }
    public static func < (a: RepositoryName, b: RepositoryName) -> Bool { a.value < b.value }
}

/// The repositories a node serves: `<home>/repos` plus any `--repos` directories,
/// each holding `NAME.git` or `OWNER/NAME.git` bare repositories.
///
/// Access: a repository is public unless its directory holds a `guts-allow` file,
/// which lists the peer IDs allowed to read it (one per line, `#` comments).
///
/// Symbolic links: a repository is served only when it really lies inside its root.
/// The repository directory, its `objects`, `objects/pack` and `refs` directories and
/// every file in `objects/pack` are resolved (`realpath`) and must all be under the
/// resolved root; a link inside the root that points inside it is fine, one that
/// leaves it makes the repository absent (unless `followExternalLinks`).
public struct RepositoryCatalog: Sendable {
    public static let allowFile = "guts-allow"
    public let roots: [String]
    /// Serve repositories that symbolic links place outside their root.
    public let followExternalLinks: Bool

    public init(roots: [String], followExternalLinks: Bool = false) {
        self.roots = roots
        self.followExternalLinks = followExternalLinks
    }

    /// The path of `name` in the first root that has it.
    public func locate(_ name: RepositoryName) -> String? {
        for root in roots {
            let path = name.path(in: root)
            if Files.isDirectory(path + "/objects") && isContained(path, in: root) { return path }
        }
        return nil
    }

    /// Whether the repository at `path` really lies inside `root` (see the type's
    /// description); always true with `followExternalLinks`.
    public func isContained(_ path: String, in root: String) -> Bool {
        if followExternalLinks { return true }
        guard let realRoot = Self.realPath(root) else { return false }
        let prefix = realRoot == "/" ? "/" : realRoot + "/"
        func inside(_ p: String) -> Bool {
            guard let real = Self.realPath(p) else { return !Files.exists(p) }  // absent parts are harmless
            return real.hasPrefix(prefix)
        }
        guard Files.exists(path), inside(path) else { return false }
        for sub in ["objects", "objects/pack", "refs", "packed-refs", "HEAD"] where !inside(path + "/" + sub) { return false }
        for file in Files.list(path + "/objects/pack") where !inside(path + "/objects/pack/" + file) { return false }
        return true
    }

    /// `realpath(3)`: the absolute path with every symbolic link resolved, or nil.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    public enum Access: Equatable, Sendable {
        case allowed
        case denied
        /// The allow file exists but cannot be read or parsed: nobody gets in.
        case broken(String)
    }

    /// Whether `peer` may read the repository at `path`.
    /// Whether the repository at `path` is restricted (has a `guts-allow` file, even an
    /// empty one, which admits nobody).
    public func isRestricted(_ path: String) -> Bool {
        Files.exists(path + "/" + Self.allowFile)
    }

    public func access(_ path: String, for peer: PeerID) -> Access {
        let file = path + "/" + Self.allowFile
        guard Files.exists(file) else { return .allowed }
        guard let text = try? Files.readString(file, limit: 1 << 20) else { return .broken("cannot read \(file)") }
        // Parse the whole file before deciding: a bad line anywhere breaks it for everyone,
        // whether or not the peer is listed above it.
        var allowed = false
        for raw in text.split(whereSeparator: \.isNewline) {  // "\r\n" is one Character, not "\n"
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.filter { !$0.isWhitespace }
            if trimmed.isEmpty { continue }
            guard let id = PeerID(trimmed) else { return .broken("\(file): '\(trimmed)' is not a peer ID") }
            if id == peer { allowed = true }
        }
        return allowed ? .allowed : .denied
    }

    /// Every servable repository name, sorted.
    public func all() -> [RepositoryName] {
        var names = Set<RepositoryName>()
        for root in roots {
            for entry in Files.list(root) {
                if entry.hasSuffix(".git"), let n = RepositoryName(String(entry.dropLast(4))), Files.isDirectory(root + "/" + entry + "/objects"),
                   isContained(root + "/" + entry, in: root) {
                    names.insert(n)
                } else if Files.isDirectory(root + "/" + entry), !entry.hasSuffix(".git") {
                    for sub in Files.list(root + "/" + entry) where sub.hasSuffix(".git") {
                        if let n = RepositoryName(entry + "/" + String(sub.dropLast(4))),
                           Files.isDirectory(root + "/" + entry + "/" + sub + "/objects"),
                           isContained(root + "/" + entry + "/" + sub, in: root) {
                            names.insert(n)
                        }
                    }
                }
            }
        }
        return names.sorted()
    }
}
