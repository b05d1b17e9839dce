import Foundation
import NIOCore
import ServerRuntime
import SessionModel
import Tracing

/// What every live object shares: where to commit, where to load from, the limits.
struct ObjectContext: Sendable {
    let committer: GroupCommitter
    let store: any SessionStore
    /// The same store when it is this host's own (SQLite): what ring changes and held copies need.
    var local: (any LocalSessionStore)? { store as? any LocalSessionStore }
    /// How a live object loads its session: from `store`, after taking it over from its
    /// previous owner when a ring change requires (`Handoff.load`).
    let load: @Sendable (_ id: String, _ idempotencySince: Double) async throws -> StoredSession?
    let limits: SessionLimits
    /// How long a session that sets no lifetime of its own is kept after its last write
    /// (seconds; 0: for ever).
    let retention: Double
    /// How long an idempotency key is remembered.
    let idempotencyRetention: Double
    /// Most idempotency keys remembered per live session.
    let maxKeysPerSession: Int
    let now: @Sendable () -> Double
    /// Whether this host owns an id under its current ring (always, for a ring of one).
    let ownsNow: @Sendable (String) -> Bool
    /// Writes another host held for our sessions while this one could not be reached.
    let heldElsewhere: HeldElsewhere?
    /// The ring version live objects are loaded under now (0 with a host's own storage).
    let ringVersion: @Sendable () -> Int64
    /// When each principal's data was last deleted here (`Lifetimes` records, live objects check).
    let erasures = PrincipalErasures()

    init(
        committer: GroupCommitter, store: any SessionStore,
        load: (@Sendable (_ id: String, _ idempotencySince: Double) async throws -> StoredSession?)? = nil,
        limits: SessionLimits, retention: Double = 0, idempotencyRetention: Double, maxKeysPerSession: Int, now: @escaping @Sendable () -> Double,
        ownsNow: @escaping @Sendable (String) -> Bool = { _ in true }, heldElsewhere: HeldElsewhere? = nil,
        ringVersion: @escaping @Sendable () -> Int64 = { 0 }
    ) {
        self.ringVersion = ringVersion
        self.ownsNow = ownsNow
        self.committer = committer
        self.store = store
        self.load = load ?? { id, since in try await store.load(id, idempotencySince: since) }
        self.limits = limits
        self.retention = retention
        self.idempotencyRetention = idempotencyRetention
        self.maxKeysPerSession = maxKeysPerSession
        self.now = now
        self.heldElsewhere = heldElsewhere
    }
}

/// Writes another member held for one of this host's sessions while this host could not be
/// reached (hinted handoff), as a live object needs them: whether some wait, fetching them
/// from their holder, and telling the holder which it may forget.
struct HeldElsewhere: Sendable {
    let isPending: @Sendable (_ id: String) -> Bool
    let pull: @Sendable (_ id: String) async throws -> [HostAPI.HeldWrite]
    let acknowledge: @Sendable (_ id: String, _ throughSeq: Int64) async -> Void
}

/// What a session's previous owner hands to its new owner.
struct HandoffPayload: Codable, Sendable {
    var record: SessionRecord?
    /// The sequence number the next appended message takes.
    var nextSeq: Int64
    var idempotency: [IdempotencyRecord]
}

/// An idempotency key and the hash of the request that carries it.
public struct IdempotencyKey: Sendable, Hashable {
    public var key: String
    public var requestHash: Int64

    public init(key: String, requestHash: Int64) {
        self.key = key
        self.requestHash = requestHash
    }
}

/// The answer to a write, kept so an idempotent retry gets exactly the same bytes.
public struct WriteReply: Sendable {
    public var status: Int
    public var body: Data
    /// True when this is the remembered answer to an earlier request with the same key.
    public var replayed: Bool
}

/// One session's serial executor: the Durable Object of the seed.
///
/// Operations on one id run one at a time on this actor and see each other's effects in the
/// order they arrive here (linearizable); different ids are different actors and run in
/// parallel. A write applies the operation to the in-memory state, queues the mutation with
/// the group committer, and answers only once it is durable. A read answers only once every
/// write it has seen is durable: the output gate of Durable Objects.
///
/// The same actor serves a copy of another host's session held while that host cannot be
/// reached (`HeldWrites.copyID`): each of its writes is also kept, in the same transaction,
/// to be handed back.
actor SessionObject {
    let id: String
    let incarnation: UInt64
    private let context: ObjectContext
    private let onPoisoned: @Sendable (SessionObject) -> Void
    /// Whether this is a copy held for another host (not counted among the host's sessions).
    private let isHeldCopy: Bool
    /// The ring version this object was created under: its commits are fenced by it.
    private let ringVersion: Int64

    private struct Loaded {
        var state: SessionState
        var nextSeq: Int64
        var keys: [String: KeyEntry]
        var keyOrder: [String]
        /// Set when the session is handed to another host: from then on nothing is served here.
        var movedTo: String?
    }

    private enum KeyEntry {
        case pending(requestHash: Int64, ticket: CommitTicket, reply: WriteReply)
        case done(IdempotencyRecord)

        var requestHash: Int64 {
            switch self {
            case .pending(let hash, _, _): hash
            case .done(let record): record.requestHash
            }
        }
    }

    private var loaded: Loaded?
    /// The load from storage, once however many callers wait for it.
    private let loading = SingleFlight<StoredSession?>()
    /// Writes held elsewhere being merged in: operations wait for it.
    private let merging = SingleFlight<Void>()
    /// The last mutation queued: reads wait for it.
    private var lastTicket: CommitTicket?
    private var poisoned = false
    /// A held copy whose writes its owner is taking back: refuses writes until then (seconds
    /// since the epoch).
    private var handingBackUntil: Double?

    init(id: String, incarnation: UInt64, context: ObjectContext, onPoisoned: @escaping @Sendable (SessionObject) -> Void) {
        self.id = id
        self.incarnation = incarnation
        self.context = context
        self.onPoisoned = onPoisoned
        isHeldCopy = HeldWrites.isCopy(id)
        ringVersion = context.ringVersion()
    }

    // MARK: Operations

    /// The `GET /history` answer, newest `last` messages only when given, once everything it
    /// reflects is durable. Kept until the session changes: a conversation is read before
    /// each turn, and most reads find it as the last one left it; kept as the buffer a response
    /// sends, so that a read shares it rather than copying it.
    func historyJSON(last: Int?) async throws(APIError) -> ByteBuffer {
        let state = try await read()
        if let cached = cachedHistory, cached.version == version, cached.last == last, state.exists { return cached.body }
        let messages = last.map { Array(state.record.messages.suffix($0)) } ?? state.record.messages
        let body = HostAPI.History(
            data: messages, metadata: state.record.metadata, messageCount: last == nil ? nil : state.record.messages.count,
            // The seed's plain history keeps its shape; a window (what a turn reads) says more.
            lastUpdated: state.exists && last != nil ? state.record.lastUpdated : nil,
            expiresAt: state.exists && last != nil ? state.record.expiresAt(retention: context.retention) : nil
        ).encodedJSON()
        let buffer = ByteBuffer(bytes: body)
        if state.exists { cachedHistory = (version, last, buffer) }
        return buffer
    }

    /// Bumped whenever the in-memory state changes (a write, an erasure, a load): what a
    /// cached answer was made from.
    private var version: UInt64 = 0
    private var cachedHistory: (version: UInt64, last: Int?, body: ByteBuffer)?

    /// The session's state once everything it reflects is durable; an expired session reads as
    /// one that never existed.
    func read() async throws(APIError) -> SessionState {
        try await ensureReady()
        try refuseIfMoved()
        try refuseIfHandingBack()
        let snapshot = loaded!.state
        if let ticket = lastTicket, !ticket.isResolved {
            try await wait(for: ticket)
        }
        return snapshot.isExpired(now: context.now(), retention: context.retention) ? SessionState(absent: id) : snapshot
    }

    /// Applies a write and answers once it is durable. With `holdingFor`, this is a held copy
    /// and the write is kept for that owner as well.
    func write(_ update: SessionUpdate, idempotency: IdempotencyKey?, holdingFor owner: String? = nil) async throws(APIError) -> WriteReply {
        try await ensureReady()
        try refuseIfMoved()
        try refuseIfHandingBack()
        let now = context.now()
        if let principal = update.principal, update.predates(erasureAt: context.erasures.erasedAt(principal)) {
            throw APIError(.principalErased, "the data of principal '\(principal)' was deleted after this write's data was gathered; nothing was written")
        }
        // An expired session is gone with its idempotency keys: a write starts it anew.
        eraseIfExpired(now: now)

        if let idempotency, let entry = loaded!.keys[idempotency.key] {
            guard entry.requestHash == idempotency.requestHash else {
                throw APIError(.idempotencyKeyReused, "Idempotency-Key '\(idempotency.key)' was already used with a different request")
            }
            switch entry {
            case .done(let record):
                return WriteReply(status: record.status, body: record.response, replayed: true)
            case .pending(_, let ticket, var reply):
                try await wait(for: ticket)
                reply.replayed = true
                return reply
            }
        }

        let (answer, ticket) = try applyNow(update, idempotency: idempotency, holdingFor: owner, now: now)
        guard let ticket else {
            // Nothing to write (a clear of nothing, a record already there): answer once earlier writes are durable.
            if let last = lastTicket, !last.isResolved { try await wait(for: last) }
            return answer
        }
        try await wait(for: ticket)
        markDone(idempotency?.key, ticket: ticket)
        return answer
    }

    /// The alarm of a Durable Object: deletes the session if it has expired at `now`, with its
    /// messages and idempotency keys. Returns whether it did.
    func expire(now: Double) async throws(APIError) -> Bool {
        try await ensureLoaded()
        guard loaded?.movedTo == nil, eraseIfExpired(now: now), let ticket = lastTicket else { return false }
        try await wait(for: ticket)
        return true
    }

    /// Deletes the session whatever it holds, with its messages and idempotency keys (its
    /// principal's data is being deleted). Returns whether there was a session.
    func erase() async throws(APIError) -> Bool {
        try await ensureReady()
        try refuseIfMoved()
        let existed = loaded!.state.exists
        guard existed || !loaded!.keys.isEmpty else { return false }
        try await wait(for: enqueueErase(now: context.now(), existed: existed))
        return existed
    }

    /// Hands the session to `node` (the new owner after a ring change asks for it): freezes
    /// it here, waits until every write it acknowledged is durable, marks it moved durably,
    /// and returns everything the new owner needs. Asked again, answers the same.
    func handOff(to node: String, version: Int) async throws(APIError) -> HandoffPayload {
        try await ensureLoaded()
        if let movedTo = loaded!.movedTo, movedTo != node {
            throw APIError(.misdirected, "session '\(id)' was already handed to \(movedTo)")
        }
        let alreadyMoved = loaded!.movedTo != nil
        // Frozen before the first suspension: no write can slip in after the snapshot.
        loaded!.movedTo = node
        if let ticket = lastTicket, !ticket.isResolved {
            do {
                try await wait(for: ticket)
            } catch {
                loaded?.movedTo = nil
                throw error
            }
        }
        guard let snapshot = loaded else {
            throw APIError(.storageUnavailable, "an earlier write of this session failed; retry")
        }
        if !alreadyMoved {
            do {
                guard let local = context.local else { throw StoreError("sessions do not move between hosts on shared storage") }
                try await local.markMoved(id, to: node, version: version)
            } catch {
                loaded?.movedTo = nil
                throw APIError(.storageUnavailable, "could not record the handoff of '\(id)'; retry")
            }
        }
        let keys = snapshot.keyOrder.compactMap { key -> IdempotencyRecord? in
            if case .done(let record)? = snapshot.keys[key] { return record }
            return nil
        }
        return HandoffPayload(
            record: snapshot.state.exists ? snapshot.state.record : nil, nextSeq: snapshot.nextSeq, idempotency: keys)
    }

    // MARK: A copy held for another host

    /// Starts this held copy from `record`: when there is none yet, or when the one there
    /// holds no write and was seeded from an older state. Returns whether it was replaced.
    func seed(_ record: SessionRecord?, version: Double, owner: String) async throws(APIError) -> Bool {
        await loading.waitForRun()
        if let ticket = lastTicket, !ticket.isResolved { try await wait(for: ticket) }
        let session = HeldWrites.sessionID(ofCopy: id)
        guard let local = context.local else { throw APIError(.hintRefused, "this host holds no writes for others: its storage is shared") }
        do {
            if let info = try await local.heldInfo(session), info.writes > 0 || info.seedVersion >= version { return false }
            try await local.seedHeld(session, owner: owner, record: record, version: version)
        } catch {
            throw APIError(.storageUnavailable, "could not store the held copy; retry")
        }
        // Loaded afresh on the next use.
        loaded = nil
        return true
    }

    /// Stops taking writes for a while: the owner is taking back what was held. What was
    /// acknowledged is durable when this returns. The owner forgets the writes when it has
    /// them (`HeldWrites.forget`); if it never says so, writes are taken again after `lease`.
    func beginHandingBack(lease: Duration = .seconds(30)) async throws(APIError) {
        handingBackUntil = context.now() + lease.secondsValue
        if let ticket = lastTicket, !ticket.isResolved { try await wait(for: ticket) }
    }

    // MARK: Internals

    /// Applies `operation` to the in-memory state and queues its mutation, without suspending,
    /// so the in-memory state and the commit queue see this actor's writes in the same order.
    /// Returns the answer and the ticket to wait for (nil when there is nothing to write).
    /// `recorded` is the answer a holder already gave for a merged held write.
    private func applyNow(
        _ update: SessionUpdate, idempotency: IdempotencyKey?, holdingFor owner: String?, now: Double,
        recorded: WriteReply? = nil
    ) throws(APIError) -> (WriteReply, CommitTicket?) {
        eraseIfExpired(now: now)
        let existed = loaded!.state.exists
        let createdBefore = loaded!.state.record.createdAt
        // The state is changed in place (no copy of the history); `apply` validates first.
        let change = try loaded!.state.apply(update, now: now, limits: context.limits)
        version &+= 1
        let state = loaded!.state

        if case .cleared = change, !existed {
            return (recorded ?? reply(for: state, cleared: false, now: now, createdAt: 0), nil)
        }

        guard let (storedChange, applied) = persisted(change, of: update.operation, state: state) else {
            return (recorded ?? reply(for: state, cleared: nil, now: now, createdAt: createdBefore, unchanged: true), nil)
        }
        let answer = recorded ?? reply(for: state, cleared: change == .cleared ? true : nil, now: now, createdAt: createdBefore)
        let record = idempotency.map {
            IdempotencyRecord(key: $0.key, requestHash: $0.requestHash, status: answer.status, response: answer.body, createdAt: now)
        }
        let held = owner.map { owner in
            HeldWriteRecord(
                sessionID: HeldWrites.sessionID(ofCopy: id), owner: owner,
                operation: SessionUpdate(applied, principal: update.principal, expiresAfter: update.expiresAfter).canonicalJSON,
                key: idempotency?.key ?? "held-\(UUID().uuidString)", requestHash: idempotency?.requestHash ?? 0,
                status: answer.status, response: answer.body, createdAt: now)
        }
        let metadataChanged: Bool
        switch (change, update.operation) {
        case (.replacedMetadata, _), (.appended(_, _, metadataChanged: true), _), (.replacedMessages, .setHistory(_, metadata: _?)):
            metadataChanged = true
        default: metadataChanged = !existed
        }
        var mutation = SessionMutation(
            id: id, incarnation: incarnation, change: storedChange,
            createdAt: state.record.createdAt, lastUpdated: state.record.lastUpdated,
            messageCount: state.record.messages.count,
            metadata: metadataChanged ? state.record.metadata.encodedJSON() : nil,
            idempotency: record,
            sessionsDelta: isHeldCopy ? 0 : (change == .cleared ? -1 : (existed ? 0 : 1)),
            held: held)
        mutation.ringVersion = ringVersion
        mutation.principal = state.record.principal
        mutation.expiresAfter = state.record.expiresAfter

        let ticket = context.committer.enqueue(mutation)
        lastTicket = ticket
        if let idempotency {
            remember(idempotency.key, .pending(requestHash: idempotency.requestHash, ticket: ticket, reply: answer))
        }
        return (answer, ticket)
    }

    /// What storage must persist of an applied change, and the operation as applied (every
    /// time filled in: what a held write hands back); nil when there is nothing to store.
    /// Moves the next message sequence number along with it.
    private func persisted(
        _ change: SessionState.Change, of operation: SessionOperation, state: SessionState
    ) -> (SessionMutation.Change, SessionOperation)? {
        let inputs = { (messages: [Message]) in messages.map { MessageInput(role: $0.role, content: $0.content, timestamp: $0.timestamp) } }
        switch change {
        case .appended(let messages, _, _):
            defer { loaded!.nextSeq += Int64(messages.count) }
            if case .appendMessages(_, let metadata) = operation {
                return (.append(messages, firstSeq: loaded!.nextSeq), .appendMessages(inputs(messages), metadata: metadata))
            }
            return (.append(messages, firstSeq: loaded!.nextSeq), .appendMessages(inputs(messages)))
        case .replacedMessages:
            loaded!.nextSeq = Int64(state.record.messages.count)
            switch operation {
            case .putRecord: return (.replaceMessages(state.record.messages), operation)
            case .setHistory(_, let metadata): return (.replaceMessages(state.record.messages), .setHistory(inputs(state.record.messages), metadata: metadata))
            default: return (.replaceMessages(state.record.messages), .setHistory(inputs(state.record.messages)))
            }
        case .replacedMetadata:
            return (.touch, operation)
        case .cleared:
            loaded!.nextSeq = 0
            return (.delete, .clear)
        case .unchanged:
            return nil
        }
    }

    /// Erases the session if it has expired at `now`, queued before anything written after:
    /// the live state starts afresh, without messages or keys. Returns whether it did.
    @discardableResult
    private func eraseIfExpired(now: Double) -> Bool {
        guard let state = loaded?.state, state.isExpired(now: now, retention: context.retention) else { return false }
        enqueueErase(now: now, existed: true)
        return true
    }

    /// Queues the erasure of the session and forgets it in memory; returns the ticket.
    @discardableResult
    private func enqueueErase(now: Double, existed: Bool) -> CommitTicket {
        var mutation = SessionMutation(
            id: id, incarnation: incarnation, change: .erase, createdAt: 0, lastUpdated: now, messageCount: 0, metadata: nil,
            idempotency: nil, sessionsDelta: isHeldCopy || !existed ? 0 : -1)
        mutation.ringVersion = ringVersion
        let ticket = context.committer.enqueue(mutation)
        lastTicket = ticket
        version &+= 1
        loaded!.state = SessionState(absent: id)
        loaded!.nextSeq = 0
        loaded!.keys = [:]
        loaded!.keyOrder = []
        return ticket
    }

    private func markDone(_ key: String?, ticket: CommitTicket) {
        guard let key, case .pending(let hash, let pendingTicket, let reply)? = loaded?.keys[key], pendingTicket === ticket else { return }
        loaded?.keys[key] = .done(
            IdempotencyRecord(key: key, requestHash: hash, status: reply.status, response: reply.body, createdAt: context.now()))
    }

    private func refuseIfHandingBack() throws(APIError) {
        if let until = handingBackUntil, context.now() < until {
            throw APIError(.hintRefused, "the owner of '\(HeldWrites.sessionID(ofCopy: id))' is taking its writes back: send to it")
        }
    }

    private func refuseIfMoved() throws(APIError) {
        if let movedTo = loaded?.movedTo {
            throw APIError(.misdirected, "session '\(id)' now belongs to \(movedTo)")
        }
    }

    private func reply(for state: SessionState, cleared: Bool?, now: Double, createdAt: Double, unchanged: Bool? = nil) -> WriteReply {
        let result: HostAPI.WriteResult
        if cleared != nil {
            result = HostAPI.WriteResult(messageCount: 0, createdAt: createdAt, lastUpdated: now, cleared: cleared)
        } else {
            result = HostAPI.WriteResult(
                messageCount: state.record.messages.count, createdAt: state.record.createdAt,
                lastUpdated: state.record.lastUpdated, unchanged: unchanged)
        }
        let body = HostAPI.Write(data: result).encodedJSON()
        return WriteReply(status: 200, body: body, replayed: false)
    }

    private func remember(_ key: String, _ entry: KeyEntry) {
        guard loaded != nil else { return }
        Self.remember(key, entry, in: &loaded!, max: context.maxKeysPerSession)
    }

    private static func remember(_ key: String, _ entry: KeyEntry, in loaded: inout Loaded, max: Int) {
        if loaded.keys.updateValue(entry, forKey: key) == nil {
            loaded.keyOrder.append(key)
        }
        if loaded.keyOrder.count > max {
            let dropped = loaded.keyOrder.removeFirst()
            loaded.keys[dropped] = nil
        }
    }

    private func wait(for ticket: CommitTicket) async throws(APIError) {
        do {
            // Within a trace: the wait for durability, and the batch that gave it.
            try await Traces.childSpan("storage commit") { span in
                try await ticket.wait()
                guard let span, let batch = ticket.batch else { return }
                span.attributes["db.system"] = batch.system
                span.attributes["storage.batch_size"] = batch.size
                span.attributes["storage.commit_ms"] = batch.commitSeconds * 1000
            }
        } catch {
            poison()
            throw (error as? APIError) ?? APIError(.storageUnavailable, "storage could not commit the write; retry")
        }
    }

    /// After a failed commit the in-memory state is ahead of storage: drop it.
    private func poison() {
        guard !poisoned else { return }
        poisoned = true
        loaded = nil
        onPoisoned(self)
    }

    /// Loads the session, then merges in writes another member held for it, before anything
    /// is served: so every write is answered on a history that has all the earlier ones.
    private func ensureReady() async throws(APIError) {
        try await ensureLoaded()
        guard !isHeldCopy, let source = context.heldElsewhere, merging.isRunning || source.isPending(id) else { return }
        try? await merging.run { await self.mergeHeld(from: source) }
        guard loaded != nil, !poisoned else {
            throw APIError(.storageUnavailable, "an earlier write of this session failed; retry")
        }
    }

    /// Applies, in order, the writes another member held for this session, each under its
    /// own idempotency key (a write merged before is recognised and skipped), then lets the
    /// holder forget them. A holder that cannot be reached is tried again later.
    private func mergeHeld(from source: HeldElsewhere) async {
        guard let writes = try? await source.pull(id), loaded != nil else { return }
        var queued: [(key: String, ticket: CommitTicket)] = []
        for write in writes {
            guard loaded != nil, loaded!.keys[write.key] == nil, let operation = try? SessionUpdate.decode(write.operation) else {
                continue
            }
            let key = IdempotencyKey(key: write.key, requestHash: write.requestHash)
            let recorded = WriteReply(status: write.status, body: Data(write.response.utf8), replayed: false)
            // A write this history cannot take (a limit) is dropped, as the owner would have refused it.
            if let (_, ticket) = try? applyNow(operation, idempotency: key, holdingFor: nil, now: write.createdAt, recorded: recorded),
                let ticket
            {
                queued.append((write.key, ticket))
            }
        }
        if let last = queued.last {
            guard (try? await wait(for: last.ticket)) != nil else { return }
        }
        for (key, ticket) in queued { markDone(key, ticket: ticket) }
        await source.acknowledge(id, writes.last?.seq ?? 0)
    }

    /// Makes `loaded` non-nil, loading from storage once however many callers wait.
    private func ensureLoaded() async throws(APIError) {
        guard !poisoned else {
            throw APIError(.storageUnavailable, "an earlier write of this session failed; retry")
        }
        // Handed away earlier, and ours again after a later ring change: load it afresh (from
        // the host that has it now), not from the frozen copy.
        if loaded?.movedTo != nil, !loading.isRunning, !isHeldCopy, context.ownsNow(id) { loaded = nil }
        if loaded != nil { return }
        if context.committer.isInDoubt {
            throw APIError(.storageUnavailable, "the database is not answering; retry")
        }
        let load = context.load
        let id = id
        let since = context.now() - context.idempotencyRetention
        let stored: StoredSession?
        do {
            stored = try await loading.run { try await load(id, since) }
        } catch let error as APIError {
            throw error
        } catch {
            if context.committer.isClosed {
                throw APIError(.shuttingDown, "the host is shutting down; retry on another attempt")
            }
            throw APIError(.storageUnavailable, "storage could not load the session; retry")
        }
        guard !poisoned else {
            throw APIError(.storageUnavailable, "an earlier write of this session failed; retry")
        }
        if loaded != nil { return }
        var fresh = Loaded(
            state: stored?.record.map(SessionState.init(stored:)) ?? SessionState(absent: id),
            nextSeq: stored?.nextSeq ?? 0, keys: [:], keyOrder: [], movedTo: stored?.movedTo)
        for record in (stored?.idempotency ?? []).reversed() {
            Self.remember(record.key, .done(record), in: &fresh, max: context.maxKeysPerSession)
        }
        version &+= 1
        loaded = fresh
    }
}
