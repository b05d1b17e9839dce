import SessionModel

/// The writes a worker made in memory while no host could take them, waiting to reach their
/// host: per session, in the order they were made, each under the idempotency key it was
/// first sent with. A pure value; `DurableSessionManager` keeps it under a lock and replays it.
///
/// The rules: a session with writes waiting takes new writes behind them (never ahead);
/// replay goes oldest first and stops at the first write that does not get through; a write
/// the host answered, or refused (it would have refused it then too), leaves the journal.
struct FallbackJournal: Sendable {
    /// A write made in the fallback, waiting to reach its host.
    struct Write: Sendable {
        let update: SessionUpdate
        let key: String
    }

    /// What came of offering a session's oldest write to its host.
    enum Delivery: Sendable, Equatable {
        case answered
        case refused
        /// No host took it (or the caller gave up): it stays, and so do the ones behind it.
        case notDelivered
    }

    /// What to do next in a session's replay.
    enum Step: Sendable {
        /// Offer this write.
        case offer(Write)
        /// The session has nothing left: its in-memory copy can go.
        case emptied
        /// Stop: a write did not get through, or another replay took it meanwhile.
        case stop
    }

    private var pending: [String: [Write]] = [:]
    /// Sessions in the order their first waiting write was made.
    private(set) var sessions: [String] = []

    /// Writes waiting, over every session.
    var count: Int { pending.values.reduce(0) { $0 + $1.count } }

    /// Whether `sessionID` has writes waiting: a new write of it must queue behind them.
    func isWaiting(_ sessionID: String) -> Bool { pending[sessionID] != nil }

    mutating func append(_ write: Write, for sessionID: String) {
        if pending[sessionID] == nil { sessions.append(sessionID) }
        pending[sessionID, default: []].append(write)
    }

    /// The first step of replaying `sessionID`.
    func start(_ sessionID: String) -> Step {
        pending[sessionID]?.first.map(Step.offer) ?? .stop
    }

    /// The write `key` of `sessionID` was offered; the next step.
    mutating func offered(_ key: String, of sessionID: String, _ delivery: Delivery) -> Step {
        switch delivery {
        case .answered, .refused: drop(key, of: sessionID)
        case .notDelivered: .stop
        }
    }

    private mutating func drop(_ key: String, of sessionID: String) -> Step {
        // Another replay of the same session may have taken it already.
        guard var writes = pending[sessionID], writes.first?.key == key else { return .stop }
        writes.removeFirst()
        guard let next = writes.first else {
            pending[sessionID] = nil
            sessions.removeAll { $0 == sessionID }
            return .emptied
        }
        pending[sessionID] = writes
        return .offer(next)
    }

    /// Forgets every waiting write of `principal` (its data is being deleted).
    mutating func forget(principal: String) {
        for (id, writes) in pending {
            let kept = writes.filter { $0.update.principal != principal }
            pending[id] = kept.isEmpty ? nil : kept
        }
        sessions.removeAll { pending[$0] == nil }
    }
}
