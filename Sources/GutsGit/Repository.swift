#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Anything objects can be read from: a repository, or a repository plus a
/// quarantine of objects received but not yet accepted.
public protocol ObjectStore: Sendable {
    /// Whether the object exists (cheap: no inflation).
    func contains(_ id: ObjectID) -> Bool
    /// The object, or nil when absent. Throws when it exists but cannot be read.
    func read(_ id: ObjectID) throws -> GitObject?
    /// As `read`, but packed objects are not hashed again: for walks over objects that
    /// were hashed when they entered the store (every entry of a received pack is
    /// hashed as it is indexed, and its index is written from those names). Structure,
    /// sizes, delta chains and the work budget are checked as by `read`. Whoever can
    /// rewrite the pack files can make this return other content; a peer cannot.
    func readTrusted(_ id: ObjectID) throws -> GitObject?
}

extension ObjectStore {
    public func readTrusted(_ id: ObjectID) throws -> GitObject? { try read(id) }
}

/// A git repository on disk: its object database (loose objects, any number of packs,
/// alternates) and refs. Opens bare repositories, non-bare work trees (`.git`
/// directory or a `.git` file with `gitdir:`) and linked work trees (`commondir`).
///
/// Thread-safe: the pack list is guarded by a lock and each `PackReader` serialises
/// its own reads.
public final class Repository: ObjectStore, @unchecked Sendable {
    /// The git directory (where HEAD lives).
    public let gitDirectory: String
    /// Where objects, refs and packed-refs live (equal to `gitDirectory` except in
    /// linked work trees).
    public let commonDirectory: String
    /// The main object directory (`<common>/objects`).
    public let objectsDirectory: String
    /// Extra object directories from `objects/info/alternates`.
    public let alternateDirectories: [String]
    public let limits: ObjectLimits

    private let lock = Mutex()
    private var loadedPacks: [PackReader]?
    private var packProblems: [(String, String)] = []
    /// Modification time of `objects/pack` when the packs were listed.
    private var loadedStamp: (Int, Int)?
    /// packed-refs as last parsed, with the identity of the file it was parsed from
    /// (device, inode, size, modification time in ns, change time in ns): a sync reads
    /// refs four or five times, and parsing a thousand lines each time added up.
    private var packedCache: (stamp: [Int], refs: [Ref])?

    /// The cached parse of packed-refs when `stamp` still describes the file.
    func cachedPackedRefs(_ stamp: [Int]) -> [Ref]? {
        lock.locked { packedCache.flatMap { $0.stamp == stamp ? $0.refs : nil } }
    }

    func cachePackedRefs(_ refs: [Ref], stamp: [Int]) {
        lock.locked { packedCache = (stamp, refs) }
    }

    init(gitDirectory: String, commonDirectory: String, limits: ObjectLimits) {
        self.gitDirectory = gitDirectory
        self.commonDirectory = commonDirectory
        self.objectsDirectory = commonDirectory + "/objects"
        self.limits = limits
        self.alternateDirectories = Repository.readAlternates(commonDirectory + "/objects", depth: 0)
    }

    /// Opens the repository at `path`: a bare repository, a work tree containing
    /// `.git`, or a git directory. Throws `.notARepository` otherwise and
    /// `.unsupported` for SHA-256 or unknown repository format versions.
    public static func open(_ path: String, limits: ObjectLimits = .localStore) throws -> Repository {
        let path = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        var gitDir: String
        let dotGit = path + "/.git"
        if Files.isDirectory(dotGit) {
            gitDir = dotGit
        } else if Files.exists(dotGit) {
            let text = (try? Files.readString(dotGit, limit: 4096)) ?? ""
            guard text.hasPrefix("gitdir:") else {
                throw GitError(.notARepository, "\(dotGit): not a gitdir file")
            }
            let target = text.dropFirst(7).trimmingCharacters()
            gitDir = target.hasPrefix("/") ? target : path + "/" + target
        } else {
            gitDir = path
        }
        guard looksLikeGitDirectory(gitDir) else {
            throw GitError(.notARepository, "\(path): not a git repository")
        }
        var common = gitDir
        if let text = try? Files.readString(gitDir + "/commondir", limit: 4096) {
            let c = text.trimmingCharacters()
            common = c.hasPrefix("/") ? c : gitDir + "/" + c
        }
        guard Files.isDirectory(common + "/objects") else {
            throw GitError(.notARepository, "\(path): no objects directory")
        }
        try checkFormat(common + "/config")
        return Repository(gitDirectory: gitDir, commonDirectory: common, limits: limits)
    }

    static func looksLikeGitDirectory(_ dir: String) -> Bool {
        guard Files.exists(dir + "/HEAD") else { return false }
        if Files.isDirectory(dir + "/objects") && Files.isDirectory(dir + "/refs") { return true }
        return Files.exists(dir + "/commondir")
    }

    /// Refuses repositories this implementation cannot read correctly.
    static func checkFormat(_ configPath: String) throws {
        guard let text = try? Files.readString(configPath, limit: 1 << 20) else { return }
        var section = ""
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = raw.trimmingCharacters()
            if line.hasPrefix("[") {
                section = String(line.dropFirst().prefix(while: { $0 != "]" && $0 != " " && $0 != "\"" })).lowercased()
                continue
            }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters().lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters().lowercased()
            if section == "core" && key == "repositoryformatversion", let v = Int(value), v > 1 {
                throw GitError(.unsupported, "repository format version \(v) is not supported")
            }
            if section == "extensions" && key == "objectformat" && value != "sha1" {
                throw GitError(.unsupported, "object format \(value) is not supported yet")
            }
        }
    }

    static func readAlternates(_ objects: String, depth: Int) -> [String] {
        guard depth < 5, let text = try? Files.readString(objects + "/info/alternates", limit: 1 << 20) else { return [] }
        var out: [String] = []
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters()
            if line.isEmpty || line.hasPrefix("#") { continue }
            let dir = line.hasPrefix("/") ? line : objects + "/" + line
            if Files.isDirectory(dir) {
                out.append(dir)
                out += readAlternates(dir, depth: depth + 1)
            }
        }
        return out
    }

    /// Creates an empty bare repository at `path` that stock git accepts: `HEAD`
    /// (pointing at `refs/heads/<initialBranch>`), `config` with
    /// `repositoryformatversion = 0` and `bare = true`, `objects/{info,pack}` and
    /// `refs/{heads,tags}`. Fails if `path` exists and is not empty.
    @discardableResult
    public static func create(bare path: String, initialBranch: String = "main", limits: ObjectLimits = .localStore) throws -> Repository {
        guard Refs.checkRefFormat("refs/heads/" + initialBranch) else {
            throw GitError(.invalidRefName, "invalid branch name '\(initialBranch)'")
        }
        if Files.exists(path) && !Files.list(path).isEmpty {
            throw GitError(.io, "\(path) already exists and is not empty")
        }
        do {
            try Files.makeDirectories(path)
            for dir in ["objects/info", "objects/pack", "refs/heads", "refs/tags", "info"] {
                try Files.makeDirectories(path + "/" + dir)
            }
            try Files.writeAtomically(path + "/config", string: """
                [core]
                \trepositoryformatversion = 0
                \tfilemode = true
                \tbare = true

                """)
            try Files.writeAtomically(path + "/description", string: "Unnamed repository; guts mirror\n")
            try Files.writeAtomically(path + "/HEAD", string: "ref: refs/heads/\(initialBranch)\n")
        } catch {
            throw GitError.io(error)
        }
        return Repository(gitDirectory: path, commonDirectory: path, limits: limits)
    }

    // MARK: Packs

    /// The packs in `objects/pack` (and in alternates), opened on first use.
    /// Packs whose index is missing or unreadable are skipped (see `Verifier`).
    public var packs: [PackReader] {
        lock.locked {
            if let p = loadedPacks { return p }
            loadedStamp = packDirectoryStamp()
            var found: [PackReader] = []
            var problems: [(String, String)] = []
            for dir in [objectsDirectory] + alternateDirectories {
                let packDir = dir + "/pack"
                for name in Files.list(packDir) where name.hasSuffix(".pack") {
                    let stem = String(name.dropLast(5))
                    let packPath = packDir + "/" + name
                    let idxPath = packDir + "/" + stem + ".idx"
                    guard Files.exists(idxPath) else {
                        problems.append((packPath, "pack has no index"))
                        continue
                    }
                    do {
                        found.append(try PackReader(packPath: packPath, indexPath: idxPath, limits: limits))
                    } catch {
                        problems.append((packPath, String(describing: error)))
                    }
                }
            }
            loadedPacks = found
            packProblems = problems
            return found
        }
    }

    /// Forgets opened packs so the next access sees packs added since.
    public func reloadPacks() {
        lock.locked { loadedPacks = nil }
    }

    private func packDirectoryStamp() -> (Int, Int)? {
        var st = stat()
        guard stat(objectsDirectory + "/pack", &st) == 0 else { return nil }
        return (Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec))
    }

    /// After a miss: when `objects/pack` changed since the packs were listed (a sync
    /// installed a pack, or a consolidation replaced them and removed loose objects),
    /// forgets them and returns true, so the caller looks again, as git does.
    private func packsChangedSinceListed() -> Bool {
        lock.locked {
            guard loadedPacks != nil else { return false }
            let now = packDirectoryStamp()
            if now?.0 == loadedStamp?.0 && now?.1 == loadedStamp?.1 { return false }
            loadedPacks = nil
            return true
        }
    }

    /// Moves a pack and its index (e.g. from a quarantine directory) into
    /// `objects/pack` under their canonical names `pack-<checksum>.{pack,idx}`, pack
    /// first and index last so readers never see an index without its pack.
    public func installPack(packPath: String, indexPath: String) throws {
        let reader = try PackReader(packPath: packPath, indexPath: indexPath, limits: limits)
        let stem = objectsDirectory + "/pack/pack-" + reader.checksum
        do {
            try Files.makeDirectories(objectsDirectory + "/pack")
        } catch { throw GitError.io(error) }
        for (from, to) in [(packPath, stem + ".pack"), (indexPath, stem + ".idx")] {
            if from == to { continue }
            _ = chmod(from, 0o444)
            guard rename(from, to) == 0 else {
                throw GitError(.io, FileError(path: to, operation: "rename", code: errno).description)
            }
        }
        Files.syncDirectory(objectsDirectory + "/pack")
        reloadPacks()
    }

    /// Commits listed in `shallow` (a shallow clone's boundary): their parents are
    /// absent on purpose.
    public func shallowCommits() -> Set<ObjectID> {
        guard let text = try? Files.readString(commonDirectory + "/shallow", limit: limits.maxRefFileSize) else { return [] }
        return Set(text.split(separator: "\n").compactMap { ObjectID(hex: $0.trimmingCharacters()) })
    }

    // MARK: Objects

    /// Path of the loose object `id` in the main object directory.
    public func loosePath(_ id: ObjectID, in dir: String? = nil) -> String {
        let hex = id.hex
        return (dir ?? objectsDirectory) + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    /// Whether the object exists, loose or packed, here or in an alternate.
    public func contains(_ id: ObjectID) -> Bool {
        for p in packs where p.contains(id) { return true }
        for dir in [objectsDirectory] + alternateDirectories where Files.exists(loosePath(id, in: dir)) { return true }
        if packsChangedSinceListed() {
            for p in packs where p.contains(id) { return true }
        }
        return false
    }

    /// The loose object `id` (verified against `id`), here or in an alternate.
    private func readLoose(_ id: ObjectID) throws -> GitObject? {
        for dir in [objectsDirectory] + alternateDirectories {
            let path = loosePath(id, in: dir)
            guard Files.exists(path) else { continue }
            let obj: GitObject
            do {
                obj = try LooseObject.read(path: path, limits: limits)
            } catch where !Files.exists(path) {
                continue  // packed and removed meanwhile: found by the caller
            }
            let actual = try obj.checkedID()
            guard actual == id else { throw GitError(.hashMismatch, "\(path): object hashes to \(actual)") }
            return obj
        }
        return nil
    }

    /// Reads an object from any pack or loose file. The result is verified against
    /// `id` (its hash is recomputed), so a corrupt store can never hand out the wrong
    /// content. Returns nil when absent.
    public func read(_ id: ObjectID) throws -> GitObject? {
        for p in packs {
            if let obj = try p.read(id) { return obj }
        }
        if let obj = try readLoose(id) { return obj }
        if packsChangedSinceListed() {
            for p in packs {
                if let obj = try p.read(id) { return obj }
            }
        }
        return nil
    }

    /// As `read`, without hashing packed objects again (see `ObjectStore.readTrusted`);
    /// loose objects are still verified.
    public func readTrusted(_ id: ObjectID) throws -> GitObject? {
        for p in packs {
            if let obj = try p.readTrusted(id) { return obj }
        }
        if let obj = try readLoose(id) { return obj }
        if packsChangedSinceListed() {
            for p in packs {
                if let obj = try p.readTrusted(id) { return obj }
            }
        }
        return nil
    }

    /// Reads an object that must exist and have `type`.
    public func read(_ id: ObjectID, as type: ObjectType) throws -> [UInt8] {
        guard let obj = try read(id) else { throw GitError(.notFound, "object \(id) not found") }
        guard obj.type == type else { throw GitError(.invalidObject, "object \(id) is a \(obj.type.name), expected \(type.name)") }
        return obj.body
    }

    /// Stores an object as a loose file (zlib, written atomically: temporary file,
    /// fsync, rename) and returns its name. Does nothing if the object exists already.
    @discardableResult
    public func writeLoose(type: ObjectType, body: [UInt8]) throws -> ObjectID {
        let id = try ObjectID.checked(type: type, body: body)
        if contains(id) { return id }
        try LooseObject.write(type: type, body: body, path: loosePath(id))
        return id
    }
}

/// Loose object files: `objects/xx/yyyy…`, zlib of `"<type> <size>\0<body>"`.
enum LooseObject {
    /// Reads and inflates a loose object, checking its header and exact size.
    static func read(path: String, limits: ObjectLimits) throws -> GitObject {
        let data: [UInt8]
        do {
            data = try Files.read(path, limit: limits.maxObjectSize + limits.maxObjectSize / 8 + 4096)
        } catch {
            throw GitError.io(error)
        }
        do {
            return try data.withUnsafeBytes { try parse($0, limits: limits) }
        } catch let e as GitError {
            throw e.prefixed("\(path): ")
        }
    }

    /// Inflates a loose object from memory.
    /// With a `budget`, the declared size is charged to it before the body is allocated.
    static func parse(_ raw: UnsafeRawBufferPointer, limits: ObjectLimits, inflater: Inflater? = nil,
                      budget: WorkBudget? = nil) throws -> GitObject {
        let z = inflater ?? Inflater()
        try z.begin(raw)
        var head = [UInt8](repeating: 0, count: 64)
        let r = try head.withUnsafeMutableBytes { try z.inflate(into: $0) }
        guard let nul = head[0..<r.produced].firstIndex(of: 0) else {
            throw GitError(.corrupt, "bad loose object header")
        }
        guard let sp = head[0..<nul].firstIndex(of: 0x20),
              let type = ObjectType(name: String(decoding: head[0..<sp], as: UTF8.self)) else {
            throw GitError(.corrupt, "bad loose object type")
        }
        let digits = head[(sp + 1)..<nul]
        guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              digits.count == 1 || digits.first != 0x30 else {
            throw GitError(.corrupt, "bad loose object size")
        }
        let size = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        guard size <= limits.maxObjectSize else {
            throw GitError(.tooLarge, "object declares \(size) bytes (limit \(limits.maxObjectSize))", limit: .objectSize)
        }
        try budget?.chargeInflate(size)
        let have = r.produced - (nul + 1)
        if have > size {
            throw GitError(.corrupt, "inflates to more than its declared size \(size)")
        }
        var failure: (any Error)?
        var ended = r.ended
        let body = [UInt8](unsafeUninitializedCapacity: size) { buf, count in
            count = 0
            guard let base = buf.baseAddress else { return }
            head.withUnsafeBytes { h in
                UnsafeMutableRawPointer(base).copyMemory(from: h.baseAddress! + nul + 1, byteCount: have)
            }
            count = have
            if ended || have == size { return }
            do {
                let more = try z.inflate(into: UnsafeMutableRawBufferPointer(start: base + have, count: size - have))
                count = have + more.produced
                ended = more.ended
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
        try z.finish(produced: body.count, ended: ended, size: size)
        return GitObject(type: type, body: body)
    }

    /// Writes a loose object atomically (mode 0444, like git).
    static func write(type: ObjectType, body: [UInt8], path: String) throws {
        var raw = objectHeader(type: type, size: body.count)
        raw.append(contentsOf: body)
        let compressed = try Zlib.deflate(raw, level: 1)
        do {
            try Files.makeDirectories(Files.directoryName(path))
            try Files.writeAtomically(path, compressed, mode: 0o444)
        } catch {
            throw GitError.io(error)
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CR and LF.
    func trimmingCharacters() -> String {
        let ws: Set<Character> = [" ", "\t", "\n", "\r"]
        var s = Substring(self)
        while let f = s.first, ws.contains(f) { s = s.dropFirst() }
        while let l = s.last, ws.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
