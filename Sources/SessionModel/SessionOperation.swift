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

/// The operations on one session: the seed's three, plus clear.
///
/// Wire form of the first three (the body of `POST /sessions/{id}/update`):
/// ```json
/// {"operation": "append_message", "message": {"role": "user", "content": "hi"}}
/// {"operation": "set_history", "messages": [{"role": "user", "content": "hi"}]}
/// {"operation": "update_metadata", "metadata": {"repo": "owner/name"}}
/// ```
/// `clear` is `DELETE /sessions/{id}/clear`.
public enum SessionOperation: Sendable, Hashable {
    case appendMessage(MessageInput)
    case setHistory([MessageInput])
    /// Merged into the stored metadata key by key; a key set to `null` is removed.
    case updateMetadata(JSONObject)
    case clear

    /// The name on the wire.
    public var name: String {
        switch self {
        case .appendMessage: "append_message"
        case .setHistory: "set_history"
        case .updateMetadata: "update_metadata"
        case .clear: "clear"
        }
    }

    /// The operations `POST /update` accepts.
    public static let updateOperationNames = ["append_message", "set_history", "update_metadata"]
}

extension SessionOperation: Encodable {
    enum CodingKeys: String, CodingKey { case operation, message, messages, metadata }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .operation)
        switch self {
        case .appendMessage(let message): try container.encode(message, forKey: .message)
        case .setHistory(let messages): try container.encode(messages, forKey: .messages)
        case .updateMetadata(let metadata): try container.encode(metadata, forKey: .metadata)
        case .clear: break
        }
    }
}

extension SessionOperation {
    /// The operation's canonical JSON (keys sorted): equal operations give equal bytes however
    /// the client wrote them, so a retry is recognised by what it asks, not by its spelling.
    public var canonicalJSON: Data {
        (try? JSONCoding.encoder.encode(self)) ?? Data(name.utf8)
    }

    /// Decodes the body of `POST /sessions/{id}/update`, naming the field at fault when it cannot.
    public static func decodeUpdate(from body: Data) throws(APIError) -> SessionOperation {
        do {
            return try JSONCoding.decoder.decode(UpdateBody.self, from: body).operation
        } catch let error as APIError {
            throw error
        } catch let error as DecodingError {
            throw APIError(decoding: error)
        } catch {
            throw APIError(.invalidJSON, "request body is not valid JSON")
        }
    }
}

/// The update body, decoded field by field so each failure can say which field and why.
private struct UpdateBody: Decodable {
    let operation: SessionOperation

    init(from decoder: any Decoder) throws {
        let container: KeyedDecodingContainer<SessionOperation.CodingKeys>
        do {
            container = try decoder.container(keyedBy: SessionOperation.CodingKeys.self)
        } catch {
            throw APIError(.invalidRequest, "request body must be a JSON object")
        }
        let name = try container.decode(String.self, forKey: .operation)
        switch name {
        case "append_message":
            operation = .appendMessage(try container.decode(WireMessage.self, forKey: .message).input)
        case "set_history":
            operation = .setHistory(try container.decode([WireMessage].self, forKey: .messages).map(\.input))
        case "update_metadata":
            operation = .updateMetadata(try container.decode(JSONObject.self, forKey: .metadata))
        default:
            let known = SessionOperation.updateOperationNames.joined(separator: ", ")
            throw APIError(.unknownOperation, "unknown operation '\(name.prefix(64))'; expected one of \(known)")
        }
    }
}

/// A message on the wire, with its role checked here so the error can list the allowed roles.
private struct WireMessage: Decodable {
    let input: MessageInput

    enum CodingKeys: String, CodingKey { case role, content, timestamp }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let roleName = try container.decode(String.self, forKey: .role)
        guard let role = Role(rawValue: roleName) else {
            let path = fieldPath(container.codingPath + [CodingKeys.role])
            throw APIError(.invalidField, "\(path) must be one of user, assistant, system (got '\(roleName.prefix(32))')")
        }
        let content = try container.decode(String.self, forKey: .content)
        let timestamp = try container.decodeIfPresent(Double.self, forKey: .timestamp)
        if let timestamp, !(timestamp.isFinite && timestamp >= 0) {
            let path = fieldPath(container.codingPath + [CodingKeys.timestamp])
            throw APIError(.invalidField, "\(path) must be a non-negative number of seconds since the epoch")
        }
        input = MessageInput(role: role, content: content, timestamp: timestamp)
    }
}

/// `message.role`, `messages[2].content`: a coding path as a person writes it.
func fieldPath(_ path: [any CodingKey]) -> String {
    var text = ""
    for key in path {
        if let index = key.intValue {
            text += "[\(index)]"
        } else {
            text += text.isEmpty ? key.stringValue : ".\(key.stringValue)"
        }
    }
    return text.isEmpty ? "body" : text
}

extension APIError {
    /// Turns a decoding failure into the field-level error a client can act on.
    init(decoding error: DecodingError) {
        switch error {
        case .keyNotFound(let key, let context):
            self.init(.missingField, "\(fieldPath(context.codingPath + [key])) is required")
        case .valueNotFound(_, let context):
            self.init(.invalidField, "\(fieldPath(context.codingPath)) must not be null")
        case .typeMismatch(let type, let context):
            self.init(.invalidField, "\(fieldPath(context.codingPath)) must be \(jsonTypeName(type))")
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            self.init(.invalidJSON, "request body is not valid JSON")
        case .dataCorrupted(let context):
            self.init(.invalidField, "\(fieldPath(context.codingPath)) is not valid")
        @unknown default:
            self.init(.invalidRequest, "request body could not be read")
        }
    }
}

private func jsonTypeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Double.Type, is Int64.Type, is Int.Type: "a number"
    case is Bool.Type: "a boolean"
    case is JSONObject.Type: "a JSON object"
    default:
        // Containers are reported by their generic type, whatever their element.
        switch String(describing: type) {
        case let name where name.hasPrefix("Dictionary"): "a JSON object"
        case let name where name.hasPrefix("Array"): "an array"
        default: "of the expected type"
        }
    }
}
