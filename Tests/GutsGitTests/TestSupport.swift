import Foundation
import XCTest
@testable import GutsGit

/// Output of a child process.
struct ProcessResult {
    var status: Int32
    var stdout: Data
    var stderr: String
    var text: String { String(decoding: stdout, as: UTF8.self) }
}

/// Runs `executable` with `arguments`; feeds `input` on stdin.
@discardableResult
func runProcess(_ executable: String, _ arguments: [String], cwd: String? = nil, input: Data? = nil,
                environment extra: [String: String] = [:]) throws -> ProcessResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    var env = ProcessInfo.processInfo.environment
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_AUTHOR_NAME"] = "A U Thor"
    env["GIT_AUTHOR_EMAIL"] = "author@example.com"
    env["GIT_COMMITTER_NAME"] = "C O Mitter"
    env["GIT_COMMITTER_EMAIL"] = "committer@example.com"
    env["GIT_AUTHOR_DATE"] = "1700000000 +0100"
    env["GIT_COMMITTER_DATE"] = "1700000000 +0100"
    for (k, v) in extra { env[k] = v }
    p.environment = env
    let out = Pipe()
    p.standardOutput = out
    let tmp = NSTemporaryDirectory() + "guts-proc-" + UUID().uuidString
    _ = FileManager.default.createFile(atPath: tmp + ".err", contents: nil)
    _ = FileManager.default.createFile(atPath: tmp + ".in", contents: input ?? Data())
    defer {
        try? FileManager.default.removeItem(atPath: tmp + ".err")
        try? FileManager.default.removeItem(atPath: tmp + ".in")
    }
    let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + ".err"))
    let inHandle = try FileHandle(forReadingFrom: URL(fileURLWithPath: tmp + ".in"))
    p.standardError = errHandle
    p.standardInput = inHandle
    try p.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    try? errHandle.close()
    try? inHandle.close()
    let errData = (try? Data(contentsOf: URL(fileURLWithPath: tmp + ".err"))) ?? Data()
    return ProcessResult(status: p.terminationStatus, stdout: outData, stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs git in `dir`, failing the test on a non-zero exit unless `check` is false.
@discardableResult
func git(_ args: [String], in dir: String, input: Data? = nil, check: Bool = true, date: Int? = nil,
         file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
    var env: [String: String] = ["HOME": dir]
    if let date {
        env["GIT_AUTHOR_DATE"] = "\(date) +0100"
        env["GIT_COMMITTER_DATE"] = "\(date) +0100"
    }
    let r = try runProcess("/usr/bin/git", ["-c", "init.defaultBranch=main", "-c", "gc.auto=0", "-c", "core.autocrlf=false"] + args,
                           cwd: dir, input: input, environment: env)
    if check && r.status != 0 {
        XCTFail("git \(args.joined(separator: " ")) failed (\(r.status)): \(r.stderr)", file: file, line: line)
    }
    return r
}

/// A temporary directory removed at the end of the test.
func makeTempDirectory(_ test: XCTestCase, _ name: String = "repo") throws -> String {
    let base = NSTemporaryDirectory() + "guts-git-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: base) }
    return base
}

func writeFile(_ path: String, _ text: String) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

func writeFile(_ path: String, bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func readBytes(_ path: String) throws -> [UInt8] {
    [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Builds a repository with history: `commits` commits editing a growing file (good
/// delta material), files with odd names, a merge, an annotated tag, an empty tree
/// commit. Returns the work tree path.
func makeHistoryRepository(_ test: XCTestCase, commits: Int = 30, in base: String? = nil) throws -> String {
    let root = try base ?? makeTempDirectory(test)
    let dir = root + "/work"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try git(["init", "-q", "."], in: dir)
    // A commit with the empty tree.
    try git(["commit", "-q", "--allow-empty", "-m", "empty tree"], in: dir, date: 1_600_000_000)
    var lines: [String] = []
    for i in 0..<commits {
        for k in 0..<40 { lines.append("line \(i) \(k) " + String(repeating: "abcdefgh", count: (i + k) % 7)) }
        try writeFile(dir + "/big.txt", lines.joined(separator: "\n") + "\n")
        try writeFile(dir + "/dir\(i % 4)/sub/file\(i % 3).txt", "content \(i)\n")
        if i == 1 {
            try writeFile(dir + "/with space.txt", "space\n")
            try writeFile(dir + "/ünïcødé-名前.txt", "unicode\n")
            try writeFile(dir + "/-leading-dash", "dash\n")
            try writeFile(dir + "/a-b", "x\n")
            try writeFile(dir + "/a/b", "y\n")
            try writeFile(dir + "/a.c", "z\n")
            try writeFile(dir + "/empty", "")
            let exe = dir + "/run.sh"
            try writeFile(exe, "#!/bin/sh\necho hi\n")
            chmod(exe, 0o755)
            symlink("big.txt", dir + "/link")
        }
        try git(["add", "-A"], in: dir)
        try git(["commit", "-q", "-m", "commit \(i)\n\nbody \(i)"], in: dir, date: 1_600_000_100 + i * 60)
    }
    // A side branch and a merge.
    try git(["checkout", "-q", "-b", "side", "HEAD~\(min(3, commits))"], in: dir)
    try writeFile(dir + "/side.txt", "side\n")
    try git(["add", "-A"], in: dir)
    try git(["commit", "-q", "-m", "side"], in: dir, date: 1_600_100_000)
    try git(["checkout", "-q", "main"], in: dir)
    try git(["merge", "-q", "--no-ff", "-m", "merge side", "side"], in: dir, date: 1_600_100_100)
    try git(["tag", "-a", "v1.0", "-m", "release 1.0"], in: dir, date: 1_600_100_200)
    try git(["tag", "light"], in: dir)
    return dir
}

/// Every object as `git cat-file --batch-all-objects --batch` sees it.
func catFileAll(_ gitDir: String) throws -> [ObjectID: GitObject] {
    let r = try runProcess("/usr/bin/git", ["--git-dir", gitDir, "cat-file", "--batch-all-objects", "--batch"])
    XCTAssertEqual(r.status, 0, r.stderr)
    let data = [UInt8](r.stdout)
    var out: [ObjectID: GitObject] = [:]
    var i = 0
    while i < data.count {
        guard let nl = data[i...].firstIndex(of: 0x0A) else { break }
        let header = String(decoding: data[i..<nl], as: UTF8.self).split(separator: " ")
        guard header.count == 3, let id = ObjectID(hex: header[0]), let type = ObjectType(name: header[1]), let size = Int(header[2]) else {
            XCTFail("bad cat-file header")
            break
        }
        let body = Array(data[(nl + 1)..<(nl + 1 + size)])
        out[id] = GitObject(type: type, body: body)
        i = nl + 1 + size + 1
    }
    return out
}

/// Runs the verifier and returns its problems and summary.
func verify(_ path: String, options: VerifyOptions = VerifyOptions()) throws -> ([Problem], VerifySummary) {
    let repo = try Repository.open(path, limits: options.limits)
    var problems: [Problem] = []
    let summary = Verifier(repository: repo, options: options).run { problems.append($0) }
    return (problems, summary)
}
