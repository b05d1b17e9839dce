import Foundation
import HTTPServing
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Synchronization

/// Commits many sessions' writes in one transaction: live objects queue mutations in the
/// order they apply them, the loop commits everything queued as one batch (while one batch
/// commits the next gathers: one fsync for many writers) and resolves each ticket once it is
/// durable. What is admitted and what a batch takes is `CommitQueue`'s to decide; why and how:
/// docs/ARCHITECTURE.md, "Group commit".
public final class GroupCommitter: Service, Sendable {
    typealias Entry = CommitQueue<CommitTicket>.Entry

    private struct State {
        var queue: CommitQueue<CommitTicket>
        /// Who waits for work: the async loop, or the commit thread (a blocking store).
        var waiter: Waiter?
    }

    private enum Waiter {
        case loop(CheckedContinuation<Void, Never>)
        case thread
    }

    private let state: Mutex<State>
    private let threadWake = DispatchSemaphore(value: 0)
    private let committedBatches = Atomic<Int>(0)
    private let store: any SessionStore
    /// The storage's name in traces (`db.system`).
    private let system: String
    /// Settles a commit in doubt so that it can never land: shared storage fences this host
    /// off from it (a new incarnation). Returns once done; then every live object reloads.
    private let settleDoubt: @Sendable () async -> Void
    private let onDoubtResolved: @Sendable () -> Void
    private let clock: ServerClock
    private let logger: Logger
    private let stats: StorageStatus
    private let commitTimer = Metrics.Timer(label: "host_storage_commit_seconds", preferredDisplayUnit: .seconds)
    private let batchSize = Recorder(label: "host_storage_batch_size")
    private let failures = Metrics.Counter(label: "host_storage_commit_failures_total")
    private let inFlightGauge = Gauge(label: "host_storage_commits_in_flight")
    private let queuedGauge = Gauge(label: "host_storage_writes_queued")

    init(
        store: any SessionStore, maxBatch: Int, concurrency: Int = 1, stats: StorageStatus,
        settleDoubt: @escaping @Sendable () async -> Void = {}, onDoubtResolved: @escaping @Sendable () -> Void = {},
        clock: ServerClock = .system, logger: Logger
    ) {
        self.settleDoubt = settleDoubt
        self.store = store
        system = store is PostgresSessionStore ? "postgresql" : "sqlite"
        state = Mutex(State(queue: CommitQueue(maxBatch: maxBatch, concurrency: store is any BlockingCommitStore ? 1 : concurrency)))
        self.onDoubtResolved = onDoubtResolved
        self.clock = clock
        self.stats = stats
        self.logger = logger
    }

    /// Queues a mutation; its ticket resolves when it is durable. Synchronous, so a caller's
    /// mutations are queued in exactly the order it calls this.
    func enqueue(_ mutation: SessionMutation) -> CommitTicket {
        let ticket = CommitTicket()
        let refusal = update { queue in
            let refusal = queue.enqueue(Entry(mutation: mutation, ticket: ticket))
            return (refusal, refusal == nil)
        }
        if let refusal { ticket.resolve(.failure(refusal)) }
        return ticket
    }

    /// Changes the queue under the lock; when `body` says so, wakes whoever waits for work
    /// (the one wake-up of the committer, performed once the lock is released).
    private func update<T>(_ body: (inout CommitQueue<CommitTicket>) -> (T, wake: Bool)) -> T {
        let (result, waiter) = state.withLock { state -> (T, Waiter?) in
            let (result, wake) = body(&state.queue)
            queuedGauge.record(state.queue.queue.count)
            inFlightGauge.record(state.queue.inFlight)
            guard wake, let waiter = state.waiter else { return (result, nil) }
            state.waiter = nil
            return (result, waiter)
        }
        switch waiter {
        case .loop(let continuation)?: continuation.resume()
        case .thread?: threadWake.signal()
        case nil: break
        }
        return result
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            if let blocking = store as? any BlockingCommitStore {
                await withTaskCancellationHandler {
                    await commitOnOwnThread(blocking)
                } onCancel: {
                    self.close()
                }
            } else {
                await commitUntilClosed()
            }
        } onGracefulShutdown: {
            self.close()
        }
        try await store.close()
        logger.info("storage closed")
    }

    /// The commit loop of a store that commits by blocking (a local file): on a thread of its
    /// own, so that a commit neither hops to the store's queue and back nor waits for a turn
    /// of the cooperative pool behind the requests it is to answer.
    private func commitOnOwnThread(_ store: any BlockingCommitStore) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                while let batch = self.nextBatchBlocking() {
                    let start = self.clock.now
                    self.finish(batch, since: start, result: Result { try store.commitBlocking(batch.map(\.mutation)) })
                    self.release(batch)
                }
                done.resume()
            }
            thread.name = "group-commit"
            thread.start()
        }
    }

    /// Waits for work on the commit thread; nil once closed with nothing left.
    private func nextBatchBlocking() -> [Entry]? {
        while true {
            let next = state.withLock { state -> CommitQueue<CommitTicket>.Next in
                let next = state.queue.take()
                if case .wait = next { state.waiter = .thread }
                inFlightGauge.record(state.queue.inFlight)
                queuedGauge.record(state.queue.queue.count)
                return next
            }
            switch next {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait: threadWake.wait()
            }
        }
    }

    /// The commit loop of an asynchronous store: up to `concurrency` batches at once, each a
    /// child task; returns once closed, with everything queued committed.
    private func commitUntilClosed() async {
        await withDiscardingTaskGroup { group in
            while let batch = await nextBatch() {
                group.addTask { await self.commitBatch(batch) }
            }
        }
    }

    /// Waits for work; nil once closed with nothing left.
    private func nextBatch() async -> [Entry]? {
        while true {
            var next: CommitQueue<CommitTicket>.Next = .wait
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    next = state.queue.take()
                    inFlightGauge.record(state.queue.inFlight)
                    queuedGauge.record(state.queue.queue.count)
                    guard case .wait = next else { return true }
                    state.waiter = .loop(continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
            switch next {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait: continue
            }
        }
    }

    private func commitBatch(_ batch: [Entry]) async {
        let start = clock.now
        do {
            try await store.commit(batch.map(\.mutation))
            finish(batch, since: start, result: .success(()))
        } catch let timeout as StoreTimeout {
            // The commit may still land: what waits behind it fails now too, nothing is admitted
            // until it is settled, and then every live object reloads.
            let waiting = update { queue in (queue.doubted(), false) }
            for entry in waiting { entry.ticket.resolve(.failure(APIError(.storageUnavailable, "the database is not answering; retry"))) }
            logger.error("a commit did not finish in time; writes are refused until it is settled", metadata: ["error": "\(timeout)"])
            finish(batch, since: start, result: .failure(timeout))
            await settleCommitInDoubt()
        } catch {
            finish(batch, since: start, result: .failure(error))
        }
        // Only now may its sessions' later mutations be taken: a failure has failed them.
        release(batch)
    }

    /// Whether the committer has stopped taking mutations (the host is shutting down).
    var isClosed: Bool { state.withLock { $0.queue.closed } }

    /// Whether a commit that timed out may still land: sessions must not be loaded meanwhile.
    var isInDoubt: Bool { state.withLock { $0.queue.inDoubt } }

    /// Transactions committed so far.
    var batchesCommitted: Int { committedBatches.load(ordering: .relaxed) }

    /// Stops taking mutations; what is queued is still committed.
    func close() {
        update { queue in
            queue.close()
            return ((), true)
        }
    }

    /// A batch has ended: its sessions are free, and another batch may start.
    private func release(_ batch: [Entry]) {
        update { queue in ((), queue.release(batch)) }
    }

    /// Answers a batch's writers once its commit has ended, either way.
    private func finish(_ batch: [Entry], since start: ServerClock.Instant, result: Result<Void, any Error>) {
        switch result {
        case .success:
            let took = clock.elapsed(since: start)
            commitTimer.recordNanoseconds(took.nanosecondsValue)
            batchSize.record(batch.count)
            let committed = CommitTicket.Batch(size: batch.count, commitSeconds: took.secondsValue, system: system)
            stats.recordSuccess(sessionsDelta: batch.reduce(0) { $0 + $1.mutation.sessionsDelta })
            committedBatches.add(1, ordering: .relaxed)
            for entry in batch { entry.ticket.resolve(.success(()), batch: committed) }
        case .failure(let error):
            failures.increment()
            stats.recordFailure("\(error)", at: clock.wallNow)
            logger.error("storage commit failed", metadata: ["batch": "\(batch.count)", "error": "\(error)"])
            let now = clock.wallNow
            let dependents = update { queue in (queue.failed(batch, now: now), false) }
            let refusal = APIError(.storageUnavailable, "storage could not commit the write; retry")
            for entry in batch + dependents { entry.ticket.resolve(.failure(refusal)) }
        }
    }

    /// Makes sure the commit in doubt can never land (`settleDoubt`), then admits writes again;
    /// every live object reloads.
    private func settleCommitInDoubt() async {
        await settleDoubt()
        update { queue in
            queue.settled()
            return ((), true)
        }
        onDoubtResolved()
        logger.notice("the commit in doubt can no longer land; sessions reload from the database")
    }
}

/// What `/health` reports of storage: how many sessions, and ok or the last failure.
public final class StorageStatus: Sendable {
    private struct State {
        var lastError: String?
        var lastErrorAt: Double?
        var sessions: Int
        var expired = 0
    }

    private let state: Mutex<State>

    /// Starts from the number of sessions the store holds.
    public init(sessions: Int) {
        state = Mutex(State(sessions: sessions))
    }

    func recordSuccess(sessionsDelta: Int) {
        state.withLock { state in
            state.sessions += sessionsDelta
            state.lastError = nil
        }
    }

    /// Sessions stored, kept exact by every commit.
    public var sessions: Int { state.withLock { $0.sessions } }

    /// Sessions the expiry sweep deleted since the host started.
    public var expired: Int { state.withLock { $0.expired } }

    func recordExpired(_ count: Int) {
        state.withLock { $0.expired += count }
    }

    /// Sets the count from the store (on shared storage every host writes sessions).
    func reset(sessions: Int) {
        state.withLock { $0.sessions = sessions }
    }

    func recordFailure(_ message: String, at time: Double) {
        state.withLock { state in
            state.lastError = message
            state.lastErrorAt = time
        }
    }

    /// nil when the last commit succeeded.
    public var lastError: String? { state.withLock { $0.lastError } }
}
