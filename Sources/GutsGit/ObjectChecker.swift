/// git fsck's rules for object contents, over raw memory so the verifier can check
/// every object without copying it. Each checker returns the issues found and reports
/// the object's outgoing links (for connectivity) through a closure.
///
/// Stricter than stock git where the brief asks for it: names `.`, `..`, `.git`
/// (any case), empty names and names with `/` are errors (git only warns), and
/// unknown tree modes are errors. Mode 100664 and zero-padded modes stay warnings,
/// as old git wrote them.
public enum ObjectChecker {
    /// Checks any object. `link` receives each object this one names and the type it
    /// must have (submodule commits are not reported: they live elsewhere).
    public static func check(type: ObjectType, body: UnsafeRawBufferPointer, limits: ObjectLimits = .default,
                             link: (ObjectID, ObjectType) -> Void) -> [ObjectIssue] {
        switch type {
        case .blob: return []
        case .tree:
            return checkTree(body, limits: limits) { mode, _, id in
                if mode == 0o40000 {
                    link(id, .tree)
                } else if mode != 0o160000 {
                    link(id, .blob)
                }
            }
        case .commit: return checkCommit(body, link: link)
        case .tag: return checkTag(body, link: link)
        }
    }

    /// Byte at `i`, or 0 past the end (so scanners stop as at a C string's end).
    @inline(__always)
    static func at(_ b: UnsafeRawBufferPointer, _ i: Int) -> UInt8 {
        i < b.count ? b[i] : 0
    }

    /// git's tree order: byte order, where a directory compares as if followed by `/`.
    static func compareTreeNames(_ a: UnsafeRawBufferPointer, _ aIsTree: Bool, _ b: UnsafeRawBufferPointer, _ bIsTree: Bool) -> Int {
        let len = min(a.count, b.count)
        if len > 0 {
            let r = memcmpBytes(a.baseAddress!, b.baseAddress!, len)
            if r != 0 { return r }
        }
        let c1: UInt8 = len < a.count ? a[len] : (aIsTree ? 0x2F : 0)
        let c2: UInt8 = len < b.count ? b[len] : (bIsTree ? 0x2F : 0)
        return Int(c1) - Int(c2)
    }

    @inline(__always)
    static func memcmpBytes(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Int {
        for i in 0..<n {
            let x = a.load(fromByteOffset: i, as: UInt8.self)
            let y = b.load(fromByteOffset: i, as: UInt8.self)
            if x != y { return Int(x) - Int(y) }
        }
        return 0
    }

    /// Checks a tree body: entry syntax, modes, names, strict order, duplicates
    /// (including a file and a directory of the same name). Calls `entry` with each
    /// entry's mode, name bytes and object ID.
    /// The entries of a tree (mode, name, ID), parsed with the bounds checks of
    /// `checkTree` and none of its rules (names, modes, order): for walks over trees
    /// that were checked when they entered the store. Stops after
    /// `limits.maxTreeEntries` entries, as `checkTree` does; returns false when the
    /// tree cannot be parsed (what `checkTree` reports as `badTree`).
    public static func treeEntries(_ body: UnsafeRawBufferPointer, limits: ObjectLimits = .default,
                                   entry: (UInt32, ObjectID) -> Void) -> Bool {
        let n = body.count
        var p = 0
        var count = 0
        while p < n {
            count += 1
            if count > limits.maxTreeEntries { return true }
            var mode: UInt32 = 0
            let modeStart = p
            while p < n && body[p] != 0x20 {
                let c = body[p]
                guard c >= 0x30, c <= 0x37, p - modeStart < 7 else { return false }
                mode = mode << 3 | UInt32(c - 0x30)
                p += 1
            }
            guard p < n, p > modeStart else { return false }
            p += 1
            while p < n && body[p] != 0 { p += 1 }
            guard p < n else { return false }
            p += 1
            guard n - p >= 20 else { return false }
            entry(mode, ObjectID(unsafeRaw: body.baseAddress! + p, algorithm: .sha1))
            p += 20
        }
        return true
    }

    public static func checkTree(_ body: UnsafeRawBufferPointer, limits: ObjectLimits = .default,
                                 entry: (UInt32, UnsafeRawBufferPointer, ObjectID) -> Void) -> [ObjectIssue] {
        var issues: [ObjectIssue] = []
        func add(_ s: Severity, _ code: String, _ msg: String) {
            if !issues.contains(where: { $0.code == code }) { issues.append(ObjectIssue(s, code, msg)) }
        }
        let n = body.count
        var p = 0
        var count = 0
        var prevName = UnsafeRawBufferPointer(start: nil, count: 0)
        var prevIsTree = false
        var havePrev = false
        // Files that a later directory of the same name could still collide with.
        var candidates: [(Int, Int)] = []
        while p < n {
            count += 1
            if count > limits.maxTreeEntries {
                add(.error, "treeTooLarge", "more than \(limits.maxTreeEntries) entries")
                break
            }
            // Mode: octal digits up to a space.
            var mode: UInt32 = 0
            let modeStart = p
            var badDigit = false
            while p < n && body[p] != 0x20 {
                let c = body[p]
                if c < 0x30 || c > 0x37 || p - modeStart >= 7 { badDigit = true } else { mode = mode << 3 | UInt32(c - 0x30) }
                p += 1
            }
            if p >= n || p == modeStart || badDigit {
                add(.error, "badTree", "cannot parse entry \(count): malformed mode")
                break
            }
            let zeroPadded = body[modeStart] == 0x30
            p += 1
            // Name up to NUL.
            let nameStart = p
            while p < n && body[p] != 0 { p += 1 }
            if p >= n {
                add(.error, "badTree", "cannot parse entry \(count): unterminated name")
                break
            }
            let name = UnsafeRawBufferPointer(rebasing: body[nameStart..<p])
            p += 1
            if n - p < 20 {
                add(.error, "badTree", "cannot parse entry \(count): truncated object ID")
                break
            }
            let id = ObjectID(unsafeRaw: body.baseAddress! + p, algorithm: .sha1)
            p += 20

            switch mode {
            case 0o100644, 0o100755, 0o120000, 0o40000, 0o160000:
                if zeroPadded { add(.warning, "zeroPaddedFilemode", "contains zero-padded file modes") }
            case 0o100664:
                add(.warning, "badFilemode", "contains legacy file mode 100664")
            default:
                add(.error, "badFilemode", "entry '\(printable(name))' has invalid mode \(String(mode, radix: 8))")
            }
            let isTree = mode == 0o40000
            if name.isEmpty {
                add(.error, "emptyName", "contains an empty file name")
            } else if name.contains(0x2F) {
                add(.error, "fullPathname", "entry '\(printable(name))' contains '/'")
            } else if name.count == 1 && name[0] == 0x2E {
                add(.error, "hasDot", "contains '.'")
            } else if name.count == 2 && name[0] == 0x2E && name[1] == 0x2E {
                add(.error, "hasDotdot", "contains '..'")
            } else if isDotGit(name) {
                add(.error, "hasDotgit", "contains '\(printable(name))'")
            }
            if id.isZero { add(.warning, "nullSha1", "contains entries pointing to the null object ID") }

            if havePrev {
                let c = compareTreeNames(prevName, prevIsTree, name, isTree)
                if c > 0 {
                    add(.error, "treeNotSorted", "not properly sorted ('\(printable(prevName))' before '\(printable(name))')")
                } else if c == 0 {
                    add(.error, "duplicateEntries", "contains duplicate entry '\(printable(name))'")
                }
            }
            // A file "x" and a directory "x" sort apart ("x" < "x-y" < "x/"), so track
            // files whose name could still come back as a directory.
            while let top = candidates.last {
                let topName = UnsafeRawBufferPointer(rebasing: body[top.0..<(top.0 + top.1)])
                if name.count >= topName.count && memcmpBytes(name.baseAddress!, topName.baseAddress!, topName.count) == 0
                    && (name.count == topName.count || name[topName.count] < 0x2F) {
                    break
                }
                candidates.removeLast()
            }
            if isTree, let top = candidates.last, top.1 == name.count {
                add(.error, "duplicateEntries", "contains a file and a directory both named '\(printable(name))'")
            }
            if !isTree && !name.isEmpty { candidates.append((nameStart, name.count)) }

            entry(mode, name, id)
            prevName = name
            prevIsTree = isTree
            havePrev = true
        }
        return issues
    }

    /// `.git` in any letter case (git also rejects HFS+/NTFS spellings such as
    /// `git~1`; those are reported too).
    static func isDotGit(_ name: UnsafeRawBufferPointer) -> Bool {
        func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
        if name.count == 4 && name[0] == 0x2E && lower(name[1]) == 0x67 && lower(name[2]) == 0x69 && lower(name[3]) == 0x74 {
            return true
        }
        // NTFS short name.
        if name.count == 5 && lower(name[0]) == 0x67 && lower(name[1]) == 0x69 && lower(name[2]) == 0x74
            && name[3] == 0x7E && name[4] == 0x31 {
            return true
        }
        return false
    }

    static func printable(_ b: UnsafeRawBufferPointer) -> String {
        var s = ""
        for c in b.prefix(200) {
            if c >= 0x20 && c < 0x7F && c != 0x27 && c != 0x5C { s.unicodeScalars.append(Unicode.Scalar(c)) } else {
                s += "\\x" + hex2(c)
            }
        }
        return s
    }

    static func hex2(_ c: UInt8) -> String {
        let d = Array("0123456789abcdef")
        return String(d[Int(c >> 4)]) + String(d[Int(c & 15)])
    }

    /// Header lines must end in a blank line (or the object must end right after a
    /// newline) and contain no NUL.
    static func verifyHeaders(_ b: UnsafeRawBufferPointer) -> ObjectIssue? {
        let n = b.count
        var i = 0
        while i < n {
            let c = b[i]
            if c == 0 { return ObjectIssue(.error, "nulInHeader", "unterminated header: NUL at offset \(i)") }
            if c == 0x0A && i + 1 < n && b[i + 1] == 0x0A { return nil }
            i += 1
        }
        if n > 0 && b[n - 1] == 0x0A { return nil }
        return ObjectIssue(.error, "unterminatedHeader", "unterminated header")
    }

    /// Reads `<keyword> <40 hex>\n` at `p`; returns the ID and advances `p`.
    static func expectID(_ b: UnsafeRawBufferPointer, _ p: inout Int, _ keyword: StaticString) -> ObjectID?? {
        guard startsWith(b, p, keyword) else { return .none }
        let start = p + keyword.utf8CodeUnitCount
        guard start + 40 < b.count, b[start + 40] == 0x0A,
              let id = ObjectID(hexBytes: UnsafeRawBufferPointer(rebasing: b[start..<(start + 40)])) else {
            return .some(nil)
        }
        p = start + 41
        return .some(id)
    }

    static func startsWith(_ b: UnsafeRawBufferPointer, _ p: Int, _ s: StaticString) -> Bool {
        let k = s.utf8CodeUnitCount
        guard p + k <= b.count else { return false }
        let sp = s.utf8Start
        for i in 0..<k where b[p + i] != sp[i] { return false }
        return true
    }

    /// Checks `Name <email> seconds +hhmm\n` starting at `p` (after the keyword) and
    /// moves `p` past the line.
    static func checkIdent(_ b: UnsafeRawBufferPointer, _ p: inout Int, _ what: String) -> ObjectIssue? {
        var q = p
        // The caller continues at the next line whatever happens.
        var eol = p
        while eol < b.count && b[eol] != 0x0A { eol += 1 }
        p = min(eol + 1, b.count)
        if at(b, q) == 0x3C { return ObjectIssue(.error, "missingNameBeforeEmail", "\(what): missing name before email") }
        while true {
            let c = at(b, q)
            if c == 0 || c == 0x3C || c == 0x3E || c == 0x0A { break }
            q += 1
        }
        if at(b, q) == 0x3E { return ObjectIssue(.error, "badName", "\(what): bad name") }
        if at(b, q) != 0x3C { return ObjectIssue(.error, "missingEmail", "\(what): missing email") }
        if q == 0 || b[q - 1] != 0x20 { return ObjectIssue(.error, "missingSpaceBeforeEmail", "\(what): missing space before email") }
        q += 1
        while true {
            let c = at(b, q)
            if c == 0 || c == 0x3C || c == 0x3E || c == 0x0A { break }
            q += 1
        }
        if at(b, q) != 0x3E { return ObjectIssue(.error, "badEmail", "\(what): bad email") }
        q += 1
        if at(b, q) != 0x20 { return ObjectIssue(.error, "missingSpaceBeforeDate", "\(what): missing space before date") }
        q += 1
        let digitsStart = q
        if !isDigit(at(b, q)) { return ObjectIssue(.error, "badDate", "\(what): invalid timestamp") }
        if at(b, q) == 0x30 && at(b, q + 1) != 0x20 { return ObjectIssue(.error, "zeroPaddedDate", "\(what): zero-padded date") }
        var value: UInt64 = 0
        var overflow = false
        while isDigit(at(b, q)) {
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(at(b, q) - 0x30))
            if o1 || o2 { overflow = true }
            value = s
            q += 1
        }
        if overflow || value > UInt64(Int64.max) { return ObjectIssue(.error, "badDateOverflow", "\(what): timestamp overflows") }
        if q == digitsStart || at(b, q) != 0x20 { return ObjectIssue(.error, "badDate", "\(what): invalid timestamp") }
        q += 1
        let sign = at(b, q)
        if (sign != 0x2B && sign != 0x2D) || !isDigit(at(b, q + 1)) || !isDigit(at(b, q + 2))
            || !isDigit(at(b, q + 3)) || !isDigit(at(b, q + 4)) || at(b, q + 5) != 0x0A {
            return ObjectIssue(.error, "badTimezone", "\(what): invalid time zone")
        }
        return nil
    }

    @inline(__always) static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// Checks a commit: `tree`, `parent`*, one `author`, `committer`, then any headers
    /// and a blank line. Links: the tree and each parent.
    public static func checkCommit(_ b: UnsafeRawBufferPointer, link: (ObjectID, ObjectType) -> Void) -> [ObjectIssue] {
        if let e = verifyHeaders(b) { return [e] }
        var p = 0
        switch expectID(b, &p, "tree ") {
        case .none: return [ObjectIssue(.error, "missingTree", "invalid format - expected 'tree' line")]
        case .some(nil): return [ObjectIssue(.error, "badTreeSha1", "invalid 'tree' line format - bad sha1")]
        case .some(let id?): link(id, .tree)
        }
        while startsWith(b, p, "parent ") {
            switch expectID(b, &p, "parent ") {
            case .some(let id?): link(id, .commit)
            default: return [ObjectIssue(.error, "badParentSha1", "invalid 'parent' line format - bad sha1")]
            }
        }
        var authors = 0
        while startsWith(b, p, "author ") {
            authors += 1
            p += 7
            if let e = checkIdent(b, &p, "author") { return [e] }
        }
        if authors == 0 { return [ObjectIssue(.error, "missingAuthor", "invalid format - expected 'author' line")] }
        if authors > 1 { return [ObjectIssue(.error, "multipleAuthors", "invalid format - multiple 'author' lines")] }
        guard startsWith(b, p, "committer ") else {
            return [ObjectIssue(.error, "missingCommitter", "invalid format - expected 'committer' line")]
        }
        p += 10
        if let e = checkIdent(b, &p, "committer") { return [e] }
        return []
    }

    /// Checks an annotated tag: `object`, `type`, `tag`, optional `tagger`.
    /// Links: the tagged object with the type the tag declares.
    public static func checkTag(_ b: UnsafeRawBufferPointer, link: (ObjectID, ObjectType) -> Void) -> [ObjectIssue] {
        if let e = verifyHeaders(b) { return [e] }
        var p = 0
        let target: ObjectID
        switch expectID(b, &p, "object ") {
        case .none: return [ObjectIssue(.error, "missingObject", "invalid format - expected 'object' line")]
        case .some(nil): return [ObjectIssue(.error, "badObjectSha1", "invalid 'object' line format - bad sha1")]
        case .some(let id?): target = id
        }
        guard startsWith(b, p, "type ") else { return [ObjectIssue(.error, "missingTypeEntry", "invalid format - expected 'type' line")] }
        p += 5
        var eol = p
        while eol < b.count && b[eol] != 0x0A { eol += 1 }
        guard eol < b.count else { return [ObjectIssue(.error, "missingType", "invalid format - unexpected end after 'type' line")] }
        guard let type = ObjectType(name: String(decoding: UnsafeRawBufferPointer(rebasing: b[p..<eol]), as: UTF8.self)) else {
            return [ObjectIssue(.error, "badType", "invalid 'type' value")]
        }
        link(target, type)
        p = eol + 1
        guard startsWith(b, p, "tag ") else { return [ObjectIssue(.error, "missingTagEntry", "invalid format - expected 'tag' line")] }
        p += 4
        eol = p
        while eol < b.count && b[eol] != 0x0A { eol += 1 }
        guard eol < b.count else { return [ObjectIssue(.error, "missingTag", "invalid format - unexpected end after 'type' line")] }
        var issues: [ObjectIssue] = []
        let tagName = String(decoding: UnsafeRawBufferPointer(rebasing: b[p..<eol]), as: UTF8.self)
        if !Refs.checkRefFormat("refs/tags/" + tagName) {
            issues.append(ObjectIssue(.warning, "badTagName", "invalid 'tag' name: \(tagName)"))
        }
        p = eol + 1
        if startsWith(b, p, "tagger ") {
            p += 7
            if let e = checkIdent(b, &p, "tagger") { issues.append(e) }
        } else {
            issues.append(ObjectIssue(.warning, "missingTaggerEntry", "invalid format - expected 'tagger' line"))
        }
        return issues
    }
}
