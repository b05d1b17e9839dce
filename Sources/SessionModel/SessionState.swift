/// A session's state and the pure transition of an operation on it.
///
/// `apply` validates completely before it changes anything: an operation either is applied
/// whole or throws and leaves the state as it was.
public struct SessionState: Sendable, Hashable {
    public private(set) var record: SessionRecord
    /// Whether the session exists: a session that was never written, or was cleared, does not.
    public private(set) var exists: Bool
    /// Sum of the content bytes of `record.messages`, kept so limits cost O(1) per append.
    public private(set) var contentBytes: Int

    /// A session that does not exist yet.
    public init(absent id: String) {
        record = SessionRecord(id: id, createdAt: 0, lastUpdated: 0)
        exists = false
        contentBytes = 0
    }

    /// A stored session.
    public init(stored record: SessionRecord) {
        self.record = record
        exists = true
        contentBytes = record.contentBytes
    }

    /// A whole record someone else sends (a seed, an import), checked against `limits` as
    /// if its messages and metadata had been written one by one.
    public static func validated(_ record: SessionRecord, limits: SessionLimits) throws(APIError) -> SessionState {
        var state = SessionState(absent: record.id)
        _ = try state.apply(
            .setHistory(record.messages.map { MessageInput(role: $0.role, content: $0.content, timestamp: $0.timestamp) }),
            now: record.lastUpdated, limits: limits)
        _ = try state.apply(.updateMetadata(record.metadata), now: record.lastUpdated, limits: limits)
        return SessionState(stored: record)
    }

    /// What an applied operation changed: what storage must persist.
    public enum Change: Sendable, Hashable {
        /// `messages` appended, the first at index `firstIndex` of the history.
        case appended([Message], firstIndex: Int)
        case replacedMessages
        case replacedMetadata
        case cleared
    }

    /// Applies an operation at time `now` within `limits`, or throws and changes nothing.
    public mutating func apply(
        _ operation: SessionOperation,
        now: Double,
        limits: SessionLimits
    ) throws(APIError) -> Change {
        switch operation {
        case .appendMessage(let input):
            return try append([input], now: now, limits: limits, paths: { _ in "message.content" })

        case .appendMessages(let inputs):
            return try append(inputs, now: now, limits: limits, paths: { "messages[\($0)].content" })

        case .setHistory(let inputs):
            guard inputs.count <= limits.maxMessagesPerSession else {
                throw APIError(.limitExceeded, "set_history has \(inputs.count) messages; the limit is \(limits.maxMessagesPerSession)")
            }
            var total = 0
            for (index, input) in inputs.enumerated() {
                try Self.check(content: input.content, at: "messages[\(index)].content", limits: limits)
                total += input.content.utf8.count
            }
            guard total <= limits.maxSessionBytes else {
                throw APIError(.limitExceeded, "set_history holds \(total) bytes of content; the limit is \(limits.maxSessionBytes)")
            }
            touch(now)
            record.messages = inputs.map { Message(role: $0.role, content: $0.content, timestamp: $0.timestamp ?? now) }
            contentBytes = total
            return .replacedMessages

        case .updateMetadata(let patch):
            var merged = record.metadata
            for (key, value) in patch {
                if value == .null { merged.removeValue(forKey: key) } else { merged[key] = value }
            }
            let size = merged.encodedJSON().count
            guard size <= limits.maxMetadataBytes else {
                throw APIError(.limitExceeded, "metadata would be \(size) bytes; the limit is \(limits.maxMetadataBytes)")
            }
            touch(now)
            record.metadata = merged
            return .replacedMetadata

        case .clear:
            self = SessionState(absent: record.id)
            return .cleared
        }
    }

    /// Appends every input or none.
    private mutating func append(
        _ inputs: [MessageInput], now: Double, limits: SessionLimits, paths: (Int) -> String
    ) throws(APIError) -> Change {
        var bytes = 0
        for (index, input) in inputs.enumerated() {
            try Self.check(content: input.content, at: paths(index), limits: limits)
            bytes += input.content.utf8.count
        }
        guard record.messages.count + inputs.count <= limits.maxMessagesPerSession else {
            throw APIError(
                .limitExceeded,
                "session holds \(record.messages.count) messages\(inputs.count > 1 ? " and \(inputs.count) more were sent" : ""); the limit is \(limits.maxMessagesPerSession)"
            )
        }
        guard contentBytes + bytes <= limits.maxSessionBytes else {
            throw APIError(.limitExceeded, "session would hold \(contentBytes + bytes) bytes of content; the limit is \(limits.maxSessionBytes)")
        }
        let messages = inputs.map { Message(role: $0.role, content: $0.content, timestamp: $0.timestamp ?? now) }
        touch(now)
        let firstIndex = record.messages.count
        record.messages.append(contentsOf: messages)
        contentBytes += bytes
        return .appended(messages, firstIndex: firstIndex)
    }

    private mutating func touch(_ now: Double) {
        if !exists {
            exists = true
            record.createdAt = now
        }
        // Never let last_updated run backwards if the wall clock does.
        record.lastUpdated = max(now, record.lastUpdated)
    }

    private static func check(content: String, at path: String, limits: SessionLimits) throws(APIError) {
        let bytes = content.utf8.count
        guard bytes <= limits.maxContentBytes else {
            throw APIError(.limitExceeded, "\(path) is \(bytes) bytes; the limit is \(limits.maxContentBytes)")
        }
    }
}
