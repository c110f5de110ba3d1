import GutsWire

/// Gossip topic names: 1 to 255 bytes of lowercase ASCII letters, digits and `/._-`,
/// not starting or ending with `/`. Well-known topics start with `guts/`.
public enum Topic {
    /// Announcements of new repositories (NewRepository payloads).
    public static let repositories = "guts/repositories"
    /// Announcements of ref updates (SignedRefs and RefsChanged payloads).
    public static let commits = "guts/commits"

    public static func isValid(_ topic: String) -> Bool {
        let bytes = Array(topic.utf8)
        guard !bytes.isEmpty, bytes.count <= GossipLimits.maxTopicLength, bytes.first != UInt8(ascii: "/"), bytes.last != UInt8(ascii: "/") else {
            return false
        }
        return bytes.allSatisfy { b in
            (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                || b == UInt8(ascii: "/") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
        }
    }
}
