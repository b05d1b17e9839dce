import Foundation
import HTTPServing
import Hummingbird
import MCP
import ServiceLifecycle
import Synchronization

/// Runs tool calls so that they can be stopped, whichever way the client asks.
///
/// A call stops, its upstream transfer aborted and nothing stored, when
/// - `notifications/cancelled` reaches this worker (the call's latch in `inFlight` opens);
/// - it reaches another worker, which leaves a mark in the transport session that this one
///   looks for every `markPollInterval` (any worker serves any request of a session);
/// - under 2026-07-28, the client closes the connection or the stream the call answers on.
///
/// Every call, streamed or not, runs as the first child of one task group; the reasons to
/// stop and any companion (a heartbeat) are its siblings, so nothing outlives the call.
struct CallSupervisor: Sendable {
    let sessions: TransportSessions
    let inFlight = InFlightCalls()
    /// Where calls that outlive their request run (a service of the worker).
    let background = BackgroundCalls()
    var markPollInterval: Duration = .milliseconds(250)

    /// Why a call may stop early.
    struct Stoppers: Sendable {
        /// The session-revision request being run, for `notifications/cancelled`.
        var request: (session: String, id: ID)?
        /// Opened when the client has gone (2026-07-28).
        var clientGone: [Latch] = []
    }

    /// Runs `work` unless a stopper fires first, in which case the work is cancelled and this
    /// throws `CancellationError`. `companions` run beside the work until it ends.
    func run<Result: Sendable>(
        _ stoppers: Stoppers, companions: [@Sendable () async -> Void] = [],
        _ work: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        var reasons: [@Sendable () async -> Void] = stoppers.clientGone.map { latch in { await latch.wait() } }
        var key: String?
        if let (session, id) = stoppers.request {
            let local = Latch()
            let registered = InFlightCalls.key(session: session, request: id)
            inFlight.register(registered, local)
            key = registered
            let sessions = self.sessions
            let interval = markPollInterval
            let request = InFlightCalls.text(of: id)
            reasons.append { await local.wait() }
            // The same poll keeps the session in use while the call runs (TransportSessions).
            reasons.append {
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if !Task.isCancelled, await sessions.isCancelRequested(sessionID: session, request: request) { return }
                }
            }
        }
        defer { if let key { inFlight.remove(key) } }
        return try await withThrowingTaskGroup(of: Result?.self) { group in
            group.addTask { try await work() }
            for reason in reasons {
                group.addTask {
                    await reason()
                    return nil
                }
            }
            for companion in companions {
                group.addTask {
                    await companion()
                    // A companion ends only once cancelled: it is never a reason to stop.
                    try await Task.sleep(for: .seconds(86_400 * 365))
                    return nil
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let result = first else { throw CancellationError() }
            return result
        }
    }
}

/// The calls this worker runs for session clients, by session and request id, each with the
/// latch that stops it.
final class InFlightCalls: Sendable {
    private let calls = Mutex<[String: Latch]>([:])

    static func key(session: String, request: ID) -> String {
        "\(session)/\(Self.text(of: request))"
    }

    static func text(of id: ID) -> String {
        switch id {
        case .string(let text): "s:\(text)"
        case .number(let number): "n:\(number)"
        }
    }

    func register(_ key: String, _ latch: Latch) {
        calls.withLock { $0[key] = latch }
    }

    func remove(_ key: String) {
        _ = calls.withLock { $0.removeValue(forKey: key) }
    }

    /// Stops the call if it runs here; returns whether it did.
    func cancel(_ key: String) -> Bool {
        guard let latch = calls.withLock({ $0.removeValue(forKey: key) }) else { return false }
        latch.open()
        return true
    }
}

/// Calls that outlive the request that started them: under the session revisions a streamed
/// call keeps running when its client goes away, so that its answer is stored and the
/// stream can be resumed from another connection.
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

/// The answer that refuses a request's session (unknown, ended, another principal's: 404;
/// the store failing: 503), thrown out of a call that waited for its admission.
struct SessionRefusal: Error, @unchecked Sendable {
    let response: Response
}

/// The outcome of a session check running beside a call: the call asks for it (`session()`)
/// before its first side effect, and waits if the check is still on its way.
final class Admission: Sendable {
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
