/// Budgets of one peer connection (guts-config(5), peer-*-rate and -burst): messages,
/// bytes and requests per second, each with its burst. Pure values; the node's link
/// guard enforces them with token buckets.
public struct LinkRates: Sendable, Equatable {
    public var messages = 1000.0
    public var messageBurst = 4000.0
    public var bytes = 16.0 * 1024 * 1024
    public var byteBurst = 64.0 * 1024 * 1024
    public var requests = 20.0
    public var requestBurst = 60.0
    public init() {}
}
