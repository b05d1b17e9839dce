import Foundation
import ServerRuntime
import SessionModel

/// Sessions in this process's memory: local development (no `--hosts`), and the fallback of
/// `DurableSessionManager`. The same transitions and limits as a host (`SessionState`).
public actor InMemorySessionManager: SessionManager {
    private var sessions: [String: SessionState] = [:]
    private let limits: SessionLimits
    /// Seconds a session without a lifetime of its own is kept after its last write (0: for ever).
    private let retention: Double
    private let now: @Sendable () -> Double
    private var writesSincePrune = 0

    public init(
        limits: SessionLimits = .default, retention: Double = 90 * 86_400, now: @escaping @Sendable () -> Double = ServerClock.system.wall
    ) {
        self.limits = limits
        self.retention = retention
        self.now = now
    }

    public func write(_ sessionID: String, _ update: SessionUpdate) throws(SessionError) {
        try apply(update, to: sessionID)
    }

    public func history(_ sessionID: String, last: Int?) -> SessionHistory {
        guard let state = live(sessionID) else { return SessionHistory(messageCount: 0) }
        let messages = last.map { Array(state.record.messages.suffix($0)) } ?? state.record.messages
        return SessionHistory(
            messages: messages, metadata: state.record.metadata, lastUpdated: state.record.lastUpdated,
            expiresAt: state.record.expiresAt(retention: retention), messageCount: state.record.messages.count)
    }

    public func record(_ sessionID: String) -> SessionRecord? {
        live(sessionID)?.record
    }

    public func clear(_ sessionID: String) {
        sessions[sessionID] = nil
    }

    public func list(_ listing: SessionListing) -> SessionPage {
        let matching = sessions.values.filter { state in
            let record = state.record
            return !state.isExpired(now: now(), retention: retention) && (listing.principal.map { record.principal == $0 } ?? true)
                && (listing.prefix.map { record.id.hasPrefix($0) } ?? true)
        }
        let summaries = matching.map { state in
            HostAPI.SessionSummary(
                id: state.record.id, principal: state.record.principal, metadata: state.record.metadata, createdAt: state.record.createdAt,
                lastUpdated: state.record.lastUpdated, messageCount: state.record.messages.count, expiresAfter: state.record.expiresAfter)
        }.filter { summary in listing.before.map { $0 < summary.cursor } ?? true }
        return SessionPage.merge([HostAPI.Listing(data: summaries, next: nil)], limit: listing.limit)
    }

    public func erase(principal: String) -> PrincipalErasure {
        let ids = sessions.filter { $0.value.record.principal == principal }.map(\.key)
        for id in ids { sessions[id] = nil }
        return PrincipalErasure(removed: ids.count)
    }

    public func health() -> SessionStoreHealth {
        SessionStoreHealth(mode: "in-memory", detail: "sessions are lost when this process stops (no --hosts)")
    }

    /// Applies an update as a host would; also used to mirror fallback writes.
    func apply(_ update: SessionUpdate, to sessionID: String) throws(SessionError) {
        do {
            try SessionID.validate(sessionID, limits: limits)
        } catch {
            throw .rejected(error)
        }
        var state = live(sessionID) ?? SessionState(absent: sessionID)
        do {
            _ = try state.apply(update, now: now(), limits: limits)
        } catch {
            throw .rejected(error)
        }
        sessions[sessionID] = state.exists ? state : nil
        pruneNowAndThen()
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

    /// A session that has not expired; an expired one is forgotten, as a host's sweep would.
    private func live(_ sessionID: String) -> SessionState? {
        guard let state = sessions[sessionID] else { return nil }
        guard !state.isExpired(now: now(), retention: retention) else {
            sessions[sessionID] = nil
            return nil
        }
        return state
    }

    /// Every thousandth write drops what expired: memory stays bounded by what is alive.
    private func pruneNowAndThen() {
        writesSincePrune += 1
        guard writesSincePrune >= 1_000 else { return }
        writesSincePrune = 0
        let time = now()
        sessions = sessions.filter { !$0.value.isExpired(now: time, retention: retention) }
    }
}
