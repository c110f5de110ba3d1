#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport
import GutsSync
import GutsTrust

/// `guts objects verify [REPO-OR-PATH]`: `git fsck --full` in guts.
///
/// Output: one line per problem on stdout (`<oid-or-file> <kind> <where>: <message>`),
/// then a one-line summary on stderr. With --json: one object per problem per line on
/// stdout, then a summary object (`"type":"summary"`) as the last line.
/// Exit: 0 clean (warnings allowed), 6 any error, 3 not a repository or unreadable,
/// 2 bad usage.
enum ObjectsVerifyCommand: Command {
    static let name = "objects verify"
    static let summary = "check every object, pack, index and ref of a repository (like git fsck --full)"
    static let synopsis = "objects verify [--threads N] [--no-connectivity] [limits] [NAME|ID|PATH]"
    static let options = [
        OptionSpec("threads", short: "j", value: "N", help: "worker threads (default: number of CPUs, at most 4)"),
        OptionSpec("no-connectivity", help: "skip checking that everything reachable from refs is present"),
    ] + NodeConfig.limitOptions

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count <= 1 else {
            throw UsageError("objects verify takes at most one repository (got \(args.positionals.count))")
        }
        let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let threads = try args.int("threads", in: 1...64) ?? min(cpus, 4)
        // The same limits as for data from peers: a pack may have arrived by other means.
        let limits = try NodeConfig.load(home: context.homePath).objectLimits(args)
        let path = try repositoryPath(args.positionals.first ?? ".", home: context.homePath)

        let repository: Repository
        do {
            repository = try Repository.open(path, limits: limits)
        } catch let e as GitError {
            throw CommandError(.io, e.message)
        }
        context.debug("verifying \(repository.gitDirectory) with \(threads) threads")
        let options = VerifyOptions(threads: threads, connectivity: !args.has("no-connectivity"), limits: limits)
        let verifier = Verifier(repository: repository, options: options) { p in
            context.progress("\(p.phase): \(p.done)/\(p.total)")
        }
        var limitsCrossed = Set<String>()
        var summary = verifier.run { problem in
            switch problem.kind {
            case .tooLarge: limitsCrossed.insert("--max-object-size")
            case .overBudget: limitsCrossed.insert("--work-factor")
            case .deltaCycle where problem.message.contains("deeper than"): limitsCrossed.insert("--max-delta-depth")
            default: break
            }
            report(problem, context)
        }
        // The identity chain and every delegate's signed refs (guts-identity(5)).
        for problem in TrustVerifier.check(repository) {
            report(problem, context)
            if problem.severity == .error { summary.errors += 1 } else { summary.warnings += 1 }
        }
        context.endProgress()
        if context.json {
            context.out(JSON.object([
                "type": .string("summary"),
                "repository": .string(repository.gitDirectory),
                "clean": .bool(summary.isClean),
                "errors": .int(summary.errors),
                "warnings": .int(summary.warnings),
                "objects": .int(summary.objects),
                "loose_objects": .int(summary.looseObjects),
                "packs": .int(summary.packs),
                "packed_objects": .int(summary.packedObjects),
                "refs": .int(summary.refs),
                "reachable": .int(summary.reachable),
                "seconds": .double(summary.seconds),
            ]))
        } else {
            let verdict = summary.isClean ? "ok" : "FAILED"
            let line = "\(verdict): \(summary.errors) error\(summary.errors == 1 ? "" : "s"), \(summary.warnings) warning\(summary.warnings == 1 ? "" : "s"); "
                + "\(summary.objects) objects (\(summary.looseObjects) loose, \(summary.packedObjects) in \(summary.packs) pack\(summary.packs == 1 ? "" : "s")), "
                + "\(summary.refs) refs, \(summary.reachable) reachable, \(format3(summary.seconds)) s"
            if summary.isClean { context.log(line) } else { context.error(line) }
        }
        if !limitsCrossed.isEmpty {
            context.error("some objects were over the limits for untrusted data; to check them anyway raise "
                          + limitsCrossed.sorted().joined(separator: ", ") + " (or the same keys in the config file)")
        }
        return summary.isClean ? .ok : .integrity
    }

    static func report(_ problem: Problem, _ context: Context) {
        if context.json {
            context.out(JSON.object([
                "type": .string("problem"),
                "severity": .string(problem.severity.rawValue),
                "subject": .string(problem.subject),
                "kind": .string(problem.kind.rawValue),
                "location": .string(problem.location),
                "message": .string(problem.message),
            ]))
        } else {
            context.out(problem.line)
        }
    }

    /// A path if it exists; otherwise a repository name (`name` or `owner/name`) in
    /// `<home>/repos/<name>.git`.
    static func repositoryPath(_ argument: String, home: String) throws -> String {
        if argument.isEmpty { throw UsageError("empty repository argument") }
        if Files.exists(argument) { return argument }
        if let id = RepositoryID(argument) {
            guard let hit = RepositoryIDIndex().locate(id, in: RepositoryCatalog(roots: [home + "/repos"])) else {
                throw CommandError(.io, "no repository with ID \(id) in \(home)/repos")
            }
            return hit.path
        }
        guard isValidRepositoryName(argument) else {
            throw CommandError(.io, "'\(argument)' does not exist and is not a repository name (owner/name)")
        }
        let stem = home + "/repos/" + argument
        let path = argument.hasSuffix(".git") ? stem : stem + ".git"
        guard Files.isDirectory(path) else {
            throw CommandError(.io, "no repository '\(argument)' (looked for \(path))")
        }
        return path
    }

    /// One or two `/`-separated components of `[A-Za-z0-9._-]`, none `.` or `..`,
    /// none starting with `-`.
    static func isValidRepositoryName(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count) else { return false }
        for part in parts {
            guard !part.isEmpty, part != ".", part != "..", part.first != "-" else { return false }
            for c in part.utf8 {
                let ok = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == 0x2E || c == 0x5F || c == 0x2D
                if !ok { return false }
            }
        }
        return true
    }
}
