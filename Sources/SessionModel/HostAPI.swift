import Foundation
/// The wire shapes of the durable host's HTTP API (README, "Host API").
///
/// Hosts produce them and workers consume them: both sides import these types, so neither
/// re-states the other's JSON.
public enum HostAPI {
    /// `GET /sessions/{id}/history`: `{"success": true, "data": [messages], "metadata": {...}}`.
    public struct History: Codable, Sendable, Hashable {
        public var success: Bool
        public var data: [Message]
        public var metadata: JSONObject

        public init(data: [Message], metadata: JSONObject) {
            success = true
            self.data = data
            self.metadata = metadata
        }
    }

    /// `GET /sessions/{id}`: the whole record.
    public struct Record: Codable, Sendable, Hashable {
        public var success: Bool
        public var data: SessionRecord

        public init(data: SessionRecord) {
            success = true
            self.data = data
        }
    }

    /// What a write answers: the session's shape after it.
    public struct WriteResult: Codable, Sendable, Hashable {
        public var messageCount: Int
        public var createdAt: Double
        public var lastUpdated: Double
        /// For `clear`: whether there was a session to clear.
        public var cleared: Bool?

        public init(messageCount: Int, createdAt: Double, lastUpdated: Double, cleared: Bool? = nil) {
            self.messageCount = messageCount
            self.createdAt = createdAt
            self.lastUpdated = lastUpdated
            self.cleared = cleared
        }

        enum CodingKeys: String, CodingKey {
            case messageCount = "message_count"
            case createdAt = "created_at"
            case lastUpdated = "last_updated"
            case cleared
        }
    }

    /// `POST /sessions/{id}/update` and `DELETE /sessions/{id}/clear`: `{"success": true, "data": {...}}`.
    public struct Write: Codable, Sendable, Hashable {
        /// The JSON of this answer, written directly: it is sent for every write, and a
        /// generic encoder costs more than the rest of the reply path (bench/ANALYSIS.md).
        /// The same bytes as `JSONCoding.encoder` would give, keys sorted.
        public func encodedJSON() -> Data {
            var text = "{\"data\":{"
            if let cleared = data.cleared { text += "\"cleared\":\(cleared)," }
            text += "\"created_at\":\(JSONValue.number(data.createdAt)),\"last_updated\":\(JSONValue.number(data.lastUpdated)),"
            text += "\"message_count\":\(data.messageCount)},\"success\":\(success)}"
            return Data(text.utf8)
        }

        public var success: Bool
        public var data: WriteResult

        public init(data: WriteResult) {
            success = true
            self.data = data
        }
    }

    /// Every error: `{"success": false, "error": {"code": "...", "message": "..."}}`.
    public struct Failure: Codable, Sendable, Hashable {
        public struct Body: Codable, Sendable, Hashable {
            public var code: String
            public var message: String
            /// For `misdirected`: the node that owns the id.
            public var owner: String?
        }

        public var success: Bool
        public var error: Body

        public init(code: ErrorCode, message: String, owner: String? = nil) {
            success = false
            error = Body(code: code.rawValue, message: message, owner: owner)
        }

        public init(_ error: APIError) {
            self.init(code: error.code, message: error.message)
        }
    }

    /// The header that makes a write idempotent.
    public static let idempotencyKeyHeader = "Idempotency-Key"
    /// Longest accepted idempotency key, in bytes.
    public static let maxIdempotencyKeyLength = 200
}
