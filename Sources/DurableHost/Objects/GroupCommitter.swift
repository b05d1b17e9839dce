import Foundation
import HTTPServing
import Logging
import Metrics
import ServerRuntime
import ServiceLifecycle
import ServiceMetrics
import SessionModel
import Synchronization

/// Commits many sessions' writes in one transaction.
///
/// Session objects `enqueue` mutations in the order they apply them; the committer's loop
/// takes everything queued, commits it as one batch, and resolves each mutation's ticket.
/// While a batch is being committed the next one gathers, so under load a batch holds
/// everything that arrived during one fsync: throughput scales with concurrency instead of
/// being one fsync per request, and no write is acknowledged before it is durable.
///
/// When a batch fails, every mutation queued by the same live objects after it is failed
/// too (they were computed on top of the failed ones), and those objects are discarded and
/// reloaded from storage on their next use.
///
/// A store whose commit is a conversation with a server (PostgreSQL) may have several
/// batches in flight (`concurrency`), each on its own connection, so that the round trips of
/// one overlap those of the next. Batches in flight never share a session: a session's
/// mutations are taken only once its batch in flight has ended (and, had it failed, been
/// failed with it), so each session's writes still commit in the order they were applied.
public final class GroupCommitter: Service, Sendable {
    struct Entry {
        let mutation: SessionMutation
        let ticket: CommitTicket
    }

    private struct State {
        var queue: [Entry] = []
        var wake: CheckedContinuation<Void, Never>?
        /// The commit thread (a blocking store) waits for work on `threadWake`.
        var threadWaiting = false
        var closed = false
        /// Incarnations whose earlier mutations failed, with when: their later ones fail too.
        var poisoned: [UInt64: Double] = [:]
        /// A commit that outlived `commitTimeout` and may still land: until it has ended one
        /// way or the other, nothing is queued and nothing is loaded.
        var inDoubt = false
        /// Batches taken and not yet ended, and the sessions they hold.
        var inFlight = 0
        var busy: Set<String> = []
    }

    private let state = Mutex(State())
    private let threadWake = DispatchSemaphore(value: 0)
    private let committedBatches = Atomic<Int>(0)
    private let store: any SessionStore
    private let maxBatch: Int
    /// Batches that may be in flight at once (1 for a local file, whose writer is single).
    private let concurrency: Int
    /// A pause before each commit, for tests that must see what happens to a write queued
    /// but not yet committed (`commit_delay`; never set in production).
    private let commitDelay: Duration?
    /// A file whose existence holds every batch before its commit, for tests that must order
    /// a write against one in flight whatever the machine's speed (`commit_gate`; never set in
    /// production).
    private let commitGate: String?
    /// How long a commit may take before its writes are answered 503 (shared storage, whose
    /// database may stop answering); nil: as long as it takes (a local file).
    private let commitTimeout: Duration?
    /// Settles a commit in doubt so that it can never land: shared storage fences this host
    /// off from it (a new incarnation). Returns once done; then every live object reloads.
    private let settleDoubt: @Sendable () async -> Void
    private let onDoubtResolved: @Sendable () -> Void
    private let logger: Logger
    private let stats: StorageStatus
    private let commitTimer = Metrics.Timer(label: "host_storage_commit_seconds", preferredDisplayUnit: .seconds)
    private let batchSize = Recorder(label: "host_storage_batch_size")
    private let failures = Metrics.Counter(label: "host_storage_commit_failures_total")
    private let inFlightGauge = Gauge(label: "host_storage_commits_in_flight")
    private let queuedGauge = Gauge(label: "host_storage_writes_queued")

    init(
        store: any SessionStore, maxBatch: Int, concurrency: Int = 1, stats: StorageStatus, commitDelay: Duration? = nil,
        commitGate: String? = nil, commitTimeout: Duration? = nil, settleDoubt: @escaping @Sendable () async -> Void = {},
        onDoubtResolved: @escaping @Sendable () -> Void = {}, logger: Logger
    ) {
        self.settleDoubt = settleDoubt
        self.store = store
        self.maxBatch = maxBatch
        self.concurrency = store is any BlockingCommitStore ? 1 : max(1, concurrency)
        self.commitDelay = commitDelay
        self.commitGate = commitGate
        self.commitTimeout = commitTimeout
        self.onDoubtResolved = onDoubtResolved
        self.stats = stats
        self.logger = logger
    }

    /// Queues a mutation; its ticket resolves when it is durable. Synchronous, so a caller's
    /// mutations are queued in exactly the order it calls this.
    func enqueue(_ mutation: SessionMutation) -> CommitTicket {
        let ticket = CommitTicket()
        let outcome: (wake: CheckedContinuation<Void, Never>?, refusal: APIError?) = state.withLock { state in
            if state.closed {
                return (nil, APIError(.shuttingDown, "the host is shutting down; retry on another attempt"))
            }
            if state.inDoubt {
                return (nil, APIError(.storageUnavailable, "the database is not answering; retry"))
            }
            if state.poisoned[mutation.incarnation] != nil {
                return (nil, APIError(.storageUnavailable, "an earlier write of this session failed; retry"))
            }
            state.queue.append(Entry(mutation: mutation, ticket: ticket))
            queuedGauge.record(state.queue.count)
            if state.threadWaiting {
                state.threadWaiting = false
                threadWake.signal()
            }
            defer { state.wake = nil }
            return (state.wake, nil)
        }
        if let refusal = outcome.refusal { ticket.resolve(.failure(refusal)) }
        outcome.wake?.resume()
        return ticket
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            if let blocking = store as? any BlockingCommitStore, commitTimeout == nil {
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
                    if let commitDelay = self.commitDelay {
                        self.logger.notice("holding a batch for the commit delay (a test setting)", metadata: ["writes": "\(batch.count)"])
                        Thread.sleep(forTimeInterval: commitDelay.secondsValue)
                    }
                    if let gate = self.closedGate(holding: batch) {
                        while FileManager.default.fileExists(atPath: gate) { Thread.sleep(forTimeInterval: 0.01) }
                    }
                    let start = ContinuousClock.now
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
            switch takeBatch(markWaiting: true) {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait: threadWake.wait()
            }
        }
    }

    /// Whether the committer has stopped taking mutations (the host is shutting down).
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Whether a commit that timed out may still land: sessions must not be loaded meanwhile.
    var isInDoubt: Bool { state.withLock { $0.inDoubt } }

    /// Transactions committed so far.
    var batchesCommitted: Int { committedBatches.load(ordering: .relaxed) }

    /// Stops taking mutations; what is queued is still committed.
    func close() {
        let wake = state.withLock { state in
            state.closed = true
            if state.threadWaiting {
                state.threadWaiting = false
                threadWake.signal()
            }
            defer { state.wake = nil }
            return state.wake
        }
        wake?.resume()
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

    private func commitBatch(_ batch: [Entry]) async {
        if let commitDelay {
            logger.notice("holding a batch for the commit delay (a test setting)", metadata: ["writes": "\(batch.count)"])
            try? await Task.sleep(for: commitDelay)
        }
        if let gate = closedGate(holding: batch) {
            while FileManager.default.fileExists(atPath: gate) { try? await Task.sleep(for: .milliseconds(10)) }
        }
        await waitUntilNotInDoubt()
        let start = ContinuousClock.now
        do {
            try await commit(batch.map(\.mutation))
            finish(batch, since: start, result: .success(()))
        } catch {
            finish(batch, since: start, result: .failure(error))
        }
        // Only now may its sessions' later mutations be taken: a failure has failed them.
        release(batch)
    }

    /// The commit gate's file (a test setting) when it exists and so holds `batch` until it is
    /// removed; said in the log once per batch held.
    private func closedGate(holding batch: [Entry]) -> String? {
        guard let commitGate, FileManager.default.fileExists(atPath: commitGate) else { return nil }
        logger.notice("holding a batch at the commit gate (a test setting)", metadata: ["writes": "\(batch.count)"])
        return commitGate
    }

    /// A batch has ended: its sessions are free, and another batch may start.
    private func release(_ batch: [Entry]) {
        let wake = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.inFlight -= 1
            inFlightGauge.record(state.inFlight)
            for entry in batch { state.busy.remove(entry.mutation.id) }
            guard !state.queue.isEmpty else { return nil }
            if state.threadWaiting {
                state.threadWaiting = false
                threadWake.signal()
            }
            defer { state.wake = nil }
            return state.wake
        }
        wake?.resume()
    }

    /// Answers a batch's writers once its commit has ended, either way.
    private func finish(_ batch: [Entry], since start: ContinuousClock.Instant, result: Result<Void, any Error>) {
        switch result {
        case .success:
            commitTimer.record(since: start)
            batchSize.record(batch.count)
            stats.recordSuccess(sessionsDelta: batch.reduce(0) { $0 + $1.mutation.sessionsDelta })
            committedBatches.add(1, ordering: .relaxed)
            for entry in batch { entry.ticket.resolve(.success(())) }
        case .failure(let error):
            failures.increment()
            stats.recordFailure("\(error)")
            logger.error("storage commit failed", metadata: ["batch": "\(batch.count)", "error": "\(error)"])
            fail(batch, error: APIError(.storageUnavailable, "storage could not commit the write; retry"))
        }
    }

    /// Commits a batch within `commitTimeout`. Past it, the batch fails at once (its writers
    /// get 503), but the commit might still land later: until it is settled (`settleDoubt`
    /// makes sure it never can), new writes and loads are refused, so that none is computed
    /// on a state the late commit could change. Then every live object reloads.
    private func commit(_ mutations: [SessionMutation]) async throws {
        guard let commitTimeout else { return try await store.commit(mutations) }
        let store = self.store
        let work = Task { try await store.commit(mutations) }
        switch await Deadline.race(work, within: commitTimeout) {
        case .finished(let result):
            try result.get()
        case .timedOut:
            // What waits behind it fails now too: nothing may commit before it has ended.
            let waiting = state.withLock { state -> [Entry] in
                state.inDoubt = true
                defer {
                    state.queue = []
                    queuedGauge.record(0)
                }
                return state.queue
            }
            fail(waiting, error: APIError(.storageUnavailable, "the database is not answering; retry"))
            work.cancel()
            logger.error("a commit did not finish within \(commitTimeout); writes are refused until it is settled")
            // Answer its writers now; settle the commit before anything else.
            let settle = settleDoubt
            Task { [weak self] in
                await settle()
                self?.state.withLock { $0.inDoubt = false }
                self?.onDoubtResolved()
                self?.logger.notice("the commit in doubt can no longer land; sessions reload from the database")
            }
            throw StoreError("the database did not answer within \(commitTimeout)")
        }
    }

    private enum Next { case batch([Entry]), finished, wait }

    /// What may be committed now (at most `maxBatch` mutations, of one ring version, of no
    /// session in flight), or why there is nothing.
    private func takeBatch(markWaiting: Bool = false) -> Next {
        state.withLock { state in
            if state.queue.isEmpty, state.closed { return .finished }
            if state.inFlight < concurrency {
                let (batch, rest) = Self.split(state.queue, busy: state.busy, maxBatch: maxBatch)
                if !batch.isEmpty {
                    state.queue = rest
                    queuedGauge.record(rest.count)
                    state.inFlight += 1
                    inFlightGauge.record(state.inFlight)
                    for entry in batch { state.busy.insert(entry.mutation.id) }
                    return .batch(batch)
                }
            }
            if markWaiting { state.threadWaiting = true }
            return .wait
        }
    }

    /// Splits the queue into a batch and what stays queued, in order. One batch, one ring
    /// version: a commit is fenced by the version its mutations were computed under (shared
    /// storage). A session in flight stays queued whole, and so does every session with an
    /// entry left behind (another version, a full batch): no mutation overtakes an earlier one
    /// of its session.
    static func split(_ queue: [Entry], busy: Set<String>, maxBatch: Int) -> (batch: [Entry], rest: [Entry]) {
        // Nothing in flight (always so with one batch at a time): the batch is the queue's
        // head, up to the first mutation of another version.
        if busy.isEmpty, let version = queue.first?.mutation.ringVersion {
            let head = queue.prefix(maxBatch).prefix { $0.mutation.ringVersion == version }.count
            return (Array(queue.prefix(head)), Array(queue.dropFirst(head)))
        }
        var batch: [Entry] = []
        var rest: [Entry] = []
        var held = busy
        var version: Int64?
        for entry in queue {
            let mutation = entry.mutation
            if batch.count < maxBatch, !held.contains(mutation.id), version == nil || version == mutation.ringVersion {
                version = mutation.ringVersion
                batch.append(entry)
            } else {
                held.insert(mutation.id)
                rest.append(entry)
            }
        }
        return (batch, rest)
    }

    /// Waits for work; nil once closed with nothing left.
    private func nextBatch() async -> [Entry]? {
        while true {
            let next = takeBatch()
            switch next {
            case .batch(let batch): return batch
            case .finished: return nil
            case .wait:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = state.withLock { state -> Bool in
                        if !state.queue.isEmpty || state.closed { return true }
                        state.wake = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    /// Fails a batch, and every queued mutation of the same incarnations with it.
    private func fail(_ batch: [Entry], error: APIError) {
        let incarnations = Set(batch.map(\.mutation.incarnation))
        let now = Date().timeIntervalSince1970
        let dependents: [Entry] = state.withLock { state in
            for incarnation in incarnations { state.poisoned[incarnation] = now }
            state.poisoned = state.poisoned.filter { now - $0.value < 300 }
            let (failed, kept) = state.queue.reduce(into: ([Entry](), [Entry]())) { result, entry in
                if incarnations.contains(entry.mutation.incarnation) { result.0.append(entry) } else { result.1.append(entry) }
            }
            state.queue = kept
            queuedGauge.record(kept.count)
            return failed
        }
        for entry in batch + dependents { entry.ticket.resolve(.failure(error)) }
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

    func recordFailure(_ message: String) {
        state.withLock { state in
            state.lastError = message
            state.lastErrorAt = Date().timeIntervalSince1970
        }
    }

    /// nil when the last commit succeeded.
    public var lastError: String? { state.withLock { $0.lastError } }
}

extension GroupCommitter {
    /// Returns once no commit is in doubt.
    fileprivate func waitUntilNotInDoubt() async {
        while isInDoubt { try? await Task.sleep(for: .milliseconds(20)) }
    }
}

/// Races a task against a deadline without waiting for the task once the deadline has passed
/// (a structured task group would wait for a child that ignores cancellation).
enum Deadline {
    enum Outcome<Success: Sendable>: Sendable {
        case finished(Result<Success, any Error>)
        case timedOut
    }

    /// Resumes its continuation once, with whichever outcome comes first.
    private final class Gate<Success: Sendable>: Sendable {
        let continuation = Mutex<CheckedContinuation<Outcome<Success>, Never>?>(nil)

        func resume(_ outcome: Outcome<Success>) {
            continuation.withLock { $0.take() }?.resume(returning: outcome)
        }
    }

    static func race<Success: Sendable>(_ work: Task<Success, any Error>, within timeout: Duration) async -> Outcome<Success> {
        let gate = Gate<Success>()
        return await withCheckedContinuation { (continuation: CheckedContinuation<Outcome<Success>, Never>) in
            gate.continuation.withLock { $0 = continuation }
            let timer = Task {
                try? await Task.sleep(for: timeout)
                gate.resume(.timedOut)
            }
            Task {
                gate.resume(.finished(await work.result))
                timer.cancel()
            }
        }
    }

    /// Runs `body`, or throws once `timeout` has passed (the body is cancelled and left to end
    /// on its own).
    static func run<Success: Sendable>(
        within timeout: Duration, _ what: String, _ body: @escaping @Sendable () async throws -> Success
    ) async throws -> Success {
        let work = Task { try await body() }
        switch await race(work, within: timeout) {
        case .finished(let result): return try result.get()
        case .timedOut:
            work.cancel()
            throw StoreError("the database did not answer within \(timeout) while \(what)")
        }
    }
}
