import Foundation
import NIOCore
import PostgresNIO
import SessionModel

/// A batch that only writes rows (appends, metadata, keys: the common case) as one prepared
/// statement, which is its own transaction: the fence and every write in one round trip, and
/// parsed and planned once per connection rather than once per batch. Every part is always
/// there; a part with nothing to write gets empty arrays and writes no row.
///
/// The fence is the statement's first part, a CTE the others read (`WHERE EXISTS`, a one-time
/// filter evaluated before any row is written) and whose share locks are held until the
/// statement commits; so it guards exactly as the fence of a transaction does. The parts of
/// one statement see one snapshot and run in no set order, which is why a batch that deletes
/// runs its deletes first, in a transaction that then runs this statement: here no two parts
/// touch one row (`CommitPlan` keeps one row per session and per key). Its one row is how
/// many fence rows held: 1, or 0 when nothing was written.
struct PostgresBatchStatement: PostgresPreparedStatement {
    typealias Row = Int

    static let sql = """
        WITH fence AS (SELECT 1 FROM ring r, members m WHERE r.id = 1 AND r.version = $1 AND m.name = $2 AND m.incarnation = $3
            AND m.lease_until > clock_timestamp() FOR SHARE OF r FOR KEY SHARE OF m)
        , rows_with_metadata AS (INSERT INTO sessions (id, metadata, created_at, last_updated, message_count, principal, expires_after)
            SELECT id, metadata, created_at, last_updated, message_count, NULLIF(principal, ''), NULLIF(expires_after, -1)
            FROM unnest($4::text[], $5::bytea[], $6::float8[], $7::float8[], $8::int4[], $9::text[], $10::float8[])
                AS r(id, metadata, created_at, last_updated, message_count, principal, expires_after)
            WHERE EXISTS (SELECT 1 FROM fence)
            ON CONFLICT (id) DO UPDATE SET metadata = excluded.metadata, created_at = excluded.created_at,
                last_updated = excluded.last_updated, message_count = excluded.message_count,
                principal = excluded.principal, expires_after = excluded.expires_after)
        , rows_keeping_metadata AS (INSERT INTO sessions (id, metadata, created_at, last_updated, message_count, principal, expires_after)
            SELECT id, '\\x7b7d'::bytea, created_at, last_updated, message_count, NULLIF(principal, ''), NULLIF(expires_after, -1)
            FROM unnest($11::text[], $12::float8[], $13::float8[], $14::int4[], $15::text[], $16::float8[])
                AS r(id, created_at, last_updated, message_count, principal, expires_after)
            WHERE EXISTS (SELECT 1 FROM fence)
            ON CONFLICT (id) DO UPDATE SET last_updated = excluded.last_updated, message_count = excluded.message_count,
                principal = excluded.principal, expires_after = excluded.expires_after)
        , new_messages AS (INSERT INTO messages (session_id, seq, role, content, timestamp, compressed)
            SELECT * FROM unnest($17::text[], $18::int8[], $19::text[], $20::bytea[], $21::float8[], $22::bool[])
            WHERE EXISTS (SELECT 1 FROM fence))
        , new_keys AS (INSERT INTO idempotency (session_id, key, request_hash, status, response, created_at)
            SELECT * FROM unnest($23::text[], $24::text[], $25::int8[], $26::int4[], $27::bytea[], $28::float8[])
            WHERE EXISTS (SELECT 1 FROM fence)
            ON CONFLICT (session_id, key) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status,
                response = excluded.response, created_at = excluded.created_at)
        SELECT count(*)::int8 FROM fence
        """

    let plan: CommitPlan
    let ringVersion: Int64
    let node: String
    let incarnation: Int64
    let codec: ContentCodec

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 28)
        bindings.append(ringVersion)
        bindings.append(node)
        bindings.append(incarnation)
        let full = plan.rowsWithMetadata
        bindings.append(full.map(\.id))
        bindings.append(full.map { ByteBuffer(bytes: $0.metadata ?? Data("{}".utf8)) })
        Self.appendRowColumns(full, to: &bindings)
        let kept = plan.rowsKeepingMetadata
        bindings.append(kept.map(\.id))
        Self.appendRowColumns(kept, to: &bindings)
        let messages = plan.messages
        let encoded = messages.map { codec.encode($0.message.content) }
        bindings.append(messages.map(\.sessionID))
        bindings.append(messages.map(\.seq))
        bindings.append(messages.map(\.message.role.rawValue))
        bindings.append(encoded.map { ByteBuffer(bytes: $0.bytes) })
        bindings.append(messages.map(\.message.timestamp))
        bindings.append(encoded.map(\.compressed))
        let keys = plan.idempotency
        bindings.append(keys.map(\.sessionID))
        bindings.append(keys.map(\.record.key))
        bindings.append(keys.map(\.record.requestHash))
        bindings.append(keys.map { Int32($0.record.status) })
        bindings.append(keys.map { ByteBuffer(bytes: $0.record.response) })
        bindings.append(keys.map(\.record.createdAt))
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Int {
        Int(try row.decode(Int64.self))
    }

    /// The columns every session row carries after its id (and metadata): created, updated,
    /// count, principal ('' for none), lifetime (-1 for none).
    private static func appendRowColumns(_ rows: [CommitPlan.Row], to bindings: inout PostgresBindings) {
        bindings.append(rows.map(\.createdAt))
        bindings.append(rows.map(\.lastUpdated))
        bindings.append(rows.map { Int32($0.messageCount) })
        bindings.append(rows.map { $0.principal ?? "" })
        bindings.append(rows.map { $0.expiresAfter ?? -1 })
    }
}
