#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

public enum GutsMain {
    public static let version = "0.1.0"

    /// Every subcommand, in the order `guts help` lists them.
    nonisolated(unsafe) public static let commands: [any Command.Type] = [
        KeygenCommand.self,
        ListenCommand.self,
        DialCommand.self,
        PingCommand.self,
        SyncCommand.self,
        LsCommand.self,
        FindCommand.self,
        StatusCommand.self,
        PeersCommand.self,
        PeersScoreCommand.self,
        PeersBanCommand.self,
        PeersUnbanCommand.self,
        PeersForgetCommand.self,
        GossipPublishCommand.self,
        GossipSubscribeCommand.self,
        ObjectsVerifyCommand.self,
        RepackCommand.self,
        RepoInitCommand.self,
        RepoShowCommand.self,
        RepoSignCommand.self,
        RepoDelegatesAddCommand.self,
        RepoDelegatesRemoveCommand.self,
        RepoApproveCommand.self,
    ]

    /// Runs guts with `arguments` (without the program name); returns the exit code.
    public static func run(arguments: [String], environment: [String: String] = processEnvironment()) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let failure: CommandError
        var json = false
        var logFormat = LogFormat.text
        do {
            return try dispatch(arguments, environment: environment, json: &json, logFormat: &logFormat).rawValue
        } catch let e as UsageError {
            failure = CommandError(.usage, e.message)
        } catch let e as CommandError {
            failure = e
        } catch {
            failure = CommandError(.io, String(describing: error))
        }
        // Before the options were parsed (a usage error in them), --json is looked for
        // among the words before the command's operands.
        if !json { json = arguments.prefix(while: { $0 != "--" }).contains("--json") }
        let text = Escape.text(failure.message)
        writeAll(2, LogFormat.render(logFormat, level: "error", logFormat == .json ? text : "guts: " + text) + "\n")
        if json { writeAll(1, JSON.object(["error": errorObject(code: failure.code, message: failure.message)]) + "\n") }
        return failure.code.rawValue
    }

    /// `{"code":N,"kind":"...","message":"..."}`: a failure for scripts (guts(1), JSON ERRORS).
    static func errorObject(code: ExitCode, message: String) -> JSONValue {
        .object([("code", .int(Int(code.rawValue))), ("kind", .string(code.kind)), ("message", .string(message))])
    }

    /// Splits `arguments` into global options, the command words and the command's own
    /// arguments; global options may also follow the command.
    static func dispatch(_ arguments: [String], environment: [String: String], json: inout Bool,
                         logFormat: inout LogFormat) throws -> ExitCode {
        // Leading global options.
        var i = 0
        var leading: [String] = []
        while i < arguments.count, arguments[i].hasPrefix("-"), arguments[i] != "--" {
            leading.append(arguments[i])
            if GlobalOptions.specs.contains(where: { $0.valueName != nil && "--" + $0.long == arguments[i] }) {
                i += 1
                if i < arguments.count { leading.append(arguments[i]) }
            }
            i += 1
        }
        let globals = try ArgumentParser.parse(leading, options: GlobalOptions.specs)
        json = globals.has("json")
        logFormat = try LogFormat.parse(globals)
        if globals.has("version") {
            writeAll(1, "guts \(version)\n")
            return .ok
        }
        let rest = Array(arguments[i...])
        guard let first = rest.first else {
            if globals.has("help") {
                writeAll(1, mainHelp())
                return .ok
            }
            writeAll(2, mainHelp())
            return .usage
        }
        if first == "help" {
            let topic = rest.dropFirst().joined(separator: " ")
            if topic.isEmpty {
                writeAll(1, mainHelp())
                return .ok
            }
            let words = Array(rest.dropFirst())
            if let group = groupHelp(words) {
                writeAll(1, group)
                return .ok
            }
            let (cmd, _) = try resolve(words)
            writeAll(1, help(for: cmd))
            return .ok
        }
        if first == "version" {
            writeAll(1, "guts \(version)\n")
            return .ok
        }
        // `guts gossip --help`, `guts repo delegates -h`: help for a group of commands.
        let words = Array(rest.prefix { !$0.hasPrefix("-") })
        let flags = rest.dropFirst(words.count)
        if flags.allSatisfy({ $0 == "--help" || $0 == "-h" }), !flags.isEmpty || globals.has("help"),
           let group = groupHelp(words) {
            writeAll(1, group)
            return .ok
        }
        let (cmd, remaining) = try resolve(rest)
        let parsed = try ArgumentParser.parse(leading + remaining, options: GlobalOptions.specs + cmd.options)
        json = parsed.has("json")
        logFormat = try LogFormat.parse(parsed)
        if parsed.has("help") {
            writeAll(1, help(for: cmd))
            return .ok
        }
        if parsed.has("version") {
            writeAll(1, "guts \(version)\n")
            return .ok
        }
        let context = Context(arguments: parsed, environment: environment, command: cmd.name)
        return try cmd.run(parsed, context)
    }

    /// Finds the command named by the leading words of `words` (commands have one to
    /// three words: `sync`, `objects verify`, `repo delegates add`).
    static func resolve(_ words: [String]) throws -> (any Command.Type, [String]) {
        for n in stride(from: min(3, words.count), through: 1, by: -1) {
            let name = words.prefix(n).joined(separator: " ")
            if let c = commands.first(where: { $0.name == name }) { return (c, Array(words.dropFirst(n))) }
        }
        // The longest leading words that start a group of commands.
        var depth = 0
        while depth < words.count, !words[depth].hasPrefix("-"),
              commands.contains(where: { $0.name.hasPrefix(words.prefix(depth + 1).joined(separator: " ") + " ") }) {
            depth += 1
        }
        if depth > 0 {
            let group = words.prefix(depth).joined(separator: " ")
            let subs = Array(Set(commands.filter { $0.name.hasPrefix(group + " ") }
                .map { String($0.name.dropFirst(group.count + 1).split(separator: " ")[0]) })).sorted()
            if depth < words.count, !words[depth].hasPrefix("-") {
                let hint = ArgumentParser.closest(words[depth], among: subs).map { "; did you mean 'guts \(group) \($0)'?" } ?? ""
                throw UsageError("unknown command 'guts \(group) \(words[depth])'\(hint)")
            }
            throw UsageError("'guts \(group)' needs a subcommand: \(subs.joined(separator: ", "))")
        }
        let names = Set(commands.map { String($0.name.split(separator: " ")[0]) }).sorted() + ["help", "version"]
        let hint = ArgumentParser.closest(words[0], among: names).map { "; did you mean '\($0)'?" } ?? ""
        throw UsageError("unknown command '\(words[0])'\(hint) (see 'guts help')")
    }

    /// Help for a group of commands (`guts help gossip`, `guts repo --help`): its
    /// subcommands with their summaries. nil when `words` name no group.
    static func groupHelp(_ words: [String]) -> String? {
        guard !words.isEmpty, !words.contains(where: { $0.hasPrefix("-") }) else { return nil }
        let group = words.joined(separator: " ")
        guard !commands.contains(where: { $0.name == group }) else { return nil }
        let members = commands.filter { $0.name.hasPrefix(group + " ") }
        guard !members.isEmpty else { return nil }
        var s = "usage: guts \(group) <subcommand> [options] [args]\n\nsubcommands:\n"
        let width = (members.map { $0.name.count }.max() ?? 8) + 2
        for c in members { s += "  " + c.name.padded(to: width) + c.summary + "\n" }
        s += "\nSee 'guts help \(group) <subcommand>' for its options.\n"
        return s
    }

    static func mainHelp() -> String {
        var s = "usage: guts [--home DIR] [--json] [-v|-q] [--log-format text|json] <command> [options] [args]\n\n"
        s += "guts: peer-to-peer git repository mirroring over Noise-encrypted connections.\n\ncommands:\n"
        let width = (commands.map { $0.name.count }.max() ?? 8) + 2
        for c in commands {
            s += "  " + c.name.padded(to: width) + c.summary + "\n"
        }
        s += "  " + "help".padded(to: width) + "show help for a command\n"
        s += "  " + "version".padded(to: width) + "print the version\n"
        s += "\nglobal options:\n" + optionLines(GlobalOptions.specs)
        s += "\nSee 'guts help <command>' and man guts(1) for exit codes and files.\n"
        return s
    }

    static func help(for cmd: any Command.Type) -> String {
        var s = "usage: guts \(cmd.synopsis)\n\n\(cmd.summary)\n"
        if !cmd.options.isEmpty { s += "\noptions:\n" + optionLines(cmd.options) }
        s += "\nglobal options:\n" + optionLines(GlobalOptions.specs)
        return s
    }

    static func optionLines(_ specs: [OptionSpec]) -> String {
        let rendered = specs.map { spec -> (String, String) in
            var left = spec.short.map { "-\($0), " } ?? "    "
            left += "--" + spec.long
            if let v = spec.valueName { left += " " + v }
            return (left, spec.help)
        }
        let width = (rendered.map { $0.0.count }.max() ?? 10) + 2
        return rendered.map { "  " + $0.0.padded(to: width) + $0.1 + "\n" }.joined()
    }
}

/// The process environment as a dictionary.
public func processEnvironment() -> [String: String] {
    var env: [String: String] = [:]
    var p = environ
    while let entry = p.pointee {
        let s = String(cString: entry)
        if let eq = s.firstIndex(of: "=") {
            env[String(s[..<eq])] = String(s[s.index(after: eq)...])
        }
        p += 1
    }
    return env
}
