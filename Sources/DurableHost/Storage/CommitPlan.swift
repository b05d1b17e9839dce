import Foundation
import SessionModel

/// A batch of mutations folded into a few set-based statements, for a database where each
/// statement is a round trip (PostgreSQL): whatever the batch holds, it commits in at most
/// seven statements.
///
/// Folding keeps each session's order: a delete or a replaced history discards the
/// messages queued before it in the batch, a later session row wins over an earlier one,
/// and the metadata is the last one written since the session was (re)created. Mutations of
/// different sessions are independent. Pure: no I/O, tested on its own.
struct CommitPlan: Sendable, Equatable {
    /// Sessions whose stored messages go first (a clear, or a replaced history).
    var clearMessages: [String] = []
    /// Sessions whose row goes first (a clear; a session re-created in the batch is inserted anew).
    var deleteSessions: [String] = []
    /// Sessions whose idempotency keys go first (erased: expired, or their principal's data deleted).
    var eraseKeys: [String] = []
    /// Session rows to write with their metadata.
    var rowsWithMetadata: [Row] = []
    /// Session rows whose metadata stays as stored.
    var rowsKeepingMetadata: [Row] = []
    /// Messages to insert, in order.
    var messages: [StoredMessage] = []
    /// Idempotency records, one per (session, key): the last wins.
    var idempotency: [Key] = []

    /// Whether the batch only writes rows (no session's messages, row or keys go first): then
    /// no two of its statements touch one row, and they may run as parts of one statement.
    var onlyWrites: Bool { clearMessages.isEmpty && deleteSessions.isEmpty && eraseKeys.isEmpty }

    struct Row: Sendable, Equatable {
        var id: String
        var metadata: Data?
        var createdAt: Double
        var lastUpdated: Double
        var messageCount: Int
        var principal: String?
        var expiresAfter: Double?
    }

    struct StoredMessage: Sendable, Equatable {
        var sessionID: String
        var seq: Int64
        var message: Message
    }

    struct Key: Sendable, Equatable {
        var sessionID: String
        var record: IdempotencyRecord
    }

    init(_ batch: [SessionMutation]) {
        struct Net {
            var clearMessages = false
            var deleteRow = false
            var eraseKeys = false
            var messages: [StoredMessage] = []
            var row: Row?
            var metadata: Data?
        }
        var order: [String] = []
        var nets: [String: Net] = [:]
        var keys: [String: Int] = [:]
        for mutation in batch {
            let id = mutation.id
            if nets[id] == nil { order.append(id) }
            var net = nets[id] ?? Net()
            let row = Row(
                id: id, metadata: nil, createdAt: mutation.createdAt, lastUpdated: mutation.lastUpdated, messageCount: mutation.messageCount,
                principal: mutation.principal, expiresAfter: mutation.expiresAfter)
            switch mutation.change {
            case .delete:
                net = Net(clearMessages: true, deleteRow: true, eraseKeys: net.eraseKeys)
            case .erase:
                net = Net(clearMessages: true, deleteRow: true, eraseKeys: true)
                // Keys recorded earlier in this batch go with the rest.
                idempotency.removeAll { $0.sessionID == id }
                keys = Dictionary(uniqueKeysWithValues: idempotency.enumerated().map { ("\($0.element.sessionID)\u{0}\($0.element.record.key)", $0.offset) })
            case .replaceMessages(let messages):
                net.clearMessages = true
                net.messages = messages.enumerated().map { StoredMessage(sessionID: id, seq: Int64($0.offset), message: $0.element) }
                net.row = row
            case .append(let messages, let firstSeq):
                net.messages += messages.enumerated().map { StoredMessage(sessionID: id, seq: firstSeq + Int64($0.offset), message: $0.element) }
                net.row = row
            case .touch:
                net.row = row
            }
            if let metadata = mutation.metadata { net.metadata = metadata }
            nets[id] = net
            if let record = mutation.idempotency {
                let slot = "\(id)\u{0}\(record.key)"
                if let index = keys[slot] {
                    idempotency[index] = Key(sessionID: id, record: record)
                } else {
                    keys[slot] = idempotency.count
                    idempotency.append(Key(sessionID: id, record: record))
                }
            }
        }
        for id in order {
            guard let net = nets[id] else { continue }
            if net.clearMessages { clearMessages.append(id) }
            if net.deleteRow { deleteSessions.append(id) }
            if net.eraseKeys { eraseKeys.append(id) }
            messages += net.messages
            guard var row = net.row else { continue }
            if net.metadata != nil || net.deleteRow {
                // A session created (or re-created) here always carries its metadata.
                row.metadata = net.metadata ?? Data("{}".utf8)
                rowsWithMetadata.append(row)
            } else {
                rowsKeepingMetadata.append(row)
            }
        }
    }
}
