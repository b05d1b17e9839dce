import Clocks
import Foundation
import GRDB
import SessionModel
import TestSupport
import Testing

@testable import DurableHost

@Suite("Session objects, the committer and the directory")
struct SessionObjectTests {
    @Test("concurrent writers on one id lose nothing, and each writer's messages keep their order")
    func oneIDManyWriters() async throws {
        let stack = try await HostStack()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<16 {
                group.addTask {
                    for index in 0..<25 { try await stack.append("shared", "w\(writer)-\(index)") }
                }
            }
            try await group.waitForAll()
        }
        let messages = try await stack.read("shared").record.messages.map(\.content)
        #expect(messages.count == 400)
        #expect(Set(messages).count == 400)
        for writer in 0..<16 {
            let mine = messages.filter { $0.hasPrefix("w\(writer)-") }
            #expect(mine == (0..<25).map { "w\(writer)-\($0)" })
        }
        try await stack.shutdown()
        // What was acknowledged is what is stored, in the same order.
        let reopened = try SQLiteSessionStore(directory: stack.directory.file("data"))
        #expect(try await reopened.load("shared", idempotencySince: 0)?.record?.messages.map(\.content) == messages)
        try await reopened.close()
    }

    @Test("writes to many ids are group-committed: far fewer transactions than writes")
    func groupCommit() async throws {
        let stack = try await HostStack()
        func appendToAll(_ content: String) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in 0..<400 {
                    group.addTask { try await stack.append("id-\(id)", content) }
                }
                try await group.waitForAll()
            }
        }
        try await appendToAll("hello")
        let before = stack.committer.batchesCommitted
        try await appendToAll("again")
        let batches = stack.committer.batchesCommitted - before
        #expect(batches < 100, "400 concurrent writes took \(batches) transactions")
        #expect(stack.stats.sessions == 400)
        for id in [0, 199, 399] {
            #expect(try await stack.read("id-\(id)").record.messages.map(\.content) == ["hello", "again"])
        }
        try await stack.shutdown()
    }

    @Test("a retried write with the same idempotency key is applied once and answered the same")
    func idempotentRetry() async throws {
        let stack = try await HostStack()
        let operation = SessionOperation.appendMessage(MessageInput(role: .user, content: "once"))
        let key = IdempotencyKey(key: "k-1", requestHash: 42)
        let first = try await stack.write("s", operation, key: key)
        let second = try await stack.write("s", operation, key: key)
        #expect(!first.replayed && second.replayed)
        #expect(first.body == second.body)
        #expect(try await stack.read("s").record.messages.count == 1)

        do {
            _ = try await stack.write("s", .appendMessage(MessageInput(role: .user, content: "other")), key: IdempotencyKey(key: "k-1", requestHash: 7))
            Issue.record("a different request under a used key was accepted")
        } catch {
            #expect(error.code == .idempotencyKeyReused)
        }
        // Concurrent duplicates: one applies, the rest wait for it and replay it.
        let replies = try await withThrowingTaskGroup(of: WriteReply.self) { group in
            for _ in 0..<8 {
                group.addTask { try await stack.write("s", operation, key: IdempotencyKey(key: "k-2", requestHash: 42)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(replies.filter { !$0.replayed }.count == 1)
        #expect(Set(replies.map(\.body)).count == 1)
        #expect(try await stack.read("s").record.messages.count == 2)
        try await stack.shutdown()
    }

    @Test("an idempotency key is remembered across eviction and across a restart")
    func idempotencySurvives() async throws {
        let directory = TemporaryDirectory("stack")
        let stack = try await HostStack(directory: directory, idleTimeout: .milliseconds(1))
        let operation = SessionOperation.appendMessage(MessageInput(role: .user, content: "once"))
        let key = IdempotencyKey(key: "k", requestHash: 1)
        let first = try await stack.write("s", operation, key: key)
        // Idle past the 1 ms timeout, as the sweep sees it.
        await stack.time.advance(by: .seconds(1))
        #expect(stack.objects.sweep() == 1)
        #expect(try await stack.write("s", operation, key: key).replayed)
        try await stack.shutdown()

        let restarted = try await HostStack(directory: directory)
        let replay = try await restarted.write("s", operation, key: key)
        #expect(replay.replayed && replay.body == first.body)
        #expect(try await restarted.read("s").record.messages.count == 1)
        try await restarted.shutdown()
    }

    @Test("idle objects leave memory, oldest first past the cap, and reload intact")
    func eviction() async throws {
        let stack = try await HostStack(maxLive: 10, idleTimeout: .seconds(3600))
        for id in 0..<50 { try await stack.append("id-\(id)", "m\(id)") }
        #expect(stack.objects.liveCount == 50)
        #expect(stack.objects.sweep() == 40)
        #expect(stack.objects.liveCount == 10)
        for id in [0, 25, 49] {
            #expect(try await stack.read("id-\(id)").record.messages.map(\.content) == ["m\(id)"])
        }
        let live = stack.objects.liveCount
        await stack.time.advance(by: .seconds(7200))
        #expect(stack.objects.sweep() == live, "everything idle past the timeout goes")
        #expect(stack.objects.liveCount == 0)
        try await stack.shutdown()
    }

    @Test("a refused operation changes nothing, in memory or on disk")
    func refusedChangesNothing() async throws {
        let limits = SessionLimits(maxContentBytes: 8, maxMessagesPerSession: 2)
        let stack = try await HostStack(limits: limits)
        try await stack.append("s", "ok")
        _ = try await stack.write("s", .updateMetadata(["a": 1]))
        let before = try await stack.read("s")
        for operation: SessionOperation in [
            .appendMessage(MessageInput(role: .user, content: "far too long")),
            .setHistory(Array(repeating: MessageInput(role: .user, content: "x"), count: 3)),
        ] {
            await #expect(throws: APIError.self) { try await stack.write("s", operation) }
        }
        #expect(try await stack.read("s") == before)
        try await stack.shutdown()
        let reopened = try SQLiteSessionStore(directory: stack.directory.file("data"))
        #expect(try await reopened.load("s", idempotencySince: 0)?.record == before.record)
        try await reopened.close()
    }

    @Test("a failed commit answers storage_unavailable, and the next write reloads from storage and succeeds")
    func failedCommit() async throws {
        let stack = try await HostStack()
        try await stack.append("s", "first")
        // Another writer takes the row the next append will use: the commit hits a real constraint.
        let queue = try DatabaseQueue(path: stack.store.path)
        try await queue.write { db in
            try db.execute(
                sql: "INSERT INTO messages (session_id, seq, role, content, timestamp) VALUES ('s', 1, 'user', 'intruder', 1)")
        }
        try queue.close()
        do {
            try await stack.append("s", "second")
            Issue.record("the write was acknowledged although its commit failed")
        } catch {
            #expect(error.code == .storageUnavailable)
        }
        try await stack.append("s", "third")
        #expect(try await stack.read("s").record.messages.map(\.content) == ["first", "intruder", "third"])
        try await stack.shutdown()
    }

    @Test("after close, writes are refused with shutting_down and nothing is half-done")
    func refusedAfterClose() async throws {
        let stack = try await HostStack()
        try await stack.append("s", "before")
        try await stack.shutdown()
        do {
            try await stack.append("t", "after")
            Issue.record("a write after close was acknowledged")
        } catch {
            #expect(error.code == .shuttingDown)
        }
    }
}
