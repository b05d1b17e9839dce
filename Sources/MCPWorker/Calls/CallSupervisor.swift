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
/// - under 2026-07-28, the client closes the connection or the stream the call answers on;
/// - it runs as a task that was cancelled, on any worker, or that another worker took over.
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
        /// Opened when the call must stop: its client has gone (2026-07-28), its task was
        /// cancelled or is run by another worker now.
        var latches: [Latch] = []
    }

    /// Runs `work` unless a stopper fires first, in which case the work is cancelled and this
    /// throws `CancellationError`. `companions` run beside the work until it ends.
    func run<Result: Sendable>(
        _ stoppers: Stoppers, companions: [@Sendable () async -> Void] = [],
        _ work: @escaping @Sendable () async throws -> Result
    ) async throws -> Result {
        var reasons: [@Sendable () async -> Void] = stoppers.latches.map { latch in { await latch.wait() } }
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
                    if !Task.isCancelled, await sessions.pollRunningCall(sessionID: session, request: request) { return }
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
