import Foundation
import GRDB
import GRDBSQLite
import SessionModel
import Synchronization

/// The embedded default store: one SQLite database in WAL mode under `--data DIR`.
///
/// Writes go through GRDB's single writer connection, on GRDB's own dispatch queue (never
/// Swift's cooperative pool); reads use its pool of reader connections, concurrent with writes.
/// With `synchronous = FULL` a commit is on disk before `commit` returns.
public final class SQLiteSessionStore: LocalSessionStore, BlockingCommitStore {
    public enum Synchronous: String, Sendable, CaseIterable {
        /// fsync on every commit: survives power loss.
        case full
        /// fsync at checkpoints only: survives a process crash, not power loss.
        case normal
    }

    public let path: String
    private let pool: DatabasePool
    private let codec: ContentCodec
    private let checkpointer: WALCheckpointer

    public var description: String { "sqlite \(path)" }

    /// The database file of a data directory.
    public static func databasePath(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("sessions.sqlite")
    }

    /// Opens (creating if needed) `DIR/sessions.sqlite`.
    /// `walFrames`: the log's size, in pages, past which it is started over (`WALBound`).
    public init(
        directory: String, synchronous: Synchronous = .full, codec: ContentCodec = ContentCodec(),
        walFrames: Int = WALBound.defaultFrames
    ) throws {
        self.codec = codec
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create data directory \(directory): \(error.localizedDescription)")
        }
        path = Self.databasePath(in: directory)
        let bound = WALBound(frames: walFrames)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue.uppercased())")
            // No automatic checkpoint inside a commit: the checkpointer's thread copies the log,
            // and the writer only finishes a log past its bound.
            bound.install(on: db)
            // A log started over is cut back to its bound.
            try db.execute(sql: "PRAGMA journal_size_limit = \(walFrames * 4_096)")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            checkpointer = try WALCheckpointer(path: path, bound: bound)
        } catch {
            throw StoreError("cannot open \(path): \(error)")
        }
    }

    private static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE sessions (
                        id TEXT PRIMARY KEY NOT NULL,
                        metadata BLOB NOT NULL,
                        created_at REAL NOT NULL,
                        last_updated REAL NOT NULL,
                        message_count INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE messages (
                        session_id TEXT NOT NULL,
                        seq INTEGER NOT NULL,
                        role TEXT NOT NULL,
                        content TEXT NOT NULL,
                        timestamp REAL NOT NULL,
                        PRIMARY KEY (session_id, seq)
                    );
                    CREATE TABLE idempotency (
                        session_id TEXT NOT NULL,
                        key TEXT NOT NULL,
                        request_hash INTEGER NOT NULL,
                        status INTEGER NOT NULL,
                        response BLOB NOT NULL,
                        created_at REAL NOT NULL,
                        PRIMARY KEY (session_id, key)
                    ) WITHOUT ROWID;
                    CREATE INDEX idempotency_by_age ON idempotency (created_at);
                    """
            )
        }
        migrator.registerMigration("v2: ring changes") { db in
            try db.execute(
                sql: """
                    CREATE TABLE moved (id TEXT PRIMARY KEY NOT NULL, to_node TEXT NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE TABLE adopted (id TEXT PRIMARY KEY NOT NULL, from_node TEXT NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID;
                    CREATE TABLE ring_state (key TEXT PRIMARY KEY NOT NULL, state BLOB NOT NULL) WITHOUT ROWID;
                    """
            )
        }
        migrator.registerMigration("v3: hinted handoff") { db in
            try db.execute(
                sql: """
                    CREATE TABLE held_sessions (id TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, seed_version REAL NOT NULL) WITHOUT ROWID;
                    CREATE TABLE held_writes (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        session_id TEXT NOT NULL,
                        owner TEXT NOT NULL,
                        operation BLOB NOT NULL,
                        key TEXT NOT NULL,
                        request_hash INTEGER NOT NULL,
                        status INTEGER NOT NULL,
                        response BLOB NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE INDEX held_writes_by_session ON held_writes (session_id, seq);
                    """
            )
        }
        migrator.registerMigration("v4: principals, lifetimes, compressed content") { db in
            try db.execute(
                sql: """
                    ALTER TABLE sessions ADD COLUMN principal TEXT;
                    ALTER TABLE sessions ADD COLUMN expires_after REAL;
                    ALTER TABLE messages ADD COLUMN compressed INTEGER NOT NULL DEFAULT 0;
                    CREATE INDEX sessions_by_principal ON sessions (principal, last_updated, id) WHERE principal IS NOT NULL;
                    CREATE INDEX sessions_retained ON sessions (last_updated, id) WHERE expires_after IS NULL;
                    CREATE INDEX sessions_own_lifetime ON sessions (last_updated + expires_after, id) WHERE expires_after > 0;
                    """
            )
        }
        return migrator
    }()

    /// The schema's newest migration: a database file of ours has it once opened.
    static var schemaVersion: String { "v4: principals, lifetimes, compressed content" }

    public func load(_ id: String, idempotencySince: Double) async throws -> StoredSession? {
        try await pool.read { db in
            let keys = try Row.fetchAll(
                db,
                sql: """
                    SELECT key, request_hash, status, response, created_at FROM idempotency
                    WHERE session_id = ? AND created_at >= ? ORDER BY created_at DESC LIMIT 1000
                    """,
                arguments: [id, idempotencySince]
            ).map { row in
                IdempotencyRecord(key: row[0], requestHash: row[1], status: row[2], response: row[3], createdAt: row[4])
            }
            let movedTo = try String.fetchOne(db, sql: "SELECT to_node FROM moved WHERE id = ?", arguments: [id])
            let adopted = try Bool.fetchOne(db, sql: "SELECT 1 FROM adopted WHERE id = ?", arguments: [id]) ?? false
            guard
                let session = try Row.fetchOne(
                    db, sql: "SELECT metadata, created_at, last_updated, principal, expires_after FROM sessions WHERE id = ?", arguments: [id])
            else {
                return keys.isEmpty && movedTo == nil && !adopted
                    ? nil : StoredSession(record: nil, nextSeq: 0, idempotency: keys, movedTo: movedTo, adopted: adopted)
            }
            var messages: [Message] = []
            var nextSeq: Int64 = 0
            let rows = try Row.fetchCursor(
                db, sql: "SELECT seq, role, content, timestamp, compressed FROM messages WHERE session_id = ? ORDER BY seq",
                arguments: [id])
            while let row = try rows.next() {
                let role: String = row[1]
                messages.append(Message(role: Role(rawValue: role) ?? .user, content: try Self.content(row[2], compressed: row[4]), timestamp: row[3]))
                nextSeq = (row[0] as Int64) + 1
            }
            let metadataData: Data = session[0]
            let metadata = (try? JSONCoding.decoder.decode(JSONObject.self, from: metadataData)) ?? [:]
            let record = SessionRecord(
                id: id, messages: messages, metadata: metadata, createdAt: session[1], lastUpdated: session[2], principal: session[3],
                expiresAfter: session[4])
            return StoredSession(record: record, nextSeq: nextSeq, idempotency: keys, movedTo: movedTo, adopted: adopted)
        }
    }

    public func commitBlocking(_ batch: [SessionMutation]) throws {
        guard !batch.isEmpty else { return }
        let codec = codec
        try pool.write { db in
            for mutation in batch {
                try Self.apply(mutation, in: db, codec: codec)
            }
        }
    }

    public func commit(_ batch: [SessionMutation]) async throws {
        guard !batch.isEmpty else { return }
        let codec = codec
        try await pool.write { db in
            for mutation in batch {
                try Self.apply(mutation, in: db, codec: codec)
            }
        }
    }

    private static func apply(_ mutation: SessionMutation, in db: Database, codec: ContentCodec) throws {
        let id = mutation.id
        switch mutation.change {
        case .append(let messages, let firstSeq):
            try upsertSession(mutation, in: db)
            try insert(messages, of: id, from: firstSeq, in: db, codec: codec)
        case .replaceMessages(let messages):
            try upsertSession(mutation, in: db)
            try db.cachedStatement(sql: "DELETE FROM messages WHERE session_id = ?").execute(arguments: [id])
            try insert(messages, of: id, from: 0, in: db, codec: codec)
        case .touch:
            try upsertSession(mutation, in: db)
        case .delete:
            try db.cachedStatement(sql: "DELETE FROM messages WHERE session_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM sessions WHERE id = ?").execute(arguments: [id])
        case .erase:
            try db.cachedStatement(sql: "DELETE FROM messages WHERE session_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM idempotency WHERE session_id = ?").execute(arguments: [id])
            try db.cachedStatement(sql: "DELETE FROM sessions WHERE id = ?").execute(arguments: [id])
        }
        if let held = mutation.held {
            try db.cachedStatement(
                sql: """
                    INSERT INTO held_writes (session_id, owner, operation, key, request_hash, status, response, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [
                held.sessionID, held.owner, held.operation, held.key, held.requestHash, held.status, held.response, held.createdAt,
            ])
        }
        if let record = mutation.idempotency {
            try db.cachedStatement(
                sql: """
                    INSERT OR REPLACE INTO idempotency (session_id, key, request_hash, status, response, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """
            ).execute(arguments: [id, record.key, record.requestHash, record.status, record.response, record.createdAt])
        }
    }

    /// Inserts messages at consecutive sequence numbers from `firstSeq`.
    private static func insert(_ messages: [Message], of id: String, from firstSeq: Int64, in db: Database, codec: ContentCodec) throws {
        let insert = try db.cachedStatement(
            sql: "INSERT INTO messages (session_id, seq, role, content, timestamp, compressed) VALUES (?, ?, ?, ?, ?, ?)")
        for (offset, message) in messages.enumerated() {
            let (bytes, compressed) = codec.encode(message.content)
            try insert.execute(arguments: [
                id, firstSeq + Int64(offset), message.role.rawValue, contentValue(bytes), message.timestamp, compressed ? 1 : 0,
            ])
        }
    }

    /// Message content as SQLite must receive it to keep every byte: a blob of its (UTF-8 or
    /// compressed) bytes. (Bound as text, GRDB hands SQLite a C string, which ends at the
    /// first NUL: "abc\u{0}def" would be stored as "abc".) Empty content stays text: an empty
    /// blob binds as NULL.
    private static func contentValue(_ bytes: [UInt8]) -> any DatabaseValueConvertible {
        bytes.isEmpty ? "" : Data(bytes)
    }

    /// Reads content stored by `contentValue` (or as text, by earlier versions) byte for byte.
    private static func content(_ value: DatabaseValue, compressed: Bool) throws -> String {
        switch value.storage {
        case .blob(let data): try ContentCodec.decode(data, compressed: compressed)
        case .string(let text): text
        default: ""
        }
    }

    private static func upsertSession(_ mutation: SessionMutation, in db: Database) throws {
        if let metadata = mutation.metadata {
            try db.cachedStatement(
                sql: """
                    INSERT INTO sessions (id, metadata, created_at, last_updated, message_count, principal, expires_after)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata, created_at = excluded.created_at,
                        last_updated = excluded.last_updated, message_count = excluded.message_count,
                        principal = excluded.principal, expires_after = excluded.expires_after
                    """
            ).execute(arguments: [
                mutation.id, metadata, mutation.createdAt, mutation.lastUpdated, mutation.messageCount, mutation.principal, mutation.expiresAfter,
            ])
        } else {
            try db.cachedStatement(
                sql: """
                    INSERT INTO sessions (id, metadata, created_at, last_updated, message_count, principal, expires_after)
                    VALUES (?, X'7B7D', ?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET last_updated = excluded.last_updated, message_count = excluded.message_count,
                        principal = excluded.principal, expires_after = excluded.expires_after
                    """
            ).execute(arguments: [
                mutation.id, mutation.createdAt, mutation.lastUpdated, mutation.messageCount, mutation.principal, mutation.expiresAfter,
            ])
        }
    }

    /// The session row of a whole record, stored under `id`.
    private static func insertRow(of record: SessionRecord, as id: String, in db: Database) throws {
        try db.execute(
            sql: """
                INSERT INTO sessions (id, metadata, created_at, last_updated, message_count, principal, expires_after)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """,
            arguments: [
                id, record.metadata.encodedJSON(), record.createdAt, record.lastUpdated, record.messages.count, record.principal,
                record.expiresAfter,
            ])
    }

    public func sessionCount() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions WHERE id NOT LIKE '!%'") ?? 0 }
    }

    public func pruneIdempotency(before cutoff: Double) async throws -> Int {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM idempotency WHERE created_at < ?", arguments: [cutoff])
            return db.changesCount
        }
    }

    public func sessionIDs(after cursor: String?, limit: Int) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                db, sql: "SELECT id FROM sessions WHERE id > ? AND id NOT LIKE '!%' ORDER BY id LIMIT ?", arguments: [cursor ?? "", limit])
        }
    }

    public func sessionIDs(principal: String, after cursor: String?, limit: Int) async throws -> [String] {
        try await pool.read { db in
            try String.fetchAll(
                db,
                sql: """
                    SELECT id FROM sessions WHERE principal = ? AND id > ? AND id NOT LIKE '!%' AND id NOT IN (SELECT id FROM moved)
                    ORDER BY id LIMIT ?
                    """,
                arguments: [principal, cursor ?? "", limit])
        }
    }

    public func expiredSessions(
        _ kind: ExpiryKind, now: Double, retention: Double, after cursor: ExpiryCursor?, limit: Int
    ) async throws
        -> [ExpiryCursor]
    {
        let after = cursor ?? ExpiryCursor(key: -Double.greatestFiniteMagnitude, id: "")
        return try await pool.read { db in
            let rows: [Row]
            switch kind {
            case .retention:
                guard retention > 0 else { return [] }
                rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT last_updated, id FROM sessions
                        WHERE expires_after IS NULL AND last_updated <= ? AND (last_updated, id) > (?, ?) AND id NOT LIKE '!%'
                        ORDER BY last_updated, id LIMIT ?
                        """,
                    arguments: [now - retention, after.key, after.id, limit])
            case .ownLifetime:
                rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT last_updated + expires_after, id FROM sessions
                        WHERE expires_after > 0 AND last_updated + expires_after <= ? AND (last_updated + expires_after, id) > (?, ?)
                            AND id NOT LIKE '!%'
                        ORDER BY last_updated + expires_after, id LIMIT ?
                        """,
                    arguments: [now, after.key, after.id, limit])
            }
            return rows.map { ExpiryCursor(key: $0[0], id: $0[1]) }
        }
    }

    public func summaries(_ listing: SessionListing, now: Double, retention: Double) async throws -> [HostAPI.SessionSummary] {
        var sql = """
            SELECT id, principal, metadata, created_at, last_updated, message_count, expires_after FROM sessions
            WHERE id NOT LIKE '!%' AND id NOT IN (SELECT id FROM moved)
                AND ((expires_after IS NULL AND (? <= 0 OR last_updated > ?)) OR expires_after = 0 OR last_updated + expires_after > ?)
            """
        var arguments: StatementArguments = [retention, now - retention, now]
        if let principal = listing.principal {
            sql += " AND principal = ?"
            _ = arguments.append(contentsOf: [principal])
        }
        if let prefix = listing.prefix {
            sql += " AND id >= ? AND id < ?"
            _ = arguments.append(contentsOf: [prefix, SessionListing.upperBound(of: prefix)])
        }
        if let before = listing.before {
            sql += " AND (last_updated, id) < (?, ?)"
            _ = arguments.append(contentsOf: [before.lastUpdated, before.id])
        }
        sql += " ORDER BY last_updated DESC, id DESC LIMIT ?"
        _ = arguments.append(contentsOf: [listing.limit])
        let query = sql
        let values = arguments
        return try await pool.read { db in
            try Row.fetchAll(db, sql: query, arguments: values).map { row in
                let metadata: Data = row[2]
                return HostAPI.SessionSummary(
                    id: row[0], principal: row[1], metadata: JSONValue.parse(metadata)?.objectValue ?? [:], createdAt: row[3], lastUpdated: row[4],
                    messageCount: row[5], expiresAfter: row[6])
            }
        }
    }

    public func loadRingState() async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT state FROM ring_state WHERE key = 'ring'") }
    }

    public func saveRingState(_ state: Data) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO ring_state (key, state) VALUES ('ring', ?)", arguments: [state])
        }
    }

    public func adopt(_ id: String, _ session: StoredSession, from node: String, version: Int) async throws -> Bool {
        let codec = codec
        return try await pool.write { db in
            // What this host may hold of the id from an older ring is replaced by the owner's copy.
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [id])
            let existed = try Bool.fetchOne(db, sql: "SELECT 1 FROM sessions WHERE id = ?", arguments: [id]) ?? false
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM moved WHERE id = ?", arguments: [id])
            if let record = session.record {
                try Self.insertRow(of: record, as: id, in: db)
                // Sequence numbers continue from the previous owner's, so later appends follow on.
                try Self.insert(record.messages, of: id, from: session.nextSeq - Int64(record.messages.count), in: db, codec: codec)
            }
            let keys = try db.cachedStatement(
                sql: """
                    INSERT OR REPLACE INTO idempotency (session_id, key, request_hash, status, response, created_at)
                    VALUES (?, ?, ?, ?, ?, ?)
                    """)
            for key in session.idempotency {
                try keys.execute(arguments: [id, key.key, key.requestHash, key.status, key.response, key.createdAt])
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO adopted (id, from_node, version) VALUES (?, ?, ?)", arguments: [id, node, version])
            return session.record != nil && !existed
        }
    }

    public func markMoved(_ id: String, to node: String, version: Int) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO moved (id, to_node, version) VALUES (?, ?, ?)", arguments: [id, node, version])
            try db.execute(sql: "DELETE FROM adopted WHERE id = ?", arguments: [id])
        }
    }

    public func purgeMoved(_ id: String) async throws -> Bool {
        try await pool.write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM moved WHERE id = ?", arguments: [id]) ?? false else { return false }
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM idempotency WHERE session_id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id])
            return db.changesCount > 0
        }
    }

    // MARK: Hinted handoff

    public func seedHeld(_ id: String, owner: String, record: SessionRecord?, version: Double) async throws {
        let copy = HeldWrites.copyID(id)
        let codec = codec
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM moved WHERE id = ?", arguments: [copy])
            if let record {
                try Self.insertRow(of: record, as: copy, in: db)
                try Self.insert(record.messages, of: copy, from: 0, in: db, codec: codec)
            }
            try db.execute(
                sql: "INSERT OR REPLACE INTO held_sessions (id, owner, seed_version) VALUES (?, ?, ?)", arguments: [id, owner, version])
        }
    }

    public func heldInfo(_ id: String) async throws -> HeldInfo? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT owner, seed_version FROM held_sessions WHERE id = ?", arguments: [id]) else {
                return nil
            }
            let writes = try Int.fetchOne(db, sql: "SELECT count(*) FROM held_writes WHERE session_id = ?", arguments: [id]) ?? 0
            return HeldInfo(id: id, owner: row[0], seedVersion: row[1], writes: writes)
        }
    }

    public func heldSessions(owner: String?) async throws -> [HeldInfo] {
        try await pool.read { db in
            let rows: [Row]
            let sql = """
                SELECT h.id, h.owner, h.seed_version, (SELECT count(*) FROM held_writes w WHERE w.session_id = h.id)
                FROM held_sessions h
                """
            if let owner {
                rows = try Row.fetchAll(db, sql: sql + " WHERE h.owner = ? ORDER BY h.id", arguments: [owner])
            } else {
                rows = try Row.fetchAll(db, sql: sql + " ORDER BY h.id")
            }
            return rows.map { HeldInfo(id: $0[0], owner: $0[1], seedVersion: $0[2], writes: $0[3]) }
        }
    }

    public func heldWrites(_ id: String) async throws -> [HostAPI.HeldWrite] {
        try await pool.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT seq, operation, key, request_hash, status, response, created_at FROM held_writes
                    WHERE session_id = ? ORDER BY seq
                    """,
                arguments: [id]
            ).compactMap { row in
                let operation: Data = row[1]
                let response: Data = row[5]
                guard let value = JSONValue.parse(operation) else { return nil }
                return HostAPI.HeldWrite(
                    seq: row[0], operation: value, key: row[2], requestHash: row[3], status: row[4],
                    response: String(decoding: response, as: UTF8.self), createdAt: row[6])
            }
        }
    }

    public func dropHeld(_ id: String, through seq: Int64) async throws -> Bool {
        let copy = HeldWrites.copyID(id)
        return try await pool.write { db in
            try db.execute(sql: "DELETE FROM held_writes WHERE session_id = ? AND seq <= ?", arguments: [id, seq])
            let left = try Int.fetchOne(db, sql: "SELECT count(*) FROM held_writes WHERE session_id = ?", arguments: [id]) ?? 0
            guard left == 0 else { return false }
            try db.execute(sql: "DELETE FROM held_sessions WHERE id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM idempotency WHERE session_id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM moved WHERE id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [copy])
            return true
        }
    }

    public func close() async throws {
        // Closing checkpoints the WAL: disk work, kept off the cooperative pool.
        let pool = self.pool
        let checkpointer = self.checkpointer
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                checkpointer.stop()
                continuation.resume(with: Result { try pool.close() })
            }
        }
    }
}

/// Checkpoints the WAL on a thread of its own, with a connection of its own: a commit never
/// waits for one (SQLite's automatic checkpoint runs inside the COMMIT that crosses its
/// threshold, fsync of the database file included). PASSIVE: it copies what no reader still
/// needs and never blocks the writer or the readers. Every 100 ms, and at once when the
/// writer finds the log past its bound (`WALBound`).
public final class WALCheckpointer: Sendable {
    private let connection: DatabaseQueue
    private let bound: WALBound
    private let finished = DispatchSemaphore(value: 0)
    private let stopping = Atomic<Bool>(false)

    init(path: String, bound: WALBound) throws {
        self.bound = bound
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        connection = try DatabaseQueue(path: path, configuration: configuration)
        // The thread holds the checkpointer only for one round at a time: a store dropped
        // without `close` does not leave it running.
        let thread = Thread { [weak self] in
            while let checkpointer = self, !checkpointer.stopping.load(ordering: .relaxed) {
                checkpointer.round()
            }
            self?.finished.signal()
        }
        thread.name = "wal-checkpointer"
        thread.start()
    }

    private func round() {
        bound.waitForRound(atMost: .milliseconds(100))
        guard !stopping.load(ordering: .relaxed) else { return }
        let log = try? connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
        if let log { bound.copied(log.walFrameCount) }
    }

    /// Stops the thread (after the checkpoint under way) and closes its connection. Blocking.
    func stop() {
        guard !stopping.exchange(true, ordering: .relaxed) else { return }
        bound.wakeRound()
        finished.wait()
        try? connection.close()
    }
}

/// The WAL's bound, kept by the writer's connection with the checkpointer's help.
///
/// Under a steady stream of commits a passive checkpoint never finds the whole log copied at a
/// moment a writer could start it over, so the log would grow without end (1.6 GB in a 30 s
/// churn). Only the writer can finish it: a passive checkpoint on its own connection, which no
/// other writer can outrun, after which its next commit starts the log over and
/// `journal_size_limit` cuts the file back. SQLite's WAL hook (in place of its automatic
/// checkpoint) tells the writer the log's length after each commit:
/// - past the bound, the checkpointer's round is woken, to copy the log off the commit path;
/// - once that round has copied it (`copied`), the writer's next commit copies the little
///   committed since, itself: a commit pays for about a round's length of log once per bound;
/// - past twice the bound (the round late, on a starved machine), the writer copies it all
///   itself: the log's bound holds however late that thread runs.
/// No one waits on a lock for any of it (a checkpoint that finds another under way gives up,
/// and the next commit tries again).
public final class WALBound: Sendable {
    /// Log frames (pages) past which the log is started over: 4096, 16 MB of 4 KB pages.
    public static let defaultFrames = 4_096

    let frames: Int
    private let wake = DispatchSemaphore(value: 0)
    private let woken = Atomic<Bool>(false)
    private let caughtUp = Atomic<Bool>(false)

    init(frames: Int) {
        self.frames = max(frames, 1)
    }

    enum Step: Equatable {
        case none, wakeRound, finish
    }

    /// What a commit that left `length` frames in the log does.
    func step(afterCommitLeaving length: Int) -> Step {
        guard length > frames else { return .none }
        if length > 2 * frames || (caughtUp.load(ordering: .relaxed) && caughtUp.exchange(false, ordering: .relaxed)) {
            return .finish
        }
        return .wakeRound
    }

    /// Makes the writer's connection keep the bound (see the type's description).
    /// `wal_autocheckpoint` shares the hook: it must not be set after this.
    func install(on db: Database) {
        // The connection's configuration holds this object as long as the connection lives,
        // and the hook is called only on it.
        sqlite3_wal_hook(
            db.sqliteConnection,
            { context, connection, name, length in
                guard let context else { return SQLITE_OK }
                let bound = Unmanaged<WALBound>.fromOpaque(context).takeUnretainedValue()
                switch bound.step(afterCommitLeaving: Int(length)) {
                case .none: break
                case .wakeRound: bound.wakeRound()
                case .finish: _ = sqlite3_wal_checkpoint_v2(connection, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
                }
                return SQLITE_OK
            },
            Unmanaged.passUnretained(self).toOpaque())
    }

    /// Wakes the checkpointer's round now, unless it is already woken.
    func wakeRound() {
        if !woken.exchange(true, ordering: .relaxed) { wake.signal() }
    }

    /// The checkpointer waits for its next round.
    func waitForRound(atMost timeout: DispatchTimeInterval) {
        _ = wake.wait(timeout: .now() + timeout)
        woken.store(false, ordering: .relaxed)
    }

    /// A round copied a log `length` frames long.
    func copied(_ length: Int) {
        if length > frames { caughtUp.store(true, ordering: .relaxed) }
    }
}
