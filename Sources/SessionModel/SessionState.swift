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
        /// `messages` appended, the first at index `firstIndex` of the history, and the
        /// metadata merged when the operation carried some.
        case appended([Message], firstIndex: Int, metadataChanged: Bool = false)
        /// Every message replaced (and, for a record put in whole, the metadata and times).
        case replacedMessages
        case replacedMetadata
        case cleared
        /// The operation asked for what is already there: nothing to store.
        case unchanged
    }

    /// Whether the session has gone unwritten past its lifetime (`retention` for one that sets
    /// none): it then answers as one that never existed, and a sweep deletes it.
    public func isExpired(now: Double, retention: Double) -> Bool {
        guard exists, let expiresAt = record.expiresAt(retention: retention) else { return false }
        return expiresAt <= now
    }

    /// Applies an update at time `now` within `limits`, or throws and changes nothing: the
    /// operation, then the principal and lifetime it sets.
    public mutating func apply(_ update: SessionUpdate, now: Double, limits: SessionLimits) throws(APIError) -> Change {
        let principal = update.principal ?? { if case .putRecord(let record) = update.operation { return record.principal } else { return nil } }()
        if let principal, exists, let owner = record.principal, owner != principal {
            throw APIError(.invalidField, "principal: session '\(record.id)' belongs to another principal")
        }
        try check(conditionsOf: update)
        let change = try apply(update.operation, now: now, limits: limits)
        guard exists, change != .unchanged else { return change }
        if let principal { record.principal = principal }
        if let lifetime = update.expiresAfter { record.expiresAfter = lifetime }
        return change
    }

    /// What a write requires of the session as it is now: that it exists, that its metadata holds
    /// what the write expects, and for a write through a share, that the owner's record still
    /// grants `continue` and the write appends.
    private func check(conditionsOf update: SessionUpdate) throws(APIError) {
        if update.mustExist || update.continuedBy != nil, !exists {
            throw APIError(.sessionNotFound, "session '\(record.id)' does not exist (it ended, expired or was deleted); nothing was written")
        }
        for (key, expected) in (update.expect ?? [:]).sorted(by: { $0.key < $1.key }) where (exists ? record.metadata[key] : nil) ?? .null != expected {
            throw APIError(.preconditionFailed, "session '\(record.id)' does not hold the expected '\(key.prefix(64))'; nothing was written")
        }
        if let count = update.expectMessages, count != (exists ? record.messages.count : 0) {
            throw APIError(
                .historyChanged,
                "session '\(record.id)' holds \(exists ? record.messages.count : 0) messages, not the \(count) expected: its history changed; nothing was written"
            )
        }
        guard let sharer = update.continuedBy else { return }
        // The owner's record is the authority at the moment of the write, not at the turn's start.
        guard record.metadata["share:\(sharer)"]?.stringValue == "continue" else {
            throw APIError(.notShared, "session '\(record.id)' is not shared with '\(sharer)' to continue; nothing was written")
        }
        switch update.operation {
        case .appendMessage, .appendMessages: break
        default: throw APIError(.notShared, "a principal continuing a shared session may only append to it, not \(update.operation.name)")
        }
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

        case .appendMessages(let inputs, nil):
            return try append(inputs, now: now, limits: limits, paths: { "messages[\($0)].content" })

        case .appendMessages(let inputs, let patch?):
            let merged = try Self.merge(patch, into: record.metadata, limits: limits)
            guard case .appended(let messages, let index, _) = try append(inputs, now: now, limits: limits, paths: { "messages[\($0)].content" })
            else { return .unchanged }
            record.metadata = merged
            return .appended(messages, firstIndex: index, metadataChanged: true)

        case .addCounters(let counters):
            return try add(counters, now: now, limits: limits)

        case .putRecord(let given):
            return try put(given, limits: limits)

        case .setHistory(let inputs, let patch):
            return try replace(with: inputs, metadata: patch, now: now, limits: limits)

        case .updateMetadata(let patch):
            let merged = try Self.merge(patch, into: record.metadata, limits: limits)
            touch(now)
            record.metadata = merged
            return .replacedMetadata

        case .clear:
            self = SessionState(absent: record.id)
            return .cleared
        }
    }

    /// Adds each number to its metadata key (absent counts as 0), or none.
    private mutating func add(_ counters: [String: Double], now: Double, limits: SessionLimits) throws(APIError) -> Change {
        var patch: JSONObject = [:]
        for (key, amount) in counters {
            let current: Double
            switch record.metadata[key] {
            case nil: current = 0
            case let value?:
                guard let number = value.numberValue else {
                    throw APIError(.invalidField, "counters.\(key.prefix(64)): metadata key '\(key.prefix(64))' holds something other than a number")
                }
                current = number
            }
            patch[key] = .double(current + amount)
        }
        let merged = try Self.merge(patch, into: record.metadata, limits: limits)
        touch(now)
        record.metadata = merged
        return .replacedMetadata
    }

    /// A whole record from elsewhere: created as given, nothing when it is already here, refused when another is.
    private mutating func put(_ given: SessionRecord, limits: SessionLimits) throws(APIError) -> Change {
        var given = given
        given.id = record.id
        if exists {
            let same =
                given.messages == record.messages && given.metadata == record.metadata && given.createdAt == record.createdAt
                && given.lastUpdated == record.lastUpdated && given.expiresAfter == record.expiresAfter
            guard same else {
                throw APIError(.sessionExists, "session '\(record.id)' exists and differs from the record given; nothing was changed")
            }
            return .unchanged
        }
        self = try Self.validated(given, limits: limits)
        return .replacedMessages
    }

    /// Replaces every message (and merges `patch`), all or nothing.
    private mutating func replace(
        with inputs: [MessageInput], metadata patch: JSONObject?, now: Double, limits: SessionLimits
    ) throws(APIError) -> Change {
        let merged = try patch.map { patch throws(APIError) in try Self.merge(patch, into: record.metadata, limits: limits) }
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
        if let merged { record.metadata = merged }
        return .replacedMessages
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

    /// `patch` merged into `metadata` key by key (null removes a key), within the size limit.
    private static func merge(_ patch: JSONObject, into metadata: JSONObject, limits: SessionLimits) throws(APIError) -> JSONObject {
        var merged = metadata
        for (key, value) in patch {
            if value == .null { merged.removeValue(forKey: key) } else { merged[key] = value }
        }
        let size = merged.encodedJSON().count
        guard size <= limits.maxMetadataBytes else {
            throw APIError(.limitExceeded, "metadata would be \(size) bytes; the limit is \(limits.maxMetadataBytes)")
        }
        return merged
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
