/// Who said a message.
public enum Role: String, Codable, Sendable, CaseIterable {
    case user
    case assistant
    case system
}

/// One turn of a conversation, as stored and as sent on the wire:
/// `{"role": "user", "content": "...", "timestamp": 1732480000.5}`.
public struct Message: Codable, Sendable, Hashable {
    public var role: Role
    public var content: String
    /// Seconds since the epoch, fractional.
    public var timestamp: Double

    public init(role: Role, content: String, timestamp: Double) {
        self.role = role
        self.content = content
        self.timestamp = timestamp
    }
}
