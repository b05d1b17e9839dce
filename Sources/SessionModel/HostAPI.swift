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

// MARK: Hinted handoff

extension HostAPI {
    /// On a session request sent to the owner's runner-up because the owner cannot be reached:
    /// the owner's node name. The runner-up serves the request from a copy it holds for the
    /// owner and keeps every write, to hand back when the owner returns.
    public static let hintedForHeader = "Hinted-For"
    /// On a hinted request: `last_updated` of the newest state of the session the caller knows
    /// (0 for none). A holder whose copy is older, and holds no write yet, asks for it (409).
    public static let hintSeedVersionHeader = "Hint-Seed-Version"

    /// `POST /hints/{id}/seed`: the state a hinted copy starts from (nil: no session).
    public struct HintSeed: Codable, Sendable, Hashable {
        public var record: SessionRecord?

        public init(record: SessionRecord?) {
            self.record = record
        }
    }

    /// One write a runner-up held for an owner, as applied there: the operation with every
    /// time filled in, and the answer given, so that a retry with the same key is answered
    /// alike by the owner.
    public struct HeldWrite: Codable, Sendable, Hashable {
        /// Order of the write among those held for the session.
        public var seq: Int64
        public var operation: JSONValue
        public var key: String
        public var requestHash: Int64
        public var status: Int
        /// The answer's JSON text.
        public var response: String
        public var createdAt: Double

        public init(seq: Int64, operation: JSONValue, key: String, requestHash: Int64, status: Int, response: String, createdAt: Double) {
            self.seq = seq
            self.operation = operation
            self.key = key
            self.requestHash = requestHash
            self.status = status
            self.response = response
            self.createdAt = createdAt
        }

        enum CodingKeys: String, CodingKey {
            case seq, operation, key, status, response
            case requestHash = "request_hash"
            case createdAt = "created_at"
        }
    }

    /// `POST /hints/{id}/handback`: every write held for the asking owner, oldest first.
    public struct Handback: Codable, Sendable, Hashable {
        public var writes: [HeldWrite]

        public init(writes: [HeldWrite]) {
            self.writes = writes
        }
    }

    /// `GET /hints?owner=NODE` and `POST /hints/notify`: the sessions a member holds writes for.
    public struct HeldSessions: Codable, Sendable, Hashable {
        /// The member holding them.
        public var holder: String
        public var ids: [String]

        public init(holder: String, ids: [String]) {
            self.holder = holder
            self.ids = ids
        }
    }
}
