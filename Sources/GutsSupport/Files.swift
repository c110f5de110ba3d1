#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An error from a file-system call, carrying the path and errno text.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let operation: String
    public let code: Int32

    public init(path: String, operation: String, code: Int32) {
        self.path = path
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(code)))"
    }
}

/// Plain POSIX file helpers. Every write is atomic: temporary file in the same
/// directory, fsync, rename over the target, fsync of the directory.
public enum Files {
    /// Writes every byte of `bytes` to `fd`, retrying after EINTR and short writes.
    /// Returns 0, or the errno of the failed write.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
        guard let base = bytes.baseAddress else { return 0 }
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, base + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += n
        }
        return 0
    }

    /// `writeAll` for an array.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        bytes.withUnsafeBytes { writeAll(fd, $0) }
    }

    /// The system's text for an errno value ("Permission denied").
    public static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }

    /// Why the state directory at `path` cannot be used: not readable, writable and
    /// searchable by this user, not a directory, or owned by another user. nil when it
    /// is usable or does not exist (yet).
    public static func stateDirectoryProblem(_ path: String) -> String? {
        var st = stat()
        if stat(path, &st) != 0 {
            let code = errno
            return code == ENOENT ? nil : "cannot use state directory \(path): \(reason(code))"
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return "cannot use state directory \(path): \(reason(ENOTDIR))" }
        if st.st_uid != geteuid() {
            return "cannot use state directory \(path): it is owned by uid \(st.st_uid), not by this user (uid \(geteuid())); chown it, or use --home"
        }
        if access(path, R_OK | W_OK | X_OK) != 0 { return "cannot use state directory \(path): \(reason(errno))" }
        return nil
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// File mode bits (permission part), or nil when the file does not exist.
    public static func permissions(_ path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & 0o7777
    }

    /// Size of a regular file, or nil.
    public static func size(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// Creates `path` and missing parents with `mode`.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        if isDirectory(path) { return }
        var prefix = path.hasPrefix("/") ? "/" : ""
        for component in path.split(separator: "/") {
            prefix += component
            if !isDirectory(prefix) {
                if mkdir(prefix, mode) != 0 && errno != EEXIST {
                    throw FileError(path: prefix, operation: "mkdir", code: errno)
                }
            }
            prefix += "/"
        }
    }

    /// Reads a whole file, refusing files larger than `limit` bytes before allocating.
    public static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, operation: "open", code: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, operation: "stat", code: errno) }
        guard Int(st.st_size) <= limit else { throw FileError(path: path, operation: "read (file too large)", code: EFBIG) }
        var out = [UInt8]()
        out.reserveCapacity(Int(st.st_size))
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, operation: "read", code: errno)
            }
            if n == 0 { break }
            guard out.count + n <= limit else { throw FileError(path: path, operation: "read (file too large)", code: EFBIG) }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    public static func readString(_ path: String, limit: Int = 1 << 20) throws -> String {
        String(decoding: try read(path, limit: limit), as: UTF8.self)
    }

    /// Writes `bytes` to `path` atomically with permissions `mode`.
    /// A crash at any point leaves either the old file or the complete new one.
    public static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
        let dir = directoryName(path)
        var template = Array("\(dir)/.tmp-\(baseName(path))-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw FileError(path: path, operation: "create temporary file for", code: errno) }
        let tmpPath = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var ok = false
        defer {
            if !ok { unlink(tmpPath) }
        }
        do {
            defer { close(fd) }
            guard fchmod(fd, mode) == 0 else { throw FileError(path: tmpPath, operation: "chmod", code: errno) }
            let code = writeAll(fd, bytes)
            guard code == 0 else { throw FileError(path: tmpPath, operation: "write", code: code) }
            guard fsync(fd) == 0 else { throw FileError(path: tmpPath, operation: "fsync", code: errno) }
        }
        guard rename(tmpPath, path) == 0 else { throw FileError(path: path, operation: "rename", code: errno) }
        ok = true
        syncDirectory(dir)
    }

    public static func writeAtomically(_ path: String, string: String, mode: mode_t = 0o644) throws {
        try writeAtomically(path, Array(string.utf8), mode: mode)
    }

    /// fsyncs a directory so a rename inside it is durable. Best effort.
    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    public static func directoryName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    public static func baseName(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }

    /// Lists the names in a directory (without "." and ".."), or [] when it does not exist.
    public static func list(_ dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let entry = readdir(d) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String in
                let bytes = raw.prefix(while: { $0 != 0 })
                return String(decoding: bytes, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func remove(_ path: String) {
        unlink(path)
    }

    /// Removes a directory tree. Used for temporary areas only.
    public static func removeTree(_ path: String) {
        if isDirectory(path) {
            var st = stat()
            if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK {
                unlink(path)
                return
            }
            for name in list(path) { removeTree(path + "/" + name) }
            rmdir(path)
        } else {
            unlink(path)
        }
    }
}
