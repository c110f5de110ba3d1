import Foundation

// guts-bench: figures for the issue notes. Build with `swift build -c release` and run
// `.build/release/guts-bench [channel|git|all] [options]`. Prints figures beside the
// reference implementation measured in the same run.
let args = Array(CommandLine.arguments.dropFirst())
let suite = args.first.flatMap { $0.hasPrefix("-") ? nil : $0 } ?? "all"
let rest = suite == "all" && args.first != "all" ? args : Array(args.dropFirst())
var status: Int32 = 0
switch suite {
case "channel":
    status = ChannelBench.run(arguments: rest)
case "all":
    status = ChannelBench.run(arguments: rest)
case "-h", "--help", "help":
    print("usage: guts-bench [channel|all] [--seconds S] [--rounds N] [--megabytes M] [--concurrency C]")
default:
    FileHandle.standardError.write(Data("guts-bench: unknown suite '\(suite)'\n".utf8))
    status = 2
}
exit(status)
