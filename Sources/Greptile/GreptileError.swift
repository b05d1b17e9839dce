/// Why a call to Greptile or GitHub failed, in words a person can act on.
public struct GreptileError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A credential is not configured.
        case missingCredentials
        /// A credential was refused (401/403).
        case unauthorized
        /// The repository is unknown, not indexed, or not visible to the token (404).
        case notFound
        /// The request was refused as malformed (other 4xx).
        case badRequest
        /// Throttled or failing (429/5xx) after every retry.
        case unavailable
        /// No answer at all (connection, timeout).
        case unreachable
        /// An answer that cannot be read.
        case invalidResponse
    }

    public let kind: Kind
    public let message: String
    /// The HTTP status, when there was one.
    public let status: Int?

    public init(_ kind: Kind, _ message: String, status: Int? = nil) {
        self.kind = kind
        self.message = message
        self.status = status
    }

    public var description: String { message }
}
