@testable import GutsGit

/// Ref files as found on disk: loose refs (`<hex>` or `ref: <name>`), `packed-refs`
/// (with `^` peeled lines and comments), and the ref-name rules.
///
/// Input: the file text (any bytes, decoded as UTF-8 with replacement as the reader does).
///
/// Properties: a parsed loose ref written back the way git writes it parses to the same
/// value; parsed packed refs have valid names and survive being written and read again.
func fuzzRefs(_ data: [UInt8]) {
    let text = String(decoding: data, as: UTF8.self)
    _ = GutsGit.Refs.checkRefFormat(text)
    _ = GutsGit.Refs.checkRefFormat(text, allowOneLevel: true)
    switch GutsGit.Refs.parse(text) {
    case let .direct(id)?:
        fuzzCheck(GutsGit.Refs.parse(id.hex + "\n") == .direct(id), "loose ref \(id) does not survive writing")
    case let .symbolic(target)?:
        fuzzCheck(target == "HEAD" || GutsGit.Refs.checkRefFormat(target), "symbolic ref to an invalid name")
        fuzzCheck(GutsGit.Refs.parse("ref: \(target)\n") == .symbolic(target), "symbolic ref does not survive writing")
    case nil:
        break
    }
    guard let refs = try? GutsGit.Refs.parsePacked(text) else { return }
    for r in refs { fuzzCheck(GutsGit.Refs.checkRefFormat(r.name), "packed ref with an invalid name") }
    let written = GutsGit.Refs.serializePacked(refs)
    guard let again = try? GutsGit.Refs.parsePacked(written) else { fuzzFail("written packed-refs do not parse") }
    let sorted = refs.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    fuzzCheck(again == sorted, "packed-refs do not survive writing")
}
