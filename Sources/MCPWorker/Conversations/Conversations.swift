import Crypto
import Foundation
import Greptile
import ServerRuntime
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
    /// Who may see and continue which conversation (shared ones).
    let catalog: ConversationCatalog
    let clock: ServerClock

    /// Longest `session_id` a caller may choose.
    static let maxSessionIDLength = 64

    static func storageID(principal: String, sessionID: String) -> String {
        StorageKeys.conversation(principal: principal, sessionID: sessionID)
    }

    /// Whether a record under a conversation id holds a conversation (older ones carry no kind).
    static func isConversation(_ metadata: JSONObject) -> Bool {
        (metadata["kind"]?.stringValue ?? kind) == kind
    }

    /// Whether a stored record is a conversation an export holds: a conversation of the
    /// worker's (not a share's pointer), or a session written through the host API under an
    /// id of its own. Not the worker's own bookkeeping: MCP transport sessions and their
    /// event journals (`mcp-`), usage (`usage:`), sign-in (`oauth:`), tasks (`task:`, `task-question:`).
    static func isExported(id: String, metadata: JSONObject) -> Bool {
        if id.hasPrefix(StorageKeys.conversationPrefix) { return isConversation(metadata) }
        let bookkeeping = [
            StorageKeys.transportPrefix, StorageKeys.usagePrefix, StorageKeys.signInPrefix, StorageKeys.taskPrefix, StorageKeys.taskQuestionPrefix,
        ]
        return !bookkeeping.contains { id.hasPrefix($0) }
    }

    /// Where a principal's conversations start in id order (everyone's for nil).
    static func storagePrefix(principal: String?) -> String {
        StorageKeys.conversations(of: principal)
    }

    /// The principal of a conversation's host record id; nil when it is not one.
    static func principal(ofStorageID id: String) -> String? {
        guard let (principal, session) = StorageKeys.conversationParts(id) else { return nil }
        guard SessionUpdate.isValidPrincipal(principal), isValidSessionID(session) else { return nil }
        return principal
    }

    /// The `sessionId` Greptile gets for a conversation: a digest of the principal and the
    /// caller's id, so two principals who pick the same `session_id` (or one who reuses
    /// another's) never share Greptile's own history of it.
    static func upstreamSessionID(principal: String, sessionID: String) -> String {
        let digest = SHA256.hash(data: Data("greptile-mcp/conversation\u{0}\(principal)\u{0}\(sessionID)".utf8))
        return digest.prefix(16).map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined()
    }

    /// Whether a caller's `session_id` is one: 1 to `maxSessionIDLength` of the id alphabet (`SessionID.alphabet`).
    static func isValidSessionID(_ given: String) -> Bool {
        !given.isEmpty && given.utf8.count <= maxSessionIDLength && given.utf8.allSatisfy(SessionID.isAllowed)
    }

    /// The id of a conversation a call starts without naming one.
    static func newSessionID() -> String { UUID().uuidString.lowercased() }

    /// What a conversation's metadata says of it, for lists of conversations: what kind of
    /// record it is, its title (its first question) and the repositories it is about.
    static let kind = "conversation"

    /// A conversation under way: what goes upstream, and what the stored history held.
    struct Turn: Sendable {
        /// The newest messages of the history (or of `previous_messages`), the question last.
        let messages: [QueryMessage]
        /// The conversation's first question, when this turn starts it (or replaces its history).
        let title: String?
        /// Where the turn is stored: the caller's own conversation, or one shared with it.
        let target: ConversationCatalog.Target
        /// Whether the conversation was stored when the turn began: then the turn's write
        /// must find it still there, never start a truncated one in its place.
        let existed: Bool
        /// How long the conversation lives after a write (nil: for ever), so that a turn
        /// longer than that keeps it in use.
        let lifetime: Double?
        /// The conversation's last write when the turn began.
        let lastUpdated: Double?
        /// Marks of tasks' turns old enough to go (`taskMarker`): the turn's write removes them.
        var staleMarkers: [String] = []
        /// The history's message count the turn was asked with, which its write expects; nil:
        /// the write does not check (a streamed or a task's turn, whose answer cannot be asked
        /// again unseen, or `previous_messages`, which replace the history).
        var expectedMessages: Int?
        /// Whether the history came from the worker's memory (`SessionManager.turnView`).
        var remembered = false

        /// How often the turn must mark the conversation used while it runs; nil when it
        /// need not: a new conversation, or one that outlives any call (a day between marks).
        var keepAliveInterval: Duration? {
            guard existed, let lifetime, lifetime / 3 <= 86_400 else { return nil }
            return .milliseconds(Int64(max(lifetime / 3, 0.05) * 1000))
        }

        /// How long after `now` the first mark is due: once a third of the lifetime has passed
        /// since the last write (at once if it has already).
        func firstKeepAlive(now: Double) -> Duration {
            guard let lifetime, let lastUpdated else { return .zero }
            return .milliseconds(Int64(max(0, lastUpdated + lifetime / 3 - now) * 1000))
        }

        /// The `sessionId` Greptile gets: the conversation's, whoever continues it.
        var upstreamSessionID: String { Conversations.upstreamSessionID(principal: target.owner, sessionID: target.ownerSessionID) }
    }

    /// What to send upstream: the newest messages of the history (or of `previousMessages`,
    /// which replace it), the user's turn last. Nothing is stored yet. A conversation shared
    /// with the caller is continued where it is, if its owner allows it.
    ///
    /// A `conditional` turn is written only onto the history it was asked with (its write
    /// expects the message count): its history may then come from the worker's memory, with no
    /// host asked, and a turn that finds the history changed when it is stored throws
    /// `TurnConflict` and is asked again.
    func begin(
        principal: String, sessionID: String, query: String, previousMessages: [MessageInput]?, conditional: Bool = false
    ) async throws -> Turn {
        // One read: the caller's own history, or the pointer to a conversation shared with it.
        // Only the window goes upstream: only the window is read (previous_messages read nothing).
        let tail = previousMessages == nil ? window : 0
        let conditional = conditional && previousMessages == nil
        let view: @Sendable (String) async throws(SessionError) -> SessionHistory = { [store, window] id throws(SessionError) in
            conditional ? try await store.turnView(id, last: window) : try await store.history(id, last: tail)
        }
        var stored = try await view(Self.storageID(principal: principal, sessionID: sessionID))
        guard let target = try await catalog.target(principal: principal, sessionID: sessionID, ownMetadata: stored.metadata) else {
            throw ToolError("the conversation '\(sessionID)' is no longer shared with you: start a new one, or ask its owner again")
        }
        if target.pointer != nil {
            guard target.access.mayContinue else {
                throw ToolError("'\(sessionID)' is shared with you to read only: ask \(target.owner) to share it with access continue")
            }
            guard previousMessages == nil else {
                throw ToolError(
                    "previous_messages replaces a conversation's history, which only its owner (\(target.owner)) may do: "
                        + "ask without previous_messages to continue '\(sessionID)', or start a conversation of your own")
            }
            stored = try await view(target.storageID)
        }
        let history: [Message]
        if let previousMessages {
            history = previousMessages.map { Message(role: $0.role, content: $0.content, timestamp: 0) }
        } else {
            history = stored.messages
        }
        let all = history + [Message(role: .user, content: query, timestamp: 0)]
        let turns = all.filter { $0.role != .system }.suffix(window)
        // A conversation starts when none of its questions is stored yet: its title would say
        // so, or (stored before titles were kept) the messages the window shows.
        let starts = previousMessages != nil || (stored.metadata["title"] == nil && !history.contains { $0.role == .user })
        return Turn(
            messages: turns.map { QueryMessage(id: nil, content: $0.content, role: $0.role.rawValue) },
            title: starts ? all.first { $0.role == .user }.map { Self.title(of: $0.content) } : nil, target: target,
            existed: stored.exists, lifetime: stored.lifetime, lastUpdated: stored.lastUpdated,
            staleMarkers: Self.staleMarkers(in: stored.metadata, now: clock.wallNow), expectedMessages: conditional ? stored.messageCount : nil,
            remembered: stored.remembered)
    }

    /// A conditional turn's write found the conversation changed since its history was read
    /// (another turn was stored first, or, for a history from memory, the conversation was
    /// deleted or expired): nothing was stored, and the turn is to be asked again.
    struct TurnConflict: Error {}

    /// How often a conditional turn is asked again after a conflict before it is stored as a
    /// turn asked with an older history would have been (without the check).
    static let conflictRetries = 2

    /// Keeps the turn's conversation from expiring while the turn runs (its lifetime may be
    /// shorter than a Greptile call): a write that changes nothing but its last use, every
    /// `interval`, until cancelled. Only a conversation still there is marked.
    func keepInUse(_ turn: Turn, every interval: Duration) async {
        // The writer's clock against the host's last_updated: a skew of less than a third of
        // the lifetime is harmless.
        var wait = turn.firstKeepAlive(now: clock.wallNow)
        while !Task.isCancelled {
            do { try await clock.sleep(for: wait) } catch { return }
            wait = interval
            try? await store.write(turn.target.storageID, SessionUpdate(.updateMetadata([:]), principal: turn.target.owner, mustExist: true))
        }
    }

    /// A question as a conversation's title: its first line, at most 120 characters.
    static func title(of question: String) -> String {
        let line = question.split(whereSeparator: \.isNewline).first.map(String.init) ?? question
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        return trimmed.count > 120 ? String(trimmed.prefix(119)) + "…" : trimmed
    }

    /// Records the exchange once Greptile has answered, in one write: the user's turn and the
    /// answer's `message` as the assistant's turn (replacing the history with
    /// `previousMessages` when given), and what the conversation is about. The write is
    /// atomic, so a refused answer (a limit) stores the question neither; a failed query
    /// stores nothing.
    ///
    /// A task's turn (`marker`) is stored once: its write expects the conversation not to
    /// carry the task's mark yet, and carries it. Found there already, the turn was stored by
    /// another runner of the task (nothing more to do), or the task was cancelled first
    /// (`TaskStop.cancelled`: nothing is stored).
    func finish(
        _ turn: Turn, principal: String, query: String, askedAt: Double, answer: String, previousMessages: [MessageInput]?,
        repositories: [RepositoryRef], marker: String? = nil
    ) async throws {
        let exchange = [MessageInput(role: .user, content: query, timestamp: askedAt), MessageInput(role: .assistant, content: answer)]
        var metadata: JSONObject = [
            "kind": .string(Self.kind),
            "repositories": .array(
                repositories.map { .object(["remote": .string($0.remote), "repository": .string($0.repository), "branch": .string($0.branch)]) }),
        ]
        if let title = turn.title { metadata["title"] = .string(title) }
        for key in turn.staleMarkers { metadata[key] = .null }
        if let marker { metadata[marker] = ["outcome": .string(Self.answeredMark), "at": .double(clock.wallNow)] }
        let operation: SessionOperation =
            previousMessages.map { .setHistory($0 + exchange, metadata: metadata) } ?? .appendMessages(exchange, metadata: metadata)
        // The owner's record decides, in the same write: a share revoked while the turn ran, or
        // a conversation deleted meanwhile, refuses it (the host checks as it commits).
        var refused: SessionError?
        do {
            try await store.write(
                turn.target.storageID,
                SessionUpdate(
                    operation, principal: turn.target.owner, mustExist: turn.existed, continuedBy: turn.target.pointer == nil ? nil : principal,
                    expect: marker.map { [$0: .null] }, expectMessages: turn.expectedMessages))
        } catch {
            refused = error
        }
        if let refused {
            switch refused.apiError?.code {
            case .historyChanged: throw TurnConflict()
            // Remembered as there, the conversation was gone: what a read would have shown.
            case .sessionNotFound where turn.remembered: throw TurnConflict()
            default: break
            }
            guard let marker, refused.apiError?.code == .preconditionFailed else { throw refused }
            guard try await mark(marker, in: turn.target.storageID) == Self.answeredMark else { throw TaskStop.cancelled }
            return
        }
        if let pointer = turn.target.pointer {
            // A shared conversation continued comes up first in the list of the one who continued it.
            try? await store.write(pointer, SessionUpdate(.updateMetadata(["last_turn": .double(askedAt)]), principal: principal))
        }
    }

    // MARK: Tasks' turns

    /// The metadata key a task's turn marks its conversation with (`task:<id>`), so that the
    /// turn is stored at most once, and never once the task is cancelled.
    static func taskMarker(_ taskID: String) -> String { StorageKeys.task(taskID) }

    static let answeredMark = "answered"
    static let cancelledMark = "cancelled"
    /// The kind of a record a cancellation made where no conversation was yet: not a
    /// conversation (never listed or exported) until a turn is stored in it.
    static let cancelledKind = "task-cancelled"
    /// How long a task's mark stays in its conversation: far longer than any runner of the task
    /// could still be writing.
    static let markLifetime: Double = 86_400

    /// The marks of tasks in a conversation's metadata older than `markLifetime`.
    static func staleMarkers(in metadata: JSONObject, now: Double) -> [String] {
        metadata.compactMap { key, value in
            guard key.hasPrefix(StorageKeys.taskPrefix), let at = value.objectValue?["at"]?.numberValue, now - at > markLifetime else { return nil }
            return key
        }.sorted()
    }

    /// What a conversation's mark of a task says (`answered`, `cancelled`), or nil.
    private func mark(_ marker: String, in storageID: String) async throws(SessionError) -> String? {
        try await store.history(storageID, last: 0).metadata[marker]?.objectValue?["outcome"]?.stringValue
    }

    /// Fences a cancelled task's turn out of its conversation: true when no answer of the task
    /// is stored there, now or later; false when its answer was stored first.
    func cancelTurn(principal: String, sessionID: String, marker: String) async throws(SessionError) -> Bool {
        // A conversation no longer shared with the task's principal takes no turn of it anyway.
        guard let target = try await catalog.target(principal: principal, sessionID: sessionID) else { return true }
        let mark: JSONObject = [marker: ["outcome": .string(Self.cancelledMark), "at": .double(clock.wallNow)]]
        for _ in 0..<3 {
            do {
                try await store.write(
                    target.storageID, SessionUpdate(.updateMetadata(mark), principal: target.owner, mustExist: true, expect: [marker: .null]))
                return true
            } catch let error where error.apiError?.code == .sessionNotFound {
                // No conversation yet: one is made that holds only the mark, so that the task's
                // first turn cannot make it later.
                var creating = mark
                creating["kind"] = .string(Self.cancelledKind)
                do {
                    try await store.write(
                        target.storageID, SessionUpdate(.updateMetadata(creating), principal: target.owner, expect: [marker: .null, "kind": .null]))
                    return true
                } catch let error where error.apiError?.code == .preconditionFailed {
                    continue
                }
            } catch let error where error.apiError?.code == .preconditionFailed {
                switch try await self.mark(marker, in: target.storageID) {
                case Self.answeredMark?: return false
                case Self.cancelledMark?: return true
                default: continue
                }
            }
        }
        throw SessionError.unavailable("the conversation kept changing while the task was being cancelled; try again")
    }
}
