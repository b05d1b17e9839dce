/// A session as a durable host stores it: the seed's Durable Object state.
///
/// Wire form: `{"id", "messages": [...], "metadata": {...}, "created_at", "last_updated"}`,
/// times in seconds since the epoch, fractional, and when set `"principal"` (who the session
/// belongs to) and `"expires_after"` (seconds without a write after which it is deleted; 0
/// keeps it for ever; absent: the host's `retention`).
public struct SessionRecord: Codable, Sendable, Hashable {
    public var id: String
    public var messages: [Message]
    public var metadata: JSONObject
    public var createdAt: Double
    public var lastUpdated: Double
    public var principal: String?
    public var expiresAfter: Double?

    public init(
        id: String, messages: [Message] = [], metadata: JSONObject = [:], createdAt: Double, lastUpdated: Double,
        principal: String? = nil, expiresAfter: Double? = nil
    ) {
        self.id = id
        self.messages = messages
        self.metadata = metadata
        self.createdAt = createdAt
        self.lastUpdated = lastUpdated
        self.principal = principal
        self.expiresAfter = expiresAfter
    }

    enum CodingKeys: String, CodingKey {
        case id, messages, metadata, principal
        case createdAt = "created_at"
        case lastUpdated = "last_updated"
        case expiresAfter = "expires_after"
    }

    /// When the session expires, with `retention` for a session that sets no lifetime of its
    /// own; nil: never.
    public func expiresAt(retention: Double) -> Double? {
        let lifetime = expiresAfter ?? retention
        return lifetime > 0 ? lastUpdated + lifetime : nil
    }

    /// Bytes of message content held: what the per-session size limit counts.
    public var contentBytes: Int {
        messages.reduce(0) { $0 + $1.content.utf8.count }
    }
}
