import Foundation

/// Sync figures: first mirror and one-commit incremental sync, guts vs git daemon.
enum SyncBench {
    static func run(arguments: [String]) -> Int32 {
        print("== sync: not measured in this build")
        return 0
    }
}
