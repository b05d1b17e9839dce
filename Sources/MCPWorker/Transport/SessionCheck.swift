import Foundation
import Synchronization

/// Why a request's transport session cannot be served: unknown (ended, expired, another
/// principal's), or the session store failing. The responder turns it into HTTP (404, 503).
enum SessionRefusal: Error, Sendable, Equatable {
    case notFound
    case storeFailed(String)
}

/// The outcome of a session check running beside a call: the call asks for it (`session()`)
/// before its first side effect, and waits if the check is still on its way.
final class SessionCheck: Sendable {
    typealias Outcome = Result<TransportSession, SessionRefusal>

    private struct State {
        var outcome: Outcome?
        var waiters: [CheckedContinuation<Outcome, Never>] = []
    }

    private let state = Mutex(State())

    func settle(_ outcome: Outcome) {
        let waiters = state.withLock { state -> [CheckedContinuation<Outcome, Never>] in
            state.outcome = outcome
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    /// The check's outcome, once it has one.
    func outcome() async -> Outcome {
        await withCheckedContinuation { continuation in
            let outcome = state.withLock { state -> Outcome? in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    /// The session once checked; throws the refusal when it is not one the caller may use.
    @discardableResult
    func session() async throws(SessionRefusal) -> TransportSession {
        try await outcome().get()
    }
}
