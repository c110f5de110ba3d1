import GutsIdentity
import GutsTrust

/// `guts repo show [REPO]`: a repository's identity and each delegate's signed state.
enum RepoShowCommand: Command {
    static let name = "repo show"
    static let summary = "show a repository's ID, delegates, threshold and each delegate's signed refs"
    static let synopsis = "repo show [--json] [NAME|ID|PATH]"
    static let options: [OptionSpec] = []

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.count <= 1 else { throw UsageError("repo show takes at most one repository") }
        let location = try RepoSupport.locate(args.positionals.first ?? ".", home: context.homePath)
        let repo = try RepoSupport.open(location.path)
        let chain = try RepoSupport.identity(repo)
        let me = (try? Identity.load(home: context.homePath))?.peerID
        try RepoSupport.describe(chain, repo: repo, location: location, me: me, context)
        return .ok
    }
}
