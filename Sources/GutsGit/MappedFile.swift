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

    // MARK: Resident pages

    /// Pages of the file that were read through the mapping count towards the process's
    /// resident memory until unmapped: a pass over a large pack would otherwise keep all
    /// of it resident. Readers report the bytes they touch (`touched`); every
    /// `releaseInterval` bytes the whole mapping's pages are released (MADV_DONTNEED),
    /// so at most about that much of the file stays resident. The mapping is private,
    /// read-only and never written, so a released page is simply read again (from the
    /// page cache) on its next use: contents never change, for any thread.
    private let residency = Mutex()
    private var touchedSinceRelease = 0
    /// Times the pages were released (for tests).
    private(set) var releases = 0
    /// Bytes touched between releases (nil: never released).
    var releaseInterval: Int? = nil

    /// Default for large files read once or at random: 2 MiB.
    static let defaultReleaseInterval = 2 << 20

    /// Notes that `bytes` of the mapping were read; releases resident pages when
    /// `releaseInterval` is reached. Counted in whole pages, plus two for the pages a
    /// read starts and ends in (a small read at random still makes a page resident, and
    /// the entry header before it may be on the previous one). Safe from any thread.
    func touched(_ bytes: Int) {
        guard let interval = releaseInterval else { return }
        let pages = (bytes >> 12) + 2
        let release = residency.locked { () -> Bool in
            touchedSinceRelease += pages << 12
            guard touchedSinceRelease >= interval else { return false }
            touchedSinceRelease = 0
            releases += 1
            return true
        }
        if release { releaseResidentPages() }
    }

    /// Releases every resident page of the mapping now (they are read again on use).
    func releaseResidentPages() {
        if let base { _ = madvise(base, count, MADV_DONTNEED) }
    }
}
