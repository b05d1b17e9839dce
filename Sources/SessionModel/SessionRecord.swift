/// A session as a durable host stores it: the seed's Durable Object state.
///
/// Wire form: `{"id", "messages": [...], "metadata": {...}, "created_at", "last_updated"}`,
/// times in seconds since the epoch, fractional.
public struct SessionRecord: Codable, Sendable, Hashable {
    public var id: String
    public var messages: [Message]
    public var metadata: JSONObject
    public var createdAt: Double
    public var lastUpdated: Double

    public init(id: String, messages: [Message] = [], metadata: JSONObject = [:], createdAt: Double, lastUpdated: Double) {
        self.id = id
        self.messages = messages
        self.metadata = metadata
        self.createdAt = createdAt
        self.lastUpdated = lastUpdated
    }

    enum CodingKeys: String, CodingKey {
        case id, messages, metadata
        case createdAt = "created_at"
        case lastUpdated = "last_updated"
    }

    /// Bytes of message content held: what the per-session size limit counts.
    public var contentBytes: Int {
        messages.reduce(0) { $0 + $1.content.utf8.count }
    }
}
