#if canImport(Glibc)
import Glibc
#endif
import GutsSupport

/// An OS call that failed, with errno.
public struct ControlSystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(_ operation: String, _ path: String, _ code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// Names a socket in a directory for bind(2) and connect(2), whatever the directory's
/// path length: when `<dir>/<name>` does not fit in `sun_path` (108 bytes), the address is
/// `/proc/self/fd/<fd>/<name>` through a descriptor held on the directory, so nothing
/// depends on the working directory (no chdir in a multi-threaded process).
final class SocketDirectory {
    let path: String
    /// Open on the directory (O_PATH) while the long form is needed; -1 otherwise.
    private(set) var fd: Int32 = -1

    /// sun_path holds 108 bytes including the terminating NUL.
    static let maxPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// O_PATH (Linux; Glibc's module does not export it): a handle on the directory that
    /// needs only search permission, not read.
    static let openPath: Int32 = 0o10000000

    init(path: String) {
        self.path = path
    }

    deinit { if fd >= 0 { close(fd) } }

    func display(_ name: String) -> String { path.hasSuffix("/") ? path + name : path + "/" + name }

    /// The address of `name` in the directory.
    func address(of name: String) throws(ControlSystemError) -> (sockaddr_un, socklen_t) {
        var target = display(name)
        if target.utf8.count > Self.maxPathLength {
            if fd < 0 {
                fd = open(path, Self.openPath | O_DIRECTORY | O_CLOEXEC)
                guard fd >= 0 else { throw ControlSystemError("open", path, errno) }
            }
            target = "/proc/self/fd/\(fd)/\(name)"
            guard target.utf8.count <= Self.maxPathLength else { throw ControlSystemError("name", target, ENAMETOOLONG) }
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(target.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (k, b) in bytes.enumerated() { raw[k] = b }
            raw[bytes.count] = 0
        }
        let length = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path).map { $0 + bytes.count + 1 }
            ?? MemoryLayout<sockaddr_un>.size
        return (addr, socklen_t(length))
    }

    /// lstat(2) of `name` (paths longer than sun_path are fine here); nil when it does not exist.
    func stat(_ name: String) throws(ControlSystemError) -> stat? {
        var st = Glibc.stat()
        if lstat(display(name), &st) == 0 { return st }
        if errno == ENOENT { return nil }
        throw ControlSystemError("stat", display(name), errno)
    }
}

/// The outcome of `connectUnix`.
enum ConnectResult {
    case connected(Int32)
    /// errno
    case failed(Int32)
}

/// `struct ucred` (Glibc's module exports it only with _GNU_SOURCE): what SO_PEERCRED
/// reports about the process at the other end of a Unix socket.
struct PeerCredentials {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}

/// A socket(2) call and connect(2) to `address`, blocking at most `timeout` seconds
/// (a listener whose backlog is full makes connect wait).
func connectUnix(_ address: (sockaddr_un, socklen_t), timeout: Double) -> ConnectResult {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return .failed(errno) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = address.0
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.1) }
    }
    if rc != 0 {
        let code = errno
        close(fd)
        return .failed(code == EINPROGRESS ? EAGAIN : code)
    }
    return .connected(fd)
}
