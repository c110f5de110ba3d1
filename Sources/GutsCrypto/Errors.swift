/// Failures of cryptographic operations. None of them carries secret material.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidKeyLength(expected: Int, got: Int)
    case authenticationFailed
    case invalidPublicKey
    case inputTooShort

    public var description: String {
        switch self {
        case let .invalidKeyLength(expected, got): return "invalid key length: expected \(expected) bytes, got \(got)"
        case .authenticationFailed: return "authentication failed (ciphertext or tag corrupted)"
        case .invalidPublicKey: return "invalid public key (low-order point)"
        case .inputTooShort: return "input shorter than the authentication tag"
        }
    }
}
