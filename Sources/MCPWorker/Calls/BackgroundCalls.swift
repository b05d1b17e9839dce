import Foundation
import HTTPServing
import Hummingbird
import MCP
import ServiceLifecycle
import Synchronization

/// Calls that outlive the request that started them: under the session revisions a streamed
/// call keeps running when its client goes away, so that its answer is stored and the
/// stream can be resumed from another connection.
///
/// Tasks run the same way (`TaskRunner`), each stopping its call at graceful shutdown.
///
/// They run as children of one task group that this service owns, never as unowned tasks:
/// graceful shutdown stops taking new ones and waits for those running (the HTTP server, the
/// last service, has drained by then, so a call left is one whose client went away), and
/// cancelling the service cancels them.
final class BackgroundCalls: Service, Sendable {
    typealias Job = @Sendable () async -> Void
    private let jobs: AsyncStream<Job>
    private let intake: AsyncStream<Job>.Continuation

    init() {
        (jobs, intake) = AsyncStream.makeStream(of: Job.self)
    }

    /// Starts `job` as a child of the service's group; false once the service is shutting down.
    func start(_ job: @escaping Job) -> Bool {
        if case .enqueued = intake.yield(job) { return true }
        return false
    }

    func run() async {
        await withDiscardingTaskGroup { group in
            await withGracefulShutdownHandler {
                for await job in jobs { group.addTask { await job() } }
            } onGracefulShutdown: { [intake] in
                intake.finish()
            }
        }
    }
}
