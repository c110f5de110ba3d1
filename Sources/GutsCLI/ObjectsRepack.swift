#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport
import GutsSync

/// `guts objects repack [REPO-OR-PATH]`: consolidates a repository's packs and loose
/// objects into one pack, deltas kept (`PackMaintenance`), under the repository's lock.
///
/// Output: a one-line summary on stderr; with --json one object on stdout.
/// Exit: 0 done (or nothing to do), 3 not a repository or a file-system problem,
/// 6 a stored entry that does not match its index (nothing changed), 10 the lock is
/// held and the wait ended, 2 bad usage.
enum RepackCommand: Command {
    static let name = "objects repack"
    static let summary = "consolidate a repository's packs and loose objects into one pack, keeping deltas"
    static let synopsis = "objects repack [--wait SECONDS | --no-wait] [NAME|ID|PATH]"
    static let options = [
        OptionSpec("wait", value: "SECONDS", help: "wait this long for a sync or mirroring that holds the repository (default 600)"),
        OptionSpec("no-wait", help: "exit at once with status 10 if the repository is locked"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count <= 1 else {
            throw UsageError("objects repack takes at most one repository (got \(args.positionals.count))")
        }
        if args.has("no-wait") && args.value("wait") != nil { throw UsageError("--wait and --no-wait exclude each other") }
        let wait = args.has("no-wait") ? 0 : try args.seconds("wait", in: 0...86400) ?? SyncCommand.defaultWait
        let path = try ObjectsVerifyCommand.repositoryPath(args.positionals.first ?? ".", home: context.homePath)
        let repository: Repository
        do {
            repository = try Repository.open(path)
        } catch let e as GitError {
            throw CommandError(.io, e.message)
        }
        // The lock beside the repository, named as `guts sync` names it (from the same
        // name or path), so the two take turns; `.` and `..` are resolved first.
        var lockPath = RepositoryLock.normalize(path)
        let last = Files.baseName(lockPath)
        if last == "." || last == "..", let resolved = realpath(lockPath, nil) {
            lockPath = String(cString: resolved)
            free(resolved)
        }
        let lock: RepositoryLock
        do {
            lock = try RepositoryLock.acquire(repositoryPath: lockPath, wait: wait, waiting: { holder in
                let who = holder.map { "process \($0)" } ?? "another process"
                context.log("\(lockPath) is locked by \(who); waiting up to \(formatNumber(wait)) s for it to finish")
            })
        } catch let e as RepositoryLockError {
            switch e {
            case .busy: throw CommandError(.busy, "\(e.description); nothing was done")
            case .interrupted, .io: throw CommandError(.io, e.description)
            }
        }
        defer { lock.release() }
        let result: PackMaintenance.Result
        do {
            result = try PackMaintenance.consolidate(repository)
        } catch let e as GitError {
            let code: ExitCode = e.kind == .io || e.kind == .notARepository ? .io : .integrity
            throw CommandError(code, "cannot repack \(repository.gitDirectory): \(e.message)")
        }
        if context.json {
            context.out(JSON.object([
                "repository": .string(repository.gitDirectory),
                "pack": result.packPath.map { .string($0) } ?? .null,
                "packs_removed": .int(result.packsRemoved),
                "loose_removed": .int(result.looseRemoved),
                "objects": .int(result.objects),
                "deltas": .int(result.deltas),
                "bytes_before": .int(result.bytesBefore),
                "bytes_after": .int(result.bytesAfter),
                "leftovers_removed": .int(result.leftoversRemoved),
                "seconds": .double(result.seconds),
            ]))
        } else {
            context.log(result.packPath == nil ? "nothing to repack in \(repository.gitDirectory): at most one pack and no loose objects"
                                               : describe(result))
        }
        return .ok
    }

    /// One line saying what a consolidation did.
    static func describe(_ r: PackMaintenance.Result) -> String {
        let name = r.packPath.map(Files.baseName) ?? "-"
        return "repacked \(r.packsRemoved) pack\(r.packsRemoved == 1 ? "" : "s") and \(r.looseRemoved) loose object\(r.looseRemoved == 1 ? "" : "s") "
            + "into \(name): \(r.objects) objects (\(r.deltas) deltas kept), \(r.bytesBefore) -> \(r.bytesAfter) bytes, \(format3(r.seconds)) s"
    }
}
