#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// The kinds of problem `Verifier` reports. The raw values are stable and appear in
/// `guts objects verify` output.
public enum ProblemKind: String, Sendable, CaseIterable {
    /// Content hashes to a different name than the file or index says.
    case hashMismatch = "hash-mismatch"
    /// An object's SHA-1 computation shows a known collision attack (`SHA1DC`): the
    /// object is one half of a colliding pair and is not trusted.
    case sha1Collision = "sha1-collision"
    /// An object cannot be decoded: zlib error, bad header, size that lies, bad delta.
    case corruptObject = "corrupt-object"
    /// An object decodes but breaks git's rules (fsck), e.g. unsorted tree.
    case invalidObject = "invalid-object"
    /// An object reachable from a ref (or named by another object) is absent.
    case missingObject = "missing-object"
    /// An object has a different type than what refers to it requires.
    case wrongType = "wrong-type"
    /// A delta's base is not in the pack.
    case missingBase = "missing-base"
    /// Delta entries depend on each other in a loop, or a chain is too deep.
    case deltaCycle = "delta-cycle"
    /// A declared size is over the configured limit.
    case tooLarge = "too-large"
    /// Checking a pack (or the loose objects) would take more work than its size
    /// justifies (`--work-factor`); the rest of it was not checked.
    case overBudget = "over-budget"
    /// A pack file is malformed (header, entries, length).
    case badPack = "bad-pack"
    /// A pack's trailing SHA-1 does not match its content.
    case packChecksum = "pack-checksum"
    /// A pack index is malformed or disagrees with its pack.
    case badIndex = "bad-index"
    /// A pack index's own trailing SHA-1 does not match.
    case indexChecksum = "index-checksum"
    /// An entry's CRC-32 differs from the one in the index.
    case crcMismatch = "crc-mismatch"
    /// A ref file, `packed-refs` or `HEAD` is malformed or names a missing object.
    case badRef = "bad-ref"
    /// A stray file in the object store.
    case garbage
    /// The repository's identity chain (`refs/guts/id`) does not verify (guts-identity(5)).
    case badIdentity = "bad-identity"
    /// A delegate's signed refs do not verify, or its namespace differs from them.
    case badSignedRefs = "bad-signed-refs"
    /// A file could not be read.
    case ioError = "io-error"
}

/// One problem found by `Verifier`.
public struct Problem: Sendable, Equatable {
    public let severity: Severity
    /// An object ID (hex) or a file path relative to the git directory.
    public let subject: String
    public let kind: ProblemKind
    /// Where it was found: a file, a pack entry (`pack-….pack@offset`), a ref, or the
    /// object that refers to a missing one.
    public let location: String
    public let message: String

    public init(_ severity: Severity, subject: String, kind: ProblemKind, location: String, message: String) {
        self.severity = severity
        self.subject = subject
        self.kind = kind
        self.location = location
        self.message = message
    }

    /// `<subject> <kind> <location>: <message>` (warnings end with ` (warning)`).
    public var line: String {
        "\(subject) \(kind.rawValue) \(location): \(message)\(severity == .warning ? " (warning)" : "")"
    }
}

/// Totals from a verification run.
public struct VerifySummary: Sendable, Equatable {
    public var looseObjects = 0
    public var packs = 0
    public var packedObjects = 0
    /// Distinct objects found (loose and packed).
    public var objects = 0
    public var refs = 0
    /// Objects reached from refs and HEAD.
    public var reachable = 0
    public var errors = 0
    public var warnings = 0
    public var seconds = 0.0

    public init() {}

    /// No error-level problems.
    public var isClean: Bool { errors == 0 }
}

/// Progress of a verification, for TTY display.
public struct VerifyProgress: Sendable {
    public var phase: String
    public var done: Int
    public var total: Int
}

/// Options for `Verifier`.
public struct VerifyOptions: Sendable {
    /// Worker threads for pack and loose-object checking.
    public var threads: Int
    /// Check that everything reachable from refs and HEAD is present and well-typed.
    public var connectivity: Bool
    /// Bytes of tree links kept in memory for the connectivity walk; past this,
    /// trees are read again during the walk. Tree links are most of a history's links
    /// (git v2.34, 308k objects, would need well over 1 GB of them): with 1 GiB here
    /// `objects verify` peaked at 943 MB against 359 MB for `git fsck --full`, which
    /// keeps none and reads trees again, as this does past the budget.
    public var linkMemoryBudget: Int
    public var limits: ObjectLimits

    public init(threads: Int = 2, connectivity: Bool = true, linkMemoryBudget: Int = 64 << 20, limits: ObjectLimits = .default) {
        self.threads = threads
        self.connectivity = connectivity
        self.linkMemoryBudget = linkMemoryBudget
        self.limits = limits
    }
}

/// `git fsck --full` for one repository: recomputes every object's hash (loose and
/// packed), decodes and validates every object, checks every pack's trailer, its
/// index (checksum, pack checksum, sorted names and fan-out, offsets, CRC-32s), and
/// that everything reachable from refs and HEAD is present with the right type.
/// Continues after errors and reports each problem once.
public final class Verifier: @unchecked Sendable {
    public let repository: Repository
    public let options: VerifyOptions
    private let progress: (@Sendable (VerifyProgress) -> Void)?
    private var problems: [Problem] = []
    private let problemLock = Mutex()
    private var chunks: [GraphChunk] = []
    private var summary = VerifySummary()
    private var progressDone = 0
    private var progressTotal = 0
    private var lastProgress = Instant.now()

    public init(repository: Repository, options: VerifyOptions = VerifyOptions(),
                progress: (@Sendable (VerifyProgress) -> Void)? = nil) {
        self.repository = repository
        self.options = options
        self.progress = progress
    }

    /// Runs every check. `report` is called on the calling thread, once per problem,
    /// in the order found (per phase).
    public func run(report: (Problem) -> Void) -> VerifySummary {
        let start = Instant.now()
        summary = VerifySummary()
        var flushed = 0
        func flush() {
            let batch = problemLock.locked { Array(problems[flushed...]) }
            flushed += batch.count
            for p in batch {
                if p.severity == .error { summary.errors += 1 } else { summary.warnings += 1 }
                report(p)
            }
        }
        verifyPacks(flush)
        verifyLoose()
        flush()
        if options.connectivity {
            checkConnectivity()
            flush()
        } else {
            var distinct = Set<ObjectID>()
            for chunk in chunks { distinct.formUnion(chunk.ids) }
            summary.objects = distinct.count
        }
        summary.seconds = Instant.now().seconds(since: start)
        return summary
    }

    // MARK: Reporting

    private func add(_ p: Problem) {
        problemLock.locked { problems.append(p) }
    }

    private func error(_ subject: String, _ kind: ProblemKind, _ location: String, _ message: String) {
        add(Problem(.error, subject: subject, kind: kind, location: location, message: message))
    }

    private func warning(_ subject: String, _ kind: ProblemKind, _ location: String, _ message: String) {
        add(Problem(.warning, subject: subject, kind: kind, location: location, message: message))
    }

    private func relative(_ path: String) -> String {
        let base = repository.gitDirectory + "/"
        if path.hasPrefix(base) { return String(path.dropFirst(base.count)) }
        let common = repository.commonDirectory + "/"
        if path.hasPrefix(common) { return String(path.dropFirst(common.count)) }
        return path
    }

    static func kind(for e: GitError) -> ProblemKind {
        switch e.kind {
        case .hashMismatch: return .hashMismatch
        case .collisionAttack: return .sha1Collision
        case .missingBase: return .missingBase
        case .deltaCycle: return .deltaCycle
        case .tooLarge: return .tooLarge
        case .overBudget: return .overBudget
        case .invalidObject: return .invalidObject
        case .io: return .ioError
        default: return .corruptObject
        }
    }

    private func tick(_ phase: String, _ n: Int = 1) {
        guard let progress else { return }
        let snapshot: VerifyProgress? = problemLock.locked {
            progressDone += n
            let now = Instant.now()
            guard now.seconds(since: lastProgress) >= 0.1 else { return nil }
            lastProgress = now
            return VerifyProgress(phase: phase, done: progressDone, total: progressTotal)
        }
        if let snapshot { progress(snapshot) }
    }

    /// Records an object (and its links) for the connectivity walk.
    private func record(_ chunk: GraphChunk, _ id: ObjectID, _ type: ObjectType?, _ body: UnsafeRawBufferPointer?,
                        subject: String, location: String) {
        guard let type, let body else {
            chunk.add(id, type: 0)
            return
        }
        let before = chunk.links.count
        let storeLinks = type != .tree || chunk.linkBytes < options.linkMemoryBudget / max(1, options.threads)
        let issues = ObjectChecker.check(type: type, body: body, limits: options.limits) { link, linkType in
            if storeLinks { chunk.appendLink(link, linkType) }
        }
        chunk.add(id, type: type.rawValue | (storeLinks ? 0 : GraphChunk.linksDropped), linkStart: before)
        for issue in issues {
            add(Problem(issue.severity, subject: subject, kind: .invalidObject, location: location,
                        message: "\(type.name) \(issue.code): \(issue.message)"))
        }
    }

    // MARK: Packs

    private func verifyPacks(_ flush: () -> Void) {
        var packDirs = [repository.objectsDirectory + "/pack"]
        packDirs.removeAll { !Files.isDirectory($0) }
        var pairs: [(String, String)] = []
        for dir in packDirs {
            let names = Files.list(dir)
            let set = Set(names)
            for name in names {
                if name.hasSuffix(".pack") {
                    let idx = String(name.dropLast(5)) + ".idx"
                    if set.contains(idx) {
                        pairs.append((dir + "/" + name, dir + "/" + idx))
                    } else {
                        warning(relative(dir + "/" + name), .garbage, relative(dir), "pack without an index (ignored)")
                    }
                } else if name.hasSuffix(".idx") {
                    if !set.contains(String(name.dropLast(4)) + ".pack") {
                        warning(relative(dir + "/" + name), .garbage, relative(dir), "index without a pack (ignored)")
                    }
                } else if name.hasPrefix("tmp_") || name.hasPrefix(".tmp-") {
                    warning(relative(dir + "/" + name), .garbage, relative(dir), "temporary file")
                } else if !(name.hasSuffix(".keep") || name.hasSuffix(".rev") || name.hasSuffix(".bitmap")
                    || name.hasSuffix(".promisor") || name.hasSuffix(".mtimes") || name.hasPrefix("multi-pack-index")) {
                    warning(relative(dir + "/" + name), .garbage, relative(dir), "unexpected file")
                }
            }
        }
        summary.packs = pairs.count
        for (packPath, idxPath) in pairs {
            verifyPack(packPath, idxPath)
            flush()
        }
    }

    private func verifyPack(_ packPath: String, _ idxPath: String) {
        let packName = relative(packPath)
        let idxName = relative(idxPath)
        let packMap: MappedFile
        do {
            packMap = try MappedFile(path: packPath)
        } catch {
            self.error(packName, .ioError, packName, "\(error)")
            return
        }
        let pack = packMap.buffer
        guard pack.count >= 32, pack[0] == 0x50, pack[1] == 0x41, pack[2] == 0x43, pack[3] == 0x4B else {
            self.error(packName, .badPack, packName, pack.count < 32 ? "file too short (\(pack.count) bytes)" : "not a pack file")
            return
        }
        let version = PackIndex.be32(pack, 4)
        guard version == 2 || version == 3 else {
            self.error(packName, .badPack, packName, "unsupported pack version \(version)")
            return
        }
        let declared = Int(PackIndex.be32(pack, 8))
        let end = pack.count - 20
        packMap.releaseInterval = MappedFile.defaultReleaseInterval
        let checksum = ChecksumTask(pack: pack, end: end, map: packMap)
        let budget = WorkBudget(limits: options.limits, inputBytes: pack.count)

        var index: PackIndex?
        do {
            index = try PackIndex(file: try MappedFile(path: idxPath), limits: options.limits)
        } catch {
            self.error(idxName, .badIndex, idxName, "\(error) (checking the pack without it)")
        }

        var entries = PackEntries()
        var entryIdxPos: [Int32] = []
        var crcExpected: [UInt32] = []
        var indexChecksumOK = true
        if let index {
            if index.count != declared {
                self.error(idxName, .badIndex, idxName, "index lists \(index.count) objects, pack declares \(declared)")
            }
            // Sorted, unique names consistent with the fan-out.
            var fanCount = [Int](repeating: 0, count: 256)
            var unsorted = 0
            for i in 0..<index.count {
                let id = index.id(at: i)
                fanCount[Int(id.firstByte)] += 1
                if i > 0 && !(index.id(at: i - 1) < id) { unsorted += 1 }
            }
            if unsorted > 0 { self.error(idxName, .badIndex, idxName, "object names not strictly sorted (\(unsorted) places)") }
            var acc = 0
            for b in 0..<256 {
                acc += fanCount[b]
                if Int(PackIndex.be32(index.file.buffer, 8 + 4 * b)) != acc {
                    self.error(idxName, .badIndex, idxName, "fan-out table disagrees with the names at byte \(b)")
                    break
                }
            }
            if !index.packChecksum.elementsEqual(pack[end..<(end + 20)]) {
                self.error(idxName, .badIndex, idxName, "index was made for another pack (pack checksum differs)")
            }
            // Entries in pack order.
            var byOffset: [(Int, Int32)] = []
            byOffset.reserveCapacity(index.count)
            for i in 0..<index.count {
                guard let off = index.offset(at: i), off >= 12, off < end else {
                    self.error(index.id(at: i).hex, .badIndex, idxName, "offset out of range")
                    continue
                }
                byOffset.append((off, Int32(i)))
            }
            byOffset.sort { $0.0 < $1.0 }
            for k in 0..<byOffset.count {
                let (off, pos) = byOffset[k]
                if k > 0 && byOffset[k - 1].0 == off {
                    self.error(index.id(at: Int(pos)).hex, .badIndex, idxName, "shares offset \(off) with another object")
                    continue
                }
                var next = end
                var j = k + 1
                while j < byOffset.count && byOffset[j].0 == off { j += 1 }
                if j < byOffset.count { next = byOffset[j].0 }
                do {
                    let h = try PackEntryHeader.parse(pack, at: off, end: next, limit: options.limits.maxObjectSize)
                    entries.append(offset: off, end: next, kind: h.kind)
                    entryIdxPos.append(pos)
                    crcExpected.append(index.crc(at: Int(pos)))
                } catch let e as GitError {
                    self.error(index.id(at: Int(pos)).hex, Verifier.kind(for: e), "\(packName)@\(off)", e.message)
                    let chunk = GraphChunk()
                    record(chunk, index.id(at: Int(pos)), nil, nil, subject: "", location: "")
                    chunks.append(chunk)
                } catch {}
            }
            if let first = byOffset.first, first.0 != 12 {
                self.error(packName, .badPack, packName, "\(first.0 - 12) unindexed bytes after the header")
            }
        } else {
            // No usable index: walk the pack from the start, as index-pack would.
            let z = Inflater()
            var scratch = [UInt8](repeating: 0, count: 1 << 16)
            var offset = 12
            for _ in 0..<min(declared, (pack.count - 32) / 2 + 1) {
                do {
                    let h = try PackEntryHeader.parse(pack, at: offset, end: end, limit: options.limits.maxObjectSize)
                    let data = UnsafeRawBufferPointer(rebasing: pack[h.dataOffset..<end])
                    try budget.chargeInflate(h.size)
                    let used = try scratch.withUnsafeMutableBytes { try z.skip(data, expectedSize: h.size, scratch: $0) }
                    entries.append(offset: offset, end: h.dataOffset + used, kind: h.kind)
                    packMap.touched(h.dataOffset + used - offset)
                    entryIdxPos.append(-1)
                    offset = h.dataOffset + used
                } catch let e as GitError {
                    self.error(packName, Verifier.kind(for: e), "\(packName)@\(offset)", "\(e.message); cannot continue past this entry")
                    break
                } catch { break }
            }
        }

        summary.packedObjects += entries.count
        progressTotal += entries.count
        let resolver = DeltaResolver(pack: pack, entries: entries, limits: options.limits, name: packName, budget: budget)
        resolver.map = packMap
        if let index {
            var names: [ObjectID: Int] = [:]
            for (k, pos) in entryIdxPos.enumerated() where pos >= 0 { names[index.id(at: Int(pos))] = k }
            resolver.indexedNames = names
        }
        let workers = max(1, options.threads)
        let workerChunks = (0..<workers).map { _ in GraphChunk() }
        let idxCopy = index
        var crcBad: [Int] = []
        resolver.run(threads: workers, extra: {
            packMap.adviseSequential()
            checksum.run()
            if let index = idxCopy {
                let ib = index.file.buffer
                let computed = SHA1.hash(UnsafeRawBufferPointer(rebasing: ib[0..<(ib.count - 20)]))
                indexChecksumOK = computed.elementsEqual(index.indexChecksum)
                for k in 0..<entries.count {
                    let (offset, end) = (entries.offsets[k], entries.ends[k])
                    if Zlib.crc32(UnsafeRawBufferPointer(rebasing: pack[offset..<end])) != crcExpected[k] { crcBad.append(k) }
                    packMap.touched(end - offset)
                }
            }
        }) { [self] k, type, body, id, worker in
            let location = "\(packName)@\(entries.offsets[k])"
            if let index = idxCopy, entryIdxPos[k] >= 0 {
                let claimed = index.id(at: Int(entryIdxPos[k]))
                if claimed != id {
                    self.error(claimed.hex, .hashMismatch, location, "content hashes to \(id)")
                }
            }
            record(workerChunks[worker], id, type, body, subject: id.hex, location: location)
            tick("checking objects")
        }
        chunks += workerChunks
        if !checksum.matches {
            self.error(packName, .packChecksum, packName, "trailer \(Hex.encode(pack[end..<(end + 20)])) does not match content \(Hex.encode(checksum.computed))")
        }
        if !indexChecksumOK {
            self.error(idxName, .indexChecksum, idxName, "index checksum does not match its content")
        }
        for k in crcBad {
            let subject = idxCopy.map { $0.id(at: Int(entryIdxPos[k])).hex } ?? packName
            self.error(subject, .crcMismatch, "\(packName)@\(entries.offsets[k])", "CRC-32 differs from the index")
        }
        let failed = GraphChunk()
        for (k, e) in resolver.failures {
            let subject: String
            if let index = idxCopy, entryIdxPos[k] >= 0 {
                let claimed = index.id(at: Int(entryIdxPos[k]))
                subject = claimed.hex
                record(failed, claimed, nil, nil, subject: "", location: "")
            } else {
                subject = packName
            }
            self.error(subject, Verifier.kind(for: e), "\(packName)@\(entries.offsets[k])", e.message)
        }
        if let (k, e) = resolver.aborted {
            // One problem for the pack; what was not reached counts as present but
            // unchecked, so the connectivity walk does not report it missing.
            self.error(packName, Verifier.kind(for: e), "\(packName)@\(entries.offsets[k])",
                       "\(e.message); the rest of the pack was not checked")
            if let index = idxCopy {
                for (j, pos) in entryIdxPos.enumerated() where pos >= 0 && resolver.states[j] != EntryState.done.rawValue {
                    record(failed, index.id(at: Int(pos)), nil, nil, subject: "", location: "")
                }
            }
        }
        chunks.append(failed)
    }

    // MARK: Loose objects

    private func verifyLoose() {
        let objects = repository.objectsDirectory
        var files: [(String, ObjectID)] = []
        for dir in Files.list(objects) {
            let path = objects + "/" + dir
            if dir == "pack" || dir == "info" { continue }
            guard dir.utf8.count == 2, Hex.decode(dir) != nil, Files.isDirectory(path) else {
                warning(relative(path), .garbage, "objects", "unexpected entry in the object store")
                continue
            }
            for name in Files.list(path) {
                if name.utf8.count == 38, let id = ObjectID(hex: dir + name), dir == dir.lowercased(), name == name.lowercased() {
                    files.append((path + "/" + name, id))
                } else {
                    warning(relative(path + "/" + name), .garbage, relative(path), name.hasPrefix("tmp_obj_") || name.hasPrefix(".tmp-") ? "temporary file" : "unexpected file")
                }
            }
        }
        summary.looseObjects = files.count
        progressTotal += files.count
        guard !files.isEmpty else { return }
        // One budget for all loose objects, from their total size on disk.
        let budget = WorkBudget(limits: options.limits, inputBytes: files.reduce(0) { $0 + (Files.size($1.0) ?? 0) })
        var overBudgetReported = false
        let workers = max(1, min(options.threads, files.count))
        let workerChunks = (0..<workers).map { _ in GraphChunk() }
        let counter = Mutex()
        var next = 0
        parallel(workers) { [self] worker in
            let z = Inflater()
            while true {
                let i: Int = counter.locked {
                    next += 1
                    return next - 1
                }
                guard i < files.count else { return }
                let (path, id) = files[i]
                let rel = relative(path)
                do {
                    let data = try Files.read(path, limit: options.limits.maxObjectSize + options.limits.maxObjectSize / 8 + 4096)
                    let obj = try data.withUnsafeBytes { try LooseObject.parse($0, limits: options.limits, inflater: z, budget: budget) }
                    let actual = try ObjectID.checked(type: obj.type, body: obj.body)
                    if actual != id {
                        self.error(id.hex, .hashMismatch, rel, "content hashes to \(actual)")
                        record(workerChunks[worker], id, nil, nil, subject: "", location: "")
                    } else {
                        obj.body.withUnsafeBytes { record(workerChunks[worker], id, obj.type, $0, subject: id.hex, location: rel) }
                    }
                } catch let e as GitError where e.kind == .overBudget {
                    // Reported once; the objects not checked count as present.
                    let first: Bool = counter.locked {
                        defer { overBudgetReported = true }
                        return !overBudgetReported
                    }
                    if first { self.error("objects", .overBudget, rel, "loose objects: \(e.message); the rest were not checked") }
                    record(workerChunks[worker], id, nil, nil, subject: "", location: "")
                } catch let e as GitError {
                    self.error(id.hex, Verifier.kind(for: e), rel, e.message)
                    record(workerChunks[worker], id, nil, nil, subject: "", location: "")
                } catch {
                    self.error(id.hex, .ioError, rel, "\(error)")
                    record(workerChunks[worker], id, nil, nil, subject: "", location: "")
                }
                tick("checking loose objects")
            }
        }
        chunks += workerChunks
    }

    // MARK: Connectivity

    private func checkConnectivity() {
        // Object table: first occurrence wins (duplicates have identical content).
        var table: [ObjectID: UInt64] = [:]
        table.reserveCapacity(chunks.reduce(0) { $0 + $1.ids.count })
        for (c, chunk) in chunks.enumerated() {
            for (l, id) in chunk.ids.enumerated() {
                let key = UInt64(c) << 32 | UInt64(l)
                if let old = table[id] {
                    // Prefer a decodable copy over a corrupt one.
                    let oc = chunks[Int(old >> 32)]
                    if oc.types[Int(old & 0xFFFF_FFFF)] == 0 && chunk.types[l] != 0 { table[id] = key }
                } else {
                    table[id] = key
                }
            }
        }
        summary.objects = table.count

        // Roots: every ref, then HEAD (so a missing object is reported under its ref).
        var roots: [(ObjectID, String)] = []
        var refCount = 0
        do {
            let packed = try repository.packedRefs()
            var names = Set(packed.map(\.name))
            for r in packed { roots.append((r.id, r.name)) }
            refCount += packed.count
            for name in repository.looseRefNames() {
                guard Refs.checkRefFormat(name) else {
                    warning(name, .badRef, name, "ignoring ref with an invalid name")
                    continue
                }
                do {
                    if let id = try repository.resolveRef(name) {
                        roots.append((id, name))
                        if names.insert(name).inserted { refCount += 1 }
                    } else {
                        warning(name, .badRef, name, "symbolic ref points nowhere")
                    }
                } catch let e as GitError {
                    error(name, .badRef, name, e.message)
                } catch {}
            }
        } catch let e as GitError {
            error("packed-refs", .badRef, "packed-refs", e.message)
        } catch {}
        summary.refs = refCount
        do {
            switch try repository.head() {
            case .detached(let id): roots.append((id, "HEAD"))
            case .symbolic(let target, let id):
                if let id { roots.append((id, "HEAD")) } else if !target.hasPrefix("refs/") {
                    error("HEAD", .badRef, "HEAD", "points to '\(target)', not under refs/")
                }
            }
        } catch let e as GitError {
            error("HEAD", .badRef, "HEAD", e.message)
        } catch {}

        var visited = Set<UInt64>()
        var missing = Set<ObjectID>()
        var stack: [UInt64] = []
        let hasAlternates = !repository.alternateDirectories.isEmpty
        func present(_ id: ObjectID) -> Bool { hasAlternates && repository.contains(id) }
        for (id, name) in roots {
            guard let key = table[id] else {
                if !present(id) && missing.insert(id).inserted {
                    error(id.hex, .missingObject, name, "\(name) points to a missing object")
                }
                continue
            }
            let t = chunks[Int(key >> 32)].types[Int(key & 0xFFFF_FFFF)] & 0x7F
            if name.hasPrefix("refs/heads/") || name == "HEAD", t != 0, t != ObjectType.commit.rawValue {
                error(id.hex, .wrongType, name, "\(name) points to a \(ObjectType(rawValue: t)?.name ?? "?"), not a commit")
            }
            if visited.insert(key).inserted { stack.append(key) }
        }
        let shallow = repository.shallowCommits()
        var reachable = 0
        while let key = stack.popLast() {
            reachable += 1
            let chunk = chunks[Int(key >> 32)]
            let l = Int(key & 0xFFFF_FFFF)
            let raw = chunk.types[l]
            let type = raw & 0x7F
            let id = chunk.ids[l]
            let isShallow = !shallow.isEmpty && type == ObjectType.commit.rawValue && shallow.contains(id)
            func follow(_ link: ObjectID, _ expected: ObjectType) {
                // A shallow clone's boundary commits keep their parent lines only.
                if isShallow && expected == .commit { return }
                guard let lk = table[link] else {
                    if !present(link) && missing.insert(link).inserted {
                        let parent = ObjectType(rawValue: type)?.name ?? "object"
                        error(link.hex, .missingObject, "\(parent) \(id.hex)", "missing \(expected.name) referenced by \(parent) \(id.hex)")
                    }
                    return
                }
                let actual = chunks[Int(lk >> 32)].types[Int(lk & 0xFFFF_FFFF)] & 0x7F
                if actual != 0 && actual != expected.rawValue {
                    let parent = ObjectType(rawValue: type)?.name ?? "object"
                    error(link.hex, .wrongType, "\(parent) \(id.hex)",
                          "is a \(ObjectType(rawValue: actual)?.name ?? "?"), but \(parent) \(id.hex) refers to it as a \(expected.name)")
                }
                if visited.insert(lk).inserted { stack.append(lk) }
            }
            if raw & GraphChunk.linksDropped != 0 {
                // Tree links were not kept (memory budget): read the tree again. It
                // was hashed in the pass over its pack (a mismatch is reported there),
                // so it is not hashed twice.
                if let obj = try? repository.readTrusted(id), obj.type == .tree {
                    _ = obj.body.withUnsafeBytes { body in
                        ObjectChecker.check(type: .tree, body: body, limits: options.limits) { follow($0, $1) }
                    }
                }
                continue
            }
            var p = chunk.linkStart[l]
            let stop = l + 1 < chunk.linkStart.count ? chunk.linkStart[l + 1] : chunk.links.count
            while p < stop {
                let (link, t) = chunk.link(at: p)
                follow(link, t)
                p += 21
            }
        }
        summary.reachable = reachable
    }
}

/// Objects and their outgoing links as found by one worker, for the connectivity walk.
/// Links are packed as 21 bytes (type, 20-byte name) to keep memory low.
final class GraphChunk {
    static let linksDropped: UInt8 = 0x80
    var ids: [ObjectID] = []
    /// Object type raw value (0: present but unreadable), plus `linksDropped`.
    var types: [UInt8] = []
    var linkStart: [Int] = []
    var links: [UInt8] = []
    var linkBytes: Int { links.count }

    func add(_ id: ObjectID, type: UInt8, linkStart: Int? = nil) {
        ids.append(id)
        types.append(type)
        self.linkStart.append(linkStart ?? links.count)
    }

    func appendLink(_ id: ObjectID, _ type: ObjectType) {
        let at = links.count
        links.append(contentsOf: repeatElement(0, count: 21))
        links.withUnsafeMutableBytes { raw in
            raw[at] = type.rawValue
            id.write(to: raw.baseAddress! + at + 1)
        }
    }

    func link(at p: Int) -> (ObjectID, ObjectType) {
        links.withUnsafeBytes { raw in
            (ObjectID(unsafeRaw: raw.baseAddress! + p + 1, algorithm: .sha1), ObjectType(rawValue: raw[p]) ?? .blob)
        }
    }
}
