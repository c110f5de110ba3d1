// swift-tools-version:6.0
// guts: a peer-to-peer layer for decentralized code collaboration.
//
// Module arrows point down only:
//   GutsCrypto -> GutsNoise -> GutsWire -> GutsTransport -> GutsSync -> GutsNode -> GutsCLI
//   GutsQUIC (QUIC links beside TCP's) sits on GutsTransport; GutsNode and GutsCLI dial through it.
//   (GutsSync also uses GutsGit and GutsTrust; GutsTrust = identities and signed refs over GutsGit)
//   GutsControl (the control socket) needs only GutsSupport; GutsNode implements it, GutsCLI calls it.
//   GutsGit (git objects and storage) stands apart from networking.
//   GutsDHT (the Kademlia engine, pure) uses GutsPolicy and GutsWire; a node shell drives it.
import PackageDescription

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioLocks = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")

let package = Package(
    name: "guts",
    products: [
        .executable(name: "guts", targets: ["guts"]),
        .executable(name: "guts-bench", targets: ["guts-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        // System libraries: libsodium for all cryptography, zlib for git objects.
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CMalloc"),
        // The SHA-1 compression function on the x86-64 SHA instructions, header-only C
        // (Swift cannot emit them); GutsGit falls back to its Swift one elsewhere.
        .systemLibrary(name: "CSHA1"),
        // QUIC: ngtcp2 with its GnuTLS crypto backend (TLS 1.3 inside QUIC only).
        .systemLibrary(name: "CNgtcp2", pkgConfig: "libngtcp2_crypto_gnutls",
                       providers: [.apt(["libngtcp2-dev", "libngtcp2-crypto-gnutls-dev", "libgnutls28-dev"])]),

        // Small shared helpers with no I/O policy: hex, base32, atomic files, clocks.
        .target(name: "GutsSupport", dependencies: ["CMalloc"]),
        // libsodium wrappers: X25519, Ed25519, ChaCha20-Poly1305 IETF, BLAKE2b, randomness.
        .target(name: "GutsCrypto", dependencies: ["CSodium"]),
        // Noise_XX_25519_ChaChaPoly_BLAKE2b as a pure state machine.
        .target(name: "GutsNoise", dependencies: ["GutsCrypto"]),
        // Node identity: Ed25519 keys, peer IDs, key files.
        .target(name: "GutsIdentity", dependencies: ["GutsCrypto", "GutsSupport"]),
        // Where peers are: endpoints and address parsing, below the transport so pure cores can name addresses.
        .target(name: "GutsAddress", dependencies: ["GutsIdentity"]),
        // Node defences as pure values: rate limits, address groups, peer scores and bans, the peer
        // book's text format, inbound eviction and handshake admission. No I/O, no clocks.
        .target(name: "GutsPolicy", dependencies: ["GutsSupport", "GutsIdentity", "GutsAddress"]),
        // Bytes on the wire: identity proof, framing, message codec, session state machine.
        .target(name: "GutsWire", dependencies: ["GutsNoise", "GutsIdentity", "GutsSupport"]),
        // SwiftNIO shell around GutsWire sessions: dialing, listening, timeouts.
        .target(name: "GutsTransport", dependencies: ["GutsAddress", "GutsPolicy", "GutsWire", "GutsIdentity", "GutsSupport", nioCore, nioPosix, nioLocks]),
        // QUIC transport: certificates binding TLS keys to peer IDs, a sans-I/O connection
        // engine around ngtcp2, and the NIO shell that makes QUIC connections PeerLinks.
        // A lossy, reordering, rate-limited UDP relay: a network simulator for the tests and guts-bench.
        .target(name: "GutsNetSim"),
        .target(name: "GutsQUIC", dependencies: ["CNgtcp2", "GutsAddress", "GutsPolicy", "GutsTransport", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport", nioCore, nioPosix, nioLocks]),
        // Gossip: signed messages, seen-cache, eager/lazy push. A pure state machine.
        .target(name: "GutsGossip", dependencies: ["GutsPolicy", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        // The Kademlia DHT as a pure state machine: node IDs, routing table, lookups, signed
        // provider and peer records, its messages (0x40-0x4F), and a deterministic simulator.
        .target(name: "GutsDHT", dependencies: ["GutsPolicy", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        // Repository identity and signed refs: identity documents, their threshold-signed
        // chain, each delegate's signed refs, canonical refs. Stored as git objects.
        .target(name: "GutsTrust", dependencies: ["GutsGit", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        // Repository sync: names and access, negotiation plan, serving, fetching into quarantine.
        .target(name: "GutsSync", dependencies: ["GutsGit", "GutsPolicy", "GutsTrust", "GutsWire", "GutsTransport", "GutsIdentity", "GutsSupport", nioCore, nioPosix, nioLocks]),
        // The control socket: newline-delimited JSON over a Unix socket in the state directory;
        // server (NIO), blocking client, and the protocol a node implements to be controlled.
        .target(name: "GutsControl", dependencies: ["GutsSupport", nioCore, nioPosix, nioLocks]),
        // The long-running node: listener, bootstrap peers, request dispatch.
        .target(name: "GutsNode", dependencies: [
            "GutsAddress", "GutsControl", "GutsTransport", "GutsQUIC", "GutsSync", "GutsGossip", "GutsDHT", "GutsGit", "GutsTrust", "GutsWire", "GutsIdentity", "GutsCrypto", "GutsSupport",
            nioCore, nioPosix, nioLocks,
        ]),
        // Git objects, packs, refs and reachability. No networking.
        .target(name: "GutsGit", dependencies: ["CSHA1", "CZlib", "GutsSupport"]),
        // Argument parsing and the subcommands.
        .target(name: "GutsCLI", dependencies: [
            "GutsAddress", "GutsSupport", "GutsControl", "GutsCrypto", "GutsIdentity", "GutsWire", "GutsTransport", "GutsQUIC", "GutsNode", "GutsSync", "GutsDHT",
            "GutsGossip", "GutsGit", "GutsTrust", nioCore, nioPosix,
        ]),
        .executableTarget(name: "guts", dependencies: ["GutsCLI", "GutsSupport"]),
        .executableTarget(name: "guts-bench", dependencies: [
            "GutsAddress", "GutsNetSim", "GutsQUIC", "GutsSupport", "GutsCrypto", "GutsNoise", "GutsIdentity", "GutsWire", "GutsTransport", "GutsGit", "GutsSync", "GutsGossip", "GutsDHT", "GutsNode", nioCore, nioPosix, nioLocks,
        ]),

        .testTarget(name: "GutsSupportTests", dependencies: ["GutsSupport"]),
        .testTarget(name: "GutsCryptoTests", dependencies: ["GutsCrypto", "GutsNoise", "GutsSupport"], exclude: ["Vectors"]),
        .testTarget(name: "GutsWireTests", dependencies: ["GutsWire", "GutsIdentity", "GutsNoise", "GutsCrypto", "GutsSupport"]),
        .testTarget(name: "GutsQUICTests", dependencies: ["GutsQUIC", "GutsAddress", "GutsNetSim", "GutsPolicy", "GutsTransport", "GutsSync", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport", nioCore, nioPosix]),
        .testTarget(name: "GutsGossipTests", dependencies: ["GutsGossip", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        .testTarget(name: "GutsDHTTests", dependencies: ["GutsDHT", "GutsPolicy", "GutsWire", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        .testTarget(name: "GutsNodeTests", dependencies: [
            "GutsNode", "GutsTrust", "GutsWire", "GutsSync", "GutsGossip", "GutsGit", "GutsIdentity", "GutsCrypto", "GutsSupport", "GutsDHT", "GutsControl",
        ]),
        .testTarget(name: "GutsPolicyTests", dependencies: ["GutsPolicy", "GutsAddress", "GutsIdentity", "GutsSupport"]),
        .testTarget(name: "GutsSyncTests", dependencies: ["GutsSync", "GutsGit", "GutsWire", "GutsSupport"]),
        // Fixtures/ holds the public SHA-1 collisions (SHAttered PDFs, SHA-mbles), read by path.
        .testTarget(name: "GutsGitTests", dependencies: ["GutsGit", "GutsSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "GutsTrustTests", dependencies: ["GutsTrust", "GutsGit", "GutsCrypto", "GutsIdentity", "GutsSupport"]),
        .testTarget(name: "GutsControlTests", dependencies: ["GutsControl", "GutsSupport"]),
        .testTarget(name: "GutsCLITests", dependencies: ["GutsCLI", "GutsSupport", "GutsIdentity"]),
        // Replays the fuzz corpora and every input that ever crashed a fuzz target through the
        // harnesses Fuzz/build.sh compiles into libFuzzer binaries (README.md, Fuzzing).
        .testTarget(name: "FuzzRegressionTests", dependencies: [
            "GutsSupport", "GutsCrypto", "GutsNoise", "GutsIdentity", "GutsWire", "GutsGit", "GutsGossip", "GutsSync", "GutsNode",
            "GutsControl", "GutsCLI", "GutsTrust", "GutsDHT", "GutsQUIC",
        ], path: "Fuzz", exclude: ["Corpus", "Dictionaries", "Regressions", "build.sh", "run.sh", "make-corpus.sh"],
        sources: ["Support", "Targets", "Tests"]),
        .testTarget(name: "IntegrationTests", dependencies: [
            "GutsAddress", "GutsNetSim", "GutsQUIC", "GutsSupport", "GutsIdentity", "GutsWire", "GutsCrypto", "GutsTransport", "GutsGit", "GutsSync", "GutsGossip", "GutsNode", "GutsTrust", "GutsDHT",
            nioCore, nioPosix, nioLocks,
        ]),
    ],
    swiftLanguageModes: [.v6]
)
