@testable import GutsGit
import GutsSupport

/// The pack indexer (`git index-pack` for packs from peers): entry headers, zlib streams,
/// OFS and REF deltas in any order, thin-pack completion, fsck of every object, the index
/// it writes; then the pack reader over what it wrote.
///
/// Input: flags (bit 0: keep the input's own trailer instead of appending the right SHA-1,
/// so most inputs get past the checksum; bit 1: offer the thin-pack bases; bit 2: the rest
/// describes entries the harness assembles into a pack, see `fuzzAssemblePack`), then the
/// pack.
///
/// Properties: a pack the indexer accepts is read back whole by the pack reader, every
/// object with the type and name the indexer reported; bases are appended only when
/// offered; a refused pack leaves no file behind.
func fuzzPackIndexer(_ data: [UInt8]) {
    var input = FuzzReader(data)
    let flags = input.u8()
    var pack = flags & 4 != 0 ? fuzzAssemblePack(&input, lieAboutCount: flags & 8 != 0) : input.rest()
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
    fuzzCheck(reader.count == result.count, "index lists \(reader.count) objects, indexer reported \(result.count)")
    let objects: [(id: ObjectID, type: ObjectType)]
    do {
        objects = try result.objects
    } catch {
        fuzzFail("cannot read back the objects of an accepted pack: \(error)")
    }
    for (id, type) in objects {
        do {
            guard let object = try reader.read(id) else { fuzzFail("object \(id) missing from the indexed pack") }
            fuzzCheck(object.type == type, "object \(id) is a \(object.type), indexer said \(type)")
        } catch {
            fuzzFail("object \(id) of an accepted pack cannot be read: \(error)")
        }
    }
}

/// Builds a pack (without trailer) from entry descriptions, so inputs reach delta
/// resolution and the object checks with well-formed zlib streams and entry headers:
///
///     repeat: kind (bits 0-2: the entry type as written, 0-7; bit 3: declare a size off by
///             the next byte; bit 4: store the data as is instead of compressing it),
///             data (u16 length, bytes), then for type 6 the distance back to the base
///             entry (u8), for type 7 a selector (u8) among the names of the earlier
///             whole objects and the thin-pack bases.
func fuzzAssemblePack(_ input: inout FuzzReader, lieAboutCount: Bool) -> [UInt8] {
    var entries: [UInt8] = []
    var offsets: [Int] = []
    var names: [ObjectID] = fuzzThinBases.objects.keys.sorted()
    while input.remaining > 0 && offsets.count < 64 {
        let k = input.u8()
        let kind = k & 7
        let data = input.chunk()
        var size = data.count
        if k & 8 != 0 { size = max(0, size + Int(Int8(bitPattern: input.u8()))) }
        let offset = 12 + entries.count
        // Entry header: type and size, 4 bits then 7 bits per byte.
        var c = kind << 4 | UInt8(size & 15)
        var rest = size >> 4
        while rest > 0 {
            entries.append(c | 0x80)
            c = UInt8(rest & 0x7F)
            rest >>= 7
        }
        entries.append(c)
        if kind == 6 {
            let back = Int(input.u8())
            let base = offsets.isEmpty ? 12 : offsets[max(0, offsets.count - 1 - back)]
            // git's offset encoding: big-endian 7-bit groups, each but the last minus one.
            var rel = max(1, offset - base)
            var bytes = [UInt8(rel & 0x7F)]
            rel >>= 7
            while rel > 0 {
                rel -= 1
                bytes.insert(0x80 | UInt8(rel & 0x7F), at: 0)
                rel >>= 7
            }
            entries += bytes
        } else if kind == 7 {
            entries += names[Int(input.u8()) % names.count].bytes
        }
        if k & 16 != 0 {
            entries += data
        } else {
            guard let z = try? Zlib.deflate(data, level: 1) else { fuzzFail("deflate") }
            entries += z
        }
        if let type = ObjectType(rawValue: kind) { names.append(ObjectID.compute(type: type, body: data)) }
        offsets.append(offset)
    }
    let count = UInt32(offsets.count + (lieAboutCount ? 1 : 0))
    return Array("PACK".utf8) + [0, 0, 0, 2] + withUnsafeBytes(of: count.bigEndian) { Array($0) } + entries
}
