import GutsGit
import GutsSupport

/// The pack indexer (`git index-pack` for packs from peers): entry headers, zlib streams,
/// OFS and REF deltas in any order, thin-pack completion, fsck of every object, the index
/// it writes; then the pack reader over what it wrote.
///
/// Input: flags (bit 0: keep the input's own trailer instead of appending the right SHA-1,
/// so most inputs get past the checksum; bit 1: offer the thin-pack bases), then the pack.
///
/// Properties: a pack the indexer accepts is read back whole by the pack reader, every
/// object with the type and name the indexer reported; bases are appended only when
/// offered; a refused pack leaves no file behind.
func fuzzPackIndexer(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    var pack = input.rest()
    if flags & 1 == 0 { pack += SHA1.hash(pack) }
    let dir = fuzzFreshDirectory("indexer")
    let out = dir + "/out"
    fuzzWriteFile(dir + "/incoming.pack", pack)
    let result: PackIndexer.Result
    do {
        result = try PackIndexer.index(packPath: dir + "/incoming.pack", outputDirectory: out,
                                       baseStore: flags & 2 != 0 ? fuzzThinBases : nil, limits: fuzzGitLimits, threads: 1)
    } catch {
        fuzzCheck(Files.list(out).isEmpty, "a refused pack left \(Files.list(out)) behind (\(error))")
        return
    }
    fuzzCheck(flags & 2 != 0 || result.appendedBases == 0, "bases appended that no one offered")
    let reader: PackReader
    do {
        reader = try PackReader(packPath: result.packPath, indexPath: result.indexPath, limits: fuzzGitLimits)
    } catch {
        fuzzFail("cannot open the pack the indexer accepted: \(error)")
    }
    fuzzCheck(reader.count == result.objects.count, "index lists \(reader.count) objects, indexer reported \(result.objects.count)")
    for (id, type) in result.objects {
        do {
            guard let object = try reader.read(id) else { fuzzFail("object \(id) missing from the indexed pack") }
            fuzzCheck(object.type == type, "object \(id) is a \(object.type), indexer said \(type)")
        } catch {
            fuzzFail("object \(id) of an accepted pack cannot be read: \(error)")
        }
    }
}
