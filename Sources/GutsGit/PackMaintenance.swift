#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// Consolidates a repository's packs (and loose objects) into one pack, natively: the
/// stored entries are copied as they are, deltas included (as OFS_DELTA, bases first),
/// so nothing is inflated or searched for deltas again, and the result is about the
/// size of the packs it replaces.
///
/// The caller holds the repository's `RepositoryLock`: nothing else that guts runs
/// writes packs meanwhile. Readers need no lock, and each step leaves a valid
/// repository for them:
/// 1. the new pack is written to `objects/pack/tmp_pack_*`, fsynced, checked (every
///    object it should hold is in its index) and renamed to `pack-<sha>.pack`; its
///    index is written the same way (`pack-<sha>.idx`) and the directory fsynced. From
///    now on every object is in the new pack as well as in the old ones.
/// 2. each old pack is removed: its `.idx` first (git lists packs by their `.idx`, and
///    guts skips a `.pack` without one), then its `.pack` and other files. A reader
///    that has an old pack open keeps reading it (the mapping outlives the name), and
///    one that lists the directory again finds every object in the new pack.
/// 3. the loose objects that were packed are removed.
///
/// A crash at any point leaves a valid repository: a `tmp_pack_*` file (ignored by
/// readers), both the new and some old packs (objects found twice, merged by the next
/// consolidation), or a `.pack` whose `.idx` is gone (ignored by readers; `git fsck`
/// does not mind it, `guts objects verify` warns). The next consolidation removes such
/// leftovers once they are an hour old. Packs with a `.keep` file and packs of alternates are left alone.
public enum PackMaintenance {
    /// Default for the most packs a sync leaves before it consolidates them
    /// (guts-config(5), `max-packs`).
    public static let defaultMaxPacks = 8
    /// Temporary and orphaned files older than this are a dead process's leftovers.
    public static let leftoverAge = 3600.0

    /// What a consolidation did.
    public struct Result: Sendable {
        /// Packs replaced (the new one not counted).
        public var packsRemoved: Int
        /// Loose objects folded into the new pack and removed.
        public var looseRemoved: Int
        /// Objects in the new pack.
        public var objects: Int
        /// The new pack's path (nil when there was nothing to consolidate).
        public var packPath: String?
        /// Sizes of the replaced packs plus loose files, and of the new pack.
        public var bytesBefore: Int
        public var bytesAfter: Int
        /// Stored deltas that stayed deltas.
        public var deltas: Int
        /// Leftover temporary or orphaned files removed first.
        public var leftoversRemoved: Int
        public var seconds: Double
    }

    /// The packs of the repository's own object directory that consolidation may
    /// replace (no `.keep`, index present).
    public static func candidatePacks(_ repository: Repository) -> [PackReader] {
        let dir = repository.objectsDirectory + "/pack/"
        return repository.packs.filter { p in
            p.packPath.hasPrefix(dir) && !Files.exists(String(p.packPath.dropLast(5)) + ".keep")
        }
    }

    /// Whether a sync that leaves the repository like this should consolidate:
    /// more than `maxPacks` packs (0: never).
    public static func needed(_ repository: Repository, maxPacks: Int) -> Bool {
        maxPacks > 0 && candidatePacks(repository).count > maxPacks
    }

    /// Loose objects in the repository's own object directory, by name.
    static func looseObjects(_ repository: Repository) -> [(ObjectID, String)] {
        var out: [(ObjectID, String)] = []
        for dir in Files.list(repository.objectsDirectory) where dir.utf8.count == 2 && ObjectID(hex: dir + String(repeating: "0", count: 38)) != nil {
            for name in Files.list(repository.objectsDirectory + "/" + dir) where name.utf8.count == 38 {
                if let id = ObjectID(hex: dir + name) { out.append((id, repository.objectsDirectory + "/" + dir + "/" + name)) }
            }
        }
        return out
    }

    /// Removes what a consolidation or an install killed midway left in `objects/pack`:
    /// `tmp_pack_*` and `.tmp-*` files, and `.idx` and `.pack` files without their
    /// other half (which no reader uses), when
    /// older than `age` seconds (younger ones may belong to a process still running,
    /// such as git itself). Returns how many were removed.
    @discardableResult
    public static func removeLeftovers(_ repository: Repository, olderThan age: Double = leftoverAge) -> Int {
        let dir = repository.objectsDirectory + "/pack"
        let names = Files.list(dir)
        let present = Set(names)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var removed = 0
        for name in names {
            let orphanIndex = name.hasSuffix(".idx") && !present.contains(String(name.dropLast(4)) + ".pack")
            let orphanPack = name.hasSuffix(".pack") && !present.contains(String(name.dropLast(5)) + ".idx")
            // A reachability file whose pack is gone (git's repack leaves it behind).
            let orphanReach = name.hasSuffix(ReachabilityFile.suffix)
                && !present.contains(String(name.dropLast(ReachabilityFile.suffix.utf8.count)) + ".pack")
            guard name.hasPrefix("tmp_pack_") || name.hasPrefix("tmp_idx_") || name.hasPrefix(".tmp-") || orphanIndex || orphanPack || orphanReach
            else { continue }
            var st = stat()
            guard lstat(dir + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            guard Double(now.tv_sec - st.st_mtim.tv_sec) >= age else { continue }
            if unlink(dir + "/" + name) == 0 { removed += 1 }
        }
        if removed > 0 { Files.syncDirectory(dir) }
        return removed
    }

    /// Writes every object of the repository's packs (and, with `includeLoose`, its
    /// loose objects) into one new pack and removes what it replaces. Does nothing
    /// when there is at most one pack and no loose object to fold in (or with
    /// `includeLoose` false, at most one pack). Throws, leaving
    /// every old pack in place, when a stored entry fails its CRC-32, an object cannot
    /// be read, or the disk is short of room.
    public static func consolidate(_ repository: Repository, includeLoose: Bool = true,
                                   leftoverAge: Double = PackMaintenance.leftoverAge) throws -> Result {
        let started = Instant.now()
        let leftovers = removeLeftovers(repository, olderThan: leftoverAge)
        repository.reloadPacks()
        let packs = candidatePacks(repository)
        let loose = includeLoose ? looseObjects(repository) : []
        var result = Result(packsRemoved: 0, looseRemoved: 0, objects: 0, packPath: nil, bytesBefore: 0, bytesAfter: 0,
                            deltas: 0, leftoversRemoved: leftovers, seconds: 0)
        guard packs.count > 1 || !loose.isEmpty else {
            result.seconds = Instant.now().seconds(since: started)
            return result
        }

        // Every object once: pack by pack in their stored order, then the loose ones.
        var seen = Set<ObjectID>()
        var objects: [ObjectID] = []
        for p in packs {
            result.bytesBefore += p.pack.count
            var byOffset: [(Int, ObjectID)] = []
            byOffset.reserveCapacity(p.count)
            for i in 0..<p.count {
                if let o = p.index.offset(at: i) { byOffset.append((o, p.id(at: i))) }
            }
            byOffset.sort { $0.0 < $1.0 }
            for (_, id) in byOffset where seen.insert(id).inserted { objects.append(id) }
        }
        for (id, path) in loose {
            result.bytesBefore += Files.size(path) ?? 0
            if seen.insert(id).inserted { objects.append(id) }
        }
        let packDir = repository.objectsDirectory + "/pack"
        var fs = statvfs()
        if statvfs(packDir, &fs) == 0 {
            let free = Int(fs.f_bavail).multipliedReportingOverflow(by: Int(fs.f_frsize))
            let needed = result.bytesBefore + result.bytesBefore / 8 + (16 << 20)
            if !free.overflow && free.partialValue < needed {
                throw GitError(.io, "\(packDir): \(free.partialValue) bytes free, consolidating needs about \(needed); nothing was changed")
            }
        }

        // 1. The new pack, then its index.
        let stream = PackStream(repository: repository, objects: objects, offsetDeltas: true, indexing: true)
        var template = Array("\(packDir)/tmp_pack_XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw GitError(.io, FileError(path: packDir, operation: "create temporary pack in", code: errno).description) }
        let tempPath = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var open = true
        var renamed = false
        defer {
            if open { close(fd) }
            if !renamed { unlink(tempPath) }
        }
        while let chunk = try stream.nextChunk(maxBytes: 1 << 20) {
            let code = Files.writeAll(fd, chunk)
            guard code == 0 else { throw GitError(.io, FileError(path: tempPath, operation: "write", code: code).description) }
        }
        guard let checksum = stream.checksum, stream.entries.count == objects.count else {
            throw GitError(.corrupt, "internal error: the consolidated pack is incomplete")
        }
        guard fsync(fd) == 0 else { throw GitError(.io, FileError(path: tempPath, operation: "fsync", code: errno).description) }
        close(fd)
        open = false
        _ = chmod(tempPath, 0o444)
        let hex = Hex.encode(checksum)
        let stem = packDir + "/pack-" + hex
        let index = PackIndexWriter.build(entries: stream.entries, packChecksum: checksum)
        // Read back through the index before anything is replaced.
        do {
            let indexTemp = packDir + "/tmp_idx_" + hex
            try Files.writeAtomically(indexTemp, index, mode: 0o444)
            defer { unlink(indexTemp) }
            let check = try PackReader(packPath: tempPath, indexPath: indexTemp, limits: repository.limits)
            guard check.count == objects.count, objects.allSatisfy(check.contains) else {
                throw GitError(.corrupt, "internal error: the consolidated pack's index does not list every object")
            }
        } catch let e as GitError {
            throw e
        } catch {
            throw GitError.io(error)
        }
        guard rename(tempPath, stem + ".pack") == 0 else {
            throw GitError(.io, FileError(path: stem + ".pack", operation: "rename", code: errno).description)
        }
        renamed = true
        do {
            try Files.writeAtomically(stem + ".idx", index, mode: 0o444)
        } catch {
            throw GitError.io(error)
        }
        Files.syncDirectory(packDir)
        result.packPath = stem + ".pack"
        result.objects = objects.count
        result.deltas = stream.reusedDeltas
        result.bytesAfter = stream.bytesProduced

        // 2. The old packs: .idx first.
        for p in packs where p.packPath != stem + ".pack" {
            let old = String(p.packPath.dropLast(5))
            unlink(old + ".idx")
            unlink(old + ".pack")
            for ext in [".rev", ".bitmap", ".mtimes", ".promisor", ReachabilityFile.suffix] { unlink(old + ext) }
            result.packsRemoved += 1
        }
        Files.syncDirectory(packDir)
        // 3. The loose objects now packed.
        for (_, path) in loose {
            if unlink(path) == 0 { result.looseRemoved += 1 }
            rmdir(Files.directoryName(path))  // only when empty
        }
        repository.reloadPacks()
        result.seconds = Instant.now().seconds(since: started)
        return result
    }
}
