// Helpers shared by the git harnesses.
#if canImport(Glibc)
import Glibc
#endif
import GutsGit
import GutsSupport

/// Tight limits, so a hostile declared size is refused quickly and runs stay fast.
let fuzzGitLimits = ObjectLimits(maxObjectSize: 1 << 20, maxDeltaDepth: 64, maxPackObjects: 10_000,
                                 maxTreeEntries: 10_000, maxRefFileSize: 1 << 20, deltaBaseBudget: 4 << 20)

/// Objects a thin pack may name as REF_DELTA bases (handed to the indexer as the
/// repository it completes packs from). Fuzz/Corpus/pack-indexer/thin-* are thin packs
/// made by git against exactly these objects.
struct FuzzBaseStore: ObjectStore {
    let objects: [ObjectID: GitObject]

    func contains(_ id: ObjectID) -> Bool { objects[id] != nil }
    func read(_ id: ObjectID) throws -> GitObject? { objects[id] }
}

/// The thin-pack bases: the blob, tree and commit of the first commit made by
/// Fuzz/make-corpus.sh (`file.txt` with lines "line 1" to "line 40").
let fuzzThinBases: FuzzBaseStore = {
    let blob = GitObject(type: .blob, body: Array((1...40).map { "line \($0)\n" }.joined().utf8))
    let tree = GitObject(type: .tree, body: Array("100644 file.txt".utf8) + [0] + blob.id.bytes)
    let commit = GitObject(type: .commit, body: Array("""
        tree \(tree.id.hex)
        author Fuzz <fuzz@example.com> 1700000000 +0000
        committer Fuzz <fuzz@example.com> 1700000000 +0000

        base

        """.utf8))
    return FuzzBaseStore(objects: [blob.id: blob, tree.id: tree, commit.id: commit])
}()

/// A directory under the scratch directory, created empty.
func fuzzFreshDirectory(_ name: String) -> String {
    let dir = fuzzScratch + "/" + name
    Files.removeTree(dir)
    do { try Files.makeDirectories(dir) } catch { fuzzFail("cannot create \(dir): \(error)") }
    return dir
}
