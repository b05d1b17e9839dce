import Foundation
import Logging
import SessionModel
import TestSupport

@testable import DurableHost

/// A host's storage, committer and live objects, in process, on a real SQLite file.
final class HostStack: Sendable {
    let directory: TemporaryDirectory
    let store: SQLiteSessionStore
    let committer: GroupCommitter
    let objects: SessionDirectory
    let stats: StorageStatus
    private let running: Task<Void, any Error>

    init(
        directory: TemporaryDirectory = TemporaryDirectory("stack"),
        limits: SessionLimits = .default,
        maxLive: Int = 1_000,
        idleTimeout: Duration = .seconds(60)
    ) async throws {
        self.directory = directory
        store = try SQLiteSessionStore(directory: directory.file("data"))
        stats = StorageStatus(sessions: try await store.sessionCount())
        committer = GroupCommitter(store: store, maxBatch: 2_000, stats: stats, logger: Logger(label: "test"))
        let context = ObjectContext(
            committer: committer, store: store, limits: limits, idempotencyRetention: 3_600, maxKeysPerSession: 1_000,
            now: { Date().timeIntervalSince1970 })
        objects = SessionDirectory(context: context, maxLive: maxLive, idleTimeout: idleTimeout)
        let committer = committer
        running = Task { try await committer.run() }
    }

    func write(_ id: String, _ operation: SessionOperation, key: IdempotencyKey? = nil) async throws(APIError) -> WriteReply {
        try await objects.withObject(id) { object throws(APIError) in try await object.write(operation, idempotency: key) }
    }

    func read(_ id: String) async throws(APIError) -> SessionState {
        try await objects.withObject(id) { object throws(APIError) in try await object.read() }
    }

    func append(_ id: String, _ content: String, role: Role = .user) async throws(APIError) {
        _ = try await write(id, .appendMessage(MessageInput(role: role, content: content)))
    }

    /// Commits what is queued and closes storage.
    func shutdown() async throws {
        committer.close()
        try await running.value
    }
}
