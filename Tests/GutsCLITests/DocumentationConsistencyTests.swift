import XCTest
@testable import GutsCLI

/// Every option `--help` shows is documented in the command's man page and offered by
/// each shell completion, so the three cannot drift apart silently.
final class DocumentationConsistencyTests: XCTestCase {
    static let root: String = {
        // Tests/GutsCLITests/<this file> -> the package root.
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    func read(_ relative: String) throws -> String {
        try String(contentsOfFile: Self.root + "/" + relative, encoding: .utf8)
    }

    /// roff text with its escapes for '-' undone.
    func manText(_ page: String) throws -> String {
        try read("Man/" + page).replacingOccurrences(of: "\\-", with: "-").replacingOccurrences(of: "\\(em", with: "-")
    }

    /// The options as `--help` prints them (the same specs render the help text).
    func helpOptions(_ command: any Command.Type) -> [OptionSpec] {
        let help = GutsMain.help(for: command)
        let shown = command.options.filter { help.contains("--" + $0.long) }
        XCTAssertEqual(shown.count, command.options.count, "\(command.name): --help lists every option")
        return shown
    }

    func testEveryOptionInHelpIsInTheManPage() throws {
        var missing: [String] = []
        for command in GutsMain.commands {
            let page = "guts-" + command.name.split(separator: " ")[0] + ".1"
            let man = try manText(page)
            for option in helpOptions(command) {
                if !man.contains("--" + option.long) { missing.append("\(page): guts \(command.name) --\(option.long)") }
                if let short = option.short, !man.contains("-\(short)") {
                    missing.append("\(page): guts \(command.name) -\(short)")
                }
            }
        }
        let guts = try manText("guts.1")
        for option in GlobalOptions.specs where !guts.contains("--" + option.long) {
            missing.append("guts.1: global --\(option.long)")
        }
        XCTAssertEqual(missing, [], "options missing from man pages")
    }

    func testEveryOptionInHelpIsInEachCompletion() throws {
        let bash = try read("Completions/guts.bash")
        let zsh = try read("Completions/_guts")
        let fish = try read("Completions/guts.fish")
        var missing: [String] = []
        for command in GutsMain.commands {
            for option in helpOptions(command) {
                let long = "--" + option.long
                if !bash.contains(long) { missing.append("guts.bash: guts \(command.name) \(long)") }
                if !zsh.contains(long) { missing.append("_guts: guts \(command.name) \(long)") }
                if !fish.contains("-l " + option.long) { missing.append("guts.fish: guts \(command.name) \(long)") }
            }
        }
        for option in GlobalOptions.specs {
            let long = "--" + option.long
            if !bash.contains(long) { missing.append("guts.bash: global \(long)") }
            if !zsh.contains(long) { missing.append("_guts: global \(long)") }
            if !fish.contains("-l " + option.long) { missing.append("guts.fish: global \(long)") }
        }
        XCTAssertEqual(missing, [], "options missing from completions")
    }

    /// Every command word the completions offer after `help` is one `guts help` accepts.
    func testHelpTopicsOfferedByCompletionsWork() throws {
        let groups = Set(GutsMain.commands.compactMap { c -> String? in
            let words = c.name.split(separator: " ")
            return words.count > 1 ? String(words[0]) : nil
        })
        for group in groups.sorted() where !GutsMain.commands.contains(where: { $0.name == group }) {
            XCTAssertNotNil(GutsMain.groupHelp([group]), "guts help \(group)")
        }
    }
}
