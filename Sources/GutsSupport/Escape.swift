/// Escaping of strings that came from a peer, at the place they are written out.
public enum Escape {
    /// `s` with control characters (C0, DEL, C1) and backslashes written as `\xNN`
    /// (backslash as `\\`), so a peer's string can neither move the cursor nor forge a
    /// log line.
    public static func text(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            let v = scalar.value
            if scalar == "\\" {
                out += "\\\\"
            } else if v < 0x20 || v == 0x7f || (0x80...0x9f).contains(v) {
                let d = Array("0123456789abcdef")
                out += "\\x" + String(d[Int(v >> 4) & 15]) + String(d[Int(v & 15)])
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
