import Foundation
import ServerRuntime
import SessionModel

/// Where a host keeps its sessions durably.
///
/// A store sees only whole batches: `commit` applies every mutation of a batch in one
/// transaction and returns once the transaction is durable, or throws and applies none.
/// That contract is what lets the host acknowledge a write only after it is committed while
/// still committing many sessions' writes together (`GroupCommitter`).
public protocol SessionStore: Sendable {
    /// A session's stored state and its remembered idempotency keys; nil if never written or cleared.
    func load(_ id: String, idempotencySince: Double) async throws -> StoredSession?
    /// Applies every mutation in order, in one transaction.
    func commit(_ batch: [SessionMutation]) async throws
    /// How many sessions are stored.
    func sessionCount() async throws -> Int
    /// Forgets idempotency keys recorded before `cutoff`; returns how many.
    func pruneIdempotency(before cutoff: Double) async throws -> Int
    /// Ids of stored sessions after `cursor`, in order, at most `limit` of them.
    func sessionIDs(after cursor: String?, limit: Int) async throws -> [String]
    /// Ids of the sessions of `principal` after `cursor`, in order, at most `limit` of them.
    func sessionIDs(principal: String, after cursor: String?, limit: Int) async throws -> [String]
    /// Sessions that have gone unwritten past their lifetime at `now`, in the order of `kind`'s
    /// index, after `cursor`, at most `limit` of them. Each comes with its position, the
    /// cursor of the next batch. What they hold is judged again by their live object.
    func expiredSessions(
        _ kind: ExpiryKind, now: Double, retention: Double, after cursor: ExpiryCursor?, limit: Int
    ) async throws
        -> [ExpiryCursor]
    /// What `listing` asks for, newest first: sessions that have not expired at `now`.
    func summaries(_ listing: SessionListing, now: Double, retention: Double) async throws -> [HostAPI.SessionSummary]
    /// Flushes and closes; the store is unusable afterwards.
    func close() async throws
    /// What `/health` says of the store: its kind and where it is (never a secret).
    var description: String { get }
}

/// A store that commits by blocking the calling thread (a local file): the group committer
/// then commits on a thread of its own instead of hopping to the store's queue and back.
public protocol BlockingCommitStore: SessionStore {
    /// As `commit`, on the caller's thread; never called from the cooperative pool.
    func commitBlocking(_ batch: [SessionMutation]) throws
}

/// A store on this host's own disk (SQLite), where a session lives in one host's storage:
/// what ring changes (`Handoff`) and hinted handoff (`HeldWrites`) keep beside the sessions.
/// A store shared by every host (PostgreSQL) needs neither: nothing moves between hosts.
public protocol LocalSessionStore: SessionStore {
    // MARK: Ring changes (see `Handoff`)

    /// The ring state saved by `saveRingState`, or nil.
    func loadRingState() async throws -> Data?
    func saveRingState(_ state: Data) async throws
    /// Stores a session handed over by its previous owner, with its idempotency keys, and
    /// marks it adopted, in one transaction. Returns whether a session row was created.
    func adopt(_ id: String, _ session: StoredSession, from node: String, version: Int) async throws -> Bool
    /// Marks a session as handed to `node`: from then on this host never serves it.
    func markMoved(_ id: String, to node: String, version: Int) async throws
    /// Deletes the data of a session handed to another host (its marker stays). Returns
    /// whether a session row was deleted.
    func purgeMoved(_ id: String) async throws -> Bool

    // MARK: Hinted handoff (see `HeldWrites`)

    /// Replaces the copy of `id` held for `owner` with `record` (nil: no session) as its seed.
    /// The copy's rows live under `HeldWrites.copyID(id)`; the writes held stay.
    func seedHeld(_ id: String, owner: String, record: SessionRecord?, version: Double) async throws
    /// What is held of `id`: for whom, from which seed, and how many writes; nil when nothing.
    func heldInfo(_ id: String) async throws -> HeldInfo?
    /// Sessions with a copy held here, for `owner` (for every owner when nil).
    func heldSessions(owner: String?) async throws -> [HeldInfo]
    /// The writes held for `id`, oldest first.
    func heldWrites(_ id: String) async throws -> [HostAPI.HeldWrite]
    /// Forgets the writes held for `id` up to `seq`, and the copy when no write is left;
    /// returns whether the copy is gone.
    func dropHeld(_ id: String, through seq: Int64) async throws -> Bool
}

/// Which sessions an expiry sweep looks at: those kept for the host's `retention` (no lifetime
/// of their own, ordered by their last write), or those with their own (ordered by when it ends).
public enum ExpiryKind: Sendable, CaseIterable {
    case retention
    case ownLifetime
}

/// A position in an expiry sweep: the session, and the ordering key of its kind (`last_updated`
/// for `retention`, `last_updated + expires_after` for `ownLifetime`).
public struct ExpiryCursor: Sendable, Hashable {
    public var key: Double
    public var id: String
}

/// A copy of a session held for its owner while the owner could not be reached.
public struct HeldInfo: Sendable, Hashable {
    public var id: String
    public var owner: String
    /// `last_updated` of the state the copy was seeded from (0 for none).
    public var seedVersion: Double
    public var writes: Int
}

/// A write held for an owner, stored with the held copy's mutation in one transaction.
public struct HeldWriteRecord: Sendable, Hashable {
    /// The session's own id (not the held copy's).
    public var sessionID: String
    public var owner: String
    /// The operation as applied, times filled in (`SessionOperation.canonicalJSON`).
    public var operation: Data
    public var key: String
    public var requestHash: Int64
    public var status: Int
    public var response: Data
    public var createdAt: Double
}

/// A session as loaded from storage.
public struct StoredSession: Sendable, Hashable {
    public var record: SessionRecord?
    /// The sequence number the next appended message takes.
    public var nextSeq: Int64
    public var idempotency: [IdempotencyRecord]
    /// The host this session was handed to by a ring change; nil while it is ours.
    public var movedTo: String?
    /// Whether this host took the session over from its previous owner.
    public var adopted: Bool

    public init(record: SessionRecord?, nextSeq: Int64, idempotency: [IdempotencyRecord], movedTo: String? = nil, adopted: Bool = false) {
        self.record = record
        self.nextSeq = nextSeq
        self.idempotency = idempotency
        self.movedTo = movedTo
        self.adopted = adopted
    }
}

/// The first answer to an idempotent write, replayed to every retry with the same key.
public struct IdempotencyRecord: Sendable, Hashable, Codable {
    public var key: String
    /// Hash of the request that first used the key: a retry with another body is refused.
    public var requestHash: Int64
    public var status: Int
    public var response: Data
    public var createdAt: Double

    public init(key: String, requestHash: Int64, status: Int, response: Data, createdAt: Double) {
        self.key = key
        self.requestHash = requestHash
        self.status = status
        self.response = response
        self.createdAt = createdAt
    }
}

/// One applied operation, as storage must persist it.
public struct SessionMutation: Sendable, Hashable {
    public enum Change: Sendable, Hashable {
        /// Messages appended, the first at sequence number `firstSeq`, the others after it.
        case append([Message], firstSeq: Int64)
        /// Every message replaced.
        case replaceMessages([Message])
        /// Only the session row changes (metadata, times).
        case touch
        /// The session and its messages removed (its idempotency keys stay: a retried clear is
        /// still recognised).
        case delete
        /// The session, its messages and its idempotency keys removed: it expired, or its
        /// principal's data was deleted; what remains is as if it never existed.
        case erase
    }

    public var id: String
    /// The live object that produced the mutation (see `GroupCommitter` on failures).
    public var incarnation: UInt64
    public var change: Change
    public var createdAt: Double
    public var lastUpdated: Double
    public var messageCount: Int
    /// The whole metadata, encoded, when it changed or the session is new; nil when unchanged.
    public var metadata: Data?
    public var idempotency: IdempotencyRecord?
    /// +1 when the mutation creates the session, -1 when it deletes it: keeps the count exact.
    public var sessionsDelta: Int
    /// For a write to a copy held for an unreachable owner: the write to hand back.
    public var held: HeldWriteRecord?
    /// The ring version the live object was loaded under (shared storage fences commits by
    /// it; 0 where a host's storage is its own).
    public var ringVersion: Int64 = 0
    /// Who the session belongs to, and its own lifetime (nil: the host's retention): written
    /// with every row of the session.
    public var principal: String?
    public var expiresAfter: Double?

    public init(
        id: String, incarnation: UInt64, change: Change, createdAt: Double, lastUpdated: Double,
        messageCount: Int, metadata: Data?, idempotency: IdempotencyRecord?, sessionsDelta: Int = 0, held: HeldWriteRecord? = nil
    ) {
        self.sessionsDelta = sessionsDelta
        self.held = held
        self.id = id
        self.incarnation = incarnation
        self.change = change
        self.createdAt = createdAt
        self.lastUpdated = lastUpdated
        self.messageCount = messageCount
        self.metadata = metadata
        self.idempotency = idempotency
    }
}

/// Why a store could not do what was asked.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A database operation that did not end within its time limit: it was cancelled, but may
/// still take effect (a commit may still land).
public struct StoreTimeout: Error, Sendable, CustomStringConvertible {
    public let description: String
}

extension Deadline {
    /// Runs a database operation, or throws `StoreTimeout` once `timeout` has passed on `clock`
    /// (the operation is cancelled and left to end on its own).
    static func run<Success: Sendable>(
        within timeout: Duration, clock: ServerClock, _ what: String, _ body: @escaping @Sendable () async throws -> Success
    ) async throws -> Success {
        switch await race(within: timeout, clock: clock, body).outcome {
        case .finished(let result): return try result.get()
        case .timedOut: throw StoreTimeout(description: "the database did not answer within \(timeout) while \(what)")
        }
    }
}
