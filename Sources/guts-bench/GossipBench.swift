import Foundation

/// Gossip figures on real local nodes.
enum GossipBench {
    static func run(arguments: [String]) -> Int32 {
        print("== gossip: not measured in this build")
        return 0
    }
}
