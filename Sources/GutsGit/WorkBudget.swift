import GutsSupport

/// The work one untrusted input (a pack from a peer, or one found on disk) may cost.
///
/// Resolving a pack inflates entries and applies deltas; how much that produces is up
/// to whoever wrote the pack: a few kilobytes of deltas can demand gigabytes of output
/// (long chains of large objects, rebuilt again and again; deltas that copy their
/// base many times over; zlib streams of zeros). The receiver therefore decides what
/// the input is worth from its size alone, the bytes that actually arrived and never
/// sizes the input declares:
///
///     budget = min(maxWork, workAllowance + workFactor × input bytes)
///
/// separately for inflated bytes and for bytes produced by delta application. Every
/// inflation and every delta application (rebuilds of dropped bases included) is
/// charged with its declared output size before anything is allocated, and the first
/// charge that does not fit fails, as does every charge after it, so all threads
/// stop at once. A deadline, when given, is checked with every charge.
///
/// Thread-safe: resolver threads share one budget.
public final class WorkBudget: @unchecked Sendable {
    /// Most bytes inflation may produce.
    public let inflateLimit: Int
    /// Most bytes delta application may produce.
    public let deltaLimit: Int
    /// When processing must have ended.
    public let deadline: Instant?
    /// Size of the input the budget was computed from (for messages).
    public let inputBytes: Int
    /// How the limits were set, for messages.
    private let rule: String
    private let lock = Mutex()
    private var inflatedTotal = 0
    private var deltaTotal = 0
    private var failure: GitError?

    /// The budget for an input of `inputBytes` under `limits`; `deadline` bounds the
    /// time it may take.
    public init(limits: ObjectLimits, inputBytes: Int, deadline: Instant? = nil) {
        let allowed = WorkBudget.allowance(limits: limits, inputBytes: inputBytes)
        inflateLimit = allowed
        deltaLimit = allowed
        self.deadline = deadline
        self.inputBytes = inputBytes
        rule = allowed >= limits.maxWork ? "the max-work cap" : "work factor \(limits.workFactor) and \(limits.workAllowance) bytes more"
    }

    /// No limit on work (a deadline may still apply).
    public init(unlimitedUntil deadline: Instant? = nil) {
        inflateLimit = Int.max
        deltaLimit = Int.max
        self.deadline = deadline
        inputBytes = 0
        rule = "no limit"
    }

    /// `min(maxWork, workAllowance + workFactor × inputBytes)`, without overflow;
    /// `Int.max` when `workFactor` is 0 (budget off).
    public static func allowance(limits: ObjectLimits, inputBytes: Int) -> Int {
        guard limits.workFactor > 0 else { return Int.max }
        let (scaled, overflow) = max(0, inputBytes).multipliedReportingOverflow(by: limits.workFactor)
        let (sum, overflow2) = scaled.addingReportingOverflow(max(0, limits.workAllowance))
        return overflow || overflow2 ? max(0, limits.maxWork) : min(max(0, limits.maxWork), sum)
    }

    /// Bytes inflated so far.
    public var inflated: Int { lock.locked { inflatedTotal } }
    /// Bytes produced by delta application so far.
    public var deltaProduced: Int { lock.locked { deltaTotal } }
    /// The error that ended the budget, once one charge failed.
    public var exceeded: GitError? { lock.locked { failure } }

    /// Charges `bytes` of inflated output, or throws when they do not fit.
    func chargeInflate(_ bytes: Int) throws {
        try charge(bytes, delta: false)
    }

    /// Charges `bytes` of delta output, or throws when they do not fit.
    func chargeDelta(_ bytes: Int) throws {
        try charge(bytes, delta: true)
    }

    /// Throws when the deadline has passed (or the budget already failed).
    public func check() throws {
        try charge(0, delta: false)
    }

    private func charge(_ bytes: Int, delta: Bool) throws {
        let now = deadline == nil ? nil : Instant.now()
        try lock.locked {
            if let failure { throw failure }
            if let deadline, let now, now > deadline {
                let e = GitError(.overBudget, "the deadline passed while checking the data", limit: .deadline)
                failure = e
                throw e
            }
            if delta {
                let (total, overflow) = deltaTotal.addingReportingOverflow(max(0, bytes))
                guard !overflow, total <= deltaLimit else {
                    let e = GitError(.overBudget, "applying its deltas would produce more than \(deltaLimit) bytes, "
                                     + "the limit for \(describeInput)", limit: .deltaBytes)
                    failure = e
                    throw e
                }
                deltaTotal = total
            } else {
                let (total, overflow) = inflatedTotal.addingReportingOverflow(max(0, bytes))
                guard !overflow, total <= inflateLimit else {
                    let e = GitError(.overBudget, "inflating it would produce more than \(inflateLimit) bytes, "
                                     + "the limit for \(describeInput)", limit: .inflatedBytes)
                    failure = e
                    throw e
                }
                inflatedTotal = total
            }
        }
    }

    private var describeInput: String {
        "\(inputBytes) bytes of pack (\(rule))"
    }
}
