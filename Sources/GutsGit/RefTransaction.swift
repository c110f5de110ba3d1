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
        let current = try listRefs().filter { $0.symbolicTarget == nil }
        let before = expected.filter { $0.symbolicTarget == nil }
        guard current.count == before.count, zip(current, before).allSatisfy({ $0.name == $1.name && $0.id == $1.id }) else {
            throw GitError(.refConflict, "refs changed while syncing; nothing was updated (run again)")
        }
        // A peeled value already recorded for the same object is kept: peeling every
        // ref again (reading each tag and commit) was most of an incremental sync's ref
        // update on a mirror with many refs. Only new objects are read.
        var known: [ObjectID: ObjectID?] = [:]
        if packedRefsFullyPeeled() {
            for r in try packedRefs() { known[r.id] = r.peeled }
        }
        var packed: [Ref] = []
        for r in refs {
            var ref = Ref(name: r.name, id: r.id)
            if let peeled = known[r.id] {
                ref.peeled = peeled
            } else {
                ref.peeled = try peel(r.id)
                known[r.id] = ref.peeled
            }
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
            // The repository's own objects were hashed as they came in.
            guard let object = try readTrusted(current), object.type == .tag else { return peeled }
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

extension Repository {
    /// Replaces every ref below `prefix` (e.g. `refs/namespaces/<peer>/`) with `refs`, in
    /// one step, leaving all other refs alone: under `packed-refs.lock`, the packed
    /// entries below `prefix` are swapped for the new set (peeled) and the file renamed
    /// into place; loose refs below `prefix`, which would shadow it, are removed after.
    /// Safe beside writers of other refs (git push writes loose refs and takes the same
    /// lock to rewrite packed-refs). The objects must already be stored.
    public func replaceRefs(under prefix: String, with refs: [(name: String, id: ObjectID)]) throws {
        guard prefix.hasPrefix("refs/"), prefix.hasSuffix("/"), prefix.count > 6 else {
            throw GitError(.invalidRefName, "invalid ref prefix '\(prefix)'")
        }
        for r in refs where !(r.name.hasPrefix(prefix) && Refs.checkRefFormat(r.name)) {
            throw GitError(.invalidRefName, "invalid ref name '\(r.name)' for prefix \(prefix)")
        }
        let names = Set(refs.map(\.name))
        guard names.count == refs.count else { throw GitError(.refConflict, "duplicate ref names") }
        let lock = try LockFile(commonDirectory + "/packed-refs")
        var packed = try packedRefs().filter { !$0.name.hasPrefix(prefix) }
        if !packedRefsFullyPeeled() {
            // The rewritten file claims "fully-peeled", so every kept entry must be peeled too.
            for i in packed.indices where packed[i].peeled == nil { packed[i].peeled = try peel(packed[i].id) }
        }
        let others = Set(packed.map(\.name)).union(looseRefNames().filter { !$0.hasPrefix(prefix) })
        for r in refs {
            var parent = ""
            for component in r.name.split(separator: "/").dropLast() {
                parent += (parent.isEmpty ? "" : "/") + component
                if names.contains(parent) || others.contains(parent) { throw GitError(.refConflict, "\(r.name) conflicts with \(parent)") }
            }
            var ref = Ref(name: r.name, id: r.id)
            ref.peeled = try peel(r.id)
            packed.append(ref)
        }
        try lock.commit(Refs.serializePacked(packed))
        for name in looseRefNames() where name.hasPrefix(prefix) && !name.hasSuffix(".lock") {
            unlink(commonDirectory + "/" + name)
        }
        // Directories emptied by removed loose refs, deepest first.
        let top = commonDirectory + "/" + String(prefix.dropLast())
        var stack = [top]
        var dirs: [String] = []
        while let d = stack.popLast(), dirs.count < 100_000 {
            dirs.append(d)
            for e in Files.list(d) where Files.isDirectory(d + "/" + e) { stack.append(d + "/" + e) }
        }
        for d in dirs.sorted(by: { $0.count > $1.count }) { rmdir(d) }
    }

    /// Whether packed-refs declares the `fully-peeled` trait (every annotated tag has its
    /// `^` line), or does not exist.
    func packedRefsFullyPeeled() -> Bool {
        let fd = Glibc.open(commonDirectory + "/packed-refs", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 256) }
        guard n > 0 else { return true }
        let first = buf[0..<n].split(separator: 0x0A, maxSplits: 1, omittingEmptySubsequences: false).first ?? []
        let line = String(decoding: first, as: UTF8.self)
        return line.hasPrefix("# pack-refs with:") && line.split(separator: " ").contains("fully-peeled")
    }
}
