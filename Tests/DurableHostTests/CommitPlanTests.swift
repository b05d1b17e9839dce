import Foundation
import SessionModel
import Testing

@testable import DurableHost

/// `CommitPlan` folds a batch into set-based statements; each test is a rule of the folding.
@Suite("CommitPlan: a batch folded into a few statements, each session's order kept")
struct CommitPlanTests {
    static func message(_ content: String) -> Message { Message(role: .user, content: content, timestamp: 1) }

    static func mutation(
        _ id: String, _ change: SessionMutation.Change, count: Int, metadata: String? = nil, key: String? = nil, at time: Double = 1
    ) -> SessionMutation {
        SessionMutation(
            id: id, incarnation: 1, change: change, createdAt: 1, lastUpdated: time, messageCount: count,
            metadata: metadata.map { Data($0.utf8) },
            idempotency: key.map { IdempotencyRecord(key: $0, requestHash: 7, status: 200, response: Data("{}".utf8), createdAt: time) })
    }

    @Test("appends to several sessions become one insert, with consecutive sequence numbers, and one row each")
    func appends() {
        let plan = CommitPlan([
            Self.mutation("a", .append([Self.message("a0")], firstSeq: 0), count: 1, metadata: "{}"),
            Self.mutation("b", .append([Self.message("b4"), Self.message("b5")], firstSeq: 4), count: 6),
            Self.mutation("a", .append([Self.message("a1")], firstSeq: 1), count: 2, at: 2),
        ])
        #expect(plan.messages.map { "\($0.sessionID)/\($0.seq)/\($0.message.content)" } == ["a/0/a0", "a/1/a1", "b/4/b4", "b/5/b5"])
        #expect(plan.rowsWithMetadata.map(\.id) == ["a"], "a is new: its metadata is written")
        #expect(plan.rowsWithMetadata.first?.lastUpdated == 2 && plan.rowsWithMetadata.first?.messageCount == 2, "the last row wins")
        #expect(plan.rowsKeepingMetadata.map(\.id) == ["b"])
        #expect(plan.clearMessages.isEmpty && plan.deleteSessions.isEmpty)
    }

    @Test("only a batch that deletes nothing may be one statement: appends, rows and keys, never a clear, a replace or an erasure")
    func onlyWrites() {
        let append = Self.mutation("a", .append([Self.message("a0")], firstSeq: 0), count: 1, metadata: "{}", key: "k")
        #expect(CommitPlan([append, Self.mutation("b", .touch, count: 0)]).onlyWrites)
        #expect(!CommitPlan([append, Self.mutation("b", .delete, count: 0)]).onlyWrites)
        #expect(!CommitPlan([append, Self.mutation("b", .erase, count: 0)]).onlyWrites)
        #expect(!CommitPlan([append, Self.mutation("a", .replaceMessages([Self.message("x")]), count: 1)]).onlyWrites)
    }

    @Test("a replaced history discards the appends queued before it and restarts the sequence at 0; later appends follow")
    func replaceDiscardsEarlierAppends() {
        let plan = CommitPlan([
            Self.mutation("s", .append([Self.message("old")], firstSeq: 3), count: 4),
            Self.mutation("s", .replaceMessages([Self.message("x"), Self.message("y")]), count: 2),
            Self.mutation("s", .append([Self.message("z")], firstSeq: 2), count: 3),
        ])
        #expect(plan.clearMessages == ["s"])
        #expect(plan.deleteSessions.isEmpty)
        #expect(plan.messages.map { "\($0.seq)/\($0.message.content)" } == ["0/x", "1/y", "2/z"])
        #expect(plan.rowsKeepingMetadata.first?.messageCount == 3)
    }

    @Test("a clear deletes the row and the messages; a session written again after it is inserted anew with its metadata")
    func clearThenRecreate() {
        let cleared = CommitPlan([
            Self.mutation("gone", .append([Self.message("m")], firstSeq: 0), count: 1),
            Self.mutation("gone", .delete, count: 0),
        ])
        #expect(cleared.clearMessages == ["gone"] && cleared.deleteSessions == ["gone"])
        #expect(cleared.messages.isEmpty && cleared.rowsWithMetadata.isEmpty && cleared.rowsKeepingMetadata.isEmpty)

        let recreated = CommitPlan([
            Self.mutation("again", .delete, count: 0),
            Self.mutation("again", .append([Self.message("new")], firstSeq: 0), count: 1, metadata: #"{"k":1}"#),
        ])
        #expect(recreated.deleteSessions == ["again"])
        #expect(recreated.rowsWithMetadata.map(\.id) == ["again"])
        #expect(recreated.rowsWithMetadata.first?.metadata == Data(#"{"k":1}"#.utf8))
        #expect(recreated.messages.map(\.message.content) == ["new"])
    }

    @Test("metadata is the last written; a key repeated in one batch is recorded once, its last answer")
    func metadataAndKeys() {
        let plan = CommitPlan([
            Self.mutation("m", .touch, count: 0, metadata: #"{"v":1}"#, key: "k1"),
            Self.mutation("m", .touch, count: 0, key: "k2"),
            Self.mutation("m", .touch, count: 0, metadata: #"{"v":2}"#, key: "k1", at: 5),
        ])
        #expect(plan.rowsWithMetadata.first?.metadata == Data(#"{"v":2}"#.utf8))
        #expect(plan.idempotency.map(\.record.key) == ["k1", "k2"])
        #expect(plan.idempotency.first?.record.createdAt == 5)
    }
}
