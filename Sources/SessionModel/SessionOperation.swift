import Foundation

/// A message as a client sends it: the timestamp is optional and set by the host when absent.
public struct MessageInput: Codable, Sendable, Hashable {
    public var role: Role
    public var content: String
    public var timestamp: Double?

    public init(role: Role, content: String, timestamp: Double? = nil) {
        self.role = role
        self.content = content
        self.timestamp = timestamp
    }
}

/// The operations on one session: the seed's three, one atomic append of several messages,
/// counters, a whole record brought in from elsewhere, and clear.
///
/// Wire form (the body of `POST /sessions/{id}/update`):
/// ```json
/// {"operation": "append_message", "message": {"role": "user", "content": "hi"}}
/// {"operation": "append_messages", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
/// {"operation": "append_messages", "messages": [...], "metadata": {"title": "q"}}
/// {"operation": "set_history", "messages": [{"role": "user", "content": "hi"}]}
/// {"operation": "set_history", "messages": [...], "metadata": {"title": "hi"}}
/// {"operation": "update_metadata", "metadata": {"repo": "owner/name"}}
/// {"operation": "add_counters", "counters": {"calls": 1, "upstream_ms": 840}}
/// {"operation": "put_record", "record": {"messages": [...], "metadata": {...}, "created_at": ..., "last_updated": ...}}
/// ```
/// `clear` is `DELETE /sessions/{id}/clear`.
public enum SessionOperation: Sendable, Hashable {
    case appendMessage(MessageInput)
    /// Appends every message (and merges `metadata`, when given) or none: one conversation
    /// turn (a question, its answer, what the conversation is about) is one operation, so a
    /// refused answer never leaves its question behind.
    case appendMessages([MessageInput], metadata: JSONObject? = nil)
    /// Replaces every message (and merges `metadata`, when given), all or nothing.
    case setHistory([MessageInput], metadata: JSONObject? = nil)
    /// Merged into the stored metadata key by key; a key set to `null` is removed.
    case updateMetadata(JSONObject)
    /// Adds each number to the metadata key of that name (absent counts as 0).
    case addCounters([String: Double])
    /// A whole record from elsewhere (an import): created as given when the session does not
    /// exist, nothing when it holds exactly this record, refused (`session_exists`) otherwise.
    case putRecord(SessionRecord)
    case clear

    /// The name on the wire.
    public var name: String {
        switch self {
        case .appendMessage: "append_message"
        case .appendMessages: "append_messages"
        case .setHistory: "set_history"
        case .updateMetadata: "update_metadata"
        case .addCounters: "add_counters"
        case .putRecord: "put_record"
        case .clear: "clear"
        }
    }

    /// The operations `POST /update` accepts.
    public static let updateOperationNames = [
        "append_message", "append_messages", "set_history", "update_metadata", "add_counters", "put_record",
    ]
}

/// One write: an operation, and what it says of the session beyond it (who it belongs to, how
/// long it lives), and what must hold for it to commit. A session keeps its principal and
/// lifetime until a write changes them; a session's principal, once set, never changes.
///
/// Wire form: the operation's, with `"principal"`, `"expires_after"`, `"must_exist"`,
/// `"continued_by"`, `"as_of"`, `"expect"` and `"expect_messages"` beside `"operation"`.
public struct SessionUpdate: Sendable, Hashable {
    public var operation: SessionOperation
    /// Who the session belongs to (1 to 64 of `principalAlphabet`).
    public var principal: String?
    /// Seconds without a write after which the session is deleted; 0: never.
    public var expiresAfter: Double?
    /// The write applies only to a session that exists now (not ended, expired or deleted):
    /// a conversation turn must not start a truncated new record where its thread was.
    public var mustExist: Bool
    /// Another principal makes this write through a share: it commits only while the
    /// session's own metadata grants that principal `continue` (`share:<principal>`), and
    /// only appends (the owner alone may replace a history).
    public var continuedBy: String?
    /// When the data this write carries was gathered (seconds since the epoch, the writer's
    /// clock): a host refuses it when its principal's data was deleted since.
    public var asOf: Double?
    /// Metadata the session must hold for the write to commit: each key's value as given, a
    /// `null` for a key that must be absent (compare and set: one of several writers wins).
    public var expect: JSONObject?
    /// How many messages the session must hold for the write to commit (0 for a session that
    /// does not exist): a conversation turn written against the history it was asked with,
    /// which no other turn has changed meanwhile.
    public var expectMessages: Int?

    public init(
        _ operation: SessionOperation, principal: String? = nil, expiresAfter: Double? = nil, mustExist: Bool = false,
        continuedBy: String? = nil, asOf: Double? = nil, expect: JSONObject? = nil, expectMessages: Int? = nil
    ) {
        self.expect = expect
        self.expectMessages = expectMessages
        self.operation = operation
        self.principal = principal
        self.expiresAfter = expiresAfter
        self.mustExist = mustExist
        self.continuedBy = continuedBy
        self.asOf = asOf
    }

    /// Whether this write carries data gathered before its principal's data was deleted
    /// (`erasedAt`, nil for never): such a write would bring deleted data back.
    public func predates(erasureAt erasedAt: Double?) -> Bool {
        guard let asOf, let erasedAt else { return false }
        return asOf <= erasedAt
    }

    /// Longest lifetime a write may set: ten years.
    public static let maxLifetime: Double = 10 * 366 * 86_400

    /// The update's wire form as a JSON value.
    public var jsonValue: JSONValue {
        guard case .object(var object) = operation.jsonValue else { return operation.jsonValue }
        if let principal { object["principal"] = .string(principal) }
        if let expiresAfter { object["expires_after"] = .double(expiresAfter) }
        if mustExist { object["must_exist"] = true }
        if let continuedBy { object["continued_by"] = .string(continuedBy) }
        if let asOf { object["as_of"] = .double(asOf) }
        if let expect { object["expect"] = .object(expect) }
        if let expectMessages { object["expect_messages"] = .int(Int64(expectMessages)) }
        return .object(object)
    }

    /// The update's canonical JSON (keys sorted), as `SessionOperation.canonicalJSON`.
    public var canonicalJSON: Data {
        Data(jsonValue.jsonText().utf8)
    }

    /// Whether `principal` can name a principal.
    /// The characters a principal may hold, as messages name them.
    public static let principalAlphabet = "A-Z a-z 0-9 . _ - @ : +"

    public static func isValidPrincipal(_ principal: String) -> Bool {
        let bytes = principal.utf8
        return (1...64).contains(bytes.count)
            && bytes.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                    UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "@"), UInt8(ascii: ":"), UInt8(ascii: "+"):
                    true
                default:
                    false
                }
            }
    }
}

extension SessionOperation: Encodable {
    /// The wire form, as `jsonValue` writes it.
    public func encode(to encoder: any Encoder) throws {
        try jsonValue.encode(to: encoder)
    }
}

extension SessionUpdate: Encodable {
    public func encode(to encoder: any Encoder) throws {
        try jsonValue.encode(to: encoder)
    }
}

extension SessionOperation {
    /// The operation's canonical JSON (keys sorted): equal operations give equal bytes however
    /// the client wrote them, so a retry is recognised by what it asks, not by its spelling.
    public var canonicalJSON: Data {
        Data(jsonValue.jsonText().utf8)
    }

    /// The operation's wire form as a JSON value.
    public var jsonValue: JSONValue {
        var object: JSONObject = ["operation": .string(name)]
        switch self {
        case .appendMessage(let message): object["message"] = message.jsonValue
        case .appendMessages(let messages, let metadata):
            object["messages"] = .array(messages.map(\.jsonValue))
            if let metadata { object["metadata"] = .object(metadata) }
        case .setHistory(let messages, let metadata):
            object["messages"] = .array(messages.map(\.jsonValue))
            if let metadata { object["metadata"] = .object(metadata) }
        case .updateMetadata(let metadata): object["metadata"] = .object(metadata)
        case .addCounters(let counters): object["counters"] = .object(counters.mapValues { .double($0) })
        case .putRecord(let record): object["record"] = record.jsonValue
        case .clear: break
        }
        return .object(object)
    }

    /// Decodes the body of `POST /sessions/{id}/update`, naming the field at fault when it cannot.
    ///
    /// The body is read by the strict `JSONParser`, so it means the same here as in every other
    /// service: UTF-8 only, no repeated key, no integer beyond 64 bits.
    public static func decodeUpdate(from body: Data) throws(APIError) -> SessionUpdate {
        let value: JSONValue
        do {
            value = try JSONValue.parseStrictly(body)
        } catch {
            throw APIError(.invalidJSON, "request body is not valid JSON: \(error)")
        }
        return try SessionUpdate.decode(value)
    }

    /// Reads an operation from its wire form (`jsonValue`).
    public static func decode(_ value: JSONValue) throws(APIError) -> SessionOperation {
        guard case .object(let body) = value else {
            throw APIError(.invalidRequest, "request body must be a JSON object")
        }
        let fields = Fields(body, path: "")
        let name = try fields.string("operation")
        switch name {
        case "append_message":
            return .appendMessage(try message(fields.object("message"), path: "message"))
        case "append_messages":
            let messages = try self.messages(fields, "messages")
            guard !messages.isEmpty else { throw APIError(.invalidField, "messages must hold at least one message") }
            return .appendMessages(messages, metadata: try fields.optionalObject("metadata"))
        case "set_history":
            return .setHistory(try self.messages(fields, "messages"), metadata: try fields.optionalObject("metadata"))
        case "update_metadata":
            return .updateMetadata(try fields.object("metadata"))
        case "add_counters":
            var counters: [String: Double] = [:]
            for (key, value) in try fields.object("counters") {
                guard let number = value.numberValue, number.isFinite else {
                    throw APIError(.invalidField, "counters.\(key.prefix(64)) must be a number")
                }
                counters[key] = number
            }
            return .addCounters(counters)
        case "put_record":
            return .putRecord(try record(fields.object("record")))
        default:
            let known = updateOperationNames.joined(separator: ", ")
            throw APIError(.unknownOperation, "unknown operation '\(name.prefix(64))'; expected one of \(known)")
        }
    }

    /// A record as `put_record` carries it: messages with their times, metadata, the session's
    /// times, and its principal and lifetime when set. Its id is the session's, whatever it says.
    private static func record(_ object: JSONObject) throws(APIError) -> SessionRecord {
        let fields = Fields(object, path: "record")
        var messages: [Message] = []
        for (index, item) in try fields.array("messages").enumerated() {
            let path = "record.messages[\(index)]"
            guard case .object(let object) = item else { throw APIError(.invalidField, "\(path) must be a JSON object") }
            let input = try message(object, path: path)
            guard let timestamp = input.timestamp else { throw APIError(.missingField, "\(path).timestamp is required") }
            messages.append(Message(role: input.role, content: input.content, timestamp: timestamp))
        }
        let createdAt = try fields.time("created_at")
        let lastUpdated = try fields.time("last_updated")
        guard createdAt <= lastUpdated else { throw APIError(.invalidField, "record.created_at must not be after record.last_updated") }
        let principal = try fields.optionalString("principal")
        if let principal, !SessionUpdate.isValidPrincipal(principal) {
            throw APIError(.invalidField, "record.principal must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        let lifetime = try fields.optionalNumber("expires_after")
        if let lifetime, !(lifetime.isFinite && lifetime >= 0 && lifetime <= SessionUpdate.maxLifetime) {
            throw APIError(.invalidField, "record.expires_after must be a number of seconds from 0 (never) to \(Int(SessionUpdate.maxLifetime))")
        }
        // A key set to null is no key: what a merge would have left.
        let metadata = (try fields.optionalObject("metadata") ?? [:]).filter { $0.value != .null }
        return SessionRecord(
            id: "", messages: messages, metadata: metadata, createdAt: createdAt, lastUpdated: lastUpdated, principal: principal,
            expiresAfter: lifetime)
    }

    private static func messages(_ fields: Fields, _ key: String) throws(APIError) -> [MessageInput] {
        let items = try fields.array(key)
        var messages: [MessageInput] = []
        messages.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            let path = "\(key)[\(index)]"
            guard case .object(let object) = item else {
                throw APIError(.invalidField, "\(path) must be a JSON object")
            }
            messages.append(try message(object, path: path))
        }
        return messages
    }

    private static func message(_ object: JSONObject, path: String) throws(APIError) -> MessageInput {
        let fields = Fields(object, path: path)
        let roleName = try fields.string("role")
        guard let role = Role(rawValue: roleName) else {
            throw APIError(.invalidField, "\(path).role must be one of user, assistant, system (got '\(roleName.prefix(32))')")
        }
        let content = try fields.string("content")
        let timestamp = try fields.optionalNumber("timestamp")
        if let timestamp, !(timestamp.isFinite && timestamp >= 0) {
            throw APIError(.invalidField, "\(path).timestamp must be a non-negative number of seconds since the epoch")
        }
        return MessageInput(role: role, content: content, timestamp: timestamp)
    }
}

extension SessionUpdate {
    /// Reads an update from its wire form: the operation, and the session's principal and
    /// lifetime when the write sets them.
    public static func decode(_ value: JSONValue) throws(APIError) -> SessionUpdate {
        let operation = try SessionOperation.decode(value)
        let fields = Fields(value.objectValue ?? [:], path: "")
        let principal = try fields.optionalString("principal")
        if let principal, !isValidPrincipal(principal) {
            throw APIError(.invalidField, "principal must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        let lifetime = try fields.optionalNumber("expires_after")
        if let lifetime, !(lifetime.isFinite && lifetime >= 0 && lifetime <= maxLifetime) {
            throw APIError(.invalidField, "expires_after must be a number of seconds from 0 (never) to \(Int(maxLifetime))")
        }
        let mustExist = try fields.optionalBool("must_exist") ?? false
        let continuedBy = try fields.optionalString("continued_by")
        if let continuedBy, !isValidPrincipal(continuedBy) {
            throw APIError(.invalidField, "continued_by must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        if continuedBy != nil, principal == nil {
            throw APIError(.invalidField, "continued_by needs principal: the owner whose share it continues")
        }
        let asOf = try fields.optionalNumber("as_of")
        if let asOf, !(asOf.isFinite && asOf >= 0) {
            throw APIError(.invalidField, "as_of must be a non-negative number of seconds since the epoch")
        }
        let expect = try fields.optionalObject("expect")
        let expectMessages = try fields.optionalNumber("expect_messages")
        if let expectMessages, !(expectMessages >= 0 && expectMessages <= Double(Int32.max) && expectMessages.rounded() == expectMessages) {
            throw APIError(.invalidField, "expect_messages must be a whole number of messages, 0 or more")
        }
        return SessionUpdate(
            operation, principal: principal, expiresAfter: lifetime, mustExist: mustExist, continuedBy: continuedBy, asOf: asOf, expect: expect,
            expectMessages: expectMessages.map { Int($0) })
    }
}

extension SessionRecord {
    /// The record's wire form as a JSON value (what `Codable` writes).
    public var jsonValue: JSONValue {
        var object: JSONObject = [
            "id": .string(id),
            "messages": .array(
                messages.map { .object(["role": .string($0.role.rawValue), "content": .string($0.content), "timestamp": .double($0.timestamp)]) }),
            "metadata": .object(metadata), "created_at": .double(createdAt), "last_updated": .double(lastUpdated),
        ]
        if let principal { object["principal"] = .string(principal) }
        if let expiresAfter { object["expires_after"] = .double(expiresAfter) }
        return .object(object)
    }
}

extension MessageInput {
    /// The wire form: `{"role", "content"}` and `timestamp` when given.
    public var jsonValue: JSONValue {
        var object: JSONObject = ["role": .string(role.rawValue), "content": .string(content)]
        if let timestamp { object["timestamp"] = .double(timestamp) }
        return .object(object)
    }
}

/// The members of one JSON object of a request, read with errors that name the field
/// (`message.content is required`, `messages[2].role must be a string`).
private struct Fields {
    let object: JSONObject
    let path: String

    init(_ object: JSONObject, path: String) {
        self.object = object
        self.path = path
    }

    private func name(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    private func value(_ key: String) throws(APIError) -> JSONValue {
        guard let value = object[key] else { throw APIError(.missingField, "\(name(key)) is required") }
        guard value != .null else { throw APIError(.invalidField, "\(name(key)) must not be null") }
        return value
    }

    func string(_ key: String) throws(APIError) -> String {
        guard case .string(let text) = try value(key) else { throw APIError(.invalidField, "\(name(key)) must be a string") }
        return text
    }

    func object(_ key: String) throws(APIError) -> JSONObject {
        guard case .object(let object) = try value(key) else { throw APIError(.invalidField, "\(name(key)) must be a JSON object") }
        return object
    }

    func array(_ key: String) throws(APIError) -> [JSONValue] {
        guard case .array(let items) = try value(key) else { throw APIError(.invalidField, "\(name(key)) must be an array") }
        return items
    }

    /// A JSON object, or nil when absent or null.
    func optionalObject(_ key: String) throws(APIError) -> JSONObject? {
        guard let value = object[key], value != .null else { return nil }
        guard case .object(let object) = value else { throw APIError(.invalidField, "\(name(key)) must be a JSON object") }
        return object
    }

    /// A string, or nil when absent or null.
    func optionalString(_ key: String) throws(APIError) -> String? {
        guard let value = object[key], value != .null else { return nil }
        guard case .string(let text) = value else { throw APIError(.invalidField, "\(name(key)) must be a string") }
        return text
    }

    /// Seconds since the epoch: a finite, non-negative number.
    func time(_ key: String) throws(APIError) -> Double {
        guard let number = try value(key).numberValue, number.isFinite, number >= 0 else {
            throw APIError(.invalidField, "\(name(key)) must be a non-negative number of seconds since the epoch")
        }
        return number
    }

    /// A boolean, or nil when absent or null.
    func optionalBool(_ key: String) throws(APIError) -> Bool? {
        guard let value = object[key], value != .null else { return nil }
        guard case .bool(let flag) = value else { throw APIError(.invalidField, "\(name(key)) must be true or false") }
        return flag
    }

    /// A number, or nil when absent or null.
    func optionalNumber(_ key: String) throws(APIError) -> Double? {
        guard let value = object[key], value != .null else { return nil }
        guard let number = value.numberValue else { throw APIError(.invalidField, "\(name(key)) must be a number") }
        return number
    }
}
