/// The limits a host enforces on what a session may hold. Every one is configuration.
public struct SessionLimits: Sendable, Hashable, Codable {
    /// Longest session id, in bytes.
    public var maxIdLength: Int
    /// Largest `content` of one message, in UTF-8 bytes.
    public var maxContentBytes: Int
    /// Most messages one session may hold.
    public var maxMessagesPerSession: Int
    /// Largest total of message content in one session, in bytes: bounds a live object's memory.
    public var maxSessionBytes: Int
    /// Largest metadata object, in bytes of its JSON encoding.
    public var maxMetadataBytes: Int
    /// Largest request body a host reads.
    public var maxBodyBytes: Int

    public init(
        maxIdLength: Int = 128,
        maxContentBytes: Int = 256 * 1024,
        maxMessagesPerSession: Int = 5_000,
        maxSessionBytes: Int = 32 * 1024 * 1024,
        maxMetadataBytes: Int = 64 * 1024,
        maxBodyBytes: Int = 16 * 1024 * 1024
    ) {
        self.maxIdLength = maxIdLength
        self.maxContentBytes = maxContentBytes
        self.maxMessagesPerSession = maxMessagesPerSession
        self.maxSessionBytes = maxSessionBytes
        self.maxMetadataBytes = maxMetadataBytes
        self.maxBodyBytes = maxBodyBytes
    }

    public static let `default` = SessionLimits()
}
