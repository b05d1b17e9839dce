import Synchronization

/// Work raced against a time limit, without waiting for the work once the limit has passed: a
/// database call that ignores cancellation must not hold its caller past its deadline (a
/// structured task group would wait for such a child).
public enum Deadline {
    public enum Outcome<Success: Sendable>: Sendable {
        case finished(Result<Success, any Error>)
        case timedOut
    }

    /// Runs `body` and waits for it for at most `timeout` on `clock`. Past the limit the work is
    /// cancelled and left to end on its own (`work`, for a caller that must know when it has).
    public static func race<Success: Sendable>(
        within timeout: Duration, clock: ServerClock, _ body: @escaping @Sendable () async throws -> Success
    ) async -> (outcome: Outcome<Success>, work: Task<Success, any Error>) {
        let gate = Gate<Success>()
        // A task of its own: the one thing here that may outlive its caller.
        let work = Task {
            do {
                let value = try await body()
                gate.resume(.finished(.success(value)))
                return value
            } catch {
                gate.resume(.finished(.failure(error)))
                throw error
            }
        }
        let outcome = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                try? await clock.sleep(for: timeout)
                gate.resume(.timedOut)
            }
            let outcome = await gate.outcome()
            group.cancelAll()
            return outcome
        }
        if case .timedOut = outcome { work.cancel() }
        return (outcome, work)
    }

    /// Resolves once, with whichever outcome comes first.
    private final class Gate<Success: Sendable>: Sendable {
        private let state = Mutex<(outcome: Outcome<Success>?, waiter: CheckedContinuation<Outcome<Success>, Never>?)>((nil, nil))

        func resume(_ outcome: Outcome<Success>) {
            let waiter = state.withLock { state -> CheckedContinuation<Outcome<Success>, Never>? in
                guard state.outcome == nil else { return nil }
                state.outcome = outcome
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: outcome)
        }

        func outcome() async -> Outcome<Success> {
            await withCheckedContinuation { continuation in
                let settled = state.withLock { state -> Outcome<Success>? in
                    if let outcome = state.outcome { return outcome }
                    state.waiter = continuation
                    return nil
                }
                if let settled { continuation.resume(returning: settled) }
            }
        }
    }
}
