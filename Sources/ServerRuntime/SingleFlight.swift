import Synchronization

/// One run of some work at a time, shared by everyone who asks for it meanwhile: loading a
/// session however many requests wait for it, registering as a member once however many
/// rounds notice the lease was lost.
///
/// The run is a task of its own, so that one waiter's cancellation does not cancel the work
/// the others wait for.
public final class SingleFlight<Success: Sendable>: Sendable {
    private let running = Mutex<Task<Success, any Error>?>(nil)

    public init() {}

    /// The result of `body`, or of the run under way when there is one.
    public func run(_ body: @escaping @Sendable () async throws -> Success) async throws -> Success {
        let task = running.withLock { running -> Task<Success, any Error> in
            if let running { return running }
            let task = Task { try await body() }
            running = task
            return task
        }
        defer { running.withLock { if $0 == task { $0 = nil } } }
        return try await task.value
    }

    /// Whether a run is under way.
    public var isRunning: Bool { running.withLock { $0 != nil } }

    /// Returns once the run under way, if any, has ended (however it ended).
    public func waitForRun() async {
        _ = try? await running.withLock({ $0 })?.value
    }
}
