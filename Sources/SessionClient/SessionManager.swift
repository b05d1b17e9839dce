import SessionModel

/// Where the worker keeps sessions: conversation history and metadata, and the state of MCP
/// transport sessions. The seed's session manager, in Swift.
public protocol SessionManager: Sendable {
    /// Appends one message.
    func appendMessage(_ sessionID: String, _ message: MessageInput) async throws(SessionError)
    /// Appends every message or, refused, none: one conversation turn is one write.
    func appendMessages(_ sessionID: String, _ messages: [MessageInput]) async throws(SessionError)
    /// The messages and metadata; empty for a session never written.
    func history(_ sessionID: String) async throws(SessionError) -> SessionHistory
    /// The whole record, or nil when the session does not exist.
    func record(_ sessionID: String) async throws(SessionError) -> SessionRecord?
    /// Replaces every message.
    func setHistory(_ sessionID: String, _ messages: [MessageInput]) async throws(SessionError)
    /// Merges metadata key by key; a key set to null is removed.
    func updateMetadata(_ sessionID: String, _ metadata: JSONObject) async throws(SessionError)
    /// Removes the session.
    func clear(_ sessionID: String) async throws(SessionError)
    /// How the store is doing, for `/health`.
    func health() async -> SessionStoreHealth
}

/// A session's messages and metadata.
public struct SessionHistory: Sendable, Hashable {
    public var messages: [Message]
    public var metadata: JSONObject

    public init(messages: [Message] = [], metadata: JSONObject = [:]) {
        self.messages = messages
        self.metadata = metadata
    }
}

/// What `/health` shows of the session store.
public struct SessionStoreHealth: Sendable, Hashable, Codable {
    /// "durable" or "in-memory".
    public var mode: String
    /// True while writes made in a fallback wait to reach their host, or shortly after a fallback.
    public var degraded: Bool
    public var fallbacks: Int
    public var pendingReplays: Int
    public var detail: String?

    public init(mode: String, degraded: Bool = false, fallbacks: Int = 0, pendingReplays: Int = 0, detail: String? = nil) {
        self.mode = mode
        self.degraded = degraded
        self.fallbacks = fallbacks
        self.pendingReplays = pendingReplays
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case mode, degraded, fallbacks, detail
        case pendingReplays = "pending_replays"
    }
}

/// Why a session operation failed.
public struct SessionError: Error, Sendable, CustomStringConvertible {
    private enum Kind: Sendable { case rejected, unavailable, cancelled }
    private let kind: Kind
    /// The host's error, for a refused operation.
    public let apiError: APIError?
    public let message: String

    /// The host refused the operation (bad input, a limit): retrying will not help.
    public static func rejected(_ error: APIError) -> SessionError {
        SessionError(kind: .rejected, apiError: error, message: error.message)
    }

    /// No host could be reached and there is no fallback.
    public static func unavailable(_ message: String) -> SessionError {
        SessionError(kind: .unavailable, apiError: nil, message: message)
    }

    /// The caller's task was cancelled before an answer came.
    public static let cancelled = SessionError(kind: .cancelled, apiError: nil, message: "the operation was cancelled")

    public var isRejected: Bool { kind == .rejected }
    public var isCancelled: Bool { kind == .cancelled }
    public var description: String { message }
}
