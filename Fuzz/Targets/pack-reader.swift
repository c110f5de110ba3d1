import GutsGit
import GutsSupport

/// A repository for the pack reader and verifier, made once per process.
let fuzzReaderRepository: String = {
    let path = fuzzScratch + "/reader.git"
    do { try Repository.create(bare: path) } catch { fuzzFail("cannot create \(path): \(error)") }
    return path
}()

/// A pack and its index as found on disk (both hostile): the pack reader (index
/// structure, fan-out, 64-bit offsets, delta chains and cycles through the index) and
/// the verifier (`objects verify`: trailers, index order, CRCs, every object's fsck).
///
/// Input: flags (bit 0: append the right pack trailer; bit 1: rewrite the index's two
/// trailing checksums to match; bit 2: run the verifier, with connectivity when bit 3),
/// the index length (u16) and index, then the pack.
///
/// Properties: nothing traps; an object the reader returns hashes to its name.
func fuzzPackReader(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    var index = input.chunk()
    var pack = input.rest()
    if flags & 1 != 0 { pack += SHA1.hash(pack) }
    if flags & 2 != 0, index.count >= 40, pack.count >= 20 {
        index.replaceSubrange((index.count - 40)..<(index.count - 20), with: pack.suffix(20))
        index.replaceSubrange((index.count - 20)..., with: SHA1.hash(Array(index.dropLast(20))))
    }
    let packDir = fuzzReaderRepository + "/objects/pack"
    fuzzEmptyDirectory(packDir)
    fuzzWriteFile(packDir + "/pack-fuzz.pack", pack)
    fuzzWriteFile(packDir + "/pack-fuzz.idx", index)
    if flags & 4 != 0 {
        guard let repository = try? Repository.open(fuzzReaderRepository, limits: fuzzGitLimits) else { fuzzFail("open repository") }
        let verifier = Verifier(repository: repository, options: VerifyOptions(threads: 1, connectivity: flags & 8 != 0,
                                                                                limits: fuzzGitLimits))
        _ = verifier.run { _ in }
        return
    }
    guard let reader = try? PackReader(packPath: packDir + "/pack-fuzz.pack", indexPath: packDir + "/pack-fuzz.idx",
                                       limits: fuzzGitLimits) else { return }
    _ = reader.checksum
    for i in 0..<min(reader.count, 64) {
        let id = reader.id(at: i)
        _ = reader.contains(id)
        _ = reader.offset(of: id)
        if let object = try? reader.read(id) {
            fuzzCheck(object.id == id, "read \(id) but got \(object.id)")
        }
    }
}
