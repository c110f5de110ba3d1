#if canImport(Glibc)
import Glibc
#endif
import GutsIdentity
import GutsPolicy
import GutsSupport

/// `<home>/known_peers` on disk (guts-known-peers(5)), for one-shot commands and the node.
/// Reads need no lock (writers replace the file atomically); every change is a
/// `StateFile.update` (exclusive lock on `known_peers.lock`, read, change, write to a
/// temporary file, fsync, rename), so concurrent commands take turns and lose nothing.
public enum KnownPeersFile {
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    public static func path(home: String) -> String { home + "/" + KnownPeers.fileName }

    /// The file's contents; empty when there is no file.
    public static func load(_ path: String) throws(Failure) -> KnownPeers {
        guard Files.exists(path) else { return KnownPeers() }
        do {
            return try parse(try Files.read(path, limit: KnownPeers.maxFileBytes), path: path)
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure("cannot read \(path): \(error)")
        }
    }

    static func parse(_ bytes: [UInt8], path: String) throws(Failure) -> KnownPeers {
        do {
            return try KnownPeers.parse(bytes)
        } catch let e as KnownPeersParseError {
            throw Failure(e.line > 0 ? "\(path):\(e.line): \(e.reason)" : "\(path): \(e.reason)")
        } catch {
            throw Failure("\(path): \(error)")
        }
    }

    /// Records `peer` at `address` (first use). Returns what the file said: `.added`, or the
    /// entry found there (the same peer, or a conflicting one written meanwhile).
    public static func record(_ path: String, address: String, peer: PeerID, now: Int64) throws(Failure) -> KnownPeers.AddOutcome {
        var outcome = KnownPeers.AddOutcome.full
        do {
            try StateFile.update(path, mode: 0o644, limit: KnownPeers.maxFileBytes) { old in
                var known = try old.map { try parse($0, path: path) } ?? KnownPeers()
                outcome = known.add(address: address, peer: peer, firstSeen: now)
                guard outcome == .added else { return nil }
                return Array(known.serialize().utf8)
            }
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure("cannot update \(path): \(error)")
        }
        return outcome
    }

    /// Removes the entries of `addresses` (or of the peer IDs among them); returns the
    /// entries removed.
    public static func forget(_ path: String, _ targets: [String]) throws(Failure) -> [KnownPeers.Entry] {
        guard Files.exists(path) else { return [] }
        var removed: [KnownPeers.Entry] = []
        do {
            try StateFile.update(path, mode: 0o644, limit: KnownPeers.maxFileBytes) { old in
                guard let old else { return nil }
                var known = try parse(old, path: path)
                for t in targets {
                    if let id = PeerID(t) {
                        removed += known.remove(peer: id)
                    } else if let e = known.remove(t) {
                        removed.append(e)
                    }
                }
                return removed.isEmpty ? nil : Array(known.serialize().utf8)
            }
        } catch let f as Failure {
            throw f
        } catch {
            throw Failure("cannot update \(path): \(error)")
        }
        return removed
    }

    /// The Unix time now, in whole seconds.
    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }
}
