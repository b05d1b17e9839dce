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
/// and clear.
///
/// Wire form of the first four (the body of `POST /sessions/{id}/update`):
/// ```json
/// {"operation": "append_message", "message": {"role": "user", "content": "hi"}}
/// {"operation": "append_messages", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
/// {"operation": "set_history", "messages": [{"role": "user", "content": "hi"}]}
/// {"operation": "update_metadata", "metadata": {"repo": "owner/name"}}
/// ```
/// `clear` is `DELETE /sessions/{id}/clear`.
public enum SessionOperation: Sendable, Hashable {
    case appendMessage(MessageInput)
    /// Appends every message or none: one conversation turn (a question and its answer) is
    /// one operation, so a refused answer never leaves its question behind.
    case appendMessages([MessageInput])
    case setHistory([MessageInput])
    /// Merged into the stored metadata key by key; a key set to `null` is removed.
    case updateMetadata(JSONObject)
    case clear

    /// The name on the wire.
    public var name: String {
        switch self {
        case .appendMessage: "append_message"
        case .appendMessages: "append_messages"
        case .setHistory: "set_history"
        case .updateMetadata: "update_metadata"
        case .clear: "clear"
        }
    }

    /// The operations `POST /update` accepts.
    public static let updateOperationNames = ["append_message", "append_messages", "set_history", "update_metadata"]
}

extension SessionOperation: Encodable {
    enum CodingKeys: String, CodingKey { case operation, message, messages, metadata }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .operation)
        switch self {
        case .appendMessage(let message): try container.encode(message, forKey: .message)
        case .appendMessages(let messages), .setHistory(let messages): try container.encode(messages, forKey: .messages)
        case .updateMetadata(let metadata): try container.encode(metadata, forKey: .metadata)
        case .clear: break
        }
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
        case .appendMessages(let messages), .setHistory(let messages): object["messages"] = .array(messages.map(\.jsonValue))
        case .updateMetadata(let metadata): object["metadata"] = .object(metadata)
        case .clear: break
        }
        return .object(object)
    }

    /// Decodes the body of `POST /sessions/{id}/update`, naming the field at fault when it cannot.
    ///
    /// The body is read by the strict `JSONParser`, so it means the same here as in every other
    /// service: UTF-8 only, no repeated key, no integer beyond 64 bits.
    public static func decodeUpdate(from body: Data) throws(APIError) -> SessionOperation {
        let value: JSONValue
        do {
            value = try JSONValue.parseStrictly(body)
        } catch {
            throw APIError(.invalidJSON, "request body is not valid JSON: \(error)")
        }
        return try decode(value)
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
            return .appendMessages(messages)
        case "set_history":
            return .setHistory(try self.messages(fields, "messages"))
        case "update_metadata":
            return .updateMetadata(try fields.object("metadata"))
        default:
            let known = updateOperationNames.joined(separator: ", ")
            throw APIError(.unknownOperation, "unknown operation '\(name.prefix(64))'; expected one of \(known)")
        }
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

    /// A number, or nil when absent or null.
    func optionalNumber(_ key: String) throws(APIError) -> Double? {
        guard let value = object[key], value != .null else { return nil }
        guard let number = value.numberValue else { throw APIError(.invalidField, "\(name(key)) must be a number") }
        return number
    }
}
