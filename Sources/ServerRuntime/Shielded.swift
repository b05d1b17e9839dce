/// Runs `body` to its end even if the caller is cancelled meanwhile, and returns what it
/// returned: for work that must not stop halfway once begun (storing a whole answer).
///
/// The work runs in a task of its own, the one way to keep a caller's cancellation from it
/// (Swift 6.3 has no cancellation shield); the caller still waits for it.
public func shielded<Success: Sendable>(_ body: @escaping @Sendable () async throws -> Success) async throws -> Success {
    try await Task { try await body() }.value
}
