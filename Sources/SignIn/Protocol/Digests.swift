import Crypto
import Foundation

/// The secrets of sign-in and how they are kept: made from 256 random bits, handed out once,
/// stored only as their SHA-256 (a leaked store gives no code, token or secret).
public enum Digests {
    /// A new secret: 256 bits from the system's secure generator, base64url without padding.
    public static func newSecret() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<4).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        return base64URL(bytes)
    }

    /// A new identifier: 128 random bits, base64url (22 characters of the id alphabet).
    public static func newID() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<2).flatMap { _ in withUnsafeBytes(of: generator.next() as UInt64) { Array($0) } }
        return base64URL(bytes)
    }

    /// What is stored of a secret: its SHA-256, 64 hex digits.
    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// A PKCE S256 challenge: base64url(SHA-256(verifier)).
    public static func challenge(of verifier: String) -> String {
        base64URL(Array(SHA256.hash(data: Data(verifier.utf8))))
    }

    /// Two secrets compared without telling how much of them matched.
    public static func same(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    public static func base64URL(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
