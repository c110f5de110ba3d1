import GutsSupport

/// The strict JSON parser of the control socket and --json readers, and the writer.
///
/// Input: the text (bytes), parsed with the default limits and with the control
/// socket's depth limit.
///
/// Properties: what the writer renders always parses; rendering is stable after one round
/// (numbers are written with at most 3 decimals, so the first round may round them);
/// a quoted string parses back to itself.
func fuzzJSON(_ data: [UInt8]) {
    _ = try? JSON.parse(data, maxDepth: 8)
    if let text = String(validating: data, as: UTF8.self) {
        guard let quoted = try? JSON.parse(JSON.quote(text)) else { fuzzFail("a quoted string does not parse") }
        fuzzCheck(quoted == .string(text), "a quoted string parses to something else")
    }
    guard let value = try? JSON.parse(data) else { return }
    let once = value.rendered
    let reparsed: JSONValue
    do {
        reparsed = try JSON.parse(once)
    } catch {
        fuzzFail("rendered JSON does not parse: \(error)")
    }
    guard let twice = try? JSON.parse(reparsed.rendered) else { fuzzFail("rendered JSON does not parse the second time") }
    fuzzCheck(twice == reparsed && reparsed.rendered == once, "rendering is not stable")
}
