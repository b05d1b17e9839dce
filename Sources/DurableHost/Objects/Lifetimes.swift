import Foundation
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import SessionModel
import Synchronization

/// How long stored sessions live, and the deletions that follow from it: the expiry sweep (a
/// Durable Object's alarm, for every stored session at once) and the deletion of everything
/// of one principal.
///
/// Both go through each session's live object, so a deletion is ordered with the session's
/// writes like any other write, and a live object never holds a session its storage lost.
/// Where the storage is this host's own, every session stored here is this host's to delete
/// (one it no longer owns is handed over, deleted or not, by its live object); on a shared
/// database each host deletes the sessions it owns, and a caller asks every host.
struct Lifetimes: Sendable {
    let directory: SessionDirectory
    let store: any SessionStore
    /// Whether this host deletes `id`: its owner, or its storage's only user.
    let isMine: @Sendable (String) -> Bool
    /// Seconds a session without a lifetime of its own is kept after its last write; 0: for ever.
    let retention: Double
    let now: @Sendable () -> Double
    let stats: StorageStatus
    /// Most sessions read and deleted per batch: bounds each query and the writes it queues.
    var batch = 500
    /// Most deletions waiting for their commit at once (they share commits).
    var concurrency = 64

    private static let expired = Metrics.Counter(label: "host_sessions_expired_total")
    private static let erased = Metrics.Counter(label: "host_sessions_erased_total")

    /// Creates the counters when the host starts (exported as 0 until something happens).
    static func declareMetrics() {
        _ = (expired, erased)
    }

    /// One pass over every expired session: deleted batch by batch; returns how many.
    func sweep() async throws -> Int {
        var removed = 0
        for kind in ExpiryKind.allCases {
            var cursor: ExpiryCursor?
            while !Task.isCancelled {
                let now = now()
                let found = try await store.expiredSessions(kind, now: now, retention: retention, after: cursor, limit: batch)
                removed += await delete(found.map(\.id).filter(isMine)) { object throws(APIError) in try await object.expire(now: now) }
                guard found.count == batch, let last = found.last else { break }
                cursor = last
                // Between batches the request path has the storage to itself for a moment.
                await Task.yield()
            }
        }
        if removed > 0 {
            Self.expired.increment(by: removed)
            stats.recordExpired(removed)
        }
        return removed
    }

    /// Deletes every session of `principal` this host holds: conversations, transport
    /// sessions, their journals. Returns how many there were.
    func erase(principal: String) async throws -> Int {
        // Marked first: a write of data gathered before now (a worker's usage counts) is
        // refused from here on, also while the deletion runs.
        directory.erasures.record(principal, at: now())
        var removed = 0
        var cursor: String?
        while true {
            let ids = try await store.sessionIDs(principal: principal, after: cursor, limit: batch)
            removed += await delete(ids.filter(isMine)) { object throws(APIError) in try await object.erase() }
            guard ids.count == batch else { break }
            cursor = ids.last
        }
        Self.erased.increment(by: removed)
        return removed
    }

    /// Runs `body` on the live object of each id, `concurrency` at a time; counts the trues.
    private func delete(_ ids: [String], _ body: @escaping @Sendable (SessionObject) async throws(APIError) -> Bool) async -> Int {
        await withTaskGroup(of: Bool.self) { group in
            var pending = ids[...]
            var running = 0
            var removed = 0
            while let id = pending.popFirst() {
                if running == concurrency, let done = await group.next() {
                    running -= 1
                    if done { removed += 1 }
                }
                group.addTask {
                    // One that cannot be deleted now (storage failing, moving) is left for the next pass.
                    (try? await directory.withObject(id) { object throws(APIError) in try await body(object) }) ?? false
                }
                running += 1
            }
            for await done in group where done { removed += 1 }
            return removed
        }
    }
}

/// The expiry sweep as a service: every `interval`, a pass over what has expired.
struct ExpirySweeper: Service {
    let lifetimes: Lifetimes
    let interval: Duration
    let clock: ServerClock
    let logger: Logger

    func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await clock.sleep(for: interval) }
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            do {
                let removed = try await lifetimes.sweep()
                if removed > 0 { logger.info("expired sessions deleted", metadata: ["count": "\(removed)"]) }
            } catch {
                logger.warning("the expiry sweep could not read the storage; next pass in \(interval)", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// When each principal's data was last deleted on this host, for a while: a worker may still
/// hold data of the principal gathered before (usage counts not yet written), and a write that
/// says so (`as_of`) is refused instead of bringing it back. Kept in memory for `keep` (a day),
/// at most `capacity` principals (the oldest forgotten first).
final class PrincipalErasures: Sendable {
    private let marks = Mutex<[String: Double]>([:])
    let keep: Double
    let capacity: Int

    init(keep: Double = 86_400, capacity: Int = 10_000) {
        self.keep = keep
        self.capacity = capacity
    }

    func record(_ principal: String, at time: Double) {
        marks.withLock { marks in
            marks[principal] = max(time, marks[principal] ?? 0)
            let horizon = time - keep
            if marks.count > capacity || marks.values.contains(where: { $0 < horizon }) {
                marks = marks.filter { $0.value >= horizon }
                while marks.count > capacity, let oldest = marks.min(by: { $0.value < $1.value }) { marks[oldest.key] = nil }
            }
        }
    }

    /// When `principal`'s data was last deleted here; nil when not recently.
    func erasedAt(_ principal: String) -> Double? {
        marks.withLock { $0[principal] }
    }
}
