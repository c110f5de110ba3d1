@testable import GutsGit

/// The object parsers and git fsck's rules: trees, commits and tags as they arrive in
/// packs (`ObjectChecker`, `Tree`/`Commit`/`Tag(parsing:)`), and loose object files
/// (zlib, then `<type> <size>\0<body>`).
///
/// Input: a selector (0-3: check a blob, tree, commit or tag body; 4: a loose object
/// whose content the harness compresses, or, with bit 7, raw file bytes), then the body.
///
/// Properties: what fsck accepts (no error) parses, and a parsed object serializes to a
/// body that parses back to the same object; a loose object read back has the size its
/// header declared.
func fuzzObjectChecker(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let selector = input.u8()
    let body = input.rest()
    if (selector & 0x7F) % 5 == 4 {
        let file: [UInt8]
        if selector & 0x80 != 0 {
            file = body
        } else {
            guard let z = try? Zlib.deflate(body, level: 1) else { fuzzFail("deflate") }
            file = z
        }
        guard let object = try? file.withUnsafeBytes({ try LooseObject.parse($0, limits: fuzzGitLimits) }) else { return }
        if selector & 0x80 == 0 {
            let header = Array("\(object.type.name) \(object.body.count)".utf8) + [0]
            fuzzCheck(body == header + object.body, "loose object read back differently")
        }
        return
    }
    let type = [ObjectType.blob, .tree, .commit, .tag][Int(selector & 3)]
    var links = 0
    let issues = body.withUnsafeBytes { ObjectChecker.check(type: type, body: $0, limits: fuzzGitLimits) { _, _ in links += 1 } }
    let accepted = !issues.contains { $0.severity == .error }
    switch type {
    case .blob:
        fuzzCheck(issues.isEmpty && links == 0, "a blob has issues or links")
    case .tree:
        guard let tree = try? Tree(parsing: body, limits: fuzzGitLimits) else {
            fuzzCheck(!accepted, "fsck accepts a tree that does not parse")
            return
        }
        fuzzCheck(accepted, "a tree parses that fsck refuses")
        let again = try? Tree(parsing: tree.serialized(), limits: fuzzGitLimits)
        fuzzCheck(again == tree, "a tree does not survive serialization")
    case .commit:
        guard let commit = try? Commit(parsing: body) else {
            fuzzCheck(!accepted, "fsck accepts a commit that does not parse")
            return
        }
        let again = try? Commit(parsing: commit.serialized())
        fuzzCheck(again == commit, "a commit does not survive serialization")
    case .tag:
        guard let tag = try? Tag(parsing: body) else {
            fuzzCheck(!accepted, "fsck accepts a tag that does not parse")
            return
        }
        let again = try? Tag(parsing: tag.serialized())
        fuzzCheck(again == tag, "a tag does not survive serialization")
    }
}
