import Foundation
import Logging
import NIOCore
import PostgresNIO
import ServerRuntime
import SessionModel

/// Sessions in a PostgreSQL database every host shares (`storage = postgres`): the same
/// contract as the SQLite store (a batch in one transaction, durable when it returns), every
/// commit fenced by this host's lease and ring version in the same transaction, content kept
/// as bytes, every operation bounded by `timeout`. docs/ARCHITECTURE.md, "Shared storage".
public final class PostgresSessionStore: SessionStore {
    let client: PostgresClient
    let fence: Fence
    let timeout: Duration
    let clock: ServerClock
    let codec: ContentCodec
    let logger: Logger
    public let description: String

    init(
        client: PostgresClient, fence: Fence, timeout: Duration, codec: ContentCodec = ContentCodec(), description: String,
        clock: ServerClock = .system, logger: Logger
    ) {
        self.clock = clock
        self.client = client
        self.fence = fence
        self.timeout = timeout
        self.codec = codec
        self.description = description
        self.logger = logger
    }

    // MARK: Schema

    /// Versioned migrations, applied in order at start-up under an advisory lock, so that
    /// hosts starting at once apply each exactly once.
    static let migrations: [(version: Int, name: String, statements: [String])] = [
        (
            1, "sessions, messages, idempotency, membership",
            [
                """
                CREATE TABLE sessions (
                    id text PRIMARY KEY,
                    metadata bytea NOT NULL,
                    created_at double precision NOT NULL,
                    last_updated double precision NOT NULL,
                    message_count integer NOT NULL
                )
                """,
                """
                CREATE TABLE messages (
                    session_id text NOT NULL,
                    seq bigint NOT NULL,
                    role text NOT NULL,
                    content bytea NOT NULL,
                    timestamp double precision NOT NULL,
                    PRIMARY KEY (session_id, seq)
                )
                """,
                """
                CREATE TABLE idempotency (
                    session_id text NOT NULL,
                    key text NOT NULL,
                    request_hash bigint NOT NULL,
                    status integer NOT NULL,
                    response bytea NOT NULL,
                    created_at double precision NOT NULL,
                    PRIMARY KEY (session_id, key)
                )
                """,
                "CREATE INDEX idempotency_by_age ON idempotency (created_at)",
                """
                CREATE TABLE members (
                    name text PRIMARY KEY,
                    address text NOT NULL,
                    incarnation bigint NOT NULL,
                    lease_until timestamptz NOT NULL,
                    joined_at timestamptz NOT NULL DEFAULT clock_timestamp()
                )
                """,
                "CREATE TABLE ring (id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL, members text NOT NULL)",
                "INSERT INTO ring (id, version, members) VALUES (1, 0, '[]')",
                "CREATE SEQUENCE incarnations",
            ]
        ),
        (
            2, "principals, lifetimes, compressed content",
            [
                "ALTER TABLE sessions ADD COLUMN principal text, ADD COLUMN expires_after double precision",
                "ALTER TABLE messages ADD COLUMN compressed boolean NOT NULL DEFAULT false",
                "CREATE INDEX sessions_by_principal ON sessions (principal, last_updated, id) WHERE principal IS NOT NULL",
                "CREATE INDEX sessions_retained ON sessions (last_updated, id) WHERE expires_after IS NULL",
                "CREATE INDEX sessions_own_lifetime ON sessions ((last_updated + expires_after), id) WHERE expires_after > 0",
            ]
        ),
    ]

    static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withTransaction(logger: logger) { connection in
            // One host at a time; the others find the work done.
            try await connection.query("SELECT pg_advisory_xact_lock(7400400)", logger: logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """, logger: logger)
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))", logger: logger)
                logger.notice("database schema migrated", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            }
        }
    }

    // MARK: SessionStore

    public func load(_ id: String, idempotencySince: Double) async throws -> StoredSession? {
        try await bounded("loading a session") { [client, logger] in
            try await client.withConnection { connection in
                var keys: [IdempotencyRecord] = []
                let keyRows = try await connection.query(
                    """
                    SELECT key, request_hash, status, response, created_at FROM idempotency
                    WHERE session_id = \(id) AND created_at >= \(idempotencySince) ORDER BY created_at DESC LIMIT 1000
                    """, logger: logger)
                for try await (key, hash, status, response, createdAt) in keyRows.decode((String, Int64, Int, ByteBuffer, Double).self) {
                    keys.append(
                        IdempotencyRecord(key: key, requestHash: hash, status: status, response: Data(response.readableBytesView), createdAt: createdAt))
                }
                var row: (ByteBuffer, Double, Double, String?, Double?)?
                for try await found in try await connection.query(
                    "SELECT metadata, created_at, last_updated, principal, expires_after FROM sessions WHERE id = \(id)", logger: logger
                ).decode((ByteBuffer, Double, Double, String?, Double?).self) {
                    row = found
                }
                guard let (metadataBytes, createdAt, lastUpdated, principal, expiresAfter) = row else {
                    return keys.isEmpty ? nil : StoredSession(record: nil, nextSeq: 0, idempotency: keys)
                }
                var messages: [Message] = []
                var nextSeq: Int64 = 0
                let messageRows = try await connection.query(
                    "SELECT seq, role, content, timestamp, compressed FROM messages WHERE session_id = \(id) ORDER BY seq", logger: logger)
                for try await (seq, role, content, timestamp, compressed) in messageRows.decode((Int64, String, ByteBuffer, Double, Bool).self) {
                    messages.append(
                        Message(
                            role: Role(rawValue: role) ?? .user, content: try ContentCodec.decode(content.readableBytesView, compressed: compressed),
                            timestamp: timestamp))
                    nextSeq = seq + 1
                }
                let metadata = JSONValue.parse(Data(metadataBytes.readableBytesView))?.objectValue ?? [:]
                let record = SessionRecord(
                    id: id, messages: messages, metadata: metadata, createdAt: createdAt, lastUpdated: lastUpdated, principal: principal,
                    expiresAfter: expiresAfter)
                return StoredSession(record: record, nextSeq: nextSeq, idempotency: keys)
            }
        }
    }

    public func commit(_ batch: [SessionMutation]) async throws {
        guard let version = batch.first?.ringVersion else { return }
        let plan = CommitPlan(batch)
        let fence = fence.current
        let (codec, client, logger) = (codec, client, logger)
        // Past its time limit the commit fails with `StoreTimeout`: it may still land, which the
        // committer settles before anything else commits.
        try await bounded("committing") {
            if plan.onlyWrites {
                return try await self.commitAtOnce(plan, fence: fence, ringVersion: version)
            }
            // A batch that deletes: the fence, the deletes, then the same statement's writes, in
            // one transaction (the statement's own fence finds the locks this one holds).
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, ringVersion: version, on: connection, logger: logger)
                try await Self.delete(plan, on: connection, logger: logger)
                try await Self.write(Self.statement(plan, fence: fence, ringVersion: version, codec: codec), version: version) {
                    try await connection.execute($0, logger: logger)
                }
            }
        }
    }

    /// A batch that only writes rows (appends, metadata, keys: the common case): one prepared
    /// statement, fenced (`PostgresBatchStatement`).
    private func commitAtOnce(_ plan: CommitPlan, fence: Fence.State, ringVersion: Int64) async throws {
        let (client, logger) = (client, logger)
        try await Self.write(Self.statement(plan, fence: fence, ringVersion: ringVersion, codec: codec), version: ringVersion) {
            try await client.execute($0, logger: logger)
        }
    }

    private static func statement(_ plan: CommitPlan, fence: Fence.State, ringVersion: Int64, codec: ContentCodec) throws -> PostgresBatchStatement {
        guard let incarnation = fence.incarnation else { throw FenceError("this host holds no lease") }
        return PostgresBatchStatement(plan: plan, ringVersion: ringVersion, node: fence.node, incarnation: incarnation, codec: codec)
    }

    /// Runs the batch statement through `execute` (the pool's or a transaction's connection);
    /// throws unless its fence held.
    private static func write<Rows: AsyncSequence>(
        _ statement: PostgresBatchStatement, version: Int64, execute: (PostgresBatchStatement) async throws -> Rows
    ) async throws where Rows.Element == Int {
        var held = 0
        for try await count in try await execute(statement) { held = count }
        guard held == 1 else {
            throw FenceError("this host's lease expired or its ring changed (version \(version)); nothing was written")
        }
    }

    /// The fence: this host holds a live lease (by the database's clock), as the incarnation
    /// it registered, and the ring is still at `ringVersion`. The ring row is share-locked
    /// and the member row key-share-locked until the commit, so a ring change (which updates
    /// the one and deletes expired others) waits for this transaction, never the reverse.
    private static func checkFence(_ fence: Fence.State, ringVersion: Int64, on connection: PostgresConnection, logger: Logger) async throws {
        guard let incarnation = fence.incarnation else { throw FenceError("this host holds no lease") }
        var held = false
        for try await _ in try await connection.query(
            """
            SELECT 1 FROM ring r, members m
            WHERE r.id = 1 AND r.version = \(ringVersion)
              AND m.name = \(fence.node) AND m.incarnation = \(incarnation) AND m.lease_until > clock_timestamp()
            FOR SHARE OF r FOR KEY SHARE OF m
            """, logger: logger
        ) {
            held = true
        }
        guard held else { throw FenceError("this host's lease expired or its ring changed (version \(ringVersion)); nothing was written") }
    }

    /// A batch's deletes, before its writes.
    private static func delete(_ plan: CommitPlan, on connection: PostgresConnection, logger: Logger) async throws {
        if !plan.clearMessages.isEmpty {
            try await connection.query("DELETE FROM messages WHERE session_id = ANY(\(plan.clearMessages))", logger: logger)
        }
        if !plan.deleteSessions.isEmpty {
            try await connection.query("DELETE FROM sessions WHERE id = ANY(\(plan.deleteSessions))", logger: logger)
        }
        if !plan.eraseKeys.isEmpty {
            try await connection.query("DELETE FROM idempotency WHERE session_id = ANY(\(plan.eraseKeys))", logger: logger)
        }
    }

    public func sessionCount() async throws -> Int {
        try await bounded("counting sessions") { [client, logger] in
            var count = 0
            for try await value in try await client.query("SELECT count(*) FROM sessions", logger: logger).decode(Int.self) { count = value }
            return count
        }
    }

    public func pruneIdempotency(before cutoff: Double) async throws -> Int {
        try await bounded("forgetting idempotency keys") { [client, logger] in
            var count = 0
            let rows = try await client.query(
                "WITH gone AS (DELETE FROM idempotency WHERE created_at < \(cutoff) RETURNING 1) SELECT count(*) FROM gone", logger: logger)
            for try await value in rows.decode(Int.self) { count = value }
            return count
        }
    }

    public func sessionIDs(after cursor: String?, limit: Int) async throws -> [String] {
        try await bounded("listing sessions") { [client, logger] in
            var ids: [String] = []
            let rows = try await client.query("SELECT id FROM sessions WHERE id > \(cursor ?? "") ORDER BY id LIMIT \(limit)", logger: logger)
            for try await id in rows.decode(String.self) { ids.append(id) }
            return ids
        }
    }

    public func sessionIDs(principal: String, after cursor: String?, limit: Int) async throws -> [String] {
        try await bounded("listing a principal's sessions") { [client, logger] in
            var ids: [String] = []
            let rows = try await client.query(
                "SELECT id FROM sessions WHERE principal = \(principal) AND id > \(cursor ?? "") ORDER BY id LIMIT \(limit)", logger: logger)
            for try await id in rows.decode(String.self) { ids.append(id) }
            return ids
        }
    }

    public func expiredSessions(
        _ kind: ExpiryKind, now: Double, retention: Double, after cursor: ExpiryCursor?, limit: Int
    ) async throws
        -> [ExpiryCursor]
    {
        let after = cursor ?? ExpiryCursor(key: -Double.greatestFiniteMagnitude, id: "")
        return try await bounded("looking for expired sessions") { [client, logger] in
            let query: PostgresQuery
            switch kind {
            case .retention:
                guard retention > 0 else { return [] }
                query = """
                    SELECT last_updated, id FROM sessions
                    WHERE expires_after IS NULL AND last_updated <= \(now - retention) AND (last_updated, id) > (\(after.key), \(after.id))
                    ORDER BY last_updated, id LIMIT \(limit)
                    """
            case .ownLifetime:
                query = """
                    SELECT last_updated + expires_after, id FROM sessions
                    WHERE expires_after > 0 AND last_updated + expires_after <= \(now)
                        AND (last_updated + expires_after, id) > (\(after.key), \(after.id))
                    ORDER BY last_updated + expires_after, id LIMIT \(limit)
                    """
            }
            var found: [ExpiryCursor] = []
            for try await (key, id) in try await client.query(query, logger: logger).decode((Double, String).self) {
                found.append(ExpiryCursor(key: key, id: id))
            }
            return found
        }
    }

    public func summaries(_ listing: SessionListing, now: Double, retention: Double) async throws -> [HostAPI.SessionSummary] {
        // Absent filters match everything: one statement, its parameters always bound.
        let before = listing.before
        let prefix = listing.prefix ?? ""
        let query: PostgresQuery = """
            SELECT id, principal, metadata, created_at, last_updated, message_count, expires_after FROM sessions
            WHERE ((expires_after IS NULL AND (\(retention) <= 0 OR last_updated > \(now - retention))) OR expires_after = 0
                    OR last_updated + expires_after > \(now))
                AND (\(listing.principal)::text IS NULL OR principal = \(listing.principal))
                AND id >= \(prefix) AND id < \(SessionListing.upperBound(of: prefix))
                AND (\(before == nil) OR (last_updated, id) < (\(before?.lastUpdated ?? 0), \(before?.id ?? "")))
            ORDER BY last_updated DESC, id DESC LIMIT \(listing.limit)
            """
        return try await bounded("listing sessions") { [client, logger] in
            var summaries: [HostAPI.SessionSummary] = []
            let rows = try await client.query(query, logger: logger)
            for try await (id, principal, metadata, createdAt, lastUpdated, count, lifetime) in rows.decode(
                (String, String?, ByteBuffer, Double, Double, Int, Double?).self)
            {
                summaries.append(
                    HostAPI.SessionSummary(
                        id: id, principal: principal, metadata: JSONValue.parse(Data(metadata.readableBytesView))?.objectValue ?? [:],
                        createdAt: createdAt, lastUpdated: lastUpdated, messageCount: count, expiresAfter: lifetime))
            }
            return summaries
        }
    }

    public func close() async throws {}

    /// Runs `body`, or throws once `timeout` has passed: a database that stopped answering
    /// fails the request fast instead of holding it.
    func bounded<T: Sendable>(_ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await Deadline.run(within: timeout, clock: clock, what, body)
    }
}

/// A commit refused by the fence: this host no longer holds its lease, or its ring changed.
struct FenceError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
