import Foundation
import GRDB
import SessionModel

/// The embedded default store: one SQLite database in WAL mode under `--data DIR`.
///
/// Writes go through GRDB's single writer connection, on GRDB's own dispatch queue (never
/// Swift's cooperative pool); reads use its pool of reader connections, concurrent with writes.
/// With `synchronous = FULL` a commit is on disk before `commit` returns.
public final class SQLiteSessionStore: LocalSessionStore {
    public enum Synchronous: String, Sendable, CaseIterable {
        /// fsync on every commit: survives power loss.
        case full
        /// fsync at checkpoints only: survives a process crash, not power loss.
        case normal
    }

    public let path: String
    private let pool: DatabasePool

    public var description: String { "sqlite \(path)" }

    /// Opens (creating if needed) `DIR/sessions.sqlite`.
    public init(directory: String, synchronous: Synchronous = .full) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create data directory \(directory): \(error.localizedDescription)")
        }
        path = (directory as NSString).appendingPathComponent("sessions.sqlite")
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronous.rawValue.uppercased())")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
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
        return migrator
    }()

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
                    db, sql: "SELECT metadata, created_at, last_updated FROM sessions WHERE id = ?", arguments: [id])
            else {
                return keys.isEmpty && movedTo == nil && !adopted
                    ? nil : StoredSession(record: nil, nextSeq: 0, idempotency: keys, movedTo: movedTo, adopted: adopted)
            }
            var messages: [Message] = []
            var nextSeq: Int64 = 0
            let rows = try Row.fetchCursor(
                db, sql: "SELECT seq, role, content, timestamp FROM messages WHERE session_id = ? ORDER BY seq",
                arguments: [id])
            while let row = try rows.next() {
                let role: String = row[1]
                messages.append(Message(role: Role(rawValue: role) ?? .user, content: Self.content(row[2]), timestamp: row[3]))
                nextSeq = (row[0] as Int64) + 1
            }
            let metadataData: Data = session[0]
            let metadata = (try? JSONCoding.decoder.decode(JSONObject.self, from: metadataData)) ?? [:]
            let record = SessionRecord(id: id, messages: messages, metadata: metadata, createdAt: session[1], lastUpdated: session[2])
            return StoredSession(record: record, nextSeq: nextSeq, idempotency: keys, movedTo: movedTo, adopted: adopted)
        }
    }

    public func commit(_ batch: [SessionMutation]) async throws {
        guard !batch.isEmpty else { return }
        try await pool.write { db in
            for mutation in batch {
                try Self.apply(mutation, in: db)
            }
        }
    }

    private static func apply(_ mutation: SessionMutation, in db: Database) throws {
        let id = mutation.id
        switch mutation.change {
        case .append(let messages, let firstSeq):
            try upsertSession(mutation, in: db)
            try insert(messages, of: id, from: firstSeq, in: db)
        case .replaceMessages(let messages):
            try upsertSession(mutation, in: db)
            try db.cachedStatement(sql: "DELETE FROM messages WHERE session_id = ?").execute(arguments: [id])
            try insert(messages, of: id, from: 0, in: db)
        case .touch:
            try upsertSession(mutation, in: db)
        case .delete:
            try db.cachedStatement(sql: "DELETE FROM messages WHERE session_id = ?").execute(arguments: [id])
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
    private static func insert(_ messages: [Message], of id: String, from firstSeq: Int64, in db: Database) throws {
        let insert = try db.cachedStatement(sql: "INSERT INTO messages (session_id, seq, role, content, timestamp) VALUES (?, ?, ?, ?, ?)")
        for (offset, message) in messages.enumerated() {
            try insert.execute(arguments: [id, firstSeq + Int64(offset), message.role.rawValue, contentValue(message.content), message.timestamp])
        }
    }

    /// Message content as SQLite must receive it to keep every byte: a blob of its UTF-8.
    /// (Bound as text, GRDB hands SQLite a C string, which ends at the first NUL: "abc\u{0}def"
    /// would be stored as "abc".) The empty string stays text: an empty blob binds as NULL.
    private static func contentValue(_ content: String) -> any DatabaseValueConvertible {
        content.isEmpty ? "" : Data(content.utf8)
    }

    /// Reads content stored by `contentValue` (or as text, by earlier versions) byte for byte.
    private static func content(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .blob(let data): String(decoding: data, as: UTF8.self)
        case .string(let text): text
        default: ""
        }
    }

    private static func upsertSession(_ mutation: SessionMutation, in db: Database) throws {
        if let metadata = mutation.metadata {
            try db.cachedStatement(
                sql: """
                    INSERT INTO sessions (id, metadata, created_at, last_updated, message_count) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata,
                        last_updated = excluded.last_updated, message_count = excluded.message_count
                    """
            ).execute(arguments: [mutation.id, metadata, mutation.createdAt, mutation.lastUpdated, mutation.messageCount])
        } else {
            try db.cachedStatement(
                sql: """
                    INSERT INTO sessions (id, metadata, created_at, last_updated, message_count) VALUES (?, X'7B7D', ?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET last_updated = excluded.last_updated, message_count = excluded.message_count
                    """
            ).execute(arguments: [mutation.id, mutation.createdAt, mutation.lastUpdated, mutation.messageCount])
        }
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

    public func loadRingState() async throws -> Data? {
        try await pool.read { db in try Data.fetchOne(db, sql: "SELECT state FROM ring_state WHERE key = 'ring'") }
    }

    public func saveRingState(_ state: Data) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT OR REPLACE INTO ring_state (key, state) VALUES ('ring', ?)", arguments: [state])
        }
    }

    public func adopt(_ id: String, _ session: StoredSession, from node: String, version: Int) async throws -> Bool {
        try await pool.write { db in
            // What this host may hold of the id from an older ring is replaced by the owner's copy.
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [id])
            let existed = try Bool.fetchOne(db, sql: "SELECT 1 FROM sessions WHERE id = ?", arguments: [id]) ?? false
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id])
            try db.execute(sql: "DELETE FROM moved WHERE id = ?", arguments: [id])
            if let record = session.record {
                try db.execute(
                    sql: "INSERT INTO sessions (id, metadata, created_at, last_updated, message_count) VALUES (?, ?, ?, ?, ?)",
                    arguments: [id, record.metadata.encodedJSON(), record.createdAt, record.lastUpdated, record.messages.count])
                // Sequence numbers continue from the previous owner's, so later appends follow on.
                try Self.insert(record.messages, of: id, from: session.nextSeq - Int64(record.messages.count), in: db)
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
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM messages WHERE session_id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [copy])
            try db.execute(sql: "DELETE FROM moved WHERE id = ?", arguments: [copy])
            if let record {
                try db.execute(
                    sql: "INSERT INTO sessions (id, metadata, created_at, last_updated, message_count) VALUES (?, ?, ?, ?, ?)",
                    arguments: [copy, record.metadata.encodedJSON(), record.createdAt, record.lastUpdated, record.messages.count])
                try Self.insert(record.messages, of: copy, from: 0, in: db)
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
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try pool.close() })
            }
        }
    }
}
