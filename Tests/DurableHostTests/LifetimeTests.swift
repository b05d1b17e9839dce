import Foundation
import GRDB
import SessionModel
import TestSupport
import Testing

@testable import DurableHost

/// Rows of a host's SQLite file, read beside the host: what is really stored.
private func rows(_ stack: HostStack, _ sql: String) throws -> Int {
    let queue = try DatabaseQueue(path: stack.store.path)
    defer { try? queue.close() }
    return try queue.read { db in try Int.fetchOne(db, sql: sql) ?? -1 }
}

@Suite("Lifetimes: expiry by the host's clock, deletion by principal, listings")
struct LifetimeTests {
    @Test("an expired session reads as one that never existed before any sweep; the sweep deletes its rows, messages and keys")
    func expiry() async throws {
        let stack = try await HostStack(retention: 100, clock: Mutexed(1_000))
        _ = try await stack.write("conv:a:old", .appendMessage(MessageInput(role: .user, content: "q")), key: IdempotencyKey(key: "k1", requestHash: 1))
        _ = try await stack.write("mcp-short", SessionUpdate(.updateMetadata(["kind": "t"]), principal: "a", expiresAfter: 10))
        _ = try await stack.write("mcp-forever", SessionUpdate(.updateMetadata(["kind": "t"]), expiresAfter: 0))
        stack.clock.set(1_050)
        _ = try await stack.write("conv:a:new", .appendMessage(MessageInput(role: .user, content: "q2")))
        #expect(try await stack.read("mcp-short").exists == false, "past its own lifetime (10 s) at once")
        #expect(try await stack.read("conv:a:old").exists, "within the host's retention (100 s)")

        stack.clock.set(1_120)
        #expect(try await stack.read("conv:a:old").exists == false, "past the retention, before any sweep")
        #expect(try rows(stack, "SELECT count(*) FROM sessions") == 4, "still stored until the sweep")
        #expect(try await stack.lifetimes.sweep() == 2)
        #expect(try rows(stack, "SELECT count(*) FROM sessions") == 2)
        #expect(try rows(stack, "SELECT count(*) FROM messages WHERE session_id = 'conv:a:old'") == 0)
        #expect(try rows(stack, "SELECT count(*) FROM idempotency") == 0, "its idempotency keys went with it")
        #expect(try await stack.read("conv:a:new").exists)
        #expect(try await stack.read("mcp-forever").exists, "expires_after 0 is for ever")
        #expect(stack.stats.expired == 2)
        #expect(try await stack.lifetimes.sweep() == 0, "nothing twice")

        // The expired one's key is gone: the same request applies again, to a fresh session.
        let again = try await stack.write(
            "conv:a:old", .appendMessage(MessageInput(role: .user, content: "q")), key: IdempotencyKey(key: "k1", requestHash: 1))
        #expect(!again.replayed)
        #expect(try await stack.read("conv:a:old").record.messages.map(\.content) == ["q"])
        try await stack.shutdown()
    }

    @Test("a write to an expired session that the sweep has not reached starts it anew, and storage agrees after a restart")
    func writeAfterExpiry() async throws {
        let directory = TemporaryDirectory("lifetime")
        let clock = Mutexed<Double>(1_000)
        let stack = try await HostStack(directory: directory, retention: 0, clock: clock)
        _ = try await stack.write("mcp-x", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "before")), principal: "a", expiresAfter: 5))
        clock.set(1_010)
        _ = try await stack.write("mcp-x", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "after")), principal: "b"))
        let state = try await stack.read("mcp-x")
        #expect(state.record.messages.map(\.content) == ["after"])
        #expect(state.record.principal == "b", "a session that expired is a new one: anyone's")
        #expect(state.record.createdAt == 1_010)
        try await stack.shutdown()
        let reopened = try await HostStack(directory: directory, retention: 0, clock: clock)
        let stored = try await reopened.read("mcp-x")
        #expect(stored.record.messages.map(\.content) == ["after"], "the old messages were erased, not left under the new session")
        #expect(stored.record.expiresAfter == nil)
        try await reopened.shutdown()
    }

    @Test("deleting a principal removes every session it owns and nothing of anyone else's")
    func erasePrincipal() async throws {
        let stack = try await HostStack(clock: Mutexed(1_000))
        for index in 0..<7 {
            _ = try await stack.write("conv:alice:\(index)", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "alice"))
        }
        _ = try await stack.write("mcp-1", SessionUpdate(.updateMetadata(["kind": "t"]), principal: "alice", expiresAfter: 60))
        _ = try await stack.write("conv:bob:0", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "mine")), principal: "bob"))
        _ = try await stack.write("untagged", .appendMessage(MessageInput(role: .user, content: "x")))
        var lifetimes = stack.lifetimes
        lifetimes.batch = 3
        #expect(try await lifetimes.erase(principal: "alice") == 8)
        #expect(try rows(stack, "SELECT count(*) FROM sessions WHERE principal = 'alice'") == 0)
        #expect(try rows(stack, "SELECT count(*) FROM messages WHERE session_id LIKE 'conv:alice:%'") == 0)
        #expect(try await stack.read("conv:alice:3").exists == false, "the live object forgot it too")
        #expect(try await stack.read("conv:bob:0").record.messages.map(\.content) == ["mine"])
        #expect(try await stack.read("untagged").exists)
        #expect(try await lifetimes.erase(principal: "alice") == 0)
        try await stack.shutdown()
    }

    @Test("listings: a principal's sessions newest first, page by page, with a prefix; expired and moved ones left out")
    func listings() async throws {
        let clock = Mutexed<Double>(1_000)
        let stack = try await HostStack(retention: 500, clock: clock)
        for index in 0..<5 {
            clock.set(1_000 + Double(index))
            _ = try await stack.write(
                "conv:alice:\(index)",
                SessionUpdate(.appendMessages([MessageInput(role: .user, content: "q\(index)")], metadata: ["title": .string("q\(index)")]), principal: "alice")
            )
        }
        _ = try await stack.write("mcp-alice", SessionUpdate(.updateMetadata(["kind": "t"]), principal: "alice", expiresAfter: 1))
        _ = try await stack.write("conv:bob:0", SessionUpdate(.appendMessage(MessageInput(role: .user, content: "q")), principal: "bob"))
        try await stack.store.markMoved("conv:alice:2", to: "host-2", version: 2)
        clock.set(1_010)

        let first = try await stack.store.summaries(SessionListing(principal: "alice", prefix: "conv:", limit: 2), now: clock.get(), retention: 500)
        #expect(first.map(\.id) == ["conv:alice:4", "conv:alice:3"])
        #expect(first.first?.metadata == ["title": "q4"] && first.first?.messageCount == 1 && first.first?.principal == "alice")
        let second = try await stack.store.summaries(
            SessionListing(principal: "alice", prefix: "conv:", before: first.last?.cursor, limit: 2), now: clock.get(), retention: 500)
        #expect(second.map(\.id) == ["conv:alice:1", "conv:alice:0"], "a moved session is not listed here")
        let all = try await stack.store.summaries(SessionListing(principal: "alice", limit: 50), now: clock.get(), retention: 500)
        #expect(!all.map(\.id).contains("mcp-alice"), "an expired session is not listed")
        #expect(try await stack.store.summaries(SessionListing(prefix: "conv:bob:", limit: 50), now: clock.get(), retention: 500).map(\.id) == ["conv:bob:0"])
        #expect(try await stack.store.summaries(SessionListing(principal: "alice", limit: 50), now: 2_000, retention: 500).isEmpty, "past the retention")
        #expect(try await stack.store.summaries(SessionListing(principal: "alice", limit: 50), now: 2_000, retention: 0).count == 4)
        try await stack.shutdown()
    }

    @Test("the sweep walks a store far larger than one batch, and leaves what has not expired")
    func sweepInBatches() async throws {
        let clock = Mutexed<Double>(1_000)
        let stack = try await HostStack(retention: 0, clock: clock)
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<1_200 {
                group.addTask {
                    _ = try? await stack.write(
                        "mcp-\(index)", SessionUpdate(.updateMetadata(["n": .int(Int64(index))]), expiresAfter: index % 3 == 0 ? 1_000 : 5))
                }
            }
        }
        clock.set(1_100)
        var lifetimes = stack.lifetimes
        lifetimes.batch = 100
        #expect(try await lifetimes.sweep() == 800)
        #expect(try rows(stack, "SELECT count(*) FROM sessions") == 400)
        try await stack.shutdown()
    }
}

@Suite("Message content stored compressed")
struct ContentCompressionTests {
    /// A Greptile-like answer: Markdown prose and code, repeated the way real answers repeat names.
    static let answer: String = (0..<40).map { index in
        "### Step \(index)\nThe router in `Sources/Server/Router.swift` maps `/v2/query` to `QueryHandler.handle(_:)`:\n```swift\nrouter.post(\"/v2/query\") { request in try await QueryHandler(context: request.context).handle(request) }\n```\n"
    }.joined()

    @Test("content past the threshold is stored compressed, smaller, and reads back byte for byte; shorter content is stored plain")
    func compressed() async throws {
        let stack = try await HostStack(codec: ContentCodec(threshold: 512))
        let binaryish = String((0..<3_000).map { Character(UnicodeScalar(UInt8(($0 * 7919) % 94 + 33))) }) + "\u{0}\u{1F600}"
        _ = try await stack.write(
            "conv:a:1",
            .appendMessages([
                MessageInput(role: .user, content: "short question"), MessageInput(role: .assistant, content: Self.answer),
                MessageInput(role: .assistant, content: binaryish),
            ]))
        try await stack.shutdown()
        let queue = try DatabaseQueue(path: stack.store.path)
        let stored = try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT compressed, length(content) FROM messages ORDER BY seq").map { ($0[0] as Int, $0[1] as Int) }
        }
        try queue.close()
        #expect(stored[0].0 == 0, "below the threshold: plain")
        #expect(
            stored[1].0 == 1 && stored[1].1 < Self.answer.utf8.count / 3,
            "a long Markdown answer shrinks to under a third: \(stored[1].1) of \(Self.answer.utf8.count)")
        #expect(stored[2].1 <= binaryish.utf8.count, "never stored larger than it is")

        let reopened = try await HostStack(directory: stack.directory, codec: ContentCodec(threshold: 512))
        let messages = try await reopened.read("conv:a:1").record.messages.map(\.content)
        #expect(messages == ["short question", Self.answer, binaryish])
        try await reopened.shutdown()
    }

    @Test("rows written uncompressed (before compression, or with it off) read as they always did")
    func oldRowsStillRead() async throws {
        let directory = TemporaryDirectory("plain")
        let plain = try await HostStack(directory: directory, codec: .off)
        _ = try await plain.write("conv:a:1", .appendMessage(MessageInput(role: .assistant, content: Self.answer)))
        try await plain.shutdown()
        let queue = try DatabaseQueue(path: plain.store.path)
        #expect(try await queue.read { db in try Int.fetchOne(db, sql: "SELECT compressed FROM messages") } == 0)
        try queue.close()
        let compressing = try await HostStack(directory: directory, codec: ContentCodec(threshold: 16))
        _ = try await compressing.write("conv:a:1", .appendMessage(MessageInput(role: .assistant, content: Self.answer)))
        #expect(try await compressing.read("conv:a:1").record.messages.map(\.content) == [Self.answer, Self.answer])
        try await compressing.shutdown()
        let reread = try await HostStack(directory: directory, codec: ContentCodec(threshold: 16))
        #expect(try await reread.read("conv:a:1").record.messages.map(\.content) == [Self.answer, Self.answer])
        try await reread.shutdown()
    }

    @Test("stored bytes that cannot be inflated are an error, never a guess")
    func corruptRow() throws {
        #expect(throws: StoreError.self) { try ContentCodec.decode([1, 2, 3, 4], compressed: true) }
        #expect(try ContentCodec.decode(Array("plain".utf8), compressed: false) == "plain")
    }
}
