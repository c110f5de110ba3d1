#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// A ref and the object it names.
public struct Ref: Sendable, Equatable {
    /// Full name, e.g. `refs/heads/main`.
    public var name: String
    /// The object the ref points at (after following symbolic refs).
    public var id: ObjectID
    /// For symbolic refs (e.g. `refs/remotes/origin/HEAD`), the ref it points to.
    public var symbolicTarget: String?
    /// For annotated tags in `packed-refs`, the peeled (non-tag) object when recorded.
    public var peeled: ObjectID?

    public init(name: String, id: ObjectID, symbolicTarget: String? = nil, peeled: ObjectID? = nil) {
        self.name = name
        self.id = id
        self.symbolicTarget = symbolicTarget
        self.peeled = peeled
    }
}

/// What `HEAD` says.
public enum Head: Sendable, Equatable {
    /// `ref: <name>`; `id` is nil for an unborn branch.
    case symbolic(String, id: ObjectID?)
    /// A detached object ID.
    case detached(ObjectID)
}

/// The condition a ref update or deletion requires of the ref's current value.
public enum RefExpectation: Sendable, Equatable {
    /// Do not check.
    case any
    /// The ref must not exist (create only).
    case absent
    /// The ref must currently name this object.
    case value(ObjectID)
}

/// Raw content of a loose ref file.
enum RefValue: Equatable {
    case direct(ObjectID)
    case symbolic(String)
}

/// Ref-name rules and ref file helpers.
public enum Refs {
    /// git's ref order: the names' bytes compared with memcmp (shorter first on a tie).
    /// Faster than comparing `utf8` views element by element, which matters when
    /// thousands of refs share long prefixes (`refs/namespaces/<peer>/refs/heads/`).
    @inlinable
    public static func byteOrder(_ a: String, _ b: String) -> Bool {
        var a = a, b = b
        return a.withUTF8 { pa in
            b.withUTF8 { pb in
                let n = min(pa.count, pb.count)
                if n > 0, let x = pa.baseAddress, let y = pb.baseAddress {
                    let r = memcmp(x, y, n)
                    if r != 0 { return r < 0 }
                }
                return pa.count < pb.count
            }
        }
    }

    /// Checks a ref name with the rules of `git check-ref-format`:
    /// components separated by `/` may not be empty, begin with `.` or end with
    /// `.lock`; the name may not contain `..`, `@{`, ASCII control characters, DEL,
    /// space, `~ ^ : ? * [ \`; may not begin or end with `/`, end with `.`, or be `@`;
    /// and needs at least two components unless `allowOneLevel`.
    public static func checkRefFormat(_ name: String, allowOneLevel: Bool = false) -> Bool {
        var name = name
        return name.withUTF8 { checkRefFormat(bytes: UnsafeRawBufferPointer($0), allowOneLevel: allowOneLevel) }
    }

    /// `checkRefFormat` on the name's UTF-8 bytes.
    static func checkRefFormat(bytes b: UnsafeRawBufferPointer, allowOneLevel: Bool = false) -> Bool {
        guard let first = b.first, let last = b.last else { return false }
        guard !(b.count == 1 && first == 0x40), last != 0x2E, first != 0x2F, last != 0x2F else { return false }
        var components = 1
        var componentStart = 0
        for i in 0...b.count {
            if i == b.count || b[i] == 0x2F {
                let len = i - componentStart
                if len == 0 { return false }
                if b[componentStart] == 0x2E { return false }
                // ".lock"
                if len >= 5 && b[i - 5] == 0x2E && b[i - 4] == 0x6C && b[i - 3] == 0x6F && b[i - 2] == 0x63 && b[i - 1] == 0x6B {
                    return false
                }
                if i < b.count { components += 1 }
                componentStart = i + 1
                continue
            }
            let c = b[i]
            if c < 0x20 || c == 0x7F { return false }
            switch c {
            case 0x20, 0x7E, 0x5E, 0x3A, 0x3F, 0x2A, 0x5B, 0x5C: return false
            case 0x2E where i + 1 < b.count && b[i + 1] == 0x2E: return false
            case 0x40 where i + 1 < b.count && b[i + 1] == 0x7B: return false
            default: break
            }
        }
        return allowOneLevel || components >= 2
    }

    /// Parses a loose ref file: 40 hex digits, or `ref: <name>`.
    static func parse(_ text: String) -> RefValue? {
        if text.hasPrefix("ref:") {
            let target = text.dropFirst(4).trimmingCharacters()
            guard target == "HEAD" || checkRefFormat(target) else { return nil }
            return .symbolic(target)
        }
        let trimmed = text.trimmingCharacters()
        guard trimmed.utf8.count == 40, let id = ObjectID(hex: trimmed) else { return nil }
        return .direct(id)
    }

    /// Parses `packed-refs`. Throws on malformed lines.
    static func parsePacked(_ text: String) throws -> [Ref] {
        var text = text
        return try text.withUTF8 { try parsePacked(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Parses packed-refs on its bytes (splitting a String into lines by Character
    /// was most of the time a mirror with a thousand refs spent listing them).
    static func parsePacked(bytes b: UnsafeRawBufferPointer) throws -> [Ref] {
        var refs: [Ref] = []
        var n = 0
        var i = 0
        while i < b.count {
            var e = i
            while e < b.count && b[e] != 0x0A { e += 1 }
            var line = UnsafeRawBufferPointer(rebasing: b[i..<e])
            i = e + 1
            if line.isEmpty { continue }
            n += 1
            if line.last == 0x0D { line = UnsafeRawBufferPointer(rebasing: line.dropLast()) }
            if line.first == UInt8(ascii: "#") { continue }
            if line.first == UInt8(ascii: "^") {
                guard !refs.isEmpty, let id = ObjectID(hexBytes: UnsafeRawBufferPointer(rebasing: line.dropFirst())) else {
                    throw GitError(.corrupt, "packed-refs line \(n): bad peeled line")
                }
                refs[refs.count - 1].peeled = id
                continue
            }
            guard let sp = line.firstIndex(of: 0x20),
                  let id = ObjectID(hexBytes: UnsafeRawBufferPointer(rebasing: line[line.startIndex..<sp])) else {
                throw GitError(.corrupt, "packed-refs line \(n): malformed")
            }
            let nameBytes = UnsafeRawBufferPointer(rebasing: line[(sp + 1)...])
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard checkRefFormat(bytes: nameBytes) else { throw GitError(.corrupt, "packed-refs line \(n): bad ref name '\(name)'") }
            refs.append(Ref(name: name, id: id))
        }
        return refs
    }

    static func serializePacked(_ refs: [Ref]) -> String {
        var s = "# pack-refs with: peeled fully-peeled sorted \n"
        for r in refs.sorted(by: { byteOrder($0.name, $1.name) }) {
            s += "\(r.id.hex) \(r.name)\n"
            if let p = r.peeled { s += "^\(p.hex)\n" }
        }
        return s
    }
}

/// A lock file `<path>.lock` created with O_EXCL, as git does. Committing renames it
/// over the target; dropping it without committing removes it.
final class LockFile {
    let target: String
    let path: String
    private var fd: Int32
    private var done = false

    /// Creates `<target>.lock` exclusively; fails (leaving any existing lock alone)
    /// when another writer holds it.
    convenience init(_ target: String) throws {
        let path = target + ".lock"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let code = errno
            if code == EEXIST {
                throw GitError(.refConflict, "\(path) exists: another process is updating it (remove it if that process died)")
            }
            throw GitError(.io, FileError(path: path, operation: "create lock", code: code).description)
        }
        self.init(target: target, fd: fd)
    }

    private init(target: String, fd: Int32) {
        self.target = target
        self.path = target + ".lock"
        self.fd = fd
    }

    func commit(_ text: String) throws {
        let code = Files.writeAll(fd, Array(text.utf8))
        guard code == 0 else { throw GitError(.io, FileError(path: path, operation: "write", code: code).description) }
        guard fsync(fd) == 0 else { throw GitError(.io, FileError(path: path, operation: "fsync", code: errno).description) }
        close(fd)
        fd = -1
        guard rename(path, target) == 0 else {
            throw GitError(.io, FileError(path: target, operation: "rename", code: errno).description)
        }
        done = true
        Files.syncDirectory(Files.directoryName(target))
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !done { unlink(path) }
    }
}

extension Repository {
    /// Reads a loose ref file; nil when absent. Throws on unreadable or malformed files.
    func readLooseRef(_ name: String) throws -> RefValue? {
        let dir = name == "HEAD" ? gitDirectory : commonDirectory
        let path = dir + "/" + name
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let text: String
        do {
            text = try Files.readString(path, limit: 4096)
        } catch {
            throw GitError.io(error)
        }
        guard let value = Refs.parse(text) else { throw GitError(.corrupt, "\(name): malformed ref file") }
        return value
    }

    /// The entries of `packed-refs` ([] when absent).
    func packedRefs() throws -> [Ref] {
        let path = commonDirectory + "/packed-refs"
        // Its identity (device, inode, size, modification and change times) tells
        // whether the last parse still holds: git and guts replace the file by renaming
        // a new one over it, and any change in place moves its change time. File times
        // come from a coarse clock, so two changes a few milliseconds apart can share
        // one: a parse is only cached (and a cached one only used) once the file's
        // change time is more than 100 ms in the past, when a later change can no longer
        // carry the same time.
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        let stamp = [Int(st.st_dev), Int(st.st_ino), Int(st.st_size), st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     st.st_ctim.tv_sec, st.st_ctim.tv_nsec]
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let age = Double(now.tv_sec - st.st_ctim.tv_sec) + Double(now.tv_nsec - st.st_ctim.tv_nsec) / 1e9
        let settled = age > 0.1
        if settled, let refs = cachedPackedRefs(stamp) { return refs }
        let bytes: [UInt8]
        do {
            bytes = try Files.read(path, limit: limits.maxRefFileSize)
        } catch {
            throw GitError.io(error)
        }
        let refs = try bytes.withUnsafeBytes { try Refs.parsePacked(bytes: $0) }
        if settled { cachePackedRefs(refs, stamp: stamp) }
        return refs
    }

    /// Names of loose refs under `refs/`, found without recursion.
    func looseRefNames() -> [String] {
        var names: [String] = []
        var stack = ["refs"]
        while let rel = stack.popLast() {
            for entry in Files.list(commonDirectory + "/" + rel) {
                let child = rel + "/" + entry
                let full = commonDirectory + "/" + child
                var st = stat()
                guard lstat(full, &st) == 0 else { continue }
                if (st.st_mode & S_IFMT) == S_IFDIR {
                    stack.append(child)
                } else if (st.st_mode & S_IFMT) == S_IFREG {
                    names.append(child)
                }
            }
        }
        return names
    }

    /// The object a ref names, following symbolic refs (at most 5 levels);
    /// nil when the ref does not exist.
    public func resolveRef(_ name: String) throws -> ObjectID? {
        var current = name
        for _ in 0..<6 {
            guard current == "HEAD" || Refs.checkRefFormat(current) else {
                throw GitError(.invalidRefName, "invalid ref name '\(current)'")
            }
            switch try readLooseRef(current) {
            case .direct(let id)?: return id
            case .symbolic(let target)?: current = target
            case nil:
                if current == "HEAD" { return nil }
                return try packedRefs().first(where: { $0.name == current })?.id
            }
        }
        throw GitError(.corrupt, "\(name): symbolic ref chain too long")
    }

    /// All refs under `refs/`, loose and packed (a loose ref wins over a packed one),
    /// sorted by name. Symbolic refs appear resolved, with `symbolicTarget` set;
    /// dangling symbolic refs and invalid names are left out.
    public func listRefs() throws -> [Ref] {
        let packed = try packedRefs()
        let loose = looseRefNames().filter { Refs.checkRefFormat($0) && !$0.hasSuffix(".lock") }
        // Usually packed-refs alone, strictly in order, as it is then returned. Out of
        // order or with a name twice, it goes the general way, which keeps one per name.
        if loose.isEmpty, zip(packed, packed.dropFirst()).allSatisfy({ Refs.byteOrder($0.name, $1.name) }) { return packed }
        var byName: [String: Ref] = [:]
        for r in packed { byName[r.name] = r }
        var looseSeen = 0
        for name in loose {
            looseSeen += 1
            switch try readLooseRef(name) {
            case .direct(let id)?: byName[name] = Ref(name: name, id: id)
            case .symbolic(let target)?:
                if let id = try resolveRef(target) { byName[name] = Ref(name: name, id: id, symbolicTarget: target) }
            case nil: break
            }
        }
        // With no loose refs and no name twice, packed-refs as it is, sorted.
        var refs = packed.count == byName.count && looseSeen == 0 ? packed : Array(byName.values)
        if !zip(refs, refs.dropFirst()).allSatisfy({ Refs.byteOrder($0.name, $1.name) }) {
            refs.sort { Refs.byteOrder($0.name, $1.name) }
        }
        return refs
    }

    /// What HEAD says: a symbolic ref (possibly unborn) or a detached ID.
    public func head() throws -> Head {
        switch try readLooseRef("HEAD") {
        case .direct(let id)?: return .detached(id)
        case .symbolic(let target)?: return .symbolic(target, id: try resolveRef(target))
        case nil: throw GitError(.corrupt, "HEAD is missing")
        }
    }

    /// Points HEAD at `ref` (e.g. `refs/heads/main`), atomically via `HEAD.lock`.
    public func setHead(symbolic ref: String) throws {
        guard ref.hasPrefix("refs/"), Refs.checkRefFormat(ref) else {
            throw GitError(.invalidRefName, "invalid ref name '\(ref)'")
        }
        let lock = try LockFile(gitDirectory + "/HEAD")
        try lock.commit("ref: \(ref)\n")
    }

    /// The current direct value of `name` (loose, else packed), refusing symbolic refs.
    private func directValue(_ name: String) throws -> ObjectID? {
        switch try readLooseRef(name) {
        case .direct(let id)?: return id
        case .symbolic?: throw GitError(.unsupported, "\(name) is a symbolic ref")
        case nil: return try packedRefs().first(where: { $0.name == name })?.id
        }
    }

    private func check(_ name: String, _ current: ObjectID?, _ expected: RefExpectation) throws {
        switch expected {
        case .any: return
        case .absent:
            if let current { throw GitError(.refConflict, "\(name) already exists (at \(current))") }
        case .value(let id):
            guard current == id else {
                throw GitError(.refConflict, "\(name) is at \(current?.hex ?? "nothing"), expected \(id)")
            }
        }
    }

    /// Sets `name` (which must start with `refs/` and pass `checkRefFormat`) to `id`
    /// as git does: create `<name>.lock` exclusively, check the current value against
    /// `expectedOld` while holding the lock, write, fsync, rename. Refuses names that
    /// conflict with an existing ref as directory and file (`a` vs `a/b`).
    /// Does not check that `id` exists; callers store objects first.
    public func updateRef(_ name: String, to id: ObjectID, expectedOld: RefExpectation = .any) throws {
        guard name.hasPrefix("refs/"), Refs.checkRefFormat(name) else {
            throw GitError(.invalidRefName, "invalid ref name '\(name)'")
        }
        let packed = try packedRefs()
        let prefix = name + "/"
        var parent = ""
        for component in name.split(separator: "/").dropLast() {
            parent += (parent.isEmpty ? "" : "/") + component
            if packed.contains(where: { $0.name == parent }) || (parent.count > 4 && Files.exists(commonDirectory + "/" + parent) && !Files.isDirectory(commonDirectory + "/" + parent)) {
                throw GitError(.refConflict, "cannot create \(name): \(parent) exists")
            }
        }
        if packed.contains(where: { $0.name.hasPrefix(prefix) }) || Files.isDirectory(commonDirectory + "/" + name) {
            throw GitError(.refConflict, "cannot create \(name): refs exist below it")
        }
        let path = commonDirectory + "/" + name
        do {
            try Files.makeDirectories(Files.directoryName(path))
        } catch { throw GitError.io(error) }
        let lock = try LockFile(path)
        try check(name, try directValue(name), expectedOld)
        try lock.commit(id.hex + "\n")
    }

    /// Deletes `name` from loose refs and `packed-refs` (rewritten under
    /// `packed-refs.lock`), after checking `expectedOld`. Returns false if it did not exist.
    @discardableResult
    public func deleteRef(_ name: String, expectedOld: RefExpectation = .any) throws -> Bool {
        guard name.hasPrefix("refs/"), Refs.checkRefFormat(name) else {
            throw GitError(.invalidRefName, "invalid ref name '\(name)'")
        }
        let path = commonDirectory + "/" + name
        guard Files.isDirectory(Files.directoryName(path)) || Files.exists(commonDirectory + "/packed-refs") else {
            try check(name, nil, expectedOld)
            return false
        }
        let lock = Files.isDirectory(Files.directoryName(path)) ? try LockFile(path) : nil
        let current = try directValue(name)
        try check(name, current, expectedOld)
        guard current != nil else { return false }
        // packed-refs first, so the old value can never reappear from it.
        let packed = try packedRefs()
        if packed.contains(where: { $0.name == name }) {
            let packLock = try LockFile(commonDirectory + "/packed-refs")
            let fresh = try packedRefs().filter { $0.name != name }
            try packLock.commit(Refs.serializePacked(fresh))
        }
        if Files.exists(path) && unlink(path) != 0 {
            throw GitError(.io, FileError(path: path, operation: "unlink", code: errno).description)
        }
        withExtendedLifetime(lock) {}
        return true
    }
}
