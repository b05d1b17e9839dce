import SessionModel

/// The decisions of group commit, without I/O, locks or clocks: what is admitted to the queue,
/// what the next batch takes, what fails with a failed batch, what a commit in doubt stops.
/// `GroupCommitter` keeps it under a lock and performs what it decides.
///
/// The rules:
/// - a mutation is refused once the committer is closed (shutting down), while a commit is in
///   doubt (it timed out and may still land), and when an earlier mutation of the same live
///   object failed (it was computed on top of it: the object is poisoned);
/// - a batch is at most `maxBatch` mutations of one ring version (a commit is fenced by the
///   version its mutations were computed under), of no session in flight in another batch, and
///   no mutation overtakes an earlier one of its session; at most `concurrency` batches are in
///   flight (1 for a local file, whose writer is single);
/// - a failed batch fails every queued mutation of the same live objects with it;
/// - a commit in doubt fails everything queued and admits nothing until it is settled.
struct CommitQueue<Ticket: Sendable>: Sendable {
    struct Entry: Sendable {
        let mutation: SessionMutation
        let ticket: Ticket
    }

    /// What `take` found.
    enum Next: Sendable {
        case batch([Entry])
        /// Closed, with nothing left.
        case finished
        /// Nothing can be taken now.
        case wait
    }

    let maxBatch: Int
    let concurrency: Int
    private(set) var queue: [Entry] = []
    private(set) var closed = false
    /// A commit that outlived its time limit and may still land: until it has ended one way or
    /// the other, nothing is queued and nothing is loaded.
    private(set) var inDoubt = false
    /// Batches taken and not yet released.
    private(set) var inFlight = 0
    /// Sessions in the batches in flight.
    private var busy: Set<String> = []
    /// Incarnations whose earlier mutations failed, with when: their later ones fail too.
    private var poisoned: [UInt64: Double] = [:]
    /// How long a poisoned incarnation is remembered (its object is reloaded long before).
    static var poisonMemory: Double { 300 }

    init(maxBatch: Int, concurrency: Int) {
        self.maxBatch = maxBatch
        self.concurrency = max(1, concurrency)
    }

    /// Queues `entry`, or says why it is refused.
    mutating func enqueue(_ entry: Entry) -> APIError? {
        if closed { return APIError(.shuttingDown, "the host is shutting down; retry on another attempt") }
        if inDoubt { return APIError(.storageUnavailable, "the database is not answering; retry") }
        if poisoned[entry.mutation.incarnation] != nil { return APIError(.storageUnavailable, "an earlier write of this session failed; retry") }
        queue.append(entry)
        return nil
    }

    /// The next batch to commit, if one may start now.
    mutating func take() -> Next {
        if queue.isEmpty, closed { return .finished }
        guard inFlight < concurrency else { return .wait }
        let (batch, rest) = Self.split(queue, busy: busy, maxBatch: maxBatch)
        guard !batch.isEmpty else { return .wait }
        queue = rest
        inFlight += 1
        for entry in batch { busy.insert(entry.mutation.id) }
        return .batch(batch)
    }

    /// A batch has ended, either way: its sessions are free. Returns whether a waiting taker
    /// should look again.
    mutating func release(_ batch: [Entry]) -> Bool {
        inFlight -= 1
        for entry in batch { busy.remove(entry.mutation.id) }
        return !queue.isEmpty
    }

    /// A batch failed at `now`: its live objects are poisoned; returns their mutations still
    /// queued, which fail with it.
    mutating func failed(_ batch: [Entry], now: Double) -> [Entry] {
        let incarnations = Set(batch.map(\.mutation.incarnation))
        for incarnation in incarnations { poisoned[incarnation] = now }
        poisoned = poisoned.filter { now - $0.value < Self.poisonMemory }
        let dependents = queue.filter { incarnations.contains($0.mutation.incarnation) }
        queue.removeAll { incarnations.contains($0.mutation.incarnation) }
        return dependents
    }

    /// A commit timed out and may still land: everything queued fails now (nothing may commit
    /// before it has ended), and nothing is admitted until `settled`.
    mutating func doubted() -> [Entry] {
        inDoubt = true
        defer { queue = [] }
        return queue
    }

    /// The commit in doubt can no longer land.
    mutating func settled() {
        inDoubt = false
    }

    /// Stops admitting mutations; what is queued is still committed.
    mutating func close() {
        closed = true
    }

    /// Splits the queue into a batch and what stays queued, in order. One batch, one ring
    /// version; a session in flight stays queued whole, and so does every session with an
    /// entry left behind (another version, a full batch).
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
}
