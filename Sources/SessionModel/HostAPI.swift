import Foundation

/// The wire shapes of the durable host's HTTP API (README, "Host API").
///
/// Hosts produce them and workers consume them: both sides import these types, so neither
/// re-states the other's JSON.
public enum HostAPI {
    /// `GET /sessions/{id}/history`: `{"success": true, "data": [messages], "metadata": {...}}`.
    ///
    /// With `?last=N`, `data` holds only the newest N messages, `message_count` says how
    /// many the session holds in all, and `last_updated` and `expires_at` when it was last
    /// written and when it expires unless written again (both absent: no session; no
    /// `expires_at`: it never expires).
    public struct History: Codable, Sendable, Hashable {
        public var success: Bool
        public var data: [Message]
        public var metadata: JSONObject
        /// Messages the session holds, when `data` may be fewer (`last=N` was asked).
        public var messageCount: Int?
        /// The session's last write (with `last=N`); absent for a session that does not exist.
        public var lastUpdated: Double?
        /// When the session expires unless written again; absent: never (or no session). A
        /// caller that keeps a session in use past it (a long call) writes to it before then.
        public var expiresAt: Double?

        public init(data: [Message], metadata: JSONObject, messageCount: Int? = nil, lastUpdated: Double? = nil, expiresAt: Double? = nil) {
            success = true
            self.data = data
            self.metadata = metadata
            self.messageCount = messageCount
            self.lastUpdated = lastUpdated
            self.expiresAt = expiresAt
        }

        enum CodingKeys: String, CodingKey {
            case success, data, metadata
            case messageCount = "message_count"
            case lastUpdated = "last_updated"
            case expiresAt = "expires_at"
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
        /// True when the write changed nothing (`put_record` of the record already there).
        public var unchanged: Bool?

        public init(messageCount: Int, createdAt: Double, lastUpdated: Double, cleared: Bool? = nil, unchanged: Bool? = nil) {
            self.messageCount = messageCount
            self.createdAt = createdAt
            self.lastUpdated = lastUpdated
            self.cleared = cleared
            self.unchanged = unchanged
        }

        enum CodingKeys: String, CodingKey {
            case messageCount = "message_count"
            case createdAt = "created_at"
            case lastUpdated = "last_updated"
            case cleared, unchanged
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
            text += "\"message_count\":\(data.messageCount)"
            if let unchanged = data.unchanged { text += ",\"unchanged\":\(unchanged)" }
            text += "},\"success\":\(success)}"
            return Data(text.utf8)
        }

        public var success: Bool
        public var data: WriteResult

        public init(data: WriteResult) {
            success = true
            self.data = data
        }
    }

    /// One session in a listing (`GET /sessions`): everything but its messages.
    public struct SessionSummary: Codable, Sendable, Hashable {
        public var id: String
        public var principal: String?
        public var metadata: JSONObject
        public var createdAt: Double
        public var lastUpdated: Double
        public var messageCount: Int
        public var expiresAfter: Double?

        public init(
            id: String, principal: String?, metadata: JSONObject, createdAt: Double, lastUpdated: Double, messageCount: Int,
            expiresAfter: Double? = nil
        ) {
            self.id = id
            self.principal = principal
            self.metadata = metadata
            self.createdAt = createdAt
            self.lastUpdated = lastUpdated
            self.messageCount = messageCount
            self.expiresAfter = expiresAfter
        }

        enum CodingKeys: String, CodingKey {
            case id, principal, metadata
            case createdAt = "created_at"
            case lastUpdated = "last_updated"
            case messageCount = "message_count"
            case expiresAfter = "expires_after"
        }

        /// Where the next page starts: after this one.
        public var cursor: ListCursor { ListCursor(lastUpdated: lastUpdated, id: id) }
    }

    /// A position in a listing, newest first: `"<last_updated>~<id>"` on the wire (`before=`).
    public struct ListCursor: Sendable, Hashable, Comparable {
        public var lastUpdated: Double
        public var id: String

        public init(lastUpdated: Double, id: String) {
            self.lastUpdated = lastUpdated
            self.id = id
        }

        public init?(_ text: String) {
            guard let tilde = text.firstIndex(of: "~"), let time = Double(text[..<tilde]), time.isFinite else { return nil }
            let id = String(text[text.index(after: tilde)...])
            guard (try? SessionID.validate(id, limits: SessionLimits(maxIdLength: 1024))) != nil else { return nil }
            self.init(lastUpdated: time, id: id)
        }

        public var text: String { "\(JSONValue.number(lastUpdated))~\(id)" }

        /// Newest first: a cursor is "less" when it comes earlier in a listing.
        public static func < (lhs: ListCursor, rhs: ListCursor) -> Bool {
            lhs.lastUpdated != rhs.lastUpdated ? lhs.lastUpdated > rhs.lastUpdated : lhs.id > rhs.id
        }
    }

    /// `GET /sessions`: one page of a listing, newest first, and where the next one starts.
    public struct Listing: Codable, Sendable, Hashable {
        /// What a listing covers: the sessions one host stores (ask every host), or those of
        /// every host (a shared database: one host answers for all).
        public enum Scope: String, Codable, Sendable {
            case thisHost = "host"
            case everyHost = "all"
        }

        public var success: Bool
        public var data: [SessionSummary]
        /// The `before` of the next page; nil when this one is the last.
        public var next: String?
        public var scope: Scope

        public init(data: [SessionSummary], next: String?, scope: Scope = .thisHost) {
            success = true
            self.data = data
            self.next = next
            self.scope = scope
        }
    }

    /// `DELETE /principals/{principal}`: how many sessions this host deleted.
    public struct Erasure: Codable, Sendable, Hashable {
        public var success: Bool
        public var removed: Int

        public init(removed: Int) {
            success = true
            self.removed = removed
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

/// Which sessions a listing returns (`GET /sessions`): a principal's, and/or those whose id
/// starts with `prefix`, older than `before` (the last of the previous page), at most `limit`.
public struct SessionListing: Sendable, Hashable {
    public var principal: String?
    public var prefix: String?
    public var before: HostAPI.ListCursor?
    public var limit: Int

    public init(principal: String? = nil, prefix: String? = nil, before: HostAPI.ListCursor? = nil, limit: Int) {
        self.principal = principal
        self.prefix = prefix
        self.before = before
        self.limit = limit
    }

    /// Most sessions one page may hold.
    public static let maxLimit = 500

    /// The smallest id greater than every id starting with `prefix` (ids are ASCII below DEL).
    public static func upperBound(of prefix: String) -> String { prefix + "\u{7F}" }

    /// The query string of `GET /sessions` (every part percent-encoded).
    public var query: String {
        var items = ["limit=\(limit)"]
        if let principal { items.append("principal=\(Self.encode(principal))") }
        if let prefix { items.append("prefix=\(Self.encode(prefix))") }
        if let before { items.append("before=\(Self.encode(before.text))") }
        return items.joined(separator: "&")
    }

    private static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._"))) ?? ""
    }

    /// A listing from the query's parameters (already percent-decoded), or the error naming the
    /// one at fault.
    public static func parse(_ parameter: (String) -> String?) throws(APIError) -> SessionListing {
        let principal = parameter("principal")
        if let principal, !SessionUpdate.isValidPrincipal(principal) {
            throw APIError(.invalidField, "principal must be 1 to 64 of \(SessionUpdate.principalAlphabet)")
        }
        let prefix = parameter("prefix")
        if let prefix, prefix.utf8.count > 128 || !prefix.utf8.allSatisfy(SessionID.isAllowed) {
            throw APIError(.invalidField, "prefix must be at most 128 of \(SessionID.alphabet)")
        }
        var before: HostAPI.ListCursor?
        if let text = parameter("before") {
            guard let cursor = HostAPI.ListCursor(text) else { throw APIError(.invalidField, "before must be the 'next' of an earlier page") }
            before = cursor
        }
        var limit = 50
        if let text = parameter("limit") {
            guard let number = Int(text), (1...maxLimit).contains(number) else {
                throw APIError(.invalidField, "limit must be 1 to \(maxLimit)")
            }
            limit = number
        }
        return SessionListing(principal: principal, prefix: prefix, before: before, limit: limit)
    }
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
