#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// A read-only memory map of a whole file. Packs and indexes are read through these so
/// that random access costs no copies; every offset taken from the file is checked
/// against `count` before use.
final class MappedFile: @unchecked Sendable {
    let path: String
    let count: Int
    private let base: UnsafeMutableRawPointer?

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GitError(.io, FileError(path: path, operation: "open", code: errno).description) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GitError(.io, FileError(path: path, operation: "stat", code: errno).description) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw GitError(.io, "\(path): not a regular file") }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw GitError(.io, FileError(path: path, operation: "mmap", code: errno).description)
        }
        base = p
    }

    deinit {
        if let base { munmap(base, count) }
    }

    /// The whole file. Valid for the lifetime of this object.
    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Hints the kernel to read ahead sequentially.
    func adviseSequential() {
        if let base { _ = madvise(base, count, MADV_SEQUENTIAL) }
    }
}
