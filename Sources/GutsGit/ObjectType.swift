/// The four git object types, with their pack type numbers.
public enum ObjectType: UInt8, Sendable, CaseIterable {
    case commit = 1
    case tree = 2
    case blob = 3
    case tag = 4

    /// The name used in object headers (`<type> <size>\0`).
    public var name: String {
        switch self {
        case .commit: return "commit"
        case .tree: return "tree"
        case .blob: return "blob"
        case .tag: return "tag"
        }
    }

    public init?(name: some StringProtocol) {
        switch name {
        case "commit": self = .commit
        case "tree": self = .tree
        case "blob": self = .blob
        case "tag": self = .tag
        default: return nil
        }
    }
}
