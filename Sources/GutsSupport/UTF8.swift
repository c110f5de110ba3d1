/// Strict UTF-8 decoding: the string, or nil when `bytes` is not valid UTF-8 (no
/// replacement characters, unlike `String(decoding:as:)`).
public func decodeUTF8<S: Sequence>(_ bytes: S) -> String? where S.Element == UInt8 {
    // Contiguous bytes (the usual case: a slice of a received message) are validated
    // by the standard library's fast path; decoding scalar by scalar was a visible
    // part of decoding a Refs message with a thousand names.
    if let fast = bytes.withContiguousStorageIfAvailable({ String(validating: $0, as: UTF8.self) }) { return fast }
    var it = bytes.makeIterator()
    var decoder = UTF8()
    var out = String.UnicodeScalarView()
    while true {
        switch decoder.decode(&it) {
        case let .scalarValue(v): out.append(v)
        case .emptyInput: return String(out)
        case .error: return nil
        }
    }
}
