/// The one Noise protocol guts speaks.
public enum NoiseProtocol {
    public static let name = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
    /// Largest Noise message on the wire (Noise spec section 3).
    public static let maxMessageLength = 65535
    /// AEAD tag length of ChaCha20-Poly1305.
    public static let tagLength = 16
    /// DH public key length of Curve25519.
    public static let dhLength = 32
    /// Hash output length of BLAKE2b.
    public static let hashLength = 64
}
