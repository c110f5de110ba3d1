import GutsIdentity
import GutsSupport

/// `guts keygen`: create (or show) the node identity.
enum KeygenCommand: Command {
    static let name = "keygen"
    static let summary = "create the node identity (Ed25519) and print its peer ID"
    static let synopsis = "keygen [--force] [--show]"
    static let options = [
        OptionSpec("force", short: "f", help: "replace an existing identity (its peer ID is lost)"),
        OptionSpec("show", help: "print the existing peer ID instead of creating one"),
    ]

    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode {
        guard args.positionals.isEmpty else { throw UsageError("keygen takes no arguments") }
        if args.has("show") {
            let identity = try loadIdentity(context)
            emit(identity, context, created: false)
            return .ok
        }
        let home = try context.home()
        let identity = Identity.generate()
        do {
            try identity.save(home: home, force: args.has("force"))
        } catch let e as IdentityError {
            throw CommandError(.io, e.description)
        }
        context.log("created identity in \(home)/\(Identity.secretFileName)")
        emit(identity, context, created: true)
        return .ok
    }

    static func emit(_ identity: Identity, _ context: Context, created: Bool) {
        if context.json {
            context.out(JSON.object(["peer_id": .string(identity.peerID.description), "created": .bool(created)]))
        } else {
            context.out(identity.peerID.description)
        }
    }
}

/// Loads the node identity for commands that need one, with an actionable error.
func loadIdentity(_ context: Context) throws -> Identity {
    do {
        return try Identity.load(home: context.homePath)
    } catch let e as IdentityError {
        throw CommandError(.io, e.description)
    }
}
