import Foundation
import MCP
import Synchronization

/// The tool calls this worker is running for session clients, by session and request id,
/// so that `notifications/cancelled` can stop them.
///
/// A cancellation may reach another worker than the one running the call (any worker
/// serves any request). That worker leaves a mark in the transport session
/// (`TransportSessions.requestCancel`), which the running worker looks for while the call
/// streams (`StreamedCall`).
final class InFlightCalls: Sendable {
    private let calls = Mutex<[String: Task<Void, Never>]>([:])

    static func key(session: String, request: ID) -> String {
        "\(session)/\(Self.text(of: request))"
    }

    static func text(of id: ID) -> String {
        switch id {
        case .string(let text): "s:\(text)"
        case .number(let number): "n:\(number)"
        }
    }

    func register(_ key: String, _ task: Task<Void, Never>) {
        calls.withLock { $0[key] = task }
    }

    func remove(_ key: String) {
        _ = calls.withLock { $0.removeValue(forKey: key) }
    }

    /// Cancels the call if it runs here; returns whether it did.
    func cancel(_ key: String) -> Bool {
        guard let task = calls.withLock({ $0.removeValue(forKey: key) }) else { return false }
        task.cancel()
        return true
    }
}
