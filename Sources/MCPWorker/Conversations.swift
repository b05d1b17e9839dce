import Crypto
import Foundation
import Greptile
import SessionClient
import SessionModel

/// The conversations of `query_repository`: history kept in the session store under the
/// caller's `session_id`, scoped to the principal so other keys never see them.
///
/// The seed's logic, with its bug fixed: history (or `previous_messages`, which replaces
/// it) plus the user's turn go to Greptile, and the answer's `message` is stored as the
/// assistant's turn. Everything is kept; only the newest `window` messages go upstream.
struct Conversations: Sendable {
    let store: any SessionManager
    /// Most messages sent to Greptile with a query.
    let window: Int

    /// Longest `session_id` a caller may choose.
    static let maxSessionIDLength = 64

    static func storageID(principal: String, sessionID: String) -> String {
        "conv:\(principal):\(sessionID)"
    }

    /// The `sessionId` Greptile gets for a conversation: a digest of the principal and the
    /// caller's id, so two principals who pick the same `session_id` (or one who reuses
    /// another's) never share Greptile's own history of it.
    static func upstreamSessionID(principal: String, sessionID: String) -> String {
        let digest = SHA256.hash(data: Data("greptile-mcp/conversation\u{0}\(principal)\u{0}\(sessionID)".utf8))
        return digest.prefix(16).map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// Checks a caller's session id, or makes a new one when none is given.
    static func sessionID(_ given: String?) throws(ToolError) -> String {
        guard let given else { return UUID().uuidString.lowercased() }
        guard !given.isEmpty, given.utf8.count <= maxSessionIDLength, given.utf8.allSatisfy(SessionID.isAllowed) else {
            throw ToolError("session_id must be 1 to \(maxSessionIDLength) of A-Z a-z 0-9 . _ ~ : -")
        }
        return given
    }

    /// What to send upstream: the newest messages of the history (or of `previousMessages`,
    /// which replace it), the user's turn last. Nothing is stored yet.
    func begin(
        principal: String, sessionID: String, query: String, previousMessages: [MessageInput]?
    ) async throws(SessionError) -> [QueryMessage] {
        let history: [Message]
        if let previousMessages {
            history = previousMessages.map { Message(role: $0.role, content: $0.content, timestamp: 0) }
        } else {
            history = try await store.history(Self.storageID(principal: principal, sessionID: sessionID)).messages
        }
        let turns = (history + [Message(role: .user, content: query, timestamp: 0)])
            .filter { $0.role != .system }
            .suffix(window)
        return turns.map { QueryMessage(id: nil, content: $0.content, role: $0.role.rawValue) }
    }

    /// Records the exchange once Greptile has answered, in one write: the user's turn and the
    /// answer's `message` as the assistant's turn (replacing the history with
    /// `previousMessages` when given). The write is atomic, so a refused answer (a limit)
    /// stores the question neither; a failed query stores nothing.
    func finish(
        principal: String, sessionID: String, query: String, askedAt: Double, answer: String, previousMessages: [MessageInput]?
    ) async throws(SessionError) {
        let id = Self.storageID(principal: principal, sessionID: sessionID)
        let exchange = [MessageInput(role: .user, content: query, timestamp: askedAt), MessageInput(role: .assistant, content: answer)]
        if let previousMessages {
            try await store.setHistory(id, previousMessages + exchange)
        } else {
            try await store.appendMessages(id, exchange)
        }
    }
}
