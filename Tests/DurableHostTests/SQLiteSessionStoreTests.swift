import Foundation
import SessionModel
import TestSupport
import Testing

@testable import DurableHost

@Suite("SQLite session store")
struct SQLiteSessionStoreTests {
    private func mutation(
        _ id: String, _ change: SessionMutation.Change, count: Int, metadata: JSONObject? = nil,
        key: IdempotencyRecord? = nil, at time: Double = 10
    ) -> SessionMutation {
        SessionMutation(
            id: id, incarnation: 1, change: change, createdAt: 1, lastUpdated: time, messageCount: count,
            metadata: metadata?.encodedJSON(), idempotency: key)
    }

    @Test("a committed batch loads back, and is still there after the file is reopened")
    func commitAndReopen() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        let hello = Message(role: .user, content: "hello", timestamp: 1)
        let reply = Message(role: .assistant, content: "hi there", timestamp: 2)
        try await store.commit([
            mutation("a", .append([hello], firstSeq: 0), count: 1, metadata: ["repo": "o/r"]),
            mutation("a", .append([reply], firstSeq: 1), count: 2),
            mutation("b", .touch, count: 0, metadata: ["x": 1]),
        ])
        try await store.close()

        let reopened = try SQLiteSessionStore(directory: directory.path)
        let a = try #require(try await reopened.load("a", idempotencySince: 0)?.record)
        #expect(a.messages == [hello, reply])
        #expect(a.metadata == ["repo": "o/r"])
        #expect(a.createdAt == 1 && a.lastUpdated == 10)
        #expect(try await reopened.load("a", idempotencySince: 0)?.nextSeq == 2)
        #expect(try await reopened.load("b", idempotencySince: 0)?.record?.metadata == ["x": 1])
        #expect(try await reopened.load("missing", idempotencySince: 0) == nil)
        #expect(try await reopened.sessionCount() == 2)
        try await reopened.close()
    }

    @Test("the WAL is checkpointed into the database by the checkpointer's thread, not by commits, and the data reads back")
    func checkpointsOffTheCommitPath() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        let fileSize = { ((try? FileManager.default.attributesOfItem(atPath: store.path))?[.size] as? Int) ?? 0 }
        let before = fileSize()
        // About 2 MB of content that does not compress, in 100 commits: under the log's bound
        // (16 MB), so only the checkpointer's thread moves it.
        var expected: [Message] = []
        for batch in 0..<100 {
            let messages = (0..<10).map { index in
                Message(role: .user, content: (0..<64).map { _ in UUID().uuidString.prefix(32) }.joined(), timestamp: Double(batch * 10 + index))
            }
            try await store.commit([mutation("big", .append(messages, firstSeq: Int64(batch * 10)), count: (batch + 1) * 10)])
            expected += messages
        }
        try await eventually("the database file holds what the WAL held", timeout: .seconds(10)) { fileSize() > before + 1_500_000 }
        #expect(try await store.load("big", idempotencySince: 0)?.record?.messages == expected)
        try await store.close()
        let reopened = try SQLiteSessionStore(directory: directory.path)
        #expect(try await reopened.load("big", idempotencySince: 0)?.record?.messages.count == 1000)
        try await reopened.close()
    }

    @Test("under a steady stream of commits the WAL stays bounded: past its size the writer finishes its checkpoint and starts it over")
    func walStaysBounded() async throws {
        let directory = TemporaryDirectory("store")
        // A log of 64 pages at most before it is emptied, so that a short test shows it.
        // synchronous=normal: no fsync per commit, so a loaded machine still commits fast enough to show it.
        let store = try SQLiteSessionStore(directory: directory.path, synchronous: .normal, walFrames: 64)
        let wal = store.path + "-wal"
        // Commits without a pause, until the log was written 20 times its bound (each commit
        // writes a page of log at least): passive checkpoints alone never find it wholly
        // copied while a writer could start it over. On a thread of its own, as the group
        // committer commits: a test suite's busy cooperative pool would space the commits out.
        let commits = 20 * 64
        let largest = await withCheckedContinuation { (done: CheckedContinuation<Int, Never>) in
            let thread = Thread {
                var largest = 0
                for commit in 0..<commits {
                    let written = commit * 4
                    let messages = (0..<4).map { Message(role: .user, content: UUID().uuidString + UUID().uuidString, timestamp: Double(written + $0)) }
                    do {
                        try store.commitBlocking([self.mutation("s\(commit % 500)", .append(messages, firstSeq: Int64(written)), count: written + 4)])
                    } catch {
                        break
                    }
                    largest = max(largest, ((try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? Int) ?? 0)
                }
                done.resume(returning: largest)
            }
            thread.start()
        }
        // Without the bound the log only grows: it would hold every page each commit wrote (a
        // page at least, five or so here: 25 MB). With it, twice the bound at most and the
        // commits that cross it (850 KB or so here), however late the checkpointer's thread
        // runs: the writer counts frames. More only while a round holds the checkpoint the
        // writer would run (a busy machine's scheduling); 4 MB is a sixth of the unbounded log.
        #expect(largest > 0 && largest < 16 * 64 * 4_096, "the WAL reached \(largest) bytes over \(commits) commits")
        #expect(try await store.load("s7", idempotencySince: 0)?.record?.messages.count == 3 * 4)
        try await store.close()
    }

    @Test("replacing messages, touching metadata and deleting do what they say")
    func replaceTouchDelete() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        let messages = (0..<3).map { Message(role: .user, content: "m\($0)", timestamp: Double($0)) }
        try await store.commit(messages.enumerated().map { mutation("s", .append([$1], firstSeq: Int64($0)), count: $0 + 1) })
        let replacement = [Message(role: .system, content: "only", timestamp: 9)]
        try await store.commit([mutation("s", .replaceMessages(replacement), count: 1)])
        #expect(try await store.load("s", idempotencySince: 0)?.record?.messages == replacement)
        #expect(try await store.load("s", idempotencySince: 0)?.nextSeq == 1)

        try await store.commit([mutation("s", .touch, count: 1, metadata: ["k": "v"])])
        #expect(try await store.load("s", idempotencySince: 0)?.record?.messages == replacement, "touch keeps messages")
        #expect(try await store.load("s", idempotencySince: 0)?.record?.metadata == ["k": "v"])

        try await store.commit([mutation("s", .delete, count: 0)])
        #expect(try await store.load("s", idempotencySince: 0) == nil)
        #expect(try await store.sessionCount() == 0)
        try await store.close()
    }

    @Test("a batch that fails applies none of its mutations")
    func failedBatchIsAtomic() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        let message = Message(role: .user, content: "x", timestamp: 1)
        try await store.commit([mutation("s", .append([message], firstSeq: 0), count: 1)])
        await #expect(throws: (any Error).self) {
            try await store.commit([
                mutation("other", .append([message], firstSeq: 0), count: 1),
                mutation("s", .append([message], firstSeq: 0), count: 2),  // seq 0 exists: the constraint fails
            ])
        }
        #expect(try await store.load("other", idempotencySince: 0) == nil)
        #expect(try await store.load("s", idempotencySince: 0)?.record?.messages.count == 1)
        try await store.close()
    }

    @Test("idempotency records load within their retention and are pruned after it")
    func idempotencyRecords() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        let old = IdempotencyRecord(key: "old", requestHash: 1, status: 200, response: Data("{}".utf8), createdAt: 100)
        let new = IdempotencyRecord(key: "new", requestHash: 2, status: 200, response: Data("{\"a\":1}".utf8), createdAt: 500)
        try await store.commit([mutation("s", .touch, count: 0, key: old), mutation("s", .touch, count: 0, key: new)])
        #expect(try await store.load("s", idempotencySince: 0)?.idempotency.map(\.key) == ["new", "old"])
        #expect(try await store.load("s", idempotencySince: 200)?.idempotency == [new])
        #expect(try await store.pruneIdempotency(before: 200) == 1)
        #expect(try await store.load("s", idempotencySince: 0)?.idempotency == [new])
        try await store.close()
    }

    @Test("session ids page in order")
    func paging() async throws {
        let directory = TemporaryDirectory("store")
        let store = try SQLiteSessionStore(directory: directory.path)
        try await store.commit((0..<25).map { mutation(String(format: "id-%02d", $0), .touch, count: 0) })
        var seen: [String] = []
        var cursor: String?
        while case let page = try await store.sessionIDs(after: cursor, limit: 10), !page.isEmpty {
            seen += page
            cursor = page.last
        }
        #expect(seen == (0..<25).map { String(format: "id-%02d", $0) })
        try await store.close()
    }
}
