import HashRing
import ServiceLifecycle
import SessionModel

/// Where the worker keeps sessions: conversation history and metadata, and the state of MCP
/// transport sessions. The seed's session manager, in Swift.
public protocol SessionManager: Sendable {
    /// Applies one write: an operation, and the principal and lifetime it gives the session.
    func write(_ sessionID: String, _ update: SessionUpdate) async throws(SessionError)
    /// The messages (only the newest `last`, when given) and metadata; empty for a session
    /// never written.
    func history(_ sessionID: String, last: Int?) async throws(SessionError) -> SessionHistory
    /// What a conversation turn is asked with: the newest `last` messages, the metadata and how
    /// many messages the whole history holds (`messageCount`), which the turn's write expects
    /// (`SessionUpdate.expectMessages`). It may come from what this store last knew without
    /// asking anyone: a write against a view that was out of date is refused
    /// (`history_changed`), and the next view of that session is read.
    func turnView(_ sessionID: String, last: Int) async throws(SessionError) -> SessionHistory
    /// The whole record, or nil when the session does not exist.
    func record(_ sessionID: String) async throws(SessionError) -> SessionRecord?
    /// Removes the session.
    func clear(_ sessionID: String) async throws(SessionError)
    /// One page of what `listing` asks for, from every host, newest first.
    func list(_ listing: SessionListing) async throws(SessionError) -> SessionPage
    /// Deletes every session of `principal`, on every host.
    func erase(principal: String) async throws(SessionError) -> PrincipalErasure
    /// How the store is doing, for `/health`.
    func health() async -> SessionStoreHealth
    /// The ring of hosts the store routes by; nil when it keeps sessions itself (in memory).
    var ring: Membership? { get }
    /// A ring a host answered elsewhere (a health probe): adopted if newer.
    func consider(_ info: RingInfo, from host: String)
    /// What must run beside the store for as long as it is used (retries, replays), if anything.
    var service: (any Service)? { get }
}

extension SessionManager {
    public func turnView(_ sessionID: String, last: Int) async throws(SessionError) -> SessionHistory {
        try await history(sessionID, last: last)
    }

    public var ring: Membership? { nil }
    public func consider(_ info: RingInfo, from host: String) {}
    public var service: (any Service)? { nil }
}

extension SessionManager {
    /// Every message and the metadata; empty for a session never written.
    public func history(_ sessionID: String) async throws(SessionError) -> SessionHistory {
        try await history(sessionID, last: nil)
    }

    /// Appends one message.
    public func appendMessage(_ sessionID: String, _ message: MessageInput) async throws(SessionError) {
        try await write(sessionID, SessionUpdate(.appendMessage(message)))
    }

    /// Appends every message or, refused, none: one conversation turn is one write.
    public func appendMessages(_ sessionID: String, _ messages: [MessageInput]) async throws(SessionError) {
        try await write(sessionID, SessionUpdate(.appendMessages(messages)))
    }

    /// Replaces every message.
    public func setHistory(_ sessionID: String, _ messages: [MessageInput]) async throws(SessionError) {
        try await write(sessionID, SessionUpdate(.setHistory(messages)))
    }

    /// Merges metadata key by key; a key set to null is removed.
    public func updateMetadata(_ sessionID: String, _ metadata: JSONObject) async throws(SessionError) {
        try await write(sessionID, SessionUpdate(.updateMetadata(metadata)))
    }
}

/// One page of a listing gathered from the hosts, and where the next one starts.
public struct SessionPage: Sendable, Hashable {
    public var summaries: [HostAPI.SessionSummary]
    /// The `before` of the next page; nil when this one is the last.
    public var next: HostAPI.ListCursor?

    public init(summaries: [HostAPI.SessionSummary], next: HostAPI.ListCursor?) {
        self.summaries = summaries
        self.next = next
    }

    /// The newest `limit` of several hosts' pages of one listing: each host's page holds its
    /// newest, so theirs together hold the newest of all. A session listed twice (on its way
    /// between hosts) is kept once, as its newest state.
    public static func merge(_ pages: [HostAPI.Listing], limit: Int) -> SessionPage {
        var newest: [String: HostAPI.SessionSummary] = [:]
        for summary in pages.flatMap(\.data) where (newest[summary.id]?.lastUpdated ?? -.infinity) < summary.lastUpdated {
            newest[summary.id] = summary
        }
        let ordered = newest.values.sorted { $0.cursor < $1.cursor }
        let page = Array(ordered.prefix(limit))
        let more = ordered.count > limit || pages.contains { $0.next != nil }
        return SessionPage(summaries: page, next: more ? page.last?.cursor : nil)
    }
}

/// What deleting a principal's data did: how many sessions went, and which hosts could not
/// be asked (their sessions are still there: ask again).
public struct PrincipalErasure: Sendable, Hashable {
    public var removed: Int
    public var unreached: [String]

    public init(removed: Int, unreached: [String] = []) {
        self.removed = removed
        self.unreached = unreached
    }
}

/// A session's messages and metadata, and when it was last written and expires.
public struct SessionHistory: Sendable, Hashable {
    public var messages: [Message]
    public var metadata: JSONObject
    /// The session's last write; nil for a session that does not exist (or a host that does not say).
    public var lastUpdated: Double?
    /// When the session expires unless written again; nil: never, or not known.
    public var expiresAt: Double?
    /// How many messages the whole history holds (`messages` may be only its newest); nil when
    /// not known (a view from a fallback's memory).
    public var messageCount: Int?
    /// Whether this view is what the store remembered (`turnView`), not what a host answered now.
    public var remembered: Bool

    public init(
        messages: [Message] = [], metadata: JSONObject = [:], lastUpdated: Double? = nil, expiresAt: Double? = nil, messageCount: Int? = nil,
        remembered: Bool = false
    ) {
        self.messages = messages
        self.metadata = metadata
        self.lastUpdated = lastUpdated
        self.expiresAt = expiresAt
        self.messageCount = messageCount
        self.remembered = remembered
    }

    /// Whether the session exists: it was written, or holds something.
    public var exists: Bool { lastUpdated != nil || !messages.isEmpty || !metadata.isEmpty }

    /// How long the session lives after a write (its own lifetime, or its host's retention);
    /// nil: for ever, or not known.
    public var lifetime: Double? {
        guard let lastUpdated, let expiresAt else { return nil }
        return max(0, expiresAt - lastUpdated)
    }
}

/// What `/health` shows of the session store.
public struct SessionStoreHealth: Sendable, Hashable, Codable {
    /// "durable" or "in-memory".
    public var mode: String
    /// True while writes made in a fallback wait to reach their host, or shortly after a fallback.
    public var degraded: Bool
    public var fallbacks: Int
    public var pendingReplays: Int
    public var detail: String?

    public init(mode: String, degraded: Bool = false, fallbacks: Int = 0, pendingReplays: Int = 0, detail: String? = nil) {
        self.mode = mode
        self.degraded = degraded
        self.fallbacks = fallbacks
        self.pendingReplays = pendingReplays
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case mode, degraded, fallbacks, detail
        case pendingReplays = "pending_replays"
    }
}

/// Why a session operation failed.
public struct SessionError: Error, Sendable, CustomStringConvertible {
    private enum Kind: Sendable { case rejected, unavailable, cancelled }
    private let kind: Kind
    /// The host's error, for a refused operation.
    public let apiError: APIError?
    public let message: String

    /// The host refused the operation (bad input, a limit): retrying will not help.
    public static func rejected(_ error: APIError) -> SessionError {
        SessionError(kind: .rejected, apiError: error, message: error.message)
    }

    /// No host could be reached and there is no fallback.
    public static func unavailable(_ message: String) -> SessionError {
        SessionError(kind: .unavailable, apiError: nil, message: message)
    }

    /// The caller's task was cancelled before an answer came.
    public static let cancelled = SessionError(kind: .cancelled, apiError: nil, message: "the operation was cancelled")

    public var isRejected: Bool { kind == .rejected }
    public var isCancelled: Bool { kind == .cancelled }
    public var description: String { message }
}
