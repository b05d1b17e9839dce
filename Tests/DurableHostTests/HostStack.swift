import Clocks
import Foundation
import Logging
import ServerRuntime
import SessionModel
import TestSupport

@testable import DurableHost

/// A host's storage, committer and live objects, in process, on a real SQLite file; its clock
/// is the test's (`clock`), so lifetimes are tested without waiting.
final class HostStack: Sendable {
    let directory: TemporaryDirectory
    let store: SQLiteSessionStore
    let committer: GroupCommitter
    let objects: SessionDirectory
    let stats: StorageStatus
    let lifetimes: Lifetimes
    /// Seconds since the epoch, as the host sees them.
    let clock: Mutexed<Double>
    /// The host's monotonic time, moved by the test.
    let time = TestClock()
    private let running: Task<Void, any Error>

    init(
        directory: TemporaryDirectory = TemporaryDirectory("stack"),
        limits: SessionLimits = .default,
        maxLive: Int = 1_000,
        idleTimeout: Duration = .seconds(60),
        retention: Double = 0,
        codec: ContentCodec = ContentCodec(),
        clock: Mutexed<Double> = Mutexed(Date().timeIntervalSince1970)
    ) async throws {
        self.directory = directory
        self.clock = clock
        store = try SQLiteSessionStore(directory: directory.file("data"), codec: codec)
        stats = StorageStatus(sessions: try await store.sessionCount())
        committer = GroupCommitter(store: store, maxBatch: 2_000, stats: stats, logger: Logger(label: "test"))
        let now: @Sendable () -> Double = { clock.get() }
        let context = ObjectContext(
            committer: committer, store: store, limits: limits, retention: retention, idempotencyRetention: 3_600, maxKeysPerSession: 1_000,
            now: now)
        objects = SessionDirectory(
            context: context, maxLive: maxLive, idleTimeout: idleTimeout, clock: ServerClock(monotonic: AnyClock(time), wall: now))
        lifetimes = Lifetimes(directory: objects, store: store, isMine: { _ in true }, retention: retention, now: now, stats: stats)
        let committer = committer
        running = Task { try await committer.run() }
    }

    func write(_ id: String, _ operation: SessionOperation, key: IdempotencyKey? = nil) async throws(APIError) -> WriteReply {
        try await write(id, SessionUpdate(operation), key: key)
    }

    func write(_ id: String, _ update: SessionUpdate, key: IdempotencyKey? = nil) async throws(APIError) -> WriteReply {
        try await objects.withObject(id) { object throws(APIError) in try await object.write(update, idempotency: key) }
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
