import Synchronization

/// The promise of one queued mutation: resolved when its batch is durable, or failed.
///
/// Writers wait on their own ticket; a reader waits on the ticket of the last write it must
/// not outrun (the output gate: nothing is answered that a crash could still take back).
final class CommitTicket: Sendable {
    /// The batch a mutation was committed in, for its trace.
    struct Batch: Sendable {
        var size: Int
        var commitSeconds: Double
        /// `sqlite` or `postgresql`.
        var system: String
    }

    private struct State {
        var result: Result<Void, any Error>?
        var batch: Batch?
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }

    private let state = Mutex(State())

    /// Whether the ticket has been resolved (either way).
    var isResolved: Bool { state.withLock { $0.result != nil } }

    /// The batch it was committed in, once it was.
    var batch: Batch? { state.withLock { $0.batch } }

    func resolve(_ result: Result<Void, any Error>, batch: Batch? = nil) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            state.batch = batch
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    /// Returns when the mutation is durable; throws if it will never be.
    func wait() async throws {
        try await withCheckedThrowingContinuation { continuation in
            let result = state.withLock { state -> Result<Void, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }
}
