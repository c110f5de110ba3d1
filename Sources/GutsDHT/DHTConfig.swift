/// Tunables of the DHT engine. The defaults follow Kademlia and libp2p's kad-dht (k = 20,
/// alpha = 3) with S/Kademlia's disjoint paths; times are in seconds.
public struct DHTConfig: Sendable, Equatable {
    /// Bucket size and replication factor: contacts per k-bucket, contacts per answer,
    /// nodes a record is stored on, nodes that must answer before a lookup ends.
    public var k = 20
    /// Requests in flight per lookup path.
    public var alpha = 3
    /// Disjoint paths per lookup (1 = plain Kademlia). With d > 1 every contact is queried on
    /// one path only and each path learns only from the answers of its own nodes, so a lookup
    /// succeeds as long as one path avoids the adversary (S/Kademlia, section 4.4).
    public var disjointPaths = 1
    /// How long to wait for one answer before counting the request failed.
    public var requestTimeout = 5.0
    /// Candidates a lookup path keeps (the closest; farther ones are dropped).
    public var maxCandidatesPerPath = 60
    /// Distinct providers after which a FindProviders lookup ends early.
    public var providersWanted = 8

    // Routing table
    /// Contacts kept per bucket in the replacement cache (most recently verified first).
    public var replacementCacheSize = 10
    /// Contacts of one address group (IPv4 /24, IPv6 /56; loopback per address) per bucket.
    public var maxPerGroupPerBucket = 2
    /// Contacts of one address group in the whole table.
    public var maxPerGroupTotal = 10
    /// Consecutive failed requests after which a contact is replaced (when a replacement
    /// waits) or dropped.
    public var maxFailures = 3
    /// A bucket with no lookup and no new contact for this long gets a refresh lookup.
    public var refreshInterval = 15.0 * 60
    /// How long a ping of the least-recently-seen contact may take before it counts as dead.
    public var pingTimeout = 10.0

    // Records
    /// Lifetime written into this node's provider and peer records.
    public var recordTTL = 24.0 * 3600
    /// How often this node re-announces what it provides.
    public var republishInterval = 12.0 * 3600
    /// How often this node re-announces its peer record (also whenever its addresses change).
    public var peerRepublishInterval = 12.0 * 3600
    /// A node stores a record only if at most this many known contacts are closer to the key
    /// than itself (0 disables the check).
    public var storeRadius = 40
    public var maxStoredRecords = 50_000
    public var maxStoredBytes = 16 << 20
    public var maxRecordsPerPublisher = 256
    public var maxBytesPerPublisher = 256 << 10
    /// Providers kept per repository.
    public var maxProvidersPerKey = 64
    /// How often expired records are swept.
    public var expirySweepInterval = 60.0

    // Request accounting (every request a peer sends costs one token)
    /// Requests per second one peer may send, and its burst.
    public var peerRequestRate = 20.0
    public var peerRequestBurst = 60.0
    /// Requests per second one address group may send in total, and its burst.
    public var groupRequestRate = 60.0
    public var groupRequestBurst = 180.0
    /// Peers and groups tracked by the limiters (see GutsPolicy.KeyedLimiter).
    public var maxTrackedRequesters = 4096

    public init() {}
}
