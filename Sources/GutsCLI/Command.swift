#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// An error that ends a command with a message on stderr and a specific exit code.
public struct CommandError: Error, CustomStringConvertible, Sendable {
    public let code: ExitCode
    public let message: String
    public init(_ code: ExitCode, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// A subcommand. Each one parses its own options, assembles only the modules it
/// needs and returns an exit code.
public protocol Command {
    /// The words that select it: "keygen", or "objects verify".
    static var name: String { get }
    static var summary: String { get }
    /// Synopsis after `guts`, e.g. "dial [options] [PEERID@]ADDR".
    static var synopsis: String { get }
    static var options: [OptionSpec] { get }
    static func run(_ args: ParsedArguments, _ context: Context) throws -> ExitCode
}

/// Options every command accepts, before or after the command name.
public enum GlobalOptions {
    public static let specs: [OptionSpec] = [
        OptionSpec("home", value: "DIR", help: "state directory (default: $GUTS_HOME, else ~/.guts)"),
        OptionSpec("json", help: "machine-readable JSON on stdout"),
        OptionSpec("verbose", short: "v", repeatable: true, help: "more detail on stderr"),
        OptionSpec("quiet", short: "q", help: "only errors on stderr, and no result on stdout when all went well"),
        OptionSpec("log-format", value: "FORMAT", help: "stderr lines as text (default) or json, one object per line"),
        OptionSpec("help", short: "h", help: "show help and exit"),
        OptionSpec("version", help: "print the version and exit"),
    ]
}

/// What a running command sees of the world: options, environment, output streams.
public final class Context: @unchecked Sendable {
    public let json: Bool
    public let verbosity: Int
    public let quiet: Bool
    public let environment: [String: String]
    public let logFormat: LogFormat
    /// The command's name, a field of every JSON log line.
    public let command: String
    private let homeOverride: String?
    /// Keeps concurrent lines from interleaving mid-line (heap-allocated: never moves).
    private let lock = HeapMutex()
    private var logSink: LogSink?

    public init(arguments: ParsedArguments, environment: [String: String], command: String = "") {
        self.json = arguments.has("json")
        self.logFormat = LogFormat(rawValue: arguments.value("log-format") ?? "") ?? .text
        self.command = command
        self.verbosity = arguments.all("verbose").count
        self.quiet = arguments.has("quiet")
        self.environment = environment
        self.homeOverride = arguments.value("home")
    }

    /// The state directory path: --home, else $GUTS_HOME, else ~/.guts.
    public var homePath: String {
        if let h = homeOverride, !h.isEmpty { return h }
        if let h = environment["GUTS_HOME"], !h.isEmpty { return h }
        let base = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        return base + "/.guts"
    }

    /// The state directory, created with mode 0700 when missing.
    public func home() throws -> String {
        let path = homePath
        if let problem = Files.stateDirectoryProblem(path) { throw CommandError(.io, problem) }
        if !Files.isDirectory(path) {
            do {
                try Files.makeDirectories(Files.directoryName(path))
                if mkdir(path, 0o700) != 0 && errno != EEXIST {
                    throw FileError(path: path, operation: "mkdir", code: errno)
                }
            } catch {
                throw CommandError(.io, "cannot create state directory: \(error)")
            }
        }
        return path
    }

    public var stdoutIsTTY: Bool { isatty(1) == 1 }
    public var stderrIsTTY: Bool { isatty(2) == 1 }

    /// A line of data on stdout.
    public func out(_ line: String) {
        lock.locked { writeAll(1, line + "\n") }
    }

    /// A line of data on stdout; false when the reader has gone (EPIPE), so streams can stop.
    public func outChecked(_ line: String) -> Bool {
        lock.locked { writeAll(1, line + "\n") }
    }

    // Everything written to stderr is one line of text that may quote what a peer
    // sent (ref names, agents, Goodbye reasons, error texts): it is escaped here, as it
    // is written (see `Escape`), so no byte from a peer reaches the terminal raw.

    /// A log line on stderr (suppressed by --quiet).
    public func log(_ line: String) {
        if quiet { return }
        logLine("info", Escape.text(line))
    }

    /// A detail line on stderr, only with -v.
    public func debug(_ line: String) {
        if verbosity == 0 || quiet { return }
        logLine("debug", Escape.text(line))
    }

    /// An error line on stderr, always shown.
    public func error(_ line: String) {
        logLine("error", logFormat == .json ? Escape.text(line) : "guts: " + Escape.text(line))
    }

    /// Sends stderr lines through `sink` (a long-running command's log), or straight to
    /// fd 2 again with nil. With a sink, logging never waits for stderr.
    public func useLogSink(_ sink: LogSink?) {
        lock.locked { logSink = sink }
    }

    private func logLine(_ level: String, _ text: String) {
        if let sink = lock.locked({ logSink }) {
            // A long-running command's log: every line with its time and level.
            sink.write(LogFormat.render(logFormat, level: level, text, stamped: true, fields: ["command": command]))  // never waits for stderr
            return
        }
        // One-shot commands: a direct write, holding the lock only for this one line.
        let line = LogFormat.render(logFormat, level: level, text, fields: ["command": command])
        lock.locked { writeAll(2, line + "\n") }
    }

    /// Progress on a TTY only: rewrites the current stderr line.
    public func progress(_ line: String) {
        guard stderrIsTTY, !quiet, logFormat == .text else { return }
        lock.locked { writeAll(2, "\r\u{1B}[K" + Escape.text(line)) }
    }

    public func endProgress() {
        guard stderrIsTTY, !quiet, logFormat == .text else { return }
        lock.locked { writeAll(2, "\r\u{1B}[K") }
    }
}

/// Writes a whole line of text to a file descriptor; false when it failed (e.g. EPIPE:
/// the reader went away).
@discardableResult
func writeAll(_ fd: Int32, _ text: String) -> Bool {
    Files.writeAll(fd, Array(text.utf8)) == 0
}


extension LogFormat {
    /// `--log-format` from the parsed options (text when absent).
    static func parse(_ args: ParsedArguments) throws -> LogFormat {
        guard let v = args.value("log-format") else { return .text }
        guard let f = LogFormat(rawValue: v) else { throw UsageError("--log-format: expected text or json, not '\(v)'") }
        return f
    }
}
