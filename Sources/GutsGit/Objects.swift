import GutsSupport

/// How serious a rule violation is. Errors make an object invalid; warnings are
/// legacy quirks stock git also only warns about (e.g. zero-padded file modes).
public enum Severity: String, Sendable, Equatable {
    case error
    case warning
}

/// One rule an object breaks, named like git fsck's message IDs (`treeNotSorted`,
/// `badTimezone`, ...).
public struct ObjectIssue: Sendable, Equatable, CustomStringConvertible {
    public let severity: Severity
    /// git fsck's message ID for the rule, in camelCase.
    public let code: String
    public let message: String

    public init(_ severity: Severity, _ code: String, _ message: String) {
        self.severity = severity
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// A person and time stamp from an `author`, `committer` or `tagger` line:
/// `Name <email> <unix-seconds> <+|-hhmm>`.
public struct Signature: Sendable, Equatable {
    public var name: String
    public var email: String
    /// Seconds since the Unix epoch.
    public var time: Int64
    /// The zone as written, e.g. `+0200`.
    public var timezone: String

    public init(name: String, email: String, time: Int64, timezone: String) {
        self.name = name
        self.email = email
        self.time = time
        self.timezone = timezone
    }

    /// The line as stored in an object (without the keyword).
    public var serialized: String { "\(name) <\(email)> \(time) \(timezone)" }
}

/// The kind of thing a tree entry points at, from its mode.
public enum TreeEntryKind: Sendable, Equatable {
    case blob
    case executable
    case symlink
    case tree
    /// A submodule commit (mode 160000); the object lives in another repository.
    case gitlink
}

/// One entry of a tree object.
public struct TreeEntry: Sendable, Equatable {
    /// The mode as an octal number: 0o100644, 0o100755, 0o120000, 0o40000 or 0o160000.
    public var mode: UInt32
    /// The file name bytes (git does not require UTF-8).
    public var name: [UInt8]
    public var id: ObjectID

    public init(mode: UInt32, name: [UInt8], id: ObjectID) {
        self.mode = mode
        self.name = name
        self.id = id
    }

    public var kind: TreeEntryKind {
        switch mode {
        case 0o40000: return .tree
        case 0o120000: return .symlink
        case 0o160000: return .gitlink
        case 0o100755: return .executable
        default: return .blob
        }
    }

    /// The type of the object the entry names (`.commit` for gitlinks).
    public var objectType: ObjectType {
        switch kind {
        case .tree: return .tree
        case .gitlink: return .commit
        default: return .blob
        }
    }

    /// The name as a string (invalid UTF-8 replaced).
    public var nameString: String { String(decoding: name, as: UTF8.self) }
}

/// A parsed tree object.
public struct Tree: Sendable, Equatable {
    public var entries: [TreeEntry]

    public init(entries: [TreeEntry]) { self.entries = entries }

    /// Parses and validates a tree body with git fsck's rules; throws `.invalidObject`
    /// on the first error (warnings are ignored).
    public init(parsing body: [UInt8], limits: ObjectLimits = .default) throws {
        var entries: [TreeEntry] = []
        let issues = body.withUnsafeBytes { raw in
            ObjectChecker.checkTree(raw, limits: limits) { mode, name, id in
                entries.append(TreeEntry(mode: mode, name: Array(name), id: id))
            }
        }
        if let e = issues.first(where: { $0.severity == .error }) { throw GitError(.invalidObject, "tree: \(e)") }
        self.entries = entries
    }

    /// The canonical body: entries in git order, modes without leading zeros.
    /// Entries are sorted here, so callers may add them in any order.
    public func serialized() -> [UInt8] {
        let sorted = entries.sorted { a, b in
            Tree.compareNames(a.name, a.mode == 0o40000, b.name, b.mode == 0o40000) < 0
        }
        var out = [UInt8]()
        for e in sorted {
            out.append(contentsOf: String(e.mode, radix: 8).utf8)
            out.append(0x20)
            out.append(contentsOf: e.name)
            out.append(0)
            out.append(contentsOf: e.id.bytes)
        }
        return out
    }

    /// git's tree order: byte order, where a directory name compares as if followed by `/`.
    public static func compareNames(_ a: [UInt8], _ aIsTree: Bool, _ b: [UInt8], _ bIsTree: Bool) -> Int {
        a.withUnsafeBytes { ra in
            b.withUnsafeBytes { rb in
                ObjectChecker.compareTreeNames(ra, aIsTree, rb, bIsTree)
            }
        }
    }
}

/// A parsed commit object.
public struct Commit: Sendable, Equatable {
    public var tree: ObjectID
    public var parents: [ObjectID]
    public var author: Signature
    public var committer: Signature
    /// Headers after `committer` (e.g. `encoding`, `gpgsig`, `mergetag`), with
    /// continuation lines joined by `\n`.
    public var extraHeaders: [(key: String, value: String)]
    /// Everything after the blank line.
    public var message: [UInt8]

    public init(tree: ObjectID, parents: [ObjectID], author: Signature, committer: Signature,
                extraHeaders: [(key: String, value: String)] = [], message: [UInt8]) {
        self.tree = tree
        self.parents = parents
        self.author = author
        self.committer = committer
        self.extraHeaders = extraHeaders
        self.message = message
    }

    public static func == (a: Commit, b: Commit) -> Bool {
        a.tree == b.tree && a.parents == b.parents && a.author == b.author && a.committer == b.committer
            && a.extraHeaders.map { "\($0.key) \($0.value)" } == b.extraHeaders.map { "\($0.key) \($0.value)" }
            && a.message == b.message
    }

    /// Parses and validates a commit body with git fsck's rules.
    public init(parsing body: [UInt8]) throws {
        let issues = body.withUnsafeBytes { ObjectChecker.checkCommit($0) { _, _ in } }
        if let e = issues.first(where: { $0.severity == .error }) { throw GitError(.invalidObject, "commit: \(e)") }
        let header = HeaderParser(body)
        var tree: ObjectID?
        var parents: [ObjectID] = []
        var author: Signature?
        var committer: Signature?
        var extra: [(key: String, value: String)] = []
        for (key, value) in header.fields {
            switch key {
            case "tree" where tree == nil: tree = ObjectID(hex: HeaderParser.ownLine(value))
            case "parent" where author == nil: if let p = ObjectID(hex: HeaderParser.ownLine(value)) { parents.append(p) }
            case "author" where author == nil: author = Signature(parsing: HeaderParser.ownLine(value))
            case "committer" where committer == nil: committer = Signature(parsing: HeaderParser.ownLine(value))
            default: extra.append((key, value))
            }
        }
        guard let tree, let author, let committer else { throw GitError(.invalidObject, "commit: missing header") }
        self.init(tree: tree, parents: parents, author: author, committer: committer, extraHeaders: extra, message: header.message)
    }

    /// The canonical body.
    public func serialized() -> [UInt8] {
        var s = "tree \(tree.hex)\n"
        for p in parents { s += "parent \(p.hex)\n" }
        s += "author \(author.serialized)\ncommitter \(committer.serialized)\n"
        for (k, v) in extraHeaders { s += "\(k) \(v.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n "))\n" }
        s += "\n"
        return Array(s.utf8) + message
    }
}

/// A parsed annotated tag object.
public struct Tag: Sendable, Equatable {
    public var object: ObjectID
    public var type: ObjectType
    public var name: String
    /// Absent in some very old tags, which git accepts.
    public var tagger: Signature?
    public var message: [UInt8]

    public init(object: ObjectID, type: ObjectType, name: String, tagger: Signature?, message: [UInt8]) {
        self.object = object
        self.type = type
        self.name = name
        self.tagger = tagger
        self.message = message
    }

    /// Parses and validates a tag body with git fsck's rules.
    public init(parsing body: [UInt8]) throws {
        let issues = body.withUnsafeBytes { ObjectChecker.checkTag($0) { _, _ in } }
        if let e = issues.first(where: { $0.severity == .error }) { throw GitError(.invalidObject, "tag: \(e)") }
        let header = HeaderParser(body)
        var object: ObjectID?
        var type: ObjectType?
        var name: String?
        var tagger: Signature?
        for (i, (key, value)) in header.fields.enumerated() {
            switch key {
            case "object" where object == nil: object = ObjectID(hex: HeaderParser.ownLine(value))
            case "type" where type == nil: type = ObjectType(name: HeaderParser.ownLine(value))
            case "tag" where name == nil: name = HeaderParser.ownLine(value)
            // As in git, the tagger is the line right after object, type and tag (which fsck
            // requires first, each one line); fsck checks only that line, so a later one (after
            // a stray or a continuation line) is not a tagger.
            case "tagger" where tagger == nil && i == 3 && !header.fields[2].1.utf8.contains(0x0A):
                tagger = Signature(parsing: HeaderParser.ownLine(value))
            default: break
            }
        }
        guard let object, let type, let name else { throw GitError(.invalidObject, "tag: missing header") }
        self.init(object: object, type: type, name: name, tagger: tagger, message: header.message)
    }

    /// The canonical body.
    public func serialized() -> [UInt8] {
        var s = "object \(object.hex)\ntype \(type.name)\ntag \(name)\n"
        if let tagger { s += "tagger \(tagger.serialized)\n" }
        s += "\n"
        return Array(s.utf8) + message
    }
}

extension Signature {
    /// Parses `Name <email> seconds zone`; nil when malformed.
    init?(parsing line: String) {
        guard let lt = line.firstIndex(of: "<"), let gt = line[lt...].firstIndex(of: ">") else { return nil }
        let name = line[..<lt].trimmingSuffix(" ")
        let email = String(line[line.index(after: lt)..<gt])
        let rest = line[line.index(after: gt)...].split(separator: " ")
        guard rest.count == 2, let t = Int64(rest[0]) else { return nil }
        self.init(name: String(name), email: email, time: t, timezone: String(rest[1]))
    }
}

extension Substring {
    func trimmingSuffix(_ c: Character) -> Substring {
        var s = self
        while s.last == c { s = s.dropLast() }
        return s
    }
}

/// Splits a commit or tag into header fields (continuation lines folded) and message.
struct HeaderParser {
    var fields: [(String, String)] = []
    var message: [UInt8] = []

    /// A standard header's value (tree, parent, author, committer; object, type, tag,
    /// tagger) is its own line only: as in git, continuation lines extend extra headers
    /// such as gpgsig, never these (and fsck checks only their own line).
    static func ownLine(_ folded: String) -> String {
        String(decoding: folded.utf8.prefix(while: { $0 != 0x0A }), as: UTF8.self)
    }

    init(_ body: [UInt8]) {
        var i = 0
        let n = body.count
        while i < n {
            if body[i] == 0x0A {
                message = Array(body[(i + 1)...])
                return
            }
            var end = i
            while end < n && body[end] != 0x0A { end += 1 }
            let line = body[i..<end]
            if line.first == 0x20, !fields.isEmpty {
                fields[fields.count - 1].1 += "\n" + String(decoding: line.dropFirst(), as: UTF8.self)
            } else if let sp = line.firstIndex(of: 0x20) {
                fields.append((String(decoding: body[i..<sp], as: UTF8.self), String(decoding: body[(sp + 1)..<end], as: UTF8.self)))
            } else {
                fields.append((String(decoding: line, as: UTF8.self), ""))
            }
            i = end + 1
        }
    }
}
