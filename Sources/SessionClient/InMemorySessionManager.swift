import Foundation
import SessionModel

/// Sessions in this process's memory: local development (no `--hosts`), and the fallback of
/// `DurableSessionManager`. The same transitions and limits as a host (`SessionState`).
public actor InMemorySessionManager: SessionManager {
    private var sessions: [String: SessionState] = [:]
    private let limits: SessionLimits
    private let now: @Sendable () -> Double

    public init(limits: SessionLimits = .default, now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.limits = limits
        self.now = now
    }

    public func appendMessage(_ sessionID: String, _ message: MessageInput) throws(SessionError) {
        try apply(.appendMessage(message), to: sessionID)
    }

    public func appendMessages(_ sessionID: String, _ messages: [MessageInput]) throws(SessionError) {
        try apply(.appendMessages(messages), to: sessionID)
    }

    public func history(_ sessionID: String) -> SessionHistory {
        guard let state = sessions[sessionID] else { return SessionHistory() }
        return SessionHistory(messages: state.record.messages, metadata: state.record.metadata)
    }

    public func record(_ sessionID: String) -> SessionRecord? {
        sessions[sessionID]?.record
    }

    public func setHistory(_ sessionID: String, _ messages: [MessageInput]) throws(SessionError) {
        try apply(.setHistory(messages), to: sessionID)
    }

    public func updateMetadata(_ sessionID: String, _ metadata: JSONObject) throws(SessionError) {
        try apply(.updateMetadata(metadata), to: sessionID)
    }

    public func clear(_ sessionID: String) {
        sessions[sessionID] = nil
    }

    public func health() -> SessionStoreHealth {
        SessionStoreHealth(mode: "in-memory", detail: "sessions are lost when this process stops (no --hosts)")
    }

    /// Applies an operation as a host would; also used to mirror fallback writes.
    func apply(_ operation: SessionOperation, to sessionID: String) throws(SessionError) {
        do {
            try SessionID.validate(sessionID, limits: limits)
        } catch {
            throw .rejected(error)
        }
        var state = sessions[sessionID] ?? SessionState(absent: sessionID)
        do {
            _ = try state.apply(operation, now: now(), limits: limits)
        } catch {
            throw .rejected(error)
        }
        sessions[sessionID] = state.exists ? state : nil
    }

    /// Starts a session from a known state unless this store already holds it.
    func seed(_ sessionID: String, _ state: SessionState?) {
        guard sessions[sessionID] == nil, let state, state.exists else { return }
        sessions[sessionID] = state
    }

    /// Forgets a session (its writes have reached their host).
    func forget(_ sessionID: String) {
        sessions[sessionID] = nil
    }
}
