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
        StatusCommand.self,
        PeersCommand.self,
        PeersScoreCommand.self,
        PeersBanCommand.self,
        PeersUnbanCommand.self,
        PeersForgetCommand.self,
        GossipPublishCommand.self,
        GossipSubscribeCommand.self,
        ObjectsVerifyCommand.self,
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
        do {
            return try dispatch(arguments, environment: environment).rawValue
        } catch let e as UsageError {
            writeAll(2, "guts: \(Escape.text(e.message))\n")
            return ExitCode.usage.rawValue
        } catch let e as CommandError {
            writeAll(2, "guts: \(Escape.text(e.message))\n")
            return e.code.rawValue
        } catch {
            writeAll(2, "guts: \(Escape.text(String(describing: error)))\n")
            return ExitCode.io.rawValue
        }
    }

    /// Splits `arguments` into global options, the command words and the command's own
    /// arguments; global options may also follow the command.
    static func dispatch(_ arguments: [String], environment: [String: String]) throws -> ExitCode {
        // Leading global options.
        var i = 0
        var leading: [String] = []
        while i < arguments.count, arguments[i].hasPrefix("-"), arguments[i] != "--" {
            leading.append(arguments[i])
            if arguments[i] == "--home" {
                i += 1
                if i < arguments.count { leading.append(arguments[i]) }
            }
            i += 1
        }
        let globals = try ArgumentParser.parse(leading, options: GlobalOptions.specs)
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
            let (cmd, _) = try resolve(Array(rest.dropFirst()))
            writeAll(1, help(for: cmd))
            return .ok
        }
        if first == "version" {
            writeAll(1, "guts \(version)\n")
            return .ok
        }
        let (cmd, remaining) = try resolve(rest)
        let parsed = try ArgumentParser.parse(leading + remaining, options: GlobalOptions.specs + cmd.options)
        if parsed.has("help") {
            writeAll(1, help(for: cmd))
            return .ok
        }
        if parsed.has("version") {
            writeAll(1, "guts \(version)\n")
            return .ok
        }
        let context = Context(arguments: parsed, environment: environment)
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

    static func mainHelp() -> String {
        var s = "usage: guts [--home DIR] [--json] [-v|-q] <command> [options] [args]\n\n"
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
