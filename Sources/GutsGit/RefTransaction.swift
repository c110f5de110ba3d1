#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

extension Repository {
    /// Replaces every ref under `refs/` with `refs` in one step, as a mirror needs:
    /// under `packed-refs.lock`, checks that the current refs still equal `expected`
    /// (so a concurrent writer is detected, not overwritten), writes the complete new
    /// set as `packed-refs` (peeling annotated tags, so "fully-peeled" holds) and
    /// renames it into place, then removes loose ref files, which would shadow it.
    /// Readers see the old set or the new one; loose refs are only ever present in a
    /// repository that something other than guts wrote to.
    ///
    /// The objects the refs name must already be stored and connected.
    public func replaceRefs(with refs: [(name: String, id: ObjectID)], expected: [Ref]) throws {
        for r in refs where !(r.name.hasPrefix("refs/") && Refs.checkRefFormat(r.name)) {
            throw GitError(.invalidRefName, "invalid ref name '\(r.name)'")
        }
        let names = Set(refs.map(\.name))
        guard names.count == refs.count else { throw GitError(.refConflict, "duplicate ref names") }
        // A ref cannot be both a file and a directory (refs/heads/a and refs/heads/a/b).
        for r in refs {
            var prefix = ""
            for component in r.name.split(separator: "/").dropLast() {
                prefix += (prefix.isEmpty ? "" : "/") + component
                if names.contains(prefix) { throw GitError(.refConflict, "\(r.name) conflicts with \(prefix)") }
            }
        }
        let lock = try LockFile(commonDirectory + "/packed-refs")
        let current = try listRefs().filter { $0.symbolicTarget == nil }.map { "\($0.name) \($0.id)" }
        let before = expected.filter { $0.symbolicTarget == nil }.map { "\($0.name) \($0.id)" }
        guard current == before else {
            throw GitError(.refConflict, "refs changed while syncing; nothing was updated (run again)")
        }
        var packed: [Ref] = []
        for r in refs {
            var ref = Ref(name: r.name, id: r.id)
            ref.peeled = try peel(r.id)
            packed.append(ref)
        }
        try lock.commit(Refs.serializePacked(packed))
        for name in looseRefNames() where !name.hasSuffix(".lock") {
            let path = commonDirectory + "/" + name
            unlink(path)
        }
        pruneEmptyRefDirectories()
    }

    /// For an annotated tag, the first non-tag object it leads to; nil otherwise.
    func peel(_ id: ObjectID) throws -> ObjectID? {
        var current = id
        var peeled: ObjectID?
        for _ in 0..<32 {
            guard let object = try read(current), object.type == .tag else { return peeled }
            let tag = try Tag(parsing: object.body)
            current = tag.object
            peeled = current
        }
        throw GitError(.corrupt, "tag chain from \(id) is longer than 32")
    }

    /// Removes directories under refs/ left empty by deleted loose refs (keeps refs/heads and refs/tags).
    private func pruneEmptyRefDirectories() {
        var dirs: [String] = []
        var stack = ["refs"]
        while let rel = stack.popLast() {
            for entry in Files.list(commonDirectory + "/" + rel) where Files.isDirectory(commonDirectory + "/" + rel + "/" + entry) {
                stack.append(rel + "/" + entry)
                dirs.append(rel + "/" + entry)
            }
        }
        for rel in dirs.sorted(by: { $0.count > $1.count }) where rel != "refs/heads" && rel != "refs/tags" {
            rmdir(commonDirectory + "/" + rel)
        }
    }
}
